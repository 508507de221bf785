//! Admission control: per-model rate limits learned from Venice, a bounded wait queue, and the
//! retry policy for upstream 429/503/connect failures.
//!
//! Owns the per-model [`Gate`]s and the decisions the proxy asks for: may this request go now
//! (waiting up to `max_wait`), should this failed attempt be retried and after how long. Nothing
//! here touches the network or the hub; the proxy reports what it saw.

pub mod budget;
mod gate;
pub mod retry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use serde::Serialize;
use tokio::time::Instant;

pub use gate::{Gate, GateView};

use crate::gateway::headers::VeniceHeaders;

/// Admission settings (`[admission]` in the config).
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub enabled: bool,
    /// Longest a request waits for its turn, retries included.
    pub max_wait: Duration,
    /// Waiting requests per model beyond which new ones are refused at once.
    pub max_queue: usize,
    /// Length of Venice's rate-limit window.
    pub window: Duration,
    /// Starting limits for models without their own entry (Venice's "M" tier); replaced by
    /// what Venice reports.
    pub default_rpm: u32,
    pub default_tpm: u32,
    /// Per-model limits, `model -> (rpm, tpm)`: the user's own caps, which limits learned
    /// from Venice never exceed.
    pub models: HashMap<String, (u32, u32)>,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff step; doubles per attempt, full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How often `GET /api_keys/rate_limits` is read; `None` never.
    pub limits_refresh: Option<Duration>,
    /// Balance alerts and the hard floor.
    pub budget: budget::BudgetConfig,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_wait: Duration::from_secs(30),
            max_queue: 64,
            window: Duration::from_secs(60),
            default_rpm: 50,
            default_tpm: 750_000,
            models: HashMap::new(),
            max_attempts: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            limits_refresh: Some(Duration::from_secs(300)),
            budget: budget::BudgetConfig::default(),
        }
    }
}

/// Which limit stopped a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Requests,
    Tokens,
    Queue,
}

impl Limit {
    pub fn describe(self) -> &'static str {
        match self {
            Limit::Requests => "requests per minute",
            Limit::Tokens => "tokens per minute",
            Limit::Queue => "queue",
        }
    }
}

/// Why the gateway refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    QueueFull,
    WaitExceeded,
}

/// The gateway's own refusal of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub limit: Limit,
    /// When the client may try again.
    pub retry_after: Duration,
}

/// All gates, by model.
pub struct Admission {
    config: AdmissionConfig,
    gates: RwLock<HashMap<String, Arc<Gate>>>,
}

/// Gates beyond this many models share the `other` gate (model ids come from clients).
const MAX_GATES: usize = 64;

impl Admission {
    pub fn new(config: AdmissionConfig) -> Self {
        Self {
            config,
            gates: RwLock::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    fn gate(&self, model: &str) -> Arc<Gate> {
        if let Some(g) = self.gates.read().get(model) {
            return g.clone();
        }
        let mut gates = self.gates.write();
        let key = if gates.len() >= MAX_GATES && !gates.contains_key(model) {
            "other"
        } else {
            model
        };
        let cap = self.config.models.get(key).copied();
        let (rpm, tpm) = cap.unwrap_or((self.config.default_rpm, self.config.default_tpm));
        gates
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Gate::new(rpm, tpm, self.config.window, cap)))
            .clone()
    }

    /// Waits until a request for `model` estimated at `tokens` may go, until `deadline`.
    /// Returns how long it waited.
    pub async fn admit(
        &self,
        model: &str,
        tokens: u32,
        deadline: Instant,
    ) -> Result<Duration, Refusal> {
        if !self.config.enabled {
            return Ok(Duration::ZERO);
        }
        let gate = self.gate(model);
        gate.admit(tokens, self.config.max_queue, deadline).await
    }

    /// Learns limits and exhaustion from a response's headers.
    pub fn observe(&self, model: &str, h: &VeniceHeaders) {
        if !self.config.enabled {
            return;
        }
        let exhausted = [(Limit::Requests, &h.requests), (Limit::Tokens, &h.tokens)]
            .into_iter()
            .filter(|(_, w)| w.remaining == Some(0))
            .filter_map(|(l, w)| w.reset_at.map(|at| (l, at)))
            .max_by_key(|(_, at)| *at);
        let limits = (h.requests.limit, h.tokens.limit);
        if exhausted.is_some() || limits.0.is_some() || limits.1.is_some() {
            self.gate(model).observe(limits, exhausted);
        }
    }

    /// Sets limits learned from `GET /api_keys/rate_limits`.
    pub fn set_limits(&self, model: &str, rpm: Option<u64>, tpm: Option<u64>) {
        self.gate(model).observe((rpm, tpm), None);
    }

    /// Applies a `GET /api_keys/rate_limits` body (`data.rateLimits[].{apiModelId, rateLimits[]
    /// .{type: RPM|TPM|RPD, amount}}`); returns how many models it set.
    pub fn apply_rate_limits_response(&self, body: &[u8]) -> usize {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return 0;
        };
        let Some(models) = v["data"]["rateLimits"].as_array() else {
            return 0;
        };
        let mut n = 0;
        for m in models {
            let Some(id) = m["apiModelId"].as_str() else {
                continue;
            };
            let amount = |kind: &str| {
                m["rateLimits"].as_array().and_then(|l| {
                    l.iter()
                        .find(|r| r["type"] == kind)
                        .and_then(|r| r["amount"].as_u64())
                })
            };
            let (rpm, tpm) = (amount("RPM"), amount("TPM"));
            if rpm.is_some() || tpm.is_some() {
                self.set_limits(id, rpm, tpm);
                n += 1;
            }
        }
        n
    }

    /// Charges tokens a request used beyond its estimate.
    pub fn reconcile(&self, model: &str, estimated: u32, actual: u64) {
        let extra = actual.saturating_sub(u64::from(estimated));
        if self.config.enabled && extra > 0 {
            self.gate(model)
                .reconcile(u32::try_from(extra).unwrap_or(u32::MAX));
        }
    }

    /// Every gate's view, for the state and metrics.
    pub fn views(&self) -> Vec<(String, GateView)> {
        let mut v: Vec<_> = self
            .gates
            .read()
            .iter()
            .map(|(m, g)| (m.clone(), g.view()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// A reset instant as seconds from now, at least one.
pub fn seconds_until(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::now())
        .map(|d| d.as_secs_f64().ceil() as u64)
        .unwrap_or(1)
        .max(1)
}
