//! Micro-benchmarks of the gateway's per-request work (issue 9), each on realistic input:
//!
//! * `headers/parse_venice` — `VeniceHeaders::parse` of a full Venice response header set
//!   (balance, six rate-limit headers, model id, cf-ray, and the usual HTTP headers around them);
//! * `sse/scan_*` — the incremental SSE scanner over an 800-token streamed answer ending with
//!   the `choices: []` usage + cost chunk, fed in 1.4 KB network-sized pieces (lines split across
//!   pieces) and one event per piece; reported in bytes/s (MB/s);
//! * `usage/parse_json_body` — the usage + cost of a non-streamed `chat.completion` body;
//! * `request/prepare_streamed_*` — reading and amending (`include_usage`) a streamed chat
//!   request as OpenCode sends it (system prompt, tools, a long conversation: ~200 KB), against
//!   a baseline that parses it into a `serde_json::Value` tree and re-encodes it (what the
//!   gateway did before);
//! * `rpc/encode_state_update` — a `usage` `state.update` JSON-RPC notification as the WebSocket
//!   hub sends it (one finished request with its record);
//! * `hub/apply_request_*` — one finished request through the hub (`Hub::apply`), on a fresh hub
//!   and on one whose update history is full.
//!
//! Store append is in `benches/store.rs`. Run: `cargo bench --bench hot_path` (add
//! `-- --quick` for a short run). Figures in docs/BENCHMARKS.md, "Gateway overhead".

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::RwLock;
use serde_json::json;
use sidepanel::gateway::headers::VeniceHeaders;
use sidepanel::gateway::record::{CostSource, Outcome, RequestRecord};
use sidepanel::gateway::rewrite::prepare_chat_body;
use sidepanel::gateway::sse::SseScanner;
use sidepanel::gateway::usage::{self, Cost, Usage};
use sidepanel::hub::update::HISTORY;
use sidepanel::hub::{Hub, HubEvent, HubHandle, StateUpdate, UpdateSource, UpdateType};
use sidepanel::metrics::Metrics;
use sidepanel::pricing::PriceTable;
use sidepanel::ws::rpc;

/// The headers of a real-looking Venice `/chat/completions` response.
fn venice_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("date", "Tue, 24 Nov 2026 22:14:07 GMT"),
        ("content-type", "application/json; charset=utf-8"),
        ("content-length", "1187"),
        ("connection", "keep-alive"),
        ("cf-ray", "9a1b2c3d4e5f6789-SJC"),
        ("cf-cache-status", "DYNAMIC"),
        ("server", "cloudflare"),
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("vary", "Accept-Encoding"),
        ("x-venice-version", "20250828.222653"),
        ("x-venice-model-id", "zai-org-glm-5-1"),
        ("x-venice-model-name", "GLM 5.1"),
        ("x-venice-balance-diem", "79.90338836"),
        ("x-venice-balance-usd", "50.50"),
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "497"),
        ("x-ratelimit-reset-requests", "1795997707"),
        ("x-ratelimit-limit-tokens", "1000000"),
        ("x-ratelimit-remaining-tokens", "998233"),
        ("x-ratelimit-reset-tokens", "53"),
        ("x-ratelimit-type", "api_key"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn chunk(id: &str, delta: serde_json::Value, finish: serde_json::Value) -> String {
    let v = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1_795_997_647u64,
        "model": "zai-org-glm-5-1",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {v}\n\n")
}

/// An 800-token answer in 200 content chunks, the finish chunk, the usage + cost chunk, [DONE].
fn sse_stream() -> Vec<u8> {
    let id = "chatcmpl-7f3a9c1e2b4d6f80";
    let mut s = chunk(id, json!({"role": "assistant", "content": ""}), json!(null));
    let words = [
        "The ",
        "gateway ",
        "forwards ",
        "each ",
        "chunk ",
        "unchanged; ",
    ];
    for i in 0..200 {
        let text: String = (0..4).map(|k| words[(i * 4 + k) % words.len()]).collect();
        s.push_str(&chunk(id, json!({"content": text}), json!(null)));
    }
    s.push_str(&chunk(id, json!({}), json!("stop")));
    let usage = json!({
        "id": id, "object": "chat.completion.chunk", "created": 1_795_997_647u64,
        "model": "zai-org-glm-5-1", "choices": [],
        "usage": {"prompt_tokens": 14_212, "completion_tokens": 800, "total_tokens": 15_012,
                  "prompt_tokens_details": {"cached_tokens": 12_800, "cache_creation_input_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
        "cost": {"usd": 0.0061, "diem": 0.0},
    });
    s.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    s.into_bytes()
}

fn completion_body() -> Vec<u8> {
    json!({
        "id": "chatcmpl-7f3a9c1e2b4d6f80", "object": "chat.completion", "created": 1_795_997_647u64,
        "model": "zai-org-glm-5-1",
        "choices": [{"index": 0, "message": {"role": "assistant",
            "content": "The gateway forwards each chunk unchanged; ".repeat(20)},
            "logprobs": null, "finish_reason": "stop", "stop_reason": null}],
        "usage": {"prompt_tokens": 14_212, "completion_tokens": 160, "total_tokens": 14_372,
                  "prompt_tokens_details": {"cached_tokens": 12_800, "cache_creation_input_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
        "cost": {"usd": 0.0021, "diem": 0.0},
        "venice_parameters": {"enable_web_search": "off", "include_venice_system_prompt": true},
    })
    .to_string()
    .into_bytes()
}

fn record(i: u64) -> RequestRecord {
    RequestRecord {
        started_at: std::time::UNIX_EPOCH + Duration::from_millis(1_795_997_647_000 + i),
        method: "POST".into(),
        path: "/chat/completions".into(),
        model: Some("zai-org-glm-5-1".into()),
        session_id: Some(format!("ses_4f2a9b7c1d3e5f{:02}", i % 8)),
        status: Some(200),
        outcome: Outcome::Ok,
        streamed: true,
        usage: Some(Usage {
            prompt_tokens: 14_212,
            completion_tokens: 800,
            total_tokens: 15_012,
            cached_tokens: 12_800,
            cache_creation_tokens: 0,
            reasoning_tokens: 0,
        }),
        cost: Some(Cost {
            usd: 0.0061,
            diem: 0.0,
        }),
        cost_source: CostSource::Upstream,
        error: None,
        latency_ms: 8_412.5,
        ttfb_ms: Some(612.2),
        response_bytes: 61_432,
        usage_requested: true,
        unscanned: false,
        attempts: 1,
        retries: Vec::new(),
        queue_wait_ms: 0.0,
        limited: None,
    }
}

fn state_update() -> StateUpdate {
    let record = record(0);
    StateUpdate::new(
        UpdateType::Usage,
        1_795_997_655_412,
        48_213,
        json!({
            "request": record,
            "model": {"model": "zai-org-glm-5-1", "requests": 212, "prompt_tokens": 2_104_332,
                      "completion_tokens": 98_211, "cost_usd": 1.3121},
            "session": {"id": "ses_4f2a9b7c1d3e5f60", "requests": 57, "cost_usd": 0.4112},
        }),
        UpdateSource::Venice,
    )
}

fn headers(c: &mut Criterion) {
    let h = venice_headers();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_997_647);
    let mut g = c.benchmark_group("headers");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_venice", |b| {
        b.iter(|| VeniceHeaders::parse(black_box(&h), now))
    });
    g.finish();
}

fn sse(c: &mut Criterion) {
    let stream = sse_stream();
    let events: Vec<&[u8]> = {
        let mut v = Vec::new();
        let mut rest = &stream[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\n\n") {
            v.push(&rest[..i + 2]);
            rest = &rest[i + 2..];
        }
        v
    };
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("scan_stream_1400b_pieces", |b| {
        b.iter(|| {
            let mut s = SseScanner::new();
            for piece in stream.chunks(1400) {
                s.feed(black_box(piece));
            }
            s.finish();
            assert!(s.saw_done() && s.report().usage.is_some());
            s.events()
        })
    });
    g.bench_function("scan_stream_event_per_piece", |b| {
        b.iter(|| {
            let mut s = SseScanner::new();
            for piece in &events {
                s.feed(black_box(piece));
            }
            s.finish();
            s.events()
        })
    });
    g.finish();
}

fn usage_json(c: &mut Criterion) {
    let body = completion_body();
    let mut g = c.benchmark_group("usage");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse_json_body", |b| {
        b.iter(|| usage::parse_json(black_box(&body)))
    });
    g.finish();
}

/// A streamed OpenCode-like chat request: ~200 KB of system prompt, tools and conversation.
fn opencode_request() -> bytes::Bytes {
    let turns: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("turn {i}: {}", "let x = foo(bar, \"baz\"); // é\n".repeat(100)),
            })
        })
        .collect();
    let tools: Vec<serde_json::Value> = (0..20)
        .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}"), "description": "d".repeat(300), "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}))
        .collect();
    let body = json!({
        "model": "zai-org-glm-5-1",
        "stream": true,
        "max_completion_tokens": 32000,
        "messages": turns,
        "tools": tools,
    });
    bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

fn request_prepare(c: &mut Criterion) {
    let body = opencode_request();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("prepare_streamed_baseline_value_tree", |b| {
        b.iter(|| {
            let mut v: serde_json::Value =
                serde_json::from_slice(black_box(&body)).unwrap_or_default();
            v["stream_options"] = json!({"include_usage": true});
            serde_json::to_vec(&v).unwrap_or_default()
        })
    });
    g.bench_function("prepare_streamed", |b| {
        b.iter(|| prepare_chat_body(black_box(body.clone())))
    });
    g.finish();
}

fn rpc_encode(c: &mut Criterion) {
    let update = state_update();
    let len = rpc::notification("state.update", &update)
        .expect("encodes")
        .len();
    let mut g = c.benchmark_group("rpc");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("encode_state_update", |b| {
        b.iter(|| rpc::notification("state.update", black_box(&update)))
    });
    g.finish();
}

fn new_hub() -> (Hub, HubHandle) {
    Hub::new(
        Arc::new(Metrics::new()),
        Arc::new(RwLock::new(PriceTable::venice_defaults())),
    )
}

/// One finished request through the hub, on a fresh hub and on one whose update history is full
/// (what a long-running gateway has): the difference is what the hub pays per event for the
/// length of its history.
fn hub_apply(c: &mut Criterion) {
    const N: u64 = 64;
    let mut g = c.benchmark_group("hub");
    g.throughput(Throughput::Elements(N));
    g.bench_function("apply_request_fresh_hub", |b| {
        b.iter_batched(
            new_hub,
            |(hub, handle)| {
                for i in 0..N {
                    hub.apply(HubEvent::Request(Box::new(record(i))));
                }
                (hub, handle)
            },
            BatchSize::SmallInput,
        )
    });
    let (full, _handle) = new_hub();
    for i in 0..(HISTORY as u64 + 100) {
        full.apply(HubEvent::Request(Box::new(record(i))));
    }
    let mut i = 0u64;
    g.bench_function("apply_request_full_history", |b| {
        b.iter(|| {
            for _ in 0..N {
                i += 1;
                full.apply(HubEvent::Request(Box::new(record(i))));
            }
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    headers,
    sse,
    usage_json,
    request_prepare,
    rpc_encode,
    hub_apply
);
criterion_main!(benches);
