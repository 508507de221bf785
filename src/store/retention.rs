//! Retention: the only deletes. Whole old sessions go, by age and by size.
//!
//! The log is one global sequence, and a restore replays a contiguous range of it, so retention
//! always removes a *prefix* of the log: every update before a cut sequence `C`. `C` is chosen
//! so that no session has updates on both sides of it (sessions are removed whole), and a
//! `base` snapshot of the state at `C - 1` is written first, so the kept history still replays
//! from its start and the current state never changes. In one transaction it opens the
//! `retention_gate` (the append-only triggers let deletes through only while it is open),
//! deletes, closes it again and logs the cut in `retention_log`. Freed pages go back to the
//! file system with `PRAGMA incremental_vacuum` (the database is created with
//! `auto_vacuum = INCREMENTAL`).
//!
//! * **Age** (`retention_days`): `C` is the first update newer than the cutoff, moved back to
//!   the start of any session still active after it.
//! * **Size** (`max_bytes`, live pages only): while larger, `C` moves past the oldest session
//!   (and every session overlapping it). The most recent session is never cut by size.

use std::time::{Duration, SystemTime};

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::error::{SqlContext, StoreError};
use super::read::Db;
use super::writer::{insert_snapshot, SnapshotReason, Writer};
use crate::util::epoch_ms;

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// What one retention run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub cuts: u32,
    pub sessions: u64,
    pub events: u64,
    pub snapshots: u64,
    /// Live bytes after the run.
    pub bytes: u64,
}

/// Cuts made by size in one run, at most (each is one transaction).
const MAX_SIZE_CUTS: u32 = 64;

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Writer {
    /// Bytes of live (non-free) pages.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let q = |p: &str| {
            self.conn
                .pragma_query_value(None, p, |r| r.get::<_, i64>(0))
                .on(&self.path)
        };
        let pages = q("page_count")? - q("freelist_count")?;
        Ok(u(pages) * u(q("page_size")?))
    }

    /// Moves `cut` back until no session has updates on both sides of it.
    fn back_to_session_start(&self, mut cut: u64) -> Result<u64, StoreError> {
        loop {
            let start: Option<i64> = self
                .conn
                .query_row(
                    "SELECT min(first_sequence) FROM sessions \
                     WHERE first_sequence < ?1 AND last_sequence >= ?1",
                    [i(cut)],
                    |r| r.get(0),
                )
                .on(&self.path)?;
            match start {
                Some(s) if u(s) < cut => cut = u(s),
                _ => return Ok(cut),
            }
        }
    }

    /// The cut past the oldest session (and all overlapping it), or `None` when that would
    /// reach into the most recent session.
    fn past_oldest_session(&self, first: u64) -> Result<Option<u64>, StoreError> {
        let oldest: Option<i64> = self
            .conn
            .query_row(
                "SELECT last_sequence FROM sessions WHERE first_sequence >= ?1 \
                 ORDER BY first_sequence LIMIT 1",
                [i(first)],
                |r| r.get(0),
            )
            .optional()
            .on(&self.path)?;
        let Some(mut cut) = oldest.map(|l| u(l) + 1) else {
            return Ok(None);
        };
        loop {
            let end: Option<i64> = self
                .conn
                .query_row(
                    "SELECT max(last_sequence) FROM sessions \
                     WHERE first_sequence < ?1 AND last_sequence >= ?1",
                    [i(cut)],
                    |r| r.get(0),
                )
                .on(&self.path)?;
            match end {
                Some(e) => cut = u(e) + 1,
                None => break,
            }
        }
        let newest_start: Option<i64> = self
            .conn
            .query_row(
                "SELECT first_sequence FROM sessions ORDER BY last_sequence DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .on(&self.path)?;
        Ok(match newest_start {
            Some(s) if cut > u(s) => None,
            _ => Some(cut),
        })
    }

    /// Removes every update before `cut` (see the module docs). Returns what went.
    fn cut(&mut self, cut: u64, reason: &str) -> Result<RetentionReport, StoreError> {
        let path = self.path.clone();
        let base = self.db().state_at(cut - 1)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .on(&path)?;
        let has_base: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM snapshots WHERE sequence = ?1)",
                [i(cut - 1)],
                |r| r.get(0),
            )
            .on(&path)?;
        if !has_base {
            insert_snapshot(&tx, &self.crypto, &path, &base, SnapshotReason::Base, None)?;
        }
        tx.execute("UPDATE retention_gate SET open = 1 WHERE id = 1", [])
            .on(&path)?;
        let events = tx
            .execute("DELETE FROM events WHERE sequence < ?1", [i(cut)])
            .on(&path)?;
        let snapshots = tx
            .execute("DELETE FROM snapshots WHERE sequence < ?1", [i(cut - 1)])
            .on(&path)?;
        let sessions = tx
            .execute("DELETE FROM sessions WHERE last_sequence < ?1", [i(cut)])
            .on(&path)?;
        tx.execute("UPDATE retention_gate SET open = 0 WHERE id = 1", [])
            .on(&path)?;
        tx.execute(
            "INSERT INTO retention_log (at, reason, cut_sequence, sessions, events, snapshots) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                i(epoch_ms(SystemTime::now())),
                reason,
                i(cut),
                sessions as i64,
                events as i64,
                snapshots as i64
            ],
        )
        .on(&path)?;
        tx.commit().on(&path)?;
        tracing::info!(
            cut,
            reason,
            sessions,
            events,
            snapshots,
            "session store retention removed old sessions"
        );
        Ok(RetentionReport {
            cuts: 1,
            sessions: sessions as u64,
            events: events as u64,
            snapshots: snapshots as u64,
            bytes: 0,
        })
    }

    /// Applies `policy` as of `now`.
    pub fn retain(
        &mut self,
        policy: Retention,
        now: SystemTime,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        let mut add = |r: RetentionReport| {
            report.cuts += r.cuts;
            report.sessions += r.sessions;
            report.events += r.events;
            report.snapshots += r.snapshots;
        };
        let first = |w: &Writer| -> Result<Option<u64>, StoreError> { Ok(Db::bounds(&w.db())?.0) };
        if let Some(age) = policy.max_age {
            let cutoff =
                epoch_ms(now).saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
            let newer: Option<i64> = self
                .conn
                .query_row(
                    "SELECT min(sequence) FROM events WHERE timestamp >= ?1",
                    [i(cutoff)],
                    |r| r.get(0),
                )
                .on(&self.path)?;
            let cut = self.back_to_session_start(newer.map_or(self.last() + 1, u))?;
            if first(self)?.is_some_and(|f| cut > f) {
                add(self.cut(cut, "age")?);
            }
        }
        if let Some(max) = policy.max_bytes {
            for _ in 0..MAX_SIZE_CUTS {
                if self.live_bytes()? <= max {
                    break;
                }
                let Some(f) = first(self)? else { break };
                match self.past_oldest_session(f)? {
                    Some(cut) if cut > f => add(self.cut(cut, "size")?),
                    _ => {
                        tracing::warn!(max_bytes = max, "session store is over store.max_bytes, but only the most recent session is left to remove");
                        break;
                    }
                }
            }
        }
        if report.cuts > 0 {
            for pragma in [
                "PRAGMA incremental_vacuum",
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ] {
                let mut stmt = self.conn.prepare(pragma).on(&self.path)?;
                let mut rows = stmt.query([]).on(&self.path)?;
                while rows.next().on(&self.path)?.is_some() {}
            }
        }
        report.bytes = self.live_bytes()?;
        Ok(report)
    }
}
