//! Session revert: when a time-travel restore lands on a point that maps to an OpenCode
//! message, ask `opencode serve` to revert that session to before the message
//! (`POST /session/{id}/revert {messageID}`, facts/opencode.md §4.2).
//!
//! Owns [`revert_after_restore`] (called by the WebSocket `restore` method, never on the proxy
//! path) and [`LinkHandle::revert`]. The outcome goes back in the restore's result and to the
//! hub as an `opencode_revert` alert (firing on failure), so the UI always shows it: a point
//! without a session, an unreachable server or an error answer fire it; a gateway without a
//! linked server reports the revert as `skipped` (not firing). Nothing is dropped silently.

use std::time::SystemTime;

use serde_json::Value;

use super::client::Client;
use super::status::{LinkEvent, RevertOutcome};
use super::LinkHandle;
use crate::hub::{HubEvent, HubHandle};
use crate::store::StoreHandle;
use crate::util::epoch_ms;

impl LinkHandle {
    /// Asks the linked server to revert `session` to before `message` (the point `restored`),
    /// tells the hub the outcome, and returns it.
    pub async fn revert(
        &self,
        session: Option<&str>,
        message: &str,
        restored: u64,
    ) -> RevertOutcome {
        let target = self.inner.target.borrow().clone();
        if target.is_none() {
            return skipped(&self.inner.hub, session, message, restored, NOT_LINKED);
        }
        let result = match (session, target) {
            (None, _) => Err((
                None,
                "the restored point names no OpenCode session".to_owned(),
            )),
            (Some(_), None) => Err((None, NOT_LINKED.to_owned())),
            (Some(sid), Some(target)) => {
                let directory = self.inner.hub.with_state(|s| {
                    s.sessions
                        .get(sid)
                        .and_then(|u| u.opencode.directory.clone())
                });
                match Client::new(target.url, &self.inner.config) {
                    Ok(client) => client
                        .revert(sid, message, directory.as_deref())
                        .await
                        .map(|_| Some(200))
                        .map_err(|e| (status_of(&e), e.to_string())),
                    Err(e) => Err((None, e.to_string())),
                }
            }
        };
        let outcome = outcome(session, message, restored, result);
        report(&self.inner.hub, &outcome);
        outcome
    }
}

/// Why nothing was attempted when no server is linked.
const NOT_LINKED: &str = "no OpenCode server is linked (set opencode.url or --opencode-url)";

/// Reports a revert that was not attempted (no server linked) and returns it.
fn skipped(
    hub: &HubHandle,
    session: Option<&str>,
    message: &str,
    restored: u64,
    why: &str,
) -> RevertOutcome {
    let mut o = outcome(session, message, restored, Err((None, why.to_owned())));
    o.skipped = true;
    report(hub, &o);
    o
}

fn status_of(e: &super::client::LinkError) -> Option<u16> {
    match e {
        super::client::LinkError::Auth { status }
        | super::client::LinkError::Status { status, .. } => Some(*status),
        _ => None,
    }
}

fn outcome(
    session: Option<&str>,
    message: &str,
    restored: u64,
    result: Result<Option<u16>, (Option<u16>, String)>,
) -> RevertOutcome {
    let (ok, status, error) = match result {
        Ok(status) => (true, status, None),
        Err((status, e)) => (false, status, Some(e)),
    };
    RevertOutcome {
        ok,
        skipped: false,
        session_id: session.map(str::to_owned),
        message_id: message.to_owned(),
        restored,
        status,
        error,
        at: epoch_ms(SystemTime::now()),
    }
}

fn report(hub: &HubHandle, outcome: &RevertOutcome) {
    if outcome.skipped {
        tracing::info!(
            message = %outcome.message_id,
            restored = outcome.restored,
            "restore maps to an OpenCode message, but no OpenCode server is linked"
        );
    } else if outcome.ok {
        tracing::info!(
            session = outcome.session_id.as_deref().unwrap_or("-"),
            message = %outcome.message_id,
            restored = outcome.restored,
            "OpenCode session reverted"
        );
    } else {
        tracing::warn!(
            session = outcome.session_id.as_deref().unwrap_or("-"),
            message = %outcome.message_id,
            restored = outcome.restored,
            error = outcome.error.as_deref().unwrap_or("-"),
            "OpenCode session revert failed"
        );
    }
    hub.send(HubEvent::OpencodeLink(LinkEvent::Revert(outcome.clone())));
}

/// After a restore of the point `restored`: when it maps to the OpenCode message `message_id`,
/// finds its session in the store and asks OpenCode to revert it (through `link`; without a
/// link the failure is reported). `None` when the point maps to no message.
pub async fn revert_after_restore(
    link: Option<&LinkHandle>,
    hub: &HubHandle,
    store: &StoreHandle,
    restored: u64,
    message_id: Option<&str>,
) -> Option<RevertOutcome> {
    let message = message_id?;
    let session = match session_of_point(store, restored).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(restored, error = %e, "the restored point's session could not be read");
            None
        }
    };
    Some(match link {
        Some(link) => link.revert(session.as_deref(), message, restored).await,
        None => skipped(hub, session.as_deref(), message, restored, NOT_LINKED),
    })
}

/// The OpenCode session the stored update `sequence` belongs to: among the sessions whose
/// stored range covers it, the one whose timeline holds it.
pub async fn session_of_point(
    store: &StoreHandle,
    sequence: u64,
) -> Result<Option<String>, crate::store::StoreError> {
    let sessions = store.sessions(usize::MAX).await?;
    for s in sessions
        .iter()
        .filter(|s| (s.first_sequence..=s.last_sequence).contains(&sequence))
    {
        let points = store.timeline(&s.id, usize::MAX).await?;
        if points
            .iter()
            .any(|p| p.sequence == sequence && p.kind == "update")
        {
            return Ok(Some(s.id.clone()));
        }
    }
    Ok(None)
}

/// The `revert` member of a restore's result.
pub fn revert_json(outcome: Option<&RevertOutcome>) -> Value {
    outcome.map_or(Value::Null, |o| {
        serde_json::to_value(o).unwrap_or(Value::Null)
    })
}
