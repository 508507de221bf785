//! Metrics of proxied requests: counts, latency histograms, tokens, cost, rate-limit headroom
//! read from Venice's headers, retries and the gateway's own refusals.
//!
//! Owns [`RequestMetrics`]: the hub feeds it each response's headers and each finished
//! [`RequestRecord`]; the proxy feeds it the two timings only it can measure (time to first
//! token, gateway overhead). Model labels arrive already folded by [`super::labels`].

use std::time::Duration;

use prometheus::{CounterVec, Histogram, HistogramVec, IntCounter, IntCounterVec, Registry};

use super::labels::{self, REJECTION_LIMITS, RETRY_REASONS};
use super::{counter, counter_vec, float_counter_vec, gauge_vec, histogram_vec};
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::{CostSource, Outcome, RequestRecord};

/// Request-path metrics (see `docs/METRICS.md`, "Requests", "Usage and cost", "Rate limits").
pub struct RequestMetrics {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    cost_usd: CounterVec,
    cost_diem: CounterVec,
    cost_source: IntCounterVec,
    response_bytes: IntCounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    ttft: HistogramVec,
    overhead: [Histogram; 2],
    ratelimit_limit: prometheus::GaugeVec,
    ratelimit_remaining: prometheus::GaugeVec,
    ratelimit_reset: prometheus::GaugeVec,
    malformed_headers: IntCounterVec,
    unscanned_bodies: IntCounter,
    retries: IntCounterVec,
    rejections: IntCounterVec,
    queue_wait: HistogramVec,
}

impl RequestMetrics {
    pub fn new(r: &Registry) -> Self {
        let overhead = histogram_vec(
            r,
            "gateway_overhead_seconds",
            "Time the gateway itself spent on a proxied request: before the first upstream \
             attempt (admission wait excluded), scanning response chunks, and after the \
             upstream's last byte",
            &["streamed"],
        );
        let retries = counter_vec(
            r,
            "retries_total",
            "Upstream attempts retried by the gateway, by reason",
            &["reason"],
        );
        let rejections = counter_vec(
            r,
            "rejections_total",
            "Requests the gateway refused itself, by the limit that refused them",
            &["limit"],
        );
        for reason in RETRY_REASONS {
            retries.with_label_values(&[reason]);
        }
        for limit in REJECTION_LIMITS {
            rejections.with_label_values(&[limit]);
        }
        let cost_source = counter_vec(
            r,
            "priced_requests_total",
            "Finished requests by where their cost came from (upstream, computed, unknown)",
            &["source"],
        );
        for source in ["upstream", "computed", "unknown"] {
            cost_source.with_label_values(&[source]);
        }
        Self {
            requests: counter_vec(
                r,
                "requests_total",
                "Proxied requests by model, endpoint, status class and outcome",
                &["model", "endpoint", "status", "outcome"],
            ),
            tokens: counter_vec(
                r,
                "tokens_total",
                "Tokens by model and kind (prompt, completion, reasoning, cached, cache_creation)",
                &["model", "kind"],
            ),
            cost_usd: float_counter_vec(r, "cost_usd_total", "Cost in USD by model"),
            cost_diem: float_counter_vec(r, "cost_diem_total", "Cost in Diem by model"),
            cost_source,
            response_bytes: counter_vec(
                r,
                "response_bytes_total",
                "Response body bytes relayed to clients, by model",
                &["model"],
            ),
            duration: histogram_vec(
                r,
                "request_duration_seconds",
                "Time from request arrival to the last response byte",
                &["model"],
            ),
            ttfb: histogram_vec(
                r,
                "upstream_ttfb_seconds",
                "Time from request arrival to the upstream's response header",
                &["model"],
            ),
            ttft: histogram_vec(
                r,
                "time_to_first_token_seconds",
                "Streamed responses: time from request arrival to the first streamed event",
                &["model"],
            ),
            overhead: [
                overhead.with_label_values(&["false"]),
                overhead.with_label_values(&["true"]),
            ],
            ratelimit_limit: gauge_vec(
                r,
                "ratelimit_limit",
                "Venice rate limit per window, by model and kind (requests, tokens)",
                &["model", "kind"],
            ),
            ratelimit_remaining: gauge_vec(
                r,
                "ratelimit_remaining",
                "Remaining in the current Venice rate-limit window, by model and kind",
                &["model", "kind"],
            ),
            ratelimit_reset: gauge_vec(
                r,
                "ratelimit_reset_timestamp_seconds",
                "Unix time at which the Venice rate-limit window resets, by model and kind",
                &["model", "kind"],
            ),
            malformed_headers: counter_vec(
                r,
                "upstream_malformed_headers_total",
                "Upstream headers present but unparseable, by header name",
                &["header"],
            ),
            unscanned_bodies: counter(
                r,
                "unscanned_bodies_total",
                "Non-streamed responses too large to scan for usage",
            ),
            retries,
            rejections,
            queue_wait: histogram_vec(
                r,
                "queue_wait_seconds",
                "Time admitted requests waited for the gateway's rate-limit queue",
                &["model"],
            ),
        }
    }

    /// Rate-limit headroom from one response's headers, for the (folded) `model` label.
    pub fn observe_headers(&self, model: &str, h: &VeniceHeaders) {
        for (kind, w) in [("requests", &h.requests), ("tokens", &h.tokens)] {
            let labels = [model, kind];
            if let Some(v) = w.limit {
                self.ratelimit_limit
                    .with_label_values(&labels)
                    .set(v as f64);
            }
            if let Some(v) = w.remaining {
                let remaining = &self.ratelimit_remaining;
                remaining.with_label_values(&labels).set(v as f64);
            }
            if let Some(t) = w.reset_at {
                let secs = crate::util::epoch_ms(t) as f64 / 1000.0;
                self.ratelimit_reset.with_label_values(&labels).set(secs);
            }
        }
        for name in &h.malformed {
            self.malformed_headers.with_label_values(&[name]).inc();
        }
    }

    /// One finished request, for the (folded) `model` label.
    pub fn observe_request(&self, model: &str, r: &RequestRecord) {
        let endpoint = labels::endpoint(&r.path);
        let status = labels::status_class(r.status);
        self.requests
            .with_label_values(&[model, endpoint, status, r.outcome.as_str()])
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
            let usd = self.cost_usd.with_label_values(&[model]);
            usd.inc_by(finite(c.usd));
            let diem = self.cost_diem.with_label_values(&[model]);
            diem.inc_by(finite(c.diem));
        }
        let source = match r.cost_source {
            CostSource::Upstream => "upstream",
            CostSource::Computed => "computed",
            CostSource::Unknown => "unknown",
        };
        self.cost_source.with_label_values(&[source]).inc();
        let bytes = self.response_bytes.with_label_values(&[model]);
        bytes.inc_by(r.response_bytes);
        if r.outcome != Outcome::Rejected {
            let duration = self.duration.with_label_values(&[model]);
            duration.observe(r.latency_ms / 1000.0);
        }
        if let Some(t) = r.ttfb_ms {
            self.ttfb.with_label_values(&[model]).observe(t / 1000.0);
        }
        if r.unscanned {
            self.unscanned_bodies.inc();
        }
        for reason in &r.retries {
            let reason = labels::bounded(reason, RETRY_REASONS);
            self.retries.with_label_values(&[reason]).inc();
        }
        if let Some(limit) = rejection(r) {
            self.rejections.with_label_values(&[limit]).inc();
        }
        if endpoint == "chat_completions" && r.attempts > 0 && r.limited.is_none() {
            let wait = self.queue_wait.with_label_values(&[model]);
            wait.observe(r.queue_wait_ms / 1000.0);
        }
    }

    /// The proxy's own timings of one request: time to first streamed event and overhead.
    pub fn observe_timing(
        &self,
        model: &str,
        streamed: bool,
        ttft: Option<Duration>,
        overhead: Option<Duration>,
    ) {
        if let (true, Some(t)) = (streamed, ttft) {
            let ttft = self.ttft.with_label_values(&[model]);
            ttft.observe(t.as_secs_f64());
        }
        if let Some(o) = overhead {
            self.overhead[usize::from(streamed)].observe(o.as_secs_f64());
        }
    }
}

/// The gateway limit that refused `r`, if it was refused.
fn rejection(r: &RequestRecord) -> Option<&'static str> {
    use crate::admission::Limit;
    match (r.limited, r.outcome, r.status) {
        (Some(Limit::Requests), ..) => Some("requests"),
        (Some(Limit::Tokens), ..) => Some("tokens"),
        (Some(Limit::Queue), ..) => Some("queue"),
        (None, Outcome::Rejected, Some(402)) => Some("budget_floor"),
        (None, Outcome::Rejected, Some(413)) => Some("body_size"),
        _ => None,
    }
}

/// Counters only go up: negative or non-finite costs count as zero.
fn finite(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}
