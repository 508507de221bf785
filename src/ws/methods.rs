//! Method dispatch and parameter validation of the WebSocket JSON-RPC API.
//!
//! Owns what each method does and what it accepts. Parameters are named (an object; an empty
//! array or no `params` means "none") and parsed with serde `deny_unknown_fields`, so a typo is a
//! -32602 naming the field instead of being ignored. `state.get` and `state.since` also tell the
//! connection which sequence the answer covers, so its notifications continue exactly after it.

use std::sync::Arc;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::rpc::{RpcError, LEAN_FAILED, LEAN_UNAVAILABLE, NOT_AVAILABLE};
use super::LeanCommands;
use crate::hub::state::AlertCurrency;
use crate::hub::{HubEvent, HubHandle, Since};
use crate::store::{ExportFormat, RestoreTarget, StoreError, StoreHandle};
use crate::util::epoch_ms;

/// Longest file path `lean.check` accepts, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A method's answer.
#[derive(Debug)]
pub struct Reply {
    pub result: Value,
    /// The connection is now in sync up to this sequence (`state.get`, `state.since`).
    pub synced_to: Option<u64>,
}

impl Reply {
    fn plain(result: Value) -> Self {
        Self {
            result,
            synced_to: None,
        }
    }
}

/// Dispatches requests against the hub and the optional Lean control.
pub struct Methods {
    hub: HubHandle,
    lean: Option<Arc<dyn LeanCommands>>,
    store: Option<StoreHandle>,
}

/// Most timeline points one `timeline` call returns.
pub const MAX_TIMELINE: usize = 5000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RestoreParams {
    #[serde(default)]
    snapshot_id: Option<i64>,
    #[serde(default)]
    sequence: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TimelineParams {
    session_id: String,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExportParams {
    session_id: String,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinceParams {
    sequence: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionsParams {
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertParams {
    currency: AlertCurrency,
    /// Required, but may be `null` (clears the alert).
    #[serde(deserialize_with = "nullable")]
    below: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckParams {
    file: String,
    #[serde(default)]
    line: Option<u32>,
}

/// A required field whose value may be `null`.
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d)
}

impl Methods {
    pub fn new(hub: HubHandle, lean: Option<Arc<dyn LeanCommands>>) -> Self {
        Self {
            hub,
            lean,
            store: None,
        }
    }

    /// Attaches the session store that `restore`, `timeline` and `exportSession` use.
    pub fn set_store(&mut self, store: StoreHandle) {
        self.store = Some(store);
    }

    pub fn set_lean(&mut self, lean: Arc<dyn LeanCommands>) {
        self.lean = Some(lean);
    }

    /// Runs one method.
    pub async fn call(&self, method: &str, params: Option<Value>) -> Result<Reply, RpcError> {
        match method {
            "state.get" => {
                parse::<NoParams>(method, params)?;
                let snap = self.hub.snapshot_at(SystemTime::now());
                Ok(Reply {
                    result: json!({"sequence": snap.sequence, "state": snap.state}),
                    synced_to: Some(snap.sequence),
                })
            }
            "state.since" => {
                let p: SinceParams = parse(method, params)?;
                Ok(self.since(p.sequence))
            }
            "sessions.list" => {
                let p: SessionsParams = parse(method, params)?;
                Ok(Reply::plain(self.sessions(p.limit)))
            }
            "setAlert" => {
                let p: AlertParams = parse(method, params)?;
                if let Some(b) = p.below {
                    if !b.is_finite() || b < 0.0 {
                        return Err(RpcError::invalid_params(
                            method,
                            "`below` must be a finite number >= 0, or null to clear the alert",
                        ));
                    }
                }
                self.hub.send(HubEvent::SetAlert {
                    currency: p.currency,
                    below: p.below,
                });
                Ok(Reply::plain(
                    json!({"currency": p.currency, "below": p.below}),
                ))
            }
            "lean.check" => {
                let p: CheckParams = parse(method, params)?;
                check_path(method, &p.file)?;
                let line = p.line;
                self.lean(move |l| l.check(&p.file, line)).await
            }
            "lean.restart" => {
                parse::<NoParams>(method, params)?;
                self.lean(|l| l.restart()).await
            }
            "restore" | "timeline" | "exportSession" => {
                let Some(store) = &self.store else {
                    return Err(RpcError::new(
                        NOT_AVAILABLE,
                        "not available yet: session storage is not enabled",
                    ));
                };
                self.stored(store, method, params).await.map(Reply::plain)
            }
            other => Err(RpcError::method_not_found(other)),
        }
    }

    /// `restore`, `timeline`, `exportSession`: the session store's methods.
    async fn stored(
        &self,
        store: &StoreHandle,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, RpcError> {
        let failed = |e: StoreError| match e {
            StoreError::NoSuchSession(_)
            | StoreError::NoSuchSnapshot(_)
            | StoreError::OutOfRange { .. } => RpcError::invalid_params(method, e),
            other => RpcError::internal(other),
        };
        match method {
            "restore" => {
                let p: RestoreParams = parse(method, params)?;
                let target = match (p.snapshot_id, p.sequence) {
                    (Some(id), None) => RestoreTarget::Snapshot(id),
                    (None, Some(seq)) => RestoreTarget::Sequence(seq),
                    _ => {
                        return Err(RpcError::invalid_params(
                            method,
                            "give exactly one of `snapshotId` and `sequence`",
                        ))
                    }
                };
                let r = store.restore(target, &self.hub).await.map_err(failed)?;
                Ok(json!({
                    "sequence": r.sequence,
                    "restored": r.restored,
                    "snapshotId": r.snapshot_id,
                    "messageId": r.message_id,
                }))
            }
            "timeline" => {
                let p: TimelineParams = parse(method, params)?;
                let limit = p.limit.unwrap_or(500).min(MAX_TIMELINE);
                let points = store.timeline(&p.session_id, limit).await.map_err(failed)?;
                Ok(json!({"sessionId": p.session_id, "points": points}))
            }
            _ => {
                let p: ExportParams = parse(method, params)?;
                let name = p.format.as_deref().unwrap_or("jsonl");
                let format: ExportFormat = name
                    .parse()
                    .map_err(|e: String| RpcError::invalid_params(method, e))?;
                let content = store.export(&p.session_id, format).await.map_err(failed)?;
                Ok(json!({"sessionId": p.session_id, "format": name, "content": content}))
            }
        }
    }

    /// `state.since`: the missed updates, or a full state when they are no longer held or the
    /// sequence is from another run (ahead of the hub).
    fn since(&self, sequence: u64) -> Reply {
        let current = self.hub.with_state(|s| s.sequence);
        let since = if sequence > current {
            Since::TooOld
        } else {
            self.hub.since(sequence)
        };
        match since {
            Since::Updates(updates) => {
                let last = updates.last().map_or(sequence, |u| u.sequence);
                let list: Vec<_> = updates.iter().map(|u| u.as_ref()).collect();
                Reply {
                    result: json!({"resync": false, "sequence": last, "updates": list}),
                    synced_to: Some(last),
                }
            }
            Since::TooOld => {
                let snap = self.hub.snapshot_at(SystemTime::now());
                Reply {
                    result: json!({"resync": true, "sequence": snap.sequence, "state": snap.state}),
                    synced_to: Some(snap.sequence),
                }
            }
        }
    }

    /// `sessions.list`: sessions with their totals, most recently active first.
    fn sessions(&self, limit: Option<usize>) -> Value {
        let mut sessions = self.hub.with_state(|s| {
            s.sessions
                .iter()
                .map(|(id, usage)| (id.clone(), usage.clone()))
                .collect::<Vec<_>>()
        });
        sessions.sort_by(|(a_id, a), (b_id, b)| {
            epoch_ms(b.last_active)
                .cmp(&epoch_ms(a.last_active))
                .then_with(|| a_id.cmp(b_id))
        });
        sessions.truncate(limit.unwrap_or(usize::MAX));
        let list: Vec<Value> = sessions
            .into_iter()
            .map(|(id, usage)| {
                let mut v = serde_json::to_value(&usage).unwrap_or_else(|_| json!({}));
                if let Value::Object(m) = &mut v {
                    m.insert("id".into(), Value::String(id));
                }
                v
            })
            .collect();
        json!({ "sessions": list })
    }

    /// Forwards a command to the Lean control off the async threads (its calls are sync).
    async fn lean<F>(&self, f: F) -> Result<Reply, RpcError>
    where
        F: FnOnce(&dyn LeanCommands) -> Result<(), String> + Send + 'static,
    {
        let Some(lean) = self.lean.clone() else {
            return Err(RpcError::new(LEAN_UNAVAILABLE, "lean not available"));
        };
        match tokio::task::spawn_blocking(move || f(lean.as_ref())).await {
            Ok(Ok(())) => Ok(Reply::plain(json!({"accepted": true}))),
            Ok(Err(e)) => Err(RpcError::new(LEAN_FAILED, format!("lean: {e}"))),
            Err(e) => Err(RpcError::internal(format!("lean control failed: {e}"))),
        }
    }
}

/// Parses named params; no params and `[]` mean "none".
fn parse<T: DeserializeOwned>(method: &str, params: Option<Value>) -> Result<T, RpcError> {
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

fn check_path(method: &str, file: &str) -> Result<(), RpcError> {
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
