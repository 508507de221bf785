//! The OpenCode server link task: waits for `opencode serve` to answer, subscribes to its event
//! stream, feeds every event into the ingest, and reconnects with backoff.
//!
//! Owns the connection state machine and its reports to the hub:
//!
//! ```text
//! no URL ─▶ disabled            URL set ─▶ connecting ─▶ GET /global/health (short timeout,
//!   retried with backoff: the port accepts connections before the app answers) ─▶
//!   GET /global/event ─▶ first event ─▶ connected ─▶ events ─▶ Ingest::feed (same path as
//!   POST /events) … stream ends / silent for idle_timeout ─▶ reconnecting ─▶ health …
//! 401/403 anywhere ─▶ auth_failed (retried at the longest backoff)
//! gone_after failed attempts in a row ─▶ server_gone (retried with backoff)
//! ```
//!
//! A status is sent to the hub only when it changes meaningfully, and again when the hub's copy
//! differs (a restore replaced the state with a stored one; checked every second). A changed URL (configured, or learned
//! from the plugin) restarts the machine. Never touches the proxy path.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use super::backoff::Backoff;
use super::client::{Client, LinkError};
use super::sse::SseParser;
use super::status::{LinkEvent, LinkState, LinkStatus};
use super::{Inner, Target};
use crate::hub::HubEvent;
use crate::services::{stopped, Task};
use crate::util::epoch_ms;

/// The supervised background task (`"opencode-link"`).
pub struct LinkTask {
    pub(super) inner: Arc<Inner>,
}

/// Aborts a spawned helper when the task's run ends (also by panic or cancellation).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl Task for LinkTask {
    fn name(&self) -> &'static str {
        "opencode-link"
    }

    async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) -> Result<(), String> {
        let _resend = AbortOnDrop(tokio::spawn(resend_after_restore(self.inner.clone())));
        let mut target_rx = self.inner.target.subscribe();
        loop {
            let target = target_rx.borrow_and_update().clone();
            let Some(target) = target else {
                self.inner.report(|s| {
                    *s = LinkStatus {
                        state: LinkState::Disabled,
                        ..LinkStatus::default()
                    }
                });
                tokio::select! {
                    changed = target_rx.changed() => if changed.is_err() { return Ok(()) },
                    _ = stopped(&mut shutdown) => return Ok(()),
                }
                continue;
            };
            let span =
                tracing::info_span!("opencode_link", url = %target.url, source = target.source);
            tokio::select! {
                r = self.inner.connect_loop(&target).instrument(span) => return r,
                changed = target_rx.changed() => if changed.is_err() { return Ok(()) },
                _ = stopped(&mut shutdown) => return Ok(()),
            }
            tracing::info!(url = %target.url, "OpenCode server URL changed; relinking");
        }
    }
}

/// How often the link checks that the hub still holds its status.
const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Re-announces the link's status when the hub's copy differs, i.e. after a restore replaced
/// the hub's state with a stored one. Polls under a short read lock rather than subscribing to
/// the updates, so it never counts as a live-update subscriber (`sidepanel_ws_clients`).
async fn resend_after_restore(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(RESYNC_EVERY).await;
        let status = inner.status.lock().clone();
        let held = inner.hub.with_state(|s| s.opencode_link.clone());
        if status.differs(&held) {
            tracing::debug!("OpenCode link: the hub's copy of the status differs; re-sent");
            inner
                .hub
                .send(HubEvent::OpencodeLink(LinkEvent::Status(status)));
        }
    }
}

/// Whether one stream ended after it had delivered events.
enum StreamEnd {
    /// It never produced an event.
    Empty(LinkError),
    /// It was connected and then ended (cleanly: `Ok`, or with an error).
    Lost(Option<LinkError>),
}

impl Inner {
    /// Updates the shared status with `f` and tells the hub when it changed meaningfully.
    pub(super) fn report(&self, f: impl FnOnce(&mut LinkStatus)) {
        let mut guard = self.status.lock();
        let before = guard.clone();
        f(&mut guard);
        if guard.state != before.state {
            guard.since = Some(epoch_ms(SystemTime::now()));
        }
        // A fresh gateway without a server publishes nothing: its status stays the default.
        if guard.differs(&before) {
            let status = guard.clone();
            drop(guard);
            tracing::info!(
                state = status.state.as_str(),
                url = status.url.as_deref().unwrap_or("-"),
                error = status.last_error.as_deref().unwrap_or("-"),
                "OpenCode link"
            );
            self.hub
                .send(HubEvent::OpencodeLink(LinkEvent::Status(status)));
        }
    }

    /// Connects to `target` until the task is cancelled (URL change, shutdown).
    async fn connect_loop(&self, target: &Target) -> Result<(), String> {
        let client = Client::new(target.url.clone(), &self.config).map_err(|e| e.to_string())?;
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        let auth = self.config.password.is_some();
        self.report(|s| {
            *s = LinkStatus {
                state: LinkState::Connecting,
                url: Some(target.url.to_string()),
                url_source: Some(target.source.to_owned()),
                auth,
                ..LinkStatus::default()
            }
        });
        let mut ever_connected = false;
        loop {
            let failure = match self.attempt(&client).await {
                Ok(end) => {
                    ever_connected |= matches!(end, StreamEnd::Lost(_));
                    match end {
                        StreamEnd::Lost(e) => {
                            backoff.reset();
                            let error = e.map_or_else(
                                || "the event stream ended".to_owned(),
                                |e| e.to_string(),
                            );
                            self.report(|s| {
                                s.state = LinkState::Reconnecting;
                                s.reconnects += 1;
                                s.failures = 0;
                                s.last_error = Some(error);
                            });
                            None
                        }
                        StreamEnd::Empty(e) => Some(e),
                    }
                }
                Err(e) => Some(e),
            };
            if let Some(e) = failure {
                if matches!(e, LinkError::Auth { .. }) {
                    backoff.saturate();
                }
                let gone_after = self.config.gone_after.max(1);
                self.report(|s| {
                    s.failures = s.failures.saturating_add(1);
                    s.state = match &e {
                        LinkError::Auth { .. } => LinkState::AuthFailed,
                        _ if s.failures >= gone_after => LinkState::ServerGone,
                        _ if ever_connected => LinkState::Reconnecting,
                        _ => LinkState::Connecting,
                    };
                    s.last_error = Some(e.to_string());
                });
            }
            let wait = backoff.next_wait();
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "OpenCode link: next attempt"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: health check, open the stream, read it until it ends.
    async fn attempt(&self, client: &Client) -> Result<StreamEnd, LinkError> {
        let health = client.health().await?;
        let resp = client.events().await?;
        let mut body = resp.bytes_stream();
        let mut parser = SseParser::default();
        let mut connected = false;
        let idle = self.config.idle_timeout;
        loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    let e = LinkError::Timeout {
                        what: "the event stream".into(),
                        timeout: idle,
                    };
                    return Ok(end(connected, Some(e)));
                }
                Ok(None) => return Ok(end(connected, None)),
                Ok(Some(Err(e))) => {
                    let e = LinkError::Protocol(format!("the event stream broke: {e}"));
                    return Ok(end(connected, Some(e)));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let events: Vec<Value> = parser
                .push(&chunk)
                .iter()
                .filter_map(|data| match serde_json::from_str::<Value>(data) {
                    Ok(v) => Some(unwrap_global(v)),
                    Err(e) => {
                        tracing::debug!(error = %e, "OpenCode stream: event is not JSON; skipped");
                        None
                    }
                })
                .collect();
            if events.is_empty() {
                continue;
            }
            if !connected {
                connected = true;
                let version = health.version.clone();
                self.report(|s| {
                    s.state = LinkState::Connected;
                    s.connected_at = Some(epoch_ms(SystemTime::now()));
                    s.server_version = version;
                    s.failures = 0;
                    s.last_error = None;
                });
            }
            let accepted = self.ingest.feed(&events);
            if accepted.accepted > 0 {
                self.status.lock().events += accepted.accepted as u64;
            }
        }
    }
}

fn end(connected: bool, e: Option<LinkError>) -> StreamEnd {
    if connected {
        StreamEnd::Lost(e)
    } else {
        StreamEnd::Empty(e.unwrap_or_else(|| {
            LinkError::Protocol("the event stream ended before its first event".into())
        }))
    }
}

/// `GET /global/event` wraps each event as `{directory, project, payload}`; `GET /event` does
/// not. Either way the bus event `{id, type, properties}` comes out.
pub fn unwrap_global(v: Value) -> Value {
    match v {
        Value::Object(mut m)
            if m.get("payload").is_some_and(Value::is_object) && !m.contains_key("type") =>
        {
            m.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// A URL for the watch channel: the configured one, or none.
pub(super) fn initial_target(config: &super::OpencodeConfig) -> watch::Sender<Option<Target>> {
    let target = config.url.clone().map(|url| Target {
        url,
        source: "config",
    });
    watch::channel(target).0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn global_events_are_unwrapped() {
        let wrapped = json!({"directory": "/p", "project": "global",
                             "payload": {"id": "evt_1", "type": "session.idle", "properties": {}}});
        assert_eq!(unwrap_global(wrapped)["type"], "session.idle");
        let plain = json!({"id": "evt_1", "type": "server.connected", "properties": {}});
        assert_eq!(unwrap_global(plain.clone()), plain);
        let sync = json!({"payload": {"type": "sync", "syncEvent": {}}});
        assert_eq!(unwrap_global(sync)["type"], "sync");
    }
}
