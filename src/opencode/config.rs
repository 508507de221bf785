//! Settings of the OpenCode server link (`[opencode]` in the config file, `--opencode-url`,
//! `OPENCODE_SERVER_PASSWORD` / `OPENCODE_SERVER_USERNAME`).
//!
//! Owns [`OpencodeConfig`] (validated by `config::load`), the [`Password`] wrapper that never
//! prints, and the documented defaults. The link is off unless a URL is configured or learned
//! at run time ([`crate::opencode::LinkHandle::learn_url`]).

use std::time::Duration;

/// Environment variable with the `opencode serve` Basic-auth password (the same name OpenCode
/// itself reads, facts/opencode.md §4.1).
pub const PASSWORD_ENV: &str = "OPENCODE_SERVER_PASSWORD";
/// Environment variable with the Basic-auth user name (OpenCode's default is `opencode`).
pub const USERNAME_ENV: &str = "OPENCODE_SERVER_USERNAME";

/// Defaults of `[opencode]`, as they would be written in the file.
pub mod defaults {
    /// `""`: no server configured (the link stays `disabled` until one is learned).
    pub const URL: &str = "";
    pub const USERNAME: &str = "opencode";
    pub const REQUEST_TIMEOUT: &str = "2s";
    pub const RECONNECT_MIN: &str = "250ms";
    pub const RECONNECT_MAX: &str = "30s";
    pub const IDLE_TIMEOUT: &str = "35s";
    pub const GONE_AFTER: u32 = 3;
}

/// The `opencode serve` Basic-auth password. `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password; an empty one is none.
    pub fn new(text: &str) -> Option<Self> {
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    /// The password itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The validated `[opencode]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpencodeConfig {
    /// Base URL of `opencode serve`, e.g. `http://127.0.0.1:4096`; `None` = not configured.
    pub url: Option<url::Url>,
    /// Basic-auth user name (used only with a password).
    pub username: String,
    /// Basic-auth password, from `OPENCODE_SERVER_PASSWORD`; `None` = no auth.
    pub password: Option<Password>,
    /// Timeout of every short request (health check, revert): the server's port accepts
    /// connections before it answers, and a request without a timeout can hang for minutes.
    pub request_timeout: Duration,
    /// Reconnect backoff: first wait, doubled (with jitter) up to `reconnect_max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// An event stream silent for this long is dropped and reopened (the server sends a
    /// heartbeat every 10 s).
    pub idle_timeout: Duration,
    /// Consecutive failed attempts to reach the server after which it counts as gone.
    pub gone_after: u32,
}

fn parse(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or(Duration::from_secs(1))
}

impl Default for OpencodeConfig {
    /// The documented defaults: no server, user `opencode`, no password.
    fn default() -> Self {
        Self {
            url: None,
            username: defaults::USERNAME.to_owned(),
            password: None,
            request_timeout: parse(defaults::REQUEST_TIMEOUT),
            reconnect_min: parse(defaults::RECONNECT_MIN),
            reconnect_max: parse(defaults::RECONNECT_MAX),
            idle_timeout: parse(defaults::IDLE_TIMEOUT),
            gone_after: defaults::GONE_AFTER,
        }
    }
}

/// Checks an OpenCode server URL: `http` (OpenCode serves plain HTTP; the gateway has no
/// client TLS), a host, no credentials, query or fragment. The error says why.
pub fn parse_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "scheme must be http (opencode serve speaks plain HTTP), not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL; set OPENCODE_SERVER_PASSWORD".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_never_printed() {
        let p = Password::new("s3cret").expect("non-empty");
        assert!(!format!("{p:?}").contains("s3cret"));
        let c = OpencodeConfig {
            password: Some(p),
            ..OpencodeConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(Password::new(""), None);
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("http://127.0.0.1:4096").is_ok());
        assert!(parse_url("http://localhost:4096/").is_ok());
        assert!(parse_url("https://x:1").unwrap_err().contains("http"));
        assert!(parse_url("http://u:p@x:1")
            .unwrap_err()
            .contains("credentials"));
        assert!(parse_url("http://x:1/?a=1").unwrap_err().contains("query"));
        assert!(parse_url("nonsense").is_err());
    }

    #[test]
    fn defaults_parse() {
        let c = OpencodeConfig::default();
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.reconnect_min, Duration::from_millis(250));
        assert_eq!(c.reconnect_max, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(35));
    }
}
