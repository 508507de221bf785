//! The serde shape of `sidepanel.toml`, exactly as written by the user.
//!
//! Owns the file format only: every section and key the file may hold, all optional, with
//! unknown keys refused. Nothing here is validated or defaulted — durations stay strings,
//! numbers stay as written — so that `load` can name the key of any bad value. The default
//! values live here too ([`defaults`]) so the file format and its defaults sit side by side.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Default values of every key, as they would be written in the file.
pub(crate) mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8765";
    /// `~` is expanded from `$HOME`.
    pub const DATA_DIR: &str = "~/.config/opencode-sidepanel";
    pub const THREADS: u64 = 2;

    pub const UPSTREAM_URL: &str = "https://api.venice.ai/api/v1";
    pub const PASS_CLIENT_KEY: bool = false;
    pub const CONNECT_TIMEOUT: &str = "5s";
    pub const READ_TIMEOUT: &str = "300s";
    pub const IDLE_TIMEOUT: &str = "90s";
    pub const DNS_TTL: &str = "60s";
    pub const MODELS_REFRESH: &str = "6h";

    /// 32 MiB.
    pub const MAX_REQUEST_BODY_BYTES: u64 = 32 * 1024 * 1024;
    /// 8 MiB.
    pub const MAX_SCAN_BODY_BYTES: u64 = 8 * 1024 * 1024;

    pub const LOG_FILTER: &str = "info";
    pub const LOG_FORMAT: &str = "text";

    pub const DEMO_BALANCE_USD: f64 = 25.0;
    pub const DEMO_BALANCE_DIEM: f64 = 10.0;
    pub const DEMO_LATENCY: &str = "150ms";
    pub const DEMO_TOKEN_INTERVAL: &str = "30ms";
    pub const DEMO_CLIENT_INTERVAL: &str = "3s";

    pub const LEAN_ENABLED: bool = true;
    pub const LEAN_COMMAND: &str = "lean-lsp-mcp";
    /// `""` = `LEAN_PROJECT_PATH` left unset.
    pub const LEAN_PROJECT_PATH: &str = "";
    pub const LEAN_DEBOUNCE: &str = "300ms";
    pub const LEAN_CALL_TIMEOUT: &str = "20s";
    pub const LEAN_RESTART_BACKOFF_MAX: &str = "30s";

    /// 1 MiB.
    pub const INGEST_MAX_BODY_BYTES: u64 = 1024 * 1024;
    pub const INGEST_MAX_EVENTS: u64 = 1000;
    pub const INGEST_PLUGIN_SILENT_AFTER: &str = "60s";

    /// The hub's own cap on models it tracks.
    pub const METRICS_MAX_MODELS: u64 = crate::hub::state::MAX_MODELS as u64;
}

/// The whole file. Every field is optional; a missing one takes its default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawConfig {
    /// Socket address of the public listener, e.g. `127.0.0.1:8765`.
    pub listen: Option<String>,
    /// Where the database, install token and exports live; `~` expands to `$HOME`.
    pub data_dir: Option<String>,
    /// Worker threads of the proxy service (1..=64).
    pub threads: Option<u64>,
    /// Host names the gateway answers to besides loopback names and the listen address (for
    /// `Host`/`Origin` checks), e.g. `["sidepanel.lan"]`.
    pub allowed_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub demo: RawDemo,
    #[serde(default)]
    pub pricing: RawPricing,
    #[serde(default)]
    pub lean: RawLean,
    #[serde(default)]
    pub admission: RawAdmission,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub opencode: RawOpencode,
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`: the Prometheus exposition on `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawMetrics {
    /// Distinct `model` label values kept (1..=64); later models are exported as `other`.
    pub max_models: Option<u64>,
}

/// `[ingest]`: OpenCode plugin events on `POST /events`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawIngest {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: Option<u64>,
    /// Most events in one batch.
    pub max_events: Option<u64>,
    /// Proxied OpenCode traffic without a plugin event for this long raises an alert.
    pub plugin_silent_after: Option<String>,
}

/// `[opencode]`: the link to an `opencode serve` (its event stream, session revert). The
/// password is not in the file: it comes from `OPENCODE_SERVER_PASSWORD`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawOpencode {
    /// Base URL, e.g. `http://127.0.0.1:4096`; `""` = none (learned from the plugin if it says).
    pub url: Option<String>,
    /// Basic-auth user name; `OPENCODE_SERVER_USERNAME` wins.
    pub username: Option<String>,
    /// Humantime durations.
    pub request_timeout: Option<String>,
    pub reconnect_min: Option<String>,
    pub reconnect_max: Option<String>,
    pub idle_timeout: Option<String>,
    /// Failed attempts in a row before the server counts as gone.
    pub gone_after: Option<u64>,
}

/// `[upstream]`: where and how Venice is reached.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawUpstream {
    /// Base URL, `http` or `https`, no query or fragment.
    pub url: Option<String>,
    /// File holding the API key; used only when `VENICE_API_KEY` is not set. `""` = none.
    pub api_key_file: Option<String>,
    /// Forward the client's own `Authorization` header instead of injecting the key.
    pub pass_client_key: Option<bool>,
    /// Humantime durations (`"500ms"`, `"5s"`, `"2m"`).
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub dns_ttl: Option<String>,
    /// Extra CA bundle (PEM); `""` = system roots only.
    pub ca_file: Option<String>,
    /// Pricing refresh period; `"0s"` or `"off"` disables it.
    pub models_refresh: Option<String>,
}

/// `[limits]`: size bounds on what peers send.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawLimits {
    pub max_request_body_bytes: Option<u64>,
    pub max_scan_body_bytes: Option<u64>,
}

/// `[log]`: logging.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawLog {
    /// `tracing` env-filter directives.
    pub filter: Option<String>,
    /// `"text"` or `"json"`.
    pub format: Option<String>,
}

/// `[demo]`: the built-in Venice simulator and its synthetic client.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawDemo {
    pub balance_usd: Option<f64>,
    pub balance_diem: Option<f64>,
    pub latency: Option<String>,
    pub token_interval: Option<String>,
    /// `"off"` (or `"0s"`) runs no synthetic client.
    pub client_interval: Option<String>,
}

/// `[admission]`: rate limits, the wait queue and retries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawAdmission {
    pub enabled: Option<bool>,
    pub max_wait: Option<String>,
    pub max_queue: Option<u64>,
    pub window: Option<String>,
    pub default_rpm: Option<u64>,
    pub default_tpm: Option<u64>,
    pub max_attempts: Option<u64>,
    pub backoff_base: Option<String>,
    pub backoff_max: Option<String>,
    /// `GET /api_keys/rate_limits` period; `"off"` disables it.
    pub limits_refresh: Option<String>,
    /// `[admission.models."<model id>"]`.
    #[serde(default)]
    pub models: BTreeMap<String, RawModelLimits>,
    /// `[admission.budget]`.
    #[serde(default)]
    pub budget: RawBudget,
}

/// Balance alerts and the hard floor; all off unless set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawBudget {
    pub alert_diem_below: Option<f64>,
    pub alert_usd_below: Option<f64>,
    pub floor_usd: Option<f64>,
}

/// Per-model limits per window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawModelLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// `[pricing]`: per-model prices merged over the built-in Venice table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawPricing {
    /// `[pricing.models."<model id>"]`; sorted so errors come out in a stable order.
    #[serde(default)]
    pub models: BTreeMap<String, RawPrice>,
}

/// USD per one million tokens for one model. A field left out is taken from the built-in
/// price of the same model; for a model the built-in table lacks, `input` and `output` are
/// required.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawPrice {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cache_input: Option<f64>,
    pub cache_write: Option<f64>,
}

/// `[store]`: session storage (encrypted SQLite event log, snapshots, retention).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawStore {
    pub enabled: Option<bool>,
    /// Database file; `""` = `<data_dir>/sessions/sidepanel.db`.
    pub path: Option<String>,
    /// Random key file used without `SIDEPANEL_PASSPHRASE`; `""` = `<data_dir>/store.key`.
    pub key_file: Option<String>,
    pub snapshot_every: Option<u64>,
    /// Humantime duration; `"0ms"` commits every update at once.
    pub flush_interval: Option<String>,
    /// `0` keeps everything.
    pub retention_days: Option<u64>,
    /// `0` = no size bound.
    pub max_bytes: Option<u64>,
}

/// `[lean]`: the supervised lean-lsp-mcp MCP server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) struct RawLean {
    pub enabled: Option<bool>,
    /// Program to spawn; looked up on `PATH` when it has no `/`.
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    /// `LEAN_PROJECT_PATH` for the server; `""` leaves it unset.
    pub project_path: Option<String>,
    pub debounce: Option<String>,
    pub call_timeout: Option<String>,
    pub restart_backoff_max: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_none() {
        let raw: RawConfig = toml::from_str("").expect("empty file parses");
        assert_eq!(raw, RawConfig::default());
    }

    #[test]
    fn price_sections_parse() {
        let raw: RawConfig =
            toml::from_str("[pricing.models.\"kimi-k2-5\"]\ninput = 0.5\noutput = 3\n")
                .expect("pricing parses");
        let price = raw
            .pricing
            .models
            .get("kimi-k2-5")
            .copied()
            .unwrap_or_default();
        assert_eq!(price.input, Some(0.5));
        assert_eq!(price.output, Some(3.0));
        assert_eq!(price.cache_write, None);
    }
}
