//! The WebSocket server's own listener: the accept loop and the handshake over a raw TCP
//! connection (tungstenite parses the request; [`super::upgrade`] decides it).
//!
//! Owns accepting connections (a slot each, [`HANDSHAKE_TIMEOUT`] to upgrade) for a
//! [`WsServer`] that serves a listener of its own (`WsServer::serve`: embedders and the
//! WebSocket tests); the gateway takes its `/ws` connections over through
//! [`WsServer::accept`] instead.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tracing::Instrument;

use super::upgrade::{select_protocol, too_many, Refusal};
use super::{client, WsServer};
use crate::services::stopped;
use pingora::server::ShutdownWatch;

/// Longest time a peer may take to complete the upgrade.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until shutdown, then gives open ones a moment to send their close frame.
pub(super) async fn serve(
    server: Arc<WsServer>,
    listener: TcpListener,
    mut shutdown: ShutdownWatch,
) {
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "WebSocket server listening");
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = server.slot();
                    let span = tracing::info_span!("ws_client", %peer);
                    let conn = connection(server.clone(), stream, peer, permit, shutdown.clone());
                    clients.spawn(conn.instrument(span));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "WebSocket accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = stopped(&mut shutdown) => break,
                    }
                }
            },
            Some(done) = clients.join_next(), if !clients.is_empty() => log_join(done),
        }
    }
    let drain = async {
        while let Some(done) = clients.join_next().await {
            log_join(done);
        }
    };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        clients.abort_all();
    }
    tracing::info!("WebSocket server stopped");
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "WebSocket connection task panicked");
        }
    }
}

/// One connection: the checked handshake, then the client loop.
async fn connection(
    server: Arc<WsServer>,
    stream: TcpStream,
    peer: SocketAddr,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: ShutdownWatch,
) {
    let _ = stream.set_nodelay(true);
    let callback = Handshake {
        server: &server,
        full: permit.is_none(),
    };
    let config = server.socket_config();
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("WebSocket handshake timed out");
            return;
        }
    };
    tracing::debug!("WebSocket client connected");
    client::run(server, ws, Some(peer), shutdown).await;
    drop(permit);
}

/// The handshake callback: the checks, the selected subprotocol, and a refusal's response.
struct Handshake<'a> {
    server: &'a WsServer,
    /// No connection slot is free.
    full: bool,
}

impl Callback for Handshake<'_> {
    fn on_request(self, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        let checked = if self.full {
            Err(too_many())
        } else {
            super::upgrade::check(req, &self.server.config)
        };
        match checked {
            Ok(protocol) => {
                select_protocol(&mut resp, protocol);
                Ok(resp)
            }
            Err(refusal) => {
                self.server.refused(&refusal, req);
                Err(error_response(&refusal))
            }
        }
    }
}

fn error_response(refusal: &Refusal) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(refusal.body()));
    *resp.status_mut() = refusal.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
