//! Session storage: an encrypted, append-only SQLite log of every hub update, snapshots at
//! checkpoints, time-travel restore, export and retention.
//!
//! ```text
//! Hub ──publish──▶ UpdateLog ──sink (unbounded, lossless, in order)──▶ writer thread
//!                                                       batches ─▶ one transaction each
//!                                                       events (sealed) + sessions + snapshots
//!                                                       committed watch ─▶ ingest "acknowledged"
//! ws restore/timeline/exportSession ─▶ StoreHandle ─▶ Reader (read-only connection)
//! sidepanel sessions list|export     ─▶ Reader (no lock; WAL readers run beside the writer)
//! ```
//!
//! Wiring (see `docs/ARCHITECTURE.md`, "Storage"):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(config: &sidepanel::config::Config, metrics: Arc<sidepanel::metrics::Metrics>,
//! #         pricing: Arc<parking_lot::RwLock<sidepanel::pricing::PriceTable>>)
//! #         -> Result<(), sidepanel::store::StoreError> {
//! use sidepanel::hub::Hub;
//! use sidepanel::store::Store;
//! let (store, restored) = Store::open(&config.store)?;
//! let (hub, handle) = Hub::resume(metrics, pricing, restored.sequence, restored.state);
//! let (store_task, store_handle, sink) = store.start();
//! hub.set_sink(sink);
//! # Ok(()) }
//! ```
//!
//! Files: `config.rs` (settings), `schema.rs` (layout, migrations, open checks), `crypto.rs`
//! (key and sealing), `lock.rs` (one writer per database), `writer.rs` (batches, snapshots),
//! `commit.rs` (committing the backlog, retries), `task.rs` (writer thread, `StoreTask`), `health.rs` (`StoreStatus`: writing, behind,
//! failing, stopped), `retention.rs`, `read.rs` (queries), `replay.rs`
//! (`State::apply_update`), `points.rs` (sessions and labels of updates), `export.rs`,
//! `handle.rs` (`Reader`, `StoreHandle`), `compat.rs` (reading the gateway's types back),
//! `keys.rs` (the Venice key kept sealed in the database: `sidepanel key …`, and `serve`'s
//! fallback to it).

pub mod cli;
mod commit;
pub mod compat;
mod config;
mod crypto;
mod error;
mod export;
mod handle;
mod health;
pub mod keys;
mod lock;
mod points;
mod read;
mod replay;
mod retention;
mod schema;
mod task;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::{mpsc, watch};

pub use config::{
    default_key_file, default_path, describe, Passphrase, StoreConfig, DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BYTES, DEFAULT_RETENTION_DAYS, DEFAULT_SNAPSHOT_EVERY, PASSPHRASE_ENV,
};
pub use error::StoreError;
pub use export::ExportFormat;
pub use handle::{Reader, Restoration, RestoreTarget, StoreHandle};
#[doc(hidden)]
pub use health::StoreFault;
pub use health::{StoreState, StoreStatus, BEHIND_AFTER};
pub use lock::WriterLock;
pub use read::{SessionSummary, TimelinePoint};
pub use replay::replay;
pub use retention::{Retention, RetentionReport};
pub use schema::VERSION as SCHEMA_VERSION;
pub use task::StoreTask;
pub use writer::{SnapshotInfo, SnapshotReason};

use crate::hub::{Sink, State, StateUpdate};
use crate::metrics::Metrics;
use crypto::Crypto;
use error::SqlContext;
use task::{Parts, Runner};
use writer::Writer;

/// Where the hub starts: the last stored sequence and the state after it.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub sequence: u64,
    pub state: State,
}

/// An open store, before its writer thread starts.
pub struct Store {
    writer: Writer,
    reader: Reader,
    lock: WriterLock,
    config: StoreConfig,
    metrics: Option<Arc<Metrics>>,
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io(dir, "create the directory", e))
}

/// Opens (or creates) the database for writing, without reading its history: takes the
/// writer lock, checks the file (schema version, integrity), migrates and unlocks the key.
fn open_db(config: &StoreConfig) -> Result<(Connection, Crypto, WriterLock), StoreError> {
    let path = config.path.as_path();
    if let Some(dir) = path.parent() {
        create_dir(dir)?;
    }
    let lock = WriterLock::acquire(path, &config.lock_path())?;
    let (mut conn, version) = schema::open_writer(path)?;
    if version == 0 {
        // Only the owner reads the database (SQLite gives -wal and -shm the same mode).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::io(path, "restrict the database to its owner", e))?;
    }
    let tx = conn.transaction().on(path)?;
    let crypto = if version == 0 {
        schema::migrate(&tx, path, 0)?;
        crypto::unlock(&tx, config, true)?
    } else {
        let crypto = crypto::unlock(&tx, config, false)?;
        if version < schema::VERSION {
            schema::migrate(&tx, path, version)?;
        }
        crypto
    };
    tx.commit().on(path)?;
    Ok((conn, crypto, lock))
}

impl Store {
    /// Opens (or creates) the database: takes the writer lock, checks the file (schema
    /// version, integrity), migrates, unlocks the key, and rebuilds the last stored state.
    /// Any problem is an error and nothing is changed — never a silently empty store.
    pub fn open(config: &StoreConfig) -> Result<(Store, Restored), StoreError> {
        let path = config.path.as_path();
        let (conn, crypto, lock) = open_db(config)?;
        let writer = Writer::new(conn, crypto, path.to_owned(), config.snapshot_every)?;
        let reader = Reader::open(config)?;
        let restored = Restored {
            sequence: writer.last(),
            state: writer.state().clone(),
        };
        tracing::info!(
            db = %path.display(),
            sequence = restored.sequence,
            "session store opened"
        );
        let store = Store {
            writer,
            reader,
            lock,
            config: config.clone(),
            metrics: None,
        };
        Ok((store, restored))
    }

    /// Reports every committed batch to `metrics` (`sidepanel_store_events_appended_total`,
    /// `sidepanel_store_write_lag_seconds`) and every failed one
    /// (`sidepanel_store_write_failures_total`) once the writer runs, and lets scrapes read
    /// its status (`sidepanel_store_up`, `_pending_updates`, `_lag_seconds`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The last stored sequence.
    pub fn last_sequence(&self) -> u64 {
        self.writer.last()
    }

    /// Appends updates synchronously, before the writer thread runs (tests, benches, imports).
    pub fn append(&mut self, batch: &[Arc<StateUpdate>]) -> Result<u64, StoreError> {
        self.writer.append(batch)
    }

    /// Writes a snapshot synchronously, before the writer thread runs.
    pub fn snapshot(&mut self, reason: SnapshotReason) -> Result<SnapshotInfo, StoreError> {
        self.writer.snapshot(reason)
    }

    /// Runs retention synchronously as of `now`.
    pub fn retain(&mut self, now: std::time::SystemTime) -> Result<RetentionReport, StoreError> {
        let policy = self.retention();
        self.writer.retain(policy, now)
    }

    /// Read access while the store is open.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// See [`Writer::limit_pages`].
    #[doc(hidden)]
    pub fn limit_pages(&self, pages: u64) -> Result<(), StoreError> {
        self.writer.limit_pages(pages)
    }

    fn retention(&self) -> Retention {
        Retention {
            max_age: self
                .config
                .retention_days
                .map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            max_bytes: self.config.max_bytes,
        }
    }

    /// Starts the writer thread. Returns the supervised task (add it as background service
    /// `store`), the handle, and the sink to give the hub ([`crate::hub::Hub::set_sink`])
    /// before it runs.
    pub fn start(self) -> (StoreTask, StoreHandle, Sink) {
        let (sink_tx, updates) = mpsc::unbounded_channel();
        let sink = Sink::new(sink_tx, self.config.snapshot_every);
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (committed, committed_rx) = watch::channel(self.writer.last());
        let retention = self.retention();
        let health = Arc::new(health::Health::new(
            self.writer.last(),
            self.config.flush_interval,
        ));
        let Store {
            writer,
            reader,
            lock,
            config,
            metrics,
        } = self;
        tracing::debug!(lock = %lock.path().display(), "session store writer lock held");
        // The lock lives as long as the writer: it moves into the thread's parts.
        let parts = Parts {
            writer,
            updates,
            commands,
            committed,
            flush_interval: config.flush_interval,
            retention,
            metrics: metrics.clone(),
            health: health.clone(),
            _lock: lock,
        };
        let runner = Runner::new(parts, commands_tx.clone());
        if let Some(metrics) = metrics {
            // Weak: the health reports to the hub, whose handle holds these metrics; a strong
            // reference would make a cycle that keeps a stopped gateway's hub and state.
            let (health, runner) = (Arc::downgrade(&health), Arc::downgrade(&runner));
            metrics.watch_store(Box::new(move || {
                let (Some(health), Some(runner)) = (health.upgrade(), runner.upgrade()) else {
                    return crate::metrics::StoreGauges::default();
                };
                let s = health.status(runner.is_running(), std::time::SystemTime::now());
                crate::metrics::StoreGauges {
                    up: matches!(s.status, StoreState::Ok | StoreState::Behind),
                    committed: s.committed,
                    lag: Duration::from_millis(s.lag_ms),
                }
            }));
        }
        if let Err(e) = runner.spawn() {
            tracing::error!(error = %e, "session store writer did not start; the store task will retry");
        }
        let handle = StoreHandle {
            reader: Arc::new(Mutex::new(reader)),
            commands: commands_tx,
            committed: committed_rx,
            runner: runner.clone(),
            health,
        };
        (StoreTask { runner }, handle, sink)
    }
}
