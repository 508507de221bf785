//! The gateway's own answers instead of Venice's: refusals and errors.
//!
//! Owns the early refusals written from `request_filter` ([`refuse`]: 403 foreign host, 413
//! body too large, 402 budget floor; 431 for a head over [`MAX_REQUEST_HEAD_BYTES`]), the
//! admission 429 ([`write_refusal`]), and, for a failure before the response started, the
//! status, `x-sidepanel-error` slug and OpenAI-shaped body ([`fail_to_proxy`], [`classify`]).
//! A failure after the response started cannot change the status: nothing is written and the
//! connection is not reused.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::admission::{Refusal, RefusalKind};
use crate::gateway::ctx::RequestCtx;
use crate::gateway::proxy::{ATTEMPTS_HEADER, LIMITED_HEADER};
use crate::gateway::routes::{self, error_body, ERROR_HEADER};

/// Largest request head (request target plus header names and values) the gateway accepts on
/// any route; pingora alone would take up to 1 MiB. OpenCode, browsers and the plugin send a
/// few KiB; Venice's edge refuses far less than this limit anyway.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 * 1024;

/// Whether the request head is larger than [`MAX_REQUEST_HEAD_BYTES`].
pub fn head_too_large(req: &pingora::http::RequestHeader) -> bool {
    let target = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    target + headers > MAX_REQUEST_HEAD_BYTES
}

/// Answers a proxied request with the gateway's own error `status` before anything went
/// upstream; `Ok(true)` tells pingora the response is written.
pub async fn refuse(
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

/// `fail_to_proxy`: the admission refusal kept in `ctx`, else the classified error, written
/// when no response has started yet.
pub async fn fail_to_proxy(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
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

/// The gateway's own 429, in the OpenAI error shape, naming the limit.
pub async fn write_refusal(session: &mut Session, refusal: &Refusal, model: &str) -> Result<()> {
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

/// Status, error slug and message for a failure before the response started; status 0 means
/// the client is gone and nothing is written.
pub fn classify(e: &Error) -> (u16, &'static str, String) {
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
