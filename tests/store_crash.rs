//! Crash safety of the real binary: `sidepanel serve` in front of the simulator is loaded
//! (proxied calls and plugin events), killed with SIGKILL, and restarted on the same data dir.
//! Nothing acknowledged is lost — every plugin batch `POST /events` answered 202 before the kill
//! is in the database and in the restarted state — the database passes `PRAGMA
//! integrity_check`, the restarted state equals the stored one, a second server on the same data
//! dir refuses, and neither the Venice key nor a marker sent through the proxy or the plugin
//! appears in clear in any database file.
//!
//! Needs the store wired into `app::build` (see `docs/ARCHITECTURE.md`, "Storage").

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sidepanel::store::{Reader, RestoreTarget, StoreConfig};

use common::child::Killed as Server;
use common::free_addr;

const KEY: &str = "sk-venice-crash-test-key-9d2f";
const MARKER: &str = "MARKER-crash-5e8a1f";

fn serve(addr: SocketAddr, upstream: &str, data: &Path, config: &Path) -> Command {
    let mut c = common::child::sidepanel();
    c.args([
        "serve",
        "--listen",
        &addr.to_string(),
        "--upstream",
        upstream,
    ])
    .arg("--data-dir")
    .arg(data)
    .arg("--config")
    .arg(config)
    .env("VENICE_API_KEY", KEY)
    .stdout(Stdio::null());
    c
}

fn start(addr: SocketAddr, upstream: &str, data: &Path, config: &Path) -> Server {
    let child = serve(addr, upstream, data, config)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sidepanel");
    Server(child)
}

async fn state(c: &reqwest::Client, addr: SocketAddr) -> Option<Value> {
    c.get(format!("http://{addr}/api/sidepanel/state"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Polls the gateway's state until `pred` holds (30 s at most).
async fn until(
    c: &reqwest::Client,
    addr: SocketAddr,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = state(c, addr).await {
            if pred(&s) {
                return s;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn chat(c: &reqwest::Client, addr: SocketAddr, model: &str, session: &str) -> bool {
    let body = json!({
        "model": model,
        "stream": false,
        "max_completion_tokens": 16,
        "messages": [{"role": "user", "content": "hello"}],
    });
    c.post(format!("http://{addr}/api/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success() || r.status().is_client_error())
}

/// Posts one plugin batch creating session `sid`; true when it was acknowledged (2xx).
async fn plugin_event(c: &reqwest::Client, addr: SocketAddr, token: &str, sid: &str) -> bool {
    let body = json!([{"event": "session.created", "timestamp": 1_795_520_697_742u64,
        "data": {"sessionID": sid, "info": {"id": sid, "title": format!("{MARKER}-title")}}}]);
    c.post(format!("http://{addr}/events"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn requests(s: &Value) -> u64 {
    s["totals"]["requests"].as_u64().unwrap_or(0)
}

fn no_secret_on_disk(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let Ok(bytes) = std::fs::read(&name) else {
            continue;
        };
        for secret in [KEY, MARKER] {
            let hit = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!hit, "{secret} is in clear in sidepanel.db{suffix}");
        }
    }
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged_and_a_restart_resumes_exactly() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sim = rt
        .block_on(sidepanel::simulator::spawn(
            sidepanel::simulator::SimConfig {
                rpm: 1_000_000,
                tpm: 1_000_000_000,
                ..Default::default()
            },
        ))
        .expect("simulator");
    let upstream = sim.base_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("sidepanel.toml");
    std::fs::write(
        &config,
        "[upstream]\nmodels_refresh = \"off\"\n[admission]\nenabled = false\nlimits_refresh = \"off\"\n\
         [lean]\nenabled = false\n[store]\nsnapshot_every = 25\n",
    )
    .expect("config");
    let store = StoreConfig::in_dir(&data);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Run 1: load, note an acknowledged point, kill -9 while requests are in flight.
    let addr = free_addr();
    let server = start(addr, &upstream, &data, &config);
    let acked_plugin: Arc<Mutex<Vec<String>>> = Arc::default();
    let (acked, acked_state) = rt.block_on(async {
        until(&c, addr, "the gateway", |_| true).await;
        let token = sidepanel::ingest::load_or_create_token(&data).expect("install token");
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (c, stop, acked) = (c.clone(), stop.clone(), acked_plugin.clone());
            tokio::spawn(async move {
                for n in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sid = format!("ses_plugin_{n}");
                    if plugin_event(&c, addr, &token, &sid).await {
                        acked.lock().expect("acked").push(sid);
                    }
                }
            });
        }
        for worker in 0..4 {
            let (c, stop) = (c.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0..500 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let model = if i % 10 == 0 {
                        format!("{MARKER}-model")
                    } else {
                        "kimi-k2-5".into()
                    };
                    chat(&c, addr, &model, &format!("ses_load_{worker}")).await;
                }
            });
        }
        let s = until(&c, addr, "60 requests", |s| requests(s) >= 60).await;
        let acked = s["sequence"].as_u64().expect("sequence");
        // Acknowledged = committed: the store's own read side says so.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let reader = loop {
            if let Ok(r) = Reader::open(&store) {
                if r.last_sequence().unwrap_or(0) >= acked {
                    break r;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sequence {acked} never committed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let (_, at) = reader
            .state_at(RestoreTarget::Sequence(acked))
            .expect("acked state");
        until(&c, addr, "more load", |s| requests(s) >= 100).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked_plugin.lock().expect("acked").len() < 20 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "plugin events were not acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut server = server;
        server.0.kill().expect("SIGKILL");
        let _ = server.0.wait();
        stop.store(true, Ordering::Relaxed);
        (acked, serde_json::to_value(&at).expect("json"))
    });

    // The file is sound, and everything acknowledged is in it, unchanged.
    let conn = rusqlite::Connection::open(&store.path).expect("open db");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
    drop(conn);
    let reader = Reader::open(&store).expect("reader");
    let last = reader.last_sequence().expect("last");
    assert!(last >= acked, "committed {last} < acknowledged {acked}");
    let (_, again) = reader
        .state_at(RestoreTarget::Sequence(acked))
        .expect("acked state");
    assert_eq!(serde_json::to_value(&again).expect("json"), acked_state);
    let (_, stored) = reader
        .state_at(RestoreTarget::Sequence(last))
        .expect("last state");
    let stored = serde_json::to_value(&stored).expect("json");
    // Every plugin batch answered 2xx before the kill is in the database.
    let acked_plugin = acked_plugin.lock().expect("acked").clone();
    let sessions: HashSet<String> = reader
        .sessions(10_000)
        .expect("sessions")
        .into_iter()
        .map(|s| s.id)
        .collect();
    for sid in &acked_plugin {
        assert!(sessions.contains(sid), "acknowledged {sid} lost by kill -9");
        assert!(stored["sessions"][sid]["opencode"]["seen"] == true, "{sid}");
    }
    drop(reader);

    // Run 2: the restarted gateway shows exactly the stored state and goes on from it.
    let addr = free_addr();
    let _server = start(addr, &upstream, &data, &config);
    rt.block_on(async {
        let s = until(&c, addr, "the restarted gateway", |_| true).await;
        assert!(s["sequence"].as_u64().expect("sequence") >= last);
        for key in ["totals", "models", "plugin"] {
            assert_eq!(s[key], stored[key], "{key} after the restart");
        }
        for sid in &acked_plugin {
            assert!(
                s["sessions"][sid]["opencode"]["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(MARKER)),
                "acknowledged {sid} missing after the restart"
            );
        }
        for worker in 0..4 {
            let id = format!("ses_load_{worker}");
            assert_eq!(
                s["sessions"][&id]["requests"],
                stored["sessions"][&id]["requests"]
            );
        }

        // A second server on the same data dir refuses with a clear message.
        let mut second = Server(
            serve(free_addr(), &upstream, &data, &config)
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn second"),
        );
        let mut stderr = second.0.stderr.take().expect("stderr");
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = second.0.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the second server kept running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let err = err.join().expect("stderr reader");
        assert!(!status.success(), "the second server must not run");
        assert!(err.contains("another sidepanel process"), "{err}");

        let before = requests(&stored);
        for _ in 0..5 {
            assert!(chat(&c, addr, "kimi-k2-5", "ses_after").await);
        }
        until(&c, addr, "requests after the restart", |s| {
            requests(s) == before + 5
        })
        .await;
    });
    drop(_server);
    no_secret_on_disk(&store.path);
}
