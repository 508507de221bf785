//! Label values and buckets: every label the gateway exports takes its values from a bounded
//! set defined here.
//!
//! Owns the model-label fold ([`ModelLabels`]: the first `max_models` distinct ids keep their
//! name, later ones become `other`), the endpoint and status-class mappings of request paths
//! and codes, the fixed value lists used to pre-create series (so a dashboard shows `0`, not
//! "no data", for what has not happened yet), and the histogram buckets.

use std::collections::HashSet;

use parking_lot::RwLock;

/// Latency buckets in seconds: 50 µs (the gateway's own overhead) to 120 s (long generations).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

/// The label of models past the cap.
pub const OTHER: &str = "other";
/// The label of requests whose model is not known (no body, not a model endpoint).
pub const UNKNOWN: &str = "unknown";
/// Longest model id kept as a label value; longer ids are folded into [`OTHER`].
const MAX_MODEL_LEN: usize = 128;

/// Endpoint label values (see [`endpoint`]).
pub const ENDPOINTS: &[&str] = &[
    "chat_completions",
    "completions",
    "embeddings",
    "models",
    "images",
    "audio",
    "responses",
    "rate_limits",
    "other",
];
/// `sidepanel_retries_total{reason}`: `crate::admission::retry::RetryReason::as_str`.
pub const RETRY_REASONS: &[&str] = &["rate_limited", "unavailable", "connect"];
/// `sidepanel_rejections_total{limit}`: the gateway limit that refused a request.
pub const REJECTION_LIMITS: &[&str] = &["requests", "tokens", "queue", "budget_floor", "body_size"];
/// `sidepanel_state_updates_total{type}`: `crate::hub::UpdateType` in its wire spelling.
pub const UPDATE_TYPES: &[&str] = &[
    "session",
    "usage",
    "balance",
    "rate_limit",
    "health",
    "proof",
    "snapshot",
    "alert",
];
/// `sidepanel_ingest_events_total{event}`: the OpenCode event and plugin hook names the ingest
/// understands; anything else is `other`.
pub const INGEST_EVENTS: &[&str] = &[
    "session.created",
    "session.updated",
    "session.deleted",
    "session.status",
    "session.idle",
    "session.error",
    "message.updated",
    "message.part.updated",
    "tool.execute.after",
    "file.edited",
    "file.watcher.updated",
    "chat.params",
    "plugin.started",
    "other",
];
/// `sidepanel_ingest_rejected_total{reason}`: `crate::ingest::IngestError::code`, plus `other`.
pub const INGEST_REJECTIONS: &[&str] = &[
    "forbidden",
    "unauthorized",
    "method_not_allowed",
    "unsupported_media_type",
    "body_too_large",
    "too_many_events",
    "malformed_json",
    "invalid_event",
    "not_acknowledged",
    "busy",
    "other",
];
/// `sidepanel_store_write_failures_total{reason}`: why a session-store commit failed
/// (`crate::store::StoreError::failure_reason`).
pub const STORE_FAILURES: &[&str] = &["disk_full", "read_only", "busy", "io", "other"];
/// `sidepanel_ws_refused_total{reason}`: why a WebSocket upgrade was refused.
pub const WS_REFUSALS: &[&str] = &[
    "too_many_clients",
    "forbidden",
    "unauthorized",
    "not_found",
    "other",
];
/// `sidepanel_lean_server_state{state}`: `crate::lean::ServerState` in its wire spelling.
pub const LEAN_STATES: &[&str] = &[
    "starting",
    "ready",
    "disconnected",
    "unavailable",
    "disabled",
];
/// `sidepanel_lean_diagnostics{severity}`.
pub const LEAN_SEVERITIES: &[&str] = &["error", "warning", "info", "hint"];
/// `sidepanel_lean_files{status}`: `crate::lean::FileStatus` in its wire spelling.
pub const LEAN_FILE_STATUSES: &[&str] =
    &["elaborating", "complete", "error", "stale", "disconnected"];
/// `sidepanel_tokens_total{kind}`.
pub const TOKEN_KINDS: &[&str] = &[
    "prompt",
    "completion",
    "reasoning",
    "cached",
    "cache_creation",
];

/// `value` when it is one of `allowed`, else `other`.
pub fn bounded<'a>(value: &str, allowed: &[&'a str]) -> &'a str {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .unwrap_or(OTHER)
}

/// Folds model ids into a bounded label set: the first `cap` distinct ids keep their name.
pub struct ModelLabels {
    cap: usize,
    seen: RwLock<HashSet<String>>,
}

impl ModelLabels {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: RwLock::new(HashSet::new()),
        }
    }

    /// The label for `model`: itself while under the cap (or already seen), `other` past it,
    /// `unknown` when there is none.
    pub fn label(&self, model: Option<&str>) -> String {
        let Some(m) = model.filter(|m| !m.is_empty()) else {
            return UNKNOWN.to_owned();
        };
        if m == OTHER || m == UNKNOWN || self.seen.read().contains(m) {
            return m.to_owned();
        }
        if m.len() > MAX_MODEL_LEN || m.chars().any(char::is_control) {
            return OTHER.to_owned();
        }
        let mut seen = self.seen.write();
        if seen.contains(m) || seen.len() < self.cap {
            seen.insert(m.to_owned());
            m.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

/// The endpoint label of a proxied path (below `/api/v1`, query excluded): a fixed set, so raw
/// paths never become label values.
pub fn endpoint(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or("").trim_end_matches('/');
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match first {
        "chat" if path.ends_with("/chat/completions") => "chat_completions",
        "completions" => "completions",
        "embeddings" => "embeddings",
        "models" => "models",
        "image" | "images" => "images",
        "audio" => "audio",
        "responses" => "responses",
        "api_keys" if path.ends_with("/rate_limits") => "rate_limits",
        _ => "other",
    }
}

/// The status-class label of an HTTP status (`none` when no response arrived).
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "none",
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_past_the_cap_fold_into_other() {
        let m = ModelLabels::new(2);
        assert_eq!(m.label(Some("a")), "a");
        assert_eq!(m.label(Some("b")), "b");
        assert_eq!(m.label(Some("c")), "other");
        assert_eq!(m.label(Some("a")), "a");
        assert_eq!(m.label(None), "unknown");
        assert_eq!(m.label(Some("other")), "other");
        let long = "x".repeat(MAX_MODEL_LEN + 1);
        assert_eq!(ModelLabels::new(9).label(Some(&long)), "other");
    }

    #[test]
    fn paths_map_to_a_fixed_endpoint_set() {
        for (path, want) in [
            ("/chat/completions", "chat_completions"),
            ("/chat/completions/", "chat_completions"),
            ("/models?type=all", "models"),
            ("/models/kimi-k2-5", "models"),
            ("/embeddings", "embeddings"),
            ("/image/generate", "images"),
            ("/audio/speech", "audio"),
            ("/api_keys/rate_limits", "rate_limits"),
            ("/api_keys", "other"),
            ("/ses_123/secret", "other"),
            ("", "other"),
        ] {
            assert_eq!(endpoint(path), want, "{path}");
            assert!(ENDPOINTS.contains(&want));
        }
    }

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(status_class(Some(200)), "2xx");
        assert_eq!(status_class(Some(429)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "none");
        assert_eq!(bounded("nope", INGEST_REJECTIONS), "other");
        assert_eq!(bounded("forbidden", INGEST_REJECTIONS), "forbidden");
    }
}
