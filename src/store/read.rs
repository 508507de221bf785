//! Queries over a store connection: decrypting rows, the state at a sequence (nearest
//! snapshot + replay), sessions, timelines and a session's updates.
//!
//! Used by the writer (recovery at open, retention's base snapshot) and by the read side
//! ([`super::Reader`]) alike; every function takes a [`Db`] and never writes.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::crypto::Crypto;
use super::error::{SqlContext, StoreError};
use super::points;
use crate::hub::{State, StateUpdate, UpdateType};
use crate::ingest::SessionMemories;

/// A connection with the key to read it.
#[derive(Clone, Copy)]
pub struct Db<'a> {
    pub conn: &'a Connection,
    pub crypto: &'a Crypto,
    pub path: &'a Path,
}

/// Associated data binding a sealed event to its row.
pub fn event_aad(sequence: u64) -> String {
    format!("event:{sequence}")
}

/// Associated data binding a sealed snapshot to its sequence.
pub fn snapshot_aad(sequence: u64) -> String {
    format!("snapshot:{sequence}")
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One OpenCode session as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// Unix ms of its first and last update.
    pub first_timestamp: u64,
    pub last_timestamp: u64,
    /// Updates stored for it, and how many of them are finished requests.
    pub events: u64,
    pub requests: u64,
}

/// A point a browser can offer on the timeline and pass to `restore`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Restoring this point restores the state right after this sequence.
    pub sequence: u64,
    pub timestamp: u64,
    /// `"snapshot"` (pass `snapshotId`) or `"update"` (pass `sequence`).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    /// The update type, or the snapshot's reason.
    #[serde(rename = "type")]
    pub kind_detail: String,
    pub label: String,
    /// The OpenCode message this point maps to (OpenCode's revert API takes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl<'a> Db<'a> {
    /// Decrypts and parses one event row.
    pub fn decode_event(&self, sequence: u64, sealed: &[u8]) -> Result<StateUpdate, StoreError> {
        let what = format!("event {sequence}");
        let plain = self
            .crypto
            .open_or(event_aad(sequence).as_bytes(), sealed, &what)?;
        let update: StateUpdate =
            serde_json::from_slice(&plain).map_err(|e| StoreError::decode(&what, e))?;
        if update.sequence != sequence {
            return Err(StoreError::decode(
                what,
                "its sequence does not match its row",
            ));
        }
        Ok(update)
    }

    /// Decrypts and parses one snapshot.
    pub fn decode_snapshot(&self, sequence: u64, sealed: &[u8]) -> Result<State, StoreError> {
        let what = format!("the snapshot at sequence {sequence}");
        let plain = self
            .crypto
            .open_or(snapshot_aad(sequence).as_bytes(), sealed, &what)?;
        let value: serde_json::Value =
            serde_json::from_slice(&plain).map_err(|e| StoreError::decode(&what, e))?;
        let mut state = State::from_json(&value, sequence)?;
        // Written beside the state since the memory was persisted; older snapshots: empty.
        if let Some(m) = value.get("ingest_memory") {
            let memory =
                SessionMemories::deserialize(m).map_err(|e| StoreError::decode(&what, e))?;
            state.set_ingest_memory(memory);
        }
        Ok(state)
    }

    /// Applies one stored update to `state` ([`State::apply_update`]). A `snapshot` update (a
    /// restore) carries the restored state without its ingest memory, so that is taken from
    /// the point it names (`restored_from`: the snapshot, else the sequence). When that point
    /// is no longer kept the memory stays empty (logged): the state itself is complete.
    pub fn apply(&self, state: &mut State, update: &StateUpdate) -> Result<(), StoreError> {
        state.apply_update(update)?;
        if update.kind != UpdateType::Snapshot {
            return Ok(());
        }
        let payload = update.payload.value();
        let from = payload.get("restored_from");
        let id = from
            .and_then(|f| f.get("snapshot_id"))
            .and_then(serde_json::Value::as_i64);
        let at = from
            .and_then(|f| f.get("sequence"))
            .and_then(serde_json::Value::as_u64)
            .filter(|s| *s < update.sequence);
        let restored = match (id, at) {
            (Some(id), _) => self.snapshot(id).map(|(_, s)| s),
            (None, Some(at)) => self.state_at(at),
            (None, None) => return Ok(()),
        };
        match restored {
            Ok(r) => state.set_ingest_memory(r.ingest_memory()),
            Err(e) => tracing::warn!(
                sequence = update.sequence,
                error = %e,
                "session store: the point a restore restored is gone; its deduplication memory starts empty"
            ),
        }
        Ok(())
    }

    /// `(first event sequence, last sequence)` of the stored history; `last` is 0 when empty.
    pub fn bounds(&self) -> Result<(Option<u64>, u64), StoreError> {
        // One aggregate per query: SQLite answers a lone min() or max() from the index, but
        // scans the whole table for both at once.
        let one = |sql: &str| -> Result<Option<i64>, StoreError> {
            self.conn.query_row(sql, [], |r| r.get(0)).on(self.path)
        };
        let first = one("SELECT min(sequence) FROM events")?;
        let last_event = one("SELECT max(sequence) FROM events")?;
        let last_snapshot = one("SELECT max(sequence) FROM snapshots")?;
        let last = last_event.unwrap_or(0).max(last_snapshot.unwrap_or(0));
        Ok((first.map(u), u(last)))
    }

    /// The latest snapshot at or before `sequence`: `(id, sequence, sealed)`.
    fn snapshot_before(&self, sequence: u64) -> Result<Option<(i64, u64, Vec<u8>)>, StoreError> {
        self.conn
            .query_row(
                "SELECT id, sequence, sealed FROM snapshots WHERE sequence <= ?1 \
                 ORDER BY sequence DESC, id DESC LIMIT 1",
                [i(sequence)],
                |r| Ok((r.get(0)?, u(r.get(1)?), r.get(2)?)),
            )
            .optional()
            .on(self.path)
    }

    /// The state right after `sequence`: the nearest snapshot, then the updates after it.
    pub fn state_at(&self, sequence: u64) -> Result<State, StoreError> {
        let (first, last) = self.bounds()?;
        let out_of_range = |first: u64| StoreError::OutOfRange {
            sequence,
            first,
            last,
        };
        if sequence > last {
            return Err(out_of_range(first.unwrap_or(0)));
        }
        let (mut state, from) = match self.snapshot_before(sequence)? {
            Some((_, at, sealed)) => (self.decode_snapshot(at, &sealed)?, at),
            // No snapshot: only a history that starts at the very beginning can be replayed.
            None if first.is_none_or(|f| f <= 1) => (State::default(), 0),
            None => return Err(out_of_range(first.unwrap_or(0))),
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sequence, sealed FROM events WHERE sequence > ?1 AND sequence <= ?2 \
                 ORDER BY sequence",
            )
            .on(self.path)?;
        let mut rows = stmt.query(params![i(from), i(sequence)]).on(self.path)?;
        while let Some(row) = rows.next().on(self.path)? {
            let seq = u(row.get(0).on(self.path)?);
            let sealed: Vec<u8> = row.get(1).on(self.path)?;
            self.apply(&mut state, &self.decode_event(seq, &sealed)?)?;
        }
        state.sequence = sequence;
        Ok(state)
    }

    /// The OpenCode message the update at `sequence` maps to, if any.
    pub fn message_at(&self, sequence: u64) -> Result<Option<String>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT sealed FROM events WHERE sequence = ?1",
                [i(sequence)],
                |r| r.get(0),
            )
            .optional()
            .on(self.path)?;
        Ok(match sealed {
            Some(s) => points::message_of(&self.decode_event(sequence, &s)?),
            None => None,
        })
    }

    /// The state a snapshot holds, with its sequence.
    pub fn snapshot(&self, id: i64) -> Result<(u64, State), StoreError> {
        let row: Option<(u64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT sequence, sealed FROM snapshots WHERE id = ?1",
                [id],
                |r| Ok((u(r.get(0)?), r.get(1)?)),
            )
            .optional()
            .on(self.path)?;
        let (sequence, sealed) = row.ok_or(StoreError::NoSuchSnapshot(id))?;
        Ok((sequence, self.decode_snapshot(sequence, &sealed)?))
    }

    fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionSummary> {
        Ok(SessionSummary {
            id: r.get(0)?,
            first_sequence: u(r.get(1)?),
            last_sequence: u(r.get(2)?),
            first_timestamp: u(r.get(3)?),
            last_timestamp: u(r.get(4)?),
            events: u(r.get(5)?),
            requests: u(r.get(6)?),
        })
    }

    /// Sessions, most recently active first.
    pub fn sessions(&self, limit: usize) -> Result<Vec<SessionSummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, first_sequence, last_sequence, first_timestamp, last_timestamp, \
                 events, requests FROM sessions ORDER BY last_timestamp DESC, id LIMIT ?1",
            )
            .on(self.path)?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], Self::summary)
            .on(self.path)?;
        rows.collect::<Result<_, _>>().on(self.path)
    }

    /// One session's summary.
    pub fn session(&self, id: &str) -> Result<SessionSummary, StoreError> {
        self.conn
            .query_row(
                "SELECT id, first_sequence, last_sequence, first_timestamp, last_timestamp, \
                 events, requests FROM sessions WHERE id = ?1",
                [id],
                Self::summary,
            )
            .optional()
            .on(self.path)?
            .ok_or_else(|| StoreError::NoSuchSession(id.to_owned()))
    }

    /// Every stored update of a session, oldest first.
    pub fn session_updates(&self, id: &str) -> Result<Vec<StateUpdate>, StoreError> {
        self.session(id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sequence, sealed FROM events WHERE session_id = ?1 ORDER BY sequence",
            )
            .on(self.path)?;
        let mut rows = stmt.query([id]).on(self.path)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().on(self.path)? {
            let sealed: Vec<u8> = row.get(1).on(self.path)?;
            out.push(self.decode_event(u(row.get(0).on(self.path)?), &sealed)?);
        }
        Ok(out)
    }

    /// The restorable points of a session (its updates and the snapshots taken during it),
    /// oldest first; at most `limit`, the most recent ones.
    pub fn timeline(&self, id: &str, limit: usize) -> Result<Vec<TimelinePoint>, StoreError> {
        let s = self.session(id)?;
        let limit64 = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut points = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT sequence, sealed FROM events WHERE session_id = ?1 \
                 ORDER BY sequence DESC LIMIT ?2",
            )
            .on(self.path)?;
        let mut rows = stmt.query(params![id, limit64]).on(self.path)?;
        while let Some(row) = rows.next().on(self.path)? {
            let sealed: Vec<u8> = row.get(1).on(self.path)?;
            let update = self.decode_event(u(row.get(0).on(self.path)?), &sealed)?;
            points.push(TimelinePoint {
                sequence: update.sequence,
                timestamp: update.timestamp,
                kind: "update",
                snapshot_id: None,
                kind_detail: points::type_name(update.kind).to_owned(),
                label: points::label(&update),
                message_id: points::message_of(&update),
            });
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, sequence, timestamp, reason FROM snapshots \
                 WHERE sequence BETWEEN ?1 AND ?2 ORDER BY sequence DESC, id DESC LIMIT ?3",
            )
            .on(self.path)?;
        let snaps = stmt
            .query_map(
                params![i(s.first_sequence), i(s.last_sequence), limit64],
                |r| {
                    let reason: String = r.get(3)?;
                    Ok(TimelinePoint {
                        sequence: u(r.get(1)?),
                        timestamp: u(r.get(2)?),
                        kind: "snapshot",
                        snapshot_id: Some(r.get(0)?),
                        label: format!("snapshot ({reason})"),
                        kind_detail: reason,
                        message_id: None,
                    })
                },
            )
            .on(self.path)?;
        for p in snaps {
            points.push(p.on(self.path)?);
        }
        points.sort_by(|a, b| {
            (a.sequence, a.kind == "update", a.snapshot_id).cmp(&(
                b.sequence,
                b.kind == "update",
                b.snapshot_id,
            ))
        });
        let excess = points.len().saturating_sub(limit);
        points.drain(..excess);
        Ok(points)
    }

    /// A stored secret (e.g. a Venice key saved by `install`), decrypted.
    pub fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT sealed FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .on(self.path)?;
        sealed
            .map(|s| {
                self.crypto.open_or(
                    format!("secret:{name}").as_bytes(),
                    &s,
                    &format!("secret {name}"),
                )
            })
            .transpose()
    }
}
