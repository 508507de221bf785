//! Rebuilding a [`State`] from stored updates: [`State::apply_update`].
//!
//! Replay must end in exactly the state the hub had after publishing the same updates, so each
//! update type is applied from what its payload carries:
//!
//! | type | payload | replay |
//! | --- | --- | --- |
//! | `usage` | `{request, model, model_totals, session_totals, totals}` | `State::record_request(request, timestamp)` — the one method the hub ran, on the record after the hub filled in its cost, at the same time |
//! | `balance` | `{balance}` | replace `balance` |
//! | `rate_limit` | `{model, limits}` | replace `rate_limits[model]` |
//! | `health` | `{upstream, opencode_link?, store?}` | replace `upstream`; `opencode_link` when present; `store` (a store status change) is ignored: it is live only (`State::store`, never serialized), so replay and restores never bring back an old status |
//! | `proof` | `{file, state}` | replace `proof[file]` |
//! | `alert` | `{…, alerts?, plugin?, revert?}` | replace `alerts` / `plugin` / `opencode_link.last_revert` when present |
//! | `snapshot` | the whole state (+ `restored_from`) | replace everything |
//! | `session` | `{session, events, opencode, totals, last_active, plugin?, message_id?, remembered?}` or `{plugin}` | create/refresh the session (as `touch_session` at `last_active`; older logs without it: the update's time), replace its `opencode` (keeping its deduplication memory, then applying `remembered`) and totals; `plugin` when present |
//!
//! The sessions' deduplication memory (`ingest/memory.rs`) is not in the state's JSON: a
//! `session` update carries what it changed (`remembered`), a `usage` update rebuilds its part
//! by re-running the request, a snapshot stores it whole beside the state (`ingest_memory`), and
//! a `snapshot` update (a restore) gets it from the point it restored (`Db::apply`, which has
//! the database; `apply_update` alone leaves it empty).
//!
//! A producer that adds an update type or changes what a payload carries must extend this
//! table; `tests/store_replay.rs` drives the real hub with random events and fails when replay
//! and the live state differ. Whatever replay cannot rebuild is corrected at the next
//! checkpoint (the hub sends its exact state every `snapshot_every` updates, and the writer
//! logs which fields differed).

use serde::Deserialize;
use serde_json::Value;

use super::error::StoreError;
use crate::gateway::record::RequestRecord;
use crate::hub::state::{Alerts, Balance, ModelLimits, Totals, UpstreamHealth};
use crate::hub::{State, StateUpdate, UpdateType};
use crate::ingest::{OpencodeSession, PluginStatus, Remembered};
use crate::opencode::{LinkStatus, RevertOutcome};
use crate::util::from_epoch_ms;

fn field<'a>(u: &StateUpdate, p: &'a Value, name: &str) -> Result<&'a Value, StoreError> {
    p.get(name).ok_or_else(|| {
        StoreError::decode(
            format!("update {}", u.sequence),
            format!("its payload has no `{name}`"),
        )
    })
}

/// A `usage` payload as the hub encodes it; replay needs only the request.
#[derive(Deserialize)]
struct UsageDe {
    request: RequestRecord,
}

fn parse<'a, T: Deserialize<'a>>(u: &StateUpdate, v: &'a Value) -> Result<T, StoreError> {
    T::deserialize(v).map_err(|e| StoreError::decode(format!("update {}", u.sequence), e))
}

impl State {
    /// Applies one stored update, as the hub did when it published it. The state's `sequence`
    /// becomes the update's.
    pub fn apply_update(&mut self, u: &StateUpdate) -> Result<(), StoreError> {
        if let (UpdateType::Usage, Some(text)) = (u.kind, u.payload.text()) {
            // The hub's own encoding: the request is read straight from the text.
            let p: UsageDe = serde_json::from_str(text)
                .map_err(|e| StoreError::decode(format!("update {}", u.sequence), e))?;
            self.record_request(&p.request, from_epoch_ms(u.timestamp));
            self.sequence = u.sequence;
            return Ok(());
        }
        let p = &*u.payload.value();
        match u.kind {
            UpdateType::Usage => {
                // Exactly what the hub did with the finished request (same method, same
                // time); the updates it returned were published (and are replayed) on their own.
                let record: RequestRecord = parse(u, field(u, p, "request")?)?;
                self.record_request(&record, from_epoch_ms(u.timestamp));
            }
            UpdateType::Balance => self.balance = parse::<Balance>(u, field(u, p, "balance")?)?,
            UpdateType::RateLimit => {
                let model: String = parse(u, field(u, p, "model")?)?;
                match parse::<Option<ModelLimits>>(u, field(u, p, "limits")?)? {
                    Some(limits) => {
                        self.rate_limits.insert(model, limits);
                    }
                    None => {
                        self.rate_limits.remove(&model);
                    }
                }
            }
            UpdateType::Health => {
                // A store status change carries `store` too: live only, not replayed.
                self.upstream = parse::<UpstreamHealth>(u, field(u, p, "upstream")?)?;
                if let Some(v) = p.get("opencode_link") {
                    self.opencode_link = parse::<LinkStatus>(u, v)?;
                }
            }
            UpdateType::Proof => {
                let file: String = parse(u, field(u, p, "file")?)?;
                self.proof.insert(file, field(u, p, "state")?.clone());
            }
            UpdateType::Alert => {
                if let Some(v) = p.get("alerts") {
                    self.alerts = parse::<Alerts>(u, v)?;
                }
                if let Some(v) = p.get("revert") {
                    self.opencode_link.last_revert = Some(parse::<RevertOutcome>(u, v)?);
                }
                self.apply_plugin(u, p)?;
            }
            UpdateType::Snapshot => *self = State::from_json(p, u.sequence)?,
            UpdateType::Session => {
                self.apply_plugin(u, p)?;
                self.apply_session(u, p)?;
            }
        }
        self.sequence = u.sequence;
        Ok(())
    }

    fn apply_plugin(&mut self, u: &StateUpdate, p: &Value) -> Result<(), StoreError> {
        if let Some(v) = p.get("plugin") {
            self.plugin = parse::<PluginStatus>(u, v)?;
        }
        Ok(())
    }

    fn apply_session(&mut self, u: &StateUpdate, p: &Value) -> Result<(), StoreError> {
        let Some(id) = p.get("session").and_then(serde_json::Value::as_str) else {
            return Ok(());
        };
        let at = match p.get("last_active") {
            Some(v) => from_epoch_ms(parse::<u64>(u, v)?),
            None => from_epoch_ms(u.timestamp),
        };
        self.touch_session(id, at);
        let opencode = p
            .get("opencode")
            .map(|v| parse::<OpencodeSession>(u, v))
            .transpose()?;
        let remembered = p
            .get("remembered")
            .map(|v| parse::<Vec<Remembered>>(u, v))
            .transpose()?
            .unwrap_or_default();
        let totals = p.get("totals").map(|v| parse::<Totals>(u, v)).transpose()?;
        if let Some(s) = self.sessions.get_mut(id) {
            match opencode {
                Some(o) => s.opencode.replay(o, &remembered),
                None => {
                    for change in &remembered {
                        s.opencode.memory_mut().replay(change);
                    }
                }
            }
            if let Some(t) = totals {
                s.totals = t;
            }
        }
        Ok(())
    }

    /// Reads a whole state (a snapshot, or a `snapshot` update's payload) at `sequence`.
    pub fn from_json(v: &Value, sequence: u64) -> Result<State, StoreError> {
        let mut state = State::deserialize(v)
            .map_err(|e| StoreError::decode(format!("the state at sequence {sequence}"), e))?;
        state.sequence = sequence;
        Ok(state)
    }
}

/// Folds `updates` (in sequence order) onto `state`.
pub fn replay<'a>(
    state: &mut State,
    updates: impl IntoIterator<Item = &'a StateUpdate>,
) -> Result<(), StoreError> {
    for u in updates {
        state.apply_update(u)?;
    }
    Ok(())
}
