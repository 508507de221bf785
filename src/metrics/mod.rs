//! Every Prometheus metric the gateway exports, defined in this module and nowhere else;
//! `docs/METRICS.md` is the catalogue (names, types, units, labels, meaning).
//!
//! Owns [`Metrics`]: a per-instance registry with the `sidepanel_` prefix (so tests can run two
//! servers in one process), plus the standard unprefixed `process_*` metrics. Metrics are fed
//! off the proxy's hot path: the hub observes headers, finished requests and its own updates;
//! the proxy adds only two timings per request at its end; gauges that mirror state are read
//! when `/metrics` is scraped. Every label takes values from a bounded set ([`labels`]).
//!
//! Parts: [`labels`] (value sets, model fold, buckets), `requests` (request path), `scrape`
//! (scrape-time gauges), `hooks` (hub, WebSocket, ingest and store reports), `health` (store and
//! WebSocket degradation) and `process`.

pub mod labels;

mod health;
mod hooks;
mod process;
mod requests;
mod scrape;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    CounterVec, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::admission::GateView;
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::RequestRecord;
use crate::hub::{HubHandle, StateUpdate};
pub use health::{StoreGauges, StoreProbe};
use labels::ModelLabels;

/// Default cap on distinct model label values: the hub's own cap on models it tracks.
pub const DEFAULT_MAX_MODELS: usize = crate::hub::state::MAX_MODELS;

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    /// The unprefixed `process_*` metrics.
    process: Registry,
    models: ModelLabels,
    requests: requests::RequestMetrics,
    state: scrape::StateMetrics,
    hooks: hooks::HookMetrics,
    health: health::HealthMetrics,
}

impl Metrics {
    /// Metrics with the default model cap ([`DEFAULT_MAX_MODELS`]).
    pub fn new() -> Self {
        Self::with_max_models(DEFAULT_MAX_MODELS)
    }

    /// Metrics whose `model` label keeps the first `max_models` distinct ids; later ones are
    /// exported as `other`.
    pub fn with_max_models(max_models: usize) -> Self {
        let r = Registry::new_custom(Some("sidepanel".into()), None).expect("valid prefix");
        let process = Registry::new();
        process
            .register(Box::new(process::ProcessCollector::new()))
            .expect("unique metric");
        process::register_build_info(&r);
        Self {
            models: ModelLabels::new(max_models),
            requests: requests::RequestMetrics::new(&r),
            state: scrape::StateMetrics::new(&r),
            hooks: hooks::HookMetrics::new(&r),
            health: health::HealthMetrics::new(&r),
            registry: r,
            process,
        }
    }

    /// The bounded label for `model` (see [`ModelLabels::label`]).
    pub fn model_label(&self, model: Option<&str>) -> String {
        self.models.label(model)
    }

    /// Hub: the headers of one response, for the hub's model key.
    pub fn observe_headers(&self, model: &str, h: &VeniceHeaders) {
        let model = self.models.label(Some(model));
        self.requests.observe_headers(&model, h);
    }

    /// Hub: one finished request, for the hub's model key.
    pub fn observe_request(&self, model: &str, r: &RequestRecord) {
        let model = self.models.label(Some(model));
        self.requests.observe_request(&model, r);
    }

    /// Proxy: what only the proxy can time, once per request at its end: time to the first
    /// streamed event and the gateway's own overhead.
    pub fn observe_timing(
        &self,
        model: Option<&str>,
        streamed: bool,
        ttft: Option<Duration>,
        overhead: Option<Duration>,
    ) {
        let model = self.models.label(model);
        self.requests
            .observe_timing(&model, streamed, ttft, overhead);
    }

    /// `/metrics`: refreshes the gauges that mirror the hub's state and the admission gates.
    pub fn observe_scrape(&self, hub: &HubHandle, gates: &[(String, GateView)]) {
        self.state.observe(&self.models, hub, gates);
        self.health.observe(hub.with_state(|s| s.sequence));
    }

    /// Hub: the balance alert flags `(diem, usd)` changed (scrapes also read them from state).
    pub fn set_alerts_firing(&self, firing: (bool, bool)) {
        self.state.set_alerts_firing(firing);
    }

    /// Hub: upstream availability changed (scrapes also read it from state).
    pub fn set_upstream_up(&self, up: bool) {
        self.state.set_upstream_up(up);
    }

    /// Hub handle: an event was dropped because the hub's queue was full.
    pub fn hub_dropped(&self) {
        self.hooks.hub_dropped();
    }

    /// Hub: about to apply an event whose updates (if any) are numbered from `first`.
    pub fn publishing(&self, first: u64) {
        self.hooks.publishing(first);
    }

    /// Hub: the updates one event published (`sidepanel_state_updates_total{type}`).
    pub fn published(&self, updates: &[Arc<StateUpdate>]) {
        self.hooks.published(updates);
    }

    /// WebSocket: a client queued `update` for sending (`sidepanel_ws_propagation_seconds`).
    pub fn ws_update_sent(&self, update: &StateUpdate) {
        self.hooks.ws_update_sent(update);
    }

    /// Ingest: one plugin event accepted, by its OpenCode event name (`session.created`, …;
    /// names outside [`labels::INGEST_EVENTS`] count as `other`).
    pub fn ingest_accepted(&self, event: &str) {
        self.hooks.ingest_accepted(event);
    }

    /// Ingest: a post refused, or one event dropped from a batch, by `IngestError::code`
    /// (values outside [`labels::INGEST_REJECTIONS`] count as `other`).
    pub fn ingest_rejected(&self, reason: &str) {
        self.hooks.ingest_rejected(reason);
    }

    /// Store: `events` updates committed; `lag` is the oldest one's time since publication.
    pub fn store_appended(&self, events: u64, lag: Duration) {
        self.hooks.store_appended(events, lag);
    }

    /// Store: a commit failed (`StoreError::failure_reason`: `disk_full`, `read_only`, `busy`,
    /// `io`, `other`); the batch is kept and retried.
    pub fn store_failed(&self, reason: &str) {
        self.health.store_failed(reason);
    }

    /// Store: the probe scrapes call for `sidepanel_store_up`, `_pending_updates` and
    /// `_lag_seconds` (set once, when the writer starts).
    pub fn watch_store(&self, probe: StoreProbe) {
        self.health.watch_store(probe);
    }

    /// WebSocket: an upgrade was refused (`too_many_clients`, `forbidden`, `unauthorized`,
    /// `not_found`, `other`).
    pub fn ws_refused(&self, reason: &str) {
        self.health.ws_refused(reason);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(r, c)
}

fn float_counter_vec(r: &Registry, name: &str, help: &str) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), &["model"]).expect("valid metric");
    register(r, c)
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(r, g)
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    register(r, g)
}

/// Label-less gauges that are exported only while set, one per `(name, help)`.
fn optional_gauges(r: &Registry, defs: &[(&'static str, &str)]) -> Vec<(&'static str, GaugeVec)> {
    defs.iter()
        .map(|(name, help)| (*name, gauge_vec(r, name, help, &[])))
        .collect()
}

fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(labels::LATENCY_BUCKETS.to_vec());
    register(r, Histogram::with_opts(opts).expect("valid metric"))
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(labels::LATENCY_BUCKETS.to_vec());
    register(r, HistogramVec::new(opts, labels).expect("valid metric"))
}
