//! What the proxy records of one request: the [`RequestRecord`] it hands to the hub (see
//! [`crate::hub::HubEvent`]), and how the request ended.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::gateway::usage::{Cost, UpstreamError, Usage};

/// How a proxied request ended, from the gateway's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Upstream answered 2xx and the body completed.
    Ok,
    /// Upstream answered with a 4xx/5xx status.
    HttpError,
    /// A stream answered 200 but carried an in-band `error` chunk.
    InbandError,
    /// A stream ended without `data: [DONE]`.
    Truncated,
    /// The gateway could not connect to the upstream (or DNS failed).
    ConnectFailed,
    /// The upstream connection failed or timed out after connecting.
    UpstreamFailed,
    /// The client went away before the response completed.
    ClientAborted,
    /// The gateway refused the request itself (size limit, bad request).
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError => "http_error",
            Outcome::InbandError => "inband_error",
            Outcome::Truncated => "truncated",
            Outcome::ConnectFailed => "connect_failed",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::ClientAborted => "client_aborted",
            Outcome::Rejected => "rejected",
        }
    }

    /// Whether this outcome says the upstream is unhealthy (as opposed to a client problem).
    pub fn is_upstream_fault(self, status: Option<u16>) -> bool {
        match self {
            Outcome::ConnectFailed | Outcome::UpstreamFailed => true,
            Outcome::HttpError => status.is_some_and(|s| s >= 500),
            _ => false,
        }
    }
}

/// Where a request's cost figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// Venice's `cost` object.
    Upstream,
    /// Computed from the price table.
    Computed,
    /// No usage, or a model without a price.
    Unknown,
}

/// One proxied request, complete.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    #[serde(with = "crate::util::epoch_ms_serde")]
    pub started_at: SystemTime,
    pub method: String,
    /// Path below the gateway's `/api/v1`, e.g. `/chat/completions`.
    pub path: String,
    /// Model from the response, else from the request body.
    pub model: Option<String>,
    /// OpenCode's `x-session-id`.
    pub session_id: Option<String>,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub streamed: bool,
    pub usage: Option<Usage>,
    /// Filled in by the hub when the upstream sent none and the model has a price.
    pub cost: Option<Cost>,
    pub cost_source: CostSource,
    pub error: Option<UpstreamError>,
    pub latency_ms: f64,
    /// Time to the upstream's response header.
    pub ttfb_ms: Option<f64>,
    pub response_bytes: u64,
    /// Whether the gateway asked upstream for stream usage on the client's behalf.
    pub usage_requested: bool,
    /// The non-streamed body was too large to scan for usage.
    pub unscanned: bool,
    /// Upstream attempts (1 unless retried; 0 when refused before any).
    pub attempts: u32,
    /// Why each retry happened (`rate_limited`, `unavailable`, `connect`).
    pub retries: Vec<&'static str>,
    /// Time spent waiting for admission.
    pub queue_wait_ms: f64,
    /// The gateway's limit that refused the request, if any.
    pub limited: Option<crate::admission::Limit>,
}

/// Milliseconds as `f64`, for latency fields.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
