//! Method dispatch and parameter validation of the WebSocket JSON-RPC API.
//!
//! Owns what each method does and what it accepts. Parameters are named (an object; an empty
//! array or no `params` means "none") and parsed with serde `deny_unknown_fields`, so a typo is a
//! -32602 naming the field instead of being ignored. `state.get` and `state.since` also tell the
//! connection which sequence the answer covers, so its notifications continue exactly after it.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::params::{
    check_path, check_session_id, parse, AlertParams, CheckParams, ExportParams, NoParams,
    RestoreParams, SessionsParams, SinceParams, TimelineParams, MAX_TIMELINE,
};
pub use super::params::{MAX_PATH_BYTES, MAX_SESSION_ID_BYTES};
use super::rpc::{RpcError, LEAN_FAILED, LEAN_UNAVAILABLE, NOT_AVAILABLE};
use super::LeanCommands;
use crate::hub::{HubEvent, HubHandle, Since};
use crate::store::{ExportFormat, RestoreTarget, StoreError, StoreHandle};
use crate::util::epoch_ms;

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
    /// The OpenCode server link `restore` reverts sessions through.
    opencode: Option<crate::opencode::LinkHandle>,
}

impl Methods {
    pub fn new(hub: HubHandle, lean: Option<Arc<dyn LeanCommands>>) -> Self {
        Self {
            hub,
            lean,
            store: None,
            opencode: None,
        }
    }

    /// Attaches the session store that `restore`, `timeline` and `exportSession` use.
    pub fn set_store(&mut self, store: StoreHandle) {
        self.store = Some(store);
    }

    /// Attaches the OpenCode server link (see `restore`).
    pub fn set_opencode(&mut self, link: crate::opencode::LinkHandle) {
        self.opencode = Some(link);
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
                // A point that maps to an OpenCode message: revert the session there too; the
                // outcome (also a failure) is in the result and an `opencode_revert` alert.
                let revert = crate::opencode::revert_after_restore(
                    self.opencode.as_ref(),
                    &self.hub,
                    store,
                    r.restored,
                    r.message_id.as_deref(),
                )
                .await;
                Ok(json!({
                    "sequence": r.sequence,
                    "restored": r.restored,
                    "snapshotId": r.snapshot_id,
                    "messageId": r.message_id,
                    "revert": crate::opencode::revert_json(revert.as_ref()),
                }))
            }
            "timeline" => {
                let p: TimelineParams = parse(method, params)?;
                check_session_id(method, &p.session_id)?;
                let limit = p.limit.unwrap_or(500).min(MAX_TIMELINE);
                let points = store.timeline(&p.session_id, limit).await.map_err(failed)?;
                Ok(json!({"sessionId": p.session_id, "points": points}))
            }
            _ => {
                let p: ExportParams = parse(method, params)?;
                check_session_id(method, &p.session_id)?;
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
