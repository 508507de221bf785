//! The state hub: the one owner of the aggregate [`State`].
//!
//! Producers (the proxy today; ingest, Lean and storage later) hand [`HubEvent`]s over a bounded
//! channel with `try_send`, so they never wait on the hub. The hub task applies each event to the
//! state, fills in computed costs, updates the metrics, and logs each malformed upstream header
//! once. Readers (local routes) take a short read lock on the shared state; no lock is ever held
//! across an `.await`.

pub mod state;
pub mod update;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::{CostSource, RequestRecord};
use crate::metrics::Metrics;
use crate::pricing::PriceTable;
use crate::util::epoch_ms;
pub use state::State;
use update::UpdateLog;
pub use update::{Since, StateUpdate, UpdateSource, UpdateType};

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

impl HubHandle {
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
            state: serde_json::to_value(&state).unwrap_or(serde_json::Value::Null),
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
}

/// The hub's consuming side; run it with [`Hub::run`].
pub struct Hub {
    rx: tokio::sync::Mutex<mpsc::Receiver<HubEvent>>,
    shared: Arc<RwLock<Shared>>,
    metrics: Arc<Metrics>,
    pricing: Arc<RwLock<PriceTable>>,
    warned: parking_lot::Mutex<HashSet<&'static str>>,
}

impl Hub {
    /// Creates the hub and the handle producers use.
    pub fn new(metrics: Arc<Metrics>, pricing: Arc<RwLock<PriceTable>>) -> (Self, HubHandle) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(RwLock::new(Shared {
            state: State::default(),
            log: UpdateLog::new(0),
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
        };
        (hub, handle)
    }

    /// Applies events until every producer is gone or `shutdown` flips to true.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut rx = self.rx.lock().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.apply(ev),
                    None => return,
                },
                _ = shutdown.changed() => {
                    // Drain what is already queued, then stop.
                    while let Ok(ev) = rx.try_recv() {
                        self.apply(ev);
                    }
                    return;
                }
            }
        }
    }

    /// Applies one event and publishes the updates it causes (public for tests and benches).
    pub fn apply(&self, event: HubEvent) {
        let now = epoch_ms(SystemTime::now());
        match event {
            HubEvent::Headers { model, headers, at } => {
                self.warn_malformed(&headers);
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                let key = state.model_key(model.as_deref().or(headers.model_id.as_deref()));
                let changes = state.apply_headers(model.as_deref(), &headers, at);
                if changes.balance {
                    let payload = json!({"balance": state.balance});
                    log.publish(UpdateType::Balance, UpdateSource::Venice, now, payload);
                }
                if let Some(m) = changes.limits {
                    let payload = json!({"model": m, "limits": state.rate_limits.get(&m)});
                    log.publish(UpdateType::RateLimit, UpdateSource::Venice, now, payload);
                }
                state.sequence = log.last();
                drop(guard);
                self.metrics.observe_headers(&key, &headers);
            }
            HubEvent::Request(mut record) => {
                self.fill_cost(&mut record);
                let mut guard = self.shared.write();
                let Shared { state, log } = &mut *guard;
                let key = state.model_key(record.model.as_deref());
                let health_changed = state.apply_request(&record);
                let session = record
                    .session_id
                    .as_ref()
                    .and_then(|s| state.sessions.get(s));
                let payload = json!({
                    "request": &record,
                    "model": key,
                    "model_totals": state.models.get(&key),
                    "session_totals": session.map(|s| &s.totals),
                    "totals": state.totals,
                });
                log.publish(UpdateType::Usage, UpdateSource::Venice, now, payload);
                if health_changed {
                    let payload = json!({"upstream": state.upstream});
                    log.publish(UpdateType::Health, UpdateSource::Gateway, now, payload);
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
        }
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

    fn warn_malformed(&self, h: &VeniceHeaders) {
        if h.malformed.is_empty() {
            return;
        }
        let mut warned = self.warned.lock();
        for name in &h.malformed {
            if warned.insert(name) {
                tracing::warn!(
                    header = name,
                    "upstream sent a malformed header; ignoring it (logged once)"
                );
            }
        }
    }
}
