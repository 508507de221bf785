//! The state hub: the one owner of the aggregate [`State`].
//!
//! Producers (proxy, ingest, Lean, the OpenCode link, the store's health) hand [`HubEvent`]s over
//! a bounded channel with `try_send`, so they never wait on the hub. The hub task applies each
//! event to the state, fills in computed costs, updates the metrics, and logs each malformed
//! upstream header once. Venice's header events (balance, rate limits) are applied at most every
//! 100 ms, in batches ([`coalesce`]). Readers (local routes) take a short read lock on the shared
//! state; no lock is ever held across an `.await`.

mod alerts;
pub mod coalesce;
mod day;
mod payload;
pub mod state;
pub mod update;
mod venice;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::RwLock;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::{CostSource, RequestRecord};
use crate::metrics::Metrics;
use crate::pricing::PriceTable;
use crate::util::{epoch_ms, from_epoch_ms};
use coalesce::Coalescer;
pub use state::State;
use update::UpdateLog;
pub use update::{Payload, Since, Sink, StateUpdate, Stored, UpdateSource, UpdateType};
use venice::HeaderEvent;

/// Messages from producers (proxy, Lean, ingest) to the hub.
#[derive(Debug)]
pub enum HubEvent {
    /// Response headers of a request in flight (sent once per response, as they arrive).
    Headers {
        model: Option<String>,
        headers: Box<VeniceHeaders>,
        at: SystemTime,
    },
    /// A finished request.
    Request(Box<RequestRecord>),
    /// A finished request with its response headers, held back to travel with it: a JSON
    /// response ends right after its headers, so one send (and one hub wake-up) carries both.
    /// Applied as `Headers` followed by `Request`.
    Completed {
        model: Option<String>,
        headers: Box<VeniceHeaders>,
        at: SystemTime,
        record: Box<RequestRecord>,
    },
    /// New proof state of one Lean file (the payload is owned by the Lean component).
    Proof {
        file: String,
        state: serde_json::Value,
    },
    /// The user set (or, with `below: None`, cleared) a balance alert threshold.
    SetAlert {
        currency: state::AlertCurrency,
        below: Option<f64>,
    },
    /// OpenCode plugin events accepted by `crate::ingest` (or its settings). A batch's
    /// `applied` sender is answered with the last sequence once its updates are published.
    Opencode(crate::ingest::OpencodeMessage),
    /// The OpenCode server link's health, or the outcome of a session revert (`crate::opencode`).
    OpencodeLink(crate::opencode::LinkEvent),
    /// The session store's status (`crate::store::StoreHandle::report_to`): kept in the state
    /// (live only) and published as a `health` update when the status or its error changes.
    Store(Box<crate::store::StoreStatus>),
}

/// Events the hub queue holds before producers start dropping (and counting) them.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// The state and the log of updates that produced it, under one lock so a snapshot and its
/// sequence always agree.
struct Shared {
    state: State,
    log: UpdateLog,
}

/// A consistent copy of the state.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub sequence: u64,
    pub state: serde_json::Value,
}

/// The producers' and readers' side of the hub, cheap to clone.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<HubEvent>,
    shared: Arc<RwLock<Shared>>,
    metrics: Arc<Metrics>,
}

/// A [`HubHandle`] that does not keep the hub alive: for holders the hub's own handle reaches
/// (through the metrics, say), where a strong handle would make a reference cycle and keep a
/// stopped gateway's state and history.
#[derive(Clone)]
pub struct WeakHub {
    tx: mpsc::WeakSender<HubEvent>,
    shared: std::sync::Weak<RwLock<Shared>>,
    metrics: std::sync::Weak<Metrics>,
}

impl WeakHub {
    /// The handle, while the hub's state still exists.
    pub fn upgrade(&self) -> Option<HubHandle> {
        Some(HubHandle {
            tx: self.tx.upgrade()?,
            shared: self.shared.upgrade()?,
            metrics: self.metrics.upgrade()?,
        })
    }
}

impl HubHandle {
    /// A handle that does not keep the hub alive.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub {
            tx: self.tx.downgrade(),
            shared: Arc::downgrade(&self.shared),
            metrics: Arc::downgrade(&self.metrics),
        }
    }

    /// Hands an event to the hub without waiting. A full queue drops the event and counts it.
    pub fn send(&self, event: HubEvent) {
        if let Err(e) = self.tx.try_send(event) {
            self.metrics.hub_dropped();
            tracing::warn!(error = %e, "hub queue full or closed; event dropped");
        }
    }

    /// The current state as JSON, with derived flags computed as of `now`.
    pub fn snapshot_json(&self, now: SystemTime) -> serde_json::Value {
        self.snapshot_at(now).state
    }

    /// The current state and the sequence it reflects.
    pub fn snapshot_at(&self, now: SystemTime) -> Snapshot {
        let mut state = self.shared.read().state.clone();
        state.refresh(now);
        Snapshot {
            sequence: state.sequence,
            state: state.live_json(),
        }
    }

    /// Reads the state under a short lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.read().state)
    }

    /// Live updates from now on. Subscribe first, then take a snapshot, and skip updates whose
    /// sequence the snapshot already covers.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StateUpdate>> {
        self.shared.read().log.subscribe()
    }

    /// The updates after `sequence`, or [`Since::TooOld`] when they are no longer held.
    pub fn since(&self, sequence: u64) -> Since {
        self.shared.read().log.since(sequence)
    }

    /// The gateway's metrics, for components that report to them (ws, ingest, store).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Live update subscribers (the WebSocket clients).
    pub fn subscribers(&self) -> usize {
        self.shared.read().log.subscribers()
    }

    /// Events waiting in the hub's queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Replaces the whole state with `state` (a time-travel restore) and publishes it as one
    /// `snapshot` update whose payload is the full state plus `restored_from` (what was
    /// restored). History is not rewritten: the restore is a new update with a new sequence,
    /// which it returns. The live-only store status stays the current one.
    pub fn adopt(&self, mut state: State, restored_from: serde_json::Value) -> u64 {
        let now = epoch_ms(SystemTime::now());
        let mut guard = self.shared.write();
        let Shared {
            state: current,
            log,
        } = &mut *guard;
        state.sequence = log.last() + 1;
        state.store = current.store.take();
        let mut payload = state.live_json();
        if let serde_json::Value::Object(map) = &mut payload {
            map.insert("restored_from".into(), restored_from);
        }
        *current = state;
        let sequence = log.publish(UpdateType::Snapshot, UpdateSource::User, now, payload);
        current.sequence = sequence;
        sequence
    }
}

/// The hub's consuming side; run it with [`Hub::run`].
pub struct Hub {
    rx: tokio::sync::Mutex<mpsc::Receiver<HubEvent>>,
    shared: Arc<RwLock<Shared>>,
    metrics: Arc<Metrics>,
    pricing: Arc<RwLock<PriceTable>>,
    warned: parking_lot::Mutex<HashSet<&'static str>>,
    /// Header events waiting for their window (only the hub's thread takes it).
    coalesce: parking_lot::Mutex<Coalescer<HeaderEvent>>,
}

impl Hub {
    /// Creates the hub and the handle producers use.
    pub fn new(metrics: Arc<Metrics>, pricing: Arc<RwLock<PriceTable>>) -> (Self, HubHandle) {
        Self::resume(metrics, pricing, 0, State::default())
    }

    /// Creates the hub starting from a stored `state` whose last update was `sequence` (the
    /// session store's recovery point), so sequences continue across restarts.
    pub fn resume(
        metrics: Arc<Metrics>,
        pricing: Arc<RwLock<PriceTable>>,
        sequence: u64,
        mut state: State,
    ) -> (Self, HubHandle) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        state.sequence = sequence;
        let shared = Arc::new(RwLock::new(Shared {
            state,
            log: UpdateLog::new(sequence),
        }));
        let handle = HubHandle {
            tx,
            shared: shared.clone(),
            metrics: metrics.clone(),
        };
        let hub = Self {
            rx: tokio::sync::Mutex::new(rx),
            shared,
            metrics,
            pricing,
            warned: parking_lot::Mutex::new(HashSet::new()),
            coalesce: parking_lot::Mutex::new(Coalescer::default()),
        };
        (hub, handle)
    }

    /// Sends every update from now on to `sink` too (the session store; lossless, in order).
    /// Set it before the hub runs so no update is missed.
    pub fn set_sink(&self, sink: Sink) {
        self.shared.write().log.set_sink(sink);
    }

    /// Applies events until every producer is gone or `shutdown` flips to true. On the way out
    /// the sink is closed, so the store knows it has received every update.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.rx.lock().await;
        loop {
            let due = self.coalesce.lock().due();
            let window_end = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into());
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.apply(ev),
                    None => break,
                },
                _ = window_end, if due.is_some() => self.flush_coalesced(),
                _ = shutdown.changed() => {
                    // Drain what is already queued, then stop.
                    while let Ok(ev) = rx.try_recv() {
                        self.apply(ev);
                    }
                    break;
                }
            }
        }
        self.flush_coalesced();
        let mut shared = self.shared.write();
        let Shared { state, log } = &mut *shared;
        log.checkpoint(state, true);
        log.close_sink();
    }

    /// Applies one event and publishes the updates it causes (public for tests and benches).
    pub fn apply(&self, event: HubEvent) {
        self.publishing(|hub| hub.apply_event(event));
    }

    /// Runs `f` and reports the updates it published to the metrics.
    fn publishing(&self, f: impl FnOnce(&Self)) {
        let before = self.shared.read().log.last();
        self.metrics.publishing(before + 1);
        f(self);
        if let Since::Updates(published) = self.shared.read().log.since(before) {
            self.metrics.published(&published);
        }
    }

    fn apply_event(&self, event: HubEvent) {
        let now = epoch_ms(SystemTime::now());
        match event {
            HubEvent::Headers { model, headers, at } => {
                self.offer_headers(HeaderEvent { model, headers, at });
                return;
            }
            HubEvent::Completed {
                model,
                headers,
                at,
                record,
            } => {
                self.offer_headers(HeaderEvent { model, headers, at });
                return self.apply_event(HubEvent::Request(record));
            }
            HubEvent::Request(mut record) => {
                self.fill_cost(&mut record);
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                // The store replays this with the update's timestamp: use exactly that time.
                let applied = state.record_request(&record, from_epoch_ms(now));
                let key = applied.model;
                let session = record
                    .session_id
                    .as_ref()
                    .and_then(|s| state.sessions.get(s));
                let payload = Payload::encode(&payload::UsagePayload {
                    model: &key,
                    model_totals: state.models.get(&key),
                    request: &record,
                    session_totals: session.map(|s| &s.totals),
                    today: &state.today,
                    totals: &state.totals,
                });
                match payload {
                    Ok(payload) => {
                        log.publish(UpdateType::Usage, UpdateSource::Venice, now, payload);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot encode a usage update"),
                }
                if applied.health_changed {
                    let payload = json!({"upstream": state.upstream});
                    log.publish(UpdateType::Health, UpdateSource::Gateway, now, payload);
                }
                for (kind, source, payload) in applied.opencode {
                    log.publish(kind, source, now, payload);
                }
                state.sequence = log.last();
                let up = state.upstream.status != state::UpstreamStatus::Unavailable;
                drop(guard);
                self.metrics.observe_request(&key, &record);
                self.metrics.set_upstream_up(up);
                tracing::debug!(
                    model = %key,
                    status = ?record.status,
                    outcome = record.outcome.as_str(),
                    session = record.session_id.as_deref().unwrap_or("-"),
                    "request recorded"
                );
            }
            HubEvent::Proof { file, state: proof } => {
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                state.proof.insert(file.clone(), proof.clone());
                let payload = json!({"file": file, "state": proof});
                state.sequence = log.publish(UpdateType::Proof, UpdateSource::Lean, now, payload);
            }
            HubEvent::SetAlert { currency, below } => {
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                state.set_alert(currency, below);
                let payload = json!({"currency": currency, "below": below, "alerts": state.alerts});
                state.sequence = log.publish(UpdateType::Alert, UpdateSource::User, now, payload);
            }
            HubEvent::Store(status) => {
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                if state.set_store(*status) {
                    // `upstream` too, so older readers replay it as any `health` update.
                    let payload = json!({"upstream": state.upstream, "store": state.store});
                    let (kind, source) = (UpdateType::Health, UpdateSource::Gateway);
                    state.sequence = log.publish(kind, source, now, payload);
                }
            }
            HubEvent::OpencodeLink(ev) => {
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                for (kind, source, payload) in crate::opencode::apply(state, ev) {
                    log.publish(kind, source, now, payload);
                }
                state.sequence = log.last();
            }
            HubEvent::Opencode(mut msg) => {
                let applied = msg.take_applied();
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                for (kind, source, payload) in crate::ingest::apply::apply(state, msg) {
                    log.publish(kind, source, now, payload);
                }
                state.sequence = log.last();
                let last = state.sequence;
                drop(guard);
                // The ingest waits for the store to commit this before it answers.
                if let Some(tx) = applied {
                    let _ = tx.send(last);
                }
            }
        }
        // A full-state checkpoint for the session store every so many updates.
        let mut guard = self.shared.write();
        let Shared { state, log } = &mut *guard;
        log.checkpoint(state, false);
    }

    fn fill_cost(&self, r: &mut RequestRecord) {
        if r.cost.is_some() {
            r.cost_source = CostSource::Upstream;
            return;
        }
        let computed = match (&r.model, &r.usage) {
            (Some(m), Some(u)) => self.pricing.read().cost(m, u),
            _ => None,
        };
        r.cost_source = if computed.is_some() {
            CostSource::Computed
        } else {
            CostSource::Unknown
        };
        r.cost = computed;
    }
}
