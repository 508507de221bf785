//! Upstreams that misbehave: malformed and duplicate headers, streams split at every byte,
//! truncated and reset streams, silence, refusal, huge bodies. The gateway must forward what
//! it can, count exactly, answer clearly, and never crash or hang.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::raw::{self, chunk, head, last_chunk, Step};
use common::*;
use futures_util::StreamExt;
use sidepanel::gateway::record::Outcome;

const USAGE_LINE: &str = r#"data: {"id":"c1","object":"chat.completion.chunk","model":"kimi-k2-5","choices":[],"usage":{"prompt_tokens":612,"completion_tokens":146,"total_tokens":758,"prompt_tokens_details":{"cached_tokens":100},"completion_tokens_details":{"reasoning_tokens":40}},"cost":{"usd":0.00042,"diem":0.0001}}"#;

fn stream_body() -> Vec<u8> {
    let mut s = String::new();
    s.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n");
    s.push_str("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"kimi-k2-5\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    s.push_str(USAGE_LINE);
    s.push_str("\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

fn sse_head() -> Vec<u8> {
    head(200, "text/event-stream", &["x-venice-balance-usd: 12.5"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_split_across_chunks_at_every_byte_offset_is_counted_exactly() {
    let body = stream_body();
    let b = body.clone();
    let up = raw::spawn(Arc::new(move |n, _req: &[u8]| {
        let cut = n % (b.len() + 1);
        let mut steps = vec![Step::Write(sse_head())];
        // An empty chunk would end the body: a cut at either end is one whole chunk.
        for part in [&b[..cut], &b[cut..]] {
            if !part.is_empty() {
                steps.push(Step::Write(chunk(part)));
            }
        }
        steps.push(Step::Write(last_chunk()));
        steps
    }))
    .await;
    let mut cfg = config(&up.base_url());
    // Hundreds of requests to one model: the gateway's default 50 RPM would pace them.
    cfg.admission.enabled = false;
    let gw = gateway(cfg).await;
    let c = client();
    let runs = body.len() as u64 + 1;
    for _ in 0..runs {
        let text = c
            .post(format!("{}/chat/completions", api(&gw)))
            .json(&chat("kimi-k2-5", true, 10))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(text, body, "the stream reaches the client unchanged");
    }
    let state = requests_recorded(&gw, runs).await;
    let t = &state.totals;
    assert_eq!(t.requests, runs);
    assert_eq!(t.errors, 0);
    assert_eq!(t.prompt_tokens, 612 * runs);
    assert_eq!(t.completion_tokens, 146 * runs);
    assert_eq!(t.reasoning_tokens, 40 * runs);
    assert_eq!(t.cached_tokens, 100 * runs);
    assert!((t.cost_usd - 0.00042 * runs as f64).abs() < 1e-9);
    assert!((t.cost_diem - 0.0001 * runs as f64).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sse_chunk_reaches_the_client_before_the_upstream_finishes() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| {
        vec![
            Step::Write(sse_head()),
            Step::Write(chunk(
                b"data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n",
            )),
            Step::Gate,
            Step::Write(chunk(
                format!("{USAGE_LINE}\n\ndata: [DONE]\n\n").as_bytes(),
            )),
            Step::Write(last_chunk()),
        ]
    }))
    .await;
    let gw = gateway(config(&up.base_url())).await;
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&chat("kimi-k2-5", true, 10))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let part = stream.next().await.expect("more body").unwrap();
        got.extend_from_slice(&part);
    }
    // The upstream is still held at its gate: the first event came through on its own.
    up.open_gate();
    while let Some(part) = stream.next().await {
        got.extend_from_slice(&part.unwrap());
    }
    assert!(String::from_utf8_lossy(&got).ends_with("data: [DONE]\n\n"));
    let state = requests_recorded(&gw, 1).await;
    assert_eq!(state.totals.prompt_tokens, 612);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_duplicate_headers_never_fail_the_request() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| {
        let body = br#"{"model":"kimi-k2-5","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        vec![
            Step::Write(head(
                200,
                "application/json",
                &[
                    "x-venice-balance-usd: lots",
                    "x-venice-balance-diem: 3.25",
                    "x-ratelimit-remaining-requests: 41",
                    "x-ratelimit-remaining-requests: 7",
                    "x-ratelimit-limit-requests: -3",
                    "x-ratelimit-reset-requests: soon",
                    "x-ratelimit-reset-tokens: 1.5",
                    "retry-after: whenever",
                ],
            )),
            Step::Write(chunk(body)),
            Step::Write(last_chunk()),
        ]
    }))
    .await;
    let gw = gateway(config(&up.base_url())).await;
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&chat("kimi-k2-5", false, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get_all("x-ratelimit-remaining-requests")
            .iter()
            .count(),
        2
    );
    resp.bytes().await.unwrap();
    let state = requests_recorded(&gw, 1).await;
    assert_eq!(state.balance.diem, Some(3.25));
    assert_eq!(state.balance.usd, None);
    let limits = &state.rate_limits["kimi-k2-5"];
    assert_eq!(limits.requests.remaining, Some(41), "the first value wins");
    assert_eq!(limits.requests.limit, None);
    assert!(limits.tokens.reset_at.is_some());
    assert_eq!(state.totals.total_tokens, 7);
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains(
            "sidepanel_upstream_malformed_headers_total{header=\"x-venice-balance-usd\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_reset_streams_are_recorded_and_the_gateway_carries_on() {
    let up = raw::spawn(Arc::new(|n, _req: &[u8]| {
        let first = chunk(b"data: {\"choices\":[{\"delta\":{\"content\":\"partial\"}}]}\n\n");
        match n {
            // Ends cleanly at the HTTP level but without usage or [DONE].
            0 => vec![
                Step::Write(sse_head()),
                Step::Write(first),
                Step::Write(last_chunk()),
            ],
            // Cut with a TCP reset mid-stream.
            1 => vec![Step::Write(sse_head()), Step::Write(first), Step::Reset],
            // Then a healthy response.
            _ => vec![
                Step::Write(sse_head()),
                Step::Write(chunk(&stream_body())),
                Step::Write(last_chunk()),
            ],
        }
    }))
    .await;
    let gw = gateway(config(&up.base_url())).await;
    let c = client();
    let send = || {
        c.post(format!("{}/chat/completions", api(&gw)))
            .json(&chat("kimi-k2-5", true, 10))
            .send()
    };
    let text = send().await.unwrap().text().await.unwrap();
    assert!(text.contains("partial"));
    let second = send().await.unwrap();
    assert_eq!(second.status(), 200);
    let body = second.bytes().await;
    assert!(body.is_err() || !String::from_utf8_lossy(&body.unwrap()).contains("[DONE]"));
    let ok = send().await.unwrap().text().await.unwrap();
    assert!(ok.contains("[DONE]"));
    let state = requests_recorded(&gw, 3).await;
    let outcomes: Vec<Outcome> = state.recent.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        vec![Outcome::Truncated, Outcome::Truncated, Outcome::Ok]
    );
    assert_eq!(state.totals.errors, 2);
    assert_eq!(state.totals.prompt_tokens, 612);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_gets_a_gateway_timeout_not_a_hang() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| vec![Step::Hang])).await;
    let mut cfg = config(&up.base_url());
    cfg.upstream.read_timeout = Duration::from_millis(300);
    let gw = gateway(cfg).await;
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&chat("kimi-k2-5", true, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-sidepanel-error"], "upstream_timeout");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("sidepanel:"));
    let state = requests_recorded(&gw, 1).await;
    assert_eq!(state.recent[0].outcome, Outcome::UpstreamFailed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gets_a_clear_502_and_degrades_health() {
    // A port nothing listens on.
    let dead = free_addr();
    let gw = gateway(config(&format!("http://{dead}/api/v1"))).await;
    let c = client();
    for i in 1..=3u64 {
        let resp = c
            .post(format!("{}/chat/completions", api(&gw)))
            .json(&chat("kimi-k2-5", false, 10))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()["x-sidepanel-error"], "upstream_unreachable");
        let state = requests_recorded(&gw, i).await;
        assert_eq!(state.recent.back().unwrap().outcome, Outcome::ConnectFailed);
    }
    let state = requests_recorded(&gw, 3).await;
    assert_eq!(
        state.upstream.status,
        sidepanel::hub::state::UpstreamStatus::Unavailable
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabyte_bodies_pass_intact_both_ways() {
    let big: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let payload = big.clone();
    let up = raw::spawn(Arc::new(move |_, _req: &[u8]| {
        let mut steps = vec![Step::Write(head(200, "application/octet-stream", &[]))];
        for part in payload.chunks(256 * 1024) {
            steps.push(Step::Write(chunk(part)));
        }
        steps.push(Step::Write(last_chunk()));
        steps
    }))
    .await;
    let gw = gateway(config(&up.base_url())).await;
    let c = client();
    // 10 MB down.
    let got = c
        .get(format!("{}/audio/anything", api(&gw)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got == big);
    // 10 MB up, in a chat body the gateway holds and reads.
    let prompt = "x".repeat(10 * 1024 * 1024);
    let body = serde_json::json!({"model": "kimi-k2-5", "messages": [{"role": "user", "content": prompt}]});
    let resp = c
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let seen = up.requests.lock().await.last().cloned().unwrap();
    assert!(
        seen.len() > 10 * 1024 * 1024,
        "the whole body reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_chat_body_is_refused_with_413() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| vec![Step::Hang])).await;
    let mut cfg = config(&up.base_url());
    cfg.limits.max_request_body_bytes = 1024;
    let gw = gateway(cfg).await;
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "y".repeat(4096)}]});
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["x-sidepanel-error"], "body_too_large");
    assert!(
        up.requests.lock().await.is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_is_computed_from_the_price_table_when_venice_sends_none() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| {
        let body = br#"{"model":"kimi-k2-5","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":200}}}"#;
        vec![
            Step::Write(head(200, "application/json", &[])),
            Step::Write(chunk(body)),
            Step::Write(last_chunk()),
        ]
    }))
    .await;
    let gw = gateway(config(&up.base_url())).await;
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .json(&chat("kimi-k2-5", false, 10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let state = requests_recorded(&gw, 1).await;
    let r = &state.recent[0];
    assert_eq!(
        r.cost_source,
        sidepanel::gateway::record::CostSource::Computed
    );
    // kimi-k2-5: input 0.56, cache read 0.22, output 3.50 USD per 1M tokens.
    let expected = (800.0 * 0.56 + 200.0 * 0.22 + 500.0 * 3.50) / 1e6;
    let cost = r.cost.expect("computed cost");
    assert!(
        (cost.usd - expected).abs() < 1e-12,
        "{} vs {expected}",
        cost.usd
    );
    assert!((state.totals.cost_usd - expected).abs() < 1e-12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_upstream_is_probed_and_its_recovery_announced() {
    let up = raw::spawn(Arc::new(|n, _req: &[u8]| {
        let (status, body): (u16, &[u8]) = if n < 3 {
            (503, br#"{"error":"The model is at capacity"}"#)
        } else {
            (200, br#"{"object":"list","data":[]}"#)
        };
        vec![
            Step::Write(head(
                status,
                "application/json",
                &["x-venice-balance-usd: 9.5"],
            )),
            Step::Write(chunk(body)),
            Step::Write(last_chunk()),
        ]
    }))
    .await;
    let mut cfg = config(&up.base_url());
    cfg.admission.enabled = false; // one attempt each: three 503s in a row
    let gw = gateway(cfg).await;
    let c = client();
    for _ in 0..3 {
        let resp = c
            .post(format!("{}/chat/completions", api(&gw)))
            .json(&chat("kimi-k2-5", false, 8))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        resp.bytes().await.unwrap();
    }
    let state = requests_recorded(&gw, 3).await;
    assert_eq!(
        state.upstream.status,
        sidepanel::hub::state::UpstreamStatus::Unavailable
    );
    let shown: serde_json::Value = state_json(&gw).await;
    assert_eq!(shown["balance"]["usd"], 9.5, "the last balance is kept");
    assert_eq!(shown["balance"]["stale"], true);
    assert!(shown["balance"]["age_ms"].is_u64());
    // No client traffic from here on: the probe finds the upstream back.
    eventually(&gw, "recovery", |s| {
        (s.upstream.status == sidepanel::hub::state::UpstreamStatus::Ok).then_some(())
    })
    .await;
}
