//! Per-request context carried through the proxy phases.
//!
//! Owns what one request accumulates on its way through the gateway — held request body,
//! upstream headers, body scanners, timings — and turning that into a [`RequestRecord`] at the
//! end. Only the unfinished SSE line and (bounded) non-streamed JSON are kept, never a stream.

use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use pingora::{Error, ErrorSource, ErrorType};

use crate::admission::retry::RetryReason;
use crate::admission::Refusal;
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::record::{millis, CostSource, Outcome, RequestRecord};
use crate::gateway::rewrite::prepare_chat_body;
use crate::gateway::sse::SseScanner;
use crate::gateway::usage::{self, BodyReport};

/// Longest `x-session-id` accepted; longer or non-printable ids are ignored.
const MAX_SESSION_ID: usize = 128;

/// How a response body is being read for usage.
#[derive(Debug, Default)]
pub enum BodyScan {
    /// Not scanned (binary, images, audio …).
    #[default]
    None,
    /// `text/event-stream`: incremental scan.
    Sse(SseScanner),
    /// JSON: a bounded copy, parsed at the end.
    Json(BytesMut),
    /// JSON larger than the scan bound: forwarded, not read.
    Overflow,
}

/// State of one request through the proxy.
#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    pub started_at: SystemTime,
    pub method: String,
    pub path: String,
    pub session_id: Option<String>,
    /// Hold the request body (chat requests) so it can be read and amended.
    pub hold_body: bool,
    pub held: BytesMut,
    pub request_model: Option<String>,
    pub usage_requested: bool,
    /// The gateway answered the request itself (local route or refusal).
    pub rejected: bool,
    pub connected: bool,
    pub status: Option<u16>,
    pub ttfb: Option<std::time::Duration>,
    pub scan: BodyScan,
    pub response_bytes: u64,
    /// The held chat body as sent upstream (replayed on retries).
    pub prepared: Option<Bytes>,
    /// Estimated tokens of the request (prompt estimate + max tokens).
    pub estimate: u32,
    /// Upstream attempts so far.
    pub attempts: u32,
    /// Why each retry happened.
    pub retries: Vec<RetryReason>,
    /// Wait before the next attempt, decided when the last one failed.
    pub retry_delay: Option<Duration>,
    /// Time spent waiting for admission, all attempts together.
    pub queue_wait: Duration,
    /// Queueing and retries must finish by then.
    pub deadline: tokio::time::Instant,
    /// The gateway's own refusal, if it refused.
    pub refusal: Option<Refusal>,
    /// Admission has been decided (it happens once, before the first attempt).
    pub admitted: bool,
    /// Timings for the metrics (see [`RequestCtx::overhead`]): gateway time before the first
    /// upstream attempt, admission wait excluded; when the upstream body ended; time spent
    /// scanning chunks; when the first streamed event arrived. All since `started`.
    pub pre_upstream: Option<Duration>,
    pub upstream_done: Option<Duration>,
    pub scan_time: Duration,
    pub first_event: Option<Duration>,
    /// Response headers held back to reach the hub with the finished request, and when they
    /// came (a JSON response ends right after its headers; see
    /// [`crate::hub::HubEvent::Completed`]).
    pub held_headers: Option<(Box<VeniceHeaders>, SystemTime)>,
}

impl RequestCtx {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_at: SystemTime::now(),
            method: String::new(),
            path: String::new(),
            session_id: None,
            hold_body: false,
            held: BytesMut::new(),
            request_model: None,
            usage_requested: false,
            rejected: false,
            connected: false,
            status: None,
            ttfb: None,
            scan: BodyScan::None,
            response_bytes: 0,
            prepared: None,
            estimate: 0,
            attempts: 0,
            retries: Vec::new(),
            retry_delay: None,
            queue_wait: Duration::ZERO,
            deadline: tokio::time::Instant::now(),
            refusal: None,
            admitted: false,
            pre_upstream: None,
            upstream_done: None,
            scan_time: Duration::ZERO,
            first_event: None,
            held_headers: None,
        }
    }

    /// Prepares the whole held chat body for upstream (see [`prepare_chat_body`]), keeps it for
    /// retries and takes what it tells about the request; returns the bytes to send.
    pub fn prepare(&mut self, body: Bytes) -> Bytes {
        let (out, info) = prepare_chat_body(body);
        if info.model.is_some() {
            self.request_model = info.model;
        }
        self.usage_requested = info.usage_requested;
        self.estimate = info.estimate;
        self.prepared = Some(out.clone());
        out
    }

    /// Accepts an `x-session-id` value if it is a sane id.
    pub fn set_session_id(&mut self, raw: Option<&http::HeaderValue>) {
        self.session_id = raw
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_SESSION_ID)
            .filter(|s| s.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
    }

    /// Picks the body scanner from the response content type.
    pub fn start_scan(&mut self, content_type: Option<&str>) {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        self.scan = if ct.starts_with("text/event-stream") {
            BodyScan::Sse(SseScanner::new())
        } else if ct.starts_with("application/json") || ct.is_empty() {
            BodyScan::Json(BytesMut::new())
        } else {
            BodyScan::None
        };
    }

    /// Whether the response being scanned is a JSON body (it ends right after its headers,
    /// unlike an event stream).
    pub fn scans_json(&self) -> bool {
        matches!(self.scan, BodyScan::Json(_))
    }

    /// An upstream attempt starts: the first one ends the gateway's time before upstream.
    pub fn mark_upstream_start(&mut self) {
        if self.pre_upstream.is_none() {
            let before = self.started.elapsed().saturating_sub(self.queue_wait);
            self.pre_upstream = Some(before);
        }
    }

    /// The gateway's own time on this request, for `sidepanel_gateway_overhead_seconds`:
    /// before the first upstream attempt (admission wait excluded), scanning response chunks,
    /// and after the upstream's last byte. `None` when no upstream attempt was made.
    pub fn overhead(&self) -> Option<Duration> {
        let before = self.pre_upstream?;
        let after = match self.upstream_done {
            Some(done) => self.started.elapsed().saturating_sub(done),
            None => Duration::ZERO,
        };
        Some(before + self.scan_time + after)
    }

    /// Scans one response chunk without holding it.
    pub fn scan_chunk(&mut self, chunk: &Bytes, max_json: usize) {
        let scan_started = Instant::now();
        self.scan_chunk_inner(chunk, max_json);
        if self.first_event.is_none() {
            if let BodyScan::Sse(s) = &self.scan {
                if s.events() > 0 {
                    self.first_event = Some(self.started.elapsed());
                }
            }
        }
        self.scan_time += scan_started.elapsed();
    }

    fn scan_chunk_inner(&mut self, chunk: &Bytes, max_json: usize) {
        self.response_bytes += chunk.len() as u64;
        match &mut self.scan {
            BodyScan::Sse(s) => s.feed(chunk),
            BodyScan::Json(buf) if buf.len() + chunk.len() <= max_json => {
                buf.extend_from_slice(chunk)
            }
            BodyScan::Json(_) => self.scan = BodyScan::Overflow,
            BodyScan::None | BodyScan::Overflow => {}
        }
    }

    /// Builds the record of this request; `error` is what ended it, if anything.
    pub fn finish(&mut self, error: Option<&Error>) -> RequestRecord {
        let mut streamed = false;
        let mut saw_done = true;
        let report: BodyReport = match std::mem::take(&mut self.scan) {
            BodyScan::Sse(mut s) => {
                s.finish();
                streamed = true;
                saw_done = s.saw_done();
                s.report().clone()
            }
            BodyScan::Json(buf) if error.is_none() => usage::parse_json(&buf),
            _ => BodyReport::default(),
        };
        let unscanned = matches!(self.scan, BodyScan::Overflow);
        let outcome = self.outcome(error, streamed, saw_done, &report);
        let mut err = report.error.clone();
        if err.is_none() && outcome != Outcome::Ok {
            if let Some(e) = error {
                err = Some(usage::UpstreamError {
                    message: e.etype().as_str().to_owned(),
                    code: None,
                });
            }
        }
        RequestRecord {
            started_at: self.started_at,
            method: std::mem::take(&mut self.method),
            path: std::mem::take(&mut self.path),
            model: report.model.clone().or_else(|| self.request_model.clone()),
            session_id: self.session_id.take(),
            status: self.status,
            outcome,
            streamed,
            usage: report.usage,
            cost: report.cost,
            cost_source: CostSource::Unknown,
            error: err,
            latency_ms: millis(self.started.elapsed()),
            ttfb_ms: self.ttfb.map(millis),
            response_bytes: self.response_bytes,
            usage_requested: self.usage_requested,
            unscanned,
            attempts: self.attempts,
            retries: self.retries.iter().map(|r| r.as_str()).collect(),
            queue_wait_ms: millis(self.queue_wait),
            limited: self.refusal.map(|r| r.limit),
        }
    }

    fn outcome(
        &self,
        error: Option<&Error>,
        streamed: bool,
        saw_done: bool,
        report: &BodyReport,
    ) -> Outcome {
        if self.rejected || self.refusal.is_some() {
            return Outcome::Rejected;
        }
        match error {
            Some(e) if self.status.is_none() => match (e.esource(), e.etype()) {
                (ErrorSource::Downstream, _) => Outcome::ClientAborted,
                (ErrorSource::Upstream, t) if !self.connected || is_connect_error(t) => {
                    Outcome::ConnectFailed
                }
                (ErrorSource::Internal | ErrorSource::Unset, _) if !self.connected => {
                    Outcome::ConnectFailed
                }
                _ => Outcome::UpstreamFailed,
            },
            Some(e) => match e.esource() {
                ErrorSource::Downstream => Outcome::ClientAborted,
                _ if streamed => Outcome::Truncated,
                _ => Outcome::UpstreamFailed,
            },
            None => match self.status {
                Some(s) if s >= 400 => Outcome::HttpError,
                _ if report.error.is_some() => Outcome::InbandError,
                _ if streamed && !saw_done => Outcome::Truncated,
                _ => Outcome::Ok,
            },
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}

fn is_connect_error(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::ConnectProxyFailure
    )
}
