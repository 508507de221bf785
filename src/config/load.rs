//! Loading: file + environment + command line -> validated [`Config`].
//!
//! Owns [`Overrides`], [`load`] and the validation of every key. Precedence is overrides
//! (CLI flags and the environment, resolved by clap) over the file over the built-in defaults.
//! The Venice key comes from `VENICE_API_KEY` first, then `upstream.api_key_file`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod admission;
mod ingest;
mod opencode;
mod store;

use self::values::{
    duration, expand_path, non_negative, optional_duration, pick, positive_duration, pricing,
};
use super::error::{ConfigError, Origin};
use super::raw::{defaults, RawConfig};
use super::{ApiKey, Config, DemoConfig, LimitsConfig, LogConfig, MetricsConfig, UpstreamConfig};

/// Values that win over the file: command-line flags, `SIDEPANEL_*` and `VENICE_API_KEY`.
#[derive(Default, Clone)]
pub struct Overrides {
    /// Configuration file; `None` loads the built-in defaults only.
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    /// Replaces `upstream.url`.
    pub upstream: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// From `VENICE_API_KEY`; wins over `upstream.api_key_file`. Never printed.
    pub api_key: Option<String>,
    /// Replaces `log.filter`.
    pub log_filter: Option<String>,
    /// Replaces `opencode.url` (`--opencode-url`).
    pub opencode_url: Option<String>,
    /// From `OPENCODE_SERVER_PASSWORD`. Never printed.
    pub opencode_password: Option<String>,
    /// From `OPENCODE_SERVER_USERNAME`; replaces `opencode.username`.
    pub opencode_username: Option<String>,
}

impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overrides")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .field("data_dir", &self.data_dir)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("log_filter", &self.log_filter)
            .field("opencode_url", &self.opencode_url)
            .field(
                "opencode_password",
                &self.opencode_password.as_ref().map(|_| "<redacted>"),
            )
            .field("opencode_username", &self.opencode_username)
            .finish()
    }
}

/// Reads the file named by `overrides.config` (if any), applies the overrides and validates.
pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
    let (raw, file) = match &overrides.config {
        Some(path) => (read_file(path)?, Origin::File(path.clone())),
        None => (RawConfig::default(), Origin::Default),
    };
    build(&raw, &file, overrides)
}

pub use crate::access::is_loopback_host;

/// Validates configuration `text` as if it had been read from `overrides.config` (or
/// `sidepanel.toml`), applying the overrides: [`load`] without reading the configuration file
/// (the fuzz targets and tests feed text directly). Keys that name files (`api_key_file`,
/// `ca_file`) are still read.
pub fn load_str(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    let path = overrides
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("sidepanel.toml"));
    let raw = parse_text(&path, text)?;
    build(&raw, &Origin::File(path), overrides)
}

fn read_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_text(path, &text)
}

fn parse_text(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| ConfigError::from_syntax(path, text, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| ConfigError::from_deserialize(path, text, &e))
}

fn build(raw: &RawConfig, file: &Origin, ov: &Overrides) -> Result<Config, ConfigError> {
    let (listen_text, origin) = pick(
        ov.listen.as_deref(),
        raw.listen.as_deref(),
        defaults::LISTEN,
        file,
    );
    let listen = listen_text.trim().parse::<SocketAddr>().map_err(|e| {
        ConfigError::invalid(
            &origin,
            "listen",
            format!("invalid socket address {listen_text:?} (expected e.g. 127.0.0.1:8765): {e}"),
        )
    })?;

    let data_dir = match &ov.data_dir {
        Some(dir) => match dir.to_str() {
            Some(text) => expand_path(&Origin::CommandLine, "data_dir", text)?,
            None => dir.clone(),
        },
        None => expand_path(
            file,
            "data_dir",
            raw.data_dir.as_deref().unwrap_or(defaults::DATA_DIR),
        )?,
    };

    let threads = raw.threads.unwrap_or(defaults::THREADS);
    let threads = in_range(file, "threads", threads, 1..=64)?;

    let allowed_hosts = allowed_hosts(raw, file, listen)?;
    let upstream = upstream(raw, file, ov)?;
    let store = store::store(&raw.store, file, &data_dir, upstream.api_key.as_ref())?;
    Ok(Config {
        source: ov.config.clone(),
        listen,
        data_dir,
        threads: usize::try_from(threads).unwrap_or(1),
        allowed_hosts,
        upstream,
        limits: limits(raw, file)?,
        log: log(raw, file, ov)?,
        demo: demo(raw, file)?,
        pricing: pricing(&raw.pricing, file)?,
        lean: lean(raw, file)?,
        admission: admission::admission(&raw.admission, file)?,
        ingest: ingest::ingest(&raw.ingest, file)?,
        opencode: opencode::opencode(&raw.opencode, file, ov)?,
        store,
        metrics: metrics(raw, file)?,
    })
}

/// `[metrics]`: the model-label cap, at most the hub's own cap (a larger one would change
/// nothing, since the hub already folds later models into `other`).
fn metrics(raw: &RawConfig, file: &Origin) -> Result<MetricsConfig, ConfigError> {
    let max = defaults::METRICS_MAX_MODELS;
    let max_models = raw.metrics.max_models.unwrap_or(max);
    let max_models = in_range(file, "metrics.max_models", max_models, 1..=max)?;
    Ok(MetricsConfig {
        max_models: usize::try_from(max_models).unwrap_or(1),
    })
}

/// `value` of `key` when it lies in `range`, else an error naming both.
fn in_range(
    file: &Origin,
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    let (lo, hi) = range.into_inner();
    Err(ConfigError::invalid(
        file,
        key,
        format!("{value} is out of range ({lo}..={hi})"),
    ))
}

/// The listen address (unless a wildcard, which names no host) plus `allowed_hosts`, each a
/// host name or address with an optional port.
fn allowed_hosts(
    raw: &RawConfig,
    file: &Origin,
    listen: SocketAddr,
) -> Result<Vec<String>, ConfigError> {
    let mut hosts = Vec::new();
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    for (i, host) in raw.allowed_hosts.iter().flatten().enumerate() {
        match crate::access::host_name(host) {
            Some(name) if !name.contains('*') => hosts.push(name),
            _ => {
                return Err(ConfigError::invalid(
                    file,
                    &format!("allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name or address (e.g. \"sidepanel.lan\")"),
                ))
            }
        }
    }
    Ok(hosts)
}

fn upstream(raw: &RawConfig, file: &Origin, ov: &Overrides) -> Result<UpstreamConfig, ConfigError> {
    let up = &raw.upstream;
    let (url_text, origin) = pick(
        ov.upstream.as_deref(),
        up.url.as_deref(),
        defaults::UPSTREAM_URL,
        file,
    );
    let bad = |reason: String| ConfigError::invalid(&origin, "upstream.url", reason);
    let url = url::Url::parse(url_text.trim())
        .map_err(|e| bad(format!("invalid URL {url_text:?}: {e}")))?;
    let tls = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(bad(format!("scheme must be http or https, not {other:?}"))),
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => return Err(bad(format!("{url_text:?} has no host"))),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(format!(
            "{url_text:?} must not have a query or fragment"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not belong in the URL; use upstream.api_key_file".into(),
        ));
    }
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let base_path = url.path().trim_end_matches('/').to_owned();

    let pass_client_key = up.pass_client_key.unwrap_or(defaults::PASS_CLIENT_KEY);
    let api_key = match ov.api_key.as_deref().and_then(ApiKey::new) {
        Some(key) => Some(key),
        None => match up
            .api_key_file
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            Some(path) => Some(read_key_file(file, path)?),
            None => None,
        },
    };
    if api_key.is_none() && !pass_client_key && !is_loopback_host(&host) {
        return Err(ConfigError::MissingApiKey { host });
    }

    let ca_file = match up
        .ca_file
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        Some(text) => {
            let path = expand_path(file, "upstream.ca_file", text)?;
            std::fs::metadata(&path).map_err(|source| ConfigError::ReadFile {
                origin: file.clone(),
                key: "upstream.ca_file".into(),
                path: path.clone(),
                source,
            })?;
            Some(path)
        }
        None => None,
    };

    Ok(UpstreamConfig {
        url,
        host,
        port,
        tls,
        base_path,
        api_key,
        pass_client_key,
        connect_timeout: positive_duration(
            file,
            "upstream.connect_timeout",
            up.connect_timeout.as_deref(),
            defaults::CONNECT_TIMEOUT,
        )?,
        read_timeout: positive_duration(
            file,
            "upstream.read_timeout",
            up.read_timeout.as_deref(),
            defaults::READ_TIMEOUT,
        )?,
        idle_timeout: positive_duration(
            file,
            "upstream.idle_timeout",
            up.idle_timeout.as_deref(),
            defaults::IDLE_TIMEOUT,
        )?,
        dns_ttl: duration(
            file,
            "upstream.dns_ttl",
            up.dns_ttl.as_deref().unwrap_or(defaults::DNS_TTL),
        )?,
        ca_file,
        models_refresh: optional_duration(
            file,
            "upstream.models_refresh",
            up.models_refresh
                .as_deref()
                .unwrap_or(defaults::MODELS_REFRESH),
        )?,
    })
}

fn read_key_file(file: &Origin, text: &str) -> Result<ApiKey, ConfigError> {
    const KEY: &str = "upstream.api_key_file";
    let path = expand_path(file, KEY, text)?;
    let contents = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
        origin: file.clone(),
        key: KEY.into(),
        path: path.clone(),
        source,
    })?;
    ApiKey::new(&contents)
        .ok_or_else(|| ConfigError::invalid(file, KEY, format!("{} is empty", path.display())))
}

fn limits(raw: &RawConfig, file: &Origin) -> Result<LimitsConfig, ConfigError> {
    let size = |key: &str, value: Option<u64>, default: u64| {
        let value = value.unwrap_or(default);
        match usize::try_from(value) {
            Ok(n) if n > 0 => Ok(n),
            Ok(_) => Err(ConfigError::invalid(file, key, "must be greater than 0")),
            Err(_) => Err(ConfigError::invalid(
                file,
                key,
                format!("{value} is too large"),
            )),
        }
    };
    Ok(LimitsConfig {
        max_request_body_bytes: size(
            "limits.max_request_body_bytes",
            raw.limits.max_request_body_bytes,
            defaults::MAX_REQUEST_BODY_BYTES,
        )?,
        max_scan_body_bytes: size(
            "limits.max_scan_body_bytes",
            raw.limits.max_scan_body_bytes,
            defaults::MAX_SCAN_BODY_BYTES,
        )?,
    })
}

fn log(raw: &RawConfig, file: &Origin, ov: &Overrides) -> Result<LogConfig, ConfigError> {
    let (filter, origin) = pick(
        ov.log_filter.as_deref(),
        raw.log.filter.as_deref(),
        defaults::LOG_FILTER,
        file,
    );
    let filter = filter.trim();
    if filter.is_empty() {
        return Err(ConfigError::invalid(
            &origin,
            "log.filter",
            "must not be empty (e.g. \"info\")",
        ));
    }
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(filter) {
        return Err(ConfigError::invalid(
            &origin,
            "log.filter",
            format!("invalid filter {filter:?}: {e}"),
        ));
    }
    let json = match raw
        .log
        .format
        .as_deref()
        .unwrap_or(defaults::LOG_FORMAT)
        .trim()
    {
        "text" => false,
        "json" => true,
        other => {
            return Err(ConfigError::invalid(
                file,
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            ))
        }
    };
    Ok(LogConfig {
        filter: filter.to_owned(),
        json,
    })
}

fn demo(raw: &RawConfig, file: &Origin) -> Result<DemoConfig, ConfigError> {
    let d = &raw.demo;
    Ok(DemoConfig {
        balance_usd: non_negative(
            file,
            "demo.balance_usd",
            d.balance_usd.unwrap_or(defaults::DEMO_BALANCE_USD),
        )?,
        balance_diem: non_negative(
            file,
            "demo.balance_diem",
            d.balance_diem.unwrap_or(defaults::DEMO_BALANCE_DIEM),
        )?,
        latency: duration(
            file,
            "demo.latency",
            d.latency.as_deref().unwrap_or(defaults::DEMO_LATENCY),
        )?,
        token_interval: duration(
            file,
            "demo.token_interval",
            d.token_interval
                .as_deref()
                .unwrap_or(defaults::DEMO_TOKEN_INTERVAL),
        )?,
        client_interval: optional_duration(
            file,
            "demo.client_interval",
            d.client_interval
                .as_deref()
                .unwrap_or(defaults::DEMO_CLIENT_INTERVAL),
        )?,
    })
}

/// `[lean]`: the supervised lean-lsp-mcp server.
fn lean(raw: &RawConfig, file: &Origin) -> Result<super::LeanConfig, ConfigError> {
    let l = &raw.lean;
    let command = l
        .command
        .as_deref()
        .unwrap_or(defaults::LEAN_COMMAND)
        .trim();
    if command.is_empty() {
        return Err(ConfigError::invalid(
            file,
            "lean.command",
            "must not be empty",
        ));
    }
    let project_path = match l
        .project_path
        .as_deref()
        .unwrap_or(defaults::LEAN_PROJECT_PATH)
        .trim()
    {
        "" => None,
        text => Some(expand_path(file, "lean.project_path", text)?),
    };
    let enabled = l.enabled.unwrap_or(defaults::LEAN_ENABLED);
    if let Some(dir) = project_path.as_ref().filter(|_| enabled) {
        if !dir.is_dir() {
            let reason = format!(
                "{} is not a directory (expected a Lean project root)",
                dir.display()
            );
            return Err(ConfigError::invalid(file, "lean.project_path", reason));
        }
    }
    let timeout = |key: &str, value: Option<&str>, default: &str| {
        positive_duration(file, key, value, default)
    };
    Ok(super::LeanConfig {
        enabled,
        command: command.to_owned(),
        args: l.args.clone().unwrap_or_default(),
        project_path,
        debounce: duration(
            file,
            "lean.debounce",
            l.debounce.as_deref().unwrap_or(defaults::LEAN_DEBOUNCE),
        )?,
        call_timeout: timeout(
            "lean.call_timeout",
            l.call_timeout.as_deref(),
            defaults::LEAN_CALL_TIMEOUT,
        )?,
        restart_backoff_max: timeout(
            "lean.restart_backoff_max",
            l.restart_backoff_max.as_deref(),
            defaults::LEAN_RESTART_BACKOFF_MAX,
        )?,
    })
}

mod values;

#[cfg(test)]
mod tests;
