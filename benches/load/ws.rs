//! Propagation latency through `sidepanel serve` (the release process under test): a chat
//! response fully read by the client -> its `usage` `state.update` received by a WebSocket
//! client on `/ws` (install token as the `sidepanel.<token>` subprotocol). Also a "dashboard"
//! client that stays connected while everything else is measured, so the hub broadcasts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::http::{Conn, Endpoint};
use crate::measure::{ms, Summary};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `/ws` and syncs with `state.get`, after which updates flow.
pub async fn connect(addr: SocketAddr, token: &str) -> Result<Ws, String> {
    let mut req = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("sidepanel.{token}")
            .parse()
            .map_err(|e| format!("{e}"))?,
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| format!("ws connect: {e}"))?;
    let get = json!({"jsonrpc": "2.0", "id": 1, "method": "state.get"}).to_string();
    ws.send(Message::Text(get.into()))
        .await
        .map_err(|e| format!("state.get: {e}"))?;
    Ok(ws)
}

/// A connected client that reads and drops every message until aborted; counts them.
pub fn dashboard(mut ws: Ws) -> (tokio::task::JoinHandle<()>, Arc<AtomicU64>) {
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Text(_)) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    (task, seen)
}

/// The next `state.update` whose params satisfy `pred`, or `None` after 10 s.
async fn wait_for(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Option<Instant> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next()).await.ok()??.ok()?;
        if let Message::Text(t) = m {
            // Cheap filter first: most updates under load belong to other sessions.
            if !t.as_str().contains("state.update") {
                continue;
            }
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            if v["method"] == "state.update" && pred(&v["params"]) {
                return Some(Instant::now());
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Propagation {
    pub latency: Summary,
    pub missed: u64,
    pub errors: u64,
}

/// `n` sequential non-streamed chat calls with a unique session each; per call, the time from
/// the response's last byte to its `usage` update on the WebSocket.
pub async fn propagation(
    ep: &Endpoint,
    body: &bytes::Bytes,
    token: &str,
    n: usize,
    tag: &str,
) -> Result<Propagation, String> {
    let mut ws = connect(ep.addr, token).await?;
    let mut conn = Conn::open(ep.addr).await.map_err(|e| e.to_string())?;
    let mut out = Propagation::default();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let sid = format!("ses_prop_{tag}_{i}");
        if conn.is_closed() {
            conn = Conn::open(ep.addr).await.map_err(|e| e.to_string())?;
        }
        let call = async {
            let r = conn.exchange(ep, body, &sid).await;
            (r.is_ok(), Instant::now())
        };
        let seen = wait_for(&mut ws, |p| {
            p["type"] == "usage" && p["payload"]["request"]["session_id"] == sid.as_str()
        });
        let ((ok, done), seen) = tokio::join!(call, seen);
        if !ok {
            out.errors += 1;
            continue;
        }
        match seen {
            Some(t) => samples.push(ms(t.saturating_duration_since(done))),
            None => out.missed += 1,
        }
    }
    let _ = ws.close(None).await;
    out.latency = Summary::of(samples);
    Ok(out)
}
