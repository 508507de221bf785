//! The WebSocket JSON-RPC endpoint through the gateway's public port: a browser's view of
//! proxied traffic arriving as ordered `state.update`s, and the DNS-rebinding defence.

mod common;
mod ws_common;

use common::*;
use serde_json::json;
use sidepanel::simulator::{self, SimConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use ws_common::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_request_reaches_a_websocket_client_as_ordered_updates() {
    let sim = simulator::spawn(SimConfig {
        api_key: Some(GATEWAY_KEY.to_owned()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let mut ws = Client::connect_gateway(&gw).await;
    let snapshot = ws.call("state.get", None).await;
    let start = snapshot["result"]["sequence"].as_u64().unwrap();

    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .header("x-session-id", "ses_ws")
        .json(&chat("kimi-k2-5", true, 16))
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap();

    // Balance and rate limits from the headers, then the finished request.
    let mut kinds = Vec::new();
    let mut last = start;
    loop {
        let u = ws.update().await;
        let seq = u["sequence"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "updates arrive in sequence order: {u}");
        last = seq;
        kinds.push(u["type"].as_str().unwrap().to_owned());
        if u["type"] == "usage" {
            assert_eq!(u["source"], "venice");
            assert_eq!(u["payload"]["request"]["session_id"], "ses_ws");
            assert!(
                u["payload"]["session_totals"]["total_tokens"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
            break;
        }
    }
    assert_eq!(kinds, ["balance", "rate_limit", "usage"]);

    // A reconnecting tab catches up from its last sequence.
    let mut again = Client::connect_gateway(&gw).await;
    let since = again
        .call("state.since", Some(json!({"sequence": start})))
        .await;
    let missed: Vec<u64> = since["result"]["updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["sequence"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (start + 1..start + 1 + missed.len() as u64).collect();
    assert_eq!(missed, expected, "every missed update, in order");
    assert!(missed.len() as u64 >= last - start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_at_the_public_port() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let mut req = format!("ws://{}/ws", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", HeaderValue::from_static("http://evil.example"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("a foreign origin must be refused: {other:?}"),
    }
    assert_eq!(sim.observed().requests, 0, "nothing went to Venice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_needs_the_install_token() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    for offered in [None, Some("sidepanel.wrong-token-0123456789")] {
        let mut req = format!("ws://{}/ws", gw.addr)
            .into_client_request()
            .unwrap();
        if let Some(p) = offered {
            req.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static(p));
        }
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401, "offered {offered:?}")
            }
            other => panic!("no token, no WebSocket ({offered:?}): {other:?}"),
        }
    }
    let mut ws = Client::connect_gateway(&gw).await;
    assert!(ws.call("state.get", None).await["result"]["sequence"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_carries_the_token_only_to_this_gateways_host() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let page = client()
        .get(format!("http://{}/", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    let slot = format!(r#"<meta name="sidepanel-token" content="{}""#, gw.token);
    assert!(html.contains(&slot), "the page carries the token: {html}");

    // DNS rebinding: a foreign name resolving to loopback gets neither page nor state.
    for path in ["/", "/index.html", "/api/sidepanel/state", "/metrics"] {
        let resp = client()
            .get(format!("http://{}{path}", gw.addr))
            .header("host", format!("evil.example:{}", gw.addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{path}");
        assert!(!resp.text().await.unwrap().contains(&gw.token), "{path}");
    }
    let health = client()
        .get(format!("http://{}/healthz", gw.addr))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "liveness needs no host check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_site_cannot_spend_through_the_gateway() {
    let sim = simulator::spawn(SimConfig {
        api_key: Some(GATEWAY_KEY.to_owned()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    // A cross-site "simple" POST (no preflight) and a rebinding Host are both refused.
    let cases = [
        ("origin", "https://evil.example".to_owned()),
        ("host", format!("evil.example:{}", gw.addr.port())),
    ];
    for (name, value) in cases {
        let resp = client()
            .post(format!("{}/chat/completions", api(&gw)))
            .header(name, value.as_str())
            .header("content-type", "text/plain")
            .body(chat("kimi-k2-5", false, 8).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{name}: {value}");
        assert_eq!(resp.headers()["x-sidepanel-error"], "forbidden_host");
    }
    assert_eq!(sim.observed().requests, 0, "nothing went to Venice");
    // OpenCode sends no Origin and its own loopback Host: served.
    let ok = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_gateway_closes_websocket_clients_with_going_away() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let mut ws = Client::connect_gateway(&gw).await;
    assert!(ws.call("state.get", None).await["result"]["sequence"].is_u64());
    let stop = tokio::task::spawn_blocking(move || gw.stop());
    let (code, reason) = ws.close_frame().await;
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("shutting down"), "{reason}");
    stop.await.expect("stop task").expect("the gateway stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_of_the_websocket_path_without_an_upgrade_is_a_clear_400() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let resp = client()
        .get(format!("http://{}/ws?token={}", gw.addr, gw.token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body = resp.text().await.unwrap();
    assert!(body.contains("not a WebSocket upgrade"), "{body}");
    // The gateway still upgrades a real client afterwards.
    let mut ws = Client::connect_gateway(&gw).await;
    assert!(ws.call("state.get", None).await["result"]["sequence"].is_u64());
}
