//! Validation of the `[ingest]` section (OpenCode plugin events, `POST /events`) into
//! [`IngestConfig`]. Errors name the key.

use super::values::positive_duration;
use crate::config::error::{ConfigError, Origin};
use crate::config::raw::{defaults, RawIngest};
use crate::ingest::IngestConfig;

/// Largest `ingest.max_body_bytes` (64 MiB).
const MAX_BODY_BYTES: u64 = 64 << 20;
/// Largest `ingest.max_events`.
const MAX_EVENTS: u64 = 100_000;

pub(super) fn ingest(raw: &RawIngest, file: &Origin) -> Result<IngestConfig, ConfigError> {
    let body = raw
        .max_body_bytes
        .unwrap_or(defaults::INGEST_MAX_BODY_BYTES);
    if !(1024..=MAX_BODY_BYTES).contains(&body) {
        return Err(ConfigError::invalid(
            file,
            "ingest.max_body_bytes",
            format!("{body} is out of range (1024..={MAX_BODY_BYTES})"),
        ));
    }
    let events = raw.max_events.unwrap_or(defaults::INGEST_MAX_EVENTS);
    if !(1..=MAX_EVENTS).contains(&events) {
        return Err(ConfigError::invalid(
            file,
            "ingest.max_events",
            format!("{events} is out of range (1..={MAX_EVENTS})"),
        ));
    }
    let silent = positive_duration(
        file,
        "ingest.plugin_silent_after",
        raw.plugin_silent_after.as_deref(),
        defaults::INGEST_PLUGIN_SILENT_AFTER,
    )?;
    Ok(IngestConfig {
        max_body_bytes: usize::try_from(body).unwrap_or(usize::MAX),
        max_events: usize::try_from(events).unwrap_or(usize::MAX),
        plugin_silent_after: silent,
    })
}
