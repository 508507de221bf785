//! Helpers of `tests/faults_inside.rs`: a real gateway built with `app::build` (so the test
//! holds its session store's handle, which `app::start` keeps to itself) in front of the
//! simulator, proxied traffic that runs all through a fault and counts what failed, small
//! readers of `/metrics` and `/api/sidepanel/state`, and the Lean server's restart backoff as
//! its status updates announce it.

#![allow(dead_code)]

pub mod client;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use serde_json::Value;
use sidepanel::config::Config;
use sidepanel::hub::{HubHandle, StateUpdate};
use sidepanel::simulator::{self, SimConfig, SimHandle};
use sidepanel::store::{StoreConfig, StoreHandle};
use tokio::sync::Notify;

/// Longest wait of any one poll.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A gateway running on its own thread, with its store handle; stopped on drop.
pub struct Gw {
    pub addr: SocketAddr,
    pub hub: HubHandle,
    pub token: String,
    pub store: StoreHandle,
    pub store_config: StoreConfig,
    /// Keeps the simulator running as long as the gateway.
    _sim: SimHandle,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.store.close(Duration::from_secs(30));
    }
}

struct Stop(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// Starts the simulator and a gateway in front of it (store enabled), with `tweak` applied to
/// the test configuration first.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Gw {
    let sim = simulator::spawn(SimConfig {
        rpm: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let mut cfg = crate::common::config(&sim.base_url());
    cfg.admission.enabled = false;
    tweak(&mut cfg);
    tokio::task::spawn_blocking(move || launch(cfg, sim))
        .await
        .expect("start task")
}

fn launch(cfg: Config, sim: SimHandle) -> Gw {
    let built = sidepanel::app::build(&cfg, Vec::new()).expect("gateway builds");
    let stop = Arc::new(Notify::new());
    let signal = Stop(stop.clone());
    let server = built.server;
    let thread = std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(signal),
        })
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::net::TcpStream::connect_timeout(&cfg.listen, Duration::from_millis(200)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Gw {
        addr: cfg.listen,
        hub: built.hub,
        token: built.token,
        store: built.store.expect("the store is enabled"),
        store_config: cfg.store.clone(),
        _sim: sim,
        stop,
        thread: Some(thread),
    }
}

impl Gw {
    pub fn api(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// The hub's last published sequence.
    pub fn sequence(&self) -> u64 {
        self.hub.with_state(|s| s.sequence)
    }

    pub async fn metrics(&self) -> String {
        get_text(&format!("http://{}/metrics", self.addr)).await
    }

    pub async fn state(&self) -> Value {
        let text = get_text(&format!("http://{}/api/sidepanel/state", self.addr)).await;
        serde_json::from_str(&text).expect("state is JSON")
    }

    /// Polls until the store has committed everything the hub published so far.
    pub async fn all_committed(&self) {
        let target = self.sequence();
        self.store
            .wait_committed(target, DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("sequence {target} not committed: {e}"));
    }
}

async fn get_text(url: &str) -> String {
    crate::common::client()
        .get(url)
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text")
}

/// The value of the sample `series` (name plus labels exactly as exported) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Proxied chat requests in a loop (two workers) until stopped; counts answers.
pub struct Traffic {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    last_failure: Arc<parking_lot::Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(api: String) -> Self {
        let t = Self {
            ok: Arc::default(),
            failed: Arc::default(),
            last_failure: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..2)
            .map(|w| {
                let (ok, failed, last, stop) = (
                    t.ok.clone(),
                    t.failed.clone(),
                    t.last_failure.clone(),
                    t.stop.clone(),
                );
                let url = format!("{api}/chat/completions");
                tokio::spawn(async move {
                    let client = crate::common::client();
                    while !stop.load(Ordering::Relaxed) {
                        let body = crate::common::chat("llama-3.3-70b", w == 1, 8);
                        let r = client
                            .post(&url)
                            .header("x-session-id", format!("ses_traffic{w}"))
                            .json(&body)
                            .send()
                            .await;
                        let r = match r {
                            Ok(resp) if resp.status() == 200 => resp.text().await.map(|_| ()),
                            Ok(resp) => {
                                let status = resp.status();
                                let body = resp.text().await.unwrap_or_default();
                                *last.lock() = Some(format!("status {status}: {body}"));
                                failed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            Err(e) => Err(e),
                        };
                        match r {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                *last.lock() = Some(format!("{e:?}"));
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Self { tasks, ..t }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until at least `more` further requests succeeded than `since` (panics after the
    /// deadline), and checks none failed.
    pub async fn serves(&self, since: u64, more: u64, during: &str) -> u64 {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.ok() < since + more {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{during}: the proxy served only {} requests",
                self.ok() - since
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.assert_no_failure(during);
        self.ok()
    }

    pub fn assert_no_failure(&self, during: &str) {
        let failed = self.failed.load(Ordering::Relaxed);
        assert_eq!(
            failed,
            0,
            "{during}: proxied requests failed (last: {:?})",
            self.last_failure.lock()
        );
    }

    /// Stops the workers; returns how many requests succeeded.
    pub async fn stop(mut self, during: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.assert_no_failure(during);
        self.ok.load(Ordering::Relaxed)
    }
}

/// Polls `f` every 20 ms until it gives `Some`; panics naming `what` after [`DEADLINE`].
pub async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads `updates` until `n` Lean server statuses `disconnected` (with their reason) were
/// published; checks each is one more restart, its next attempt announced after the backoff
/// (0.5 s doubling to `max_ms`). Returns `(restarts, ms until the next attempt)` of each.
pub async fn lean_restart_delays(
    updates: &mut tokio::sync::broadcast::Receiver<Arc<StateUpdate>>,
    n: usize,
    max_ms: u64,
) -> Vec<(u64, u64)> {
    let mut delays: Vec<(u64, u64)> = Vec::new();
    while delays.len() < n {
        let u = tokio::time::timeout(DEADLINE, updates.recv())
            .await
            .expect("lean status updates keep coming")
            .expect("hub");
        let p = u.payload.value();
        let server = &p["state"]["server"];
        if p["file"] != sidepanel::lean::SERVER_KEY || server["status"] != "disconnected" {
            continue;
        }
        let error = server["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "the reason is shown: {server}");
        let retry_in = server["retry_at"].as_u64().expect("retry_at")
            - server["since"].as_u64().expect("since");
        delays.push((server["restarts"].as_u64().unwrap_or(0), retry_in));
    }
    // (The first failure may come before the subscription.)
    for pair in delays.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].0 + 1,
            "each failed start is a restart: {delays:?}"
        );
    }
    for (restarts, retry_in) in &delays {
        let expected = (500u64 << (restarts - 1).min(4)).min(max_ms);
        assert!(
            retry_in.abs_diff(expected) <= 50,
            "restart {restarts}: the next attempt in {retry_in} ms, not {expected} ms (backoff) {delays:?}"
        );
    }
    delays
}
