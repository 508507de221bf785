//! The synchronous writer: appends batches of updates in one transaction each, keeps the
//! replayed state of what it stored, and writes snapshots at checkpoints.
//!
//! Owned by the writer thread ([`super::task`]); nothing else writes to the database. It
//! replays every update it stores ([`State::apply_update`]) so it always holds the state after
//! its last update. Checkpoints come from the hub itself ([`Stored::Checkpoint`]: an exact copy
//! of the live state every `snapshot_every` updates); the writer compares its replayed state
//! with it (a difference is logged once: some producer changed the state in a way its payload
//! does not carry), adopts it and stores it as a snapshot. Until the hub sends one, the writer
//! checkpoints its replayed state by count. A failed batch is rolled back whole and the
//! replayed state reloaded from the database, so the caller can simply retry it later.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, Connection, TransactionBehavior};
use serde::Serialize;

use super::crypto::Crypto;
use super::error::{SqlContext, StoreError};
use super::points;
use super::read::{event_aad, snapshot_aad, Db};
use crate::hub::{State, StateUpdate, Stored, UpdateType};
use crate::ingest::SessionMemories;
use crate::util::epoch_ms;

/// Why a snapshot was written (the `reason` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotReason {
    /// Every `snapshot_every` updates.
    Checkpoint,
    /// An OpenCode session went idle.
    Idle,
    /// Asked for ([`super::StoreHandle::snapshot_now`]).
    Manual,
    /// A restore published a whole state.
    Restore,
    /// Clean shutdown, so the next start replays nothing.
    Shutdown,
    /// Written by retention where the kept history now begins.
    Base,
}

impl SnapshotReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkpoint => "checkpoint",
            Self::Idle => "idle",
            Self::Manual => "manual",
            Self::Restore => "restore",
            Self::Shutdown => "shutdown",
            Self::Base => "base",
        }
    }
}

/// A written snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub id: i64,
    pub sequence: u64,
}

/// The database's only writer.
pub struct Writer {
    pub(super) conn: Connection,
    pub(super) crypto: Crypto,
    pub(super) path: PathBuf,
    /// The state after `last`.
    state: State,
    /// The last stored sequence.
    last: u64,
    /// Updates stored since the last snapshot.
    since_snapshot: u64,
    snapshot_every: u64,
    /// A gap or a stale sequence was logged (once per run).
    warned_order: bool,
    /// The hub sends checkpoints; the writer's own count-based ones are off.
    hub_checkpoints: bool,
    /// A replay difference was logged (once per run).
    warned_diverged: bool,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A snapshot row: the state's JSON plus the sessions' deduplication memory it leaves out
/// (`ingest_memory`; older snapshots without it load with an empty memory, see `read.rs`).
#[derive(Serialize)]
struct SnapshotRecord<'a> {
    #[serde(flatten)]
    state: &'a State,
    ingest_memory: SessionMemories,
}

/// Inserts a snapshot of `state` (at `state.sequence`), with its ingest memory.
pub(super) fn insert_snapshot(
    conn: &Connection,
    crypto: &Crypto,
    path: &std::path::Path,
    state: &State,
    reason: SnapshotReason,
    session: Option<&str>,
) -> Result<SnapshotInfo, StoreError> {
    let record = SnapshotRecord {
        state,
        ingest_memory: state.ingest_memory(),
    };
    let json = serde_json::to_vec(&record).map_err(|e| StoreError::decode("the state", e))?;
    let sealed = crypto.seal(snapshot_aad(state.sequence).as_bytes(), &json)?;
    conn.prepare_cached(
        "INSERT INTO snapshots (sequence, timestamp, reason, session_id, sealed) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            i(state.sequence),
            i(epoch_ms(std::time::SystemTime::now())),
            reason.as_str(),
            session,
            sealed
        ])
    })
    .on(path)?;
    Ok(SnapshotInfo {
        id: conn.last_insert_rowid(),
        sequence: state.sequence,
    })
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        crypto: Crypto,
        path: PathBuf,
        snapshot_every: u64,
    ) -> Result<Self, StoreError> {
        let mut w = Self {
            conn,
            crypto,
            path,
            state: State::default(),
            last: 0,
            since_snapshot: 0,
            snapshot_every: snapshot_every.max(1),
            warned_order: false,
            hub_checkpoints: false,
            warned_diverged: false,
        };
        w.reload()?;
        Ok(w)
    }

    /// A read view of the database.
    pub fn db(&self) -> Db<'_> {
        Db {
            conn: &self.conn,
            crypto: &self.crypto,
            path: &self.path,
        }
    }

    /// The last stored sequence.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The state after the last stored update.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Re-reads `last` and the state from the database (after a failed batch, at open).
    pub(super) fn reload(&mut self) -> Result<(), StoreError> {
        let (_, last) = self.db().bounds()?;
        let state = self.db().state_at(last)?;
        let snap: Option<i64> = self
            .conn
            .query_row("SELECT max(sequence) FROM snapshots", [], |r| r.get(0))
            .on(&self.path)?;
        self.since_snapshot =
            last.saturating_sub(snap.map_or(0, |s| u64::try_from(s).unwrap_or(0)));
        self.state = state;
        self.last = last;
        Ok(())
    }

    /// Appends `updates` in one transaction (see [`Writer::write`]).
    pub fn append(&mut self, updates: &[Arc<StateUpdate>]) -> Result<u64, StoreError> {
        let batch: Vec<Stored> = updates.iter().cloned().map(Stored::Update).collect();
        self.write(&batch)
    }

    /// Writes `batch` (updates and checkpoints, in hub order) in one transaction and returns
    /// the last stored sequence. Updates at or below the last stored sequence are skipped
    /// (logged). On error nothing of the batch is stored and the writer is as before.
    pub fn write(&mut self, batch: &[Stored]) -> Result<u64, StoreError> {
        match self.append_inner(batch) {
            Ok(()) => Ok(self.last),
            Err(e) => {
                if let Err(reload) = self.reload() {
                    tracing::error!(error = %reload, "session store: cannot reload after a failed batch");
                }
                Err(e)
            }
        }
    }

    fn append_inner(&mut self, batch: &[Stored]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .on(&path)?;
        for item in batch {
            let u = match item {
                Stored::Update(u) => u,
                Stored::Checkpoint(live) => {
                    self.hub_checkpoints = true;
                    Self::adopt_checkpoint(
                        &mut self.state,
                        self.last,
                        &mut self.warned_diverged,
                        live,
                    );
                    insert_snapshot(
                        &tx,
                        &self.crypto,
                        &path,
                        &self.state,
                        SnapshotReason::Checkpoint,
                        None,
                    )?;
                    self.since_snapshot = 0;
                    continue;
                }
            };
            if u.sequence <= self.last {
                if !std::mem::replace(&mut self.warned_order, true) {
                    tracing::error!(
                        sequence = u.sequence,
                        stored = self.last,
                        "session store: an update repeats a stored sequence (was the hub resumed from the store?); skipped"
                    );
                }
                continue;
            }
            if u.sequence != self.last + 1 && !std::mem::replace(&mut self.warned_order, true) {
                tracing::error!(
                    sequence = u.sequence,
                    stored = self.last,
                    "session store: a gap in the update sequence; replay will miss the gap"
                );
            }
            // The same text the WebSocket clients were sent (encoded once per update).
            let json = u.json().map_err(|e| StoreError::decode("an update", e))?;
            let sealed = self
                .crypto
                .seal(event_aad(u.sequence).as_bytes(), json.as_bytes())?;
            let session = points::session_of(u);
            tx.prepare_cached(
                "INSERT INTO events (sequence, timestamp, type, session_id, sealed) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    i(u.sequence),
                    i(u.timestamp),
                    points::type_name(u.kind),
                    session,
                    &sealed
                ])
            })
            .on(&path)?;
            if let Some(id) = &session {
                tx.prepare_cached(
                    "INSERT INTO sessions (id, first_sequence, last_sequence, first_timestamp, \
                     last_timestamp, events, requests, bytes) VALUES (?1, ?2, ?2, ?3, ?3, 1, ?4, ?5) \
                     ON CONFLICT (id) DO UPDATE SET last_sequence = excluded.last_sequence, \
                     last_timestamp = max(last_timestamp, excluded.last_timestamp), \
                     events = events + 1, requests = requests + excluded.requests, \
                     bytes = bytes + excluded.bytes",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        id,
                        i(u.sequence),
                        i(u.timestamp),
                        i64::from(points::is_request(u)),
                        i64::try_from(sealed.len()).unwrap_or(0)
                    ])
                })
                .on(&path)?;
            }
            let db = Db {
                conn: &tx,
                crypto: &self.crypto,
                path: &path,
            };
            if let Err(e) = db.apply(&mut self.state, u) {
                tracing::error!(error = %e, "session store: cannot replay an update; snapshots may differ from the live state");
                self.state.sequence = u.sequence;
            }
            self.last = u.sequence;
            self.since_snapshot += 1;
            let reason = if u.kind == UpdateType::Snapshot {
                Some(SnapshotReason::Restore)
            } else if points::is_idle(u) {
                Some(SnapshotReason::Idle)
            } else if !self.hub_checkpoints && self.since_snapshot >= self.snapshot_every {
                Some(SnapshotReason::Checkpoint)
            } else {
                None
            };
            if let Some(reason) = reason {
                insert_snapshot(
                    &tx,
                    &self.crypto,
                    &path,
                    &self.state,
                    reason,
                    session.as_deref(),
                )?;
                self.since_snapshot = 0;
            }
        }
        tx.commit().on(&path)
    }

    /// Takes the hub's exact state as the replayed one, logging once if they differ.
    fn adopt_checkpoint(state: &mut State, last: u64, warned_diverged: &mut bool, live: &State) {
        if live.sequence < last {
            tracing::warn!(
                checkpoint = live.sequence,
                stored = last,
                "session store: a checkpoint older than the stored updates; ignored"
            );
            return;
        }
        if !*warned_diverged {
            let replayed = serde_json::to_value(&*state).ok();
            let exact = serde_json::to_value(live).ok();
            if let (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b))) =
                (&replayed, &exact)
            {
                let mut differ: Vec<&str> = b
                    .keys()
                    .filter(|k| a.get(*k) != b.get(*k))
                    .map(String::as_str)
                    .collect();
                let memory = |s: &State| serde_json::to_value(s.ingest_memory()).ok();
                if memory(state) != memory(live) {
                    differ.push("ingest_memory");
                }
                if !differ.is_empty() {
                    *warned_diverged = true;
                    tracing::warn!(
                        sequence = live.sequence,
                        fields = ?differ,
                        "session store: replaying the stored updates does not rebuild these state fields exactly; their producer should publish what it changes (see store/replay.rs)"
                    );
                }
            }
        }
        *state = live.clone();
    }

    /// Writes a snapshot of the current state now (its own transaction).
    pub fn snapshot(&mut self, reason: SnapshotReason) -> Result<SnapshotInfo, StoreError> {
        let info = insert_snapshot(
            &self.conn,
            &self.crypto,
            &self.path,
            &self.state,
            reason,
            None,
        )?;
        self.since_snapshot = 0;
        Ok(info)
    }

    /// Updates stored since the last snapshot.
    pub fn since_snapshot(&self) -> u64 {
        self.since_snapshot
    }

    /// Stores (or replaces) a secret, sealed like everything else.
    pub fn put_secret(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        super::keys::put_secret(&self.conn, &self.crypto, &self.path, name, value)
    }

    /// Copies the WAL into the database and truncates it (`wal_checkpoint(TRUNCATE)`).
    pub fn checkpoint_wal(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .on(&self.path)
    }

    /// Caps the database at `pages` pages (SQLite then answers "database or disk is full", as
    /// a full disk would). For tests of the full-disk path.
    #[doc(hidden)]
    pub fn limit_pages(&self, pages: u64) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "max_page_count", i(pages))
            .on(&self.path)
    }
}
