//! The ingest's entry point for OpenCode events that do not come through `POST /events`: the
//! `opencode serve` event stream read by the OpenCode server link (`crate::opencode`).
//!
//! Owns [`to_wire`], the Rust twin of the plugin's `toWire` (plugin/src/sidepanel.ts): the same
//! choice of bus events, turned into the plugin's `PluginEvent { event, timestamp, data }`, and
//! [`Ingest::feed`], which runs them through the very validation ([`super::event::parse`]),
//! `.lean` hand-off and hub batch that `POST /events` uses. So a session reported by both the
//! plugin and the stream lands in the same per-session state, where messages, steps and tool
//! calls are deduplicated by their OpenCode ids.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::{event, Accepted, Ingest, OpencodeBatch, OpencodeMessage};
use crate::hub::HubEvent;

/// Turns one OpenCode bus event `{id?, type, properties}` into the plugin's wire event, or
/// `None` for events the gateway does not read (deltas, startup noise, heartbeats) — exactly
/// the ones the plugin forwards.
pub fn to_wire(bus: &Value, timestamp: u64) -> Option<Value> {
    let name = bus.get("type")?.as_str()?;
    let props = bus.get("properties").filter(|p| p.is_object());
    let empty = json!({});
    let props = props.unwrap_or(&empty);
    let wanted = match name {
        "session.created"
        | "session.updated"
        | "session.deleted"
        | "session.status"
        | "session.idle"
        | "session.compacted"
        | "session.error"
        | "message.updated"
        | "file.edited"
        | "file.watcher.updated"
        | "permission.asked"
        | "permission.replied" => true,
        "message.part.updated" => {
            let part = props.get("part");
            let kind = part.and_then(|p| p.get("type")).and_then(Value::as_str);
            let status = part
                .and_then(|p| p.pointer("/state/status"))
                .and_then(Value::as_str);
            kind == Some("step-finish")
                || (kind == Some("tool") && matches!(status, Some("completed" | "error")))
        }
        _ => false,
    };
    let mut wire = json!({"event": name, "timestamp": timestamp, "data": props});
    // The bus event id lets the ingest count an event reported by both the plugin and this
    // link once (`session.error` has no id of its own).
    if let Some(id) = bus.get("id").and_then(Value::as_str) {
        wire["id"] = json!(id);
    }
    wanted.then_some(wire)
}

impl Ingest {
    /// Feeds OpenCode bus events (as the server's event stream carries them) into the same
    /// path as plugin events: [`to_wire`], validation, `.lean` edits to the Lean component, and
    /// one hub batch per `ingest.max_events`. Events the gateway does not read are skipped and
    /// not counted; invalid ones are returned in `rejected`.
    pub fn feed(&self, bus_events: &[Value]) -> Accepted {
        let now = crate::util::epoch_ms(SystemTime::now());
        let mut accepted = Accepted::default();
        let mut events = Vec::new();
        for (i, bus) in bus_events.iter().enumerate() {
            let Some(wire) = to_wire(bus, now) else {
                continue;
            };
            match event::parse(&wire) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    tracing::debug!(index = i, error = %e, "stream event rejected");
                    accepted.rejected.push((i, e));
                }
            }
        }
        accepted.accepted = events.len();
        self.check_lean(&events);
        let max = self.config.max_events.max(1);
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(max));
            let batch = std::mem::replace(&mut events, rest);
            self.hub.send(HubEvent::Opencode(OpencodeMessage::Batch(
                OpencodeBatch::new(SystemTime::now(), batch),
            )));
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_choice_of_events() {
        let ev = |t: &str, p: Value| json!({"id": "evt_1", "type": t, "properties": p});
        let step = ev(
            "message.part.updated",
            json!({"part": {"id": "prt_1", "type": "step-finish", "tokens": {}}}),
        );
        let w = to_wire(&step, 5).expect("step-finish is forwarded");
        assert_eq!(w["event"], "message.part.updated");
        assert_eq!(w["timestamp"], 5);
        assert_eq!(w["data"]["part"]["id"], "prt_1");
        assert!(event::parse(&w).is_ok());
        let running = ev(
            "message.part.updated",
            json!({"part": {"type": "tool", "state": {"status": "running"}}}),
        );
        assert_eq!(to_wire(&running, 1), None);
        let done = ev(
            "message.part.updated",
            json!({"part": {"type": "tool", "state": {"status": "error"}}}),
        );
        assert!(to_wire(&done, 1).is_some());
        for skipped in [
            "message.part.delta",
            "server.connected",
            "server.heartbeat",
            "plugin.added",
        ] {
            assert_eq!(to_wire(&ev(skipped, json!({})), 1), None, "{skipped}");
        }
        let idle = to_wire(&ev("session.idle", json!({"sessionID": "ses_1"})), 1).unwrap();
        assert_eq!(idle["data"]["sessionID"], "ses_1");
        // No properties: an empty data object (the schema then says what is missing).
        let bare = to_wire(&json!({"type": "session.idle"}), 1).unwrap();
        assert_eq!(bare["data"], json!({}));
        assert_eq!(to_wire(&json!({"properties": {}}), 1), None);
    }

    #[test]
    fn a_session_error_from_both_the_plugin_and_the_link_counts_once() {
        use crate::hub::state::State;
        use crate::ingest::apply::apply;
        let bus = json!({"id": "evt_err1", "type": "session.error",
            "properties": {"sessionID": "ses_1", "error": {"name": "APIError", "data": {"message": "boom"}}}});
        let wire = to_wire(&bus, 7).expect("session.error is forwarded");
        assert_eq!(wire["id"], "evt_err1", "the bus event id travels with it");
        let parsed = event::parse(&wire).expect("valid");
        assert_eq!(parsed.event_id.as_deref(), Some("evt_err1"));

        let mut state = State::default();
        let send = |state: &mut State, events: Vec<event::SessionEvent>| {
            let msg = OpencodeMessage::Batch(OpencodeBatch::new(SystemTime::now(), events));
            apply(state, msg)
        };
        // The plugin's copy and the link's copy of the same bus event.
        send(&mut state, vec![parsed.clone()]);
        send(&mut state, vec![parsed.clone()]);
        assert_eq!(state.sessions["ses_1"].opencode.errors, 1);
        // Another error event (another id) counts; one without an id always counts.
        let mut other = parsed.clone();
        other.event_id = Some("evt_err2".into());
        let mut anonymous = parsed;
        anonymous.event_id = None;
        send(&mut state, vec![other, anonymous]);
        assert_eq!(state.sessions["ses_1"].opencode.errors, 3);
    }

    #[test]
    fn an_event_id_must_be_a_short_printable_string() {
        let ok = json!({"event": "session.idle", "timestamp": 1, "id": "evt_1", "data": {"sessionID": "s"}});
        assert_eq!(
            event::parse(&ok).unwrap().event_id.as_deref(),
            Some("evt_1")
        );
        let bad =
            json!({"event": "session.idle", "timestamp": 1, "id": 5, "data": {"sessionID": "s"}});
        let e = event::parse(&bad).unwrap_err();
        assert!(e.contains("`id`"), "{e}");
    }

    #[test]
    fn the_plugins_server_url_reaches_the_link() {
        let (hub, handle) = crate::hub::Hub::new(
            std::sync::Arc::new(crate::metrics::Metrics::new()),
            Default::default(),
        );
        let ingest = Ingest::new(handle, Default::default(), "t".repeat(32));
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        ingest.on_server_url(move |url| sink.lock().push(url.to_owned()));
        let body = json!([
            {"event": "plugin.started", "timestamp": 1, "data": {"version": "0.1.0", "serverUrl": "http://127.0.0.1:4096/"}},
            {"event": "plugin.started", "timestamp": 2, "data": {"version": "0.1.0"}},
        ]);
        ingest
            .accept(body.to_string().as_bytes())
            .expect("accepted");
        assert_eq!(*seen.lock(), ["http://127.0.0.1:4096/"]);
        drop(hub);
    }
}
