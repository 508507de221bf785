//! Every Prometheus metric the gateway exports, defined in one place.
//!
//! Owns a per-instance [`Registry`] (so tests can run two servers in one process) and the
//! typed handles the hub updates. Label values are bounded: models come through the hub's
//! bounded model key, outcomes and kinds are fixed sets.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::RequestRecord;

/// Latency buckets in seconds: LLM calls run from milliseconds to minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    tokens: IntCounterVec,
    cost_usd: prometheus::CounterVec,
    cost_diem: prometheus::CounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    balance: GaugeVec,
    ratelimit_limit: GaugeVec,
    ratelimit_remaining: GaugeVec,
    ratelimit_reset: GaugeVec,
    malformed_headers: IntCounterVec,
    hub_dropped: IntCounter,
    unscanned_bodies: IntCounter,
    upstream_up: IntGauge,
    retries: IntCounterVec,
    rejections: IntCounterVec,
    queue_wait: HistogramVec,
    queue_depth: GaugeVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn float_counter_vec(r: &Registry, name: &str, help: &str) -> prometheus::CounterVec {
    let c = prometheus::CounterVec::new(Opts::new(name, help), &["model"]).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let h = HistogramVec::new(opts, &["model"]).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("sidepanel".into()), None).expect("valid prefix");
        let hub_dropped = IntCounter::new(
            "hub_dropped_events_total",
            "Events the proxy could not hand to the hub because its queue was full",
        )
        .expect("valid metric");
        r.register(Box::new(hub_dropped.clone()))
            .expect("unique metric");
        let unscanned_bodies = IntCounter::new(
            "unscanned_bodies_total",
            "Non-streamed responses too large to scan for usage",
        )
        .expect("valid metric");
        r.register(Box::new(unscanned_bodies.clone()))
            .expect("unique metric");
        let upstream_up = IntGauge::new(
            "upstream_up",
            "1 while the upstream answers, 0 once it is unavailable",
        )
        .expect("valid metric");
        r.register(Box::new(upstream_up.clone()))
            .expect("unique metric");
        Self {
            requests: counter_vec(
                &r,
                "requests_total",
                "Proxied requests by model, status class and outcome",
                &["model", "status", "outcome"],
            ),
            tokens: counter_vec(
                &r,
                "tokens_total",
                "Tokens by model and kind (prompt, completion, reasoning, cached, cache_creation)",
                &["model", "kind"],
            ),
            cost_usd: float_counter_vec(&r, "cost_usd_total", "Cost in USD by model"),
            cost_diem: float_counter_vec(&r, "cost_diem_total", "Cost in Diem by model"),
            duration: histogram_vec(
                &r,
                "request_duration_seconds",
                "Time from request to last response byte",
            ),
            ttfb: histogram_vec(
                &r,
                "upstream_ttfb_seconds",
                "Time from request to the upstream's response header",
            ),
            balance: gauge_vec(
                &r,
                "balance",
                "Last balance reported by Venice, by currency",
                &["currency"],
            ),
            ratelimit_limit: gauge_vec(
                &r,
                "ratelimit_limit",
                "Rate limit per window",
                &["model", "kind"],
            ),
            ratelimit_remaining: gauge_vec(
                &r,
                "ratelimit_remaining",
                "Remaining in the current rate-limit window",
                &["model", "kind"],
            ),
            ratelimit_reset: gauge_vec(
                &r,
                "ratelimit_reset_timestamp_seconds",
                "Unix time at which the rate-limit window resets",
                &["model", "kind"],
            ),
            malformed_headers: counter_vec(
                &r,
                "upstream_malformed_headers_total",
                "Upstream headers present but unparseable, by header name",
                &["header"],
            ),
            retries: counter_vec(
                &r,
                "retries_total",
                "Upstream attempts retried, by reason (rate_limited, unavailable, connect)",
                &["reason"],
            ),
            rejections: counter_vec(
                &r,
                "rejections_total",
                "Requests the gateway refused itself, by limit (requests, tokens, queue)",
                &["limit"],
            ),
            queue_wait: histogram_vec(
                &r,
                "queue_wait_seconds",
                "Time requests waited for admission",
            ),
            queue_depth: gauge_vec(
                &r,
                "queue_depth",
                "Requests waiting for admission, by model",
                &["model"],
            ),
            hub_dropped,
            unscanned_bodies,
            upstream_up,
            registry: r,
        }
    }

    /// Records the headers of one response for the (bounded) `model` key.
    pub fn observe_headers(&self, model: &str, h: &VeniceHeaders) {
        for (currency, value) in [
            ("diem", h.balance_diem),
            ("usd", h.balance_usd),
            ("vcu", h.balance_vcu),
        ] {
            if let Some(v) = value {
                self.balance.with_label_values(&[currency]).set(v);
            }
        }
        for (kind, w) in [("requests", &h.requests), ("tokens", &h.tokens)] {
            if let Some(v) = w.limit {
                self.ratelimit_limit
                    .with_label_values(&[model, kind])
                    .set(v as f64);
            }
            if let Some(v) = w.remaining {
                self.ratelimit_remaining
                    .with_label_values(&[model, kind])
                    .set(v as f64);
            }
            if let Some(t) = w.reset_at {
                let secs = crate::util::epoch_ms(t) as f64 / 1000.0;
                self.ratelimit_reset
                    .with_label_values(&[model, kind])
                    .set(secs);
            }
        }
        for name in &h.malformed {
            self.malformed_headers.with_label_values(&[name]).inc();
        }
    }

    /// Records a finished request for the (bounded) `model` key.
    pub fn observe_request(&self, model: &str, r: &RequestRecord) {
        let status = match r.status {
            Some(s) => status_class(s),
            None => "none",
        };
        self.requests
            .with_label_values(&[model, status, r.outcome.as_str()])
            .inc();
        if let Some(u) = &r.usage {
            for (kind, n) in [
                ("prompt", u.prompt_tokens),
                ("completion", u.completion_tokens),
                ("reasoning", u.reasoning_tokens),
                ("cached", u.cached_tokens),
                ("cache_creation", u.cache_creation_tokens),
            ] {
                self.tokens.with_label_values(&[model, kind]).inc_by(n);
            }
        }
        if let Some(c) = &r.cost {
            self.cost_usd
                .with_label_values(&[model])
                .inc_by(c.usd.max(0.0));
            self.cost_diem
                .with_label_values(&[model])
                .inc_by(c.diem.max(0.0));
        }
        self.duration
            .with_label_values(&[model])
            .observe(r.latency_ms / 1000.0);
        if let Some(t) = r.ttfb_ms {
            self.ttfb.with_label_values(&[model]).observe(t / 1000.0);
        }
        if r.unscanned {
            self.unscanned_bodies.inc();
        }
        for reason in &r.retries {
            self.retries.with_label_values(&[reason]).inc();
        }
        if let Some(limit) = r.limited {
            let l = match limit {
                crate::admission::Limit::Requests => "requests",
                crate::admission::Limit::Tokens => "tokens",
                crate::admission::Limit::Queue => "queue",
            };
            self.rejections.with_label_values(&[l]).inc();
        }
        if r.queue_wait_ms > 0.0 || r.attempts > 0 {
            self.queue_wait
                .with_label_values(&[model])
                .observe(r.queue_wait_ms / 1000.0);
        }
    }

    /// Sets the admission gauges (called when metrics are scraped).
    pub fn observe_admission(&self, views: &[(String, crate::admission::GateView)]) {
        for (model, v) in views {
            self.queue_depth
                .with_label_values(&[model])
                .set(v.waiting as f64);
        }
    }

    pub fn set_upstream_up(&self, up: bool) {
        self.upstream_up.set(i64::from(up));
    }

    pub fn hub_dropped(&self) {
        self.hub_dropped.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
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

fn status_class(s: u16) -> &'static str {
    match s {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
