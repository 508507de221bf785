//! Shared test harness: a real gateway on a free port in front of the simulator or a scripted
//! upstream, a real HTTP client, and polling helpers for state that arrives through the hub.

#![allow(dead_code)]

pub mod child;
pub mod raw;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use sidepanel::app::{self, Running};
use sidepanel::config::{self, Config, Overrides};
use sidepanel::hub::State;

/// The key the gateway injects upstream in tests.
pub const GATEWAY_KEY: &str = "test-gateway-key-5f3a9c";
/// The key the client sends, which must never reach the upstream.
pub const CLIENT_KEY: &str = "client-own-key-77b1e0";

/// A free loopback port (bound, read, released).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("local addr")
}

/// A validated config for a gateway in front of `upstream` (an `http://…/api/v1` URL).
pub fn config(upstream: &str) -> Config {
    let overrides = Overrides {
        listen: Some(free_addr().to_string()),
        upstream: Some(upstream.to_owned()),
        api_key: Some(GATEWAY_KEY.to_owned()),
        ..Overrides::default()
    };
    let mut c = config::load(&overrides).expect("test config is valid");
    c.upstream.models_refresh = None;
    c.admission.limits_refresh = None;
    c.lean.enabled = false;
    // Keep the install token and any database out of the user's real data dir.
    c.data_dir = tempfile::Builder::new()
        .prefix("sidepanel-test")
        .tempdir()
        .expect("temp dir")
        .keep();
    c.store = sidepanel::store::StoreConfig::in_dir(&c.data_dir);
    c.threads = 1;
    c
}

/// Starts a gateway with `config` (off the async threads, since start-up polls the port).
pub async fn gateway(config: Config) -> Running {
    tokio::task::spawn_blocking(move || app::start(&config, Vec::new()))
        .await
        .expect("start task")
        .expect("gateway starts")
}

/// A plain-HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The gateway's base URL for proxied calls.
pub fn api(gw: &Running) -> String {
    format!("http://{}/api/v1", gw.addr)
}

/// Polls the hub's state until `pred` holds; panics with the last state after 20 s.
pub async fn eventually<T>(gw: &Running, what: &str, pred: impl Fn(&State) -> Option<T>) -> T {
    eventually_or(gw, what, pred, |_| {
        let s = gw.hub.snapshot_json(std::time::SystemTime::now());
        format!("state: {s:#}")
    })
    .await
}

/// [`eventually`], but on timeout panics with what `show` says about the last state.
pub async fn eventually_or<T>(
    gw: &Running,
    what: &str,
    pred: impl Fn(&State) -> Option<T>,
    show: impl Fn(&State) -> String,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = gw.hub.with_state(&pred) {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; {}", gw.hub.with_state(&show));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the hub has recorded `n` finished requests.
pub async fn requests_recorded(gw: &Running, n: u64) -> State {
    eventually(gw, &format!("{n} recorded requests"), |s| {
        (s.totals.requests >= n).then(|| s.clone())
    })
    .await
}

/// A streamed chat body.
pub fn chat(model: &str, stream: bool, max_tokens: u64) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "max_completion_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Prove that 2 + 2 = 4 in Lean."}],
    })
}

/// Parses the SSE text a client received into its `data:` JSON payloads (without `[DONE]`).
pub fn sse_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

/// `GET /api/sidepanel/state` as JSON.
pub async fn state_json(gw: &Running) -> serde_json::Value {
    client()
        .get(format!("http://{}/api/sidepanel/state", gw.addr))
        .send()
        .await
        .expect("state answers")
        .json()
        .await
        .expect("state is JSON")
}

/// `GET /metrics` as text.
pub async fn metrics_text(gw: &Running) -> String {
    client()
        .get(format!("http://{}/metrics", gw.addr))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text")
}
