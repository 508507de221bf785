//! The session store's health as the rest of the gateway sees it: [`StoreStatus`] (writing,
//! behind, failing or stopped; the last error; the age of the oldest uncommitted update) and
//! the simulated faults of the fault tests ([`StoreFault`]).
//!
//! The writer thread reports into a shared [`Health`] (a short mutex section per batch, never
//! held across an await); [`super::StoreHandle::status`], the ingest and metric scrapes read it.
//! The lag is computed when read, so it keeps growing while the writer is stuck inside SQLite
//! (a lock held by another process, a slow disk) and cannot report anything itself.
//!
//! The hub's live state carries the status too ([`super::StoreHandle::report_to`]): the store
//! task reads it every [`REPORT_EVERY`] and sends it as [`HubEvent::Store`] when it changed
//! (while not `ok` also its growing lag and failure count); the hub publishes an update only
//! when the status itself (or its error) changes. The store's own status updates do not count
//! towards its lag, so reporting "ok" never makes it "behind".

use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use super::error::StoreError;
use crate::hub::{HubEvent, HubHandle, Stored, UpdateType, WeakHub};
use crate::util::epoch_ms;

/// A store whose oldest uncommitted update is older than this is [`StoreState::Behind`].
pub const BEHIND_AFTER: Duration = Duration::from_secs(1);
/// How often the store task reports a changed status to the hub.
pub const REPORT_EVERY: Duration = Duration::from_millis(250);

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
    /// The flush interval: updates wait that long by design before they are written, so the
    /// store is behind only after [`BEHIND_AFTER`] more.
    flush_interval: Duration,
}

/// Where the status goes besides the readers: the hub, and what it was last told.
struct Reporter {
    /// Weak: the hub's handle holds the metrics, whose store probe reaches this health.
    hub: WeakHub,
    last: Option<StoreStatus>,
}

/// Shared between the writer thread and the readers.
#[derive(Default)]
pub(super) struct Health(Mutex<Inner>, Mutex<Option<Reporter>>);

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Health")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl Health {
    pub fn new(committed: u64, flush_interval: Duration) -> Self {
        Self(
            Mutex::new(Inner {
                committed,
                flush_interval,
                ..Inner::default()
            }),
            Mutex::new(None),
        )
    }

    /// Reports to `hub` from now on (the current status at once).
    pub fn report_to(&self, hub: HubHandle, running: bool) {
        let hub = hub.downgrade();
        *self.1.lock() = Some(Reporter { hub, last: None });
        self.report(running);
    }

    /// Sends the status to the hub when it changed since the last report: its status or
    /// error, or — while not `ok` — its lag or failure count.
    pub fn report(&self, running: bool) {
        let status = self.status(running, SystemTime::now());
        let mut reporter = self.1.lock();
        let Some(r) = reporter.as_mut() else { return };
        let changed = match &r.last {
            None => true,
            Some(last) if status.status == StoreState::Ok => {
                (last.status, &last.error) != (StoreState::Ok, &status.error)
            }
            Some(last) => {
                (last.status, &last.error, last.lag_ms, last.failures)
                    != (status.status, &status.error, status.lag_ms, status.failures)
            }
        };
        if changed {
            let Some(hub) = r.hub.upgrade() else {
                return; // The hub is gone: the gateway is stopping.
            };
            hub.send(HubEvent::Store(Box::new(status.clone())));
            r.last = Some(status);
        }
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
        } else if Duration::from_millis(lag_ms) >= BEHIND_AFTER + h.flush_interval {
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

/// The publication time of the first update in `pending` (checkpoints carry none). The
/// store's own status reports do not count: reporting "ok" must not make the store "behind".
fn oldest_timestamp(pending: &[Stored]) -> Option<u64> {
    pending.iter().find_map(|s| match s {
        Stored::Update(u) if is_status_report(u) => None,
        Stored::Update(u) => Some(u.timestamp),
        Stored::Checkpoint(_) => None,
    })
}

/// A `health` update the hub published for a store status change.
fn is_status_report(u: &crate::hub::StateUpdate) -> bool {
    u.kind == UpdateType::Health && u.payload.value().get("store").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{StateUpdate, UpdateSource};
    use std::sync::Arc;

    fn update(sequence: u64, timestamp: u64) -> Stored {
        Stored::Update(Arc::new(StateUpdate::new(
            UpdateType::Usage,
            timestamp,
            sequence,
            serde_json::Value::Null,
            UpdateSource::Gateway,
        )))
    }

    #[test]
    fn the_status_follows_failures_lag_and_recovery() {
        let h = Health::new(7, Duration::from_millis(5));
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

    fn failing(h: &Health) -> StoreStatus {
        h.failed(&StoreError::DiskFull {
            path: "/x.db".into(),
        });
        h.status(true, SystemTime::now())
    }

    #[test]
    fn only_changes_are_reported_and_while_failing_also_the_growing_count() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (_hub, handle) = crate::hub::Hub::new(metrics, Default::default());
        let h = Health::new(0, Duration::from_millis(5));
        h.report_to(handle.clone(), true);
        assert_eq!(handle.queued(), 1, "the first status at once");
        h.report(true);
        assert_eq!(handle.queued(), 1, "ok again is no news");
        failing(&h);
        h.report(true);
        h.report(true);
        assert_eq!(handle.queued(), 2, "failing is news, once");
        failing(&h);
        h.report(true);
        assert_eq!(handle.queued(), 3, "a further failure refreshes the count");
        h.committed(3, &[]);
        h.report(true);
        h.report(true);
        assert_eq!(handle.queued(), 4, "back to ok");
        // The store's own status reports do not make it lag.
        let report = Stored::Update(Arc::new(StateUpdate::new(
            UpdateType::Health,
            0,
            4,
            serde_json::json!({"upstream": {}, "store": {"status": "ok"}}),
            UpdateSource::Gateway,
        )));
        h.holding(&[report, update(5, epoch_ms(SystemTime::now()))]);
        assert!(h.status(true, SystemTime::now()).lag_ms < 1000);
    }

    #[test]
    fn the_hub_publishes_status_changes_live_only_never_replayed_or_restored() {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (hub, handle) = crate::hub::Hub::new(metrics, Default::default());
        let h = Health::new(0, Duration::from_millis(5));
        let store = |s: StoreStatus| HubEvent::Store(Box::new(s));
        hub.apply(store(h.status(true, SystemTime::now())));
        assert_eq!(
            handle.with_state(|s| s.sequence),
            0,
            "ok from the start: no update"
        );
        assert_eq!(
            handle.snapshot_json(SystemTime::now())["store"]["status"],
            "ok"
        );
        hub.apply(store(failing(&h)));
        hub.apply(store(failing(&h)));
        let live = handle.snapshot_json(SystemTime::now());
        assert_eq!(live["store"]["status"], "failing");
        assert_eq!(live["store"]["failures"], 2, "the count is current");
        assert_eq!(
            live["sequence"], 1,
            "one update for the change, not per failure"
        );
        h.committed(0, &[]);
        hub.apply(store(h.status(true, SystemTime::now())));
        let crate::hub::Since::Updates(updates) = handle.since(0) else {
            panic!("history")
        };
        let statuses: Vec<_> = updates
            .iter()
            .map(|u| u.payload.value()["store"]["status"].clone())
            .collect();
        assert_eq!(statuses, ["failing", "ok"]);
        // Replay ignores it and still equals the live state (which serializes without it).
        let mut replayed = crate::hub::State::default();
        crate::store::replay(&mut replayed, updates.iter().map(|u| u.as_ref())).expect("replay");
        assert!(replayed.store.is_none());
        let live = handle.with_state(|s| serde_json::to_value(s).expect("json"));
        assert_eq!(serde_json::to_value(&replayed).expect("json"), live);
        assert!(live.get("store").is_none(), "not in checkpoints");
        // A restore keeps the current status; its stored payload does not bring one back.
        hub.apply(store(failing(&h)));
        let mut rx = handle.subscribe();
        handle.adopt(
            crate::hub::State::default(),
            serde_json::json!({"sequence": 0}),
        );
        let restore = rx.try_recv().expect("snapshot update");
        assert_eq!(
            restore.payload.value()["store"]["status"],
            "failing",
            "clients keep seeing it"
        );
        let back = crate::hub::State::from_json(&restore.payload.value(), restore.sequence)
            .expect("state");
        assert!(back.store.is_none());
        assert_eq!(
            handle.snapshot_json(SystemTime::now())["store"]["status"],
            "failing"
        );
    }
}
