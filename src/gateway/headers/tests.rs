//! Unit tests of [`super::VeniceHeaders`] parsing: balance, rate limits, reset units,
//! retry-after, malformed values and the serialised shape.

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
