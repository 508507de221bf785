//! The `/ws` route: the WebSocket handshake on the public connection, then the connection
//! itself handed to the WebSocket server.
//!
//! Owns the pingora side of an upgrade: the request as the WebSocket server's handshake sees it,
//! the 101 (or the refusal, plain text) written by pingora, and taking the TCP stream out of
//! pingora's session so the WebSocket server serves it directly: every update a browser gets is
//! one write on its socket, with no relay through pingora and no internal loopback hop. pingora
//! finishes the request on a stand-in session (the same request head, an in-memory stream,
//! no keep-alive), so its own bookkeeping after `request_filter` sees a complete request.

use std::io::Cursor;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};
use tokio_tungstenite::tungstenite::handshake::server::Request;
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::gateway::routes;
use crate::ws::{Refusal, WsServer};

/// Answers the upgrade request of `session` (`/ws`): a refusal, or a 101 after which the
/// connection belongs to `ws`. The response is always written: the caller returns `true`.
pub async fn websocket(session: &mut Session, ws: &Arc<WsServer>) -> Result<()> {
    if session.as_downstream().as_http1().is_none() {
        let msg = "WebSocket upgrades are served over HTTP/1.1 only";
        return refuse(session, &Refusal::new(StatusCode::BAD_REQUEST, msg)).await;
    }
    let req = Request::from_parts(session.req_header().as_owned_parts(), ());
    let accepted = match ws.accept(&req) {
        Ok(accepted) => accepted,
        Err(refusal) => return refuse(session, &refusal).await,
    };
    let mut resp = ResponseHeader::build(101, Some(accepted.response.headers().len()))?;
    for (name, value) in accepted.response.headers() {
        resp.append_header(name, value)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    let peer = session.client_addr().and_then(|a| a.as_inet()).copied();
    let stream = take_stream(session).await?;
    accepted.serve(stream, peer);
    Ok(())
}

/// A refusal as plain text with its status (those of `WsServer::accept` are counted and
/// logged there).
async fn refuse(session: &mut Session, refusal: &Refusal) -> Result<()> {
    let body = Bytes::from(refusal.body());
    let status = refusal.status.as_u16();
    routes::write(session, status, "text/plain; charset=utf-8", body).await
}

/// Takes the client's stream out of `session`, which gets a stand-in: the same request head
/// read from memory, keep-alive off, writes discarded.
async fn take_stream(session: &mut Session) -> Result<pingora::protocols::Stream> {
    let head = session.as_downstream().to_h1_raw();
    let mut stand_in = ServerSession::new_http1(Box::new(Cursor::new(head.to_vec())));
    stand_in.read_request().await?;
    stand_in.set_keepalive(None);
    let real = std::mem::replace(session.as_downstream_mut(), stand_in);
    match real {
        ServerSession::H1(h1) => Ok(h1.into_inner()),
        // Checked before the 101 was written.
        _ => Error::e_explain(ErrorType::InternalError, "upgraded session is not HTTP/1"),
    }
}
