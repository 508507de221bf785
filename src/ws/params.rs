//! The parameters of the WebSocket JSON-RPC methods and their validation.
//!
//! Owns what each method accepts: named params (an object; an empty array or no `params` means
//! "none") parsed with serde `deny_unknown_fields`, so a typo is a -32602 naming the field, and
//! the bounds on session ids and file paths, checked before anything else is asked.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::rpc::RpcError;
use crate::hub::state::AlertCurrency;

/// Longest file path `lean.check` accepts, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest `sessionId` accepted (the gateway's `x-session-id` and the ingest's id bound).
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// Most timeline points one `timeline` call returns.
pub const MAX_TIMELINE: usize = 5000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RestoreParams {
    #[serde(default)]
    pub(super) snapshot_id: Option<i64>,
    #[serde(default)]
    pub(super) sequence: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct TimelineParams {
    pub(super) session_id: String,
    #[serde(default)]
    pub(super) limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ExportParams {
    pub(super) session_id: String,
    #[serde(default)]
    pub(super) format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SinceParams {
    pub(super) sequence: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SessionsParams {
    #[serde(default)]
    pub(super) limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertParams {
    pub(super) currency: AlertCurrency,
    /// Required, but may be `null` (clears the alert).
    #[serde(deserialize_with = "nullable")]
    pub(super) below: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckParams {
    pub(super) file: String,
    #[serde(default)]
    pub(super) line: Option<u32>,
}

/// A required field whose value may be `null`.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)
}

/// Parses named params; no params and `[]` mean "none".
pub(super) fn parse<T: DeserializeOwned>(
    method: &str,
    params: Option<Value>,
) -> Result<T, RpcError> {
    let value = match params {
        None => json!({}),
        Some(Value::Array(a)) if a.is_empty() => json!({}),
        Some(Value::Array(_)) => {
            return Err(RpcError::invalid_params(
                method,
                "params must be an object with named members, not an array",
            ))
        }
        Some(v) => v,
    };
    serde_json::from_value(value).map_err(|e| RpcError::invalid_params(method, e))
}

/// A session id as the gateway and the ingest accept them (1..=[`MAX_SESSION_ID_BYTES`]
/// printable ASCII bytes): anything else names no stored session, and is refused before the
/// store is asked (so an error never echoes a huge or control-laden value).
pub(super) fn check_session_id(method: &str, id: &str) -> Result<(), RpcError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        return Ok(());
    }
    Err(RpcError::invalid_params(
        method,
        format!("`sessionId` must be 1..={MAX_SESSION_ID_BYTES} printable ASCII characters"),
    ))
}

pub(super) fn check_path(method: &str, file: &str) -> Result<(), RpcError> {
    if file.trim().is_empty() {
        return Err(RpcError::invalid_params(method, "`file` must not be empty"));
    }
    if file.len() > MAX_PATH_BYTES {
        return Err(RpcError::invalid_params(
            method,
            format!("`file` is longer than {MAX_PATH_BYTES} bytes"),
        ));
    }
    if file.chars().any(char::is_control) {
        return Err(RpcError::invalid_params(
            method,
            "`file` must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::rpc::INVALID_PARAMS;

    #[test]
    fn params_are_named_and_strict() {
        let e = parse::<SinceParams>("state.since", Some(json!({"seq": 1}))).unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(e.message.contains("seq"), "{}", e.message);
        let e = parse::<SinceParams>("state.since", None).unwrap_err();
        assert!(
            e.message.contains("missing field `sequence`"),
            "{}",
            e.message
        );
        assert!(parse::<SinceParams>("state.since", Some(json!([1]))).is_err());
        assert!(parse::<NoParams>("state.get", Some(json!([]))).is_ok());
        let p: SinceParams = parse("state.since", Some(json!({"sequence": 4}))).unwrap();
        assert_eq!(p.sequence, 4);
    }

    #[test]
    fn alert_below_is_required_but_nullable() {
        let e = parse::<AlertParams>("setAlert", Some(json!({"currency": "diem"}))).unwrap_err();
        assert!(e.message.contains("below"), "{}", e.message);
        let p: AlertParams =
            parse("setAlert", Some(json!({"currency": "usd", "below": null}))).unwrap();
        assert_eq!((p.currency, p.below), (AlertCurrency::Usd, None));
        let e = parse::<AlertParams>("setAlert", Some(json!({"currency": "eur", "below": 1})))
            .unwrap_err();
        assert!(e.message.contains("eur"), "{}", e.message);
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path("lean.check", "A.lean").is_ok());
        assert!(check_path("lean.check", " ").is_err());
        assert!(check_path("lean.check", "a\nb").is_err());
        assert!(check_path("lean.check", &"x".repeat(MAX_PATH_BYTES + 1)).is_err());
    }
}
