//! The Lean component against `lean-replay`, a stand-in MCP server serving answers recorded from
//! the real lean-lsp-mcp 0.32.0 (`tests/fixtures/lean/`): the handshake, the check flow (recorded
//! diagnostics, goals and suggestions reach the hub), tool and protocol errors, debounce, stale
//! answers, and request validation. Fast and hermetic; supervision is in
//! `lean_replay_supervision.rs`.

mod lean_support;

use std::time::Duration;

use lean_support::replay::{ready, Replay};
use lean_support::{start, status_is, WAIT};
use serde_json::{json, Value};
use sidepanel::config::LeanConfig;
use sidepanel::lean::{LeanControl, LeanError, SERVER_KEY};

fn diag(v: &Value) -> (String, u64, u64, String) {
    (
        v["severity"].as_str().unwrap_or_default().to_owned(),
        v["line"].as_u64().unwrap_or_default(),
        v["column"].as_u64().unwrap_or_default(),
        v["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn handshake_checks_tools_and_reports_the_server_ready() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    let server = ready(&mut lean).await;
    assert_eq!(server["name"], "Lean LSP");
    assert_eq!(server["version"], "0.32.0");
    assert_eq!(server["protocol_version"], "2025-11-25");
    assert!(server["pid"].as_u64().is_some());
    assert_eq!(
        lean.state(SERVER_KEY).expect("stored")["server"]["status"],
        "ready"
    );
    assert_eq!(
        lean.handle.server_status().status,
        sidepanel::lean::ServerState::Ready
    );
}

#[tokio::test]
async fn a_server_without_the_needed_tools_is_refused_clearly() {
    let r = Replay::new();
    let mut lean = start(r.config(&["LEAN_REPLAY_TOOLS=lean_goal,lean_hover_info"]));
    let server = lean
        .updates
        .wait_server(WAIT, |s| s["status"] == "disconnected")
        .await;
    let error = server["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("lean_diagnostic_messages") && error.contains("lean_code_actions"),
        "{error}"
    );
    assert!(!error.contains("\"lean_goal\""), "{error}");
}

#[tokio::test]
async fn checking_the_fixture_publishes_the_recorded_diagnostics_goals_and_no_suggestions() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    ready(&mut lean).await;
    lean.handle.check("Demo.lean", Some(14)).expect("accepted");
    let mut seen = Vec::new();
    let s = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;
    assert!(
        seen.iter().any(|s| s["status"] == "elaborating"),
        "elaborating shown first: {seen:#?}"
    );

    // The recorded answer (out6), in source order.
    let diags: Vec<_> = s["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .map(diag)
        .collect();
    let mismatch = "Type mismatch\n  MyEq.refl\nhas type\n  MyEq ?m.3 ?m.3\nbut is expected to have type\n  MyEq two MyNat.zero";
    let expected = vec![
        ("error".into(), 12, 1, "internal exception #3".into()),
        ("error".into(), 12, 37, mismatch.into()),
        (
            "error".into(),
            13,
            38,
            "unsolved goals\na : MyNat\n⊢ MyEq a a".into(),
        ),
        ("error".into(), 14, 4, "unknown tactic".into()),
        ("info".into(), 15, 1, "t1 : MyEq two two".into()),
    ];
    assert_eq!(diags, expected);
    assert_eq!(s["diagnostics"][2]["tags"], json!(["unsolvedGoals"]));
    assert_eq!(s["diagnostics"][2]["severity_code"], 1);
    assert_eq!(s["diagnostics"][4]["severity_code"], 3);
    assert_eq!(
        s["counts"],
        json!({"errors": 4, "warnings": 0, "infos": 1, "hints": 0})
    );
    assert_eq!(s["success"], false);
    assert_eq!(s["version"], 1);
    assert!(s["updated_at"]
        .as_u64()
        .is_some_and(|t| t > 1_600_000_000_000));

    // Goals at the unsolved-goals error, then at the cursor line (before/after).
    let goal = json!({"case": null, "hypotheses": [{"names": ["a"], "type": "MyNat"}],
                      "target": "MyEq a a", "pretty": "a : MyNat\n⊢ MyEq a a"});
    let goals = s["goals"].as_array().expect("goals");
    assert_eq!(goals.len(), 2, "{goals:#?}");
    assert_eq!(
        (
            goals[0]["reason"].clone(),
            goals[0]["line"].clone(),
            goals[0]["column"].clone()
        ),
        (json!("unsolved_goals"), json!(13), json!(38))
    );
    assert_eq!(goals[0]["status"], "goals");
    assert_eq!(goals[0]["goals"], json!([goal.clone()]));
    assert_eq!(goals[1]["reason"], "cursor");
    assert_eq!(goals[1]["line_context"], "  exact MyEq.refl");
    assert_eq!(goals[1]["goals"], json!([goal]));
    assert_eq!(goals[1]["goals_after"], json!([]));
    assert_eq!(s["suggestions"], json!([]));
    assert_eq!(s["error"], Value::Null);
    assert_eq!(s["server"]["status"], "ready");

    // The hub stored what it broadcast, and the calls were exactly the flow's.
    assert_eq!(lean.state("Demo.lean"), Some(s));
    assert_eq!(
        r.calls("lean_diagnostic_messages"),
        vec![json!({"file_path": "Demo.lean"})]
    );
    assert_eq!(
        r.calls("lean_goal"),
        vec![
            json!({"file_path": "Demo.lean", "line": 13, "column": 38}),
            json!({"file_path": "Demo.lean", "line": 14})
        ]
    );
    assert_eq!(
        r.calls("lean_code_actions"),
        vec![json!({"file_path": "Demo.lean", "line": 14})]
    );
}

#[tokio::test]
async fn try_this_diagnostics_and_code_actions_become_suggestions() {
    let r = Replay::new();
    let lean = start(r.config(&[]));
    lean.handle.check("Suggest.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Suggest.lean", WAIT, status_is("complete"))
        .await;
    let sugg = s["suggestions"].as_array().expect("list");
    assert_eq!(sugg.len(), 2, "{sugg:#?}");
    assert_eq!(sugg[0]["source"], "diagnostic");
    assert_eq!(sugg[0]["text"], "exact MyEq.refl");
    assert_eq!(sugg[1]["source"], "code_action");
    assert_eq!(sugg[1]["preferred"], true);
    assert_eq!(
        sugg[1]["edits"],
        json!([{"new_text": "exact MyEq.refl", "start_line": 4, "start_column": 3, "end_line": 4, "end_column": 10}])
    );
    assert_eq!(s["success"], true);
    assert_eq!(s["counts"]["warnings"], 1);
    assert_eq!(s["diagnostics"][1]["category"], "sorry");
    assert_eq!(
        r.calls("lean_goal"),
        Vec::<Value>::new(),
        "no unsolved goals, no line: no goal calls"
    );
}

#[tokio::test]
async fn a_partial_answer_leaves_the_file_elaborating() {
    let r = Replay::new();
    let lean = start(r.config(&[]));
    lean.handle.check("Slow.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Slow.lean", WAIT, |s| s["checked_at"].is_u64())
        .await;
    assert_eq!(s["status"], "elaborating");
    assert_eq!(s["still_elaborating_lines"], json!([[5, 9]]));
    assert_eq!(s["diagnostics"][0]["message"], "unknown identifier 'foo'");
}

#[tokio::test]
async fn tool_errors_are_shown_and_do_not_restart_the_server() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    ready(&mut lean).await;
    r.set("error");
    lean.handle.check("Demo.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Demo.lean", WAIT, status_is("error"))
        .await;
    assert_eq!(s["error"]["kind"], "tool");
    let msg = s["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("No such file or directory: 'lake'"), "{msg}");

    // A file the server knows nothing of: its own tool error, recorded the same way.
    r.clear();
    lean.handle.check("Nope.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Nope.lean", WAIT, status_is("error"))
        .await;
    assert_eq!(s["error"]["kind"], "tool");
    assert_eq!(s["diagnostics"], json!([]));

    // After the error clears, the same file checks fine; the server never restarted.
    lean.handle.check("Demo.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Demo.lean", WAIT, status_is("complete"))
        .await;
    assert_eq!(s["error"], Value::Null);
    assert_eq!(r.starts(), 1);
    assert_eq!(lean.handle.server_status().restarts, 0);
}

#[tokio::test]
async fn a_slow_answer_for_an_older_version_is_dropped() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    ready(&mut lean).await;
    r.set("slow 600");
    lean.handle.check("Demo.lean", None).expect("accepted");
    let mut seen = Vec::new();
    let first = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("elaborating"))
        .await;
    assert_eq!(first["version"], 1);
    // Once the server has the call (and is sleeping on it), the file changes again.
    let deadline = std::time::Instant::now() + WAIT;
    while r.calls("lean_diagnostic_messages").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lean.handle.check("Demo.lean", Some(14)).expect("accepted");
    r.clear();
    let done = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;
    assert_eq!(
        done["version"], 2,
        "only the newest version completes; seen: {seen:#?}"
    );
    assert_eq!(done["goals"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        r.calls("lean_diagnostic_messages").len(),
        2,
        "both versions were asked for"
    );
    assert_eq!(r.starts(), 1, "a slow answer is not a hang");
}

#[tokio::test]
async fn a_burst_of_edits_is_one_diagnostics_call() {
    let r = Replay::new();
    let mut cfg = r.config(&[]);
    cfg.debounce = Duration::from_millis(250);
    let mut lean = start(cfg);
    ready(&mut lean).await;
    for line in 1..=20 {
        lean.handle
            .check("Demo.lean", Some(line))
            .expect("accepted");
    }
    lean.handle.check("Demo.lean", Some(14)).expect("accepted");
    let s = lean
        .wait_stored("Demo.lean", WAIT, status_is("complete"))
        .await;
    assert_eq!(s["version"], 21);
    assert_eq!(r.calls("lean_diagnostic_messages").len(), 1);
    assert_eq!(
        r.calls("lean_goal").last(),
        Some(&json!({"file_path": "Demo.lean", "line": 14}))
    );
}

#[tokio::test]
async fn requests_are_validated_and_a_disabled_component_says_so() {
    let r = Replay::new();
    let lean = start(r.config(&[]));
    assert_eq!(
        lean.handle.check("notes.md", None),
        Err(LeanError::NotALeanFile("notes.md".into()))
    );
    assert_eq!(
        lean.handle.check("Demo.lean", Some(0)),
        Err(LeanError::InvalidLine)
    );

    let off = start(LeanConfig {
        enabled: false,
        ..LeanConfig::default()
    });
    assert_eq!(
        off.handle.check("Demo.lean", None),
        Err(LeanError::Disabled)
    );
    assert_eq!(off.handle.restart(), Err(LeanError::Disabled));
    let s = off
        .wait_stored(SERVER_KEY, WAIT, |s| s["server"]["status"] == "disabled")
        .await;
    assert_eq!(s["server"]["command"], "lean-lsp-mcp");
}

#[tokio::test]
async fn protocol_errors_are_told_apart_from_tool_errors() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    ready(&mut lean).await;
    r.set("rpc-error");
    lean.handle.check("Demo.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Demo.lean", WAIT, status_is("error"))
        .await;
    assert_eq!(s["error"]["kind"], "protocol");
    let msg = s["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("-32602") && msg.contains("Invalid params"),
        "{msg}"
    );
    assert_eq!(
        s["server"]["status"], "ready",
        "a JSON-RPC error is not a dead server"
    );
    assert_eq!(r.starts(), 1);
}
