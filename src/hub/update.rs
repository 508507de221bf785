//! The seed's `StateUpdate` envelope and the hub's log of recent updates.
//!
//! Owns sequencing (monotonic per process), the bounded history that lets a reconnecting client
//! catch up (`since`), and the broadcast to live subscribers. A subscriber that falls more than
//! [`BROADCAST_CAPACITY`] updates behind is told it lagged and resyncs from a full state; it never
//! slows the hub or the other subscribers.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

/// Updates kept for `since` requests.
pub const HISTORY: usize = 4096;
/// Updates a live subscriber may fall behind before it must resync.
pub const BROADCAST_CAPACITY: usize = 1024;

/// What part of the state an update changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateSource {
    Opencode,
    Venice,
    Lean,
    User,
    Gateway,
}

/// One change to the state, as the seed defines it.
#[derive(Debug, Clone, Serialize)]
pub struct StateUpdate {
    #[serde(rename = "type")]
    pub kind: UpdateType,
    /// Unix milliseconds.
    pub timestamp: u64,
    /// Monotonic per process start.
    pub sequence: u64,
    pub payload: serde_json::Value,
    pub source: UpdateSource,
}

/// Sequencing, history and broadcast.
pub struct UpdateLog {
    next: u64,
    history: VecDeque<Arc<StateUpdate>>,
    tx: broadcast::Sender<Arc<StateUpdate>>,
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
        }
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
        payload: serde_json::Value,
    ) -> u64 {
        let sequence = self.next;
        self.next += 1;
        let update = Arc::new(StateUpdate {
            kind,
            timestamp,
            sequence,
            payload,
            source,
        });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(update.clone());
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
            Some(first) if first.sequence <= sequence + 1 => Since::Updates(
                self.history
                    .iter()
                    .filter(|u| u.sequence > sequence)
                    .cloned()
                    .collect(),
            ),
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
    fn subscribers_receive_updates_in_order() {
        let mut log = UpdateLog::new(0);
        let mut rx = log.subscribe();
        publish(&mut log, 3);
        let got: Vec<u64> = (0..3).map(|_| rx.try_recv().unwrap().sequence).collect();
        assert_eq!(got, [1, 2, 3]);
    }
}
