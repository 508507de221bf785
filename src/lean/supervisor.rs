//! The supervisor task: keeps one `lean-lsp-mcp` running and feeds it the checks.
//!
//! Owns the server's life: start (spawn + handshake), serve (commands in, debounced checks out,
//! one at a time, a newer request for the running file cancels it so its answer is dropped),
//! notice a crash (the child's stdout ends) or a hang (a call times out), mark every cached
//! file stale at once, restart with exponential backoff (reset by a successful check), and
//! re-check the cached files after a restart. A server that fails to start (exits at once,
//! fails the handshake) is a crash too: a crash loop shows as `disconnected` with the error,
//! a growing `restarts` count and `retry_at`, the time of the next attempt, while the backoff
//! doubles. A missing command is `unavailable`: published once, looked for again every
//! `restart_backoff_max`. `restart()` skips any wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use pingora::server::ShutdownWatch;
use tokio::sync::mpsc;

use super::cache::{now_ms, Cache};
use super::check::{self, Report};
use super::client::{McpClient, McpError};
use super::proof::{ErrorKind, ProofError, ServerState, ServerStatus};
use super::schedule::{Job, Scheduler};
use super::Command;
use crate::config::LeanConfig;
use crate::hub::HubHandle;
use crate::services::{stopped, Task};

/// First restart delay (capped by `restart_backoff_max`).
const MIN_BACKOFF: Duration = Duration::from_millis(500);

type Running<'c> = Pin<Box<dyn Future<Output = (Job, Result<Report, McpError>)> + Send + 'c>>;

/// How serving a server ended.
enum End {
    Shutdown,
    Restart,
    /// The server died or hung; the reason, and the check it cut short.
    Died(String, Option<String>),
}

/// How a wait while the server is down ended.
enum Waited {
    Elapsed,
    Forced,
    Shutdown,
}

struct Inner {
    rx: mpsc::Receiver<Command>,
    rx_open: bool,
    cache: Cache,
    schedule: Scheduler,
}

/// The Lean background service: add it as `Supervised(Arc::new(task))`.
pub struct LeanTask {
    config: LeanConfig,
    status: Arc<RwLock<ServerStatus>>,
    inner: tokio::sync::Mutex<Inner>,
}

impl LeanTask {
    pub(super) fn new(
        config: LeanConfig,
        hub: HubHandle,
        rx: mpsc::Receiver<Command>,
        status: Arc<RwLock<ServerStatus>>,
    ) -> Self {
        let schedule = Scheduler::new(config.debounce);
        Self {
            config,
            status,
            inner: tokio::sync::Mutex::new(Inner {
                rx,
                rx_open: true,
                cache: Cache::new(hub),
                schedule,
            }),
        }
    }

    fn server(&self) -> ServerStatus {
        self.status.read().clone()
    }

    /// Changes the server status and publishes it when it changed; returns whether it did.
    fn set_server(&self, inner: &Inner, f: impl FnOnce(&mut ServerStatus)) -> bool {
        let mut next = self.server();
        f(&mut next);
        let prev = self.server();
        let changed = (next.status, next.pid, &next.error, next.restarts)
            != (prev.status, prev.pid, &prev.error, prev.restarts);
        if changed {
            next.since = now_ms();
            *self.status.write() = next.clone();
            inner.cache.publish_server(&next);
        }
        changed
    }

    fn ready(&self, inner: &Inner, client: &McpClient) {
        let info = client.info.clone();
        self.set_server(inner, |s| {
            s.status = ServerState::Ready;
            s.pid = client.pid();
            s.name = info.name;
            s.version = info.version;
            s.protocol_version = Some(info.protocol_version);
            s.error = None;
            s.retry_at = None;
        });
        tracing::info!(pid = client.pid(), server = ?client.info, "lean server ready");
    }

    /// The server is gone (or could not start) and the next attempt is in `retry_in`: publish
    /// it and mark the files.
    fn down(
        &self,
        inner: &mut Inner,
        state: ServerState,
        error: String,
        cut: Option<String>,
        retry_in: Duration,
    ) {
        let retry_at = now_ms() + u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX / 2);
        let changed = self.set_server(inner, |s| {
            s.status = state;
            s.pid = None;
            s.error = Some(error.clone());
            s.retry_at = Some(retry_at);
        });
        if changed || cut.is_some() {
            let server = self.server();
            let interrupted = cut.as_deref().map(|f| {
                let e = ProofError {
                    kind: ErrorKind::Server,
                    message: error.clone(),
                };
                (f, e)
            });
            inner.cache.mark_all_down(&server, interrupted);
        }
    }

    /// Waits `delay` while the server is down, still taking commands.
    async fn wait_down(
        &self,
        inner: &mut Inner,
        delay: Duration,
        shutdown: &mut ShutdownWatch,
    ) -> Waited {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                _ = stopped(shutdown) => return Waited::Shutdown,
                _ = tokio::time::sleep_until(deadline) => return Waited::Elapsed,
                cmd = inner.rx.recv(), if inner.rx_open => match cmd {
                    None => inner.rx_open = false,
                    Some(Command::Restart) => return Waited::Forced,
                    Some(Command::Check { file, line }) => {
                        let version = inner.schedule.request(&file, line, Instant::now());
                        inner.cache.note_waiting(&file, version, &self.server());
                    }
                },
            }
        }
    }

    /// Feeds checks to a ready server until it dies, a restart is asked for, or shutdown.
    async fn serve(
        &self,
        inner: &mut Inner,
        client: &McpClient,
        shutdown: &mut ShutdownWatch,
        backoff: &mut Duration,
    ) -> End {
        let mut running: Option<(String, Running<'_>)> = None;
        loop {
            let due = inner
                .schedule
                .next_due()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                _ = stopped(shutdown) => return End::Shutdown,
                reason = client.closed() => {
                    return End::Died(reason, running.map(|(f, _)| f));
                }
                cmd = inner.rx.recv(), if inner.rx_open => match cmd {
                    None => inner.rx_open = false,
                    Some(Command::Restart) => return End::Restart,
                    Some(Command::Check { file, line }) => {
                        let version = inner.schedule.request(&file, line, Instant::now());
                        if running.as_ref().is_some_and(|(f, _)| *f == file) {
                            tracing::debug!(file = %file, version, "newer request; the running check's answer will be dropped");
                            running = None;
                        }
                    }
                },
                (job, result) = poll_running(&mut running) => {
                    running = None;
                    match result {
                        Err(e) => return End::Died(e.to_string(), Some(job.file)),
                        Ok(report) => {
                            if report.succeeded() {
                                *backoff = MIN_BACKOFF.min(self.config.restart_backoff_max);
                            }
                            self.finish(inner, &job, report);
                        }
                    }
                }
                _ = sleep_until_opt(due), if running.is_none() && due.is_some() => {
                    if let Some(job) = inner.schedule.take_due(Instant::now()) {
                        let server = self.server();
                        let shown = check::elaborating(inner.cache.get(&job.file), &job, &server, now_ms());
                        inner.cache.store(shown, job.line);
                        tracing::debug!(file = %job.file, version = job.version, line = job.line, "checking");
                        let file = job.file.clone();
                        running = Some((file, Box::pin(async move {
                            let result = check::run(client, &job).await;
                            (job, result)
                        })));
                    }
                }
            }
        }
    }

    fn finish(&self, inner: &mut Inner, job: &Job, report: Report) {
        if !inner.schedule.is_latest(&job.file, job.version) || inner.schedule.is_pending(&job.file)
        {
            tracing::debug!(file = %job.file, version = job.version, "answer for an older version dropped");
            return;
        }
        let state = check::apply(
            inner.cache.get(&job.file),
            job,
            report,
            &self.server(),
            now_ms(),
        );
        tracing::info!(
            file = %job.file,
            version = job.version,
            status = ?state.status,
            errors = state.counts.errors,
            goals = state.goals.len(),
            "lean check done"
        );
        inner.cache.store(state, job.line);
    }
}

async fn poll_running(
    running: &mut Option<(String, Running<'_>)>,
) -> (Job, Result<Report, McpError>) {
    match running {
        Some((_, fut)) => fut.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(due: Option<tokio::time::Instant>) {
    match due {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Task for LeanTask {
    fn name(&self) -> &'static str {
        "lean"
    }

    async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) -> Result<(), String> {
        let mut guard = self.inner.lock().await;
        let inner = &mut *guard;
        if !self.config.enabled {
            inner.cache.publish_server(&self.server());
            stopped(&mut shutdown).await;
            return Ok(());
        }
        let min = MIN_BACKOFF.min(self.config.restart_backoff_max);
        let mut backoff = min;
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if self.server().status != ServerState::Unavailable {
                self.set_server(inner, |s| {
                    s.status = ServerState::Starting;
                    s.pid = None;
                    s.retry_at = None;
                });
            }
            let started = tokio::select! {
                r = McpClient::start(&self.config) => r,
                _ = stopped(&mut shutdown) => return Ok(()),
            };
            let delay = match started {
                Ok(client) => {
                    self.ready(inner, &client);
                    let now = Instant::now();
                    for (file, line) in inner.cache.recheck_list() {
                        inner.schedule.request_now(&file, line, now);
                    }
                    let end = self
                        .serve(inner, &client, &mut shutdown, &mut backoff)
                        .await;
                    drop(client);
                    match end {
                        End::Shutdown => return Ok(()),
                        End::Restart => {
                            tracing::info!("lean server restart requested");
                            self.bump_restarts();
                            let why = "restart requested".to_owned();
                            self.down(inner, ServerState::Disconnected, why, None, Duration::ZERO);
                            backoff = min;
                            Duration::ZERO
                        }
                        End::Died(reason, cut) => {
                            tracing::warn!(reason = %reason, retry_in_ms = backoff.as_millis() as u64, "lean server died; restarting");
                            self.bump_restarts();
                            let delay = next_backoff(&mut backoff, self.config.restart_backoff_max);
                            self.down(inner, ServerState::Disconnected, reason, cut, delay);
                            delay
                        }
                    }
                }
                Err(McpError::NotFound(command)) => {
                    if self.server().status != ServerState::Unavailable {
                        tracing::warn!(command = %command, "lean-lsp-mcp not found; Lean proof state unavailable (the rest of the gateway is unaffected)");
                    }
                    let why = format!("`{command}` was not found on PATH; install lean-lsp-mcp or set [lean] command");
                    let delay = self.config.restart_backoff_max;
                    self.down(inner, ServerState::Unavailable, why, None, delay);
                    delay
                }
                Err(e) => {
                    // It started and died (or answered nonsense) before it was ready: a crash.
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, restarts = self.server().restarts + 1, "lean server failed to start; restarting");
                    self.bump_restarts();
                    let delay = next_backoff(&mut backoff, self.config.restart_backoff_max);
                    self.down(inner, ServerState::Disconnected, e.to_string(), None, delay);
                    delay
                }
            };
            match self.wait_down(inner, delay, &mut shutdown).await {
                Waited::Shutdown => return Ok(()),
                Waited::Forced => backoff = min,
                Waited::Elapsed => {}
            }
        }
    }
}

impl LeanTask {
    /// Counts a restart; published with the status change that follows.
    fn bump_restarts(&self) {
        self.status.write().restarts += 1;
    }
}

/// The delay to wait now, doubling the next one up to `max`.
fn next_backoff(backoff: &mut Duration, max: Duration) -> Duration {
    let now = *backoff;
    *backoff = (*backoff * 2).min(max);
    now
}
