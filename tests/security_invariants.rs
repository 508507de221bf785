//! The seed's security invariants about secrets and commands, tried against the real gateway:
//! a marker Venice key appears in no log line (trace level), metric, state, WebSocket message,
//! export, error body or database file; JSON-RPC parameters are validated (types, ranges,
//! sizes). Who may reach which route is `security_access.rs`.

mod common;
mod fault_support;
mod ws_common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{chat, client, config, free_addr, gateway};
use serde_json::{json, Value};
use sidepanel::simulator::{self, SimConfig};
use ws_common::Client;

/// The key under test: the simulator accepts only it, and it must show up nowhere else.
const MARKER: &str = "sk-venice-marker-9d41c7e2";

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn leaks(what: &str, text: &str) {
    assert!(
        !text.contains(MARKER),
        "the key leaked into {what}: {text:.2000}"
    );
}

/// The real binary with the marker key and trace logs: every output is grepped for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_venice_key_appears_in_no_output_of_the_gateway() {
    let sim = simulator::spawn(SimConfig {
        api_key: Some(MARKER.to_owned()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let addr = free_addr();
    let data = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sidepanel");
    let mut child = Command::new(bin)
        .args(["serve", "--listen", &addr.to_string(), "--upstream"])
        .arg(sim.base_url())
        .arg("--data-dir")
        .arg(data.path())
        .env("VENICE_API_KEY", MARKER)
        .env("SIDEPANEL_LOG", "trace")
        .env_remove("SIDEPANEL_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ]
    .into_iter()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    })
    .collect();
    let c = client();
    let up = fault_support::poll(|| async {
        c.get(format!("http://{addr}/healthz")).send().await.is_ok()
    })
    .await;
    assert!(up, "serve did not start");
    let token = std::fs::read_to_string(data.path().join("token")).unwrap();
    let token = token.trim();
    let mut seen = String::new();

    // Proxied calls: ok, streamed, and the error shapes (status faults, in-band, unknown path).
    let chats = [
        (true, None),
        (false, None),
        (false, Some("bad_request")),
        (false, Some("server_error")),
        (true, Some("midstream_error")),
        (false, Some("insufficient_balance")),
    ];
    for (stream, fault) in chats {
        let mut req = c
            .post(format!("http://{addr}/api/v1/chat/completions"))
            .bearer_auth("client-own-key")
            .header("x-session-id", "ses_security")
            .json(&chat("kimi-k2-5", stream, 8));
        if let Some(f) = fault {
            req = req.header("x-sim-fault", f);
        }
        let resp = req.send().await.unwrap();
        if fault.is_none() {
            assert_eq!(resp.status(), 200, "the upstream accepted the injected key");
        }
        seen.push_str(&format!("{:?}", resp.headers()));
        seen.push_str(&resp.text().await.unwrap_or_default());
    }
    let missing = c
        .get(format!("http://{addr}/api/v1/no/such/route"))
        .send()
        .await
        .unwrap();
    seen.push_str(&missing.text().await.unwrap());
    // A plugin event for the session, so the exports have something of each kind.
    let ev = json!({"event": "session.created", "timestamp": 1_795_520_697_742u64,
                    "data": {"sessionID": "ses_security", "info": {"id": "ses_security", "title": "t"}}});
    let posted = c
        .post(format!("http://{addr}/events"))
        .bearer_auth(token)
        .json(&ev)
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let recorded = fault_support::poll(|| async {
        let s: Value = c
            .get(format!("http://{addr}/api/sidepanel/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["totals"]["requests"].as_u64() >= Some(chats.len() as u64 + 1)
    })
    .await;
    assert!(recorded, "the requests were recorded");
    for path in ["/metrics", "/api/sidepanel/state", "/", "/healthz"] {
        let body = c.get(format!("http://{addr}{path}")).send().await.unwrap();
        let text = body.text().await.unwrap();
        leaks(path, &text);
        seen.push_str(&text);
    }

    // Everything a browser can ask for over the WebSocket.
    let mut ws = Client::connect_with(addr, Some(token)).await;
    let calls = [
        ("state.get", None),
        ("state.since", Some(json!({"sequence": 0}))),
        ("sessions.list", None),
        ("timeline", Some(json!({"sessionId": "ses_security"}))),
        ("exportSession", Some(json!({"sessionId": "ses_security"}))),
        (
            "exportSession",
            Some(json!({"sessionId": "ses_security", "format": "markdown"})),
        ),
    ];
    for (method, params) in calls {
        let r = ws.call(method, params).await;
        assert!(r.get("result").is_some(), "{method}: {r}");
        leaks(method, &r.to_string());
        seen.push_str(&r.to_string());
    }
    ws.close().await;
    assert!(seen.contains("ses_security"), "the outputs were real");

    // The command-line export and list, while the server runs.
    for args in [
        vec!["sessions", "export", "ses_security"],
        vec!["sessions", "export", "ses_security", "--format", "markdown"],
        vec!["sessions", "list", "--json"],
    ] {
        let out = Command::new(bin)
            .args(&args)
            .arg("--data-dir")
            .arg(data.path())
            .env_remove("VENICE_API_KEY")
            .env_remove("SIDEPANEL_PASSPHRASE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(text.contains("ses_security"), "{args:?}: {text}");
        leaks(&format!("{args:?}"), &text);
    }

    // A clean stop flushes the store and the log.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut stopped = false;
    let deadline = std::time::Instant::now() + fault_support::DEADLINE;
    while !stopped && std::time::Instant::now() < deadline {
        stopped = child.try_wait().unwrap().is_some();
        if !stopped {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
    let log: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(log.contains("proxied"), "the trace log was captured");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(MARKER)).collect();
    assert!(lines.is_empty(), "the key leaked into the log: {lines:#?}");

    // The database (and every other file of the data dir) never holds the key in clear.
    let mut all = Vec::new();
    files(data.path(), &mut all);
    assert!(
        all.iter().any(|p| p.to_string_lossy().ends_with(".db")),
        "{all:?}"
    );
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes());
        assert!(!found, "the key is in clear in {}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_parameters_are_checked_for_type_range_and_size() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let mut ws = Client::connect_gateway(&gw).await;
    let long = "s".repeat(100_000);
    let cases = [
        ("state.since", json!({"sequence": -1})),
        ("state.since", json!({"sequence": 1.5})),
        ("state.since", json!({"sequence": "1"})),
        (
            "state.since",
            json!({"sequence": 18_446_744_073_709_551_616u128 as f64}),
        ),
        ("sessions.list", json!({"limit": -1})),
        ("sessions.list", json!({"limit": "10"})),
        ("setAlert", json!({"currency": "usd", "below": -0.01})),
        ("setAlert", json!({"currency": "usd", "below": "1"})),
        ("setAlert", json!({"currency": "USD", "below": 1})),
        ("lean.check", json!({"file": "A.lean", "line": -1})),
        (
            "lean.check",
            json!({"file": "A.lean", "line": 4_294_967_296u64}),
        ),
        ("lean.check", json!({"file": "x".repeat(5000)})),
        ("lean.check", json!({"file": "A\u{0}.lean"})),
        ("timeline", json!({"sessionId": 7})),
        ("timeline", json!({"sessionId": "ses_1", "limit": -5})),
        ("timeline", json!({"sessionId": long.clone()})),
        (
            "exportSession",
            json!({"sessionId": "ses_1", "format": "pdf"}),
        ),
        ("exportSession", json!({"sessionId": long.clone()})),
        ("exportSession", json!({"sessionId": "bad id\n"})),
        ("restore", json!({"snapshotId": 1, "sequence": 1})),
        ("restore", json!({})),
        ("restore", json!({"sequence": -3})),
    ];
    for (method, params) in cases {
        let r = ws.call(method, Some(params.clone())).await;
        assert_eq!(
            ws_common::code(&r),
            -32602,
            "{method} {params:.200}: {r:.300}"
        );
        let text = r.to_string();
        assert!(
            text.len() < 2048,
            "{method}: the error does not echo a huge value ({} bytes)",
            text.len()
        );
    }
    // An oversized frame closes the connection (1009) instead of being parsed.
    let frame = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"state.get","params":{{"pad":"{}"}}}}"#,
        "p".repeat(2 << 20)
    );
    ws.send(&frame).await;
    let (code, _) = ws.close_frame().await;
    assert_eq!(u16::from(code), 1009);
    // The gateway carries on.
    let mut again = Client::connect_gateway(&gw).await;
    assert!(again.call("state.get", None).await["result"]["sequence"].is_u64());
}
