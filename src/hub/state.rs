//! The aggregate state the sidepanel shows: balance, rate limits per model, usage per model and
//! per OpenCode session, upstream health and the most recent requests.
//!
//! Owns applying [`HubEvent`]s to that state. Pure data: no I/O, no locks, no clocks except the
//! `now` passed in, so it is tested directly.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::gateway::headers::{LimitWindow, VeniceHeaders};
use crate::gateway::record::{Outcome, RequestRecord};
use crate::gateway::usage::{Cost, Usage};
use crate::util::epoch_ms;

pub use super::alerts::{AlertCurrency, Alerts};
pub use super::day::DayTotals;

/// How many finished requests the state keeps for display.
pub const RECENT_REQUESTS: usize = 50;
/// Distinct sessions kept; the least recently active is dropped beyond this.
pub const MAX_SESSIONS: usize = 512;
/// Distinct model ids kept; further ids are folded into `other`.
pub const MAX_MODELS: usize = 64;
/// Consecutive upstream faults after which the upstream counts as unavailable.
pub const UNAVAILABLE_AFTER: u32 = 3;

/// Last known balance.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Balance {
    pub diem: Option<f64>,
    pub usd: Option<f64>,
    pub vcu: Option<f64>,
    #[serde(with = "crate::store::compat::opt_epoch_ms")]
    pub observed_at: Option<SystemTime>,
    /// True while the upstream is unavailable or the value is older than [`STALE_AFTER`].
    pub stale: bool,
    /// Age of the value when the state was read, in milliseconds.
    pub age_ms: Option<u64>,
}

/// A balance older than this is marked stale.
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Rate-limit headroom of one model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelLimits {
    pub requests: LimitWindow,
    pub tokens: LimitWindow,
    pub limit_type: Option<String>,
    #[serde(with = "crate::store::compat::opt_epoch_ms")]
    pub observed_at: Option<SystemTime>,
}

/// Running totals for a model or a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    pub cached_tokens: u64,
    pub cache_creation_tokens: u64,
    pub total_tokens: u64,
    pub cost_usd: f64,
    pub cost_diem: f64,
}

impl Totals {
    pub(crate) fn add(&mut self, usage: Option<&Usage>, cost: Option<&Cost>, failed: bool) {
        self.requests += 1;
        self.errors += u64::from(failed);
        if let Some(u) = usage {
            self.prompt_tokens += u.prompt_tokens;
            self.completion_tokens += u.completion_tokens;
            self.reasoning_tokens += u.reasoning_tokens;
            self.cached_tokens += u.cached_tokens;
            self.cache_creation_tokens += u.cache_creation_tokens;
            self.total_tokens += u.total_tokens;
        }
        if let Some(c) = cost {
            self.cost_usd += c.usd;
            self.cost_diem += c.diem;
        }
    }
}

/// Usage of one OpenCode session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUsage {
    #[serde(flatten)]
    pub totals: Totals,
    pub models: BTreeMap<String, Totals>,
    #[serde(with = "crate::store::compat::epoch_ms")]
    pub last_active: SystemTime,
    /// What the OpenCode plugin reported about this session (see `crate::ingest`).
    #[serde(default)]
    pub opencode: crate::ingest::OpencodeSession,
}

/// Upstream health, derived from request outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamStatus {
    #[default]
    Unknown,
    Ok,
    Degraded,
    Unavailable,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamHealth {
    pub status: UpstreamStatus,
    pub consecutive_failures: u32,
    #[serde(with = "crate::store::compat::opt_epoch_ms")]
    pub last_ok_at: Option<SystemTime>,
    #[serde(with = "crate::store::compat::opt_epoch_ms")]
    pub last_failure_at: Option<SystemTime>,
    pub last_error: Option<String>,
}

/// Admission outcomes by reason (`/api/sidepanel/state` adds the live gates as `models`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdmissionTotals {
    /// Retried attempts by reason: `rate_limited`, `unavailable`, `connect`.
    pub retries: BTreeMap<String, u64>,
    /// Requests the gateway refused, by limit: `requests`, `tokens`, `queue`.
    pub rejections: BTreeMap<String, u64>,
}

/// The whole aggregate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Sequence of the last [`crate::hub::update::StateUpdate`] applied.
    pub sequence: u64,
    pub balance: Balance,
    pub rate_limits: BTreeMap<String, ModelLimits>,
    pub models: BTreeMap<String, Totals>,
    pub sessions: BTreeMap<String, SessionUsage>,
    pub totals: Totals,
    /// Totals of the current UTC day (Venice's Diem allocation resets at 00:00 UTC).
    pub today: DayTotals,
    pub upstream: UpstreamHealth,
    pub recent: VecDeque<RequestRecord>,
    /// Lean proof state by file (payloads owned by the Lean component).
    pub proof: BTreeMap<String, serde_json::Value>,
    /// Balance alert thresholds.
    pub alerts: Alerts,
    /// Retries and the gateway's own refusals since start, by reason.
    pub admission: AdmissionTotals,
    /// The OpenCode plugin's liveness and the "plugin silent" alert (see `crate::ingest`).
    pub plugin: crate::ingest::PluginStatus,
    /// The link to `opencode serve` (health, last session revert; see `crate::opencode`).
    pub opencode_link: crate::opencode::LinkStatus,
    /// The session store's status (`None`: no store, or not reported yet). Live only: never
    /// serialized with the state (checkpoints, restores, replay comparisons), so a restored or
    /// replayed state cannot bring back an old `failing`; [`State::live_json`] adds it.
    #[serde(skip)]
    pub store: Option<crate::store::StoreStatus>,
}

/// What [`State::record_request`] did, for the hub to publish.
#[derive(Debug)]
pub struct RequestApplied {
    /// The key the request was counted under (see [`State::model_key`]).
    pub model: String,
    pub health_changed: bool,
    /// The ingest's updates (session step matching, plugin-silent alert), in order.
    pub opencode: Vec<crate::ingest::apply::Update>,
}

/// What a header observation changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderChanges {
    pub balance: bool,
    /// The model key whose limits changed.
    pub limits: Option<String>,
    /// Alerts that started or stopped firing.
    pub alerts: Vec<(AlertCurrency, bool)>,
}

impl State {
    /// Applies the balance and rate-limit headers of a response for `model`.
    pub fn apply_headers(
        &mut self,
        model: Option<&str>,
        h: &VeniceHeaders,
        at: SystemTime,
    ) -> HeaderChanges {
        let mut changes = HeaderChanges::default();
        if h.balance_diem.is_some() || h.balance_usd.is_some() || h.balance_vcu.is_some() {
            changes.balance = true;
            let b = &mut self.balance;
            b.diem = h.balance_diem.or(b.diem);
            b.usd = h.balance_usd.or(b.usd);
            b.vcu = h.balance_vcu.or(b.vcu);
            b.observed_at = Some(at);
            changes.alerts = self.alerts.evaluate(&self.balance);
        }
        let has_limits = h.requests != LimitWindow::default() || h.tokens != LimitWindow::default();
        if has_limits {
            let key = self.model_key(model.or(h.model_id.as_deref()));
            let entry = self.rate_limits.entry(key.clone()).or_default();
            merge_window(&mut entry.requests, &h.requests);
            merge_window(&mut entry.tokens, &h.tokens);
            if h.limit_type.is_some() {
                entry.limit_type.clone_from(&h.limit_type);
            }
            entry.observed_at = Some(at);
            changes.limits = Some(key);
        }
        changes
    }

    /// Applies a finished request (its cost already filled in) as of `at`: totals, health,
    /// admission counts, the recent list, then the ingest's step matching and plugin-silent
    /// check. The one place a request changes the state: the hub runs it live and the store
    /// replays a `usage` update with it (`at` = the update's timestamp), so both agree.
    pub fn record_request(&mut self, record: &RequestRecord, at: SystemTime) -> RequestApplied {
        let model = self.model_key(record.model.as_deref());
        let health_changed = self.count_request(record);
        let opencode = crate::ingest::apply::on_request(self, record, at);
        RequestApplied {
            model,
            health_changed,
            opencode,
        }
    }

    /// Totals, health, admission counts and the recent list; whether the health changed.
    fn count_request(&mut self, record: &RequestRecord) -> bool {
        let health_before = self.upstream.status;
        let failed = record.outcome != Outcome::Ok;
        let usage = record.usage.as_ref();
        let cost = record.cost.as_ref();
        let model = self.model_key(record.model.as_deref());
        self.totals.add(usage, cost, failed);
        self.today
            .add(epoch_ms(record.started_at), usage, cost, failed);
        self.models
            .entry(model.clone())
            .or_default()
            .add(usage, cost, failed);
        if let Some(sid) = &record.session_id {
            self.touch_session(sid, record.started_at);
            if let Some(s) = self.sessions.get_mut(sid) {
                s.totals.add(usage, cost, failed);
                s.models.entry(model).or_default().add(usage, cost, failed);
            }
        }
        self.apply_health(record);
        for reason in &record.retries {
            *self
                .admission
                .retries
                .entry(reason.to_string())
                .or_default() += 1;
        }
        if let Some(limit) = record.limited {
            let key = serde_json::to_value(limit)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *self.admission.rejections.entry(key).or_default() += 1;
        }
        if self.recent.len() == RECENT_REQUESTS {
            self.recent.pop_front();
        }
        self.recent.push_back(record.clone());
        self.upstream.status != health_before
    }

    /// Sets (or, with `None`, clears) the balance alert threshold of `currency`.
    pub fn set_alert(&mut self, currency: AlertCurrency, below: Option<f64>) {
        match currency {
            AlertCurrency::Diem => self.alerts.diem_below = below,
            AlertCurrency::Usd => self.alerts.usd_below = below,
        }
        self.alerts.evaluate(&self.balance);
    }

    /// Takes the store's latest status; true when it is a change worth an update: another
    /// status or error (no status yet counts as `ok`), not a growing lag or failure count.
    pub fn set_store(&mut self, status: crate::store::StoreStatus) -> bool {
        use crate::store::StoreState;
        let before = self
            .store
            .as_ref()
            .map_or((StoreState::Ok, None), |s| (s.status, s.error.as_deref()));
        let changed = before != (status.status, status.error.as_deref());
        self.store = Some(status);
        changed
    }

    /// The state as shown to clients: its JSON plus the live-only `store` (when there is one).
    pub fn live_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let (Some(store), serde_json::Value::Object(map)) = (&self.store, &mut v) {
            map.insert("store".into(), serde_json::json!(store));
        }
        v
    }

    /// Marks derived flags (staleness) as of `now`; called before the state is shown.
    pub fn refresh(&mut self, now: SystemTime) {
        let age = self
            .balance
            .observed_at
            .map(|t| now.duration_since(t).unwrap_or_default());
        self.balance.age_ms = age.map(|a| a.as_millis() as u64);
        let old = age.is_some_and(|age| age > STALE_AFTER);
        self.balance.stale = self.balance.observed_at.is_some()
            && (old || self.upstream.status == UpstreamStatus::Unavailable);
    }

    fn apply_health(&mut self, r: &RequestRecord) {
        let h = &mut self.upstream;
        if r.outcome.is_upstream_fault(r.status) {
            h.consecutive_failures += 1;
            h.last_failure_at = Some(r.started_at);
            h.last_error = Some(match (&r.error, r.status) {
                (Some(e), _) => e.message.clone(),
                (None, Some(s)) => format!("HTTP {s}"),
                (None, None) => r.outcome.as_str().to_owned(),
            });
            h.status = if h.consecutive_failures >= UNAVAILABLE_AFTER {
                UpstreamStatus::Unavailable
            } else {
                UpstreamStatus::Degraded
            };
        } else if r.status.is_some() {
            h.consecutive_failures = 0;
            h.last_ok_at = Some(r.started_at);
            h.status = UpstreamStatus::Ok;
        }
    }

    /// Creates or refreshes the session `sid`, dropping the least recently active one when
    /// [`MAX_SESSIONS`] are held.
    pub(crate) fn touch_session(&mut self, sid: &str, at: SystemTime) {
        if !self.sessions.contains_key(sid) && self.sessions.len() >= MAX_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| epoch_ms(s.last_active))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.sessions.remove(&k);
            }
        }
        let s = self
            .sessions
            .entry(sid.to_owned())
            .or_insert_with(|| SessionUsage {
                totals: Totals::default(),
                models: BTreeMap::new(),
                last_active: at,
                opencode: Default::default(),
            });
        s.last_active = s.last_active.max(at);
    }

    /// The key a model is counted under: its id, `unknown`, or `other` past [`MAX_MODELS`].
    pub fn model_key(&self, model: Option<&str>) -> String {
        match model {
            None => "unknown".to_owned(),
            Some(m) if self.models.contains_key(m) || self.rate_limits.contains_key(m) => {
                m.to_owned()
            }
            Some(_) if self.models.len() >= MAX_MODELS => "other".to_owned(),
            Some(m) => m.to_owned(),
        }
    }
}

fn merge_window(into: &mut LimitWindow, from: &LimitWindow) {
    if from.limit.is_some() {
        into.limit = from.limit;
    }
    if from.remaining.is_some() {
        into.remaining = from.remaining;
    }
    if from.reset_at.is_some() {
        into.reset_at = from.reset_at;
    }
}
