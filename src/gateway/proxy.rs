//! The pingora `ProxyHttp` implementation: thin phases that delegate to the other modules.
//!
//! Phase by phase: `request_filter` answers local routes, refuses oversized bodies and waits for
//! admission ([`super::admit`]); `upstream_peer` sleeps a planned retry delay and resolves Venice
//! asynchronously; `upstream_request_filter` rewrites path, host and key; `request_body_filter`
//! holds a chat body and amends it (include_usage); `upstream_response_filter` reads Venice's
//! headers and turns a 429/503 into a retry; `upstream_response_body_filter` scans each chunk for
//! usage as it passes; `fail_to_proxy` writes the gateway's own error ([`super::refuse`]);
//! `logging` hands one record to the hub. Nothing here blocks or waits on the hub.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::admission::retry::RetryReason;
use crate::admission::Admission;
use crate::config::LimitsConfig;
use crate::gateway::ctx::RequestCtx;
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::routes::{self, is_chat, is_proxied};
use crate::gateway::upstream::Upstream;
use crate::gateway::{admit, refuse, upgrade};
use crate::hub::{HubEvent, HubHandle};
use crate::metrics::Metrics;
use crate::ws::WsServer;

/// The gateway service.
pub struct Gateway {
    upstream: Arc<Upstream>,
    hub: HubHandle,
    metrics: Arc<Metrics>,
    limits: LimitsConfig,
    admission: Arc<Admission>,
    /// The WebSocket server `/ws` connections are handed to once upgraded.
    ws: Arc<WsServer>,
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
        ws: Arc<WsServer>,
        ingest: Arc<crate::ingest::Ingest>,
    ) -> Self {
        Self {
            ingest,
            upstream,
            hub,
            metrics,
            limits,
            admission,
            ws,
        }
    }

    /// Sends a response's headers to the hub now.
    fn send_headers(&self, ctx: &RequestCtx, headers: Box<VeniceHeaders>, at: SystemTime) {
        self.hub.send(HubEvent::Headers {
            model: ctx.request_model.clone(),
            headers,
            at,
        });
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(&self, session: &mut Session, _: &mut RequestCtx) -> Result<()> {
        // pingora keeps an idle HTTP/1.1 keep-alive connection forever; close it after a while
        // (set per request: reading a request resets it), as nginx does.
        session.set_keepalive(Some(KEEPALIVE_IDLE_SECS));
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        if refuse::head_too_large(req) {
            let msg = "request headers larger than 64 KiB";
            routes::write_error(session, 431, "headers_too_large", msg).await?;
            return Ok(true);
        }
        let path = req.uri.path().to_owned();
        if path == WS_PATH {
            // The WebSocket server checks Origin, Host and token, then takes the connection.
            upgrade::websocket(session, &self.ws).await?;
            return Ok(true);
        }
        if path == crate::ingest::EVENTS_PATH {
            crate::ingest::handle(session, &self.ingest).await?;
            return Ok(true);
        }
        if !is_proxied(&path) {
            routes::serve(
                session,
                &self.hub,
                &self.metrics,
                &self.admission,
                self.ingest.site(),
            )
            .await?;
            return Ok(true);
        }
        ctx.method = req.method.to_string();
        ctx.path = path
            .strip_prefix(crate::gateway::upstream::CLIENT_PREFIX)
            .unwrap_or(&path)
            .to_owned();
        ctx.set_session_id(req.headers.get("x-session-id"));
        // A foreign `Host` (DNS rebinding) or `Origin` (a cross-site form post) must not spend
        // the user's Venice key.
        if let Err(denied) = self.ingest.site().hosts().check(&req.headers) {
            return refuse::refuse(session, ctx, 403, denied.message(), "forbidden_host").await;
        }
        ctx.deadline = tokio::time::Instant::now() + self.admission.config().max_wait;
        ctx.hold_body = req.method == http::Method::POST && is_chat(&path);
        let max = self.limits.max_request_body_bytes;
        if ctx.hold_body && admit::declared_length(req).is_some_and(|n| n > max) {
            let msg = format!("request body larger than limits.max_request_body_bytes ({max})");
            return refuse::refuse(session, ctx, 413, &msg, "body_too_large").await;
        }
        let budget = self.admission.config().budget;
        // Without a floor there is nothing to compare: no read of the hub's state per request.
        if req.method == http::Method::POST && budget.floor_usd.is_some() {
            if let Some((total, floor)) = self.hub.with_state(|s| budget.below_floor(&s.balance)) {
                let msg = format!(
                    "balance {total:.2} is below admission.budget.floor_usd ({floor:.2}); \
                     new requests are refused until it recovers"
                );
                return refuse::refuse(session, ctx, 402, &msg, "budget_floor").await;
            }
        }
        if ctx.hold_body {
            admit::peek_chat(session, ctx).await?;
            if ctx.request_model.is_some() {
                admit::admit(&self.admission, session, ctx).await?;
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        ctx.mark_upstream_start();
        if let Some(wait) = ctx.retry_delay.take() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = admit::client_gone(session) => {
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
            // Planned by `admit::plan_retry` (the body is replayable, nothing reached the client).
            e.set_retry(true);
        } else if session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else if !session.req_header().method.is_idempotent() {
            // Never replay a request the upstream may have processed, except what HTTP/2 says
            // it did not: pingora marks a GOAWAY(NO_ERROR), a REFUSED_STREAM and an h2
            // downgrade retryable (RFC 9113 §8.7), and a chat must not fail on those.
            e.set_retry(never_processed(&e));
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
        let retry = admit::plan_retry(&self.admission, session, ctx, RetryReason::Connect, None);
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
        self.upstream.rewrite_request(req)?;
        if ctx.hold_body {
            // The body may change length once amended. Prepared already (it came whole): its
            // exact length. Else no Content-Length: HTTP/1.1 needs chunked framing; h2 frames
            // bodies itself and rejects the header (pingora strips connection headers before
            // this filter, not after).
            req.remove_header(&http::header::CONTENT_LENGTH);
            req.remove_header(&http::header::TRANSFER_ENCODING);
            if req.version != http::Version::HTTP_2 {
                match &ctx.prepared {
                    Some(body) => req.insert_header(http::header::CONTENT_LENGTH, body.len())?,
                    None => req.insert_header(http::header::TRANSFER_ENCODING, "chunked")?,
                }
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
                let held = std::mem::take(&mut ctx.held).freeze();
                ctx.prepare(held)
            }
        };
        if !ctx.admitted && ctx.request_model.is_some() {
            // The model was not in the first body chunk: admit now, late but before the body.
            admit::admit(&self.admission, session, ctx).await?;
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
        ctx.ttfb = Some(ctx.started.elapsed());
        let status = resp.status.as_u16();
        ctx.status = Some(status);
        let now = SystemTime::now();
        let headers = VeniceHeaders::parse(&resp.headers, now);
        let model = ctx.request_model.as_deref().or(headers.model_id.as_deref());
        if let Some(model) = model {
            self.admission.observe(model, &headers);
        }
        let retry = RetryReason::for_status(status).is_some_and(|reason| {
            admit::plan_retry(&self.admission, session, ctx, reason, Some(&headers))
        });
        let headers = Box::new(headers);
        if retry {
            // This attempt's body is dropped: its headers are news now.
            self.send_headers(ctx, headers, now);
            let mut e = Error::explain(ErrorType::HTTPStatus(status), "upstream asked to retry");
            e.set_retry(true);
            return Err(e);
        }
        let ct = resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        ctx.start_scan(ct);
        if ctx.scans_json() {
            // A JSON body follows at once: the headers travel with the finished request
            // (an earlier attempt's, if any, go now).
            if let Some((earlier, at)) = ctx.held_headers.replace((headers, now)) {
                self.send_headers(ctx, earlier, at);
            }
        } else {
            // A stream's headers are news now.
            self.send_headers(ctx, headers, now);
        }
        resp.insert_header(ATTEMPTS_HEADER, ctx.attempts)?;
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
        refuse::fail_to_proxy(session, e, ctx).await
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
        let record = Box::new(record);
        self.hub.send(match ctx.held_headers.take() {
            Some((headers, at)) => HubEvent::Completed {
                model: ctx.request_model.clone(),
                headers,
                at,
                record,
            },
            None => HubEvent::Request(record),
        });
    }
}

/// Whether pingora marked `e` as an HTTP/2 refusal the upstream never processed.
fn never_processed(e: &Error) -> bool {
    matches!(
        e.etype,
        ErrorType::H2Error | ErrorType::H2Downgrade | ErrorType::InvalidH2
    ) && matches!(e.retry, pingora::RetryType::Decided(true))
}

/// Seconds an idle client keep-alive connection is kept open between requests.
pub const KEEPALIVE_IDLE_SECS: u64 = 75;

/// The public path of the WebSocket JSON-RPC endpoint.
pub const WS_PATH: &str = "/ws";

/// Header on every proxied response: how many upstream attempts it took.
pub const ATTEMPTS_HEADER: &str = "x-sidepanel-attempts";
/// Header on the gateway's own 429: the limit is the gateway's, not Venice's.
pub const LIMITED_HEADER: &str = "x-sidepanel-limited";
