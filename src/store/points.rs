//! What the store reads from an update besides its payload: which OpenCode session it belongs
//! to, whether it is a point worth offering on the timeline, its label, and whether it is a
//! checkpoint trigger (`session.idle`).
//!
//! Conventions for producers (the ingest side): a session update names its session in
//! `payload.session` (a string; also accepted: `session_id`, `sessionID`, `sessionId`,
//! `session.id`), the OpenCode events it applied in `payload.events` (names, e.g.
//! `"session.idle"`) or `payload.event`, and the OpenCode message it maps to in
//! `payload.message_id` (also `messageID`), which a restore can hand to OpenCode's revert API.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::hub::{Payload, StateUpdate, UpdateType};

fn str_at<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
}

/// Just the session of a `usage` payload the hub encoded as text, read without a tree.
#[derive(Deserialize)]
struct UsageSession<'a> {
    #[serde(borrow)]
    request: RequestSession<'a>,
}

#[derive(Deserialize)]
struct RequestSession<'a> {
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
}

/// The OpenCode session an update belongs to, if any (global updates have none).
pub fn session_of(u: &StateUpdate) -> Option<Cow<'_, str>> {
    match &u.payload {
        Payload::Tree(p) => tree_session(u.kind, p).map(Cow::Borrowed),
        // The hub's own encoding of a finished request: read without building a tree.
        Payload::Text(text) if u.kind == UpdateType::Usage => {
            let p: UsageSession<'_> = serde_json::from_str(text.get()).ok()?;
            p.request.session_id.filter(|s| !s.is_empty())
        }
        Payload::Text(_) => {
            tree_session(u.kind, &u.payload.value()).map(|s| Cow::Owned(s.to_owned()))
        }
    }
}

fn tree_session(kind: UpdateType, p: &Value) -> Option<&str> {
    match kind {
        UpdateType::Usage => p.get("request").and_then(|r| str_at(r, &["session_id"])),
        _ => str_at(p, &["session", "session_id", "sessionID", "sessionId"])
            .or_else(|| p.get("session").and_then(|s| str_at(s, &["id"]))),
    }
}

/// The OpenCode message an update maps to, if any.
pub fn message_of(u: &StateUpdate) -> Option<String> {
    str_at(
        &u.payload.value(),
        &["message_id", "messageID", "messageId"],
    )
    .map(str::to_owned)
}

/// The OpenCode event names a payload carries (`events: [...]` or `event`).
fn events(p: &Value) -> Vec<&str> {
    match p.get("events").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => str_at(p, &["event"]).into_iter().collect(),
    }
}

/// Whether the update says an OpenCode session went idle (a checkpoint).
pub fn is_idle(u: &StateUpdate) -> bool {
    u.kind == UpdateType::Session && events(&u.payload.value()).contains(&"session.idle")
}

/// Whether the update is a finished proxied request.
pub fn is_request(u: &StateUpdate) -> bool {
    u.kind == UpdateType::Usage
}

/// Short human label for the timeline and the Markdown export.
pub fn label(u: &StateUpdate) -> String {
    let p = &*u.payload.value();
    match u.kind {
        UpdateType::Usage => {
            let r = p.get("request").unwrap_or(&Value::Null);
            let model = str_at(r, &["model"]).unwrap_or("unknown model");
            let tokens = r
                .get("usage")
                .and_then(|u| u.get("total_tokens"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let outcome = str_at(r, &["outcome"]).unwrap_or("?");
            let cost = r
                .get("cost")
                .and_then(|c| c.get("usd"))
                .and_then(Value::as_f64);
            match cost {
                Some(usd) => format!("{model}: {tokens} tokens, ${usd:.4} ({outcome})"),
                None => format!("{model}: {tokens} tokens ({outcome})"),
            }
        }
        UpdateType::Session => {
            let names = events(p);
            if names.is_empty() {
                "session update".to_owned()
            } else {
                names.join(", ")
            }
        }
        UpdateType::Snapshot => "restored an earlier state".to_owned(),
        UpdateType::Balance => "balance".to_owned(),
        UpdateType::RateLimit => format!(
            "rate limits of {}",
            str_at(p, &["model"]).unwrap_or("a model")
        ),
        UpdateType::Health => "upstream health changed".to_owned(),
        UpdateType::Proof => format!("proof state of {}", str_at(p, &["file"]).unwrap_or("?")),
        UpdateType::Alert => "alert".to_owned(),
    }
}

/// The `type` column value (the update's serialised type name).
pub fn type_name(kind: UpdateType) -> &'static str {
    match kind {
        UpdateType::Session => "session",
        UpdateType::Usage => "usage",
        UpdateType::Balance => "balance",
        UpdateType::RateLimit => "rate_limit",
        UpdateType::Health => "health",
        UpdateType::Proof => "proof",
        UpdateType::Snapshot => "snapshot",
        UpdateType::Alert => "alert",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::hub::UpdateSource;

    fn update(kind: UpdateType, payload: Value) -> StateUpdate {
        StateUpdate::new(kind, 1, 1, payload, UpdateSource::Opencode)
    }

    #[test]
    fn sessions_and_idle_points_are_found() {
        let u = update(
            UpdateType::Usage,
            json!({"request": {"session_id": "ses_a", "model": "m", "usage": {"total_tokens": 7}, "outcome": "ok"}}),
        );
        assert_eq!(session_of(&u).as_deref(), Some("ses_a"));
        assert_eq!(label(&u), "m: 7 tokens (ok)");
        // The same payload as the hub sends it: encoded text.
        let text = StateUpdate::new(
            UpdateType::Usage,
            1,
            1,
            Payload::encode(&u.payload).expect("encode"),
            UpdateSource::Venice,
        );
        assert!(text.payload.text().is_some());
        assert_eq!(session_of(&text).as_deref(), Some("ses_a"));
        assert_eq!(label(&text), "m: 7 tokens (ok)");
        let anonymous = json!({"request": {"session_id": null, "model": "m"}});
        let anonymous = StateUpdate::new(
            UpdateType::Usage,
            1,
            1,
            Payload::encode(&anonymous).expect("encode"),
            UpdateSource::Venice,
        );
        assert_eq!(session_of(&anonymous), None);
        let idle = update(
            UpdateType::Session,
            json!({"events": ["message.updated", "session.idle"], "session": "ses_b", "messageID": "msg_1"}),
        );
        assert_eq!(session_of(&idle).as_deref(), Some("ses_b"));
        assert_eq!(message_of(&idle).as_deref(), Some("msg_1"));
        assert!(is_idle(&idle));
        assert_eq!(label(&idle), "message.updated, session.idle");
        let global = update(UpdateType::Balance, json!({"balance": {}}));
        assert_eq!(session_of(&global), None);
        assert!(!is_idle(&global));
    }

    #[test]
    fn type_names_match_serde() {
        for kind in [
            UpdateType::Session,
            UpdateType::Usage,
            UpdateType::Balance,
            UpdateType::RateLimit,
            UpdateType::Health,
            UpdateType::Proof,
            UpdateType::Snapshot,
            UpdateType::Alert,
        ] {
            assert_eq!(json!(kind), json!(type_name(kind)));
        }
    }
}
