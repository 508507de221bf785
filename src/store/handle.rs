//! The store's two faces for the rest of the program: [`Reader`], synchronous read-only access
//! (the CLI, and the server's query side), and [`StoreHandle`], the async, cloneable handle the
//! WebSocket methods and ingest use (restore, timeline, export, snapshots, `committed`).
//!
//! Reads run on a read-only connection of their own under `spawn_blocking`, so a long export
//! never delays the writer or an async thread; writes go to the writer thread as commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::config::StoreConfig;
use super::crypto::{self, Crypto};
use super::error::StoreError;
use super::export::{self, ExportFormat};
use super::health::{Health, StoreFault, StoreStatus};
use super::read::{Db, SessionSummary, TimelinePoint};
use super::retention::RetentionReport;
use super::schema;
use super::task::{Command, Runner};
use super::writer::{SnapshotInfo, SnapshotReason};
use crate::config::ApiKey;
use crate::hub::{HubHandle, State};

/// What to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The state a snapshot holds.
    Snapshot(i64),
    /// The state right after this sequence (nearest snapshot + replay).
    Sequence(u64),
}

/// The outcome of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restoration {
    /// The sequence of the `snapshot` update that published the restored state.
    pub sequence: u64,
    /// The point restored: the state right after this sequence.
    pub restored: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    /// The OpenCode message the restored point maps to, for OpenCode's session revert API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Read-only access to a store. Takes no writer lock, so it works while `serve` runs.
pub struct Reader {
    conn: Connection,
    crypto: Crypto,
    path: PathBuf,
    redact: Vec<ApiKey>,
}

impl Reader {
    /// Opens an existing store read-only (wrong key, newer schema, missing file: clear errors).
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let conn = schema::open_reader(&config.path)?;
        let crypto = crypto::unlock(&conn, config, false)?;
        Ok(Self {
            conn,
            crypto,
            path: config.path.clone(),
            redact: config.redact.clone(),
        })
    }

    fn db(&self) -> Db<'_> {
        Db {
            conn: &self.conn,
            crypto: &self.crypto,
            path: &self.path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last stored sequence (0 when empty).
    pub fn last_sequence(&self) -> Result<u64, StoreError> {
        Ok(self.db().bounds()?.1)
    }

    /// Sessions, most recently active first.
    pub fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        self.db().sessions(limit)
    }

    /// The restorable points of a session.
    pub fn timeline(&self, session: &str, limit: usize) -> Result<Vec<TimelinePoint>, StoreError> {
        self.db().timeline(session, limit)
    }

    /// The state at `target`, with the sequence it is at.
    pub fn state_at(&self, target: RestoreTarget) -> Result<(u64, State), StoreError> {
        match target {
            RestoreTarget::Snapshot(id) => self.db().snapshot(id),
            RestoreTarget::Sequence(seq) => Ok((seq, self.db().state_at(seq)?)),
        }
    }

    /// One session as JSON Lines or Markdown; configured secrets are redacted.
    pub fn export(&self, session: &str, format: ExportFormat) -> Result<String, StoreError> {
        let db = self.db();
        let summary = db.session(session)?;
        let updates = db.session_updates(session)?;
        Ok(export::render(&summary, &updates, format, &self.redact))
    }

    /// The OpenCode message the update at `sequence` maps to, if any.
    pub fn message_at(&self, sequence: u64) -> Result<Option<String>, StoreError> {
        self.db().message_at(sequence)
    }

    /// A stored secret, decrypted.
    pub fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db().secret(name)
    }
}

/// The async handle to a running store. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    pub(super) reader: Arc<Mutex<Reader>>,
    pub(super) commands: mpsc::UnboundedSender<Command>,
    pub(super) committed: watch::Receiver<u64>,
    pub(super) runner: Arc<Runner>,
    pub(super) health: Arc<Health>,
}

impl StoreHandle {
    /// Whether the store writes, lags, fails (and why) or stopped, and how far behind it is.
    pub fn status(&self) -> StoreStatus {
        self.health
            .status(self.runner.is_running(), std::time::SystemTime::now())
    }

    /// Keeps the hub's live state told of the store's status (`store` in the state and in
    /// `/healthz`, a `health` update at each change of status; see `store/health.rs`). Reports
    /// are sent while the store task runs (every [`super::health::REPORT_EVERY`]).
    pub fn report_to(&self, hub: crate::hub::HubHandle) {
        self.health.report_to(hub, self.runner.is_running());
    }

    /// Makes the writer's own SQLite connection fail as a full disk or a read-only database
    /// would (real `SQLITE_FULL` / `SQLITE_READONLY` errors), or clears that. For fault tests.
    #[doc(hidden)]
    pub async fn simulate(&self, fault: StoreFault) -> Result<(), StoreError> {
        self.ask(|reply| Command::Simulate { fault, reply }).await
    }

    /// The last committed (durable) sequence; it only grows. An update is *acknowledged* once
    /// this has reached its sequence: it then survives a crash of the process.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Waits until `sequence` is committed, or `timeout` passes.
    pub async fn wait_committed(&self, sequence: u64, timeout: Duration) -> Result<(), StoreError> {
        let mut rx = self.committed.clone();
        let wait = async move { rx.wait_for(|c| *c >= sequence).await.map(|_| ()) };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Unwritten(format!(
                "sequence {sequence} not committed within {timeout:?}"
            ))),
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || f(&reader.lock()))
            .await
            .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
    }

    /// Writes a snapshot of the stored state now (after committing what is queued).
    pub async fn snapshot_now(&self) -> Result<SnapshotInfo, StoreError> {
        self.ask(|reply| Command::Snapshot {
            reason: SnapshotReason::Manual,
            reply,
        })
        .await
    }

    /// Runs retention now.
    pub async fn retain_now(&self) -> Result<RetentionReport, StoreError> {
        self.ask(|reply| Command::Retain { reply }).await
    }

    /// Stores a secret (e.g. the Venice key), encrypted like the payloads.
    pub async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let (name, value) = (name.to_owned(), zeroize::Zeroizing::new(value.to_vec()));
        self.ask(|reply| Command::PutSecret { name, value, reply })
            .await
    }

    /// Sessions, most recently active first.
    pub async fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        self.read(move |r| r.sessions(limit)).await
    }

    /// The restorable points of a session, oldest first (at most `limit`, the newest).
    pub async fn timeline(
        &self,
        session: &str,
        limit: usize,
    ) -> Result<Vec<TimelinePoint>, StoreError> {
        let session = session.to_owned();
        self.read(move |r| r.timeline(&session, limit)).await
    }

    /// The stored state at `target`.
    pub async fn state_at(&self, target: RestoreTarget) -> Result<(u64, State), StoreError> {
        self.read(move |r| r.state_at(target)).await
    }

    /// Restores `target`: rebuilds its state, makes the hub adopt it (every client gets one
    /// `snapshot` update), and — through the hub's sink — records the restore as a new update.
    pub async fn restore(
        &self,
        target: RestoreTarget,
        hub: &HubHandle,
    ) -> Result<Restoration, StoreError> {
        if let RestoreTarget::Sequence(seq) = target {
            // A point the hub has published but the writer has not committed yet.
            if seq > *self.committed.borrow() && seq <= hub.with_state(|s| s.sequence) {
                self.wait_committed(seq, Duration::from_secs(2)).await?;
            }
        }
        let (restored, state) = self.state_at(target).await?;
        let message_id = self.read(move |r| r.message_at(restored)).await?;
        let snapshot_id = match target {
            RestoreTarget::Snapshot(id) => Some(id),
            RestoreTarget::Sequence(_) => None,
        };
        let from = json!({"sequence": restored, "snapshot_id": snapshot_id});
        let sequence = hub.adopt(state, from);
        tracing::info!(
            restored,
            ?snapshot_id,
            sequence,
            "restored an earlier state"
        );
        Ok(Restoration {
            sequence,
            restored,
            snapshot_id,
            message_id,
        })
    }

    /// One session as JSON Lines or Markdown.
    pub async fn export(&self, session: &str, format: ExportFormat) -> Result<String, StoreError> {
        let session = session.to_owned();
        self.read(move |r| r.export(&session, format)).await
    }

    /// Asks the writer to commit everything queued, write a shutdown snapshot and stop; waits
    /// up to `timeout` (blocking). Call it after the server stopped, so no update is left in
    /// memory. True when the writer stopped in time.
    pub fn close(&self, timeout: Duration) -> bool {
        self.runner.stop_blocking(timeout)
    }
}
