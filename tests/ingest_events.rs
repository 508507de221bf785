//! `POST /events` end to end: the real gateway (in front of the simulator) for proxied traffic
//! and its hub, and `/events` served through pingora by `sidepanel::ingest::handle` (the
//! function the gateway's `request_filter` calls), with real HTTP on loopback.
//!
//! The last test posts to the gateway's own `/events` on its public port.

mod common;
mod ingest_support;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use ingest_support::{assistant, ev, post, raw, start, step};
use sidepanel::hub::UpdateType;
use sidepanel::ingest::{Ingest, IngestConfig};
use sidepanel::lean::{LeanControl, LeanError};
use sidepanel::simulator::{self, SimConfig};

use ingest_support::{chat, setup, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_get_the_right_4xx() {
    let cfg = IngestConfig {
        max_body_bytes: 4096,
        max_events: 3,
        ..IngestConfig::default()
    };
    let (_sim, _gw, events) = setup(cfg).await;
    let a = events.addr;
    let host = a.to_string();
    let auth = format!("Bearer {TOKEN}");
    let json_headers = [
        ("host", host.as_str()),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let r = raw(a, "POST", &json_headers, b"{\"event\": ").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let text = [
        json_headers[0],
        json_headers[1],
        ("content-type", "text/plain"),
    ];
    let r = raw(a, "POST", &text, b"{}").await;
    assert_eq!(r.status, 415);
    let big = vec![b' '; 5000];
    let r = raw(a, "POST", &json_headers, &big).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let r = post(
        a,
        TOKEN,
        &json!([
            ev("a", json!({})),
            ev("b", json!({})),
            ev("c", json!({})),
            ev("d", json!({}))
        ]),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (413, Some("too_many_events"))
    );
    let r = raw(a, "GET", &json_headers, b"").await;
    assert_eq!(r.status, 405);
    let r = post(
        a,
        TOKEN,
        &json!({"event": "session.idle", "data": {"sessionID": "s"}}),
    )
    .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["rejected"][0]["index"], 0);
    assert!(r.body["rejected"][0]["error"]
        .as_str()
        .unwrap_or("")
        .contains("timestamp"));
    for bad in [
        json!(42),
        json!([{"event": "x", "timestamp": -1, "data": {}}]),
        json!([{"event": "has space", "timestamp": 1, "data": {}}]),
        json!([{"event": "x", "timestamp": 1, "data": []}]),
        json!([{"event": "x", "timestamp": 1, "data": {}, "extra": 1}]),
        json!([ev("session.idle", json!({}))]),
        json!([ev(
            "message.updated",
            json!({"sessionID": "s", "info": {"id": "m"}})
        )]),
        json!([ev("session.created", json!({"sessionID": "s\n"}))]),
        json!([ev(
            "message.part.updated",
            json!({"part": {"id": "p", "type": "step-finish", "tokens": {"input": "9"}}})
        )]),
    ] {
        let r = post(a, TOKEN, &bad).await;
        assert_eq!(r.status, 422, "{bad} -> {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid_event");
    }
    let r = post(a, TOKEN, &json!([])).await;
    assert_eq!((r.status, r.body["accepted"].as_u64()), (202, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_host_and_origin_are_checked() {
    let (_sim, _gw, events) = setup(IngestConfig::default()).await;
    let a = events.addr;
    let host = a.to_string();
    let body = json!(ev("server.connected", json!({}))).to_string();
    let send = |headers: Vec<(&'static str, String)>| {
        let body = body.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw(a, "POST", &h, body.as_bytes()).await.status
        }
    };
    let ct = ("content-type", "application/json".to_owned());
    let bearer = ("authorization", format!("Bearer {TOKEN}"));
    let h = ("host", host.clone());
    assert_eq!(send(vec![h.clone(), ct.clone()]).await, 401);
    let wrong = ("authorization", "Bearer nope".to_owned());
    assert_eq!(send(vec![h.clone(), ct.clone(), wrong]).await, 401);
    let alt = ("x-sidepanel-token", TOKEN.to_owned());
    assert_eq!(send(vec![h.clone(), ct.clone(), alt]).await, 202);
    assert_eq!(send(vec![h.clone(), ct.clone(), bearer.clone()]).await, 202);
    let localhost = ("host", "localhost:8765".to_owned());
    assert_eq!(send(vec![localhost, ct.clone(), bearer.clone()]).await, 202);
    for bad_host in [
        "evil.example",
        "evil.example:8765",
        "127.0.0.1.evil.example",
    ] {
        let hh = ("host", bad_host.to_owned());
        assert_eq!(
            send(vec![hh, ct.clone(), bearer.clone()]).await,
            403,
            "{bad_host}"
        );
    }
    for origin in [
        "http://evil.example",
        "https://localhost",
        "null",
        "http://localhost.evil",
    ] {
        let o = ("origin", origin.to_owned());
        assert_eq!(
            send(vec![h.clone(), ct.clone(), bearer.clone(), o]).await,
            403,
            "{origin}"
        );
    }
    let o = ("origin", "http://localhost:8765".to_owned());
    assert_eq!(
        send(vec![h.clone(), ct.clone(), bearer.clone(), o]).await,
        202
    );
    // A foreign Origin is refused even with the right token, before anything is read.
    let o = ("origin", "http://evil.example".to_owned());
    assert_eq!(send(vec![h, o]).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_becomes_session_state_with_messages_deduplicated() {
    let (_sim, gw, events) = setup(IngestConfig::default()).await;
    let mut updates = gw.hub.subscribe();
    let sid = "ses_batch1";
    let batch = json!([
        ev("session.created", json!({"sessionID": sid, "info": {"id": sid, "title": "Prove it", "directory": "/p"}})),
        ev("session.status", json!({"sessionID": sid, "status": {"type": "busy"}})),
        ev("message.updated", json!({"sessionID": sid, "info": {"id": "msg_u", "role": "user", "time": {"created": 1}}})),
        assistant(sid, "msg_a", false, 0, 0, 0.0),
        assistant(sid, "msg_a", true, 100, 20, 0.01),
        assistant(sid, "msg_a", true, 100, 20, 0.01),
        ev("message.part.updated", json!({"sessionID": sid, "part": {"id": "prt_t", "sessionID": sid, "type": "tool",
            "callID": "call_1", "tool": "edit", "state": {"status": "completed", "input": {"filePath": "/p/A.lean"}}}})),
        ev("tool.execute.after", json!({"sessionID": sid, "tool": "edit", "callID": "call_1", "args": {"filePath": "/p/A.lean"}})),
        ev("chat.params", json!({"sessionID": sid, "agent": "title", "model": {"providerID": "venice", "modelID": "m"}})),
        ev("chat.params", json!({"sessionID": sid, "agent": "build", "model": {"providerID": "venice", "modelID": "m"}})),
        {"event": "broken"},
        ev("session.idle", json!({"sessionID": sid})),
    ]);
    let r = post(events.addr, TOKEN, &batch).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["accepted"], 11);
    assert_eq!(r.body["rejected"][0]["index"], 10);
    // The same completed message again, in a later batch: still counted once.
    let r = post(
        events.addr,
        TOKEN,
        &json!([assistant(sid, "msg_a", true, 100, 20, 0.01)]),
    )
    .await;
    assert_eq!(r.status, 202);
    let oc = common::eventually(&gw, "the session's OpenCode state", |s| {
        let oc = &s.sessions.get(sid)?.opencode;
        (s.plugin.batches >= 2).then(|| oc.clone())
    })
    .await;
    assert_eq!(oc.title.as_deref(), Some("Prove it"));
    assert_eq!(oc.status.as_deref(), Some("idle"));
    assert_eq!((oc.messages.user, oc.messages.assistant), (1, 1));
    assert_eq!(
        (oc.tokens.input, oc.tokens.output, oc.cost),
        (100, 20, 0.01)
    );
    assert_eq!((oc.tool_calls, oc.tools.get("edit").copied()), (1, Some(1)));
    assert_eq!(oc.files_edited.iter().collect::<Vec<_>>(), ["/p/A.lean"]);
    assert_eq!(
        (oc.title_calls, oc.agents.get("build").copied()),
        (1, Some(1))
    );
    // Subscribers got `session` updates from the OpenCode source, in sequence order.
    let mut last = 0;
    let mut sessions = 0;
    while let Ok(Ok(u)) = tokio::time::timeout(Duration::from_millis(200), updates.recv()).await {
        assert!(u.sequence > last, "out of order");
        last = u.sequence;
        sessions +=
            usize::from(u.kind == UpdateType::Session && u.payload.value()["session"] == sid);
    }
    assert!(sessions >= 2, "{sessions} session updates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_calls_match_opencode_steps_and_the_title_call_is_shown_apart() {
    let (_sim, gw, events) = setup(IngestConfig::default()).await;
    let sid = "ses_match1";
    let title = chat(&gw, sid, 7).await;
    let build = chat(&gw, sid, 40).await;
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let cached = build["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let reasoning = build["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap_or(0);
    // What OpenCode reports for the build call (facts/opencode.md §1.5); none for the title.
    let batch = json!([
        ev("chat.params", json!({"sessionID": sid, "agent": "title"})),
        ev("chat.params", json!({"sessionID": sid, "agent": "build"})),
        step(
            sid,
            "prt_s1",
            n(&build, "prompt_tokens") - cached,
            cached,
            n(&build, "completion_tokens") - reasoning,
            reasoning
        ),
    ]);
    assert_eq!(post(events.addr, TOKEN, &batch).await.status, 202);
    let oc = common::eventually(&gw, "the build call counted", |s| {
        let s = s.sessions.get(sid)?;
        (s.totals.requests == 2 && s.opencode.counted.requests == 1).then(|| s.opencode.clone())
    })
    .await;
    assert_eq!(oc.counted.total_tokens, n(&build, "total_tokens"));
    assert_eq!(oc.uncounted.requests, 1);
    assert_eq!(oc.uncounted.total_tokens, n(&title, "total_tokens"));
    assert_eq!(oc.title_calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_silence_during_proxied_traffic_raises_and_clears_an_alert() {
    let cfg = IngestConfig {
        plugin_silent_after: Duration::from_millis(300),
        ..IngestConfig::default()
    };
    let (_sim, gw, events) = setup(cfg).await;
    let mut updates = gw.hub.subscribe();
    let sid = "ses_quiet1";
    let r = post(
        events.addr,
        TOKEN,
        &json!([ev("session.created", json!({"sessionID": sid}))]),
    )
    .await;
    assert_eq!(r.status, 202);
    // Proxied traffic goes on; the plugin says nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !gw.hub.with_state(|s| s.plugin.silent) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no plugin-silent alert"
        );
        chat(&gw, sid, 5).await;
    }
    let r = post(
        events.addr,
        TOKEN,
        &json!([ev("session.idle", json!({"sessionID": sid}))]),
    )
    .await;
    assert_eq!(r.status, 202);
    common::eventually(&gw, "the alert cleared", |s| {
        (!s.plugin.silent).then_some(())
    })
    .await;
    let mut firing = Vec::new();
    while let Ok(Ok(u)) = tokio::time::timeout(Duration::from_millis(200), updates.recv()).await {
        if u.kind == UpdateType::Alert && u.payload.value()["alert"] == "plugin_silent" {
            firing.push(u.payload.value()["firing"].as_bool().unwrap_or(false));
        }
    }
    assert_eq!(firing, [true, false]);
}

#[derive(Default)]
struct FakeLean(Mutex<Vec<String>>);

impl LeanControl for FakeLean {
    fn check(&self, file: &str, _line: Option<u32>) -> Result<(), LeanError> {
        self.0.lock().push(file.to_owned());
        Ok(())
    }
    fn restart(&self) -> Result<(), LeanError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_lean_files_are_handed_to_the_lean_component() {
    let sim = simulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    let gw = common::gateway(common::config(&sim.base_url())).await;
    let lean = Arc::new(FakeLean::default());
    let ingest =
        Ingest::new(gw.hub.clone(), IngestConfig::default(), TOKEN.into()).with_lean(lean.clone());
    let events = tokio::task::spawn_blocking(move || start(Arc::new(ingest)))
        .await
        .expect("start");
    let batch = json!([
        ev("file.edited", json!({"file": "/p/Demo.lean"})),
        ev("file.edited", json!({"file": "/p/notes.md"})),
        ev(
            "file.watcher.updated",
            json!({"file": "/p/Gone.lean", "event": "unlink"})
        ),
        ev(
            "tool.execute.after",
            json!({"sessionID": "s", "tool": "write", "callID": "c9", "args": {"filePath": "/p/B.lean"}})
        ),
    ]);
    assert_eq!(post(events.addr, TOKEN, &batch).await.status, 202);
    assert_eq!(*lean.0.lock(), ["/p/Demo.lean", "/p/B.lean"]);
}

/// Needs the gateway to route `POST /events` to `ingest::handle` (lead's wiring).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_itself_serves_events() {
    let sim = simulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    let mut cfg = common::config(&sim.base_url());
    let data = tempfile::tempdir().expect("tempdir");
    cfg.data_dir = data.path().to_owned();
    let gw = common::gateway(cfg).await;
    let token = sidepanel::ingest::load_or_create_token(data.path()).expect("token");
    let sid = "ses_gw1";
    let r = post(
        gw.addr,
        &token,
        &json!([ev(
            "session.created",
            json!({"sessionID": sid, "info": {"title": "via gateway"}})
        )]),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let r = post(gw.addr, "wrong", &json!([])).await;
    assert_eq!(r.status, 401);
    common::eventually(&gw, "the session title", |s| {
        s.sessions.get(sid)?.opencode.title.clone()
    })
    .await;
}
