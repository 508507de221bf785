//! The `lean-replay` stand-in server as the tests drive it: its settings, its call log and its
//! control file (see `src/lean/replay_main.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sidepanel::config::LeanConfig;

use super::Lean;

/// Waits until the server reports itself ready.
pub async fn ready(lean: &mut Lean) -> Value {
    lean.updates
        .wait_server(super::WAIT, |s| s["status"] == "ready")
        .await
}

/// A replay server's files: its call log and its control file.
pub struct Replay {
    dir: tempfile::TempDir,
}

impl Replay {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("calls.jsonl")
    }

    pub fn control(&self) -> PathBuf {
        self.dir.path().join("control")
    }

    /// Tells the replay server what to do on its next tool calls.
    pub fn set(&self, what: &str) {
        std::fs::write(self.control(), what).expect("write control");
    }

    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.control());
    }

    /// Runs the replay binary through `env` so its settings reach it without touching this
    /// process's environment; `env` execs, so the pid is the server's.
    pub fn config(&self, extra_env: &[&str]) -> LeanConfig {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lean");
        let mut args = vec![
            format!("LEAN_REPLAY_FIXTURES={}", fixtures.display()),
            format!("LEAN_REPLAY_LOG={}", self.log().display()),
            format!("LEAN_REPLAY_CONTROL={}", self.control().display()),
        ];
        args.extend(extra_env.iter().map(|s| (*s).to_owned()));
        args.push(env!("CARGO_BIN_EXE_lean-replay").to_owned());
        LeanConfig {
            command: "env".into(),
            args,
            debounce: Duration::from_millis(20),
            call_timeout: Duration::from_secs(5),
            restart_backoff_max: Duration::from_millis(200),
            ..LeanConfig::default()
        }
    }

    /// The log entries: `(event, name, arguments)`.
    pub fn entries(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn starts(&self) -> usize {
        self.entries()
            .iter()
            .filter(|e| e["event"] == "start")
            .count()
    }

    pub fn calls(&self, tool: &str) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e["event"] == "call" && e["name"] == tool)
            .map(|e| e["arguments"].clone())
            .collect()
    }
}
