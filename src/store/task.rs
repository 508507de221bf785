//! The writer thread and its supervision: [`StoreTask`], the background unit named `store`.
//!
//! One dedicated OS thread (`sidepanel-store`) owns the [`Writer`]; it runs a small
//! current-thread tokio runtime only to wait on its inputs: the hub's sink (updates), commands
//! from [`super::StoreHandle`], the flush deadline and the retention timer. Updates are
//! batched: the first one of a batch starts the `flush_interval` clock; later ones wait in the
//! channel without waking the thread (one wake per batch, not per update: the hub's sends
//! then cost no futex wake), and when the clock runs out the batch commits (transactions of at
//! most [`MAX_BATCH`]). A failed commit (disk full, read-only, I/O error,
//! a lock held too long) keeps the updates in memory and retries with backoff (1 s doubling to
//! 5 s) — and only then, however many updates arrive meanwhile; nothing is dropped. After each
//! commit the `committed` watch moves to the last stored sequence, and the metrics (when given)
//! count the batch and its write lag. The shared [`Health`] says all along whether the store
//! writes, lags or fails, and why.
//!
//! The thread starts with [`super::Store::start`], so the store works without pingora
//! (tests, benches). [`StoreTask::run`] watches it: a panic in the thread ends the run with an
//! error (logged by the supervisor as `store`), and the next run starts a new thread on the same
//! writer and channels, so no update is lost. At shutdown the task — or
//! [`super::StoreHandle::close`] — asks the thread to drain whatever is queued, commit, write a
//! `shutdown` snapshot and stop. While it runs, the task also reports the store's status to
//! the hub when it changes ([`Health::report`], every [`health::REPORT_EVERY`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use parking_lot::{Condvar, Mutex};
use pingora::server::ShutdownWatch;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::commit::{flush, try_flush};
use super::error::StoreError;
use super::health::{self, Health, StoreFault};
use super::retention::{Retention, RetentionReport};
use super::writer::{SnapshotInfo, SnapshotReason, Writer};
use crate::hub::Stored;
use crate::metrics::Metrics;
use crate::services::{stopped, Task};

/// Most updates committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// How often retention runs (also once at start).
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);
pub(super) const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between retries of a failing commit: how soon writes resume after the disk
/// has space again (a failed attempt costs one rolled-back transaction of at most
/// [`MAX_BATCH`] updates).
pub(super) const RETRY_MAX: Duration = Duration::from_secs(5);

/// Requests to the writer thread.
pub(super) enum Command {
    Snapshot {
        reason: SnapshotReason,
        reply: oneshot::Sender<Result<SnapshotInfo, StoreError>>,
    },
    Retain {
        reply: oneshot::Sender<Result<RetentionReport, StoreError>>,
    },
    PutSecret {
        name: String,
        value: zeroize::Zeroizing<Vec<u8>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Makes the writer's connection produce a real SQLite fault (fault tests).
    Simulate {
        fault: StoreFault,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Drain, commit, snapshot, stop.
    Stop,
}

/// Everything the thread owns; handed back when it ends so a new thread can go on.
pub(super) struct Parts {
    pub writer: Writer,
    pub updates: mpsc::UnboundedReceiver<Stored>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub committed: watch::Sender<u64>,
    pub flush_interval: Duration,
    pub retention: Retention,
    /// Told about every committed batch (`sidepanel_store_*`).
    pub metrics: Option<Arc<Metrics>>,
    /// What the store reports about itself (status, lag, failures).
    pub health: Arc<Health>,
    /// Held while the writer exists.
    pub _lock: super::WriterLock,
}

/// Where the writer thread is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// Panicked; a new run may start it again.
    Failed(String),
    /// Stopped on request.
    Finished,
}

/// The thread's shared bookkeeping.
pub(super) struct Runner {
    slot: Mutex<Option<Parts>>,
    phase: Mutex<Phase>,
    cond: Condvar,
    phase_tx: watch::Sender<Phase>,
    commands: mpsc::UnboundedSender<Command>,
    health: Arc<Health>,
}

impl Runner {
    pub fn new(parts: Parts, commands: mpsc::UnboundedSender<Command>) -> Arc<Self> {
        let health = parts.health.clone();
        Arc::new(Self {
            health,
            slot: Mutex::new(Some(parts)),
            phase: Mutex::new(Phase::Failed("not started".into())),
            cond: Condvar::new(),
            phase_tx: watch::channel(Phase::Failed("not started".into())).0,
            commands,
        })
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock() = phase.clone();
        self.cond.notify_all();
        self.phase_tx.send_replace(phase);
    }

    pub fn phase(&self) -> Phase {
        self.phase.lock().clone()
    }

    /// The writer thread is running.
    pub fn is_running(&self) -> bool {
        *self.phase.lock() == Phase::Running
    }

    /// Starts the writer thread on the parts in the slot.
    pub fn spawn(self: &Arc<Self>) -> Result<(), String> {
        if self.slot.lock().is_none() {
            return Err("the writer is already running".into());
        }
        self.set(Phase::Running);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("sidepanel-store".into())
            .spawn(move || {
                let Some(mut parts) = me.slot.lock().take() else {
                    return;
                };
                let phase = thread_main(&mut parts);
                if phase == Phase::Finished {
                    // Stopped for good: close the database and release the writer lock.
                    drop(parts);
                } else {
                    *me.slot.lock() = Some(parts);
                }
                me.set(phase);
            });
        spawned.map(|_| ()).map_err(|e| {
            let msg = format!("cannot start the writer thread: {e}");
            self.set(Phase::Failed(msg.clone()));
            msg
        })
    }

    /// Asks the thread to drain and stop, and waits up to `timeout`. True when it stopped.
    pub fn stop_blocking(&self, timeout: Duration) -> bool {
        let _ = self.commands.send(Command::Stop);
        let mut phase = self.phase.lock();
        let deadline = std::time::Instant::now() + timeout;
        while *phase == Phase::Running {
            if self.cond.wait_until(&mut phase, deadline).timed_out() {
                return false;
            }
        }
        true
    }
}

fn thread_main(parts: &mut Parts) -> Phase {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Phase::Failed(format!("cannot build the writer runtime: {e}")),
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(writer_loop(parts)))) {
        Ok(()) => Phase::Finished,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            if let Err(e) = parts.writer.reload() {
                tracing::error!(error = %e, "session store: reload after a panic failed");
            }
            Phase::Failed(format!("writer thread panicked: {msg}"))
        }
    }
}

async fn writer_loop(parts: &mut Parts) {
    let mut pending: Vec<Stored> = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut retry = RETRY_MIN;
    let mut updates_open = true;
    let mut retention = tokio::time::interval(RETENTION_EVERY);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            cmd = parts.commands.recv() => match cmd {
                Some(Command::Stop) | None => break,
                Some(Command::Snapshot { reason, reply }) => {
                    take_queued(parts, &mut pending);
                    let r = match try_flush(parts, &mut pending) {
                        Ok(()) => parts.writer.snapshot(reason),
                        Err(e) => Err(StoreError::Unwritten(e)),
                    };
                    let _ = reply.send(r);
                }
                Some(Command::Retain { reply }) => {
                    take_queued(parts, &mut pending);
                    flush(parts, &mut pending, &mut retry, &mut deadline);
                    let _ = reply.send(parts.writer.retain(parts.retention, SystemTime::now()));
                }
                Some(Command::PutSecret { name, value, reply }) => {
                    let _ = reply.send(parts.writer.put_secret(&name, &value));
                }
                Some(Command::Simulate { fault, reply }) => {
                    let w = &parts.writer;
                    let _ = reply.send(health::simulate(&w.conn, &w.path, fault));
                }
            },
            // Only while no batch is open: arrivals during the clock (or while a failed commit
            // waits for its retry) stay queued until the deadline takes them all.
            u = parts.updates.recv(), if updates_open && deadline.is_none() => match u {
                Some(u) => {
                    pending.push(u);
                    take_queued(parts, &mut pending);
                    deadline = Some(Instant::now() + parts.flush_interval);
                }
                // The hub closed its sink after its final drain: everything is here.
                None => {
                    updates_open = false;
                    deadline = Some(Instant::now());
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                take_queued(parts, &mut pending);
                flush(parts, &mut pending, &mut retry, &mut deadline);
            }
            _ = retention.tick() => {
                take_queued(parts, &mut pending);
                flush(parts, &mut pending, &mut retry, &mut deadline);
                if let Err(e) = parts.writer.retain(parts.retention, SystemTime::now()) {
                    tracing::error!(error = %e, "session store retention failed");
                }
            }
        }
    }
    // Stop: take whatever is queued, commit (a few tries), snapshot.
    take_queued(parts, &mut pending);
    for _ in 0..3 {
        if try_flush(parts, &mut pending).is_ok() {
            break;
        }
    }
    if pending.is_empty() && parts.writer.since_snapshot() > 0 {
        if let Err(e) = parts.writer.snapshot(SnapshotReason::Shutdown) {
            tracing::warn!(error = %e, "session store: no shutdown snapshot");
        }
    }
    // Fold the WAL into the database so the file alone is complete at rest.
    if let Err(e) = parts.writer.checkpoint_wal() {
        tracing::debug!(error = %e, "session store: WAL checkpoint at stop failed");
    }
    if !pending.is_empty() {
        tracing::error!(
            lost = pending.len(),
            "session store stopped with updates it could not write"
        );
    }
}

/// Moves every queued update into `pending` and tells the health what is held.
fn take_queued(parts: &mut Parts, pending: &mut Vec<Stored>) {
    while let Ok(u) = parts.updates.try_recv() {
        pending.push(u);
    }
    parts.health.holding(pending);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The supervised background unit `store`: keeps the writer thread running and stops it at
/// shutdown.
pub struct StoreTask {
    pub(super) runner: Arc<Runner>,
}

#[async_trait]
impl Task for StoreTask {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) -> Result<(), String> {
        let mut phase = self.runner.phase_tx.subscribe();
        match self.runner.phase() {
            Phase::Failed(_) => self.runner.spawn()?,
            Phase::Running => {}
            Phase::Finished => {
                stopped(&mut shutdown).await;
                return Ok(());
            }
        }
        let mut report = tokio::time::interval(health::REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = report.tick() => self.runner.health.report(self.runner.is_running()),
                changed = phase.changed() => {
                    if changed.is_err() {
                        return Err("the writer's status channel closed".into());
                    }
                    match self.runner.phase() {
                        Phase::Running => {}
                        Phase::Failed(e) => {
                            // `stopped` until the supervisor's next run starts a new thread.
                            self.runner.health.report(false);
                            return Err(e);
                        }
                        Phase::Finished => {
                            stopped(&mut shutdown).await;
                            return Ok(());
                        }
                    }
                }
                () = stopped(&mut shutdown) => {
                    let _ = self.runner.commands.send(Command::Stop);
                    while self.runner.phase() == Phase::Running {
                        if phase.changed().await.is_err() {
                            break;
                        }
                    }
                    return Ok(());
                }
            }
        }
    }
}
