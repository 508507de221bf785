//! The server's child process and its line-delimited JSON-RPC stdio.
//!
//! Owns spawning (own process group, so `lake serve` and the Lean workers die with it), reading
//! stdout through the bounded [`LineReader`] (garbage is skipped, a line over [`MAX_LINE`] is
//! dropped whole), writing whole lines from one writer task (a cancelled request never leaves
//! half a line), matching answers to requests by id, answering the few requests a server may
//! send, and the "closed" signal once the child's stdout ends or it exits. Dropping a
//! [`Transport`] kills the whole process group.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};

use super::lines::{preview, Line, LineReader};
use crate::config::LeanConfig;

/// Longest line accepted from the server (a large file's diagnostics are a few MB).
pub(super) const MAX_LINE: usize = 16 * 1024 * 1024;
/// Longest stderr line kept (longer ones are cut).
const MAX_STDERR_LINE: usize = 64 * 1024;
/// Stderr lines remembered to explain an exit.
const STDERR_TAIL: usize = 8;
/// Lines waiting to be written to the server.
const WRITE_QUEUE: usize = 64;
/// Garbage lines logged per connection before going quiet.
const GARBAGE_LOGGED: u32 = 16;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Why a request got no answer.
#[derive(Debug)]
pub(super) enum RpcFailure {
    Timeout,
    Closed,
}

/// A running server: its stdin, the requests waiting for answers and the closed signal.
pub(super) struct Transport {
    /// Whole lines for the writer task (a cancelled request never leaves half a line).
    stdin: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    closed: watch::Receiver<bool>,
    exit: watch::Receiver<Option<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    pid: Option<u32>,
}

impl Transport {
    /// Spawns `config.command` with `LEAN_PROJECT_PATH` set (or removed when not configured).
    pub(super) fn spawn(config: &LeanConfig) -> std::io::Result<Self> {
        let mut cmd = Command::new(&config.command);
        cmd.args(&config.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        match &config.project_path {
            Some(p) => cmd.env("LEAN_PROJECT_PATH", p),
            None => cmd.env_remove("LEAN_PROJECT_PATH"),
        };
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("child stdio was not piped"));
        };
        let (stdin_tx, stdin_rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(write_stdin(stdin, stdin_rx, pid));
        let stdin = stdin_tx;
        let pending: Pending = Arc::default();
        let (closed_tx, closed) = watch::channel(false);
        let (exit_tx, exit) = watch::channel(None);
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));

        tokio::spawn(read_stdout(
            BufReader::new(stdout),
            pending.clone(),
            stdin.clone(),
            closed_tx,
            pid,
        ));
        tokio::spawn(read_stderr(
            BufReader::new(stderr),
            stderr_tail.clone(),
            pid,
        ));
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            tracing::debug!(pid, %status, "lean server process ended");
            let _ = exit_tx.send(Some(status));
        });
        Ok(Self {
            stdin,
            pending,
            next_id: AtomicU64::new(1),
            closed,
            exit,
            stderr_tail,
            pid,
        })
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Sends a request and waits up to `timeout` (writing included) for its answer, the whole
    /// JSON-RPC message. A late answer after a timeout is dropped by the reader.
    pub(super) async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RpcFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let _guard = PendingGuard {
            id,
            pending: &self.pending,
        };
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            msg["params"] = p;
        }
        let exchange = async {
            self.write(&msg).await?;
            rx.await.map_err(|_| RpcFailure::Closed)
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(RpcFailure::Timeout),
        }
    }

    /// Sends a notification (no answer expected).
    pub(super) async fn notify(&self, method: &str, timeout: Duration) -> Result<(), RpcFailure> {
        let msg = json!({"jsonrpc": "2.0", "method": method});
        match tokio::time::timeout(timeout, self.write(&msg)).await {
            Ok(r) => r,
            Err(_) => Err(RpcFailure::Timeout),
        }
    }

    async fn write(&self, msg: &Value) -> Result<(), RpcFailure> {
        let line = to_line(msg).map_err(|_| RpcFailure::Closed)?;
        self.stdin.send(line).await.map_err(|_| RpcFailure::Closed)
    }

    /// Resolves once the server's stdout has ended or the process has exited, with the reason.
    pub(super) async fn closed(&self) -> String {
        let mut closed = self.closed.clone();
        let mut exit = self.exit.clone();
        tokio::select! {
            _ = closed.wait_for(|c| *c) => {}
            _ = exit.wait_for(Option::is_some) => {}
        }
        // stdout usually ends just before the exit status is known: give it a moment.
        let status =
            tokio::time::timeout(Duration::from_millis(500), exit.wait_for(Option::is_some))
                .await
                .ok()
                .and_then(|r| r.ok().and_then(|s| s.clone()));
        let mut reason = match status {
            Some(s) => format!("server process exited ({s})"),
            None => "server closed its stdout".to_owned(),
        };
        if let Some(last) = self.stderr_tail.lock().back() {
            reason.push_str("; last stderr line: ");
            reason.push_str(last);
        }
        reason
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.and_then(|p| i32::try_from(p).ok()) {
            // The child leads its own process group: this also ends `lake serve` and workers.
            // SAFETY: kill(2) with a negative pid signals a process group; no memory involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

/// Removes a request's waiter when the request ends, however it ends (answer, timeout, drop).
struct PendingGuard<'a> {
    id: u64,
    pending: &'a Pending,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

fn to_line(msg: &Value) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    Ok(line)
}

/// Writes queued lines whole, until the queue closes or the pipe breaks.
async fn write_stdin(mut stdin: ChildStdin, mut lines: mpsc::Receiver<Vec<u8>>, pid: Option<u32>) {
    while let Some(line) = lines.recv().await {
        let written = async {
            stdin.write_all(&line).await?;
            stdin.flush().await
        };
        if let Err(e) = written.await {
            tracing::debug!(pid, error = %e, "writing to the lean server failed");
            return;
        }
    }
}

async fn read_stdout<R: AsyncBufRead + Unpin>(
    reader: R,
    pending: Pending,
    stdin: mpsc::Sender<Vec<u8>>,
    closed: watch::Sender<bool>,
    pid: Option<u32>,
) {
    let mut lines = LineReader::new(reader, MAX_LINE);
    let mut garbage = 0u32;
    let mut complain = |what: &str, detail: String| {
        garbage += 1;
        if garbage <= GARBAGE_LOGGED {
            tracing::warn!(pid, what, detail = %detail, "lean server wrote something unusable; skipped");
        }
    };
    loop {
        match lines.next().await {
            Ok(Some(Line::Text(bytes))) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(msg)) => dispatch(Value::Object(msg), &pending, &stdin, pid),
                Ok(_) => complain("non-object JSON", preview(&bytes)),
                Err(e) => complain("non-JSON line", format!("{e}: {}", preview(&bytes))),
            },
            Ok(Some(Line::TooLong(n))) => complain("line too long", format!("{n} bytes")),
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(pid, error = %e, "reading the lean server's stdout failed");
                break;
            }
        }
    }
    // Waiters see their sender dropped: Closed.
    pending.lock().clear();
    let _ = closed.send(true);
}

/// Routes one message: answers to their waiters, server requests answered, the rest logged.
fn dispatch(msg: Value, pending: &Pending, stdin: &mpsc::Sender<Vec<u8>>, pid: Option<u32>) {
    let method = msg.get("method").and_then(Value::as_str);
    let id = msg.get("id").cloned().filter(|id| !id.is_null());
    match (method, id) {
        (Some(method), Some(id)) => {
            // A request from the server (`ping`, or something this client does not offer).
            let reply = if method == "ping" {
                json!({"jsonrpc": "2.0", "id": id, "result": {}})
            } else {
                json!({"jsonrpc": "2.0", "id": id,
                       "error": {"code": -32601, "message": format!("method not found: {method}")}})
            };
            let sent = to_line(&reply).map(|line| stdin.try_send(line).is_ok());
            if !matches!(sent, Ok(true)) {
                tracing::debug!(pid, method, "could not answer a server request");
            }
        }
        (Some(method), None) => {
            let text = msg
                .pointer("/params/data")
                .map(|d| preview(d.to_string().as_bytes()));
            tracing::debug!(
                pid,
                method,
                data = text.as_deref().unwrap_or(""),
                "lean server notification"
            );
        }
        (None, Some(id)) => {
            let waiter = id.as_u64().and_then(|id| pending.lock().remove(&id));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(msg);
                }
                None => {
                    tracing::debug!(pid, %id, "answer to no waiting request (stale or timed out); dropped")
                }
            }
        }
        (None, None) => tracing::debug!(pid, "lean server message without method or id; dropped"),
    }
}

async fn read_stderr<R: AsyncBufRead + Unpin>(
    reader: R,
    tail: Arc<Mutex<VecDeque<String>>>,
    pid: Option<u32>,
) {
    let mut lines = LineReader::new(reader, MAX_STDERR_LINE);
    while let Ok(Some(line)) = lines.next().await {
        let text = match line {
            Line::Text(b) => preview(&b),
            Line::TooLong(n) => format!("<{n} bytes>"),
        };
        if text.trim().is_empty() {
            continue;
        }
        tracing::debug!(pid, line = %text, "lean server stderr");
        let mut tail = tail.lock();
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(text);
    }
}
