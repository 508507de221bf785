//! The pingora side of `POST /events`: the one function the gateway's `request_filter` calls.
//!
//! Owns reading the body (bounded by `ingest.max_body_bytes`, counted as it arrives, never
//! more than one chunk past the limit) and writing the answer: 202 with `{accepted, rejected}`,
//! or the 4xx of an [`IngestError`]. A refused request's connection is not reused, since its
//! body may not have been read.

use bytes::BytesMut;
use pingora::proxy::Session;
use pingora::Result;

use super::{Ingest, IngestError};
use crate::gateway::routes;

/// Answers one request to [`super::EVENTS_PATH`] completely (call it from `request_filter`
/// and return `Ok(true)`). Errors are only I/O errors with the client.
pub async fn handle(session: &mut Session, ingest: &Ingest) -> Result<()> {
    let head = {
        let req = session.req_header();
        ingest.check_head(&req.method, &req.headers)
    };
    if let Err(e) = head {
        return refuse(session, &e).await;
    }
    let limit = ingest.config().max_body_bytes;
    let mut body = BytesMut::new();
    loop {
        let chunk = match session.read_request_body().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "reading an /events body failed");
                let err = IngestError::Malformed("the request body could not be read".into());
                return refuse(session, &err).await;
            }
        };
        if body.len() + chunk.len() > limit {
            return refuse(session, &IngestError::TooLarge(limit)).await;
        }
        body.extend_from_slice(&chunk);
    }
    match ingest.accept(&body) {
        Ok(accepted) => routes::write(session, 202, "application/json", accepted.body()).await,
        Err(e) => refuse(session, &e).await,
    }
}

async fn refuse(session: &mut Session, e: &IngestError) -> Result<()> {
    tracing::debug!(status = e.status(), code = e.code(), "/events refused");
    if session.as_downstream_mut().is_body_done() {
        // Nothing left unread: the connection may serve the next event batch.
    } else {
        session.as_downstream_mut().set_keepalive(None);
    }
    routes::write(session, e.status(), "application/json", e.body()).await
}
