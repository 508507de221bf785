//! Who may reach the gateway's own routes: the `Host`/`Origin` policy (DNS-rebinding and
//! cross-site defence) and the per-install token.
//!
//! Owns [`Site`] (an install's token and host policy), [`host_name`] (the one parser of `Host`/`Origin` authorities), [`is_loopback_host`],
//! [`HostPolicy`] (loopback names plus the configured hosts, any port), [`bearer`] and
//! [`same_secret`] (constant-time comparison), and, in [`token`], the token file. The ingest
//! (`/events`), the WebSocket server (`/ws`), the dashboard page and the proxied routes all ask
//! this module, so they cannot drift apart.

mod token;

use std::net::IpAddr;

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::HeaderMap;
use subtle::ConstantTimeEq;

pub use token::{load_or_create_token, TOKEN_FILE};

/// Header that may carry the token instead of `Authorization`.
pub const TOKEN_HEADER: &str = "x-sidepanel-token";

/// Why a request was refused by [`HostPolicy::check`]: always a 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{}", Denied::Host.message())]
    Host,
    #[error("{}", Denied::Origin.message())]
    Origin,
}

impl Denied {
    /// The refusal as a static message (for error bodies).
    pub const fn message(self) -> &'static str {
        match self {
            Denied::Host => {
                "Host is not this gateway (only loopback names, the listen address and allowed_hosts)"
            }
            Denied::Origin => {
                "Origin is not this gateway (only http:// loopback names, the listen address and allowed_hosts)"
            }
        }
    }
}

/// One install's access: its token and the hosts it answers to. Shared by the ingest, the
/// WebSocket server and the gateway's routes.
#[derive(Clone)]
pub struct Site {
    token: String,
    hosts: HostPolicy,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("token", &"<redacted>")
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl Site {
    pub fn new<S: AsRef<str>>(token: String, allowed_hosts: &[S]) -> Self {
        Self {
            token,
            hosts: HostPolicy::new(allowed_hosts),
        }
    }

    /// The install token (for the dashboard page; never log it).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn hosts(&self) -> &HostPolicy {
        &self.hosts
    }

    /// Whether `presented` is this install's token.
    pub fn is_token(&self, presented: &str) -> bool {
        same_secret(presented, &self.token)
    }

    /// Whether the request carries the token as a bearer or `x-sidepanel-token` header.
    pub fn has_token(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.is_token(t))
    }
}

/// The hosts a request may name in `Host` and `Origin`: loopback names and addresses, and the
/// configured ones (compared by [`host_name`], any port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    allowed: Vec<String>,
}

impl HostPolicy {
    /// Loopback plus `hosts` (each a name, an address or an authority with a port; malformed
    /// entries are ignored, the config loader has already named them).
    pub fn new<S: AsRef<str>>(hosts: &[S]) -> Self {
        let mut allowed: Vec<String> = hosts.iter().filter_map(|h| host_name(h.as_ref())).collect();
        allowed.sort();
        allowed.dedup();
        Self { allowed }
    }

    /// Whether `host` (already a [`host_name`]) is loopback or allowed.
    pub fn allows(&self, host: &str) -> bool {
        is_loopback_host(host) || self.allowed.iter().any(|h| h == host)
    }

    /// Checks `Host` (required) and `Origin` (when sent: `http://` plus an allowed host).
    /// Clients that are not browsers (OpenCode, curl, Prometheus) send no `Origin`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Denied> {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(host_name);
        if !host.is_some_and(|h| self.allows(&h)) {
            return Err(Denied::Host);
        }
        match headers.get(ORIGIN) {
            None => Ok(()),
            Some(origin) => origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .and_then(host_name)
                .filter(|h| self.allows(h))
                .map(|_| ())
                .ok_or(Denied::Origin),
        }
    }
}

/// The host part of an authority (`host`, `host:port`, `[v6]:port`, or a bare IPv6 address),
/// lower-cased, without a trailing dot or slash; `None` when it is not well formed.
pub fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim().trim_end_matches('/');
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        match after {
            "" => (h, None),
            _ => (h, Some(after.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            // A bare IPv6 address (an allowed host given as `::1`).
            Some(_) if a.parse::<IpAddr>().is_ok() => (a, None),
            Some(_) => return None,
            None => (a, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.contains(['/', '@', ' ', '\\']) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// True for `localhost`, `127.0.0.0/8`, `::1` and `::ffff:127.x` (brackets allowed): the hosts
/// that are this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The token a request presents: `Authorization: Bearer <token>` or `x-sidepanel-token`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    authorization.or_else(|| {
        headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    })
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn host_names_are_parsed_with_any_port() {
        assert_eq!(host_name("127.0.0.1:8080").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("LocalHost.").as_deref(), Some("localhost"));
        assert_eq!(host_name("[::1]:9").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("::1").as_deref(), Some("::1"));
        assert_eq!(host_name("example.test/").as_deref(), Some("example.test"));
        for bad in [
            "", ":80", "a:b", "[::1", "[::1]x", "a b", "u@h", "h:", "a\\b", "x:y:z",
        ] {
            assert_eq!(host_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for ok in [
            "localhost",
            "127.3.2.1",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for no in [
            "api.venice.ai",
            "10.0.0.1",
            "0.0.0.0",
            "localhost.evil.test",
            "::",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn host_and_origin_must_be_loopback_or_allowed() {
        let policy = HostPolicy::new(&["sidepanel.lan:8080", "192.168.1.5"]);
        let ok = [
            vec![("host", "127.0.0.1:1")],
            vec![("host", "[::1]:1"), ("origin", "http://localhost:1")],
            vec![
                ("host", "sidepanel.lan"),
                ("origin", "http://sidepanel.lan:9"),
            ],
            vec![("host", "192.168.1.5:80")],
        ];
        for h in ok {
            assert_eq!(policy.check(&headers(&h)), Ok(()), "{h:?}");
        }
        let refused = [
            (vec![], Denied::Host),
            (vec![("host", "evil.test")], Denied::Host),
            (vec![("host", "127.0.0.1.evil.test")], Denied::Host),
            (
                vec![("host", "localhost"), ("origin", "http://evil.test")],
                Denied::Origin,
            ),
            (
                vec![("host", "localhost"), ("origin", "https://localhost")],
                Denied::Origin,
            ),
            (
                vec![("host", "localhost"), ("origin", "null")],
                Denied::Origin,
            ),
        ];
        for (h, why) in refused {
            assert_eq!(policy.check(&headers(&h)), Err(why), "{h:?}");
        }
    }

    #[test]
    fn the_token_comes_as_bearer_or_header() {
        assert_eq!(
            bearer(&headers(&[("authorization", "Bearer abc ")])),
            Some("abc")
        );
        assert_eq!(
            bearer(&headers(&[("authorization", "bearer abc")])),
            Some("abc")
        );
        assert_eq!(bearer(&headers(&[("x-sidepanel-token", "t")])), Some("t"));
        assert_eq!(bearer(&headers(&[("authorization", "Basic abc")])), None);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
