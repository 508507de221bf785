//! The seed's `StateUpdate` envelope and the hub's log of recent updates.
//!
//! Owns sequencing (monotonic per process), the bounded history that lets a reconnecting client
//! catch up (`since`), and the broadcast to live subscribers. A subscriber that falls more than
//! [`BROADCAST_CAPACITY`] updates behind is told it lagged and resyncs from a full state; it never
//! slows the hub or the other subscribers.
//!
//! Besides the broadcast, every update also goes to an optional [`Sink`], an unbounded channel
//! that is never lossy: the session store drains it to persist the whole history
//! (`crate::store`). The sink is fed under the hub's lock, so it sees exactly the published
//! order with no gaps; every `checkpoint_every` updates it also gets a copy of the whole state
//! ([`Stored::Checkpoint`]), which the store keeps as a snapshot.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

pub use super::payload::Payload;

/// Updates kept for `since` requests (a reconnecting dashboard catches up from them; an
/// older one gets the whole state). A `usage` update holds its payload as text; as a tree it
/// took ~5 KB (1,024 of those were ~5 MiB, 4,096 were ~25 MiB of a 42 MiB process).
pub const HISTORY: usize = 1024;
/// Updates a live subscriber may fall behind before it must resync.
pub const BROADCAST_CAPACITY: usize = 1024;

/// What part of the state an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateType {
    /// OpenCode session lifecycle and totals.
    Session,
    /// A finished request with the model and session totals it changed.
    Usage,
    /// Diem/USD balance.
    Balance,
    /// Rate-limit headroom of one model.
    RateLimit,
    /// Upstream health changed.
    Health,
    /// Lean proof state of one file.
    Proof,
    /// A whole state (after a restore).
    Snapshot,
    /// An alert was raised, cleared or configured.
    Alert,
}

/// Where an update came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateSource {
    Opencode,
    Venice,
    Lean,
    User,
    Gateway,
}

/// One change to the state, as the seed defines it.
#[derive(Debug, Serialize, Deserialize)]
pub struct StateUpdate {
    #[serde(rename = "type")]
    pub kind: UpdateType,
    /// Unix milliseconds.
    pub timestamp: u64,
    /// Monotonic per process start.
    pub sequence: u64,
    pub payload: Payload,
    pub source: UpdateSource,
    /// This update as JSON, encoded on first use ([`StateUpdate::json`]).
    #[serde(skip)]
    json: OnceLock<Arc<str>>,
}

impl StateUpdate {
    pub fn new(
        kind: UpdateType,
        timestamp: u64,
        sequence: u64,
        payload: impl Into<Payload>,
        source: UpdateSource,
    ) -> Self {
        Self {
            kind,
            timestamp,
            sequence,
            payload: payload.into(),
            source,
            json: OnceLock::new(),
        }
    }

    /// This update as JSON text, encoded once: every published update is sent to each
    /// WebSocket client and sealed into the store, and both take these same bytes instead of
    /// walking the payload tree again. Published updates are shared (`Arc`) and never change,
    /// so the text cannot go stale; a clone starts without it, as its payload may be edited.
    pub fn json(&self) -> Result<Arc<str>, serde_json::Error> {
        if let Some(text) = self.json.get() {
            return Ok(text.clone());
        }
        let text: Arc<str> = serde_json::to_string(self)?.into();
        Ok(self.json.get_or_init(|| text).clone())
    }
}

impl Clone for StateUpdate {
    fn clone(&self) -> Self {
        Self::new(
            self.kind,
            self.timestamp,
            self.sequence,
            self.payload.clone(),
            self.source,
        )
    }
}

/// What the hub hands the session store, in publish order.
#[derive(Debug)]
pub enum Stored {
    /// A published update.
    Update(Arc<StateUpdate>),
    /// The whole state right after the last update sent (its `sequence` says which).
    Checkpoint(Box<super::State>),
}

/// The lossless consumer of every published update (the session store's writer).
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Stored>,
    /// A [`Stored::Checkpoint`] every this many updates (0: never).
    checkpoint_every: u64,
}

impl Sink {
    pub fn new(tx: mpsc::UnboundedSender<Stored>, checkpoint_every: u64) -> Self {
        Self {
            tx,
            checkpoint_every,
        }
    }
}

/// Sequencing, history and broadcast.
pub struct UpdateLog {
    next: u64,
    history: VecDeque<Arc<StateUpdate>>,
    tx: broadcast::Sender<Arc<StateUpdate>>,
    sink: Option<Sink>,
    /// The sink's receiver went away; logged once.
    sink_lost: bool,
    /// Updates sent to the sink since its last checkpoint.
    since_checkpoint: u64,
}

/// The answer to "what happened after sequence N?".
#[derive(Debug)]
pub enum Since {
    /// Every update after N, in order (possibly none).
    Updates(Vec<Arc<StateUpdate>>),
    /// N is older than the history: the caller needs the full state.
    TooOld,
}

impl UpdateLog {
    pub fn new(start: u64) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            next: start + 1,
            history: VecDeque::with_capacity(HISTORY),
            tx,
            sink: None,
            sink_lost: false,
            since_checkpoint: 0,
        }
    }

    /// Sends every update published from now on to `sink` as well (never dropped).
    pub fn set_sink(&mut self, sink: Sink) {
        self.sink = Some(sink);
        self.sink_lost = false;
        self.since_checkpoint = 0;
    }

    /// Sends `state` to the sink as a checkpoint when one is due (or `force`), stamped with
    /// the last sequence. Call it with the state all published updates produced.
    pub fn checkpoint(&mut self, state: &super::State, force: bool) {
        let Some(sink) = &self.sink else { return };
        let due = sink.checkpoint_every > 0 && self.since_checkpoint >= sink.checkpoint_every;
        if !(due || (force && self.since_checkpoint > 0)) {
            return;
        }
        self.since_checkpoint = 0;
        let mut copy = state.clone();
        copy.sequence = self.last();
        self.send(Stored::Checkpoint(Box::new(copy)));
    }

    fn send(&mut self, item: Stored) {
        if let Some(sink) = &self.sink {
            if sink.tx.send(item).is_err() && !self.sink_lost {
                self.sink_lost = true;
                tracing::error!(
                    "the update sink (session store) is gone; updates are no longer persisted"
                );
            }
        }
    }

    /// Drops the sink, so its receiver sees the end of the stream (after the hub's final drain).
    pub fn close_sink(&mut self) {
        self.sink = None;
    }

    /// The sequence of the last update (0 before any).
    pub fn last(&self) -> u64 {
        self.next - 1
    }

    /// Stamps, records and broadcasts one update; returns its sequence.
    pub fn publish(
        &mut self,
        kind: UpdateType,
        source: UpdateSource,
        timestamp: u64,
        payload: impl Into<Payload>,
    ) -> u64 {
        let sequence = self.next;
        self.next += 1;
        let update = Arc::new(StateUpdate::new(kind, timestamp, sequence, payload, source));
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(update.clone());
        if self.sink.is_some() {
            self.since_checkpoint += 1;
            self.send(Stored::Update(update.clone()));
        }
        // No subscribers is fine.
        let _ = self.tx.send(update);
        sequence
    }

    /// Updates after `sequence`, if the history still holds them all.
    pub fn since(&self, sequence: u64) -> Since {
        if sequence >= self.last() {
            return Since::Updates(Vec::new());
        }
        match self.history.front() {
            Some(first) if first.sequence <= sequence + 1 => {
                // The history is in sequence order: find the first newer update by bisection
                // instead of walking all of it (the hub asks after every event).
                let start = self.history.partition_point(|u| u.sequence <= sequence);
                Since::Updates(self.history.range(start..).cloned().collect())
            }
            _ => Since::TooOld,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StateUpdate>> {
        self.tx.subscribe()
    }

    /// Live subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(log: &mut UpdateLog, n: usize) {
        for i in 0..n {
            log.publish(
                UpdateType::Usage,
                UpdateSource::Gateway,
                i as u64,
                serde_json::Value::Null,
            );
        }
    }

    #[test]
    fn sequences_are_monotonic_and_continue_from_the_start_value() {
        let mut log = UpdateLog::new(41);
        publish(&mut log, 3);
        assert_eq!(log.last(), 44);
        match log.since(42) {
            Since::Updates(u) => {
                assert_eq!(u.iter().map(|u| u.sequence).collect::<Vec<_>>(), [43, 44])
            }
            Since::TooOld => panic!("history holds 42.."),
        }
    }

    #[test]
    fn since_the_present_or_future_is_empty() {
        let mut log = UpdateLog::new(0);
        publish(&mut log, 2);
        assert!(matches!(log.since(2), Since::Updates(u) if u.is_empty()));
        assert!(matches!(log.since(9), Since::Updates(u) if u.is_empty()));
    }

    #[test]
    fn since_beyond_the_history_asks_for_a_full_state() {
        let mut log = UpdateLog::new(0);
        publish(&mut log, HISTORY + 10);
        assert!(matches!(log.since(5), Since::TooOld));
        let oldest_kept = log.last() - HISTORY as u64;
        match log.since(oldest_kept) {
            Since::Updates(u) => assert_eq!(u.len(), HISTORY),
            Since::TooOld => panic!("exactly the history"),
        }
    }

    #[test]
    fn the_shared_json_is_the_update_encoded_and_a_clone_encodes_its_own() {
        let mut log = UpdateLog::new(0);
        log.publish(
            UpdateType::Balance,
            UpdateSource::Venice,
            7,
            serde_json::json!({"diem": 1.5}),
        );
        let Since::Updates(u) = log.since(0) else {
            panic!("just published")
        };
        let first = u[0].json().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&first).unwrap(),
            serde_json::json!({"type": "balance", "timestamp": 7, "sequence": 1,
                "payload": {"diem": 1.5}, "source": "venice"})
        );
        assert!(Arc::ptr_eq(&first, &u[0].json().unwrap()), "encoded once");
        let mut copy = (*u[0]).clone();
        copy.payload = serde_json::json!({"diem": 2}).into();
        assert!(copy.json().unwrap().contains(r#""diem":2"#));
    }

    #[test]
    fn subscribers_receive_updates_in_order() {
        let mut log = UpdateLog::new(0);
        let mut rx = log.subscribe();
        publish(&mut log, 3);
        let got: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().sequence).collect();
        assert_eq!(got, [1, 2, 3]);
    }
}
