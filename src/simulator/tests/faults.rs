//! End-to-end tests of fault injection: scripted counts, status faults and the
//! stream-breaking faults (`midstream_error`, `truncate`, `reset`).

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{chat_body, client, events, header};
use crate::simulator::{spawn, SimConfig, SimHandle};

#[tokio::test]
async fn fault_count_scripts_429_then_200() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let send = || {
        client()
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("x-sim-fault", "overloaded")
            .header("x-sim-fault-count", "1")
            .header("x-sim-fault-key", "retry-test")
            .header("x-sim-retry-after", "3")
            .json(&chat_body("kimi-k2-5", false, 5))
            .send()
    };
    let resp = send().await.expect("request");
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), "3");
    assert!(resp
        .headers()
        .get("x-ratelimit-remaining-requests")
        .is_some());
    let err: Value = resp.json().await.expect("json");
    assert_eq!(
        err["error"],
        "The model is currently overloaded. Please try again later."
    );
    assert_eq!(send().await.expect("request").status(), 200);
    assert_eq!(send().await.expect("request").status(), 200);
    sim.shutdown();
}

async fn faulted_stream(sim: &SimHandle, fault: &str) -> reqwest::Result<String> {
    client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .header("x-sim-fault", fault)
        .json(&chat_body("deepseek-v4-flash", true, 200))
        .send()
        .await?
        .text()
        .await
}

#[tokio::test]
async fn stream_faults_break_the_body() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let text = faulted_stream(&sim, "midstream_error").await.expect("body");
    let ev = events(&text);
    assert_eq!(ev.len(), 5, "role, 2 content, error, [DONE]: {ev:?}");
    let err: Value = serde_json::from_str(&ev[3]).expect("error json");
    assert_eq!(err["error"]["code"], "model_overloaded");
    assert_eq!(err["error"]["type"], "server_error");
    assert_eq!(ev[4], "[DONE]");
    let text = faulted_stream(&sim, "truncate").await.expect("clean end");
    assert_eq!(events(&text).len(), 3);
    assert!(!text.contains("[DONE]"));
    // `reset`: headers and two content chunks arrive, then the connection breaks.
    let resp = client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .header("x-sim-fault", "reset")
        .json(&chat_body("deepseek-v4-flash", true, 200))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut received = Vec::new();
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    assert!(broke, "the body must end with an error");
    assert_eq!(events(&String::from_utf8_lossy(&received)).len(), 3);
    for (fault, status) in [
        ("unavailable", 503),
        ("server_error", 500),
        ("bad_request", 400),
    ] {
        let resp = client()
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("x-sim-fault", fault)
            .json(&chat_body("deepseek-v4-flash", true, 5))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), status, "{fault}");
    }
    // Faulted requests are not billed.
    assert_eq!(sim.balance(), (25.0, 10.0));
    sim.shutdown();
}

#[tokio::test]
async fn rate_limit_and_balance_faults_look_like_the_real_ones() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let send = |fault: &'static str| {
        client()
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("x-sim-fault", fault)
            .json(&chat_body("kimi-k2-5", false, 5))
            .send()
    };
    let resp = send("rate_limit").await.expect("request");
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(header(&resp, "x-ratelimit-type"), "api_key");
    assert_eq!(header(&resp, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "Rate limit exceeded"})
    );
    let resp = send("insufficient_balance").await.expect("request");
    assert_eq!(resp.status(), 402);
    assert_eq!(header(&resp, "x-venice-balance-usd"), "25");
    // Non-streamed bodies can be cut too.
    let truncated = send("truncate").await.expect("request");
    assert_eq!(truncated.status(), 200);
    let text = truncated.text().await.expect("clean end");
    assert!(serde_json::from_str::<Value>(&text).is_err());
    assert!(send("reset").await.expect("headers").text().await.is_err());
    // Metadata endpoints honour status faults as well.
    let resp = client()
        .get(format!("{}/api_keys/rate_limits", sim.base_url()))
        .header("x-sim-fault", "server_error")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "Inference failed"})
    );
    assert_eq!(sim.balance(), (25.0, 10.0));
    sim.shutdown();
}
