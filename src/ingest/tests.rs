//! Unit tests of the ingest: schema, per-session bookkeeping, the plugin-silent alert, access
//! checks and the token file.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde_json::json;

use super::access::{host_name, load_or_create_token, Access};
use super::apply::{apply, on_request, OpencodeBatch, OpencodeMessage};
use super::event::{parse, Kind, OcTokens};
use super::IngestError;
use crate::gateway::record::{CostSource, Outcome, RequestRecord};
use crate::gateway::usage::{Cost, Usage};
use crate::hub::state::State;

fn ev(name: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"event": name, "timestamp": 5, "data": data})
}

fn batch(events: Vec<serde_json::Value>, at: SystemTime) -> OpencodeMessage {
    let events = events.iter().map(|e| parse(e).expect("valid")).collect();
    OpencodeMessage::Batch(OpencodeBatch::new(at, events))
}

fn record(sid: &str, prompt: u64, completion: u64, at: SystemTime) -> RequestRecord {
    RequestRecord {
        started_at: at,
        method: "POST".into(),
        path: "/chat/completions".into(),
        model: Some("m".into()),
        session_id: Some(sid.into()),
        status: Some(200),
        outcome: Outcome::Ok,
        streamed: true,
        usage: Some(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Usage::default()
        }),
        cost: Some(Cost {
            usd: 0.5,
            diem: 0.0,
        }),
        cost_source: CostSource::Upstream,
        error: None,
        latency_ms: 1.0,
        ttfb_ms: None,
        response_bytes: 0,
        usage_requested: false,
        unscanned: false,
        attempts: 1,
        retries: Vec::new(),
        queue_wait_ms: 0.0,
        limited: None,
    }
}

#[test]
fn known_events_map_to_kinds() {
    let e = parse(&ev(
        "message.part.updated",
        json!({"part": {"id": "p1", "sessionID": "s1", "type": "step-finish",
          "tokens": {"total": 1290, "input": 1034, "output": 49, "reasoning": 7, "cache": {"write": 0, "read": 200}}}}),
    ))
    .expect("step");
    assert_eq!(e.session_id.as_deref(), Some("s1"));
    let want = OcTokens {
        input: 1034,
        output: 49,
        reasoning: 7,
        cache_read: 200,
        cache_write: 0,
        total: Some(1290),
    };
    assert_eq!(
        e.kind,
        Kind::Step {
            id: "p1".into(),
            tokens: want
        }
    );
    let e = parse(&ev(
        "session.status",
        json!({"sessionID": "s", "status": {"type": "retry", "attempt": 2}}),
    ))
    .expect("status");
    assert_eq!(e.kind, Kind::Status("retry".into()));
    let e = parse(&ev("some.future.event", json!({"x": 1}))).expect("unknown names pass");
    assert_eq!((e.kind, e.session_id), (Kind::Other, None));
    let long = "t".repeat(10_000);
    let e = parse(&ev(
        "session.updated",
        json!({"sessionID": "s", "info": {"title": long}}),
    ))
    .expect("cut");
    assert!(matches!(e.kind, Kind::Info { title: Some(t), .. } if t.chars().count() == 256));
}

#[test]
fn schema_errors_name_the_problem() {
    let err = |v: serde_json::Value| parse(&v).expect_err("invalid");
    assert!(err(json!({"timestamp": 1, "data": {}})).contains("`event`"));
    assert!(err(json!({"event": "x", "timestamp": "now", "data": {}})).contains("timestamp"));
    assert!(err(ev("session.status", json!({"sessionID": "s"}))).contains("status.type"));
    assert!(err(ev(
        "message.updated",
        json!({"info": {"id": "m", "role": "assistant", "cost": -1}})
    ))
    .contains("cost"));
    assert!(err(ev("file.edited", json!({"file": 3}))).contains("file"));
    assert!(err(ev("chat.params", json!({"agent": "title"}))).contains("sessionID"));
}

#[test]
fn completed_messages_count_once_and_resends_replace() {
    let mut st = State::default();
    let now = SystemTime::now();
    let msg = |id: &str, done: bool, input: u64, cost: f64| {
        let time = if done {
            json!({"created": 1, "completed": 2})
        } else {
            json!({"created": 1})
        };
        ev(
            "message.updated",
            json!({"sessionID": "s", "info": {"id": id, "role": "assistant",
            "time": time, "cost": cost, "tokens": {"input": input, "output": 1, "reasoning": 0, "cache": {"read": 0, "write": 0}}}}),
        )
    };
    apply(
        &mut st,
        batch(
            vec![
                msg("a", false, 0, 0.0),
                msg("a", true, 10, 0.1),
                msg("a", true, 10, 0.1),
            ],
            now,
        ),
    );
    apply(
        &mut st,
        batch(vec![msg("a", true, 12, 0.2), msg("b", true, 5, 0.05)], now),
    );
    let oc = &st.sessions["s"].opencode;
    assert_eq!(oc.messages.assistant, 2);
    assert_eq!(oc.tokens.input, 17);
    assert!((oc.cost - 0.25).abs() < 1e-12, "{}", oc.cost);
}

#[test]
fn every_batch_publishes_what_replay_needs() {
    let mut st = State::default();
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_123_456);
    let done = |id: &str, completed: bool| {
        let time = if completed {
            json!({"created": 1, "completed": 2})
        } else {
            json!({"created": 1})
        };
        ev(
            "message.updated",
            json!({"sessionID": "s", "info": {"id": id, "role": "assistant", "time": time}}),
        )
    };
    let ups = apply(
        &mut st,
        batch(vec![done("msg_1", true), done("msg_2", false)], at),
    );
    assert_eq!(ups.len(), 1);
    let p = &ups[0].2;
    assert_eq!(p["session"], "s");
    assert_eq!(p["last_active"], 1_700_000_123_456u64);
    assert_eq!(p["plugin"]["batches"], 1);
    assert_eq!(
        p["message_id"], "msg_1",
        "in-progress messages are no point"
    );
    // No session named: the plugin's counters still change, so they are published.
    let ups = apply(&mut st, batch(vec![ev("server.connected", json!({}))], at));
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].2["plugin"]["batches"], 2);
    assert!(ups[0].2.get("session").is_none());
    // A changed plugin-silent interval is published; an unchanged one is not.
    let settings = |s| OpencodeMessage::Settings {
        silent_after: Duration::from_secs(s),
    };
    assert_eq!(apply(&mut st, settings(90)).len(), 1);
    assert!(apply(&mut st, settings(90)).is_empty());
}

#[test]
fn proxied_calls_are_counted_when_a_step_matches_in_either_order() {
    let mut st = State::default();
    let now = SystemTime::now();
    let step = |id: &str, input: u64, output: u64| {
        ev(
            "message.part.updated",
            json!({"sessionID": "s", "part": {"id": id, "type": "step-finish",
            "tokens": {"input": input, "output": output, "reasoning": 0, "cache": {"read": 0, "write": 0}}}}),
        )
    };
    // Step first, then the call; then a call (title) that never gets a step; then call, step.
    apply(&mut st, batch(vec![step("p1", 100, 10)], now));
    for r in [
        record("s", 100, 10, now),
        record("s", 30, 3, now),
        record("s", 200, 20, now),
    ] {
        st.record_request(&r, now);
    }
    apply(
        &mut st,
        batch(vec![step("p2", 200, 20), step("p2", 200, 20)], now),
    );
    let s = &st.sessions["s"];
    assert_eq!(s.totals.requests, 3);
    assert_eq!(
        (s.opencode.counted.requests, s.opencode.counted.total_tokens),
        (2, 330)
    );
    assert_eq!(
        (
            s.opencode.uncounted.requests,
            s.opencode.uncounted.total_tokens
        ),
        (1, 33)
    );
}

#[test]
fn the_silent_alert_needs_a_heard_plugin_and_quiet_traffic() {
    let mut st = State::default();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    apply(
        &mut st,
        OpencodeMessage::Settings {
            silent_after: Duration::from_secs(60),
        },
    );
    // Never heard: traffic alone never alerts.
    let r = record("s", 1, 1, t0);
    assert!(on_request(&mut st, &r, at(0)).is_empty());
    assert!(on_request(&mut st, &r, at(120_000)).is_empty());
    apply(
        &mut st,
        batch(
            vec![ev("session.idle", json!({"sessionID": "s"}))],
            at(130_000),
        ),
    );
    assert!(on_request(&mut st, &r, at(140_000))
        .iter()
        .all(|u| u.2["alert"].is_null()));
    let ups = on_request(&mut st, &r, at(200_000));
    assert!(ups
        .iter()
        .any(|u| u.2["alert"] == "plugin_silent" && u.2["firing"] == true));
    assert!(st.plugin.silent);
    assert!(
        on_request(&mut st, &r, at(300_000))
            .iter()
            .all(|u| u.2["alert"].is_null()),
        "raised once"
    );
    let ups = apply(
        &mut st,
        batch(vec![ev("server.connected", json!({}))], at(301_000)),
    );
    assert!(ups
        .iter()
        .any(|u| u.2["alert"] == "plugin_silent" && u.2["firing"] == false));
    assert!(!st.plugin.silent);
}

#[test]
fn access_checks_host_origin_and_token() {
    let access = Access::new(
        "tok-0123456789abcdef".into(),
        vec!["192.168.1.5:8765".into()],
    );
    let check = |pairs: &[(&'static str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        access.check(&h)
    };
    let auth = ("authorization", "Bearer tok-0123456789abcdef");
    assert_eq!(check(&[("host", "127.0.0.1:8765"), auth]), Ok(()));
    assert_eq!(check(&[("host", "[::1]:8765"), auth]), Ok(()));
    assert_eq!(check(&[("host", "192.168.1.5:8765"), auth]), Ok(()));
    assert_eq!(check(&[auth]).map_err(|e| e.status()), Err(403));
    assert_eq!(
        check(&[("host", "attacker.test"), auth]).map_err(|e| e.status()),
        Err(403)
    );
    assert_eq!(
        check(&[("host", "localhost"), ("authorization", "Basic x")]),
        Err(IngestError::Unauthorized)
    );
    assert_eq!(
        check(&[
            ("host", "localhost"),
            ("authorization", "bearer tok-0123456789abcdef")
        ]),
        Ok(())
    );
    let o = ("origin", "http://attacker.test");
    assert_eq!(
        check(&[("host", "localhost"), o, auth]).map_err(|e| e.status()),
        Err(403)
    );
    assert_eq!(host_name("[::1]:80").as_deref(), Some("::1"));
    assert_eq!(host_name("Example.COM.").as_deref(), Some("example.com"));
    assert_eq!(host_name("a@b"), None);
    assert_eq!(host_name("h:x"), None);
}

#[test]
fn the_token_is_created_once_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("nested/data");
    let t1 = load_or_create_token(&data).expect("create");
    assert_eq!(t1.len(), 64);
    assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
    let path = data.join("token");
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(load_or_create_token(&data).expect("again"), t1);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(load_or_create_token(&data).expect("narrowed"), t1);
    assert_eq!(
        std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&path, "short").expect("write");
    assert!(load_or_create_token(&data).is_err());
}

#[test]
fn per_session_bookkeeping_stays_bounded() {
    let mut st = State::default();
    let now = SystemTime::now();
    let mut events = Vec::new();
    for i in 0..200 {
        events.push(ev(
            "tool.execute.after",
            json!({"sessionID": "s", "tool": format!("tool{i}"), "callID": format!("c{i}"),
                   "args": {"filePath": format!("/p/f{i}.rs")}}),
        ));
        events.push(ev(
            "chat.params",
            json!({"sessionID": "s", "agent": format!("agent{i}")}),
        ));
    }
    apply(&mut st, batch(events, now));
    let oc = &st.sessions["s"].opencode;
    assert_eq!(oc.tool_calls, 200);
    assert!(oc.tools.len() <= super::session::MAX_NAMES + 1);
    assert_eq!(oc.tools.get("other").copied(), Some(200 - 64));
    assert!(oc.agents.len() <= super::session::MAX_NAMES + 1);
    assert_eq!(oc.files_edited.len(), super::session::MAX_FILES);
    assert_eq!(
        oc.files_edited.back().map(String::as_str),
        Some("/p/f199.rs")
    );
}
