//! Configuration: the validated [`Config`] the rest of the crate runs on.
//!
//! Owns the shape every component reads. `raw` holds the serde shape of the TOML file,
//! `load` turns file + environment + CLI overrides into a [`Config`], and every error names the
//! file, the key and the reason ([`ConfigError`]).

mod error;
mod load;
mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use error::{ConfigError, Origin};
pub use load::{is_loopback_host, load, load_str, Overrides};

use crate::pricing::PriceTable;

/// The Venice API key. Never printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key; surrounding whitespace (a trailing newline in a key file) is trimmed.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        (!key.is_empty()).then(|| Self(key.to_owned()))
    }

    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where and how the gateway reaches Venice.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `https://api.venice.ai/api/v1`; `/api/v1/*` maps onto its path.
    pub url: url::Url,
    /// Host name from `url` (SNI, `Host` header, DNS).
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// Path prefix of `url` without trailing slash, e.g. `/api/v1`.
    pub base_path: String,
    /// Key injected upstream; `None` only when allowed (loopback upstream or pass-through).
    pub api_key: Option<ApiKey>,
    /// Forward the client's own `Authorization` instead of replacing it.
    pub pass_client_key: bool,
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading a response (SSE can pause for long).
    pub read_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub idle_timeout: Duration,
    /// How long a DNS answer is reused.
    pub dns_ttl: Duration,
    /// Extra CA bundle (PEM) for upstream TLS; system roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// How often `GET /models` pricing is refreshed; `None` disables it.
    pub models_refresh: Option<Duration>,
}

/// Size bounds that protect the gateway from what peers send.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest request body accepted for chat requests (they are held to be rewritten).
    pub max_request_body_bytes: usize,
    /// Largest non-streamed response body copied aside to read its usage; larger ones are
    /// forwarded untouched and counted as unscanned.
    pub max_scan_body_bytes: usize,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `tracing_subscriber::EnvFilter` directives, e.g. `info,sidepanel=debug`.
    pub filter: String,
    pub json: bool,
}

/// The built-in Venice simulator used by `demo`.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub balance_usd: f64,
    pub balance_diem: f64,
    /// Delay before the simulator answers.
    pub latency: Duration,
    /// Pause between streamed tokens.
    pub token_interval: Duration,
    /// Seconds between requests of the synthetic client; `None` runs no client.
    pub client_interval: Option<Duration>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// File the configuration came from, if any.
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Worker threads of the proxy service.
    pub threads: usize,
    /// Hosts accepted in `Host`/`Origin` besides loopback names: the listen address (when not a
    /// wildcard) and `allowed_hosts` from the file.
    pub allowed_hosts: Vec<String>,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub demo: DemoConfig,
    /// Per-model prices, used when a response carries no `cost`.
    pub pricing: PriceTable,
    /// The supervised lean-lsp-mcp server (`[lean]`).
    pub lean: LeanConfig,
    /// Rate limits, the wait queue and retries.
    pub admission: crate::admission::AdmissionConfig,
    /// OpenCode plugin events (`[ingest]`, `POST /events`).
    pub ingest: crate::ingest::IngestConfig,
    /// Session storage (`[store]`).
    pub store: crate::store::StoreConfig,
    /// The link to an `opencode serve` (`[opencode]`, `--opencode-url`).
    pub opencode: crate::opencode::OpencodeConfig,
    /// The Prometheus exposition (`[metrics]`).
    pub metrics: MetricsConfig,
}

/// The Prometheus exposition on `/metrics` (`[metrics]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Distinct `model` label values kept; later models are exported as `other`
    /// (`Metrics::with_max_models`).
    pub max_models: usize,
}

/// The supervised `lean-lsp-mcp` MCP server (`[lean]`), see `crate::lean`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeanConfig {
    /// Run the Lean component at all; when false every Lean request answers "disabled".
    pub enabled: bool,
    /// Program to spawn (looked up on `PATH` when it has no `/`).
    pub command: String,
    pub args: Vec<String>,
    /// Exported as `LEAN_PROJECT_PATH`; `None` leaves it unset (the server then finds the
    /// project by walking up from each file).
    pub project_path: Option<PathBuf>,
    /// Quiet time after the last edit of a file before it is checked (bursts coalesce).
    pub debounce: Duration,
    /// Longest wait for one MCP request; past it the server counts as hung and is restarted.
    pub call_timeout: Duration,
    /// Upper bound of the restart backoff, and the retry period while the command is missing.
    pub restart_backoff_max: Duration,
}

impl Default for LeanConfig {
    /// The documented defaults of `[lean]`.
    fn default() -> Self {
        Self {
            enabled: raw::defaults::LEAN_ENABLED,
            command: raw::defaults::LEAN_COMMAND.to_owned(),
            args: Vec::new(),
            project_path: None,
            debounce: Duration::from_millis(300),
            call_timeout: Duration::from_secs(20),
            restart_backoff_max: Duration::from_secs(30),
        }
    }
}
