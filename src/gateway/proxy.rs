//! The pingora `ProxyHttp` implementation: thin phases that delegate to the other modules.
//!
//! Phase by phase: `request_filter` answers local routes and refuses oversized bodies;
//! `upstream_peer` resolves Venice asynchronously; `upstream_request_filter` rewrites path, host
//! and key; `request_body_filter` holds a chat body and amends it (include_usage);
//! `upstream_response_filter` reads Venice's headers; `upstream_response_body_filter` scans each
//! chunk for usage as it passes; `logging` hands one record to the hub. Nothing here blocks or
//! waits on the hub.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::config::LimitsConfig;
use crate::gateway::ctx::RequestCtx;
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::rewrite::prepare_chat_body;
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
}

impl Gateway {
    pub fn new(
        upstream: Arc<Upstream>,
        hub: HubHandle,
        metrics: Arc<Metrics>,
        limits: LimitsConfig,
    ) -> Self {
        Self {
            upstream,
            hub,
            metrics,
            limits,
        }
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
        let body = error_body(message, code);
        routes::write(session, status, "application/json", body).await?;
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
        if !is_proxied(&path) {
            routes::serve(session, &self.hub, &self.metrics).await?;
            return Ok(true);
        }
        ctx.method = req.method.to_string();
        ctx.path = path
            .strip_prefix(crate::gateway::upstream::CLIENT_PREFIX)
            .unwrap_or(&path)
            .to_owned();
        ctx.set_session_id(req.headers.get("x-session-id"));
        ctx.hold_body = req.method == http::Method::POST && is_chat(&path);
        let max = self.limits.max_request_body_bytes;
        if ctx.hold_body && declared_length(req).is_some_and(|n| n > max) {
            let msg = format!("request body larger than limits.max_request_body_bytes ({max})");
            return self.refuse(session, ctx, 413, &msg, "body_too_large").await;
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        self.upstream.peer().await
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
            // The body may change length once amended: send it chunked (h2 drops the header).
            req.remove_header(&http::header::CONTENT_LENGTH);
            req.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !ctx.hold_body {
            return Ok(());
        }
        if let Some(chunk) = body.take() {
            if ctx.held.len() + chunk.len() > self.limits.max_request_body_bytes {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body larger than limits.max_request_body_bytes",
                );
            }
            ctx.held.extend_from_slice(&chunk);
        }
        if !end_of_stream {
            // An empty chunk is not written; `None` would end the upstream body early.
            *body = Some(Bytes::new());
            return Ok(());
        }
        let (out, info) = prepare_chat_body(std::mem::take(&mut ctx.held).freeze());
        ctx.request_model = info.model;
        ctx.usage_requested = info.usage_requested;
        *body = Some(out);
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.ttfb = Some(ctx.started.elapsed());
        ctx.status = Some(resp.status.as_u16());
        let now = SystemTime::now();
        let headers = VeniceHeaders::parse(&resp.headers, now);
        self.hub.send(HubEvent::Headers {
            model: ctx.request_model.clone(),
            headers: Box::new(headers),
            at: now,
        });
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
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(chunk) = body {
            ctx.scan_chunk(chunk, self.limits.max_scan_body_bytes);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
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
