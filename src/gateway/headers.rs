//! Venice response headers: balance, rate limits, retry-after, model id and request id.
//!
//! Owns turning an upstream `HeaderMap` into a typed [`VeniceHeaders`] snapshot. Parsing never
//! fails the request: a malformed value is skipped and named in [`VeniceHeaders::malformed`].
//!
//! Rules shared by every header:
//! - a missing header is `None` and not malformed;
//! - only the FIRST value of a repeated header is read, even when later values differ (Venice
//!   sends each header once; a repeat is a middlebox artefact, and the first is what most HTTP
//!   clients report);
//! - a value is trimmed of surrounding whitespace; a value that is empty, not visible ASCII
//!   (e.g. non-UTF-8 bytes) or does not parse is `None` and its name is recorded once in
//!   [`VeniceHeaders::malformed`].
//!
//! Reset values come in conflicting units (facts/venice-api.md §2), so [`normalise_reset`] guesses
//! the unit from the magnitude.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde::Serialize;

/// One rate-limit dimension (requests or tokens) as the upstream reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LimitWindow {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Absolute reset instant, whatever unit the upstream used.
    #[serde(with = "crate::util::opt_epoch_ms")]
    pub reset_at: Option<SystemTime>,
}

/// Everything the gateway reads from one upstream response's headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VeniceHeaders {
    pub balance_diem: Option<f64>,
    pub balance_usd: Option<f64>,
    /// Legacy `x-venice-balance-vcu`.
    pub balance_vcu: Option<f64>,
    pub requests: LimitWindow,
    pub tokens: LimitWindow,
    /// `x-ratelimit-type`: `user` | `api_key` | `global`.
    pub limit_type: Option<String>,
    /// `retry-after`, seconds or HTTP date, as a duration from `now`.
    pub retry_after: Option<Duration>,
    pub model_id: Option<String>,
    pub cf_ray: Option<String>,
    /// Names of headers that were present but could not be parsed.
    pub malformed: Vec<&'static str>,
}

impl VeniceHeaders {
    /// Parses every header the gateway cares about; `now` anchors relative values.
    pub fn parse(headers: &HeaderMap, now: SystemTime) -> Self {
        let mut p = Reader {
            headers,
            malformed: Vec::new(),
        };
        let requests = LimitWindow {
            limit: p.read(LIMIT_REQUESTS, parse_count),
            remaining: p.read(REMAINING_REQUESTS, parse_count),
            reset_at: p.read(RESET_REQUESTS, |v| normalise_reset(v, now)),
        };
        let tokens = LimitWindow {
            limit: p.read(LIMIT_TOKENS, parse_count),
            remaining: p.read(REMAINING_TOKENS, parse_count),
            reset_at: p.read(RESET_TOKENS, |v| normalise_reset(v, now)),
        };
        Self {
            balance_diem: p.read(BALANCE_DIEM, parse_decimal),
            balance_usd: p.read(BALANCE_USD, parse_decimal),
            balance_vcu: p.read(BALANCE_VCU, parse_decimal),
            requests,
            tokens,
            limit_type: p.read(LIMIT_TYPE, parse_text),
            retry_after: p.read(RETRY_AFTER, |v| parse_retry_after(v, now)),
            model_id: p.read(MODEL_ID, parse_text),
            cf_ray: p.read(CF_RAY, parse_text),
            malformed: p.malformed,
        }
    }
}

/// Normalises a rate-limit reset value: > 1e12 epoch ms, > 1e9 epoch s, else seconds from `now`
/// (fractions allowed). Negative, NaN or absurd values give `None`.
///
/// "Absurd" means an epoch value past [`MAX_EPOCH_SECS`] or a relative value longer than
/// [`MAX_RELATIVE_SECS`]. Integer inputs are converted exactly (no float rounding).
pub fn normalise_reset(raw: &str, now: SystemTime) -> Option<SystemTime> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u64>() {
        return if n > 1_000_000_000_000 {
            from_epoch(Duration::from_millis(n))
        } else if n > 1_000_000_000 {
            from_epoch(Duration::from_secs(n))
        } else {
            from_now(now, Duration::from_secs(n))
        };
    }
    let v: f64 = raw.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    if v > 1e12 {
        from_epoch(Duration::try_from_secs_f64(v / 1e3).ok()?)
    } else if v > 1e9 {
        from_epoch(Duration::try_from_secs_f64(v).ok()?)
    } else {
        from_now(now, Duration::try_from_secs_f64(v).ok()?)
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date, relative to `now`.
///
/// Delta-seconds may be fractional (`"1.5"`); a negative number is invalid. A date in the past
/// gives [`Duration::ZERO`].
pub fn parse_retry_after(raw: &str, now: SystemTime) -> Option<Duration> {
    let raw = raw.trim();
    let first = *raw.as_bytes().first()?;
    if first.is_ascii_digit() || first == b'.' {
        if let Ok(secs) = raw.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(secs) = raw.parse::<f64>() {
            return if secs.is_finite() && secs >= 0.0 {
                Duration::try_from_secs_f64(secs).ok()
            } else {
                None
            };
        }
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const BALANCE_DIEM: &str = "x-venice-balance-diem";
const BALANCE_USD: &str = "x-venice-balance-usd";
const BALANCE_VCU: &str = "x-venice-balance-vcu";
const LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
const LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";
const LIMIT_TYPE: &str = "x-ratelimit-type";
const RETRY_AFTER: &str = "retry-after";
const MODEL_ID: &str = "x-venice-model-id";
const CF_RAY: &str = "cf-ray";

/// Latest plausible absolute reset: 1e10 s after the epoch (year 2286).
pub const MAX_EPOCH_SECS: u64 = 10_000_000_000;
/// Longest plausible relative reset: 400 days (rate-limit windows are a minute to a day).
pub const MAX_RELATIVE_SECS: u64 = 400 * 86_400;

/// Reads header values and remembers which ones were present but unusable.
struct Reader<'a> {
    headers: &'a HeaderMap,
    malformed: Vec<&'static str>,
}

impl Reader<'_> {
    /// The parsed first value of `name`; `None` if missing (silently) or unusable (recorded).
    fn read<T>(&mut self, name: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let value = self.headers.get(name)?;
        let parsed = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .and_then(parse);
        if parsed.is_none() && !self.malformed.contains(&name) {
            self.malformed.push(name);
        }
        parsed
    }
}

/// A finite decimal, possibly negative (balances can dip slightly below zero).
fn parse_decimal(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// A non-negative integer; an integral decimal such as `"100.0"` is accepted too.
fn parse_count(v: &str) -> Option<u64> {
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let f: f64 = v.parse().ok()?;
    // 2^64 is the first float that does not fit in a u64.
    let fits = (0.0..18_446_744_073_709_551_616.0).contains(&f);
    (fits && f.fract() == 0.0).then_some(f as u64)
}

fn parse_text(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn from_epoch(d: Duration) -> Option<SystemTime> {
    if d.as_secs() > MAX_EPOCH_SECS {
        return None;
    }
    UNIX_EPOCH.checked_add(d)
}

fn from_now(now: SystemTime, d: Duration) -> Option<SystemTime> {
    if d.as_secs() > MAX_RELATIVE_SECS {
        return None;
    }
    now.checked_add(d)
}

#[cfg(test)]
mod tests;
