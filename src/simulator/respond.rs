//! Venice-shaped responses shared by every endpoint: `{"error": ...}` bodies, the
//! `Invalid request parameters` validation body, and the `x-venice-*` /
//! `x-ratelimit-*` response headers with the units the Venice docs give
//! (`x-ratelimit-reset-requests` = Unix seconds of the window end,
//! `x-ratelimit-reset-tokens` = seconds until the window ends).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::account::RateSnapshot;
use super::models::Model;

/// Value of `x-venice-version` (the swagger `info.version` the facts were read at).
pub const VENICE_VERSION: &str = "20260821.193530";

/// The 402 message of `INSUFFICIENT_BALANCE`.
pub const INSUFFICIENT_BALANCE: &str = "Insufficient USD or Diem balance to complete request. Visit https://venice.ai/settings/api to add credits.";

/// The 429 message of `RATE_LIMIT_EXCEEDED`.
pub const RATE_LIMIT_EXCEEDED: &str = "Rate limit exceeded";

/// The 429 message of `MODEL_OVERLOADED`.
pub const MODEL_OVERLOADED: &str = "The model is currently overloaded. Please try again later.";

/// A `{"error": message}` response.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A 400 `Invalid request parameters` error in Venice's `DetailedError` shape,
/// rendered by `into_response`. Small, so `Result<_, Invalid>` stays cheap.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// The offending top-level field (`None` for whole-body problems).
    field: Option<String>,
    message: String,
    /// A zod-like issue object (`code` and friends).
    issue: Value,
}

/// A validation error; see [`Invalid`].
pub fn invalid(field: Option<&str>, message: &str, issue: Value) -> Invalid {
    Invalid {
        field: field.map(str::to_string),
        message: message.to_string(),
        issue,
    }
}

/// A field of the wrong type (or a missing required one when `received` is
/// `"undefined"`).
pub fn invalid_type(field: &str, expected: &str, received: &str) -> Invalid {
    let message = if received == "undefined" {
        "Required".to_string()
    } else {
        format!("Expected {expected}, received {received}")
    };
    invalid(
        Some(field),
        &message,
        json!({ "code": "invalid_type", "expected": expected, "received": received }),
    )
}

impl IntoResponse for Invalid {
    fn into_response(self) -> Response {
        let Invalid {
            field,
            message,
            mut issue,
        } = self;
        let mut details = serde_json::Map::new();
        match &field {
            Some(f) => {
                details.insert("_errors".into(), json!([]));
                details.insert(f.clone(), json!({ "_errors": [message] }));
            }
            None => {
                details.insert("_errors".into(), json!([message]));
            }
        }
        if let Value::Object(map) = &mut issue {
            map.entry("message").or_insert_with(|| json!(message));
            map.entry("path")
                .or_insert_with(|| json!(field.iter().collect::<Vec<_>>()));
        }
        let body = json!({
            "error": "Invalid request parameters",
            "details": details,
            "issues": [issue],
        });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }
}

/// The JSON type name used in validation messages.
pub fn type_name(v: Option<&Value>) -> &'static str {
    match v {
        None => "undefined",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "boolean",
        Some(Value::Number(_)) => "number",
        Some(Value::String(_)) => "string",
        Some(Value::Array(_)) => "array",
        Some(Value::Object(_)) => "object",
    }
}

/// The ordinary RPM/TPM 429: rate-limit headers, `x-ratelimit-type`, no `Retry-After`.
pub fn rate_limited(snapshot: &RateSnapshot) -> Response {
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, RATE_LIMIT_EXCEEDED);
    let headers = resp.headers_mut();
    set_rate_headers(headers, &snapshot.exhausted(), true);
    insert(headers, "x-ratelimit-type", "api_key");
    resp
}

/// Inserts a header, skipping values that are not valid header text.
pub fn insert(headers: &mut HeaderMap, name: &'static str, value: impl AsRef<str>) {
    if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// A balance as a plain decimal string (at most 8 decimals, no exponent).
pub fn decimal(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    let s = format!("{v:.8}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    match s {
        "" | "-" | "-0" => "0".to_string(),
        s => s.to_string(),
    }
}

/// `x-venice-balance-usd` / `x-venice-balance-diem` unless the handler set them.
pub fn set_balance_headers(headers: &mut HeaderMap, usd: f64, diem: f64) {
    if !headers.contains_key("x-venice-balance-usd") {
        insert(headers, "x-venice-balance-usd", decimal(usd));
    }
    if !headers.contains_key("x-venice-balance-diem") {
        insert(headers, "x-venice-balance-diem", decimal(diem));
    }
}

/// `x-venice-model-id` and `x-venice-model-name` of inference endpoints.
pub fn set_model_headers(headers: &mut HeaderMap, model: &Model) {
    insert(headers, "x-venice-model-id", model.id);
    insert(headers, "x-venice-model-name", model.name);
}

/// The `x-ratelimit-*-requests` headers, plus the `-tokens` ones when `tokens`.
pub fn set_rate_headers(headers: &mut HeaderMap, s: &RateSnapshot, tokens: bool) {
    let now = Instant::now();
    let left = s.reset_at.saturating_duration_since(now);
    let reset_unix = unix_secs_ceil(SystemTime::now() + left);
    insert(
        headers,
        "x-ratelimit-limit-requests",
        s.limit_requests.to_string(),
    );
    insert(
        headers,
        "x-ratelimit-remaining-requests",
        s.remaining_requests.to_string(),
    );
    insert(
        headers,
        "x-ratelimit-reset-requests",
        reset_unix.to_string(),
    );
    if tokens {
        insert(
            headers,
            "x-ratelimit-limit-tokens",
            s.limit_tokens.to_string(),
        );
        insert(
            headers,
            "x-ratelimit-remaining-tokens",
            s.remaining_tokens.to_string(),
        );
        insert(
            headers,
            "x-ratelimit-reset-tokens",
            secs_ceil(left).to_string(),
        );
    }
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn unix_secs_ceil(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(secs_ceil).unwrap_or(0)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Days since the Unix epoch (the DIEM epoch number), now.
pub fn utc_day() -> u64 {
    unix_now() / 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_plain() {
        assert_eq!(decimal(25.0), "25");
        assert_eq!(decimal(9.5), "9.5");
        assert_eq!(decimal(0.000000001), "0");
        assert_eq!(decimal(-0.00042), "-0.00042");
        assert_eq!(decimal(f64::NAN), "0");
    }

    #[test]
    fn reset_headers_use_documented_units() {
        let s = RateSnapshot {
            limit_requests: 10,
            remaining_requests: 9,
            limit_tokens: 100,
            remaining_tokens: 90,
            reset_at: Instant::now() + Duration::from_millis(30_500),
        };
        let mut h = HeaderMap::new();
        set_rate_headers(&mut h, &s, true);
        let get = |n: &str| -> u64 {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect(n)
        };
        assert!(get("x-ratelimit-reset-requests") > 1_000_000_000);
        assert!(get("x-ratelimit-reset-tokens") <= 31);
        assert_eq!(get("x-ratelimit-remaining-tokens"), 90);
    }
}
