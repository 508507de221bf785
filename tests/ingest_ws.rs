//! Ingested events reach a real WebSocket client: a hub with the WebSocket server in front of
//! it, `/events` served through pingora by `ingest::handle` on the same hub, and a
//! tokio-tungstenite client that reads `state.update` notifications (never sleeping).

mod common;
mod ingest_support;
mod ws_common;

use std::sync::Arc;

use serde_json::json;

use ingest_support::{assistant, ev, post, TOKEN};
use sidepanel::ingest::{Ingest, IngestConfig};
use sidepanel::ws::WsConfig;
use ws_common::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_events_reach_websocket_clients_in_sequence_order() {
    let env = ws_common::start(WsConfig::default()).await;
    let ingest = Arc::new(Ingest::new(
        env.hub.clone(),
        IngestConfig::default(),
        TOKEN.into(),
    ));
    let events = tokio::task::spawn_blocking(move || ingest_support::start(ingest))
        .await
        .expect("events server");
    let mut a = Client::connect(&env).await;
    let mut b = Client::connect(&env).await;
    let start = a.call("state.get", None).await["result"]["sequence"]
        .as_u64()
        .expect("sequence");
    b.call("state.get", None).await;

    let sid = "ses_ws1";
    let first = json!([
        ev(
            "session.created",
            json!({"sessionID": sid, "info": {"title": "WS"}})
        ),
        ev(
            "session.status",
            json!({"sessionID": sid, "status": {"type": "busy"}})
        ),
    ]);
    assert_eq!(post(events.addr, TOKEN, &first).await.status, 202);
    let second = json!([assistant(sid, "msg_1", true, 7, 3, 0.5)]);
    assert_eq!(post(events.addr, TOKEN, &second).await.status, 202);

    for client in [&mut a, &mut b] {
        let mut last = start;
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let u = client.update().await;
            let seq = u["sequence"].as_u64().expect("sequence");
            assert!(seq > last, "sequence {seq} after {last}");
            last = seq;
            if u["type"] == "session" && u["payload"]["session"] == sid {
                assert_eq!(u["source"], "opencode");
                seen.push(u["payload"]["events"].clone());
            }
        }
        assert_eq!(seen[0], json!(["session.created", "session.status"]));
        assert_eq!(seen[1], json!(["message.updated"]));
    }
    let got = a
        .call("sessions.list", None)
        .await
        .to_string()
        .contains(sid);
    assert!(got, "the session is listed");
}
