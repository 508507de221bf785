//! Ingest of OpenCode plugin events: `POST /events` with the seed's
//! `PluginEvent { event, timestamp, data }` or a JSON array of them.
//!
//! Owns the public face: [`Ingest`] (access checks, size and schema validation, handing the
//! accepted events to the hub, `.lean` edits to the Lean component), [`IngestConfig`],
//! [`IngestError`] (every 4xx/503 with its JSON body) and [`load_or_create_token`]. Inside:
//! `access` (Host/Origin/token), [`event`] (schema → typed events), [`session`] (per-session
//! OpenCode state), [`apply`] (state changes and the plugin-silent alert, run by the hub) and
//! `http` ([`handle`], the pingora adapter the gateway's `request_filter` calls, and
//! [`Ingest::submit`], which with the session store answers only once the events are committed).

mod access;
pub mod apply;
pub mod event;
mod feed;
mod fields;
mod http;
pub mod memory;
pub mod session;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::hub::{HubEvent, HubHandle};
use crate::lean::LeanControl;
use crate::store::StoreHandle;
pub use access::{host_name, load_or_create_token, Access, TOKEN_FILE, TOKEN_HEADER};
pub use apply::{OpencodeBatch, OpencodeMessage, PluginStatus, DEFAULT_SILENT_AFTER};
pub use event::{Kind, OcTokens, SessionEvent};
pub use feed::to_wire;
pub use http::{handle, COMMIT_TIMEOUT};
pub use memory::{Memory, Remembered, SessionMemories};
pub use session::OpencodeSession;

/// The path the plugin posts to.
pub const EVENTS_PATH: &str = "/events";

/// Settings of the ingest (`[ingest]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestConfig {
    /// Largest request body accepted (default 1 MiB).
    pub max_body_bytes: usize,
    /// Most events in one batch (default 1000).
    pub max_events: usize,
    /// Proxied session traffic without a plugin event for this long raises the
    /// "plugin silent" alert (default 60 s).
    pub plugin_silent_after: Duration,
}

/// Default [`IngestConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default [`IngestConfig::max_events`].
pub const DEFAULT_MAX_EVENTS: usize = 1000;
/// Posts to `/events` handled at once; more get 429 before their body is read, which bounds
/// a flood's memory to this many bodies of at most `max_body_bytes`.
pub const MAX_IN_FLIGHT: usize = 64;

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_events: DEFAULT_MAX_EVENTS,
            plugin_silent_after: DEFAULT_SILENT_AFTER,
        }
    }
}

/// Why a request to `/events` was refused; each maps to a status and a JSON body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("missing or wrong token (send Authorization: Bearer <token> or x-sidepanel-token)")]
    Unauthorized,
    #[error("only POST is allowed on /events")]
    MethodNotAllowed,
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("body larger than ingest.max_body_bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("more than ingest.max_events ({0}) events in one batch")]
    TooManyEvents(usize),
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("no valid event: {}", .0.first().map_or("empty", |(_, e)| e.as_str()))]
    Schema(Vec<(usize, String)>),
    /// The events could not be confirmed stored (hub queue full, store not committing):
    /// retry later. See [`Ingest::submit`].
    #[error("events not acknowledged: {0}; retry later")]
    Unavailable(String),
    /// More than [`MAX_IN_FLIGHT`] posts at once (a flood): nothing was read or applied.
    #[error("more than {0} plugin posts in flight; retry later")]
    Busy(usize),
}

impl IngestError {
    pub fn status(&self) -> u16 {
        match self {
            Self::Forbidden(_) => 403,
            Self::Unauthorized => 401,
            Self::MethodNotAllowed => 405,
            Self::UnsupportedMediaType => 415,
            Self::TooLarge(_) | Self::TooManyEvents(_) => 413,
            Self::Malformed(_) => 400,
            Self::Schema(_) => 422,
            Self::Unavailable(_) => 503,
            Self::Busy(_) => 429,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::Unauthorized => "unauthorized",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::TooLarge(_) => "body_too_large",
            Self::TooManyEvents(_) => "too_many_events",
            Self::Malformed(_) => "malformed_json",
            Self::Schema(_) => "invalid_event",
            Self::Unavailable(_) => "not_acknowledged",
            Self::Busy(_) => "busy",
        }
    }

    /// The JSON body: the gateway's error shape, plus the rejected events for a 422.
    pub fn body(&self) -> Bytes {
        let mut v = json!({"error": {
            "message": format!("sidepanel: {self}"),
            "type": "sidepanel_error",
            "code": self.code(),
        }});
        if let Self::Schema(list) = self {
            v["rejected"] = rejected_json(list);
        }
        v.to_string().into()
    }
}

/// What a successful `POST /events` did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accepted {
    pub accepted: usize,
    /// Events refused by the schema (index in the batch, reason); the others were accepted.
    pub rejected: Vec<(usize, String)>,
    /// With the session store: the sequence of the batch's last update, committed to the
    /// database before the answer (see [`Ingest::submit`]).
    pub sequence: Option<u64>,
}

impl Accepted {
    /// The 202 body: `{accepted, rejected}`, plus `sequence` when it was stored.
    pub fn body(&self) -> Bytes {
        let mut v = json!({"accepted": self.accepted, "rejected": rejected_json(&self.rejected)});
        if let Some(seq) = self.sequence {
            v["sequence"] = json!(seq);
        }
        v.to_string().into()
    }
}

fn rejected_json(list: &[(usize, String)]) -> Value {
    list.iter()
        .map(|(i, e)| json!({"index": i, "error": e}))
        .collect()
}

/// The ingest endpoint's logic, shared by every connection.
pub struct Ingest {
    hub: HubHandle,
    config: IngestConfig,
    access: Access,
    lean: Option<Arc<dyn LeanControl>>,
    store: Option<StoreHandle>,
    commit_timeout: Duration,
    /// Permits for posts being handled ([`MAX_IN_FLIGHT`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Told the OpenCode server URL a plugin reports (`plugin.started`'s `serverUrl`).
    server_url: std::sync::OnceLock<ServerUrlSink>,
}

/// Where [`Ingest::on_server_url`] sends a reported OpenCode server URL.
type ServerUrlSink = Box<dyn Fn(&str) + Send + Sync>;

impl Ingest {
    /// An ingest feeding `hub`, accepting requests that carry `token`. Tells the hub the
    /// plugin-silent interval.
    pub fn new(hub: HubHandle, config: IngestConfig, token: String) -> Self {
        hub.send(HubEvent::Opencode(OpencodeMessage::Settings {
            silent_after: config.plugin_silent_after,
        }));
        Self {
            hub,
            config,
            access: Access::new(token, Vec::new()),
            lean: None,
            store: None,
            commit_timeout: COMMIT_TIMEOUT,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            server_url: std::sync::OnceLock::new(),
        }
    }

    /// Hands the OpenCode server URL a plugin reports to `sink` (the `opencode serve` link,
    /// which is built after the ingest it feeds). Set once; later calls are ignored.
    pub fn on_server_url(&self, sink: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.server_url.set(Box::new(sink));
    }

    /// Answers 2xx only once the accepted events are committed to this store (see
    /// [`Ingest::submit`]); without it, as soon as they are handed to the hub.
    pub fn with_store(mut self, store: StoreHandle, timeout: Duration) -> Self {
        self.store = Some(store);
        self.commit_timeout = timeout;
        self
    }

    /// The gateway's ingest: the install token from `<data_dir>/token` (created on first run),
    /// `[ingest]` settings, the listen address as an allowed host, and `.lean` edits to `lean`.
    /// Returns the token too, for the WebSocket server.
    pub fn for_gateway(
        hub: HubHandle,
        config: &crate::config::Config,
        lean: Arc<dyn LeanControl>,
    ) -> std::io::Result<(Self, String)> {
        let token = load_or_create_token(&config.data_dir)?;
        let ingest = Self::new(hub, config.ingest.clone(), token.clone())
            .with_allowed_hosts(config.allowed_hosts.clone())
            .with_lean(lean);
        Ok((ingest, token))
    }

    /// Hosts accepted in `Host`/`Origin` besides loopback names (e.g. the listen address).
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.access = self.access.with_hosts(hosts);
        self
    }

    /// The Lean component that edited `.lean` files are handed to.
    pub fn with_lean(mut self, lean: Arc<dyn LeanControl>) -> Self {
        self.lean = Some(lean);
        self
    }

    /// The install's token and host policy (shared with the gateway's routes).
    pub fn site(&self) -> &crate::access::Site {
        self.access.site()
    }

    pub fn config(&self) -> &IngestConfig {
        &self.config
    }

    /// The gateway's metrics (accepted events, refusals).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        self.hub.metrics()
    }

    /// Checks a request's method and headers before its body is read.
    pub fn check_head(
        &self,
        method: &::http::Method,
        headers: &::http::HeaderMap,
    ) -> Result<(), IngestError> {
        self.access.check(headers)?;
        if method != ::http::Method::POST {
            return Err(IngestError::MethodNotAllowed);
        }
        let json_type = headers
            .get(::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json_type {
            return Err(IngestError::UnsupportedMediaType);
        }
        let declared = headers
            .get(::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.config.max_body_bytes as u64) {
            return Err(IngestError::TooLarge(self.config.max_body_bytes));
        }
        Ok(())
    }

    /// Validates a complete body and hands the valid events to the hub without waiting.
    pub fn accept(&self, body: &[u8]) -> Result<Accepted, IngestError> {
        let (events, accepted) = self.validate(body)?;
        self.hub.send(HubEvent::Opencode(OpencodeMessage::Batch(
            OpencodeBatch::new(SystemTime::now(), events),
        )));
        Ok(accepted)
    }

    /// Checks a complete body; returns the valid events and what to answer about them.
    pub(super) fn validate(
        &self,
        body: &[u8],
    ) -> Result<(Vec<SessionEvent>, Accepted), IngestError> {
        if body.len() > self.config.max_body_bytes {
            return Err(IngestError::TooLarge(self.config.max_body_bytes));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| IngestError::Malformed(e.to_string()))?;
        let items = match value {
            Value::Array(items) => items,
            v @ Value::Object(_) => vec![v],
            _ => {
                let e = "expected an event object or an array of them".to_owned();
                return Err(IngestError::Schema(vec![(0, e)]));
            }
        };
        if items.len() > self.config.max_events {
            return Err(IngestError::TooManyEvents(self.config.max_events));
        }
        let mut events = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match event::parse(item) {
                Ok(ev) => events.push(ev),
                Err(e) => rejected.push((i, e)),
            }
        }
        if events.is_empty() && !rejected.is_empty() {
            return Err(IngestError::Schema(rejected));
        }
        for (i, e) in &rejected {
            tracing::debug!(index = i, error = %e, "plugin event rejected");
        }
        self.check_lean(&events);
        if let Some(sink) = self.server_url.get() {
            for ev in &events {
                if let Kind::PluginStarted {
                    server_url: Some(url),
                    ..
                } = &ev.kind
                {
                    sink(url);
                }
            }
        }
        let metrics = self.hub.metrics();
        for ev in &events {
            metrics.ingest_accepted(&ev.name);
        }
        let accepted = Accepted {
            accepted: events.len(),
            rejected,
            sequence: None,
        };
        Ok((events, accepted))
    }

    /// Hands each edited `.lean` file to the Lean component (which debounces bursts).
    fn check_lean(&self, events: &[SessionEvent]) {
        let Some(lean) = &self.lean else { return };
        for ev in events {
            let file = match &ev.kind {
                Kind::FileEdited(f) => f,
                Kind::Tool {
                    file: Some(f),
                    failed: false,
                    ..
                } => f,
                _ => continue,
            };
            if !file.ends_with(".lean") {
                continue;
            }
            if let Err(e) = lean.check(file, None) {
                tracing::debug!(error = %e, "lean check of an edited file not started");
            }
        }
    }
}
