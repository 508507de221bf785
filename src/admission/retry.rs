//! When to retry an upstream attempt and how long to wait first.
//!
//! Owns the policy: 429, 503 and connection failures are retried with exponential backoff and
//! full jitter, honouring `Retry-After` and the rate-limit reset headers, within the request's
//! overall deadline, and only while nothing has reached the client. Statuses that Venice counts
//! against a key's error budget (400, 401, 402, 403, 404, 413, 422) are never retried.

use std::time::{Duration, SystemTime};

use crate::admission::AdmissionConfig;
use crate::gateway::headers::VeniceHeaders;

/// Why an attempt is retried (a bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    RateLimited,
    Unavailable,
    Connect,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::RateLimited => "rate_limited",
            RetryReason::Unavailable => "unavailable",
            RetryReason::Connect => "connect",
        }
    }

    /// The reason for an upstream status, if that status is retryable at all.
    pub fn for_status(status: u16) -> Option<Self> {
        match status {
            429 => Some(RetryReason::RateLimited),
            503 => Some(RetryReason::Unavailable),
            _ => None,
        }
    }
}

/// The wait before attempt `attempt + 1` (after `attempt` failed ones, `attempt >= 1`):
/// the server's word (`Retry-After`, or the reset of an exhausted window) when it gave one,
/// else exponential backoff with full jitter.
pub fn delay(config: &AdmissionConfig, attempt: u32, headers: Option<&VeniceHeaders>) -> Duration {
    if let Some(d) = headers.and_then(server_delay) {
        return d;
    }
    let exp = config
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(config.backoff_max);
    exp.mul_f64(fastrand::f64())
}

fn server_delay(h: &VeniceHeaders) -> Option<Duration> {
    if let Some(d) = h.retry_after {
        return Some(d);
    }
    let now = SystemTime::now();
    [&h.requests, &h.tokens]
        .into_iter()
        .filter(|w| w.remaining == Some(0))
        .filter_map(|w| w.reset_at)
        .filter_map(|at| at.duration_since(now).ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::headers::LimitWindow;

    #[test]
    fn only_429_and_503_are_retryable_statuses() {
        for s in [400, 401, 402, 403, 404, 413, 422, 500, 502, 504, 200] {
            assert_eq!(RetryReason::for_status(s), None, "{s}");
        }
        assert_eq!(RetryReason::for_status(429), Some(RetryReason::RateLimited));
        assert_eq!(RetryReason::for_status(503), Some(RetryReason::Unavailable));
    }

    #[test]
    fn retry_after_wins() {
        let h = VeniceHeaders {
            retry_after: Some(Duration::from_secs(3)),
            ..VeniceHeaders::default()
        };
        let c = AdmissionConfig::default();
        assert_eq!(delay(&c, 1, Some(&h)), Duration::from_secs(3));
    }

    #[test]
    fn an_exhausted_window_waits_for_its_reset() {
        let h = VeniceHeaders {
            requests: LimitWindow {
                limit: Some(10),
                remaining: Some(0),
                reset_at: Some(SystemTime::now() + Duration::from_secs(5)),
            },
            ..VeniceHeaders::default()
        };
        let d = delay(&AdmissionConfig::default(), 1, Some(&h));
        assert!(
            d > Duration::from_secs(4) && d <= Duration::from_secs(5),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_is_jittered_below_an_exponential_cap() {
        let c = AdmissionConfig::default();
        for attempt in 1..10 {
            let cap = c
                .backoff_base
                .saturating_mul(1 << (attempt - 1))
                .min(c.backoff_max);
            for _ in 0..50 {
                assert!(delay(&c, attempt, None) <= cap);
            }
        }
    }
}
