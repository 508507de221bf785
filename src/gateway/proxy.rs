//! The pingora `ProxyHttp` implementation: thin phases that delegate to the other modules.
//!
//! Phase by phase: `request_filter` answers local routes and refuses oversized bodies;
//! `upstream_peer` resolves Venice asynchronously; `upstream_request_filter` rewrites path, host
//! and key; `request_body_filter` holds a chat body and amends it (include_usage);
//! `upstream_response_filter` reads Venice's headers; `upstream_response_body_filter` scans each
//! chunk for usage as it passes; `logging` hands one record to the hub. Nothing here blocks or
//! waits on the hub.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::admission::retry::{self, RetryReason};
use crate::admission::{Admission, Refusal, RefusalKind};
use crate::config::LimitsConfig;
use crate::gateway::ctx::RequestCtx;
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::peek;
use crate::gateway::rewrite::{estimate_tokens, prepare_chat_body};
use crate::gateway::routes::{self, error_body, is_chat, is_proxied, ERROR_HEADER};
use crate::gateway::upstream::Upstream;
use crate::hub::{HubEvent, HubHandle};
use crate::metrics::Metrics;

/// The gateway service.
pub struct Gateway {
    upstream: Arc<Upstream>,
    hub: HubHandle,
    metrics: Arc<Metrics>,
    limits: LimitsConfig,
    admission: Arc<Admission>,
    /// The internal WebSocket listener `/ws` is proxied to.
    ws_addr: SocketAddr,
    /// OpenCode plugin events (`/events`).
    ingest: Arc<crate::ingest::Ingest>,
}

impl Gateway {
    pub fn new(
        upstream: Arc<Upstream>,
        hub: HubHandle,
        metrics: Arc<Metrics>,
        limits: LimitsConfig,
        admission: Arc<Admission>,
        ws_addr: SocketAddr,
        ingest: Arc<crate::ingest::Ingest>,
    ) -> Self {
        Self {
            ingest,
            upstream,
            hub,
            metrics,
            limits,
            admission,
            ws_addr,
        }
    }

    /// Reads the first chunk of a chat body (never more: pingora replays what was read from its
    /// 64 KiB retry buffer, which must not overflow) and takes model and max tokens from it.
    async fn peek_chat(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let downstream = session.as_downstream_mut();
        downstream.enable_retry_buffering();
        if downstream.is_body_done() {
            return Ok(());
        }
        let Some(first) = downstream.read_request_body().await? else {
            return Ok(());
        };
        let fields = peek::top_level_fields(&first);
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if let Some(peek::Scalar::Str(model)) = field("model") {
            ctx.request_model = Some(model.clone());
        }
        let max_tokens = match field("max_completion_tokens").or_else(|| field("max_tokens")) {
            Some(peek::Scalar::Num(n)) if *n >= 0.0 => Some(*n as u64),
            _ => None,
        };
        let length = declared_length(session.req_header()).unwrap_or(first.len());
        ctx.estimate = estimate_tokens(length, max_tokens);
        Ok(())
    }

    /// Waits for admission of the chat request in `ctx`, or refuses it with the gateway's 429.
    async fn admit(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        let Some(model) = ctx.request_model.clone() else {
            return Ok(());
        };
        ctx.admitted = true;
        let body_done = session.as_downstream_mut().is_body_done();
        let admitted = tokio::select! {
            r = self.admission.admit(&model, ctx.estimate, ctx.deadline) => r,
            // Only an idle connection can be watched: a body still arriving must not be read.
            _ = client_gone(session), if body_done => {
                return Err(Error::new_down(ErrorType::ConnectionClosed));
            }
        };
        match admitted {
            Ok(waited) => {
                ctx.queue_wait += waited;
                Ok(())
            }
            Err(refusal) => {
                ctx.refusal = Some(refusal);
                Error::e_explain(
                    ErrorType::HTTPStatus(429),
                    "refused by the gateway's limits",
                )
            }
        }
    }

    /// Decides whether a failed attempt is retried; sets the delay before the next one.
    fn plan_retry(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        reason: RetryReason,
        headers: Option<&VeniceHeaders>,
    ) -> bool {
        let config = self.admission.config();
        if ctx.ws {
            return false;
        }
        let replayable = !session.as_downstream().retry_buffer_truncated();
        if !config.enabled || !replayable || ctx.attempts >= config.max_attempts {
            return false;
        }
        let wait = retry::delay(config, ctx.attempts, headers);
        if tokio::time::Instant::now() + wait > ctx.deadline {
            return false;
        }
        ctx.retry_delay = Some(wait);
        ctx.retries.push(reason);
        tracing::info!(
            attempt = ctx.attempts,
            reason = reason.as_str(),
            wait_ms = wait.as_millis() as u64,
            "retrying upstream"
        );
        true
    }

    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        message: &str,
        code: &str,
    ) -> Result<bool> {
        ctx.rejected = true;
        ctx.status = Some(status);
        routes::write_error(session, status, code, message).await?;
        Ok(true)
    }
}

fn declared_length(req: &RequestHeader) -> Option<usize> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let path = req.uri.path().to_owned();
        if path == WS_PATH {
            // Relayed as is to the WebSocket server, which checks Origin, Host and token.
            ctx.ws = true;
            return Ok(false);
        }
        if path == crate::ingest::EVENTS_PATH {
            crate::ingest::handle(session, &self.ingest).await?;
            return Ok(true);
        }
        if !is_proxied(&path) {
            routes::serve(session, &self.hub, &self.metrics, &self.admission).await?;
            return Ok(true);
        }
        ctx.method = req.method.to_string();
        ctx.path = path
            .strip_prefix(crate::gateway::upstream::CLIENT_PREFIX)
            .unwrap_or(&path)
            .to_owned();
        ctx.set_session_id(req.headers.get("x-session-id"));
        ctx.deadline = tokio::time::Instant::now() + self.admission.config().max_wait;
        ctx.hold_body = req.method == http::Method::POST && is_chat(&path);
        let max = self.limits.max_request_body_bytes;
        if ctx.hold_body && declared_length(req).is_some_and(|n| n > max) {
            let msg = format!("request body larger than limits.max_request_body_bytes ({max})");
            return self.refuse(session, ctx, 413, &msg, "body_too_large").await;
        }
        if req.method == http::Method::POST {
            let budget = self.admission.config().budget;
            if let Some((total, floor)) = self.hub.with_state(|s| budget.below_floor(&s.balance)) {
                let msg = format!(
                    "balance {total:.2} is below admission.budget.floor_usd ({floor:.2}); \
                     new requests are refused until it recovers"
                );
                return self.refuse(session, ctx, 402, &msg, "budget_floor").await;
            }
        }
        if ctx.hold_body {
            self.peek_chat(session, ctx).await?;
            if ctx.request_model.is_some() {
                self.admit(session, ctx).await?;
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        if ctx.ws {
            let mut peer = HttpPeer::new(self.ws_addr, false, String::new());
            // A WebSocket may stay quiet for long; the server pings and closes dead clients.
            peer.options.read_timeout = None;
            return Ok(Box::new(peer));
        }
        ctx.attempts += 1;
        ctx.mark_upstream_start();
        if let Some(wait) = ctx.retry_delay.take() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = client_gone(session) => {
                    return Error::e_explain(ErrorType::ConnectionClosed, "client left during retry backoff")
                        .map_err(|mut e| { e.esource = ErrorSource::Downstream; e });
                }
            }
        }
        ctx.connected = false;
        self.upstream.peer().await
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.retry_delay.is_some() {
            // Planned by `plan_retry` (the body is replayable, nothing reached the client).
            e.set_retry(true);
        } else if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            // pingora's default: retry a failure on a reused (possibly stale) connection.
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let retry = self.plan_retry(session, ctx, RetryReason::Connect, None);
        e.set_retry(retry);
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.connected = true;
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.ws {
            return Ok(());
        }
        self.upstream.rewrite_request(req)?;
        if ctx.hold_body {
            // The body may change length once amended: no Content-Length. HTTP/1.1 needs chunked
            // framing; h2 frames bodies itself and rejects the header (pingora strips
            // connection headers before this filter, not after).
            req.remove_header(&http::header::CONTENT_LENGTH);
            if req.version != http::Version::HTTP_2 {
                req.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !ctx.hold_body {
            return Ok(());
        }
        if let Some(chunk) = body.take() {
            if ctx.prepared.is_some() {
                // A retry: pingora replays what it read; the prepared body is sent instead.
            } else if ctx.held.len() + chunk.len() > self.limits.max_request_body_bytes {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body larger than limits.max_request_body_bytes",
                );
            } else {
                ctx.held.extend_from_slice(&chunk);
            }
        }
        if !end_of_stream {
            // An empty chunk is not written; `None` would end the upstream body early.
            *body = Some(Bytes::new());
            return Ok(());
        }
        let out = match &ctx.prepared {
            Some(prepared) => prepared.clone(),
            None => {
                let (out, info) = prepare_chat_body(std::mem::take(&mut ctx.held).freeze());
                ctx.request_model = info.model;
                ctx.usage_requested = info.usage_requested;
                ctx.estimate = info.estimate;
                ctx.prepared = Some(out.clone());
                out
            }
        };
        if !ctx.admitted && ctx.request_model.is_some() {
            // The model was not in the first body chunk: admit now, late but before the body.
            self.admit(session, ctx).await?;
        }
        *body = Some(out);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if ctx.ws {
            return Ok(());
        }
        ctx.ttfb = Some(ctx.started.elapsed());
        let status = resp.status.as_u16();
        ctx.status = Some(status);
        let now = SystemTime::now();
        let headers = VeniceHeaders::parse(&resp.headers, now);
        let model = ctx.request_model.as_deref().or(headers.model_id.as_deref());
        if let Some(model) = model {
            self.admission.observe(model, &headers);
        }
        let retry = RetryReason::for_status(status)
            .is_some_and(|reason| self.plan_retry(session, ctx, reason, Some(&headers)));
        self.hub.send(HubEvent::Headers {
            model: ctx.request_model.clone(),
            headers: Box::new(headers),
            at: now,
        });
        if retry {
            let mut e = Error::explain(ErrorType::HTTPStatus(status), "upstream asked to retry");
            e.set_retry(true);
            return Err(e);
        }
        resp.insert_header(ATTEMPTS_HEADER, ctx.attempts)?;
        let ct = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        ctx.start_scan(ct);
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            ctx.scan_chunk(chunk, self.limits.max_scan_body_bytes);
        }
        if end_of_stream {
            ctx.upstream_done = Some(ctx.started.elapsed());
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if session.response_written().is_none() {
            if let (Some(refusal), Some(model)) = (ctx.refusal, ctx.request_model.as_deref()) {
                let written = write_refusal(session, &refusal, model).await;
                if let Err(err) = written {
                    tracing::debug!(error = %err, "could not write the refusal");
                }
                return FailToProxy {
                    error_code: 429,
                    can_reuse_downstream: false,
                };
            }
        }
        let (code, slug, message) = classify(e);
        if code == 0 || session.response_written().is_some() {
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        let body = error_body(&message, slug);
        let written = async {
            let mut resp = ResponseHeader::build(code, Some(4))?;
            resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
            resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
            resp.insert_header(ERROR_HEADER, slug)?;
            resp.insert_header(ATTEMPTS_HEADER, ctx.attempts)?;
            session.write_response_header(Box::new(resp), false).await?;
            session.write_response_body(Some(body), true).await
        }
        .await;
        if let Err(err) = written {
            tracing::debug!(error = %err, "could not write the error response");
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.method.is_empty() {
            return; // a local route
        }
        let record = ctx.finish(e);
        let (ttft, overhead) = (ctx.first_event, ctx.overhead());
        let model = record.model.as_deref();
        self.metrics
            .observe_timing(model, record.streamed, ttft, overhead);
        if let (Some(model), Some(usage)) = (&record.model, &record.usage) {
            if ctx.admitted {
                self.admission
                    .reconcile(model, ctx.estimate, usage.total_tokens);
            }
        }
        tracing::info!(
            method = %record.method,
            path = %record.path,
            status = record.status.unwrap_or(0),
            outcome = record.outcome.as_str(),
            model = record.model.as_deref().unwrap_or("-"),
            latency_ms = record.latency_ms as u64,
            "proxied"
        );
        self.hub.send(HubEvent::Request(Box::new(record)));
    }
}

/// The public path of the WebSocket JSON-RPC endpoint.
pub const WS_PATH: &str = "/ws";

/// Header on every proxied response: how many upstream attempts it took.
pub const ATTEMPTS_HEADER: &str = "x-sidepanel-attempts";
/// Header on the gateway's own 429: the limit is the gateway's, not Venice's.
pub const LIMITED_HEADER: &str = "x-sidepanel-limited";

/// Resolves when the client has closed its connection (never otherwise).
async fn client_gone(session: &mut Session) {
    if session
        .as_downstream_mut()
        .read_body_or_idle(true)
        .await
        .is_err()
    {
        return;
    }
    std::future::pending::<()>().await
}

/// The gateway's own 429, in the OpenAI error shape, naming the limit.
async fn write_refusal(session: &mut Session, refusal: &Refusal, model: &str) -> Result<()> {
    let why = match refusal.kind {
        RefusalKind::QueueFull => "the wait queue is full",
        RefusalKind::WaitExceeded => "the wait would exceed admission.max_wait",
    };
    let message = format!(
        "sidepanel: gateway rate limit ({} for {model}): {why}; retry after {} s",
        refusal.limit.describe(),
        refusal.retry_after.as_secs()
    );
    let body = Bytes::from(
        serde_json::json!({"error": {
            "message": message,
            "type": "rate_limit_error",
            "code": "gateway_rate_limited",
            "param": refusal.limit,
        }})
        .to_string(),
    );
    let mut resp = ResponseHeader::build(429, Some(6))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::RETRY_AFTER, refusal.retry_after.as_secs())?;
    resp.insert_header(LIMITED_HEADER, "gateway")?;
    resp.insert_header(ERROR_HEADER, "gateway_rate_limited")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Status, error slug and message for a failure before the response started.
fn classify(e: &Error) -> (u16, &'static str, String) {
    match (e.etype(), e.esource()) {
        (ErrorType::HTTPStatus(413), _) => (
            413,
            "body_too_large",
            "request body larger than limits.max_request_body_bytes".into(),
        ),
        (ErrorType::HTTPStatus(c), _) => (*c, "gateway", format!("HTTP {c}")),
        (ErrorType::ConnectTimedout, _) => (
            504,
            "upstream_connect_timeout",
            "timed out connecting to the upstream".into(),
        ),
        (ErrorType::ReadTimedout | ErrorType::WriteTimedout, ErrorSource::Upstream) => (
            504,
            "upstream_timeout",
            "the upstream stopped answering".into(),
        ),
        (_, ErrorSource::Upstream) => (
            502,
            "upstream_unreachable",
            format!("cannot reach the upstream: {}", e.etype().as_str()),
        ),
        (
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
        ) => (0, "client_gone", String::new()),
        (_, ErrorSource::Downstream) => (400, "bad_request", "malformed request".into()),
        _ => (500, "internal", "internal gateway error".into()),
    }
}
