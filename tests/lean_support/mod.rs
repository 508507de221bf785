//! Shared helpers of the Lean tests: a running hub, the Lean task started on it, and waiting for
//! proof states — through the hub's live update stream (so no transient state is missed) or by
//! polling its state, always with a deadline.

#![allow(dead_code)]

pub mod replay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use serde_json::Value;
use sidepanel::config::LeanConfig;
use sidepanel::hub::{Hub, HubHandle, StateUpdate, UpdateType};
use sidepanel::lean::{LeanHandle, SERVER_KEY};
use sidepanel::metrics::Metrics;
use sidepanel::pricing::PriceTable;
use sidepanel::services::Task;
use tokio::sync::{broadcast, watch};

/// Default deadline for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);

/// A hub and a Lean component running on it; both stop when this is dropped.
pub struct Lean {
    pub hub: HubHandle,
    pub handle: Arc<LeanHandle>,
    pub updates: Updates,
    shutdown: watch::Sender<bool>,
}

impl Drop for Lean {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Starts a hub and the Lean task with `config`.
pub fn start(config: LeanConfig) -> Lean {
    let (hub, handle) = Hub::new(
        Arc::new(Metrics::new()),
        Arc::new(RwLock::new(PriceTable::venice_defaults())),
    );
    let (shutdown, rx) = watch::channel(false);
    let updates = Updates(handle.subscribe());
    let hub_rx = rx.clone();
    tokio::spawn(async move { hub.run(hub_rx).await });
    let (task, lean) = sidepanel::lean::new(config, handle.clone());
    tokio::spawn(Arc::new(task).run(rx));
    Lean {
        hub: handle,
        handle: lean,
        updates,
        shutdown,
    }
}

impl Lean {
    /// The stored proof state of `file`.
    pub fn state(&self, file: &str) -> Option<Value> {
        self.hub.with_state(|s| s.proof.get(file).cloned())
    }

    /// Polls the stored state of `file` until `pred` holds.
    pub async fn wait_stored(
        &self,
        file: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let state = self.state(file);
            if let Some(s) = state.as_ref().filter(|s| pred(s)) {
                return s.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{file}: the expected state did not arrive within {within:?}; last: {state:#?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The hub's live proof updates, in order.
pub struct Updates(broadcast::Receiver<Arc<StateUpdate>>);

impl Updates {
    /// The next proof update of `file` for which `pred` holds; earlier ones are returned in
    /// `skipped` order through `seen`.
    pub async fn wait(
        &mut self,
        file: &str,
        within: Duration,
        seen: &mut Vec<Value>,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.0.recv()).await;
            let update = match next {
                Ok(Ok(u)) => u,
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("lagged {n} updates"),
                Ok(Err(e)) => panic!("hub gone: {e}"),
                Err(_) => panic!(
                    "{file}: the expected update did not arrive within {within:?}; seen: {seen:#?}"
                ),
            };
            if update.kind != UpdateType::Proof || update.payload.value()["file"] != file {
                continue;
            }
            let state = update.payload.value()["state"].clone();
            if pred(&state) {
                return state;
            }
            seen.push(state);
        }
    }

    /// The next server-status update for which `pred` holds (the `server` object).
    pub async fn wait_server(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let mut seen = Vec::new();
        self.wait(SERVER_KEY, within, &mut seen, |s| pred(&s["server"]))
            .await["server"]
            .clone()
    }
}

/// `state.status == status`.
pub fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |s| s["status"] == status
}
