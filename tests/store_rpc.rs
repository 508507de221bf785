//! The session store through the WebSocket JSON-RPC methods (`timeline`, `restore`,
//! `exportSession`) and the `sidepanel sessions` command line, against real SQLite files.

mod store_support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sidepanel::gateway::usage::UpstreamError;
use sidepanel::hub::HubEvent;
use sidepanel::ws::methods::Methods;
use sidepanel::ws::rpc::{INVALID_PARAMS, NOT_AVAILABLE};
use store_support::{config, event, finish, record, rig, runtime, state_json};

const KEY: &str = "sk-venice-never-exported-31337";

/// Fills a store in `data_dir` with random traffic plus 20 requests of `ses_rpc`, one of
/// which carries the Venice key in an error message (as a hostile upstream might echo it).
fn fill(rig: &store_support::Rig) {
    let mut rng = fastrand::Rng::with_seed(21);
    for i in 0..400 {
        rig.hub.apply(event(&mut rng, i));
        if i % 20 == 0 {
            let mut r = record(&mut rng, 1_700_000_000_000 + i);
            r.session_id = Some("ses_rpc".into());
            r.model = Some("kimi-k2-5".into());
            if i == 200 {
                r.error = Some(UpstreamError {
                    message: format!("bad key {KEY}"),
                    code: None,
                });
            }
            rig.hub.apply(HubEvent::Request(Box::new(r)));
        }
    }
}

#[test]
fn timeline_restore_and_export_over_json_rpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 50);
    cfg.redact = vec![sidepanel::config::ApiKey::new(KEY).expect("key")];
    let rt = runtime();
    let rig = rig(&cfg);
    fill(&rig);
    let last = rig.handle.with_state(|s| s.sequence);
    rt.block_on(rig.store.wait_committed(last, Duration::from_secs(60)))
        .expect("committed");

    // Without a store the methods say so.
    let bare = Methods::new(rig.handle.clone(), None);
    let e = rt
        .block_on(bare.call("timeline", Some(json!({"sessionId": "ses_rpc"}))))
        .expect_err("no store");
    assert_eq!(e.code, NOT_AVAILABLE);

    let mut methods = Methods::new(rig.handle.clone(), None);
    methods.set_store(rig.store.clone());
    let call = |m: &str, p: Value| rt.block_on(methods.call(m, Some(p)));

    let t = call("timeline", json!({"sessionId": "ses_rpc"}))
        .expect("timeline")
        .result;
    let points = t["points"].as_array().expect("points");
    let updates: Vec<&Value> = points.iter().filter(|p| p["kind"] == "update").collect();
    assert_eq!(updates.len(), 20, "{t:#}");
    assert!(updates[0]["label"]
        .as_str()
        .expect("label")
        .starts_with("kimi-k2-5: "));
    assert!(
        points.iter().any(|p| p["kind"] == "snapshot"),
        "checkpoints inside the session"
    );
    let seqs: Vec<u64> = points
        .iter()
        .map(|p| p["sequence"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let limited = call("timeline", json!({"sessionId": "ses_rpc", "limit": 3})).expect("limit");
    assert_eq!(
        limited.result["points"].as_array().expect("points").len(),
        3
    );

    // Restore a point by sequence: the answer names the new snapshot update.
    let point = updates[10]["sequence"].as_u64().expect("seq");
    let (_, expected) = rt
        .block_on(
            rig.store
                .state_at(sidepanel::store::RestoreTarget::Sequence(point)),
        )
        .expect("state");
    let r = call("restore", json!({"sequence": point}))
        .expect("restore")
        .result;
    assert_eq!(r["restored"], point);
    assert_eq!(r["sequence"], last + 1);
    let mut now = state_json(&rig.handle);
    now["sequence"] = point.into();
    assert_eq!(now, serde_json::to_value(&expected).expect("json"));

    // Bad parameters are -32602 naming the problem.
    for (m, p, word) in [
        ("restore", json!({}), "exactly one"),
        (
            "restore",
            json!({"sequence": 1, "snapshotId": 1}),
            "exactly one",
        ),
        ("restore", json!({"sequence": last + 1000}), "outside"),
        ("restore", json!({"snapshotId": 424242}), "snapshot 424242"),
        ("timeline", json!({"sessionId": "nope"}), "no session"),
        ("timeline", json!({"session": "x"}), "session"),
        (
            "exportSession",
            json!({"sessionId": "ses_rpc", "format": "pdf"}),
            "pdf",
        ),
    ] {
        let e = call(m, p.clone()).expect_err(&format!("{m} {p}"));
        assert_eq!(e.code, INVALID_PARAMS, "{m} {p}: {e:?}");
        assert!(e.message.contains(word), "{m} {p}: {}", e.message);
    }

    // Exports: every update of the session, never the key.
    let x = call(
        "exportSession",
        json!({"sessionId": "ses_rpc", "format": "jsonl"}),
    )
    .expect("export")
    .result;
    let content = x["content"].as_str().expect("content");
    assert_eq!(content.lines().count(), 20);
    for line in content.lines() {
        let u: Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(u["type"], "usage");
        assert_eq!(u["payload"]["request"]["session_id"], "ses_rpc");
    }
    assert!(!content.contains(KEY) && content.contains("<redacted>"));
    let md = call(
        "exportSession",
        json!({"sessionId": "ses_rpc", "format": "markdown"}),
    )
    .expect("export")
    .result;
    let md = md["content"].as_str().expect("content");
    assert!(
        md.starts_with("# Session `ses_rpc`") && md.contains("| **all** | 20 |"),
        "{md}"
    );
    assert!(!md.contains(KEY));
    finish(&rt, &rig);
}

#[test]
fn the_sessions_command_lists_and_exports_while_a_writer_holds_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    let rt = runtime();
    let rig = rig(&cfg);
    fill(&rig);
    let last = rig.handle.with_state(|s| s.sequence);
    rt.block_on(rig.store.wait_committed(last, Duration::from_secs(60)))
        .expect("committed");

    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sidepanel"));
        c.env_remove("SIDEPANEL_CONFIG")
            .env_remove("SIDEPANEL_PASSPHRASE")
            .env_remove("SIDEPANEL_UPSTREAM")
            .env("VENICE_API_KEY", KEY);
        c
    };
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let out = bin()
        .args(["sessions", "list", "--data-dir", data_dir])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ses_rpc") && text.contains("SESSION"),
        "{text}"
    );

    let out = bin()
        .args(["sessions", "list", "--json", "--data-dir", data_dir])
        .output()
        .expect("runs");
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rpc = list
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == "ses_rpc")
        .expect("listed");
    assert_eq!(rpc["requests"], 20);

    let file = dir.path().join("ses_rpc.md");
    let out = bin()
        .args([
            "sessions", "export", "ses_rpc", "--format", "markdown", "--output",
        ])
        .arg(&file)
        .args(["--data-dir", data_dir])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&file).expect("written");
    assert!(md.contains("ses_rpc") && !md.contains(KEY), "{md}");
    let out = bin()
        .args(["sessions", "export", "ses_rpc", "--data-dir", data_dir])
        .output()
        .expect("runs");
    let jsonl = String::from_utf8_lossy(&out.stdout);
    assert_eq!(jsonl.lines().count(), 20);
    assert!(!jsonl.contains(KEY));

    // Clear errors: unknown session, wrong passphrase, no store at all.
    let out = bin()
        .args(["sessions", "export", "nope", "--data-dir", data_dir])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session \"nope\""));
    let out = bin()
        .args(["sessions", "list", "--data-dir", data_dir])
        .env("SIDEPANEL_PASSPHRASE", "guess")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIDEPANEL_PASSPHRASE"));
    let empty = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .args(["sessions", "list", "--data-dir"])
        .arg(empty.path())
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session database"));
    finish(&rt, &rig);
}
