//! The session store's health as the rest of the gateway sees it: [`StoreStatus`] (writing,
//! behind, failing or stopped; the last error; the age of the oldest uncommitted update) and
//! the simulated faults of the fault tests ([`StoreFault`]).
//!
//! The writer thread reports into a shared [`Health`] (a short mutex section per batch, never
//! held across an await); [`super::StoreHandle::status`], the ingest and metric scrapes read it.
//! The lag is computed when read, so it keeps growing while the writer is stuck inside SQLite
//! (a lock held by another process, a slow disk) and cannot report anything itself.

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use super::error::StoreError;
use crate::hub::Stored;
use crate::util::epoch_ms;

/// A store whose oldest uncommitted update is older than this is [`StoreState::Behind`].
pub const BEHIND_AFTER: Duration = Duration::from_secs(1);

/// Where the store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// Commits within its flush interval.
    Ok,
    /// Commits succeed but the oldest uncommitted update is older than [`BEHIND_AFTER`]
    /// (a slow disk, a lock held by another process, a large backlog).
    Behind,
    /// The last commit failed (disk full, read-only, I/O error); updates are kept in memory and
    /// retried with backoff.
    Failing,
    /// The writer thread is not running (stopped, or restarting after a panic).
    Stopped,
}

/// The store's status, for state, health and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    pub status: StoreState,
    /// The last committed (acknowledged) sequence.
    pub committed: u64,
    /// Age of the oldest update the writer holds uncommitted, in ms (0 when none).
    pub lag_ms: u64,
    /// Why commits fail, while [`StoreState::Failing`].
    pub error: Option<String>,
    /// Epoch ms of the first failure of the current failing spell.
    pub failing_since: Option<u64>,
    /// Failed commits since the store started.
    pub failures: u64,
}

/// A fault the fault tests make the writer's own SQLite connection produce (real SQLite errors:
/// `SQLITE_FULL` from `max_page_count`, `SQLITE_READONLY` from `query_only`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// The database may not grow past its current size: "database or disk is full".
    DiskFull,
    /// Writes are refused: "attempt to write a readonly database".
    ReadOnly,
    /// Back to normal.
    Cleared,
}

#[derive(Debug, Default)]
struct Inner {
    committed: u64,
    /// Timestamp (epoch ms) of the oldest uncommitted update the writer holds.
    oldest_pending: Option<u64>,
    /// The error and the epoch ms of the current failing spell.
    failing: Option<(String, u64)>,
    failures: u64,
}

/// Shared between the writer thread and the readers.
#[derive(Debug, Default)]
pub(super) struct Health(Mutex<Inner>);

impl Health {
    pub fn new(committed: u64) -> Self {
        Self(Mutex::new(Inner {
            committed,
            ..Inner::default()
        }))
    }

    /// The writer holds `pending` (in publication order) uncommitted.
    pub fn holding(&self, pending: &[Stored]) {
        let oldest = oldest_timestamp(pending);
        self.0.lock().oldest_pending = oldest;
    }

    /// A batch committed up to `last`; `pending` is what is still held. Returns how long the
    /// failing spell lasted, when there was one.
    pub fn committed(&self, last: u64, pending: &[Stored]) -> Option<Duration> {
        let oldest = oldest_timestamp(pending);
        let mut h = self.0.lock();
        h.committed = last;
        h.oldest_pending = oldest;
        h.failing.take().map(|(_, since)| {
            let now = epoch_ms(SystemTime::now());
            Duration::from_millis(now.saturating_sub(since))
        })
    }

    /// A commit failed with `e`.
    pub fn failed(&self, e: &StoreError) {
        let now = epoch_ms(SystemTime::now());
        let mut h = self.0.lock();
        h.failures += 1;
        let since = h.failing.as_ref().map_or(now, |(_, s)| *s);
        h.failing = Some((e.to_string(), since));
    }

    pub fn is_failing(&self) -> bool {
        self.0.lock().failing.is_some()
    }

    /// The status as of `now`; `running` says whether the writer thread runs.
    pub fn status(&self, running: bool, now: SystemTime) -> StoreStatus {
        let h = self.0.lock();
        let lag_ms = h
            .oldest_pending
            .map_or(0, |t| epoch_ms(now).saturating_sub(t));
        let status = if !running {
            StoreState::Stopped
        } else if h.failing.is_some() {
            StoreState::Failing
        } else if Duration::from_millis(lag_ms) >= BEHIND_AFTER {
            StoreState::Behind
        } else {
            StoreState::Ok
        };
        StoreStatus {
            status,
            committed: h.committed,
            lag_ms,
            error: h.failing.as_ref().map(|(e, _)| e.clone()),
            failing_since: h.failing.as_ref().map(|(_, s)| *s),
            failures: h.failures,
        }
    }
}

/// Makes `conn` (the writer's) produce `fault` from now on.
pub(super) fn simulate(
    conn: &rusqlite::Connection,
    path: &std::path::Path,
    fault: StoreFault,
) -> Result<(), StoreError> {
    use super::error::SqlContext;
    let pages: i64 = match fault {
        StoreFault::DiskFull => conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .on(path)?,
        StoreFault::ReadOnly | StoreFault::Cleared => 1 << 30,
    };
    conn.pragma_update(None, "max_page_count", pages).on(path)?;
    let read_only = fault == StoreFault::ReadOnly;
    conn.pragma_update(None, "query_only", read_only).on(path)
}

/// The publication time of the first update in `pending` (checkpoints carry none).
fn oldest_timestamp(pending: &[Stored]) -> Option<u64> {
    pending.iter().find_map(|s| match s {
        Stored::Update(u) => Some(u.timestamp),
        Stored::Checkpoint(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{StateUpdate, UpdateSource, UpdateType};
    use std::sync::Arc;

    fn update(sequence: u64, timestamp: u64) -> Stored {
        Stored::Update(Arc::new(StateUpdate {
            kind: UpdateType::Usage,
            timestamp,
            sequence,
            payload: serde_json::Value::Null,
            source: UpdateSource::Gateway,
        }))
    }

    #[test]
    fn the_status_follows_failures_lag_and_recovery() {
        let h = Health::new(7);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(h.status(true, t0).status, StoreState::Ok);
        h.holding(&[update(8, epoch_ms(t0)), update(9, epoch_ms(at(10)))]);
        let s = h.status(true, at(500));
        assert_eq!((s.status, s.lag_ms), (StoreState::Ok, 500));
        assert_eq!(h.status(true, at(1500)).status, StoreState::Behind);
        let e = StoreError::DiskFull {
            path: "/x.db".into(),
        };
        h.failed(&e);
        h.failed(&e);
        let s = h.status(true, at(2000));
        assert_eq!(s.status, StoreState::Failing);
        assert_eq!(s.failures, 2);
        assert!(s.error.as_deref().unwrap_or("").contains("disk is full"));
        assert!(h.committed(9, &[]).is_some(), "a failing spell ended");
        let s = h.status(true, at(3000));
        assert_eq!((s.status, s.lag_ms, s.committed), (StoreState::Ok, 0, 9));
        assert_eq!(s.error, None);
        assert_eq!(h.status(false, at(3000)).status, StoreState::Stopped);
    }
}
