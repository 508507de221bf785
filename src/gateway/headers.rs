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
mod tests {
    use super::*;
    use http::HeaderValue;

    /// A fixed "now": 2025-10-03T15:23:00Z.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_759_504_980)
    }

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn secs(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn reset_epoch_millis() {
        assert_eq!(
            normalise_reset("1759504980000", now()),
            Some(UNIX_EPOCH + Duration::from_millis(1_759_504_980_000))
        );
        assert_eq!(
            normalise_reset("1759504980123", now()),
            Some(UNIX_EPOCH + Duration::from_millis(1_759_504_980_123))
        );
        // Just above the ms threshold.
        assert_eq!(
            normalise_reset("1000000000001", now()),
            Some(UNIX_EPOCH + Duration::from_millis(1_000_000_000_001))
        );
    }

    #[test]
    fn reset_epoch_seconds() {
        assert_eq!(
            normalise_reset("1759505040", now()),
            Some(secs(1_759_505_040))
        );
        assert_eq!(
            normalise_reset("1000000001", now()),
            Some(secs(1_000_000_001))
        );
        // 1e12 exactly is not "> 1e12": epoch seconds, far too late, so absurd.
        assert_eq!(normalise_reset("1000000000000", now()), None);
    }

    #[test]
    fn reset_relative_seconds() {
        assert_eq!(normalise_reset("0", now()), Some(now()));
        assert_eq!(
            normalise_reset("60", now()),
            Some(now() + Duration::from_secs(60))
        );
        // 1e9 exactly is not "> 1e9": relative, but longer than 400 days.
        assert_eq!(normalise_reset("1000000000", now()), None);
        assert_eq!(
            normalise_reset("86400", now()),
            Some(now() + Duration::from_secs(86_400))
        );
    }

    #[test]
    fn reset_fractional() {
        assert_eq!(
            normalise_reset("1.5", now()),
            Some(now() + Duration::from_millis(1500))
        );
        assert_eq!(
            normalise_reset("0.25", now()),
            Some(now() + Duration::from_millis(250))
        );
        assert_eq!(
            normalise_reset("100.0", now()),
            Some(now() + Duration::from_secs(100))
        );
        let ms = normalise_reset("1759504980000.5", now()).unwrap();
        let got = crate::util::epoch_ms(ms);
        assert!(
            (1_759_504_980_000..=1_759_504_980_001).contains(&got),
            "{got}"
        );
        let s = normalise_reset("1759505040.5", now()).unwrap();
        assert_eq!(crate::util::epoch_ms(s), 1_759_505_040_500);
        assert_eq!(
            normalise_reset("1e3", now()),
            Some(now() + Duration::from_secs(1000))
        );
    }

    #[test]
    fn reset_rejects_garbage() {
        for raw in [
            "",
            " ",
            "-1",
            "-0.5",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "abc",
            "12abc",
            "1,5",
            "0x10",
            "1e400",
            "99999999999999999999999",
            "1 2",
        ] {
            assert_eq!(normalise_reset(raw, now()), None, "{raw:?}");
        }
    }

    #[test]
    fn reset_trims_whitespace() {
        assert_eq!(
            normalise_reset("  30 ", now()),
            Some(now() + Duration::from_secs(30))
        );
    }

    #[test]
    fn reset_rejects_absurd() {
        // Relative: more than 400 days.
        assert_eq!(normalise_reset("40000000", now()), None);
        assert!(normalise_reset("34560000", now()).is_some());
        // Epoch ms past year 2286.
        assert_eq!(normalise_reset("10000000001000", now()), None);
        assert!(normalise_reset("9999999999000", now()).is_some());
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after("30", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 5 ", now()),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after(".5", now()),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn retry_after_http_date() {
        // now() is Fri, 03 Oct 2025 15:23:00 GMT.
        assert_eq!(
            httpdate::fmt_http_date(now()),
            "Fri, 03 Oct 2025 15:23:00 GMT"
        );
        assert_eq!(
            parse_retry_after("Fri, 03 Oct 2025 15:23:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        // RFC 850 and asctime forms are valid HTTP dates too.
        assert_eq!(
            parse_retry_after("Friday, 03-Oct-25 15:24:00 GMT", now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Fri Oct  3 15:23:10 2025", now()),
            Some(Duration::from_secs(10))
        );
        // Now and the past give zero.
        assert_eq!(
            parse_retry_after("Fri, 03 Oct 2025 15:23:00 GMT", now()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_rejects_garbage() {
        for raw in [
            "",
            "  ",
            "-1",
            "-0.5",
            "soon",
            "30s",
            "NaN",
            "inf",
            "1e400x",
            "+5",
            "Fri, 32 Oct 2025 15:23:00 GMT",
            "1,5",
        ] {
            assert_eq!(parse_retry_after(raw, now()), None, "{raw:?}");
        }
        // Too big for a Duration: rejected rather than panicking.
        assert_eq!(parse_retry_after("1e300", now()), None);
    }

    #[test]
    fn missing_headers_are_none_and_not_malformed() {
        let h = VeniceHeaders::parse(&HeaderMap::new(), now());
        assert_eq!(h, VeniceHeaders::default());
        assert!(h.malformed.is_empty());
    }

    #[test]
    fn realistic_venice_headers() {
        let h = map(&[
            ("CF-RAY", "988d6fc23956b871-GRU"),
            ("x-venice-version", "20250828.222653"),
            ("x-venice-model-id", "kimi-k2-5"),
            ("x-venice-model-name", "Kimi K2.5"),
            ("x-venice-balance-diem", "79.90338836"),
            ("x-venice-balance-usd", "50.50"),
            ("x-venice-balance-vcu", "1000"),
            ("x-ratelimit-limit-requests", "100"),
            ("x-ratelimit-remaining-requests", "99"),
            ("x-ratelimit-reset-requests", "1759505040"),
            ("x-ratelimit-limit-tokens", "2000000"),
            ("x-ratelimit-remaining-tokens", "1999242"),
            ("x-ratelimit-reset-tokens", "1759504980000"),
            ("x-ratelimit-type", "api_key"),
            ("content-type", "text/event-stream"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(
            v,
            VeniceHeaders {
                balance_diem: Some(79.90338836),
                balance_usd: Some(50.5),
                balance_vcu: Some(1000.0),
                requests: LimitWindow {
                    limit: Some(100),
                    remaining: Some(99),
                    reset_at: Some(secs(1_759_505_040)),
                },
                tokens: LimitWindow {
                    limit: Some(2_000_000),
                    remaining: Some(1_999_242),
                    reset_at: Some(secs(1_759_504_980)),
                },
                limit_type: Some("api_key".into()),
                retry_after: None,
                model_id: Some("kimi-k2-5".into()),
                cf_ray: Some("988d6fc23956b871-GRU".into()),
                malformed: vec![],
            }
        );
    }

    #[test]
    fn overloaded_429_headers() {
        let h = map(&[
            ("retry-after", "30"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-tokens", "12.5"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(v.requests.remaining, Some(0));
        assert_eq!(
            v.tokens.reset_at,
            Some(now() + Duration::from_millis(12_500))
        );
        assert!(v.malformed.is_empty());
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(b"X-Venice-Balance-USD").unwrap(),
            HeaderValue::from_static("12.5"),
        );
        assert_eq!(VeniceHeaders::parse(&h, now()).balance_usd, Some(12.5));
    }

    #[test]
    fn negative_and_odd_balances() {
        let h = map(&[
            ("x-venice-balance-usd", "-0.0012"),
            ("x-venice-balance-diem", "0"),
            ("x-venice-balance-vcu", "1e2"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.balance_usd, Some(-0.0012));
        assert_eq!(v.balance_diem, Some(0.0));
        assert_eq!(v.balance_vcu, Some(100.0));
        assert!(v.malformed.is_empty());
    }

    #[test]
    fn counts_accept_integral_decimals_only() {
        let h = map(&[
            ("x-ratelimit-limit-requests", "100.0"),
            ("x-ratelimit-remaining-requests", "99.5"),
            ("x-ratelimit-limit-tokens", "-1"),
            ("x-ratelimit-remaining-tokens", "1e30"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.requests.limit, Some(100));
        assert_eq!(v.requests.remaining, None);
        assert_eq!(v.tokens.limit, None);
        assert_eq!(v.tokens.remaining, None);
        assert_eq!(
            v.malformed,
            vec![
                "x-ratelimit-remaining-requests",
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
            ]
        );
    }

    #[test]
    fn garbage_values_are_malformed() {
        let h = map(&[
            ("x-venice-balance-usd", "lots"),
            ("x-venice-balance-diem", "NaN"),
            ("x-venice-balance-vcu", "inf"),
            ("x-ratelimit-limit-requests", "ten"),
            ("x-ratelimit-reset-requests", "-5"),
            ("x-ratelimit-reset-tokens", "tomorrow"),
            ("retry-after", "later"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.balance_usd, None);
        assert_eq!(v.balance_diem, None);
        assert_eq!(v.balance_vcu, None);
        assert_eq!(v.requests, LimitWindow::default());
        assert_eq!(v.tokens, LimitWindow::default());
        assert_eq!(v.retry_after, None);
        assert_eq!(
            v.malformed,
            vec![
                "x-ratelimit-limit-requests",
                "x-ratelimit-reset-requests",
                "x-ratelimit-reset-tokens",
                "x-venice-balance-diem",
                "x-venice-balance-usd",
                "x-venice-balance-vcu",
                "retry-after",
            ]
        );
    }

    #[test]
    fn empty_values_are_malformed() {
        let h = map(&[
            ("x-venice-balance-usd", ""),
            ("x-venice-model-id", "   "),
            ("cf-ray", ""),
            ("retry-after", ""),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.balance_usd, None);
        assert_eq!(v.model_id, None);
        assert_eq!(v.cf_ray, None);
        assert_eq!(v.retry_after, None);
        assert_eq!(
            v.malformed,
            vec![
                "x-venice-balance-usd",
                "retry-after",
                "x-venice-model-id",
                "cf-ray"
            ]
        );
    }

    #[test]
    fn whitespace_around_values_is_trimmed() {
        let h = map(&[
            ("x-venice-balance-usd", "  50.50 "),
            ("x-ratelimit-limit-requests", "\t100\t"),
            ("x-ratelimit-type", " user "),
            ("x-venice-model-id", " kimi-k2-5"),
            ("retry-after", " 7"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.balance_usd, Some(50.5));
        assert_eq!(v.requests.limit, Some(100));
        assert_eq!(v.limit_type.as_deref(), Some("user"));
        assert_eq!(v.model_id.as_deref(), Some("kimi-k2-5"));
        assert_eq!(v.retry_after, Some(Duration::from_secs(7)));
        assert!(v.malformed.is_empty());
    }

    #[test]
    fn duplicates_take_the_first_value() {
        let h = map(&[
            ("x-venice-balance-usd", "10"),
            ("x-venice-balance-usd", "20"),
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-remaining-requests", "5"),
            ("cf-ray", "first-GRU"),
            ("cf-ray", "second-GRU"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.balance_usd, Some(10.0));
        assert_eq!(v.requests.remaining, Some(5));
        assert_eq!(v.cf_ray.as_deref(), Some("first-GRU"));
        assert!(v.malformed.is_empty());
    }

    #[test]
    fn duplicate_with_bad_first_value_is_malformed_once() {
        // The first value decides, even when a later one would parse.
        let h = map(&[
            ("x-venice-balance-usd", "oops"),
            ("x-venice-balance-usd", "20"),
            ("x-venice-balance-usd", "also bad"),
        ]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.balance_usd, None);
        assert_eq!(v.malformed, vec!["x-venice-balance-usd"]);
    }

    #[test]
    fn non_ascii_values_are_malformed() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-venice-model-id",
            HeaderValue::from_bytes(b"kimi-\xc3\xa9").unwrap(),
        );
        h.insert(
            "x-venice-balance-usd",
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        h.insert("cf-ray", HeaderValue::from_bytes(b"abc\x80").unwrap());
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.model_id, None);
        assert_eq!(v.balance_usd, None);
        assert_eq!(v.cf_ray, None);
        assert_eq!(
            v.malformed,
            vec!["x-venice-balance-usd", "x-venice-model-id", "cf-ray"]
        );
    }

    #[test]
    fn retry_after_date_header() {
        let h = map(&[("retry-after", "Fri, 03 Oct 2025 15:25:00 GMT")]);
        let v = VeniceHeaders::parse(&h, now());
        assert_eq!(v.retry_after, Some(Duration::from_secs(120)));
    }

    #[test]
    fn serialises_reset_as_epoch_ms() {
        let h = map(&[("x-ratelimit-reset-requests", "1759505040")]);
        let v = VeniceHeaders::parse(&h, now());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["requests"]["reset_at"], 1_759_505_040_000u64);
        assert_eq!(json["tokens"]["reset_at"], serde_json::Value::Null);
    }
}
