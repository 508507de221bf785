//! Applying ingested events to the hub's [`State`], and the "plugin silent" alert.
//!
//! Owns what the hub does with a [`HubEvent::Opencode`](crate::hub::HubEvent::Opencode)
//! message and what it additionally does for each proxied request: match the call against
//! OpenCode's steps and watch for proxied traffic while the plugin says nothing. Returns the
//! updates to publish; the hub stamps and broadcasts them. No I/O, no clock but the times
//! passed in.
//!
//! Every change is published, so the session store can replay it exactly (`store/replay.rs`):
//! a batch publishes one `session` update per session touched, `{session, events, opencode,
//! totals, last_active, plugin, message_id?, remembered?}`, or a `{plugin}` update when it
//! touched none (or the plugin started); a changed plugin-silent interval publishes `{plugin}`.
//! `message_id` is the OpenCode message a timeline point maps to (for OpenCode's revert);
//! `remembered` lists, in order, what the batch added to or changed in the session's
//! deduplication memory (`memory.rs`), which `opencode` leaves out.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::event::{Kind, SessionEvent};
use super::memory::Remembered;
use crate::gateway::record::{Outcome, RequestRecord};
use crate::hub::state::State;
use crate::hub::{UpdateSource, UpdateType};
use crate::util::epoch_ms;

/// What the ingest hands the hub.
#[derive(Debug)]
pub enum OpencodeMessage {
    /// How long proxied session traffic may go on without a plugin event before the alert.
    Settings { silent_after: Duration },
    /// Events accepted from one `POST /events`, in order.
    Batch(OpencodeBatch),
}

impl OpencodeMessage {
    /// Takes the batch's [`OpencodeBatch::applied`] sender, for the hub to answer once the
    /// batch's updates are published.
    pub fn take_applied(&mut self) -> Option<oneshot::Sender<u64>> {
        match self {
            Self::Batch(b) => b.applied.take(),
            Self::Settings { .. } => None,
        }
    }
}

/// Events accepted from one request.
#[derive(Debug)]
pub struct OpencodeBatch {
    /// When the gateway accepted them (liveness is judged by arrival, not plugin clocks).
    pub received_at: SystemTime,
    pub events: Vec<SessionEvent>,
    /// Told the sequence of the last update the hub published for the batch, once it has
    /// applied it (every batch publishes at least one). The ingest waits for the store to
    /// commit that sequence before it answers; dropped unanswered when the hub never saw it.
    pub applied: Option<oneshot::Sender<u64>>,
}

impl OpencodeBatch {
    /// A batch received at `received_at`, nobody waiting for it.
    pub fn new(received_at: SystemTime, events: Vec<SessionEvent>) -> Self {
        Self {
            received_at,
            events,
            applied: None,
        }
    }
}

/// One update for the hub to publish.
pub type Update = (UpdateType, UpdateSource, Value);

/// Default of [`PluginStatus::silent_after_ms`]: 60 s.
pub const DEFAULT_SILENT_AFTER: Duration = Duration::from_secs(60);

/// Whether the plugin is talking, and the "plugin silent" alert. Times are Unix ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginStatus {
    /// Events and requests (`POST /events`) accepted since start.
    pub events: u64,
    pub batches: u64,
    pub last_event_at: Option<u64>,
    /// Version the plugin announced in `plugin.started`, and how often it started.
    pub version: Option<String>,
    pub starts: u64,
    /// The alert: proxied session traffic went on for `silent_after_ms` without a plugin
    /// event.
    pub silent: bool,
    pub silent_since: Option<u64>,
    pub silent_after_ms: u64,
    /// First proxied session call since the last plugin event.
    #[serde(skip)]
    traffic_since: Option<u64>,
}

impl Default for PluginStatus {
    fn default() -> Self {
        Self {
            events: 0,
            batches: 0,
            last_event_at: None,
            version: None,
            starts: 0,
            silent: false,
            silent_since: None,
            silent_after_ms: DEFAULT_SILENT_AFTER.as_millis() as u64,
            traffic_since: None,
        }
    }
}

impl PluginStatus {
    /// A plugin request arrived; returns `Some(false)` when that clears the alert.
    fn heard(&mut self, at: SystemTime, events: usize) -> Option<bool> {
        self.batches += 1;
        self.events += events as u64;
        self.last_event_at = Some(epoch_ms(at));
        self.traffic_since = None;
        self.silent.then(|| {
            self.silent = false;
            self.silent_since = None;
            false
        })
    }

    /// A proxied call with a session id finished at `at`; returns `Some(true)` when that
    /// raises the alert. Armed only once the plugin has been heard: a gateway used without
    /// the plugin never alerts.
    fn traffic(&mut self, at: SystemTime) -> Option<bool> {
        self.last_event_at?;
        let at = epoch_ms(at);
        let since = *self.traffic_since.get_or_insert(at);
        let quiet = at.saturating_sub(since);
        (!self.silent && quiet >= self.silent_after_ms).then(|| {
            self.silent = true;
            self.silent_since = Some(at);
            true
        })
    }

    fn alert(&self, firing: bool) -> Update {
        let message = if firing {
            format!(
                "plugin silent: proxied OpenCode traffic for {} s without a plugin event",
                self.silent_after_ms as f64 / 1000.0
            )
        } else {
            "plugin events arrive again".to_owned()
        };
        let payload = json!({
            "alert": "plugin_silent",
            "firing": firing,
            "message": message,
            "plugin": self,
        });
        (UpdateType::Alert, UpdateSource::Gateway, payload)
    }
}

/// Applies one message from the ingest; returns the updates to publish.
pub fn apply(state: &mut State, msg: OpencodeMessage) -> Vec<Update> {
    match msg {
        OpencodeMessage::Settings { silent_after } => {
            let ms = silent_after.as_millis() as u64;
            if state.plugin.silent_after_ms == ms {
                return Vec::new();
            }
            state.plugin.silent_after_ms = ms;
            vec![plugin_update(&state.plugin)]
        }
        OpencodeMessage::Batch(batch) => apply_batch(state, batch),
    }
}

fn apply_batch(state: &mut State, batch: OpencodeBatch) -> Vec<Update> {
    let mut updates = Vec::new();
    if state.plugin.heard(batch.received_at, batch.events.len()) == Some(false) {
        tracing::info!("plugin events arrive again; plugin-silent alert cleared");
        updates.push(state.plugin.alert(false));
    }
    // Sessions touched, in first-touch order, with the event names applied to each and the
    // last OpenCode message they name.
    let mut touched: Vec<Touched> = Vec::new();
    let mut plugin_started = false;
    for ev in &batch.events {
        if let Kind::PluginStarted { version, .. } = &ev.kind {
            state.plugin.starts += 1;
            state.plugin.version.clone_from(version);
            plugin_started = true;
        }
        let Some(sid) = &ev.session_id else { continue };
        state.touch_session(sid, batch.received_at);
        let Some(s) = state.sessions.get_mut(sid) else {
            continue;
        };
        let remembered = s.opencode.apply(ev, &s.totals);
        let t = match touched.iter().position(|t| &t.session == sid) {
            Some(i) => &mut touched[i],
            None => {
                touched.push(Touched {
                    session: sid.clone(),
                    events: Vec::new(),
                    message_id: None,
                    remembered: Vec::new(),
                });
                touched.last_mut().expect("just pushed")
            }
        };
        t.events.push(ev.name.clone());
        t.remembered.extend(remembered);
        if let Some(id) = revert_point(&ev.kind) {
            t.message_id = Some(id.to_owned());
        }
    }
    // Every batch changes `plugin` (counts, last event): publish it, so replay has it too.
    let published = touched
        .iter()
        .any(|t| state.sessions.contains_key(&t.session));
    if plugin_started || !published {
        updates.push(plugin_update(&state.plugin));
    }
    for t in touched {
        if let Some(s) = state.sessions.get(&t.session) {
            let mut u = session_update(&t.session, t.events, s);
            u.2["plugin"] = json!(state.plugin);
            if let Some(id) = t.message_id {
                u.2["message_id"] = json!(id);
            }
            if !t.remembered.is_empty() {
                u.2["remembered"] = json!(t.remembered);
            }
            updates.push(u);
        }
    }
    updates
}

/// One session a batch touched.
struct Touched {
    session: String,
    events: Vec<String>,
    message_id: Option<String>,
    /// What its events changed in the session's memory, in order.
    remembered: Vec<Remembered>,
}

/// The OpenCode message an event makes a point to return to: a user message, or an
/// assistant message once completed (its in-progress updates are not).
fn revert_point(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Message {
            id,
            assistant,
            completed,
            ..
        } if !assistant || *completed => Some(id),
        _ => None,
    }
}

fn plugin_update(plugin: &PluginStatus) -> Update {
    let payload = json!({"plugin": plugin});
    (UpdateType::Session, UpdateSource::Opencode, payload)
}

/// What the ingest adds to a finished proxied request: step matching for its session and the
/// plugin-silent check.
pub fn on_request(state: &mut State, record: &RequestRecord, now: SystemTime) -> Vec<Update> {
    let mut updates = Vec::new();
    let Some(sid) = &record.session_id else {
        return updates;
    };
    if let Some(s) = state.sessions.get_mut(sid) {
        let failed = record.outcome != Outcome::Ok;
        s.opencode.on_request(
            record.usage.as_ref(),
            record.cost.as_ref(),
            failed,
            &s.totals,
        );
        if s.opencode.seen {
            updates.push(session_update(sid, vec!["proxy.request".into()], s));
        }
    }
    if state.plugin.traffic(now) == Some(true) {
        tracing::warn!(
            after_ms = state.plugin.silent_after_ms,
            "plugin silent: proxied OpenCode traffic continues without plugin events"
        );
        updates.push(state.plugin.alert(true));
    }
    updates
}

fn session_update(sid: &str, events: Vec<String>, s: &crate::hub::state::SessionUsage) -> Update {
    let payload = json!({
        "session": sid,
        "events": events,
        "opencode": s.opencode,
        "totals": s.totals,
        "last_active": epoch_ms(s.last_active),
    });
    (UpdateType::Session, UpdateSource::Opencode, payload)
}
