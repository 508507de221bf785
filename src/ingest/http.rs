//! The pingora side of `POST /events`: the one function the gateway's `request_filter` calls.
//!
//! Owns reading the body (bounded by `ingest.max_body_bytes`, counted as it arrives, never
//! more than one chunk past the limit) and writing the answer: 202 with `{accepted, rejected,
//! sequence?}` once [`Ingest::submit`] has handed the events on (with the session store: once
//! they are committed, see [`COMMIT_TIMEOUT`]), or the 4xx/503 of an [`IngestError`]: 429
//! `busy` beyond [`super::MAX_IN_FLIGHT`] posts at once, 503 `not_acknowledged` at once while
//! the store fails. A refused request's connection is not reused, since its body may not have
//! been read.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use pingora::proxy::Session;
use pingora::Result;

use super::{Accepted, Ingest, IngestError, OpencodeBatch, OpencodeMessage};
use crate::gateway::routes;
use crate::hub::HubEvent;
use crate::store::StoreState;

/// Longest `POST /events` waits for its events to be applied and committed before it answers
/// 503: well below the plugin's own request timeout (1.5 s), so the plugin sees the 503 and
/// retries, while a healthy store commits within its `flush_interval` (5 ms).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(1);

impl Ingest {
    /// What `POST /events` does: validates a complete body, hands the valid events to the
    /// hub and, with a store ([`Ingest::with_store`]), waits until the updates they produced
    /// are committed — the answer then *acknowledges* them: they survive a crash. Waits at
    /// most the commit timeout; a full hub queue, a stopped store or a store that does not
    /// commit in time is [`IngestError::Unavailable`] (503). The events may still be applied
    /// (and stored later) then; a resent batch is mostly harmless, since messages, steps and
    /// tool calls are deduplicated by their ids.
    pub async fn submit(&self, body: &[u8]) -> std::result::Result<Accepted, IngestError> {
        let Some(store) = &self.store else {
            return self.accept(body);
        };
        let (events, mut accepted) = self.validate(body)?;
        // A store known to fail (disk full, read-only) cannot acknowledge: say so at once and
        // leave the events to the plugin's resend, instead of applying them unacknowledged.
        let status = store.status();
        if status.status == StoreState::Failing {
            let why = status.error.unwrap_or_default();
            return Err(IngestError::Unavailable(format!(
                "session storage is failing: {why}"
            )));
        }
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut batch = OpencodeBatch::new(SystemTime::now(), events);
        batch.applied = Some(tx);
        self.hub
            .send(HubEvent::Opencode(OpencodeMessage::Batch(batch)));
        let sequence = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(seq)) => seq,
            Ok(Err(_)) => {
                return Err(IngestError::Unavailable(
                    "the hub's queue is full or the hub stopped".into(),
                ))
            }
            Err(_) => {
                return Err(IngestError::Unavailable(format!(
                    "the hub did not apply them within {:?}",
                    self.commit_timeout
                )))
            }
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Err(e) = store.wait_committed(sequence, left).await {
            tracing::warn!(sequence, error = %e, "plugin events not committed in time; answering 503");
            return Err(IngestError::Unavailable(format!("session storage: {e}")));
        }
        accepted.sequence = Some(sequence);
        Ok(accepted)
    }
}

/// Answers one request to [`super::EVENTS_PATH`] completely (call it from `request_filter`
/// and return `Ok(true)`). Errors are only I/O errors with the client.
pub async fn handle(session: &mut Session, ingest: &Ingest) -> Result<()> {
    let head = {
        let req = session.req_header();
        ingest.check_head(&req.method, &req.headers)
    };
    if let Err(e) = head {
        return refuse(session, ingest, &e).await;
    }
    // A flood: refuse before reading the body, so memory stays bounded.
    let Ok(_permit) = ingest.in_flight.clone().try_acquire_owned() else {
        return refuse(session, ingest, &IngestError::Busy(super::MAX_IN_FLIGHT)).await;
    };
    let limit = ingest.config().max_body_bytes;
    let mut body = BytesMut::new();
    loop {
        let chunk = match session.read_request_body().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading an /events body failed");
                let err = IngestError::Malformed("the request body could not be read".into());
                return refuse(session, ingest, &err).await;
            }
        };
        if body.len() + chunk.len() > limit {
            return refuse(session, ingest, &IngestError::TooLarge(limit)).await;
        }
        body.extend_from_slice(&chunk);
    }
    match ingest.submit(&body).await {
        Ok(accepted) => routes::write(session, 202, "application/json", accepted.body()).await,
        Err(e) => refuse(session, ingest, &e).await,
    }
}

async fn refuse(session: &mut Session, ingest: &Ingest, e: &IngestError) -> Result<()> {
    tracing::debug!(status = e.status(), code = e.code(), "/events refused");
    ingest.metrics().ingest_rejected(e.code());
    if session.as_downstream_mut().is_body_done() {
        // Nothing left unread: the connection may serve the next event batch.
    } else {
        session.as_downstream_mut().set_keepalive(None);
    }
    routes::write(session, e.status(), "application/json", e.body()).await
}
