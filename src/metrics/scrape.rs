//! Gauges read from the hub's state and the admission gates when `/metrics` is scraped.
//!
//! Owns [`StateMetrics`]: balance and its age, alert thresholds, upstream health, admission
//! queue depth, plugin liveness, WebSocket clients, the hub's queue, the Lean server and the
//! OpenCode server link. Reading at scrape time keeps these exact (a restored state, an age
//! that grows while nothing happens) and costs the proxy nothing; the hub's state is held under
//! a short read lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use prometheus::{GaugeVec, IntCounter, IntGauge, IntGaugeVec, Registry};
use serde_json::Value;

use super::labels::{ModelLabels, LEAN_FILE_STATUSES, LEAN_SEVERITIES, LEAN_STATES};
use super::{counter, int_gauge, int_gauge_vec};
use crate::admission::GateView;
use crate::hub::state::{State, UpstreamStatus};
use crate::hub::HubHandle;
use crate::opencode::LinkState;
use crate::util::epoch_ms;

/// Scrape-time gauges (see `docs/METRICS.md`, "Balance", "Health", "Lean").
pub struct StateMetrics {
    /// Unlabelled gauges exported only while their value is known, by name.
    known: Vec<(&'static str, GaugeVec)>,
    alert_firing: IntGaugeVec,
    upstream_up: IntGauge,
    upstream_failures: IntGauge,
    queue_depth: IntGaugeVec,
    plugin_silent: IntGauge,
    ws_clients: IntGauge,
    hub_queued: IntGauge,
    lean_state: IntGaugeVec,
    lean_up: IntGauge,
    lean_restarts: IntCounter,
    lean_restarts_seen: AtomicU64,
    lean_diagnostics: IntGaugeVec,
    lean_files: IntGaugeVec,
    opencode_link: IntGaugeVec,
}

/// The optional gauges in `known`: exported name suffix and help.
const KNOWN: &[(&str, &str)] = &[
    ("balance_usd", "Last USD balance reported by Venice"),
    ("balance_diem", "Last Diem balance reported by Venice"),
    (
        "balance_vcu",
        "Last VCU balance reported by Venice (legacy header)",
    ),
    (
        "balance_updated_timestamp_seconds",
        "Unix time the balance was last reported",
    ),
    (
        "balance_age_seconds",
        "Seconds since the balance was last reported",
    ),
    (
        "balance_alert_threshold_usd",
        "Configured USD balance alert threshold",
    ),
    (
        "balance_alert_threshold_diem",
        "Configured Diem balance alert threshold",
    ),
    (
        "plugin_last_event_timestamp_seconds",
        "Unix time of the last OpenCode plugin event",
    ),
];

impl StateMetrics {
    pub fn new(r: &Registry) -> Self {
        let lean_state = int_gauge_vec(
            r,
            "lean_server_state",
            "1 for the Lean server's current state, 0 for the others",
            &["state"],
        );
        let lean_diagnostics = int_gauge_vec(
            r,
            "lean_diagnostics",
            "Lean diagnostics in the files the gateway tracks, by severity",
            &["severity"],
        );
        let lean_files = int_gauge_vec(
            r,
            "lean_files",
            "Lean files the gateway tracks, by status",
            &["status"],
        );
        let alert_firing = int_gauge_vec(
            r,
            "balance_alert_firing",
            "1 while the balance is below its configured alert threshold, by currency",
            &["currency"],
        );
        for (vec, values) in [
            (&lean_state, LEAN_STATES),
            (&lean_diagnostics, LEAN_SEVERITIES),
            (&lean_files, LEAN_FILE_STATUSES),
            (&alert_firing, &["diem", "usd"][..]),
        ] {
            for v in values {
                vec.with_label_values(&[v]);
            }
        }
        let opencode_link = int_gauge_vec(
            r,
            "opencode_link_state",
            "1 for the OpenCode server link's current state, 0 for the others",
            &["state"],
        );
        for state in LinkState::ALL {
            opencode_link.with_label_values(&[state.as_str()]);
        }
        Self {
            known: super::optional_gauges(r, KNOWN),
            alert_firing,
            upstream_up: int_gauge(
                r,
                "upstream_up",
                "0 while the upstream counts as unavailable",
            ),
            upstream_failures: int_gauge(
                r,
                "upstream_consecutive_failures",
                "Consecutive upstream faults (connect errors, timeouts, 5xx)",
            ),
            queue_depth: int_gauge_vec(
                r,
                "queue_depth",
                "Requests waiting for admission, by model",
                &["model"],
            ),
            plugin_silent: int_gauge(
                r,
                "plugin_silent",
                "1 while proxied session traffic goes on without OpenCode plugin events",
            ),
            ws_clients: int_gauge(r, "ws_clients", "Connected WebSocket clients"),
            hub_queued: int_gauge(r, "hub_queued_events", "Events waiting in the hub's queue"),
            lean_state,
            lean_up: int_gauge(r, "lean_up", "1 while the Lean server is ready"),
            lean_restarts: counter(r, "lean_restarts_total", "Restarts of the Lean server"),
            lean_restarts_seen: AtomicU64::new(0),
            lean_diagnostics,
            lean_files,
            opencode_link,
        }
    }

    pub fn set_alerts_firing(&self, (diem, usd): (bool, bool)) {
        for (currency, firing) in [("diem", diem), ("usd", usd)] {
            let g = self.alert_firing.with_label_values(&[currency]);
            g.set(i64::from(firing));
        }
    }

    pub fn set_upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }

    fn set_known(&self, name: &str, value: Option<f64>) {
        let Some((_, g)) = self.known.iter().find(|(n, _)| *n == name) else {
            return;
        };
        match value.filter(|v| v.is_finite()) {
            Some(v) => g.with_label_values::<&str>(&[]).set(v),
            None => {
                let _ = g.remove_label_values::<&str>(&[]);
            }
        }
    }

    /// Reads the hub and the admission gates (called on every scrape).
    pub fn observe(&self, models: &ModelLabels, hub: &HubHandle, gates: &[(String, GateView)]) {
        let now = SystemTime::now();
        hub.with_state(|s| self.observe_state(s, now));
        self.ws_clients.set(hub.subscribers() as i64);
        self.hub_queued.set(hub.queued() as i64);
        self.queue_depth.reset();
        for (model, view) in gates {
            let label = models.label(Some(model));
            self.queue_depth
                .with_label_values(&[&label])
                .add(view.waiting as i64);
        }
    }

    fn observe_state(&self, s: &State, now: SystemTime) {
        let b = &s.balance;
        self.set_known("balance_usd", b.usd);
        self.set_known("balance_diem", b.diem);
        self.set_known("balance_vcu", b.vcu);
        let at = b.observed_at;
        self.set_known("balance_updated_timestamp_seconds", at.map(seconds));
        let age = at.map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64());
        self.set_known("balance_age_seconds", age);
        self.set_known("balance_alert_threshold_usd", s.alerts.usd_below);
        self.set_known("balance_alert_threshold_diem", s.alerts.diem_below);
        self.set_alerts_firing((s.alerts.diem_firing, s.alerts.usd_firing));
        self.set_upstream_up(s.upstream.status != UpstreamStatus::Unavailable);
        let failures = i64::from(s.upstream.consecutive_failures);
        self.upstream_failures.set(failures);
        self.plugin_silent.set(i64::from(s.plugin.silent));
        let last = s.plugin.last_event_at.map(|ms| ms as f64 / 1000.0);
        self.set_known("plugin_last_event_timestamp_seconds", last);
        self.observe_lean(&s.proof);
        for state in LinkState::ALL {
            let g = self.opencode_link.with_label_values(&[state.as_str()]);
            g.set(i64::from(state == s.opencode_link.state));
        }
    }

    /// The Lean server's entry (`@server`) and every file's counts in the hub's proof map.
    fn observe_lean(&self, proof: &std::collections::BTreeMap<String, Value>) {
        let server = proof.get(crate::lean::SERVER_KEY).map(|e| &e["server"]);
        let state = server.and_then(|s| s["status"].as_str()).unwrap_or("");
        for s in LEAN_STATES {
            let g = self.lean_state.with_label_values(&[s]);
            g.set(i64::from(*s == state));
        }
        self.lean_up.set(i64::from(state == "ready"));
        if let Some(n) = server.and_then(|s| s["restarts"].as_u64()) {
            let seen = self.lean_restarts_seen.swap(n, Ordering::Relaxed);
            // A lower count means the component itself started over: nothing to add.
            self.lean_restarts.inc_by(n.saturating_sub(seen));
        }
        let mut severities = [0i64; 4];
        let mut statuses = [0i64; 5];
        let files = proof.iter().filter(|(k, _)| *k != crate::lean::SERVER_KEY);
        for (_, f) in files {
            let c = &f["counts"];
            for (i, key) in ["errors", "warnings", "infos", "hints"].iter().enumerate() {
                severities[i] += c[key].as_i64().unwrap_or(0);
            }
            let status = f["status"].as_str().unwrap_or("");
            if let Some(i) = LEAN_FILE_STATUSES.iter().position(|s| *s == status) {
                statuses[i] += 1;
            }
        }
        for (label, n) in LEAN_SEVERITIES.iter().zip(severities) {
            self.lean_diagnostics.with_label_values(&[label]).set(n);
        }
        for (label, n) in LEAN_FILE_STATUSES.iter().zip(statuses) {
            self.lean_files.with_label_values(&[label]).set(n);
        }
    }
}

/// Unix seconds of `t`.
fn seconds(t: SystemTime) -> f64 {
    epoch_ms(t) as f64 / 1000.0
}
