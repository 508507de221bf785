//! The browser-facing WebSocket API: JSON-RPC 2.0 over tokio-tungstenite on an internal loopback
//! listener that the gateway proxies `/ws` to.
//!
//! Owns the public surface: [`WsConfig`], [`WsServer`] (serve on a bound listener until
//! shutdown) and [`WsTask`] (the same as a supervised background task). The pieces:
//! [`rpc`] (the JSON-RPC codec), [`methods`] (dispatch and parameter validation), `client`
//! (one connection: reader, bounded send queue, writer) and `server` (accept loop and the
//! handshake's Host/Origin/token checks). The protocol is described in `docs/ARCHITECTURE.md`
//! ("WebSocket").

mod client;
pub mod methods;
mod params;
pub mod rpc;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;

use crate::access::HostPolicy;
use crate::hub::HubHandle;
use crate::services::Task;
use methods::Methods;
pub use server::MAX_CLIENTS;

/// Lean commands the WebSocket API forwards (`lean.check`, `lean.restart`). Calls are sync and
/// run off the async threads; an `Err` reaches the client as error -32002 with its text.
pub trait LeanCommands: Send + Sync {
    /// Asks for the proof state of `file` (optionally around `line`).
    fn check(&self, file: &str, line: Option<u32>) -> Result<(), String>;
    /// Restarts the Lean server.
    fn restart(&self) -> Result<(), String>;
}

/// Settings of the WebSocket server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConfig {
    /// Hosts accepted in `Host` and `Origin`: loopback ones and the configured `allowed_hosts`
    /// (built once, checked at every handshake).
    pub hosts: HostPolicy,
    /// When set, clients must present it as `?token=…` or `Sec-WebSocket-Protocol:
    /// sidepanel.<token>`.
    pub token: Option<String>,
    /// Largest message (and frame) accepted from a client, in bytes.
    pub max_message_bytes: usize,
    /// Messages queued for one client before its pending updates are dropped for a resync.
    pub client_queue: usize,
}

/// Default [`WsConfig::max_message_bytes`]: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default [`WsConfig::client_queue`].
pub const DEFAULT_CLIENT_QUEUE: usize = 256;

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            hosts: HostPolicy::default(),
            token: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            client_queue: DEFAULT_CLIENT_QUEUE,
        }
    }
}

/// Why the WebSocket server could not run.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("cannot listen for WebSocket clients on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The WebSocket JSON-RPC server.
pub struct WsServer {
    hub: HubHandle,
    config: WsConfig,
    methods: Methods,
    updates: client::EncodedUpdates,
}

impl WsServer {
    pub fn new(hub: HubHandle, config: WsConfig) -> Self {
        let config = WsConfig {
            max_message_bytes: config.max_message_bytes.max(1),
            client_queue: config.client_queue.max(1),
            ..config
        };
        Self {
            methods: Methods::new(hub.clone(), None),
            hub,
            config,
            updates: client::EncodedUpdates::default(),
        }
    }

    /// Attaches the Lean control that `lean.check` and `lean.restart` forward to; without one
    /// they answer -32000 "lean not available".
    pub fn with_lean(mut self, lean: Arc<dyn LeanCommands>) -> Self {
        self.methods.set_lean(lean);
        self
    }

    /// Attaches the session store that `restore`, `timeline` and `exportSession` use.
    pub fn with_store(mut self, store: crate::store::StoreHandle) -> Self {
        self.methods.set_store(store);
        self
    }

    /// Attaches the OpenCode server link that `restore` reverts sessions through.
    pub fn with_opencode(mut self, link: crate::opencode::LinkHandle) -> Self {
        self.methods.set_opencode(link);
        self
    }

    /// Serves until shutdown on an already-bound listener. Open connections are closed with
    /// 1001 "going away" at shutdown.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: ShutdownWatch,
    ) {
        server::serve(self, listener, shutdown).await;
    }

    pub fn config(&self) -> &WsConfig {
        &self.config
    }
}

/// [`WsServer`] as a supervised background task (`"ws"`), on a listener bound before the
/// pingora server starts so the gateway knows where to proxy `/ws`.
pub struct WsTask {
    server: Arc<WsServer>,
    listener: parking_lot::Mutex<Option<std::net::TcpListener>>,
    addr: SocketAddr,
}

impl WsTask {
    /// Binds `addr` (use `127.0.0.1:0` for a free loopback port).
    pub fn bind(server: Arc<WsServer>, addr: SocketAddr) -> Result<Self, WsError> {
        let bind = || -> std::io::Result<(std::net::TcpListener, SocketAddr)> {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            let local = l.local_addr()?;
            Ok((l, local))
        };
        let (listener, local) = bind().map_err(|source| WsError::Bind { addr, source })?;
        Ok(Self {
            server,
            listener: parking_lot::Mutex::new(Some(listener)),
            addr: local,
        })
    }

    /// The address the listener is bound to: the gateway's upstream for `/ws`.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

#[async_trait]
impl Task for WsTask {
    fn name(&self) -> &'static str {
        "ws"
    }

    async fn run(self: Arc<Self>, shutdown: ShutdownWatch) -> Result<(), String> {
        // After a restart the listener is rebound on the same address.
        let bound = self.listener.lock().take();
        let listener = match bound {
            Some(l) => tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?,
            None => tokio::net::TcpListener::bind(self.addr)
                .await
                .map_err(|e| format!("cannot rebind {}: {e}", self.addr))?,
        };
        self.server.clone().serve(listener, shutdown).await;
        Ok(())
    }
}
