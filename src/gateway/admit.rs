//! Admission as the gateway applies it, before anything goes upstream.
//!
//! Owns reading the model and max tokens from the first chunk of a chat body ([`peek_chat`]),
//! waiting at the model's gate or taking its refusal ([`admit`]), and deciding whether a failed
//! attempt is retried and after how long ([`plan_retry`]). The gates, queue and retry delays
//! themselves are [`crate::admission`]'s; the phases in [`super::proxy`] only call these.

use pingora::http::RequestHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::admission::retry::{self, RetryReason};
use crate::admission::Admission;
use crate::gateway::ctx::RequestCtx;
use crate::gateway::headers::VeniceHeaders;
use crate::gateway::peek;
use crate::gateway::rewrite::estimate_tokens;

/// Reads the first chunk of a chat body (never more: pingora replays what was read from its
/// 64 KiB retry buffer, which must not overflow) and takes model and max tokens from it.
pub async fn peek_chat(session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
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
    if session.as_downstream_mut().is_body_done() {
        // The whole body came in the first read (the usual case): prepare it now, so it goes
        // upstream with its final `Content-Length` (one write after the head, no chunked
        // framing); `request_body_filter` then sends it in place of the replayed read.
        ctx.prepare(first);
    }
    Ok(())
}

/// Waits for admission of the chat request in `ctx`, or refuses it with the gateway's 429
/// (the refusal is kept in `ctx` for `fail_to_proxy` to write).
pub async fn admit(
    admission: &Admission,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<()> {
    let Some(model) = ctx.request_model.clone() else {
        return Ok(());
    };
    ctx.admitted = true;
    let body_done = session.as_downstream_mut().is_body_done();
    let admitted = tokio::select! {
        r = admission.admit(&model, ctx.estimate, ctx.deadline) => r,
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
pub fn plan_retry(
    admission: &Admission,
    session: &Session,
    ctx: &mut RequestCtx,
    reason: RetryReason,
    headers: Option<&VeniceHeaders>,
) -> bool {
    let config = admission.config();
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

/// The request's declared `Content-Length`, when it has a valid one.
pub fn declared_length(req: &RequestHeader) -> Option<usize> {
    req.headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Resolves when the client has closed its connection (never otherwise).
pub async fn client_gone(session: &mut Session) {
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
