//! Degradation metrics of the parts that may fail on their own while the proxy keeps serving:
//! the session store (up, uncommitted updates and the age of the oldest, failed commits by
//! reason) and the WebSocket server (refused upgrades by reason).
//!
//! Owns [`HealthMetrics`]. The store registers a [`StoreProbe`] once it starts; scrapes call it,
//! so the store's lag keeps growing in `/metrics` while its writer thread is stuck inside
//! SQLite (a locked or slow disk) and cannot report anything itself. Without a store (disabled)
//! the store gauges are not exported at all.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{GaugeVec, IntCounterVec, Registry};

use super::labels::{self, STORE_FAILURES, WS_REFUSALS};
use super::{counter_vec, gauge_vec};

/// What the session store says about itself at a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StoreGauges {
    /// False while its last commit failed (disk full, read-only, locked…) or its writer stopped.
    pub up: bool,
    /// The last committed sequence.
    pub committed: u64,
    /// The age of the oldest update published but not committed (zero when none).
    pub lag: Duration,
}

/// Called at every scrape for the store's current gauges.
pub type StoreProbe = Box<dyn Fn() -> StoreGauges + Send + Sync>;

/// Store and WebSocket degradation metrics (see `docs/METRICS.md`, "Session store",
/// "Hub and WebSocket").
pub struct HealthMetrics {
    store_up: GaugeVec,
    store_pending: GaugeVec,
    store_lag: GaugeVec,
    store_failures: IntCounterVec,
    ws_refused: IntCounterVec,
    probe: OnceLock<StoreProbe>,
}

impl HealthMetrics {
    pub fn new(r: &Registry) -> Self {
        let store_failures = counter_vec(
            r,
            "store_write_failures_total",
            "Session-store commits that failed (the batch is kept and retried), by reason",
            &["reason"],
        );
        let ws_refused = counter_vec(
            r,
            "ws_refused_total",
            "WebSocket upgrades the server refused, by reason",
            &["reason"],
        );
        for (vec, values) in [
            (&store_failures, STORE_FAILURES),
            (&ws_refused, WS_REFUSALS),
        ] {
            for v in values {
                vec.with_label_values(&[v]);
            }
        }
        Self {
            store_up: gauge_vec(
                r,
                "store_up",
                "1 while the session store commits, 0 while its commits fail or its writer stopped",
                &[],
            ),
            store_pending: gauge_vec(
                r,
                "store_pending_updates",
                "State updates published but not yet committed by the session store",
                &[],
            ),
            store_lag: gauge_vec(
                r,
                "store_lag_seconds",
                "Age of the oldest state update the session store has not committed yet",
                &[],
            ),
            store_failures,
            ws_refused,
            probe: OnceLock::new(),
        }
    }

    /// Registers the store's probe (once; later calls are ignored).
    pub fn watch_store(&self, probe: StoreProbe) {
        let _ = self.probe.set(probe);
    }

    /// Scrape: refreshes the store gauges; `published` is the hub's last sequence.
    pub fn observe(&self, published: u64) {
        let Some(probe) = self.probe.get() else {
            return;
        };
        let g = probe();
        let none: &[&str] = &[];
        self.store_up
            .with_label_values(none)
            .set(f64::from(u8::from(g.up)));
        let pending = published.saturating_sub(g.committed);
        self.store_pending
            .with_label_values(none)
            .set(pending as f64);
        self.store_lag
            .with_label_values(none)
            .set(g.lag.as_secs_f64());
    }

    pub fn store_failed(&self, reason: &str) {
        let reason = labels::bounded(reason, STORE_FAILURES);
        self.store_failures.with_label_values(&[reason]).inc();
    }

    pub fn ws_refused(&self, reason: &str) {
        let reason = labels::bounded(reason, WS_REFUSALS);
        self.ws_refused.with_label_values(&[reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_gauges_appear_only_with_a_probe_and_follow_it() {
        let r = Registry::new();
        let h = HealthMetrics::new(&r);
        h.observe(10);
        let names = |r: &Registry| {
            r.gather()
                .iter()
                .filter(|f| !f.get_metric().is_empty())
                .map(|f| f.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert!(!names(&r).contains(&"store_up".to_owned()), "no store");
        h.watch_store(Box::new(|| StoreGauges {
            up: false,
            committed: 4,
            lag: Duration::from_millis(2500),
        }));
        h.observe(10);
        let none: &[&str] = &[];
        assert_eq!(h.store_up.with_label_values(none).get(), 0.0);
        assert_eq!(h.store_pending.with_label_values(none).get(), 6.0);
        assert_eq!(h.store_lag.with_label_values(none).get(), 2.5);
        h.store_failed("disk_full");
        h.store_failed("weird");
        assert_eq!(h.store_failures.with_label_values(&["other"]).get(), 1);
    }
}
