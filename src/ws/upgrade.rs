//! The WebSocket handshake's decision, shared by both ways a connection arrives, and taking
//! over a connection the gateway upgraded on its public port.
//!
//! Owns deciding, from the upgrade request alone, whether a browser may connect: a connection
//! slot must be free (at most [`MAX_CLIENTS`]; 503), `Host` must be a loopback name/address or
//! an allowed host and `Origin`, when present, `http://` plus such a host (DNS-rebinding and
//! cross-site defence; 403); the install token, when set, must come as `?token=…` or as the
//! subprotocol `sidepanel.<token>` (401). Tokens are never logged. Every refusal is counted in
//! `sidepanel_ws_refused_total{reason}`; a flood of clients past [`MAX_CLIENTS`] is logged once
//! per [`FULL_WARN_EVERY`], not once per client. Also owns the slots and the shutdown signal of
//! the connections [`WsServer::accept`] took over.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::handshake::server::{create_response, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::{client, WsConfig, WsServer};
use crate::access::same_secret;

/// Connections served at once; further handshakes get 503.
pub const MAX_CLIENTS: usize = 256;
/// Paths the upgrade is accepted on.
const PATHS: &[&str] = &["/ws", "/ws/", "/"];
/// A server that is full warns at most this often (refusals are counted in the metrics).
pub const FULL_WARN_EVERY: Duration = Duration::from_secs(10);
/// Epoch seconds of the last "too many clients" warning.
static LAST_FULL_WARN: AtomicU64 = AtomicU64::new(0);
/// Prefix of the subprotocol that carries the token.
pub const PROTOCOL_PREFIX: &str = "sidepanel.";
/// Longest wait at shutdown for taken-over connections to send their close frame and end.
pub const DRAIN: Duration = Duration::from_secs(2);
/// Read buffer of each connection (see [`WsServer::socket_config`]).
const READ_BUFFER: usize = 4096;

/// Why an upgrade was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
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

    /// The plain-text body a refused client gets.
    pub fn body(&self) -> String {
        format!("sidepanel: {}\n", self.reason)
    }
}

/// A handshake the server accepted: send [`Accepted::response`] (101, with the selected
/// subprotocol), then hand the connection to [`Accepted::serve`]. Holds a connection slot.
pub struct Accepted {
    pub response: Response,
    server: Arc<WsServer>,
    permit: OwnedSemaphorePermit,
}

impl Accepted {
    /// Serves the upgraded connection `stream` (the 101 already sent) on a task of its own
    /// until it closes or the server shuts down.
    pub fn serve<S>(self, stream: S, peer: Option<SocketAddr>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Accepted { server, permit, .. } = self;
        let shutdown = server.closing.subscribe();
        let span = tracing::info_span!("ws_client", peer = ?peer);
        tokio::spawn(
            async move {
                let config = server.socket_config();
                let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
                tracing::debug!("WebSocket client connected");
                client::run(server, ws, peer, shutdown).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}

impl WsServer {
    /// Decides the upgrade request `req` of a connection the caller holds (the gateway's `/ws`
    /// route): the 101 response to send and a connection slot, or the refusal to answer with
    /// (already counted and logged). A malformed upgrade (not a GET, no `Sec-WebSocket-Key`,
    /// …) is refused with 400.
    pub fn accept(self: &Arc<Self>, req: &Request) -> Result<Accepted, Refusal> {
        let decided = self.slot().ok_or_else(too_many).and_then(|permit| {
            let protocol = check(req, &self.config)?;
            let mut response = create_response(req).map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("not a WebSocket upgrade: {e}"),
                )
            })?;
            select_protocol(&mut response, protocol);
            Ok((response, permit))
        });
        match decided {
            Ok((response, permit)) => Ok(Accepted {
                response,
                server: self.clone(),
                permit,
            }),
            Err(refusal) => {
                self.refused(&refusal, req);
                Err(refusal)
            }
        }
    }

    /// Counts and logs a refusal.
    pub(super) fn refused(&self, refusal: &Refusal, req: &Request) {
        self.hub.metrics().ws_refused(refusal.metric_reason());
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
    }

    /// The frame and message limits of every connection.
    ///
    /// The read buffer is small: tungstenite zero-fills its free read capacity before every
    /// read, and the client loop polls the read half each time it forwards an update, so the
    /// default 128 KiB cost a 128 KiB `memset` per update. Dashboard clients send a few small
    /// JSON-RPC calls; larger messages still arrive, in more reads.
    pub(super) fn socket_config(&self) -> WebSocketConfig {
        let n = self.config.max_message_bytes;
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(n))
            .max_frame_size(Some(n))
    }

    /// A free connection slot, if any (the listener's accept loop takes one per connection).
    pub(super) fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Tells every connection taken over by [`WsServer::accept`] to close with 1001 and waits
    /// up to [`DRAIN`] for all connections to end.
    pub async fn close_all(&self) {
        self.closing.send_replace(true);
        let all = u32::try_from(MAX_CLIENTS).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(DRAIN, self.slots.acquire_many(all)).await;
    }
}

/// The refusal when every connection slot is taken.
pub(super) fn too_many() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many WebSocket clients (at most {MAX_CLIENTS})"),
    )
}

/// Adds the selected subprotocol, if any, to a 101 response.
pub(super) fn select_protocol(response: &mut Response, protocol: Option<String>) {
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, p);
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
