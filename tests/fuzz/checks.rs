//! The bodies of the fuzz targets, shared by the cargo-fuzz binaries (`fuzz_targets/*.rs`) and
//! the stable replay test (`tests/fuzz_corpus.rs`), so both drive exactly the same entry points.
//!
//! Each function takes arbitrary bytes, feeds them to one parser that reads what a peer sends,
//! and asserts the parser's own promises (bounds, determinism, no secret in an error) on top of
//! "never panics". A failed assertion is a crash to libFuzzer.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sidepanel::gateway::headers::{
    normalise_reset, parse_retry_after, VeniceHeaders, MAX_EPOCH_SECS, MAX_RELATIVE_SECS,
};
use sidepanel::gateway::sse::{SseScanner, MAX_LINE_BYTES};
use sidepanel::hub::{Hub, HubEvent, HubHandle};
use sidepanel::ingest::event::{self, Kind, MAX_EVENT_NAME, MAX_ID, MAX_PATH, MAX_TEXT};
use sidepanel::ingest::{OpencodeBatch, OpencodeMessage};
use sidepanel::metrics::Metrics;
use sidepanel::pricing::PriceTable;
use sidepanel::ws::methods::Methods;
use sidepanel::ws::rpc::{self, Incoming, Response};

/// The headers the parser reads; an input line picks one by its first byte.
const NAMES: [&str; 13] = [
    "x-venice-balance-diem",
    "x-venice-balance-usd",
    "x-venice-balance-vcu",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-type",
    "retry-after",
    "x-venice-model-id",
    "cf-ray",
];

/// A fixed "now" (2026-11-01) so runs are reproducible.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_793_491_200)
}

/// Venice header parsing: each input line is `<name selector byte><value bytes>`.
pub fn venice_headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&sel, value)) = line.split_first() else {
            continue;
        };
        let name = match NAMES.get(usize::from(sel) % 16) {
            Some(n) => HeaderName::from_static(n),
            None => match value.iter().position(|&b| b == b':') {
                Some(i) => match HeaderName::from_bytes(&value[..i]) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
                None => continue,
            },
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    for at in [now(), UNIX_EPOCH] {
        let h = VeniceHeaders::parse(&headers, at);
        let latest_epoch = UNIX_EPOCH + Duration::from_secs(MAX_EPOCH_SECS + 1);
        let latest_relative = at + Duration::from_secs(MAX_RELATIVE_SECS + 1);
        for reset in [h.requests.reset_at, h.tokens.reset_at]
            .into_iter()
            .flatten()
        {
            assert!(reset <= latest_epoch.max(latest_relative), "absurd reset");
        }
        for b in [h.balance_diem, h.balance_usd, h.balance_vcu]
            .into_iter()
            .flatten()
        {
            assert!(b.is_finite(), "balances are finite");
        }
        let mut names = h.malformed.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), h.malformed.len(), "each malformed name once");
        assert_eq!(h, VeniceHeaders::parse(&headers, at), "deterministic");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = normalise_reset(text, now());
        let _ = parse_retry_after(text, now());
    }
}

/// The SSE scanner fed the same stream whole, byte by byte and cut where the input says must
/// report the same thing. Input: `[flags, ncuts, cut (2 bytes) × ncuts, stream…]`; flags with
/// low nibble 1 (one input in 16) prefix a line near [`MAX_LINE_BYTES`] so the oversized-line
/// path is reached without making every input slow.
pub fn sse_scanner(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&ncuts, rest)) = rest.split_first() else {
        return;
    };
    let ncuts = usize::from(ncuts % 8);
    if rest.len() < ncuts * 2 {
        return;
    }
    let (cut_bytes, tail) = rest.split_at(ncuts * 2);
    let mut stream = Vec::new();
    if flags & 0x0f == 1 {
        // A comment line: cheap to skip once complete, the same to the length bound.
        let len = MAX_LINE_BYTES - 8 + usize::from(flags >> 4);
        stream.extend_from_slice(b": ");
        stream.resize(len, b'u');
    }
    stream.extend_from_slice(tail);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) * stream.len() / 65_536)
        .collect();
    cuts.sort_unstable();

    let whole = scan(std::iter::once(&stream[..]));
    let mut parts = Vec::new();
    let mut from = 0;
    for &c in &cuts {
        parts.push(&stream[from..c]);
        from = c;
    }
    parts.push(&stream[from..]);
    assert_eq!(
        whole,
        scan(parts.into_iter()),
        "chunk splits change nothing"
    );
    if stream.len() <= 4096 {
        assert_eq!(
            whole,
            scan(stream.chunks(1)),
            "byte by byte changes nothing"
        );
    }
}

/// What a scanner reports after `chunks`, in a comparable form (Debug, so NaN compares equal).
fn scan<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> String {
    let mut s = SseScanner::new();
    for c in chunks {
        s.feed(c);
    }
    s.finish();
    format!(
        "{:?} done={} events={} oversized={}",
        s.report(),
        s.saw_done(),
        s.events(),
        s.oversized_lines()
    )
}

/// A hub whose task does not run (its handle still answers reads) and the methods over it.
fn methods() -> &'static (Methods, tokio::runtime::Runtime) {
    static M: OnceLock<(Methods, tokio::runtime::Runtime)> = OnceLock::new();
    M.get_or_init(|| {
        let (_hub, handle) = new_hub();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        (Methods::new(handle, None), rt)
    })
}

fn new_hub() -> (Hub, HubHandle) {
    Hub::new(
        Arc::new(Metrics::new()),
        Arc::new(parking_lot::RwLock::new(PriceTable::default())),
    )
}

/// The JSON-RPC decoder and method dispatch: every frame gets well-formed responses with the
/// spec's codes, and ids are echoed.
pub fn jsonrpc(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let items = match rpc::decode(text) {
        Err(resp) => {
            check_response(&resp, None);
            return;
        }
        Ok(Incoming::Single(item)) => vec![item],
        Ok(Incoming::Batch(items)) => {
            assert!(!items.is_empty() && items.len() <= rpc::MAX_BATCH);
            items
        }
    };
    let (methods, rt) = methods();
    for item in items {
        match item {
            Err(resp) => check_response(&resp, None),
            Ok(req) => {
                let id = req.id.clone().unwrap_or(rpc::Id::Null);
                let resp = match rt.block_on(methods.call(&req.method, req.params)) {
                    Ok(reply) => Response::result(id.clone(), reply.result),
                    Err(e) => Response::error(id.clone(), e),
                };
                check_response(&resp, Some(&id));
            }
        }
    }
}

fn check_response(resp: &Response, id: Option<&rpc::Id>) {
    if let Some(id) = id {
        assert_eq!(&resp.id, id, "the id is echoed");
    }
    assert!(
        resp.result.is_some() != resp.error.is_some(),
        "one of result and error"
    );
    if let Some(e) = &resp.error {
        let known = [
            rpc::PARSE_ERROR,
            rpc::INVALID_REQUEST,
            rpc::METHOD_NOT_FOUND,
            rpc::INVALID_PARAMS,
            rpc::INTERNAL_ERROR,
            rpc::LEAN_UNAVAILABLE,
            rpc::NOT_AVAILABLE,
            rpc::LEAN_FAILED,
        ];
        assert!(known.contains(&e.code), "unknown code {}", e.code);
        assert!(e.message.len() <= 4096, "error messages are bounded");
    }
    let text = rpc::encode(resp);
    let back: Value = serde_json::from_str(&text).expect("responses are JSON");
    assert_eq!(back["jsonrpc"], "2.0");
}

/// The plugin event decoder, then the hub applying what it accepted (twice: resends dedupe).
pub fn plugin_event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let items = match value {
        Value::Array(items) => items,
        v => vec![v],
    };
    let mut events = Vec::new();
    for item in &items {
        match event::parse(item) {
            Ok(ev) => {
                assert!(ev.name.len() <= MAX_EVENT_NAME);
                assert!(ev.session_id.as_ref().is_none_or(|s| s.len() <= MAX_ID));
                match &ev.kind {
                    Kind::FileEdited(p) => assert!(p.len() <= MAX_PATH),
                    Kind::Status(s) | Kind::Error(s) => assert!(s.chars().count() <= MAX_TEXT),
                    Kind::Tool { tool, file, .. } => {
                        assert!(tool.chars().count() <= MAX_TEXT);
                        assert!(file.as_ref().is_none_or(|f| f.len() <= MAX_PATH));
                    }
                    _ => {}
                }
                events.push(ev);
            }
            Err(e) => assert!(!e.is_empty(), "a refusal says why"),
        }
    }
    if events.is_empty() {
        return;
    }
    let (hub, handle) = new_hub();
    for _ in 0..2 {
        let batch = OpencodeBatch::new(now(), events.clone());
        hub.apply(HubEvent::Opencode(OpencodeMessage::Batch(batch)));
    }
    let state = handle.snapshot_json(now());
    assert!(state.is_object(), "the state serialises");
}

/// A Venice key no configuration error or `Debug` output may contain.
const MARKER_KEY: &str = "fuzz-marker-venice-key-3b9e";

/// The config loader on arbitrary TOML. Keys that name files to read are skipped (a fuzzer
/// naming `/dev/zero` would only test the file system).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("_file") || text.contains("\\u") || text.contains("\\U") {
        return;
    }
    let overrides = sidepanel::config::Overrides {
        api_key: Some(MARKER_KEY.to_owned()),
        ..Default::default()
    };
    match sidepanel::config::load_str(text, &overrides) {
        Ok(c) => {
            assert!(
                !format!("{c:?}").contains(MARKER_KEY),
                "Debug redacts the key"
            );
            assert!((1..=64).contains(&c.threads));
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert!(!msg.contains(MARKER_KEY), "errors never carry the key");
        }
    }
}
