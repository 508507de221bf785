//! Reading back what the hub serialises: `Deserialize` for the gateway's record types and the
//! epoch-millisecond time adapters the hub's [`State`](crate::hub::State) uses.
//!
//! The gateway's types ([`RequestRecord`], [`Usage`], [`Cost`], [`UpstreamError`],
//! [`LimitWindow`], [`Outcome`], [`CostSource`], [`Limit`]) are `Serialize` only, and they are
//! owned by the proxy. The store needs them back to rebuild a state from its log, so their
//! `Deserialize` lives here: each goes through a mirror struct that derives it, then through a
//! struct literal into the real type — so a field added to a gateway type fails to compile here
//! until it is read back too (nothing is silently dropped). Every field is optional in the
//! mirror so that records written by older builds still load.

use std::collections::HashSet;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::admission::Limit;
use crate::gateway::headers::LimitWindow;
use crate::gateway::record::{CostSource, Outcome, RequestRecord};
use crate::gateway::usage::{Cost, UpstreamError, Usage};
use crate::util::from_epoch_ms;

/// `Option<SystemTime>` as epoch milliseconds (or `null`), both ways.
pub mod opt_epoch_ms {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        crate::util::opt_epoch_ms::serialize(t, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(crate::util::from_epoch_ms))
    }
}

/// `SystemTime` as epoch milliseconds, both ways.
pub mod epoch_ms {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        crate::util::epoch_ms_serde::serialize(t, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(crate::util::from_epoch_ms(u64::deserialize(d)?))
    }
}

/// Implements `Deserialize` for a unit-only enum from its snake_case names.
macro_rules! enum_from_names {
    ($ty:ty { $($name:literal => $variant:expr),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                match name.as_str() {
                    $($name => Ok($variant),)+
                    other => Err(D::Error::unknown_variant(other, &[$($name),+])),
                }
            }
        }
    };
}

enum_from_names!(Outcome {
    "ok" => Outcome::Ok,
    "http_error" => Outcome::HttpError,
    "inband_error" => Outcome::InbandError,
    "truncated" => Outcome::Truncated,
    "connect_failed" => Outcome::ConnectFailed,
    "upstream_failed" => Outcome::UpstreamFailed,
    "client_aborted" => Outcome::ClientAborted,
    "rejected" => Outcome::Rejected,
});

enum_from_names!(CostSource {
    "upstream" => CostSource::Upstream,
    "computed" => CostSource::Computed,
    "unknown" => CostSource::Unknown,
});

enum_from_names!(Limit {
    "requests" => Limit::Requests,
    "tokens" => Limit::Tokens,
    "queue" => Limit::Queue,
});

#[derive(Deserialize, Default)]
#[serde(default)]
struct UsageDe {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    cached_tokens: u64,
    cache_creation_tokens: u64,
    reasoning_tokens: u64,
}

impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let u = UsageDe::deserialize(d)?;
        Ok(Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.total_tokens,
            cached_tokens: u.cached_tokens,
            cache_creation_tokens: u.cache_creation_tokens,
            reasoning_tokens: u.reasoning_tokens,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CostDe {
    usd: f64,
    diem: f64,
}

impl<'de> Deserialize<'de> for Cost {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = CostDe::deserialize(d)?;
        Ok(Cost {
            usd: c.usd,
            diem: c.diem,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpstreamErrorDe {
    message: String,
    code: Option<String>,
}

impl<'de> Deserialize<'de> for UpstreamError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = UpstreamErrorDe::deserialize(d)?;
        Ok(UpstreamError {
            message: e.message,
            code: e.code,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LimitWindowDe {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_at: Option<u64>,
}

impl<'de> Deserialize<'de> for LimitWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = LimitWindowDe::deserialize(d)?;
        Ok(LimitWindow {
            limit: w.limit,
            remaining: w.remaining,
            reset_at: w.reset_at.map(from_epoch_ms),
        })
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct RecordDe {
    started_at: u64,
    method: String,
    path: String,
    model: Option<String>,
    session_id: Option<String>,
    status: Option<u16>,
    outcome: Outcome,
    streamed: bool,
    usage: Option<Usage>,
    cost: Option<Cost>,
    cost_source: CostSource,
    error: Option<UpstreamError>,
    latency_ms: f64,
    ttfb_ms: Option<f64>,
    response_bytes: u64,
    usage_requested: bool,
    unscanned: bool,
    attempts: u32,
    retries: Vec<String>,
    queue_wait_ms: f64,
    limited: Option<Limit>,
}

impl Default for RecordDe {
    fn default() -> Self {
        Self {
            started_at: 0,
            method: String::new(),
            path: String::new(),
            model: None,
            session_id: None,
            status: None,
            outcome: Outcome::Ok,
            streamed: false,
            usage: None,
            cost: None,
            cost_source: CostSource::Unknown,
            error: None,
            latency_ms: 0.0,
            ttfb_ms: None,
            response_bytes: 0,
            usage_requested: false,
            unscanned: false,
            attempts: 0,
            retries: Vec::new(),
            queue_wait_ms: 0.0,
            limited: None,
        }
    }
}

impl<'de> Deserialize<'de> for RequestRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RecordDe::deserialize(d)?;
        Ok(RequestRecord {
            started_at: from_epoch_ms(r.started_at),
            method: r.method,
            path: r.path,
            model: r.model,
            session_id: r.session_id,
            status: r.status,
            outcome: r.outcome,
            streamed: r.streamed,
            usage: r.usage,
            cost: r.cost,
            cost_source: r.cost_source,
            error: r.error,
            latency_ms: r.latency_ms,
            ttfb_ms: r.ttfb_ms,
            response_bytes: r.response_bytes,
            usage_requested: r.usage_requested,
            unscanned: r.unscanned,
            attempts: r.attempts,
            retries: r.retries.iter().map(|s| intern(s)).collect(),
            queue_wait_ms: r.queue_wait_ms,
            limited: r.limited,
        })
    }
}

/// Distinct retry labels kept as `&'static str` (the record's type); beyond this many, further
/// unknown labels read back as `"other"` so a damaged database cannot grow memory.
const MAX_INTERNED: usize = 64;

/// The `&'static str` for a retry label: the known ones are static already; an unknown one
/// (written by a newer build) is leaked once and reused.
fn intern(label: &str) -> &'static str {
    static KNOWN: [&str; 3] = ["rate_limited", "unavailable", "connect"];
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    if let Some(k) = KNOWN.iter().find(|k| **k == label) {
        return k;
    }
    let mut seen = SEEN.lock();
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(s) = seen.get(label) {
        return s;
    }
    if seen.len() >= MAX_INTERNED {
        return "other";
    }
    let leaked: &'static str = Box::leak(label.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

/// A `SystemTime` read back from epoch milliseconds (for callers outside serde).
pub fn time(ms: u64) -> SystemTime {
    from_epoch_ms(ms)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record() -> RequestRecord {
        RequestRecord {
            started_at: from_epoch_ms(1_700_000_000_123),
            method: "POST".into(),
            path: "/chat/completions".into(),
            model: Some("m".into()),
            session_id: Some("ses_1".into()),
            status: Some(503),
            outcome: Outcome::HttpError,
            streamed: true,
            usage: Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
                cached_tokens: 4,
                cache_creation_tokens: 5,
                reasoning_tokens: 6,
            }),
            cost: Some(Cost {
                usd: 0.1 + 0.2,
                diem: 1e-9,
            }),
            cost_source: CostSource::Computed,
            error: Some(UpstreamError {
                message: "busy".into(),
                code: None,
            }),
            latency_ms: 12.5,
            ttfb_ms: Some(3.25),
            response_bytes: 99,
            usage_requested: true,
            unscanned: false,
            attempts: 3,
            retries: vec!["rate_limited", "connect"],
            queue_wait_ms: 0.5,
            limited: Some(Limit::Queue),
        }
    }

    #[test]
    fn a_record_reads_back_exactly() {
        let json = serde_json::to_value(record()).expect("serialises");
        let back: RequestRecord = serde_json::from_value(json.clone()).expect("reads back");
        assert_eq!(serde_json::to_value(&back).expect("serialises"), json);
        let text = serde_json::to_string(&record()).expect("serialises");
        let back: RequestRecord = serde_json::from_str(&text).expect("reads back from text");
        assert_eq!(back.cost.map(|c| c.usd), Some(0.1 + 0.2));
    }

    #[test]
    fn unknown_enum_names_are_errors_and_unknown_labels_are_kept() {
        assert!(serde_json::from_str::<Outcome>("\"sideways\"").is_err());
        assert_eq!(intern("a-new-reason"), "a-new-reason");
        assert!(std::ptr::eq(intern("a-new-reason"), intern("a-new-reason")));
        assert_eq!(time(1_000), std::time::UNIX_EPOCH + Duration::from_secs(1));
    }
}
