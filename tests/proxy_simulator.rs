//! The gateway in front of the built-in Venice simulator: forwarding, keys, usage and cost,
//! headers, state, metrics.

mod common;

use common::*;
use serde_json::{json, Value};
use sidepanel::simulator::{self, SimConfig};

fn sim_config() -> SimConfig {
    SimConfig {
        api_key: Some(GATEWAY_KEY.to_owned()),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chat_is_forwarded_and_its_usage_and_cost_counted() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let c = client();

    let mut expected_prompt = 0;
    let mut expected_completion = 0;
    let mut expected_usd = 0.0;
    let mut expected_diem = 0.0;
    for max in [16, 48, 200] {
        let resp = c
            .post(format!("{}/chat/completions", api(&gw)))
            .bearer_auth(CLIENT_KEY)
            .header("x-session-id", "ses_alpha")
            .json(&chat("kimi-k2-5", true, max))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let text = resp.text().await.unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        let events = sse_events(&text);
        let last = events.last().expect("events");
        assert_eq!(last["choices"], json!([]));
        expected_prompt += last["usage"]["prompt_tokens"].as_u64().unwrap();
        expected_completion += last["usage"]["completion_tokens"].as_u64().unwrap();
        expected_usd += last["cost"]["usd"].as_f64().unwrap();
        expected_diem += last["cost"]["diem"].as_f64().unwrap();
    }

    let state = requests_recorded(&gw, 3).await;
    let s = &state.sessions["ses_alpha"];
    assert_eq!(s.totals.requests, 3);
    assert_eq!(s.totals.errors, 0);
    assert_eq!(s.totals.prompt_tokens, expected_prompt);
    assert_eq!(s.totals.completion_tokens, expected_completion);
    assert!((s.totals.cost_usd - expected_usd).abs() < 1e-12);
    assert!((s.totals.cost_diem - expected_diem).abs() < 1e-12);
    let m = &state.models["kimi-k2-5"];
    assert_eq!(m.prompt_tokens, expected_prompt);
    assert!(m.reasoning_tokens > 0, "kimi-k2-5 is a reasoning model");
    assert_eq!(state.totals, s.totals);
    assert!(expected_completion > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sees_the_gateway_key_never_the_clients() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .bearer_auth(CLIENT_KEY)
        .json(&chat("zai-org-glm-5-1", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = sim.observed();
    assert_eq!(
        seen.last_authorization.as_deref(),
        Some(format!("Bearer {GATEWAY_KEY}").as_str())
    );
    assert!(!seen
        .last_headers
        .iter()
        .any(|(_, v)| v.contains(CLIENT_KEY)));

    requests_recorded(&gw, 1).await;
    for path in ["/metrics", "/api/sidepanel/state", "/healthz", "/"] {
        let body = client()
            .get(format!("http://{}{path}", gw.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.contains(GATEWAY_KEY), "{path} leaks the key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_request_without_usage_option_gets_it_added_and_nothing_else() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let mut body = chat("minimax-m25", true, 8);
    body["temperature"] = json!(0.2);
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let sent = sim.observed().last_body.expect("body seen");
    let mut expected = body.clone();
    expected["stream_options"] = json!({"include_usage": true});
    assert_eq!(sent, expected);
    let state = requests_recorded(&gw, 1).await;
    assert!(state.recent[0].usage_requested);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_json_is_forwarded_byte_for_byte_with_method_query_and_status() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let c = client();

    // GET with a query string.
    let via = c
        .get(format!("{}/models?type=text", api(&gw)))
        .send()
        .await
        .unwrap();
    assert_eq!(via.status(), 200);
    let via = via.bytes().await.unwrap();
    let seen = sim.observed();
    assert_eq!(seen.last_method.as_deref(), Some("GET"));
    assert_eq!(seen.last_path.as_deref(), Some("/api/v1/models"));
    assert_eq!(seen.last_query.as_deref(), Some("type=text"));
    let direct = c
        .get(format!("{}/models?type=text", sim.base_url()))
        .bearer_auth(GATEWAY_KEY)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(via, direct);

    // An upstream error status and body pass through unchanged.
    let resp = c
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&json!({"model": "no-such-model", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // Non-streamed usage is counted too.
    let resp = c
        .post(format!("{}/chat/completions", api(&gw)))
        .header("x-session-id", "ses_json")
        .json(&chat("llama-3.3-70b", false, 30))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let state = eventually(&gw, "json session", |s| s.sessions.get("ses_json").cloned()).await;
    assert_eq!(
        state.totals.completion_tokens,
        body["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        state.totals.prompt_tokens,
        body["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_and_rate_limits_are_read_into_state_and_metrics() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let (usd_before, diem_before) = sim.balance();
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    let remaining: u64 = resp.headers()["x-ratelimit-remaining-requests"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    resp.bytes().await.unwrap();
    let state = requests_recorded(&gw, 1).await;
    // The headers carry the balance before the request.
    assert_eq!(state.balance.usd, Some(usd_before));
    assert_eq!(state.balance.diem, Some(diem_before));
    let limits = &state.rate_limits["kimi-k2-5"];
    assert_eq!(limits.requests.remaining, Some(remaining));
    assert!(limits.requests.limit.is_some());
    assert!(limits.tokens.reset_at.is_some());
    assert!(
        limits.requests.reset_at.unwrap()
            > std::time::SystemTime::now() - std::time::Duration::from_secs(5)
    );

    let json: Value = state_json(&gw).await;
    assert_eq!(json["balance"]["usd"], json!(usd_before));
    assert_eq!(json["balance"]["stale"], json!(false));
    assert_eq!(json["upstream"]["status"], json!("ok"));
    assert_eq!(
        json["rate_limits"]["kimi-k2-5"]["requests"]["remaining"],
        json!(remaining)
    );

    let metrics = metrics_text(&gw).await;
    for needle in [
        "sidepanel_requests_total{endpoint=\"chat_completions\",model=\"kimi-k2-5\",outcome=\"ok\",status=\"2xx\"} 1",
        "sidepanel_balance_usd ",
        "sidepanel_ratelimit_remaining{kind=\"requests\",model=\"kimi-k2-5\"}",
        "sidepanel_tokens_total{kind=\"prompt\",model=\"kimi-k2-5\"}",
        "sidepanel_cost_usd_total{model=\"kimi-k2-5\"}",
        "sidepanel_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_stream_error_is_a_failed_request() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let text = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .header("x-sim-fault", "midstream_error")
        .header("x-session-id", "ses_err")
        .json(&chat("kimi-k2-5", true, 50))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("model_overloaded"), "{text}");
    let state = requests_recorded(&gw, 1).await;
    assert_eq!(state.sessions["ses_err"].totals.errors, 1);
    let r = &state.recent[0];
    assert_eq!(r.outcome, sidepanel::gateway::record::Outcome::InbandError);
    assert_eq!(
        r.error.as_ref().and_then(|e| e.code.as_deref()),
        Some("model_overloaded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_routes_answer_and_unknown_routes_are_404_json() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let c = client();
    let health: Value = c
        .get(format!("http://{}/healthz", gw.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let resp = c
        .get(format!("http://{}/nope", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-sidepanel-error"], "route");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "sidepanel_error");
    let resp = c
        .post(format!("http://{}/api/sidepanel/state", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(
        sim.observed().requests,
        0,
        "local routes never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_start_and_stop_in_one_process() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    for _ in 0..2 {
        let gw = gateway(config(&sim.base_url())).await;
        let addr = gw.addr;
        let resp = client()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        tokio::task::spawn_blocking(move || gw.stop())
            .await
            .unwrap()
            .unwrap();
    }
}
