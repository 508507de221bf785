//! The WebSocket accept loop and the handshake's checks.
//!
//! Owns accepting connections (at most [`MAX_CLIENTS`] at once, a [`HANDSHAKE_TIMEOUT`] each)
//! and deciding, from the upgrade request alone, whether a browser may connect: `Host` must be a
//! loopback name/address or an allowed host and `Origin`, when present, `http://` plus such a
//! host (DNS-rebinding and cross-site defence; 403 otherwise); the install token, when set, must
//! come as `?token=…` or as the subprotocol `sidepanel.<token>` (401 otherwise). Tokens are never
//! logged. Every refusal is counted in `sidepanel_ws_refused_total{reason}`; a flood of clients
//! past [`MAX_CLIENTS`] is logged once per [`FULL_WARN_EVERY`], not once per client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Instrument;

use super::{client, WsConfig, WsServer};
use crate::access::same_secret;
use crate::services::stopped;
use pingora::server::ShutdownWatch;

/// Connections served at once; further handshakes get 503.
pub const MAX_CLIENTS: usize = 256;
/// Longest time a peer may take to complete the upgrade.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Paths the upgrade is accepted on (the gateway forwards `/ws`).
const PATHS: &[&str] = &["/ws", "/ws/", "/"];
/// A server that is full warns at most this often (refusals are counted in the metrics).
pub const FULL_WARN_EVERY: Duration = Duration::from_secs(10);
/// Epoch seconds of the last "too many clients" warning.
static LAST_FULL_WARN: AtomicU64 = AtomicU64::new(0);
/// Prefix of the subprotocol that carries the token.
pub const PROTOCOL_PREFIX: &str = "sidepanel.";

/// Why an upgrade was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    /// The `reason` label of `sidepanel_ws_refused_total`.
    fn metric_reason(&self) -> &'static str {
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => "too_many_clients",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            _ => "other",
        }
    }

    fn into_response(self) -> ErrorResponse {
        let mut resp = ErrorResponse::new(Some(format!("sidepanel: {}\n", self.reason)));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }
}

/// Accepts connections until shutdown, then gives open ones a moment to send their close frame.
pub(super) async fn serve(
    server: Arc<WsServer>,
    listener: TcpListener,
    mut shutdown: ShutdownWatch,
) {
    let local = listener.local_addr().ok();
    tracing::info!(addr = ?local, "WebSocket server listening");
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = slots.clone().try_acquire_owned().ok();
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
    let n = server.config.max_message_bytes;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(n))
        .max_frame_size(Some(n));
    let callback = Handshake {
        config: &server.config,
        metrics: server.hub.metrics(),
        full: permit.is_none(),
    };
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config));
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
    client::run(server, ws, peer, shutdown).await;
    drop(permit);
}

/// The handshake callback: the checks, the selected subprotocol, and a logged refusal.
struct Handshake<'a> {
    config: &'a WsConfig,
    metrics: &'a crate::metrics::Metrics,
    /// No connection slot is free.
    full: bool,
}

impl Callback for Handshake<'_> {
    fn on_request(self, req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
        let checked = if self.full {
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many WebSocket clients (at most {MAX_CLIENTS})"),
            ))
        } else {
            check(req, self.config)
        };
        match checked {
            Ok(protocol) => {
                if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
                    resp.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, p);
                }
                Ok(resp)
            }
            Err(refusal) => {
                self.metrics.ws_refused(refusal.metric_reason());
                let status = refusal.status.as_u16();
                if refusal.status != StatusCode::SERVICE_UNAVAILABLE || full_warning_due() {
                    tracing::warn!(
                        status,
                        reason = %refusal.reason,
                        host = ?req.headers().get(header::HOST),
                        origin = ?req.headers().get(header::ORIGIN),
                        "WebSocket upgrade refused"
                    );
                } else {
                    tracing::debug!(status, reason = %refusal.reason, "WebSocket upgrade refused");
                }
                Err(refusal.into_response())
            }
        }
    }
}

/// Whether a "too many clients" refusal should be logged as a warning now (once per
/// [`FULL_WARN_EVERY`] in this process).
fn full_warning_due() -> bool {
    let now = crate::util::epoch_ms(std::time::SystemTime::now()) / 1000;
    let last = LAST_FULL_WARN.load(Ordering::Relaxed);
    now >= last + FULL_WARN_EVERY.as_secs()
        && LAST_FULL_WARN
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Checks an upgrade request; `Ok` carries the subprotocol to select, if any.
pub fn check(req: &Request, config: &WsConfig) -> Result<Option<String>, Refusal> {
    if !PATHS.contains(&req.uri().path()) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "the WebSocket endpoint is /ws",
        ));
    }
    let headers = req.headers();
    config
        .hosts
        .check(headers)
        .map_err(|denied| Refusal::new(StatusCode::FORBIDDEN, denied.message()))?;
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| p.starts_with(PROTOCOL_PREFIX))
        .collect();
    let Some(token) = config.token.as_deref() else {
        return Ok(offered.first().map(|p| (*p).to_owned()));
    };
    let by_protocol = offered.iter().find(|p| {
        p.strip_prefix(PROTOCOL_PREFIX)
            .is_some_and(|t| same_secret(t, token))
    });
    if let Some(p) = by_protocol {
        return Ok(Some((*p).to_owned()));
    }
    let by_query = req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "token" && same_secret(&v, token))
    });
    if by_query {
        // A browser that offered subprotocols fails unless one is selected.
        return Ok(offered.first().map(|p| (*p).to_owned()));
    }
    Err(Refusal::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token (send ?token=… or Sec-WebSocket-Protocol: sidepanel.<token>)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http;

    fn request(uri: &str, headers: &[(&str, &str)]) -> Result<Request, http::Error> {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(())
    }

    fn cfg(token: Option<&str>) -> WsConfig {
        WsConfig {
            hosts: crate::access::HostPolicy::new(&["Panel.Example:8765"]),
            token: token.map(str::to_owned),
            ..WsConfig::default()
        }
    }

    fn status(uri: &str, h: &[(&str, &str)], c: &WsConfig) -> Result<Option<String>, u16> {
        check(&request(uri, h).unwrap(), c).map_err(|r| r.status.as_u16())
    }

    #[test]
    fn host_and_origin_must_be_loopback_or_allowed() {
        let c = cfg(None);
        let ok = |h: &[(&str, &str)]| status("/ws", h, &c).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8765")]));
        assert!(ok(&[
            ("host", "localhost"),
            ("origin", "http://localhost:8765")
        ]));
        assert!(ok(&[("host", "[::1]:9"), ("origin", "http://127.0.0.2")]));
        assert!(ok(&[
            ("host", "panel.example:1"),
            ("origin", "http://PANEL.example")
        ]));
        let refused = |h: &[(&str, &str)]| status("/ws", h, &c) == Err(403);
        assert!(refused(&[]));
        assert!(refused(&[("host", "evil.example:8765")]));
        assert!(refused(&[
            ("host", "127.0.0.1"),
            ("origin", "http://evil.example")
        ]));
        assert!(refused(&[("host", "127.0.0.1"), ("origin", "null")]));
        assert!(refused(&[
            ("host", "127.0.0.1"),
            ("origin", "https://localhost")
        ]));
        assert_eq!(status("/other", &[("host", "localhost")], &c), Err(404));
    }

    #[test]
    fn the_token_comes_by_query_or_subprotocol() {
        let c = cfg(Some("s3cret"));
        let h = [("host", "localhost")];
        assert_eq!(status("/ws", &h, &c), Err(401));
        assert_eq!(status("/ws?token=nope", &h, &c), Err(401));
        assert_eq!(status("/ws?token=s3cret", &h, &c), Ok(None));
        let proto = [
            ("host", "localhost"),
            ("sec-websocket-protocol", "x, sidepanel.s3cret"),
        ];
        assert_eq!(
            status("/ws", &proto, &c),
            Ok(Some("sidepanel.s3cret".into()))
        );
        let wrong = [
            ("host", "localhost"),
            ("sec-websocket-protocol", "sidepanel.s3creT"),
        ];
        assert_eq!(status("/ws", &wrong, &c), Err(401));
    }
}
