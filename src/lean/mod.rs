//! Lean proof state: a supervised `lean-lsp-mcp` spoken to over MCP stdio, whose answers become
//! a per-file [`ProofState`] pushed to the hub as `HubEvent::Proof`.
//!
//! Owns the component's public face: the [`LeanControl`] trait the rest of the gateway calls
//! (WebSocket `lean.check` / `lean.restart`, plugin file events), its [`LeanError`], the
//! [`LeanHandle`] implementing it, and [`new`], which returns the background task and the
//! handle. Calls never block: they hand a command to the supervisor over a bounded channel.
//!
//! Inside: `transport` (child process, JSON-RPC over stdio), `lines` (bounded line framing),
//! `client` (MCP handshake and tool calls), `schedule` (debounce, versions), `check` (one
//! file's tool calls → state), `parse` (tool outputs → proof types), [`proof`] (the serialised
//! state), `cache` (last state per file, hub publishing) and `supervisor` ([`LeanTask`]: start,
//! watch, restart). `replay_main.rs` is not a module: it is the `lean-replay` test binary.

mod cache;
mod check;
mod client;
mod lines;
mod parse;
pub mod proof;
mod schedule;
mod supervisor;
mod transport;

use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::config::LeanConfig;
use crate::hub::HubHandle;
pub use proof::{FileStatus, ProofState, ServerState, ServerStatus};
pub use supervisor::LeanTask;

/// The key under which the server's own status ([`proof::ServerEntry`]) is published in the
/// hub's proof map (a file key always ends in `.lean`, so it cannot clash).
pub const SERVER_KEY: &str = "@server";
/// Commands that may wait for the supervisor before callers are told it is busy.
const COMMAND_QUEUE: usize = 256;
/// Longest file path accepted.
const MAX_PATH: usize = 4096;

/// Why a Lean request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeanError {
    #[error("not a .lean file: {0:?}")]
    NotALeanFile(String),
    #[error("line numbers are 1-based; 0 is not a line")]
    InvalidLine,
    #[error("the Lean component is disabled ([lean] enabled = false)")]
    Disabled,
    #[error("the Lean component is busy; try again shortly")]
    Busy,
    #[error("the Lean component has stopped")]
    Stopped,
}

/// What the rest of the gateway may ask of the Lean component.
pub trait LeanControl: Send + Sync {
    /// A `.lean` file changed (or a client asked): check it. `line` is 1-based when known.
    fn check(&self, file: &str, line: Option<u32>) -> Result<(), LeanError>;
    /// Restart the server now.
    fn restart(&self) -> Result<(), LeanError>;
}

/// Work for the supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    Check { file: String, line: Option<u32> },
    Restart,
}

/// The control side of the component, cheap to share.
pub struct LeanHandle {
    /// `None` when the component is disabled.
    tx: Option<mpsc::Sender<Command>>,
    status: Arc<RwLock<ServerStatus>>,
}

impl LeanHandle {
    /// The server's current status (also published under [`SERVER_KEY`]).
    pub fn server_status(&self) -> ServerStatus {
        self.status.read().clone()
    }

    fn send(&self, cmd: Command) -> Result<(), LeanError> {
        let tx = self.tx.as_ref().ok_or(LeanError::Disabled)?;
        tx.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => LeanError::Busy,
            mpsc::error::TrySendError::Closed(_) => LeanError::Stopped,
        })
    }
}

impl LeanControl for LeanHandle {
    fn check(&self, file: &str, line: Option<u32>) -> Result<(), LeanError> {
        if self.tx.is_none() {
            return Err(LeanError::Disabled);
        }
        if !is_lean_file(file) {
            return Err(LeanError::NotALeanFile(file.chars().take(200).collect()));
        }
        if line == Some(0) {
            return Err(LeanError::InvalidLine);
        }
        self.send(Command::Check {
            file: file.to_owned(),
            line,
        })
    }

    fn restart(&self) -> Result<(), LeanError> {
        self.send(Command::Restart)
    }
}

/// A path to a Lean source file: ends in `.lean` with a non-empty name, no NUL, bounded.
fn is_lean_file(file: &str) -> bool {
    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    file.len() <= MAX_PATH
        && !file.contains('\0')
        && name.len() > ".lean".len()
        && name.ends_with(".lean")
}

/// The Lean background task and the handle other components call.
///
/// Add the task to the server as `background_service("lean", Supervised(Arc::new(task)))`.
pub fn new(config: LeanConfig, hub: HubHandle) -> (LeanTask, Arc<LeanHandle>) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let status = Arc::new(RwLock::new(ServerStatus {
        status: if config.enabled {
            ServerState::Starting
        } else {
            ServerState::Disabled
        },
        command: config.command.clone(),
        pid: None,
        restarts: 0,
        name: None,
        version: None,
        protocol_version: None,
        error: None,
        since: cache::now_ms(),
        retry_at: None,
    }));
    let handle = LeanHandle {
        tx: config.enabled.then_some(tx),
        status: status.clone(),
    };
    (LeanTask::new(config, hub, rx, status), Arc::new(handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lean_files_pass() {
        assert!(is_lean_file("Demo.lean"));
        assert!(is_lean_file("/home/u/proj/Foo/Bar.lean"));
        assert!(!is_lean_file("Demo.lean.bak"));
        assert!(!is_lean_file("notes.md"));
        assert!(!is_lean_file(".lean"));
        assert!(!is_lean_file("dir/.lean"));
        assert!(!is_lean_file("a\0.lean"));
        assert!(!is_lean_file(&format!("{}.lean", "a".repeat(MAX_PATH))));
    }
}
