//! The upstream: where requests go, how to reach it, and which key they carry.
//!
//! Owns the async, cached DNS lookup (pingora's `HttpPeer::new` with a host name would resolve
//! with blocking std DNS on a proxy thread), building the [`HttpPeer`] (rustls with SNI and
//! hostname verification, ALPN h2 then HTTP/1.1, timeouts) and the header rewrite that maps
//! `/api/v1/*` onto the upstream's base path and injects the key.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Uri;
use parking_lot::Mutex;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::config::UpstreamConfig;

/// The path prefix clients use for the proxied Venice API.
pub const CLIENT_PREFIX: &str = "/api/v1";

/// The upstream with its DNS cache.
pub struct Upstream {
    config: UpstreamConfig,
    dns: Mutex<Option<(Vec<SocketAddr>, Instant)>>,
    authorization: Option<http::HeaderValue>,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Self {
        let authorization = config.api_key.as_ref().and_then(|k| {
            let mut v = http::HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        Self {
            config,
            dns: Mutex::new(None),
            authorization,
        }
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Resolves the upstream host asynchronously, reusing an answer for `dns_ttl`. When a fresh
    /// lookup fails, a stale answer is used rather than failing the request.
    ///
    /// The lookup is bounded by `connect_timeout` (a resolver that never answers must not hold
    /// the request past the configured timeouts), and its errors are marked as the upstream's,
    /// so the client gets 502 `upstream_unreachable` (504 when it timed out), not a 500.
    pub async fn resolve(&self) -> Result<SocketAddr> {
        if let Some((addrs, at)) = self.dns.lock().as_ref() {
            if at.elapsed() < self.config.dns_ttl {
                if let Some(a) = addrs.first() {
                    return Ok(*a);
                }
            }
        }
        let host = &self.config.host;
        let wait = self.config.connect_timeout;
        let lookup = tokio::net::lookup_host((host.as_str(), self.config.port));
        let failure = match tokio::time::timeout(wait, lookup).await {
            Ok(Ok(found)) => {
                let mut addrs: Vec<SocketAddr> = found.collect();
                // Prefer IPv4: loopback-only sandboxes and many home networks lack v6 routes.
                addrs.sort_by_key(|a| a.is_ipv6());
                let first = addrs.first().copied();
                *self.dns.lock() = Some((addrs, Instant::now()));
                return first.ok_or_else(|| {
                    dns_error(
                        ErrorType::ConnectNoRoute,
                        format!("DNS: no address for {host}"),
                    )
                });
            }
            Ok(Err(e)) => (ErrorType::ConnectNoRoute, e.to_string()),
            Err(_) => (
                ErrorType::ConnectTimedout,
                format!("no answer within {wait:?}"),
            ),
        };
        let stale = self
            .dns
            .lock()
            .as_ref()
            .and_then(|(a, _)| a.first().copied());
        let (etype, why) = failure;
        match stale {
            Some(a) => {
                tracing::warn!(%host, error = %why, "DNS lookup failed; using the previous answer");
                Ok(a)
            }
            None => Err(dns_error(
                etype,
                format!("DNS lookup of {host} failed: {why}"),
            )),
        }
    }

    /// Builds the peer for one request.
    pub async fn peer(&self) -> Result<Box<HttpPeer>> {
        let addr = self.resolve().await?;
        let c = &self.config;
        let mut peer = HttpPeer::new(addr, c.tls, c.host.clone());
        if c.tls {
            peer.options.set_http_version(2, 1);
        }
        peer.options.connection_timeout = Some(c.connect_timeout);
        peer.options.total_connection_timeout = Some(c.connect_timeout + Duration::from_secs(5));
        peer.options.read_timeout = Some(c.read_timeout);
        peer.options.write_timeout = Some(c.read_timeout);
        peer.options.idle_timeout = Some(c.idle_timeout);
        Ok(Box::new(peer))
    }

    /// Rewrites the request for the upstream: path onto the base path, `Host`, the key, and
    /// `accept-encoding: identity` so response bodies can be scanned.
    pub fn rewrite_request(&self, req: &mut RequestHeader) -> Result<()> {
        let path_and_query = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let rest = path_and_query
            .strip_prefix(CLIENT_PREFIX)
            .unwrap_or(path_and_query);
        let new = format!("{}{}", self.config.base_path, rest);
        let uri: Uri = new
            .parse()
            .map_err(|e| Error::explain(ErrorType::InvalidHTTPHeader, format!("bad path: {e}")))?;
        req.set_uri(uri);
        let host = if self.is_default_port() {
            self.config.host.clone()
        } else {
            format!("{}:{}", self.config.host, self.config.port)
        };
        req.insert_header(http::header::HOST, host)?;
        req.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        let client_key = req.headers.contains_key(http::header::AUTHORIZATION);
        if !self.config.pass_client_key || !client_key {
            req.remove_header(&http::header::AUTHORIZATION);
            if let Some(v) = &self.authorization {
                req.insert_header(http::header::AUTHORIZATION, v.clone())?;
            }
        }
        Ok(())
    }

    fn is_default_port(&self) -> bool {
        matches!(
            (self.config.tls, self.config.port),
            (true, 443) | (false, 80)
        )
    }
}

/// A failed lookup, as an upstream error (pingora leaves errors from `upstream_peer` unsourced).
fn dns_error(etype: ErrorType, context: String) -> Box<Error> {
    Error::explain(etype, context).into_up()
}
