//! The OpenCode server link as the hub's state shows it (`state.opencode_link`), and what the
//! hub does with the link's reports.
//!
//! Owns [`LinkState`] (the health enum), [`LinkStatus`] (the state field), [`RevertOutcome`]
//! (the last session revert) and [`apply`], which the hub runs for a
//! `HubEvent::OpencodeLink`: a status change becomes one `health` update
//! `{opencode_link}`, a revert one `alert` update `{alert: "opencode_revert", …}` (firing when
//! it failed). Pure data; no I/O, no clock but the times passed in.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::hub::{State, UpdateSource, UpdateType};

/// Health of the link to `opencode serve`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No server URL configured or learned: nothing to do.
    #[default]
    Disabled,
    /// Waiting for the server to answer, never connected since the URL was set.
    Connecting,
    /// The event stream is open.
    Connected,
    /// The stream was lost; trying again with backoff.
    Reconnecting,
    /// The server refused the credentials (401/403): `OPENCODE_SERVER_PASSWORD` is wrong or
    /// missing.
    AuthFailed,
    /// The server did not answer `opencode.gone_after` attempts in a row.
    ServerGone,
}

impl LinkState {
    /// Every state, in the order the metric lists them.
    pub const ALL: [LinkState; 6] = [
        Self::Disabled,
        Self::Connecting,
        Self::Connected,
        Self::Reconnecting,
        Self::AuthFailed,
        Self::ServerGone,
    ];

    /// The serialised name (`"auth_failed"`, …), also the metric's `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::AuthFailed => "auth_failed",
            Self::ServerGone => "server_gone",
        }
    }
}

/// The outcome of one OpenCode session revert asked for by a time-travel restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertOutcome {
    /// True when OpenCode answered 2xx.
    pub ok: bool,
    /// Nothing was attempted because no OpenCode server is linked (not a failure of the
    /// server; the alert does not fire).
    #[serde(default)]
    pub skipped: bool,
    pub session_id: Option<String>,
    pub message_id: String,
    /// The restored point (sequence) that asked for it.
    pub restored: u64,
    /// HTTP status when the server answered.
    pub status: Option<u16>,
    /// What went wrong, for the UI; `None` when it worked.
    pub error: Option<String>,
    /// Unix ms.
    pub at: u64,
}

/// What `state.opencode_link` holds. Times are Unix ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkStatus {
    pub state: LinkState,
    /// The server's base URL (never with credentials).
    pub url: Option<String>,
    /// Where the URL came from: `config` (file or `--opencode-url`) or `plugin`.
    pub url_source: Option<String>,
    /// Basic auth is configured (the password itself is never in the state).
    pub auth: bool,
    /// When the link entered `state`.
    pub since: Option<u64>,
    /// When the current (or last) stream opened.
    pub connected_at: Option<u64>,
    /// The server's version from `GET /global/health`.
    pub server_version: Option<String>,
    /// Streams reopened after one was lost.
    pub reconnects: u64,
    /// Failed attempts in a row (as of the last status change).
    pub failures: u32,
    pub last_error: Option<String>,
    /// Events from the stream handed to the ingest (as of the last status change).
    pub events: u64,
    /// The last revert a restore asked for.
    pub last_revert: Option<RevertOutcome>,
}

impl LinkStatus {
    /// Whether `other` differs in anything but its bookkeeping (times, `failures`, `events`),
    /// i.e. whether the UI needs to hear about it: a server that stays away with the same
    /// error publishes nothing per retry.
    pub fn differs(&self, other: &LinkStatus) -> bool {
        self.state != other.state
            || self.url != other.url
            || self.url_source != other.url_source
            || self.auth != other.auth
            || self.server_version != other.server_version
            || self.last_error != other.last_error
            || self.reconnects != other.reconnects
    }
}

/// What the link hands the hub.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// The link's status changed (or is re-announced after a restore replaced the state).
    /// `last_revert` is kept from the state, not taken from here.
    Status(LinkStatus),
    /// A revert was attempted.
    Revert(RevertOutcome),
}

/// One update for the hub to publish.
pub type Update = (UpdateType, UpdateSource, Value);

/// Applies one link report to the state's `opencode_link`; returns the updates to publish.
///
/// A status becomes a `health` update that also carries `upstream` unchanged, because the
/// session store replays `health` updates by their `upstream` (`store/replay.rs`); the link's
/// own field is restored from the store's next checkpoint.
pub fn apply(state: &mut State, event: LinkEvent) -> Vec<Update> {
    let field = &mut state.opencode_link;
    match event {
        LinkEvent::Status(mut status) => {
            status.last_revert = field.last_revert.take();
            *field = status;
            let payload = json!({"opencode_link": field, "upstream": state.upstream});
            vec![(UpdateType::Health, UpdateSource::Opencode, payload)]
        }
        LinkEvent::Revert(outcome) => {
            let message = match (&outcome.error, outcome.ok) {
                (Some(e), false) if outcome.skipped => {
                    format!("OpenCode session not reverted: {e}")
                }
                (_, true) => format!(
                    "OpenCode reverted session {} to before message {}",
                    outcome.session_id.as_deref().unwrap_or("?"),
                    outcome.message_id
                ),
                (Some(e), false) => format!("OpenCode revert failed: {e}"),
                (None, false) => "OpenCode revert failed".to_owned(),
            };
            let payload = json!({
                "alert": "opencode_revert",
                "firing": !outcome.ok && !outcome.skipped,
                "message": message,
                "revert": outcome,
                "session": outcome.session_id,
            });
            field.last_revert = Some(outcome);
            vec![(UpdateType::Alert, UpdateSource::Opencode, payload)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ok: bool) -> RevertOutcome {
        RevertOutcome {
            ok,
            skipped: false,
            session_id: Some("ses_1".into()),
            message_id: "msg_1".into(),
            restored: 7,
            status: Some(if ok { 200 } else { 404 }),
            error: (!ok).then(|| "HTTP 404: Session not found".to_owned()),
            at: 1,
        }
    }

    #[test]
    fn names_match_serde() {
        for s in LinkState::ALL {
            assert_eq!(json!(s), json!(s.as_str()));
        }
    }

    #[test]
    fn status_becomes_a_health_update_and_keeps_the_last_revert() {
        let mut state = State::default();
        let ups = apply(&mut state, LinkEvent::Revert(outcome(false)));
        assert_eq!(ups.len(), 1);
        let (kind, source, payload) = &ups[0];
        assert_eq!(
            (*kind, *source),
            (UpdateType::Alert, UpdateSource::Opencode)
        );
        assert_eq!(payload["alert"], "opencode_revert");
        assert_eq!(payload["firing"], true);
        assert_eq!(payload["session"], "ses_1");
        assert!(payload["message"].as_str().unwrap().contains("404"));

        let status = LinkStatus {
            state: LinkState::Connected,
            url: Some("http://127.0.0.1:1/".into()),
            ..LinkStatus::default()
        };
        let ups = apply(&mut state, LinkEvent::Status(status));
        assert_eq!(ups[0].0, UpdateType::Health);
        assert_eq!(ups[0].2["opencode_link"]["state"], "connected");
        // The store replays `health` by its `upstream`: it must be there, unchanged.
        assert_eq!(ups[0].2["upstream"], json!(state.upstream));
        assert_eq!(state.opencode_link.state, LinkState::Connected);
        assert_eq!(state.opencode_link.last_revert, Some(outcome(false)));

        let skipped = RevertOutcome {
            skipped: true,
            error: Some("no OpenCode server is linked".into()),
            status: None,
            ..outcome(false)
        };
        let ups = apply(&mut state, LinkEvent::Revert(skipped));
        assert_eq!(ups[0].2["firing"], false);
        assert!(ups[0].2["message"]
            .as_str()
            .unwrap()
            .contains("not reverted"));

        let ups = apply(&mut state, LinkEvent::Revert(outcome(true)));
        assert_eq!(ups[0].2["firing"], false);
        assert_eq!(state.opencode_link.last_revert, Some(outcome(true)));
    }

    #[test]
    fn only_meaningful_changes_differ() {
        let a = LinkStatus {
            state: LinkState::Connecting,
            since: Some(1),
            ..LinkStatus::default()
        };
        let b = LinkStatus {
            since: Some(2),
            events: 9,
            ..a.clone()
        };
        assert!(!a.differs(&b));
        let c = LinkStatus {
            state: LinkState::ServerGone,
            ..a.clone()
        };
        assert!(a.differs(&c));
        // Another failed retry with the same error is not news.
        let d = LinkStatus {
            failures: 7,
            ..a.clone()
        };
        assert!(!a.differs(&d));
        let e = LinkStatus {
            last_error: Some("refused".into()),
            ..a.clone()
        };
        assert!(a.differs(&e));
    }
}
