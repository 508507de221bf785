//! The browser-facing WebSocket API: JSON-RPC 2.0 over tokio-tungstenite.
//!
//! Owns the public surface: [`WsConfig`] and [`WsServer`], which takes over connections the
//! gateway upgraded on its public port ([`WsServer::accept`], closed with 1001 by
//! [`WsServer::close_all`] before the gateway stops) or serves a listener of its own
//! ([`WsServer::serve`]). The pieces: [`rpc`] (the JSON-RPC codec), [`methods`]
//! (dispatch and parameter validation), `client` (one connection: reader, bounded send queue,
//! writer), `upgrade` (the handshake decision both paths share: Host/Origin/token checks, a
//! connection slot) and `server` (the listener's accept loop). The protocol is described in
//! `docs/ARCHITECTURE.md` ("WebSocket").

mod client;
pub mod methods;
mod params;
pub mod rpc;
mod server;
mod upgrade;

use std::sync::Arc;

use pingora::server::ShutdownWatch;
use tokio::sync::{watch, Semaphore};

use crate::access::HostPolicy;
use crate::hub::HubHandle;
use methods::Methods;
pub use upgrade::{Accepted, Refusal, MAX_CLIENTS};

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

/// The WebSocket JSON-RPC server.
pub struct WsServer {
    hub: HubHandle,
    config: WsConfig,
    methods: Methods,
    updates: client::EncodedUpdates,
    /// One permit per connection served ([`MAX_CLIENTS`]).
    slots: Arc<Semaphore>,
    /// Set at shutdown: every connection taken over by [`WsServer::accept`] closes with 1001.
    closing: watch::Sender<bool>,
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
            slots: Arc::new(Semaphore::new(MAX_CLIENTS)),
            closing: watch::Sender::new(false),
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
