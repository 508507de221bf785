//! The state hub: the one owner of the aggregate [`State`].
//!
//! Producers (the proxy today; ingest, Lean and storage later) hand [`HubEvent`]s over a bounded
//! channel with `try_send`, so they never wait on the hub. The hub task applies each event to the
//! state, fills in computed costs, updates the metrics, and logs each malformed upstream header
//! once. Readers (local routes) take a short read lock on the shared state; no lock is ever held
//! across an `.await`.

pub mod state;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use tokio::sync::mpsc;

use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::{CostSource, HubEvent, RequestRecord};
use crate::metrics::Metrics;
use crate::pricing::PriceTable;
pub use state::State;

/// Events the hub queue holds before producers start dropping (and counting) them.
pub const QUEUE_CAPACITY: usize = 16 * 1024;

/// The producers' side of the hub, cheap to clone.
#[derive(Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<HubEvent>,
    state: Arc<RwLock<State>>,
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
        let mut state = self.state.read().clone();
        state.refresh(now);
        serde_json::to_value(&state).unwrap_or(serde_json::Value::Null)
    }

    /// Reads the state under a short lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read())
    }
}

/// The hub's consuming side; run it with [`Hub::run`].
pub struct Hub {
    rx: tokio::sync::Mutex<mpsc::Receiver<HubEvent>>,
    state: Arc<RwLock<State>>,
    metrics: Arc<Metrics>,
    pricing: Arc<RwLock<PriceTable>>,
    warned: parking_lot::Mutex<HashSet<&'static str>>,
}

impl Hub {
    /// Creates the hub and the handle producers use.
    pub fn new(metrics: Arc<Metrics>, pricing: Arc<RwLock<PriceTable>>) -> (Self, HubHandle) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let state = Arc::new(RwLock::new(State::default()));
        let handle = HubHandle {
            tx,
            state: state.clone(),
            metrics: metrics.clone(),
        };
        let hub = Self {
            rx: tokio::sync::Mutex::new(rx),
            state,
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

    /// Applies one event (public for tests and benches).
    pub fn apply(&self, event: HubEvent) {
        match event {
            HubEvent::Headers { model, headers, at } => {
                self.warn_malformed(&headers);
                let mut state = self.state.write();
                let key = state.model_key(model.as_deref().or(headers.model_id.as_deref()));
                state.apply_headers(model.as_deref(), &headers, at);
                drop(state);
                self.metrics.observe_headers(&key, &headers);
            }
            HubEvent::Request(mut record) => {
                self.fill_cost(&mut record);
                let mut state = self.state.write();
                let key = state.model_key(record.model.as_deref());
                state.apply_request(&record);
                let up = state.upstream.status != state::UpstreamStatus::Unavailable;
                drop(state);
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
