//! Who may post events: the `Host`/`Origin` checks (DNS-rebinding and cross-site defence) and
//! the per-install token, plus creating and reading that token file.
//!
//! Owns [`load_or_create_token`] (`<data_dir>/token`, 32 random bytes as hex, mode 0600) and
//! [`Access`], which checks a request's headers: `Host` must be a loopback name or address or
//! an allowed host (the listen address), `Origin`, when sent, `http://` plus such a host (403
//! otherwise); the token must come as `Authorization: Bearer <token>` or `x-sidepanel-token`
//! (401 otherwise). Tokens are compared in constant time and never logged.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::HeaderMap;

use super::IngestError;

/// Name of the token file inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// Header that may carry the token instead of `Authorization`.
pub const TOKEN_HEADER: &str = "x-sidepanel-token";
/// Random bytes in a new token (hex-encoded: 64 characters).
const TOKEN_BYTES: usize = 32;

/// Reads `<data_dir>/token`, creating it (and the directory, mode 0700) on first run with 32
/// random bytes as hex, mode 0600. An existing file readable by others is narrowed to 0600.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    if !data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)?;
    }
    let path = data_dir.join(TOKEN_FILE);
    match read_token(&path) {
        Ok(t) => return Ok(t),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let token = random_hex(TOKEN_BYTES)?;
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut f) => {
            f.write_all(format!("{token}\n").as_bytes())?;
            f.sync_all()?;
            Ok(token)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(&path),
        Err(e) => Err(e),
    }
}

fn read_token(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    let token = fs::read_to_string(path)?.trim().to_owned();
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} does not hold a token (16+ printable characters); delete it to create a new one",
                path.display()
            ),
        ));
    }
    Ok(token)
}

fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The checks of one install: its token and the hosts it answers to.
#[derive(Clone)]
pub struct Access {
    token: String,
    allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &"<redacted>")
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl Access {
    pub fn new(token: String, allowed_hosts: Vec<String>) -> Self {
        let allowed_hosts = allowed_hosts.iter().filter_map(|h| host_name(h)).collect();
        Self {
            token,
            allowed_hosts,
        }
    }

    /// The same token, answering to `hosts` besides loopback names.
    pub fn with_hosts(self, hosts: Vec<String>) -> Self {
        Self::new(self.token, hosts)
    }

    /// Checks `Host`, `Origin` (403) and the token (401), in that order.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), IngestError> {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(host_name);
        if !host.is_some_and(|h| self.allowed(&h)) {
            return Err(IngestError::Forbidden(
                "Host is not this gateway (only loopback names and the listen address)",
            ));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .and_then(host_name)
                .is_some_and(|h| self.allowed(&h));
            if !ok {
                return Err(IngestError::Forbidden(
                    "Origin is not this gateway (only http:// loopback names and the listen address)",
                ));
            }
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let header = headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if bearer.or(header).is_some_and(|t| same(t, &self.token)) {
            Ok(())
        } else {
            Err(IngestError::Unauthorized)
        }
    }

    fn allowed(&self, host: &str) -> bool {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self.allowed_hosts.iter().any(|h| h == host)
    }
}

/// The host part of an authority (`host`, `host:port`, `[v6]:port`), lower-cased, without a
/// trailing dot; `None` when it is not well formed.
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

/// Compares without stopping at the first difference (the token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
