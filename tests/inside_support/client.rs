//! Client-side helpers of `tests/faults_inside.rs`: plugin posts (retried as the plugin does,
//! or held half-sent), the database read back with the store's own reader, WebSocket clients
//! through the gateway (JSON-RPC and raw upgrades), the store's status as the user sees it
//! (state, `/healthz`, WebSocket updates), the fake Lean command, and the fd limit.

#![allow(dead_code)]

use serde_json::{json, Value};
use sidepanel::store::{Reader, RestoreTarget, StoreState, StoreStatus};
use tokio::io::AsyncWriteExt;

use super::{until, Gw};
use crate::ws_common::Client;
use crate::{fault_support, ingest_support};

/// A plugin batch that sets `sid`'s title.
pub fn titled(sid: &str, title: &str) -> Value {
    json!([ingest_support::ev(
        "session.updated",
        json!({"sessionID": sid, "info": {"id": sid, "title": title}})
    )])
}

pub async fn post(gw: &Gw, body: &Value) -> ingest_support::Reply {
    ingest_support::post(gw.addr, &gw.token, body).await
}

/// Posts `body` as the plugin does: a 503 or 429 (not acknowledged in time on a loaded
/// machine) is retried until a 202, which it returns.
pub async fn post_acked(gw: &Gw, body: &Value) -> ingest_support::Reply {
    until("a 202 from /events", || async {
        let r = post(gw, body).await;
        match r.status {
            202 => Some(r),
            429 | 503 => {
                eprintln!("/events not acknowledged yet: {} {:?}", r.status, r.body);
                None
            }
            _ => panic!("unexpected answer {r:?}"),
        }
    })
    .await
}

/// The title the database holds for `sid` at `sequence` (read with the store's own reader).
pub fn stored_title(gw: &Gw, sid: &str, sequence: u64) -> Option<String> {
    let reader = Reader::open(&gw.store_config).expect("reader");
    let (_, state) = reader
        .state_at(RestoreTarget::Sequence(sequence))
        .expect("an acknowledged point is stored");
    state
        .sessions
        .get(sid)
        .and_then(|s| s.opencode.title.clone())
}

/// A WebSocket client through the gateway that has called `state.get`.
pub async fn watcher(gw: &Gw) -> Client {
    let mut c = Client::connect_with(gw.addr, Some(&gw.token)).await;
    let r = c.call("state.get", None).await;
    assert!(r["result"]["sequence"].is_u64(), "{r}");
    c
}

/// Writes an executable script at `path` atomically (a start never reads half a script).
pub fn install_script(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).expect("write script");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, path).expect("install script");
}

/// Raises this process's soft fd limit to its hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// A raw upgrade to `/ws` with the token; returns the open socket and the answer's status.
pub async fn raw_upgrade(gw: &Gw) -> (tokio::net::TcpStream, u16) {
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let host = format!("Host: 127.0.0.1:{}", gw.addr.port());
    let req = fault_support::upgrade(&format!("/ws?token={}", gw.token), &[host]);
    s.write_all(&req).await.expect("write upgrade");
    let head = fault_support::read_head(&mut s).await;
    (s, head.status)
}

/// A plugin post whose body is held back after `sent` bytes (it keeps its slot).
pub async fn held_post(gw: &Gw, body: &[u8]) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        gw.addr, gw.token, body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    s.write_all(&body[..1]).await.expect("first byte");
    s
}

/// Checks `r` is the 503 `not_acknowledged` of a store that cannot commit (naming `says`).
pub fn assert_not_acknowledged(r: &ingest_support::Reply, says: &str) {
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("not_acknowledged")),
        "{:?}",
        r.body
    );
    let message = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message}");
}

/// Sends `n` proof updates to the hub (a flood of state updates for the store to write).
pub fn flood_updates(gw: &Gw, n: u64) {
    for i in 0..n {
        gw.hub.send(sidepanel::hub::HubEvent::Proof {
            file: format!("F{}.lean", i % 7),
            state: json!({"status": "complete", "n": i}),
        });
    }
}

/// Polls until the store's own status (`StoreHandle::status`) is `want`.
pub async fn store_is(gw: &Gw, want: StoreState) -> StoreStatus {
    until(&format!("the store to be {want:?}"), || async {
        let s = gw.store.status();
        (s.status == want).then_some(s)
    })
    .await
}

/// Polls `/api/sidepanel/state` and `/healthz` (still 200) until both show the store as
/// `want`; returns the state's `store`.
pub async fn shown_store_is(gw: &Gw, want: &str) -> Value {
    until(&format!("the state to show the store {want}"), || async {
        let store = gw.state().await["store"].clone();
        let health = crate::common::client()
            .get(format!("http://{}/healthz", gw.addr))
            .send()
            .await
            .expect("/healthz answers");
        assert_eq!(health.status(), 200, "the proxy is fine");
        let health: Value = health.json().await.expect("JSON");
        (store["status"] == want && health["store"]["status"] == want).then_some(store)
    })
    .await
}

/// Reads `ws` until a `state.update` (a `health` change) or a `state.resync` shows the store
/// as `want`; returns that `store`.
pub async fn ws_store_is(ws: &mut Client, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + super::DEADLINE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no WebSocket update showed the store {want}"
        );
        let n = ws.notification().await;
        let store = match n["method"].as_str() {
            Some("state.update") if n["params"]["type"] == "health" => {
                n["params"]["payload"]["store"].clone()
            }
            Some("state.resync") => n["params"]["state"]["store"].clone(),
            _ => continue,
        };
        if store["status"] == want {
            return store;
        }
    }
}
