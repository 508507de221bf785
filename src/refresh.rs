//! Keeps the price table current from Venice's `GET /models`.
//!
//! Owns the periodic refresh. It asks through the gateway's own listener, so the request takes
//! the same path as every other (TLS, key injection, header reading) and needs no second HTTP
//! stack; it is counted like any other request.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use pingora::server::ShutdownWatch;

use crate::pricing::PriceTable;
use crate::services::{stopped, Task};

/// The refresh task.
pub struct PricingRefresh {
    /// `http://<listen>/api/v1/models?type=all`
    pub url: String,
    pub every: Duration,
    pub pricing: Arc<RwLock<PriceTable>>,
}

const FIRST_RETRY: Duration = Duration::from_secs(2);

impl PricingRefresh {
    async fn fetch(&self, client: &reqwest::Client) -> Result<usize, String> {
        let resp = client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET /models answered {status}"));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok(self.pricing.write().merge_models_response(&body))
    }
}

#[async_trait]
impl Task for PricingRefresh {
    fn name(&self) -> &'static str {
        "pricing-refresh"
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
                    tracing::info!(models = n, "prices refreshed from /models");
                    retry = FIRST_RETRY;
                    self.every
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = retry.as_secs(), "price refresh failed");
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
