//! Shared harness of the session-store tests: a real hub fed with random events, a real store
//! in a temporary directory, and helpers to read the state as JSON.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use serde_json::{json, Value};
use sidepanel::gateway::headers::{LimitWindow, VeniceHeaders};
use sidepanel::gateway::record::{CostSource, Outcome, RequestRecord};
use sidepanel::gateway::usage::{Cost, UpstreamError, Usage};
use sidepanel::hub::state::AlertCurrency;
use sidepanel::hub::{Hub, HubEvent, HubHandle, State};
use sidepanel::ingest::{OpencodeBatch, OpencodeMessage};
use sidepanel::metrics::Metrics;
use sidepanel::pricing::PriceTable;
use sidepanel::store::{Restored, Store, StoreConfig, StoreHandle, StoreTask};

pub const MODELS: [&str; 5] = [
    "kimi-k2-5",
    "qwen3-235b",
    "llama-3.3-70b",
    "venice-uncensored",
    "model-without-a-price",
];
pub const SESSIONS: [&str; 6] = ["ses_a", "ses_b", "ses_c", "ses_d", "ses_e", "ses_f"];

/// A store configuration in `dir` with `snapshot_every`.
pub fn config(dir: &std::path::Path, snapshot_every: u64) -> StoreConfig {
    let mut c = StoreConfig::in_dir(dir);
    c.snapshot_every = snapshot_every;
    c.flush_interval = Duration::from_millis(1);
    c
}

/// A hub resumed from `restored`.
pub fn hub(restored: Restored) -> (Hub, HubHandle) {
    Hub::resume(
        Arc::new(Metrics::new()),
        Arc::new(RwLock::new(PriceTable::venice_defaults())),
        restored.sequence,
        restored.state,
    )
}

/// A store opened in `config`, its writer running, wired to a fresh hub.
pub struct Rig {
    pub hub: Hub,
    pub handle: HubHandle,
    pub store: StoreHandle,
    pub task: StoreTask,
}

pub fn rig(config: &StoreConfig) -> Rig {
    let (store, restored) = Store::open(config).expect("store opens");
    let (hub, handle) = hub(restored);
    let (task, store, sink) = store.start();
    hub.set_sink(sink);
    Rig {
        hub,
        handle,
        store,
        task,
    }
}

/// The hub's state as JSON (as clients and snapshots see it, without derived refresh).
pub fn state_json(h: &HubHandle) -> Value {
    h.with_state(|s| serde_json::to_value(s).expect("state serialises"))
}

/// A state as JSON plus, under `ingest_memory`, the sessions' deduplication memory (which the
/// state's own JSON leaves out), so that comparisons cover the memory too.
pub fn with_memory(s: &State) -> Value {
    let mut v = serde_json::to_value(s).expect("state serialises");
    v["ingest_memory"] = serde_json::to_value(s.ingest_memory()).expect("memory serialises");
    v
}

/// The hub's state with its memory ([`with_memory`]).
pub fn live_json(h: &HubHandle) -> Value {
    h.with_state(with_memory)
}

fn time(ms: u64, rng: &mut fastrand::Rng) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms) + Duration::from_nanos(rng.u64(0..1_000_000))
}

fn maybe<T>(yes: bool, v: T) -> Option<T> {
    yes.then_some(v)
}

/// A random finished request at about `ms`.
pub fn record(rng: &mut fastrand::Rng, ms: u64) -> RequestRecord {
    let status = [
        Some(200),
        Some(200),
        Some(200),
        Some(429),
        Some(500),
        Some(503),
        None,
    ][rng.usize(0..7)];
    let outcome = match status {
        Some(200) if rng.f64() < 0.9 => Outcome::Ok,
        Some(200) => Outcome::Truncated,
        Some(_) => Outcome::HttpError,
        None => [Outcome::ConnectFailed, Outcome::UpstreamFailed][rng.usize(0..2)],
    };
    let prompt = rng.u64(0..5000);
    let completion = rng.u64(0..2000);
    RequestRecord {
        started_at: time(ms, rng),
        method: "POST".into(),
        path: "/chat/completions".into(),
        model: maybe(
            rng.f64() < 0.95,
            MODELS[rng.usize(0..MODELS.len())].to_owned(),
        ),
        session_id: maybe(
            rng.f64() < 0.85,
            SESSIONS[rng.usize(0..SESSIONS.len())].to_owned(),
        ),
        status,
        outcome,
        streamed: rng.bool(),
        usage: maybe(
            rng.f64() < 0.9,
            Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                cached_tokens: rng.u64(0..prompt + 1),
                cache_creation_tokens: rng.u64(0..100),
                reasoning_tokens: rng.u64(0..completion + 1),
            },
        ),
        cost: maybe(
            rng.f64() < 0.5,
            Cost {
                usd: rng.f64() * 0.05,
                diem: rng.f64() * 0.01,
            },
        ),
        cost_source: CostSource::Unknown,
        error: maybe(
            rng.f64() < 0.2,
            UpstreamError {
                message: format!("upstream said no #{}", rng.u32(..)),
                code: maybe(rng.f64() < 0.5, "rate_limited".to_owned()),
            },
        ),
        latency_ms: rng.f64() * 3000.0,
        ttfb_ms: maybe(rng.f64() < 0.8, rng.f64() * 500.0),
        response_bytes: rng.u64(0..100_000),
        usage_requested: rng.bool(),
        unscanned: rng.f64() < 0.05,
        attempts: rng.u32(0..4),
        retries: [vec![], vec!["rate_limited"], vec!["connect", "unavailable"]][rng.usize(0..3)]
            .clone(),
        queue_wait_ms: rng.f64() * 100.0,
        limited: None,
    }
}

fn window(rng: &mut fastrand::Rng, ms: u64) -> LimitWindow {
    LimitWindow {
        limit: maybe(rng.f64() < 0.7, rng.u64(1..1_000_000)),
        remaining: maybe(rng.f64() < 0.7, rng.u64(0..1_000_000)),
        reset_at: maybe(rng.f64() < 0.5, time(ms + 60_000, rng)),
    }
}

/// A random event of the proxy, the Lean component or the user (no OpenCode ingest: see
/// [`ingest_event`]).
pub fn event(rng: &mut fastrand::Rng, i: u64) -> HubEvent {
    let ms = 1_700_000_000_000 + i * 250;
    match rng.u32(0..100) {
        0..=54 => HubEvent::Request(Box::new(record(rng, ms))),
        55..=84 => HubEvent::Headers {
            model: maybe(
                rng.f64() < 0.8,
                MODELS[rng.usize(0..MODELS.len())].to_owned(),
            ),
            headers: Box::new(VeniceHeaders {
                balance_diem: maybe(rng.f64() < 0.6, rng.f64() * 100.0),
                balance_usd: maybe(rng.f64() < 0.6, rng.f64() * 50.0),
                balance_vcu: maybe(rng.f64() < 0.1, rng.f64() * 1000.0),
                requests: window(rng, ms),
                tokens: window(rng, ms),
                limit_type: maybe(rng.f64() < 0.3, "api_key".to_owned()),
                model_id: maybe(
                    rng.f64() < 0.3,
                    MODELS[rng.usize(0..MODELS.len())].to_owned(),
                ),
                ..VeniceHeaders::default()
            }),
            at: time(ms, rng),
        },
        85..=94 => HubEvent::Proof {
            file: format!("Proofs/F{}.lean", rng.u32(0..4)),
            state: json!({"status": "complete", "version": rng.u32(..), "goals": [rng.f64()]}),
        },
        _ => HubEvent::SetAlert {
            currency: [AlertCurrency::Diem, AlertCurrency::Usd][rng.usize(0..2)],
            below: maybe(rng.f64() < 0.7, rng.f64() * 20.0),
        },
    }
}

/// A random batch of OpenCode plugin events.
pub fn ingest_event(rng: &mut fastrand::Rng, i: u64) -> HubEvent {
    let sid = SESSIONS[rng.usize(0..SESSIONS.len())];
    let ts = 1_700_000_000_000 + i * 250;
    let (input, output) = (rng.u64(0..5000), rng.u64(0..2000));
    let tokens = json!({"total": input + output, "input": input, "output": output,
                        "reasoning": 0, "cache": {"read": 0, "write": 0}});
    let raw = match rng.u32(0..9) {
        0 => json!({"event": "session.created", "timestamp": ts,
                    "data": {"sessionID": sid, "info": {"id": sid, "title": format!("t{i}")}}}),
        1 => json!({"event": "session.idle", "timestamp": ts, "data": {"sessionID": sid}}),
        2 => json!({"event": "session.status", "timestamp": ts,
                    "data": {"sessionID": sid, "status": {"type": "busy"}}}),
        3 => json!({"event": "session.error", "timestamp": ts,
                    "data": {"sessionID": sid, "error": {"name": "Oops"}}}),
        4 => json!({"event": "message.updated", "timestamp": ts,
                    "data": {"sessionID": sid, "info": {
                        "id": format!("msg_{}", rng.u32(0..50)), "sessionID": sid,
                        "role": "assistant", "time": {"created": 1, "completed": 2},
                        "cost": rng.f64() * 0.01, "tokens": tokens}}}),
        5 => json!({"event": "message.part.updated", "timestamp": ts,
                    "data": {"sessionID": sid, "part": {
                        "id": format!("prt_{i}"), "sessionID": sid, "messageID": "msg_x",
                        "type": "step-finish", "tokens": tokens, "cost": 0.0}}}),
        6 => json!({"event": "plugin.started", "timestamp": ts,
                    "data": {"version": format!("0.{}", rng.u32(0..3))}}),
        7 => json!({"event": "server.connected", "timestamp": ts, "data": {}}),
        _ => json!({"event": "file.edited", "timestamp": ts,
                    "data": {"sessionID": sid, "file": format!("/p/F{}.lean", rng.u32(0..30))}}),
    };
    let ev = sidepanel::ingest::event::parse(&raw).expect("valid plugin event");
    // Plugin arrival times go forward but not in step with the hub's clock.
    let received = SystemTime::UNIX_EPOCH + Duration::from_millis(ts + rng.u64(0..5000));
    HubEvent::Opencode(OpencodeMessage::Batch(OpencodeBatch::new(
        received,
        vec![ev],
    )))
}

/// A tokio runtime for the async store handle.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Waits until the store has committed everything the hub published, then stops the writer.
pub fn finish(rt: &tokio::runtime::Runtime, rig: &Rig) {
    let last = rig.handle.with_state(|s| s.sequence);
    rt.block_on(rig.store.wait_committed(last, Duration::from_secs(60)))
        .expect("everything committed");
    assert!(rig.store.close(Duration::from_secs(60)), "writer stopped");
}

/// The paths where two JSON values differ (at most 20), for readable assertion messages.
pub fn diff(a: &Value, b: &Value) -> Vec<String> {
    fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
        if out.len() >= 20 || a == b {
            return;
        }
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = Value::Null;
                    walk(
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        format!("{path}.{k}"),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, format!("{path}[{i}]"), out);
                }
            }
            _ => out.push(format!("{path}: {a} != {b}")),
        }
    }
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

/// Asserts two states are equal, naming where they differ.
#[track_caller]
pub fn assert_same(a: &Value, b: &Value, what: &str) {
    let d = diff(a, b);
    assert!(d.is_empty(), "{what}: states differ at\n{}", d.join("\n"));
}
