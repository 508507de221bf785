//! The soak's moving parts (`tests/soak.rs`): the restartable gateway, the counters and their
//! report, and a WebSocket client that checks the sequences it receives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Value};
use sidepanel::app::{self, Running};
use sidepanel::config::Config;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The gateway under soak, replaced by a new one at every restart (same address and data).
pub struct Shared {
    pub addr: SocketAddr,
    restarting: AtomicBool,
    /// When the last restart finished (a client may still hold a connection to the old one).
    restarted_at: Mutex<Option<Instant>>,
    gw: Mutex<Option<Running>>,
    token: String,
}

impl Shared {
    pub fn new(gw: Running) -> Self {
        Self {
            addr: gw.addr,
            restarting: AtomicBool::new(false),
            restarted_at: Mutex::new(None),
            token: gw.token.clone(),
            gw: Mutex::new(Some(gw)),
        }
    }

    /// Whether a restart is under way or finished less than a second ago.
    pub fn restarting(&self) -> bool {
        self.restarting.load(Relaxed)
            || self
                .restarted_at
                .lock()
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
    }

    pub fn token(&self) -> String {
        self.token.clone()
    }

    pub fn with_gateway<T>(&self, f: impl FnOnce(&Running) -> T) -> Option<T> {
        self.gw.lock().as_ref().map(f)
    }

    pub async fn stop(&self) {
        let gw = self.gw.lock().take();
        if let Some(gw) = gw {
            tokio::task::spawn_blocking(move || gw.stop())
                .await
                .unwrap()
                .expect("the gateway stops cleanly");
        }
    }

    /// Stops the gateway and starts a new one on the same port and data directory.
    pub async fn restart(&self, cfg: &Config) {
        self.restarting.store(true, Relaxed);
        self.stop().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let gw = loop {
            let c = cfg.clone();
            match tokio::task::spawn_blocking(move || app::start(&c, Vec::new()))
                .await
                .unwrap()
            {
                Ok(gw) => break gw,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("soak: restart failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the gateway did not come back: {e}"),
            }
        };
        *self.gw.lock() = Some(gw);
        *self.restarted_at.lock() = Some(Instant::now());
        self.restarting.store(false, Relaxed);
    }
}

/// Everything the soak counts.
#[derive(Default)]
pub struct Counters {
    pub requests_ok: AtomicU64,
    /// Failures of requests that carried an injected fault (expected).
    pub requests_faulted: AtomicU64,
    /// Failures while the gateway was restarting (expected).
    pub requests_restart: AtomicU64,
    /// Failures with neither excuse.
    pub unexpected: AtomicU64,
    /// `POST /events` not acknowledged while restarting (refused connections, 503s).
    pub events_refused: AtomicU64,
    /// Not acknowledged otherwise, by status (503: not committed within the ingest's timeout).
    events_status: Mutex<BTreeMap<u16, u64>>,
    acked: Mutex<BTreeMap<String, u64>>,
    pub ws_updates: AtomicU64,
    pub ws_resyncs: AtomicU64,
    pub ws_reconnects: AtomicU64,
    pub ws_backwards: AtomicU64,
    pub lost_ws: AtomicU64,
    pub restarts: AtomicU64,
    /// (seconds, RSS KiB, fds) samples.
    samples: Mutex<Vec<(f64, u64, usize)>>,
    started: Mutex<Option<Instant>>,
}

impl Counters {
    pub fn record_request(&self, ok: Option<bool>, faulted: bool, restarting: bool) {
        let counter = match ok {
            Some(true) => &self.requests_ok,
            _ if faulted => &self.requests_faulted,
            _ if restarting => &self.requests_restart,
            _ => &self.unexpected,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub fn acked(&self, session: &str) {
        *self.acked.lock().entry(session.to_owned()).or_default() += 1;
    }

    pub fn event_refused(&self, status: u16) {
        *self.events_status.lock().entry(status).or_default() += 1;
    }

    pub fn acked_by_session(&self) -> Vec<(String, u64)> {
        self.acked
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn sample(&self) {
        let t0 = *self.started.lock().get_or_insert_with(Instant::now);
        let (rss, _) = crate::fault_support::rss_kib();
        let fds = crate::fault_support::open_fds();
        self.samples
            .lock()
            .push((t0.elapsed().as_secs_f64(), rss, fds));
    }

    /// The figures, as printed and pasted into docs/RELIABILITY.md.
    pub fn report(
        &self,
        elapsed: Duration,
        final_sequence: Option<u64>,
        lost_store: u64,
    ) -> String {
        let s = self.samples.lock();
        let rss: Vec<u64> = s.iter().map(|x| x.1).collect();
        let fds: Vec<usize> = s.iter().map(|x| x.2).collect();
        let quarter = s.len() / 4;
        let acked: u64 = self.acked.lock().values().sum();
        let g = |a: &AtomicU64| a.load(Relaxed);
        format!(
            "soak: {:.0} s, {} restarts\n\
             requests: {} ok, {} failed by injected faults, {} failed during restarts, {} unexpected\n\
             events: {acked} acknowledged, {} refused while restarting, others not acknowledged by status {:?}, {lost_store} lost in the store\n\
             websocket: {} updates, {} resyncs, {} reconnects, {} sequence regressions, {} lost; final sequence {:?}\n\
             rss KiB: first {} / max {} / last {} (after warm-up: min {} max {})\n\
             fds: first {} / max {} / last {}",
            elapsed.as_secs_f64(),
            g(&self.restarts),
            g(&self.requests_ok),
            g(&self.requests_faulted),
            g(&self.requests_restart),
            g(&self.unexpected),
            g(&self.events_refused),
            self.events_status.lock(),
            g(&self.ws_updates),
            g(&self.ws_resyncs),
            g(&self.ws_reconnects),
            g(&self.ws_backwards),
            g(&self.lost_ws),
            final_sequence,
            rss.first().unwrap_or(&0),
            rss.iter().max().unwrap_or(&0),
            rss.last().unwrap_or(&0),
            rss.iter().skip(quarter).min().unwrap_or(&0),
            rss.iter().skip(quarter).max().unwrap_or(&0),
            fds.first().unwrap_or(&0),
            fds.iter().max().unwrap_or(&0),
            fds.last().unwrap_or(&0),
        )
    }
}

/// What one client has seen.
struct Seen {
    /// The last sequence applied (`None` before the first answer).
    last: Option<u64>,
}

impl Seen {
    /// An update with `seq` arrived: gaps are losses, older ones regressions.
    fn update(&mut self, seq: u64, c: &Counters) {
        c.ws_updates.fetch_add(1, Relaxed);
        if let Some(last) = self.last {
            if seq > last + 1 {
                c.lost_ws.fetch_add(seq - last - 1, Relaxed);
            } else if seq <= last {
                c.ws_backwards.fetch_add(1, Relaxed);
            }
        }
        self.last = Some(seq);
    }

    fn message(&mut self, m: &Value, c: &Counters) {
        match m["method"].as_str() {
            Some("state.update") => self.update(m["params"]["sequence"].as_u64().unwrap_or(0), c),
            Some("state.resync") => {
                c.ws_resyncs.fetch_add(1, Relaxed);
                self.last = m["params"]["sequence"].as_u64();
            }
            _ => {
                let r = &m["result"];
                if r["resync"] == true {
                    c.ws_resyncs.fetch_add(1, Relaxed);
                }
                if let Some(updates) = r["updates"].as_array() {
                    for u in updates {
                        self.update(u["sequence"].as_u64().unwrap_or(0), c);
                    }
                }
                if let Some(seq) = r["sequence"].as_u64() {
                    self.last = Some(seq);
                }
            }
        }
    }
}

/// A dashboard-like client: syncs, follows updates, reconnects after restarts with
/// `state.since`; after `until` it waits to reach the hub's sequence (the rest counts lost).
pub async fn ws_client(shared: Arc<Shared>, c: Arc<Counters>, until: Instant) {
    let mut seen = Seen { last: None };
    let catch_up = until + Duration::from_secs(20);
    while Instant::now() < catch_up {
        let mut req = format!("ws://{}/ws", shared.addr)
            .into_client_request()
            .unwrap();
        let protocol = HeaderValue::from_str(&format!("sidepanel.{}", shared.token())).unwrap();
        req.headers_mut().insert("sec-websocket-protocol", protocol);
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(req),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await; // retry pacing while restarting
            continue;
        };
        let hello = match seen.last {
            None => json!({"jsonrpc": "2.0", "id": 1, "method": "state.get"}),
            Some(s) => {
                c.ws_reconnects.fetch_add(1, Relaxed);
                json!({"jsonrpc": "2.0", "id": 1, "method": "state.since", "params": {"sequence": s}})
            }
        };
        if ws
            .send(Message::Text(hello.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        loop {
            if Instant::now() >= until {
                let hub = shared.with_gateway(|gw| gw.hub.with_state(|s| s.sequence));
                if hub.is_some() && hub == seen.last {
                    return;
                }
                if Instant::now() >= catch_up {
                    break;
                }
            }
            match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
                Err(_) => {}
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Ok(m) = serde_json::from_str::<Value>(t.as_str()) {
                        seen.message(&m, &c);
                    }
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break,
            }
        }
    }
    let hub = shared
        .with_gateway(|gw| gw.hub.with_state(|s| s.sequence))
        .unwrap_or(0);
    let behind = hub.saturating_sub(seen.last.unwrap_or(0));
    eprintln!("soak: a WebSocket client ended {behind} updates behind the hub");
    c.lost_ws.fetch_add(behind, Relaxed);
}
