//! Harness of `tests/opencode_link.rs`: a real `opencode serve` (offline, throwaway HOME and
//! project, provider pointed at a gateway), a gateway in front of the simulator linked to it,
//! polling of the hub's state with a deadline, one prompt's OpenCode events in both wire
//! shapes, and `sidepanel serve --open` as a child process.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use sidepanel::app::Running;
use sidepanel::hub::State;
use sidepanel::opencode::{LinkState, LinkStatus, Password};
use sidepanel::simulator::{self, SimConfig, SimHandle};

use super::common;

pub const MODEL: &str = "llama-3.3-70b";
/// Longest wait for anything OpenCode does (start, a prompt, a reconnect).
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn opencode_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("SIDEPANEL_OPENCODE_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "SIDEPANEL_OPENCODE_BIN={} is not a file",
                bin.display()
            );
            Some(bin)
        }
        None if std::env::var_os("CI").is_some() => {
            panic!(
                "{test}: SIDEPANEL_OPENCODE_BIN is not set in CI (.ci/test installs opencode-ai)"
            )
        }
        None => {
            println!(
                "SKIPPED {test}: SIDEPANEL_OPENCODE_BIN is not set. `.ci/test` installs \
                 opencode-ai with npm and sets it."
            );
            None
        }
    }
}

/// A real `opencode serve` on a fixed (free) port, restartable on the same port.
pub struct OpencodeServer {
    bin: PathBuf,
    pub port: u16,
    home: tempfile::TempDir,
    pub project: tempfile::TempDir,
    password: Option<String>,
    /// Extra environment for the server (the plugin's settings).
    pub env: Vec<(String, String)>,
    child: Option<tokio::process::Child>,
}

impl OpencodeServer {
    /// Prepares a throwaway HOME and project whose venice provider points at `gateway`.
    pub fn new(bin: PathBuf, gateway: &Running, password: Option<&str>) -> Self {
        let home = tempfile::tempdir().expect("home");
        let project = tempfile::tempdir().expect("project");
        let config = json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false, "share": "disabled",
            "model": format!("venice/{MODEL}"), "small_model": format!("venice/{MODEL}"),
            "enabled_providers": ["venice"],
            "provider": {"venice": {"options": {
                "apiKey": "sk-client-dummy",
                "baseURL": format!("http://{}/api/v1", gateway.addr),
            }}},
        });
        std::fs::write(project.path().join("opencode.json"), config.to_string()).expect("config");
        std::fs::write(project.path().join("hello.txt"), "hello\n").expect("hello.txt");
        Self {
            bin,
            port: common::free_addr().port(),
            home,
            project,
            password: password.map(str::to_owned),
            env: Vec::new(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (output goes to `serve-<n>.log` in its HOME).
    pub fn start(&mut self) {
        let h = self.home.path();
        let n = std::fs::read_dir(h).map(|d| d.count()).unwrap_or(0);
        let log = std::fs::File::create(h.join(format!("serve-{n}.log"))).expect("log file");
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(["serve", "--hostname", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .current_dir(self.project.path())
            // OpenCode takes its directory from $PWD, not from the process's working directory.
            .env("PWD", self.project.path())
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join(".config"))
            .env("XDG_DATA_HOME", h.join(".local/share"))
            .env("XDG_CACHE_HOME", h.join(".cache"))
            .env("XDG_STATE_HOME", h.join(".local/state"))
            .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
            .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
            .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
            .env("OPENCODE_DISABLE_SHARE", "1")
            .env("npm_config_offline", "true")
            .env_remove("VENICE_API_KEY")
            .env_remove("OPENCODE_SERVER_USERNAME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true);
        match &self.password {
            Some(p) => cmd.env("OPENCODE_SERVER_PASSWORD", p),
            None => cmd.env_remove("OPENCODE_SERVER_PASSWORD"),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().expect("opencode serve starts"));
    }

    /// Kills the server and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill opencode");
        }
    }

    /// A request to the server (with its password), bounded by `timeout`.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let rb = common::client()
            .request(method, format!("{}{path}", self.url()))
            .timeout(timeout);
        match &self.password {
            Some(p) => rb.basic_auth("opencode", Some(p)),
            None => rb,
        }
    }

    /// `GET path` as JSON (30 s at most); panics naming `path` when it fails.
    pub async fn get_json(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path, Duration::from_secs(30))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// Creates a session (with a title, so OpenCode makes no title call) and sends one prompt
    /// synchronously; returns the session id and the assistant message OpenCode answered.
    pub async fn prompt(&self, text: &str) -> (String, Value) {
        let s: Value = self
            .request(reqwest::Method::POST, "/session", Duration::from_secs(30))
            .json(&json!({"title": "link test"}))
            .send()
            .await
            .expect("POST /session")
            .json()
            .await
            .expect("session JSON");
        let sid = s["id"].as_str().expect("session id").to_owned();
        let resp = self
            .request(
                reqwest::Method::POST,
                &format!("/session/{sid}/message"),
                DEADLINE,
            )
            .json(&json!({
                "model": {"providerID": "venice", "modelID": MODEL},
                "parts": [{"type": "text", "text": text}],
            }))
            .send()
            .await
            .expect("POST /session/{id}/message");
        assert!(
            resp.status().is_success(),
            "prompt failed: {}",
            resp.status()
        );
        let answer: Value = resp.json().await.expect("answer JSON");
        (sid, answer)
    }
}

/// A gateway in front of the simulator, linked to `url` (fast reconnects for the test).
pub async fn gateway(url: Option<&str>, password: Option<&str>) -> (SimHandle, Running) {
    let sim = simulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    let mut c = common::config(&sim.base_url());
    c.opencode.url = url.map(|u| url::Url::parse(u).expect("url"));
    c.opencode.password = password.and_then(Password::new);
    c.opencode.reconnect_min = Duration::from_millis(100);
    c.opencode.reconnect_max = Duration::from_secs(1);
    c.opencode.request_timeout = Duration::from_secs(1);
    (sim, common::gateway(c).await)
}

/// Polls the hub's state until `pred` holds; panics with the link's state after `DEADLINE`.
pub async fn wait_for<T>(gw: &Running, what: &str, pred: impl Fn(&State) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = gw.hub.with_state(&pred) {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            let link = gw.hub.with_state(|s| s.opencode_link.clone());
            panic!("timed out waiting for {what}; link: {link:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn link_is(state: LinkState) -> impl Fn(&State) -> Option<LinkStatus> {
    move |s| (s.opencode_link.state == state).then(|| s.opencode_link.clone())
}

/// Sums OpenCode's own view of a session: assistant messages, their input tokens and cost.
pub async fn opencode_totals(oc: &OpencodeServer, sid: &str) -> (u64, u64, f64) {
    let messages = oc.get_json(&format!("/session/{sid}/message")).await;
    let list = messages.as_array().cloned().unwrap_or_default();
    let assistants: Vec<&Value> = list
        .iter()
        .filter(|m| m["info"]["role"] == "assistant")
        .collect();
    let input = assistants
        .iter()
        .map(|m| m["info"]["tokens"]["input"].as_u64().unwrap_or(0))
        .sum();
    let cost = assistants
        .iter()
        .map(|m| m["info"]["cost"].as_f64().unwrap_or(0.0))
        .sum();
    (assistants.len() as u64, input, cost)
}

/// The events of one OpenCode prompt (shapes from facts/opencode.md §1.4–1.5), as the server's
/// stream carries them.
pub fn bus_events(sid: &str) -> Vec<Value> {
    let tokens = json!({"total": 1290, "input": 1034, "output": 49, "reasoning": 7,
                        "cache": {"write": 0, "read": 200}});
    let ev = |t: &str, p: Value| json!({"id": format!("evt_{t}"), "type": t, "properties": p});
    vec![
        ev(
            "session.created",
            json!({"sessionID": sid, "info": {"id": sid, "title": "T"}}),
        ),
        ev(
            "message.updated",
            json!({"sessionID": sid, "info": {"id": "msg_u", "sessionID": sid,
            "role": "user", "time": {"created": 1}}}),
        ),
        ev(
            "message.updated",
            json!({"sessionID": sid, "info": {"id": "msg_a", "sessionID": sid,
            "role": "assistant", "time": {"created": 2}, "cost": 0,
            "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}}}),
        ),
        ev(
            "message.part.delta",
            json!({"sessionID": sid, "messageID": "msg_a", "partID": "prt_t",
            "field": "text", "delta": "Hel"}),
        ),
        ev(
            "message.part.updated",
            json!({"sessionID": sid, "part": {"id": "prt_tool",
            "sessionID": sid, "messageID": "msg_a", "type": "tool", "callID": "call_1",
            "tool": "read", "state": {"status": "completed", "input": {"filePath": "/p/hello.txt"},
            "output": "hello"}}}),
        ),
        ev(
            "message.part.updated",
            json!({"sessionID": sid, "part": {"id": "prt_step",
            "sessionID": sid, "messageID": "msg_a", "type": "step-finish", "reason": "stop",
            "tokens": tokens, "cost": 0.001246}}),
        ),
        ev(
            "message.updated",
            json!({"sessionID": sid, "info": {"id": "msg_a", "sessionID": sid,
            "role": "assistant", "time": {"created": 2, "completed": 3}, "cost": 0.001246,
            "tokens": tokens}}),
        ),
        ev(
            "session.status",
            json!({"sessionID": sid, "status": {"type": "idle"}}),
        ),
        ev("session.idle", json!({"sessionID": sid})),
    ]
}

/// The same events as the plugin posts them (`PluginEvent { event, timestamp, data }`).
pub fn plugin_body(events: &[Value]) -> Vec<u8> {
    let wire: Vec<Value> = events
        .iter()
        .filter_map(|e| sidepanel::ingest::to_wire(e, 1))
        .collect();
    serde_json::to_vec(&wire).expect("json")
}

/// The session's OpenCode side as JSON, once the hub applied everything sent so far.
pub async fn settled_session(gw: &Running, sid: &str, events: u64) -> Value {
    let s = wait_for(gw, "the events applied", |st| {
        (st.plugin.events >= events).then(|| st.sessions.get(sid).cloned())?
    })
    .await;
    let mut v = serde_json::to_value(&s.opencode).expect("json");
    for k in ["first_event_at", "last_event_at"] {
        v[k] = Value::Null;
    }
    v
}

/// `sidepanel serve --open …` on a free port with a throwaway data dir, `env` added and no
/// display; returns the child and the expected dashboard URL (with the install token).
pub async fn serve_with_open(
    env: &[(&str, &str)],
) -> (tokio::process::Child, String, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("data dir");
    let listen = common::free_addr();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sidepanel"));
    cmd.args(["serve", "--open", "--listen"])
        .arg(listen.to_string())
        .args(["--upstream", "http://127.0.0.1:9/api/v1", "--data-dir"])
        .arg(data.path())
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("BROWSER")
        .env_remove("VENICE_API_KEY")
        .env_remove("SIDEPANEL_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("sidepanel serve starts");
    // The token exists once the server is up (it is read before the listener opens).
    let token_file = data.path().join(sidepanel::ingest::TOKEN_FILE);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let token = loop {
        match std::fs::read_to_string(&token_file) {
            Ok(t) if !t.trim().is_empty() => break t.trim().to_owned(),
            _ => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no install token written"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    (child, format!("http://{listen}/#token={token}"), data)
}
