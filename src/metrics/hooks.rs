//! Metrics other components report through [`super::Metrics`] methods: the hub's published
//! updates, WebSocket propagation, the ingest and the session store.
//!
//! Owns [`HookMetrics`] and the publish-time book that turns "update N reached a client" into a
//! propagation latency: before the hub applies an event it notes the next sequence and the
//! instant; a client's send looks up the latest note at or below its update's sequence.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter, IntCounterVec, Registry};

use super::labels::{self, INGEST_EVENTS, INGEST_REJECTIONS, UPDATE_TYPES};
use super::{counter, counter_vec, histogram};
use crate::hub::{StateUpdate, UpdateType};

/// Publish notes kept; a client further behind than this is not timed.
const NOTES: usize = 1024;

/// Hook-fed metrics (see `docs/METRICS.md`, "Hub and WebSocket", "Ingest", "Store").
pub struct HookMetrics {
    updates: IntCounterVec,
    propagation: Histogram,
    notes: Mutex<VecDeque<(u64, Instant)>>,
    hub_dropped: IntCounter,
    ingest_events: IntCounterVec,
    ingest_rejected: IntCounterVec,
    store_appended: IntCounter,
    store_lag: Histogram,
}

impl HookMetrics {
    pub fn new(r: &Registry) -> Self {
        let updates = counter_vec(
            r,
            "state_updates_total",
            "State updates the hub published, by type",
            &["type"],
        );
        let ingest_events = counter_vec(
            r,
            "ingest_events_total",
            "OpenCode plugin events accepted, by event name",
            &["event"],
        );
        let ingest_rejected = counter_vec(
            r,
            "ingest_rejected_total",
            "Plugin posts refused, and events dropped from accepted batches, by reason",
            &["reason"],
        );
        for (vec, values) in [
            (&updates, UPDATE_TYPES),
            (&ingest_events, INGEST_EVENTS),
            (&ingest_rejected, INGEST_REJECTIONS),
        ] {
            for v in values {
                vec.with_label_values(&[v]);
            }
        }
        Self {
            updates,
            propagation: histogram(
                r,
                "ws_propagation_seconds",
                "Time from the hub starting to publish an update to a WebSocket client's send",
            ),
            notes: Mutex::new(VecDeque::with_capacity(NOTES)),
            hub_dropped: counter(
                r,
                "hub_dropped_events_total",
                "Events producers could not hand to the hub because its queue was full",
            ),
            ingest_events,
            ingest_rejected,
            store_appended: counter(
                r,
                "store_events_appended_total",
                "State updates the session store appended",
            ),
            store_lag: histogram(
                r,
                "store_write_lag_seconds",
                "Time from an update's publication to its commit in the session store",
            ),
        }
    }

    /// The hub is about to publish updates numbered from `first`.
    pub fn publishing(&self, first: u64) {
        let mut notes = self.notes.lock();
        match notes.back_mut() {
            // The previous event published nothing: its note is superseded.
            Some(last) if last.0 == first => *last = (first, Instant::now()),
            _ => {
                if notes.len() == NOTES {
                    notes.pop_front();
                }
                notes.push_back((first, Instant::now()));
            }
        }
    }

    /// The hub published `updates`.
    pub fn published(&self, updates: &[Arc<StateUpdate>]) {
        for u in updates {
            let kind = type_label(u.kind);
            self.updates.with_label_values(&[kind]).inc();
        }
    }

    /// A WebSocket client handed `update` to its connection.
    pub fn ws_update_sent(&self, update: &StateUpdate) {
        let at = {
            let notes = self.notes.lock();
            let i = notes.partition_point(|(first, _)| *first <= update.sequence);
            i.checked_sub(1).map(|i| notes[i].1)
        };
        if let Some(at) = at {
            self.propagation.observe(at.elapsed().as_secs_f64());
        }
    }

    pub fn hub_dropped(&self) {
        self.hub_dropped.inc();
    }

    pub fn ingest_accepted(&self, event: &str) {
        let event = labels::bounded(event, INGEST_EVENTS);
        self.ingest_events.with_label_values(&[event]).inc();
    }

    pub fn ingest_rejected(&self, reason: &str) {
        let reason = labels::bounded(reason, INGEST_REJECTIONS);
        self.ingest_rejected.with_label_values(&[reason]).inc();
    }

    pub fn store_appended(&self, events: u64, lag: Duration) {
        self.store_appended.inc_by(events);
        self.store_lag.observe(lag.as_secs_f64());
    }
}

/// The wire name of an update type (`rate_limit`, …), bounded by the enum.
fn type_label(kind: UpdateType) -> &'static str {
    let name = serde_json::to_value(kind).ok();
    let name = name.as_ref().and_then(|v| v.as_str()).unwrap_or("");
    labels::bounded(name, UPDATE_TYPES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(kind: UpdateType, sequence: u64) -> StateUpdate {
        StateUpdate::new(
            kind,
            0,
            sequence,
            serde_json::Value::Null,
            crate::hub::UpdateSource::Gateway,
        )
    }

    #[test]
    fn every_update_type_has_a_label() {
        for kind in [
            UpdateType::Session,
            UpdateType::Usage,
            UpdateType::Balance,
            UpdateType::RateLimit,
            UpdateType::Health,
            UpdateType::Proof,
            UpdateType::Snapshot,
            UpdateType::Alert,
        ] {
            assert_ne!(type_label(kind), "other", "{kind:?}");
        }
    }

    #[test]
    fn propagation_is_timed_from_the_note_covering_the_sequence() {
        let h = HookMetrics::new(&Registry::new());
        h.ws_update_sent(&update(UpdateType::Usage, 1));
        assert_eq!(h.propagation.get_sample_count(), 0, "no note yet");
        h.publishing(1);
        h.publishing(1);
        h.publishing(3);
        h.ws_update_sent(&update(UpdateType::Usage, 2));
        h.ws_update_sent(&update(UpdateType::Usage, 3));
        assert_eq!(
            h.notes.lock().len(),
            2,
            "a note that published nothing is replaced"
        );
        assert_eq!(h.propagation.get_sample_count(), 2);
    }
}
