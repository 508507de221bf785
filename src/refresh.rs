//! Periodic reads of Venice's reference data: prices from `GET /models`, rate limits from
//! `GET /api_keys/rate_limits`.
//!
//! Owns the polling loop. It asks through the gateway's own listener, so the request takes the
//! same path as every other (TLS, key injection, header reading — so it also refreshes the
//! balance) and needs no second HTTP stack; it is counted like any other request.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;

use crate::services::{stopped, Task};

/// Applies a fetched body; returns how many entries it read.
pub type Apply = Box<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// One periodic fetch.
pub struct Refresh {
    pub name: &'static str,
    /// e.g. `http://<listen>/api/v1/models?type=all`
    pub url: String,
    pub every: Duration,
    pub apply: Apply,
}

const FIRST_RETRY: Duration = Duration::from_secs(2);

impl Refresh {
    async fn fetch(&self, client: &reqwest::Client) -> Result<usize, String> {
        let resp = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {} answered {status}", self.url));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok((self.apply)(&body))
    }
}

#[async_trait]
impl Task for Refresh {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match self.fetch(&client).await {
                Ok(n) => {
                    tracing::info!(task = self.name, entries = n, "refreshed");
                    retry = FIRST_RETRY;
                    self.every
                }
                Err(e) => {
                    tracing::warn!(task = self.name, error = %e, retry_in_s = retry.as_secs(), "refresh failed");
                    let w = retry;
                    retry = (retry * 2).min(self.every);
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut shutdown) => return Ok(()),
            }
        }
    }
}

/// While the hub says the upstream is unavailable, asks it every `every` (through the gateway,
/// so the answer updates the health like any request) until it answers again.
pub struct HealthProbe {
    pub url: String,
    pub every: Duration,
    pub hub: crate::hub::HubHandle,
}

#[async_trait]
impl Task for HealthProbe {
    fn name(&self) -> &'static str {
        "health-probe"
    }

    async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stopped(&mut shutdown) => return Ok(()),
            }
            let down = self.hub.with_state(|s| {
                s.upstream.status == crate::hub::state::UpstreamStatus::Unavailable
            });
            if down {
                match client.get(&self.url).send().await {
                    Ok(r) => tracing::info!(status = %r.status(), "upstream probe answered"),
                    Err(e) => tracing::debug!(error = %e, "upstream probe failed"),
                }
            }
        }
    }
}
