//! End-to-end tests of the simulator over real HTTP (reqwest against `spawn`):
//! SSE framing and the final usage chunk, header units, validation, rate limits,
//! balances and authentication of chat; fault injection is in `faults.rs`, the
//! metadata endpoints and embeddings in `metadata.rs`. Shared helpers live here.

mod faults;
mod metadata;

use serde_json::{json, Value};

use super::{spawn, SimConfig, SimHandle};

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub(super) fn chat_body(model: &str, stream: bool, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "Say something about Lean proofs."}],
        "stream": stream,
        "stream_options": {"include_usage": false},
        "max_tokens": max_tokens,
    })
}

pub(super) async fn post_chat(sim: &SimHandle, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .json(body)
        .send()
        .await
        .expect("request")
}

pub(super) fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("missing header {name}"))
}

pub(super) fn num(resp: &reqwest::Response, name: &str) -> f64 {
    header(resp, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

/// The `data:` payloads of an SSE body.
pub(super) fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").expect("data: prefix").to_string())
        .collect()
}

#[tokio::test]
async fn stream_ends_with_usage_and_cost_chunk_then_done() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let resp = post_chat(&sim, &chat_body("kimi-k2-5", true, 400)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    let text = resp.text().await.expect("body");
    let ev = events(&text);
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&ev[ev.len() - 2]).expect("usage json");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 400);
    assert_eq!(
        usage["usage"]["completion_tokens_details"]["reasoning_tokens"],
        100
    );
    assert_eq!(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let cost = &usage["cost"];
    assert!(cost["diem"].as_f64().expect("diem") > 0.0);
    assert_eq!(cost["usd"], 0.0);
    let chunks: Vec<Value> = ev[..ev.len() - 2]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk json"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["delta"]["reasoning_content"].is_string()));
    let content = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["content"].is_string())
        .count();
    assert!((2..=65).contains(&content), "{content} content chunks");
    assert_eq!(
        chunks.last().expect("final")["choices"][0]["finish_reason"],
        "stop"
    );
    // Billing went to DIEM.
    let (usd, diem) = sim.balance();
    assert_eq!(usd, 25.0);
    assert!((10.0 - diem - cost["diem"].as_f64().expect("diem")).abs() < 1e-12);
    sim.shutdown();
}

#[tokio::test]
async fn headers_carry_balances_rate_limits_and_model() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let first = post_chat(&sim, &chat_body("zai-org-glm-5-1", false, 10)).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-venice-balance-usd"), "25");
    assert_eq!(header(&first, "x-venice-balance-diem"), "10");
    assert_eq!(num(&first, "x-ratelimit-limit-requests"), 100.0);
    assert_eq!(num(&first, "x-ratelimit-remaining-requests"), 99.0);
    let reset = num(&first, "x-ratelimit-reset-requests");
    assert!(reset > 1e9 && reset < 1e11, "Unix seconds, got {reset}");
    assert_eq!(num(&first, "x-ratelimit-limit-tokens"), 2_000_000.0);
    assert!(num(&first, "x-ratelimit-remaining-tokens") < 2_000_000.0);
    let reset_tokens = num(&first, "x-ratelimit-reset-tokens");
    assert!(
        (0.0..=60.0).contains(&reset_tokens),
        "seconds, got {reset_tokens}"
    );
    assert_eq!(header(&first, "x-venice-model-id"), "zai-org-glm-5-1");
    assert_eq!(header(&first, "x-venice-model-name"), "GLM 5.1");
    assert!(!header(&first, "x-venice-version").is_empty());
    let ray = header(&first, "cf-ray").to_string();
    assert!(ray.ends_with("-SJC") && ray.len() == 20, "{ray}");
    let body: Value = first.json().await.expect("json");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["choices"][0]["message"]["content"].is_string());
    let charged = body["cost"]["diem"].as_f64().expect("diem");
    // The second response reports the balance before it, i.e. after the first.
    let second = post_chat(
        &sim,
        &chat_body("zai-org-glm-5-1:enable_web_search=on", false, 10),
    )
    .await;
    let diem: f64 = header(&second, "x-venice-balance-diem")
        .parse()
        .expect("diem");
    assert!((diem - (10.0 - charged)).abs() < 1e-7);
    assert_eq!(header(&second, "x-venice-model-id"), "zai-org-glm-5-1");
    assert_ne!(header(&second, "cf-ray"), ray);
    sim.shutdown();
}

#[tokio::test]
async fn validation_and_unknown_things_are_rejected() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let mut body = chat_body("kimi-k2-5", false, 5);
    body["frobnicate"] = json!(true);
    let resp = post_chat(&sim, &body).await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.expect("json");
    assert_eq!(err["error"], "Invalid request parameters");
    assert!(err.to_string().contains("frobnicate"));
    let resp = client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let resp = post_chat(&sim, &chat_body("no-such-model", false, 5)).await;
    assert_eq!(resp.status(), 404);
    let resp = client()
        .get(format!("{}/nowhere", sim.base_url()))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "Not found"})
    );
    // Nothing was counted or charged.
    assert_eq!(sim.balance(), (25.0, 10.0));
    assert_eq!(sim.observed().requests, 4);
    sim.shutdown();
}

#[tokio::test]
async fn rpm_exhaustion_gives_429_without_retry_after() {
    let sim = spawn(SimConfig {
        rpm: 2,
        ..SimConfig::default()
    })
    .await
    .expect("spawn");
    for _ in 0..2 {
        assert_eq!(
            post_chat(&sim, &chat_body("minimax-m25", false, 5))
                .await
                .status(),
            200
        );
    }
    let resp = post_chat(&sim, &chat_body("minimax-m25", false, 5)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-type"), "api_key");
    assert_eq!(num(&resp, "x-ratelimit-remaining-requests"), 0.0);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "Rate limit exceeded"})
    );
    // Other models have their own window.
    assert_eq!(
        post_chat(&sim, &chat_body("kimi-k2-5", false, 5))
            .await
            .status(),
        200
    );
    sim.shutdown();
}

#[tokio::test]
async fn empty_balances_give_402_and_usd_may_go_negative() {
    let config = SimConfig {
        balance_usd: 1e-9,
        balance_diem: 0.0,
        ..SimConfig::default()
    };
    let sim = spawn(config).await.expect("spawn");
    let resp = post_chat(&sim, &chat_body("llama-3.3-70b", false, 50)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert!(body["cost"]["usd"].as_f64().expect("usd") > 0.0);
    assert!(sim.balance().0 < 0.0);
    let resp = post_chat(&sim, &chat_body("llama-3.3-70b", false, 50)).await;
    assert_eq!(resp.status(), 402);
    let err: Value = resp.json().await.expect("json");
    assert!(err["error"]
        .as_str()
        .expect("message")
        .starts_with("Insufficient USD or Diem balance"));
    sim.shutdown();
}

#[tokio::test]
async fn auth_is_checked_and_requests_observed() {
    let config = SimConfig {
        api_key: Some("sk-test".into()),
        latency: std::time::Duration::from_millis(1),
        token_interval: std::time::Duration::from_millis(1),
        ..SimConfig::default()
    };
    let sim = spawn(config).await.expect("spawn");
    let url = format!("{}/models?type=all", sim.base_url());
    let resp = client().get(&url).send().await.expect("request");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("x-venice-balance-usd").is_none());
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error": "Authentication failed"})
    );
    let resp = client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .bearer_auth("sk-test")
        .header("X-Custom", "yes")
        .json(&chat_body("kimi-k2-5", false, 5))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = sim.observed();
    assert_eq!(seen.requests, 2);
    assert_eq!(seen.last_authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(seen.last_path.as_deref(), Some("/api/v1/chat/completions"));
    assert_eq!(seen.last_method.as_deref(), Some("POST"));
    assert_eq!(
        seen.last_body.as_ref().map(|b| b["model"].clone()),
        Some(json!("kimi-k2-5"))
    );
    assert!(seen
        .last_headers
        .contains(&("x-custom".to_string(), "yes".to_string())));
    sim.shutdown();
    sim.shutdown();
}

#[tokio::test]
async fn usage_follows_cache_key_and_completion_override() {
    let sim = spawn(SimConfig::default()).await.expect("spawn");
    let mut body = chat_body("qwen3-coder-480b-a35b-instruct-turbo", false, 5);
    body["prompt_cache_key"] = json!("session-1");
    let send = |body: Value| {
        client()
            .post(format!("{}/chat/completions", sim.base_url()))
            .header("x-sim-completion-tokens", "5000")
            .json(&body)
            .send()
    };
    let first: Value = send(body.clone())
        .await
        .expect("req")
        .json()
        .await
        .expect("json");
    assert_eq!(first["usage"]["completion_tokens"], 5000);
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    let prompt = first["usage"]["prompt_tokens"].as_u64().expect("prompt");
    assert_eq!(first["usage"]["total_tokens"], prompt + 5000);
    let second: Value = send(body).await.expect("req").json().await.expect("json");
    assert_eq!(
        second["usage"]["prompt_tokens_details"]["cached_tokens"],
        prompt / 2
    );
    assert!(second["cost"]["diem"].as_f64() < first["cost"]["diem"].as_f64());
    // Without a body limit the default completion is 24 tokens.
    let mut plain = chat_body("minimax-m25", false, 0);
    plain.as_object_mut().expect("object").remove("max_tokens");
    let resp: Value = post_chat(&sim, &plain).await.json().await.expect("json");
    assert_eq!(resp["usage"]["completion_tokens"], 24);
    assert_eq!(
        resp["usage"]["completion_tokens_details"]["reasoning_tokens"],
        0
    );
    sim.shutdown();
}
