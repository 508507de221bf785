//! Validation of the `[store]` section into [`StoreConfig`]. Errors name the key.
//!
//! The passphrase is not in the file: it comes from `SIDEPANEL_PASSPHRASE` when the
//! configuration is loaded. The Venice key, when configured, is added to the values exports
//! redact.

use std::path::Path;

use super::values::{duration, expand_path};
use crate::config::error::{ConfigError, Origin};
use crate::config::raw::RawStore;
use crate::config::ApiKey;
use crate::store::{self, Passphrase, StoreConfig};

/// Largest `snapshot_every`.
const MAX_SNAPSHOT_EVERY: u64 = 1_000_000;
/// Longest `flush_interval`.
const MAX_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Smallest non-zero `max_bytes` (1 MiB).
const MIN_MAX_BYTES: u64 = 1 << 20;
/// Longest `retention_days` (100 years).
const MAX_RETENTION_DAYS: u64 = 36_500;

fn path_or(
    file: &Origin,
    key: &str,
    value: Option<&str>,
    default: std::path::PathBuf,
) -> Result<std::path::PathBuf, ConfigError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(text) => expand_path(file, key, text),
        None => Ok(default),
    }
}

pub(super) fn store(
    raw: &RawStore,
    file: &Origin,
    data_dir: &Path,
    api_key: Option<&ApiKey>,
) -> Result<StoreConfig, ConfigError> {
    let d = StoreConfig::in_dir(data_dir);
    let snapshot_every = raw.snapshot_every.unwrap_or(d.snapshot_every);
    if !(1..=MAX_SNAPSHOT_EVERY).contains(&snapshot_every) {
        return Err(ConfigError::invalid(
            file,
            "store.snapshot_every",
            format!("{snapshot_every} is out of range (1..={MAX_SNAPSHOT_EVERY})"),
        ));
    }
    let flush_interval = match raw.flush_interval.as_deref() {
        Some(text) => duration(file, "store.flush_interval", text)?,
        None => d.flush_interval,
    };
    if flush_interval > MAX_FLUSH_INTERVAL {
        return Err(ConfigError::invalid(
            file,
            "store.flush_interval",
            "must be at most 10s (updates wait this long in memory before they are durable)",
        ));
    }
    let retention_days = match raw.retention_days {
        None => d.retention_days,
        Some(0) => None,
        Some(days) if days <= MAX_RETENTION_DAYS => u32::try_from(days).ok(),
        Some(days) => {
            let reason = format!("{days} is out of range (0 keeps everything, else 1..=36500)");
            return Err(ConfigError::invalid(file, "store.retention_days", reason));
        }
    };
    let max_bytes = match raw.max_bytes {
        None => d.max_bytes,
        Some(0) => None,
        Some(n) if n >= MIN_MAX_BYTES => Some(n),
        Some(n) => {
            return Err(ConfigError::invalid(
                file,
                "store.max_bytes",
                format!("{n} is too small (0 = no bound, else at least {MIN_MAX_BYTES})"),
            ))
        }
    };
    Ok(StoreConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        path: path_or(
            file,
            "store.path",
            raw.path.as_deref(),
            store::default_path(data_dir),
        )?,
        key_file: path_or(
            file,
            "store.key_file",
            raw.key_file.as_deref(),
            store::default_key_file(data_dir),
        )?,
        passphrase: Passphrase::from_env(),
        snapshot_every,
        flush_interval,
        retention_days,
        max_bytes,
        redact: api_key.cloned().into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<StoreConfig, ConfigError> {
        let raw: crate::config::raw::RawConfig = toml::from_str(text).expect("parses");
        store(&raw.store, &Origin::Default, Path::new("/d"), None)
    }

    #[test]
    fn defaults_and_bad_values_name_the_key() {
        let c = load("").expect("defaults");
        assert_eq!(c.path, Path::new("/d/sessions/sidepanel.db"));
        assert_eq!(c.key_file, Path::new("/d/store.key"));
        assert_eq!((c.snapshot_every, c.retention_days), (500, Some(30)));
        assert_eq!(c.max_bytes, Some(1 << 30));
        let c = load("[store]\nretention_days = 0\nmax_bytes = 0\nflush_interval = \"0ms\"")
            .expect("zeros");
        assert_eq!((c.retention_days, c.max_bytes), (None, None));
        assert!(c.flush_interval.is_zero());
        for (text, key) in [
            ("[store]\nsnapshot_every = 0", "store.snapshot_every"),
            ("[store]\nflush_interval = \"soon\"", "store.flush_interval"),
            ("[store]\nflush_interval = \"1m\"", "store.flush_interval"),
            ("[store]\nmax_bytes = 10", "store.max_bytes"),
            ("[store]\nretention_days = 99999", "store.retention_days"),
        ] {
            let e = load(text).expect_err(text).to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
