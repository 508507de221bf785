//! Named, supervised background units.
//!
//! Owns running each side task (hub, pricing refresh, simulator, demo client) as a pingora
//! `BackgroundService` that is restarted with backoff when it stops or panics before shutdown,
//! and logged by name — never a silent half-alive process.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// A side task. `run` returns when `shutdown` flips to true; any earlier return is a failure.
#[async_trait]
pub trait Task: Send + Sync + 'static {
    /// Name used in logs.
    fn name(&self) -> &'static str;
    /// Runs until shutdown. `Err` says why it stopped early.
    async fn run(self: Arc<Self>, shutdown: ShutdownWatch) -> Result<(), String>;
}

/// Restarts its task with exponential backoff (1 s .. 30 s) until shutdown.
pub struct Supervised<T>(pub Arc<T>);

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[async_trait]
impl<T: Task> BackgroundService for Supervised<T> {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let name = self.0.name();
        let mut backoff = MIN_BACKOFF;
        loop {
            tracing::debug!(task = name, "starting");
            let joined = tokio::spawn(self.0.clone().run(shutdown.clone())).await;
            if *shutdown.borrow() {
                tracing::debug!(task = name, "stopped for shutdown");
                return;
            }
            match joined {
                Ok(Ok(())) => tracing::error!(task = name, "stopped unexpectedly; restarting"),
                Ok(Err(e)) => tracing::error!(task = name, error = %e, "failed; restarting"),
                Err(e) => tracing::error!(task = name, error = %e, "panicked; restarting"),
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Waits until `shutdown` says stop (or its sender is gone).
pub async fn stopped(shutdown: &mut ShutdownWatch) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
