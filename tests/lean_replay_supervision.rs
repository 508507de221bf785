//! Supervision of the Lean server, against `lean-replay` told to crash, hang or write garbage:
//! files go stale at once and recover after the restart, hangs time out, `restart()` forces a new
//! server, and a missing command is a quiet `unavailable`.

mod lean_support;

use std::time::Duration;

use lean_support::replay::{ready, Replay};
use lean_support::{start, status_is, WAIT};
use serde_json::{json, Value};
use sidepanel::config::LeanConfig;
use sidepanel::lean::{LeanControl, SERVER_KEY};

#[tokio::test]
async fn a_crash_marks_files_stale_at_once_then_they_recover_after_the_restart() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    lean.handle.check("Demo.lean", None).expect("accepted");
    let mut seen = Vec::new();
    lean.updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;

    r.set("crash");
    lean.handle.check("Demo.lean", None).expect("accepted");
    let stale = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("stale"))
        .await;
    assert_eq!(stale["server"]["status"], "disconnected");
    assert_eq!(
        stale["error"]["kind"], "server",
        "the check the crash cut short says so"
    );
    assert_eq!(
        stale["diagnostics"].as_array().map(Vec::len),
        Some(5),
        "last known results kept"
    );

    let back = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;
    assert_eq!(back["server"]["status"], "ready");
    assert_eq!(back["server"]["restarts"], 1);
    assert_eq!(back["error"], Value::Null);
    assert_eq!(r.starts(), 2);
}

#[tokio::test]
async fn a_killed_server_is_restarted_and_the_cached_files_rechecked() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    lean.handle.check("Demo.lean", Some(14)).expect("accepted");
    let mut seen = Vec::new();
    lean.updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;
    let pid = lean.handle.server_status().pid.expect("a pid");

    // SAFETY: signals the replay server this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let stale = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("stale"))
        .await;
    assert!(
        stale["server"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exited"),
        "{stale:#?}"
    );
    // Nobody asks again: the restart re-checks the file by itself, with its last line.
    let back = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;
    assert_ne!(back["server"]["pid"], json!(pid));
    assert_eq!(back["goals"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.calls("lean_diagnostic_messages").len(), 2);
}

#[tokio::test]
async fn a_hung_server_times_out_and_is_restarted() {
    let r = Replay::new();
    let mut cfg = r.config(&[]);
    cfg.call_timeout = Duration::from_millis(400);
    let mut lean = start(cfg);
    ready(&mut lean).await;
    r.set("hang");
    lean.handle.check("Demo.lean", None).expect("accepted");
    let mut seen = Vec::new();
    let down = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, |s| {
            s["status"] == "disconnected"
        })
        .await;
    let why = down["server"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("no answer") && why.contains("hung"), "{why}");
    let back = lean
        .updates
        .wait("Demo.lean", WAIT, &mut seen, status_is("complete"))
        .await;
    assert_eq!(back["server"]["restarts"], 1);
    assert_eq!(r.starts(), 2);
}

#[tokio::test]
async fn garbage_and_huge_lines_from_the_server_are_skipped() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    ready(&mut lean).await;
    r.set("garbage");
    lean.handle.check("Demo.lean", None).expect("accepted");
    let s = lean
        .wait_stored("Demo.lean", WAIT, status_is("complete"))
        .await;
    assert_eq!(s["diagnostics"].as_array().map(Vec::len), Some(5));
    assert_eq!(r.starts(), 1, "garbage is skipped, not a reason to restart");
}

#[tokio::test]
async fn restart_starts_a_new_server_and_rechecks() {
    let r = Replay::new();
    let mut lean = start(r.config(&[]));
    lean.handle.check("Demo.lean", None).expect("accepted");
    lean.wait_stored("Demo.lean", WAIT, status_is("complete"))
        .await;
    let old = lean.handle.server_status().pid;
    lean.handle.restart().expect("accepted");
    let server = lean
        .updates
        .wait_server(WAIT, |s| s["status"] == "ready" && s["restarts"] == 1)
        .await;
    assert_ne!(server["pid"], json!(old));
    let mut seen = Vec::new();
    lean.updates
        .wait("Demo.lean", WAIT, &mut seen, |s| {
            s["status"] == "complete" && s["server"]["restarts"] == 1
        })
        .await;
    assert_eq!(r.starts(), 2);
    assert_eq!(r.calls("lean_diagnostic_messages").len(), 2);
}

#[tokio::test]
async fn an_absent_command_is_unavailable_once_and_harmless() {
    let mut lean = start(LeanConfig {
        command: "sidepanel-test-no-such-lean-lsp-mcp".into(),
        restart_backoff_max: Duration::from_millis(100),
        ..LeanConfig::default()
    });
    let server = lean
        .updates
        .wait_server(WAIT, |s| s["status"] == "unavailable")
        .await;
    let why = server["error"].as_str().unwrap_or_default();
    assert!(why.contains("not found on PATH"), "{why}");

    lean.handle
        .check("A.lean", Some(3))
        .expect("accepted while unavailable");
    lean.handle.restart().expect("a forced retry is accepted");
    lean.handle.check("B.lean", None).expect("accepted");
    let mut seen = Vec::new();
    let b = lean
        .updates
        .wait("B.lean", WAIT, &mut seen, status_is("disconnected"))
        .await;
    assert_eq!(b["server"]["status"], "unavailable");
    let a = lean.state("A.lean").expect("A.lean published");
    assert_eq!(a["status"], "disconnected");
    // Several retries happened (backoff 100 ms and a forced one); the state was published once.
    let mut again = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_millis(400),
        lean.updates.wait(SERVER_KEY, WAIT, &mut again, |_| false),
    )
    .await;
    assert!(
        again.is_empty(),
        "unavailable is published once: {again:#?}"
    );
}

#[tokio::test]
async fn a_server_that_dies_at_start_says_why_and_is_retried() {
    let r = Replay::new();
    let mut lean = start(r.config(&["LEAN_REPLAY_FIXTURES=/nonexistent/sidepanel-fixtures"]));
    let server = lean
        .updates
        .wait_server(WAIT, |s| s["status"] == "disconnected")
        .await;
    let why = server["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("exit status: 2") && why.contains("cannot load fixtures"),
        "the exit status and the last stderr line explain it: {why}"
    );
    // Retried with backoff (200 ms cap here): a second attempt fails the same way.
    lean.updates
        .wait_server(WAIT, |s| s["status"] == "starting")
        .await;
    lean.updates
        .wait_server(WAIT, |s| s["status"] == "disconnected")
        .await;
}
