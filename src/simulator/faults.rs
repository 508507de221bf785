//! Fault injection, driven by request headers so tests and the demo client can
//! script upstream failures through the gateway:
//!
//! - `x-sim-fault: <name>` picks the fault (unknown names are ignored):
//!   `overloaded` (429 + `Retry-After`), `rate_limit` (429, no `Retry-After`),
//!   `unavailable` (503), `server_error` (500), `insufficient_balance` (402),
//!   `bad_request` (400), `midstream_error` (in-band SSE error then `[DONE]`),
//!   `truncate` (body ends early, cleanly) and `reset` (connection aborted mid-body).
//! - `x-sim-retry-after: N` sets the `Retry-After` seconds of `overloaded` (default 1).
//! - `x-sim-fault-count: N` applies the fault only to the first N requests that carry
//!   the same `x-sim-fault-key: K` (missing key = the empty key), e.g. "429 then 200".

use std::collections::HashMap;
use std::io;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{stream, StreamExt};
use parking_lot::Mutex;
use serde_json::json;

use super::respond;

/// A fault to inject into one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Overloaded { retry_after: u64 },
    RateLimit,
    Unavailable,
    ServerError,
    InsufficientBalance,
    BadRequest,
    MidstreamError,
    Truncate,
    Reset,
}

/// How many faulted requests each `x-sim-fault-key` has used.
#[derive(Debug, Default)]
pub struct FaultCounters {
    per_key: Mutex<HashMap<String, u64>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A non-negative integer request header.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header(headers, name).and_then(|v| v.parse().ok())
}

impl Fault {
    /// The fault named by `x-sim-fault`, if any and known.
    pub fn from_headers(headers: &HeaderMap) -> Option<Fault> {
        let name = header(headers, "x-sim-fault")?.to_ascii_lowercase();
        Some(match name.as_str() {
            "overloaded" => Fault::Overloaded {
                retry_after: header_u64(headers, "x-sim-retry-after").unwrap_or(1),
            },
            "rate_limit" => Fault::RateLimit,
            "unavailable" => Fault::Unavailable,
            "server_error" => Fault::ServerError,
            "insufficient_balance" => Fault::InsufficientBalance,
            "bad_request" => Fault::BadRequest,
            "midstream_error" => Fault::MidstreamError,
            "truncate" => Fault::Truncate,
            "reset" => Fault::Reset,
            _ => return None,
        })
    }

    /// Whether the fault breaks the body of an otherwise successful response
    /// (as opposed to replacing the whole response with an error status).
    pub fn is_body_fault(self) -> bool {
        matches!(self, Fault::MidstreamError | Fault::Truncate | Fault::Reset)
    }

    /// The error response of a status fault; `None` for body faults. Rate-limit and
    /// model headers are the caller's to add.
    pub fn status_response(self) -> Option<Response> {
        let resp = match self {
            Fault::Overloaded { retry_after } => {
                let mut r =
                    respond::error(StatusCode::TOO_MANY_REQUESTS, respond::MODEL_OVERLOADED);
                respond::insert(r.headers_mut(), "retry-after", retry_after.to_string());
                r
            }
            Fault::RateLimit => {
                let mut r =
                    respond::error(StatusCode::TOO_MANY_REQUESTS, respond::RATE_LIMIT_EXCEEDED);
                respond::insert(r.headers_mut(), "x-ratelimit-type", "api_key");
                r
            }
            Fault::Unavailable => respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The model is currently at capacity. Please try again later.",
            ),
            Fault::ServerError => {
                respond::error(StatusCode::INTERNAL_SERVER_ERROR, "Inference failed")
            }
            Fault::InsufficientBalance => {
                respond::error(StatusCode::PAYMENT_REQUIRED, respond::INSUFFICIENT_BALANCE)
            }
            Fault::BadRequest => respond::invalid(
                None,
                "Simulated bad request (x-sim-fault: bad_request)",
                json!({ "code": "custom" }),
            )
            .into_response(),
            Fault::MidstreamError | Fault::Truncate | Fault::Reset => return None,
        };
        Some(resp)
    }

    /// The response of a non-streamed endpoint whose full JSON body is `full`:
    /// status faults replace it; `truncate` sends its first half and ends cleanly;
    /// `reset` sends its first half then aborts the connection; `midstream_error`
    /// has no in-band form outside SSE and becomes a 500.
    pub fn non_stream_response(self, full: Bytes) -> Response {
        if let Some(r) = self.status_response() {
            return r;
        }
        match self {
            Fault::Truncate | Fault::Reset => {
                let half = full.slice(..full.len() / 2);
                let mut r = Response::new(cut_body(vec![half], self == Fault::Reset));
                respond::insert(r.headers_mut(), "content-type", "application/json");
                r
            }
            _ => respond::error(StatusCode::INTERNAL_SERVER_ERROR, "Inference failed"),
        }
    }
}

/// A JSON response whose full body is `full`, with `fault` (if any) applied.
pub fn json_with_fault(full: Bytes, fault: Option<Fault>) -> Response {
    match fault {
        Some(f) => f.non_stream_response(full),
        None => {
            let mut r = Response::new(Body::from(full));
            respond::insert(r.headers_mut(), "content-type", "application/json");
            r
        }
    }
}

/// The in-band SSE error event Venice sends when inference fails after the headers.
pub fn in_band_error_event() -> Bytes {
    let ev = json!({
        "error": {
            "message": respond::MODEL_OVERLOADED,
            "type": "server_error",
            "code": "model_overloaded",
            "param": null,
            "retry_after": 30,
        }
    });
    Bytes::from(format!("data: {ev}\n\n"))
}

/// A body that sends `chunks` then either ends cleanly or, when `abort`, fails so
/// that hyper drops the connection without finishing the response.
pub fn cut_body(chunks: Vec<Bytes>, abort: bool) -> Body {
    let mut items: Vec<io::Result<Bytes>> = chunks.into_iter().map(Ok).collect();
    if abort {
        items.push(Err(reset_error()));
    }
    Body::from_stream(stream::iter(items).then(|item| async move {
        if item.is_err() {
            flush_point().await;
        }
        item
    }))
}

/// The body error that makes hyper abort the connection (`x-sim-fault: reset`).
pub fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "simulated connection reset (x-sim-fault: reset)",
    )
}

/// Returns `Pending` once so hyper flushes the headers and chunks written so far
/// before the body fails; otherwise an immediate error could drop them unsent.
pub async fn flush_point() {
    tokio::task::yield_now().await;
}

impl FaultCounters {
    /// The fault to apply to this request, honouring `x-sim-fault-count`/`-key`.
    pub fn take(&self, headers: &HeaderMap) -> Option<Fault> {
        let fault = Fault::from_headers(headers)?;
        if let Some(limit) = header_u64(headers, "x-sim-fault-count") {
            let key = header(headers, "x-sim-fault-key").unwrap_or("").to_string();
            let mut map = self.per_key.lock();
            let used = map.entry(key).or_insert(0);
            if *used >= limit {
                return None;
            }
            *used += 1;
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn parses_names_and_retry_after() {
        let h = headers(&[("x-sim-fault", "Overloaded"), ("x-sim-retry-after", "7")]);
        assert_eq!(
            Fault::from_headers(&h),
            Some(Fault::Overloaded { retry_after: 7 })
        );
        let h = headers(&[("x-sim-fault", "overloaded")]);
        assert_eq!(
            Fault::from_headers(&h),
            Some(Fault::Overloaded { retry_after: 1 })
        );
        assert_eq!(
            Fault::from_headers(&headers(&[("x-sim-fault", "nope")])),
            None
        );
        assert_eq!(Fault::from_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn count_applies_per_key() {
        let c = FaultCounters::default();
        let a = headers(&[
            ("x-sim-fault", "server_error"),
            ("x-sim-fault-count", "2"),
            ("x-sim-fault-key", "a"),
        ]);
        let b = headers(&[
            ("x-sim-fault", "server_error"),
            ("x-sim-fault-count", "1"),
            ("x-sim-fault-key", "b"),
        ]);
        assert!(c.take(&a).is_some());
        assert!(c.take(&b).is_some());
        assert!(c.take(&a).is_some());
        assert!(c.take(&a).is_none());
        assert!(c.take(&b).is_none());
        // Without a count the fault always applies.
        let always = headers(&[("x-sim-fault", "reset")]);
        assert!(c.take(&always).is_some() && c.take(&always).is_some());
    }
}
