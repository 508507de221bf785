//! Applying Venice's response headers to the state: balance, rate limits and the alerts the
//! balance raises or clears, in the batches [`super::coalesce`] forms.
//!
//! Owns the hub's side of a [`super::HubEvent::Headers`]: waiting for the window, applying
//! every waiting event in order, publishing one `balance` update and one `rate_limit` update
//! per model for the batch, reporting the headers to the metrics, and logging each malformed
//! header name once.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use serde_json::json;

use super::{Hub, Shared, UpdateSource, UpdateType};
use crate::gateway::headers::VeniceHeaders;
use crate::util::epoch_ms;

/// One response's headers, as [`HubEvent::Headers`] carries them.
#[derive(Debug)]
pub(super) struct HeaderEvent {
    pub model: Option<String>,
    pub headers: Box<VeniceHeaders>,
    pub at: SystemTime,
}

impl Hub {
    /// Takes one header event: applied now when the window is quiet, else when it ends.
    pub(super) fn offer_headers(&self, event: HeaderEvent) {
        let ready = self.coalesce.lock().offer(event, Instant::now());
        if !ready.is_empty() {
            self.apply_headers(ready);
        }
    }

    /// Applies the header events waiting for their window now (the hub's run loop does this
    /// when the window ends, and on the way out).
    pub fn flush_coalesced(&self) {
        let waiting = self.coalesce.lock().take(Instant::now());
        if !waiting.is_empty() {
            self.publishing(|hub| hub.apply_headers(waiting));
        }
    }

    /// Applies header events in order and publishes one balance update and one rate-limit
    /// update per model for all of them, plus any alert they raise or clear.
    fn apply_headers(&self, events: Vec<HeaderEvent>) {
        let now = epoch_ms(SystemTime::now());
        let mut guard = self.shared.write();
        let Shared { state, log } = &mut *guard;
        let mut balance = false;
        let mut limits = BTreeSet::new();
        let mut observed = Vec::with_capacity(events.len());
        for HeaderEvent { model, headers, at } in events {
            self.warn_malformed(&headers);
            let key = state.model_key(model.as_deref().or(headers.model_id.as_deref()));
            let changes = state.apply_headers(model.as_deref(), &headers, at);
            balance |= changes.balance;
            limits.extend(changes.limits);
            for (currency, firing) in &changes.alerts {
                let payload = json!({
                    "currency": currency,
                    "firing": firing,
                    "balance": state.balance,
                    "alerts": state.alerts,
                });
                if *firing {
                    tracing::warn!(?currency, balance = ?state.balance, "balance below the alert threshold");
                } else {
                    tracing::info!(?currency, "balance back above the alert threshold");
                }
                log.publish(UpdateType::Alert, UpdateSource::Gateway, now, payload);
            }
            observed.push((key, headers));
        }
        if balance {
            let payload = json!({"balance": state.balance});
            log.publish(UpdateType::Balance, UpdateSource::Venice, now, payload);
        }
        for m in limits {
            let payload = json!({"model": m, "limits": state.rate_limits.get(&m)});
            log.publish(UpdateType::RateLimit, UpdateSource::Venice, now, payload);
        }
        state.sequence = log.last();
        let firing = (state.alerts.diem_firing, state.alerts.usd_firing);
        log.checkpoint(state, false);
        drop(guard);
        for (key, headers) in &observed {
            self.metrics.observe_headers(key, headers);
        }
        self.metrics.set_alerts_firing(firing);
    }

    fn warn_malformed(&self, h: &VeniceHeaders) {
        if h.malformed.is_empty() {
            return;
        }
        let mut warned = self.warned.lock();
        for name in &h.malformed {
            if warned.insert(name) {
                tracing::warn!(
                    header = name,
                    "upstream sent a malformed header; ignoring it (logged once)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{HeaderMap, HeaderValue};
    use parking_lot::RwLock;

    use super::*;
    use crate::hub::{HubEvent, HubHandle, StateUpdate};
    use crate::metrics::Metrics;

    fn headers(diem: f64, remaining: u64) -> HubEvent {
        let mut h = HeaderMap::new();
        h.insert("x-venice-balance-diem", HeaderValue::from(diem as u64));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from(remaining),
        );
        let at = SystemTime::now();
        HubEvent::Headers {
            model: Some("kimi-k2-5".into()),
            headers: Box::new(VeniceHeaders::parse(&h, at)),
            at,
        }
    }

    fn hub() -> (Hub, HubHandle) {
        let metrics = Arc::new(Metrics::new());
        Hub::new(metrics, Arc::new(RwLock::new(Default::default())))
    }

    fn drain(rx: &mut tokio::sync::broadcast::Receiver<Arc<StateUpdate>>) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while let Ok(u) = rx.try_recv() {
            let kind = serde_json::to_value(u.kind).unwrap_or_default();
            let value = match u.kind {
                UpdateType::Balance => u.payload.value()["balance"]["diem"]
                    .as_f64()
                    .unwrap_or(-1.0),
                _ => u.payload.value()["limits"]["requests"]["remaining"]
                    .as_f64()
                    .unwrap_or(-1.0),
            };
            out.push((kind.as_str().unwrap_or("?").to_owned(), value as u64));
        }
        out
    }

    #[test]
    fn a_burst_of_headers_publishes_the_first_at_once_and_the_latest_at_the_window_end() {
        let (hub, handle) = hub();
        let mut rx = handle.subscribe();
        hub.apply(headers(10.0, 100));
        assert_eq!(
            drain(&mut rx),
            [("balance".into(), 10), ("rate_limit".into(), 100)]
        );
        // Inside the window: nothing is applied or published yet, the state does not run ahead.
        hub.apply(headers(9.0, 99));
        hub.apply(headers(8.0, 98));
        assert!(drain(&mut rx).is_empty());
        assert_eq!(handle.with_state(|s| s.balance.diem), Some(10.0));
        // The window ends: every waiting event is applied, one update per key, latest values.
        hub.flush_coalesced();
        assert_eq!(
            drain(&mut rx),
            [("balance".into(), 8), ("rate_limit".into(), 98)]
        );
        assert_eq!(handle.with_state(|s| s.balance.diem), Some(8.0));
        let sequence = handle.with_state(|s| s.sequence);
        assert_eq!(sequence, 4, "four updates for three responses");
        hub.flush_coalesced();
        assert!(drain(&mut rx).is_empty(), "nothing left to publish");
    }

    #[test]
    fn a_finished_request_with_its_held_headers_publishes_them_before_its_usage() {
        let (hub, handle) = hub();
        let mut rx = handle.subscribe();
        let HubEvent::Headers { model, headers, at } = headers(7.0, 42) else {
            unreachable!("headers() builds a Headers event")
        };
        let mut ctx = crate::gateway::ctx::RequestCtx::new();
        ctx.method = "POST".into();
        ctx.path = "/chat/completions".into();
        ctx.status = Some(200);
        ctx.request_model = model.clone();
        let record = Box::new(ctx.finish(None));
        hub.apply(HubEvent::Completed {
            model,
            headers,
            at,
            record,
        });
        let kinds: Vec<String> = drain(&mut rx).into_iter().map(|(k, _)| k).collect();
        // `health`: the first answered request also marks the upstream up.
        assert_eq!(kinds, ["balance", "rate_limit", "usage", "health"]);
        assert_eq!(handle.with_state(|s| s.balance.diem), Some(7.0));
        assert_eq!(handle.with_state(|s| s.totals.requests), 1);
    }
}
