//! The validated `[store]` settings ([`StoreConfig`]) and the passphrase wrapper.
//!
//! `crate::config` builds this from the file (errors name the key); tests build it with
//! [`StoreConfig::in_dir`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroize;

use crate::config::ApiKey;

/// Environment variable holding the store passphrase; without it a random key file is used.
pub const PASSPHRASE_ENV: &str = "SIDEPANEL_PASSPHRASE";

/// Default checkpoint interval: a full snapshot every this many updates.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 500;
/// Default longest time an update waits in memory before its batch commits.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Default age after which whole sessions are removed.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Default size bound of the live data (1 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The passphrase the store key is derived from. Never printed; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl Passphrase {
    /// `None` for an empty value.
    pub fn new(text: &str) -> Option<Self> {
        (!text.is_empty()).then(|| Self(text.to_owned()))
    }

    /// From [`PASSPHRASE_ENV`], if set and not empty.
    pub fn from_env() -> Option<Self> {
        std::env::var(PASSPHRASE_ENV)
            .ok()
            .and_then(|v| Self::new(&v))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Session storage settings (`[store]`).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Run the store at all; when false nothing is persisted and `restore`, `timeline` and
    /// `exportSession` answer "not available".
    pub enabled: bool,
    /// The SQLite database file (its `-wal`, `-shm` and `.lock` files sit beside it).
    pub path: PathBuf,
    /// The random key file used when no passphrase is set (created 0600 with a new database).
    pub key_file: PathBuf,
    /// From `SIDEPANEL_PASSPHRASE`: the key is derived from it with Argon2id.
    pub passphrase: Option<Passphrase>,
    /// A full snapshot every this many updates (also on `session.idle` and on demand).
    pub snapshot_every: u64,
    /// Longest time an update waits before its batch commits (`0` commits at once).
    pub flush_interval: Duration,
    /// Whole sessions whose last update is older are removed; `None` keeps everything.
    pub retention_days: Option<u32>,
    /// Oldest whole sessions are removed while the live data is larger; `None` = no bound.
    pub max_bytes: Option<u64>,
    /// Values that must never appear in an export (the Venice key); replaced by `<redacted>`.
    pub redact: Vec<ApiKey>,
}

impl StoreConfig {
    /// The defaults for a data directory: `<dir>/sessions/sidepanel.db` and `<dir>/store.key`,
    /// no passphrase.
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            enabled: true,
            path: default_path(data_dir),
            key_file: default_key_file(data_dir),
            passphrase: None,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            retention_days: Some(DEFAULT_RETENTION_DAYS),
            max_bytes: Some(DEFAULT_MAX_BYTES),
            redact: Vec::new(),
        }
    }

    /// The `.lock` file beside the database.
    pub fn lock_path(&self) -> PathBuf {
        sibling(&self.path, ".lock")
    }
}

/// The effective `[store]` settings as `(name, value)` lines for `check-config`; never a
/// secret (the passphrase is only named).
pub fn describe(c: &StoreConfig) -> Vec<(&'static str, String)> {
    let human = |d: Duration| humantime::format_duration(d).to_string();
    if !c.enabled {
        return vec![(
            "store",
            "disabled (nothing is kept; restore/export unavailable)".into(),
        )];
    }
    let key = match &c.passphrase {
        Some(_) => format!("passphrase from env {PASSPHRASE_ENV} (Argon2id)"),
        None => format!("key file {}", c.key_file.display()),
    };
    let age = c.retention_days.map_or_else(
        || "no age limit".to_owned(),
        |d| format!("sessions inactive for {d} days removed"),
    );
    let size = c.max_bytes.map_or_else(
        || "no size bound".to_owned(),
        |b| {
            format!(
                "at most {b} bytes ({:.1} MiB)",
                b as f64 / (1024.0 * 1024.0)
            )
        },
    );
    vec![
        ("store", c.path.display().to_string()),
        ("store key", key),
        (
            "store writes",
            format!(
                "snapshot every {} updates, commit within {}",
                c.snapshot_every,
                human(c.flush_interval)
            ),
        ),
        ("retention", format!("{age}; {size}")),
    ]
}

/// `<data_dir>/sessions/sidepanel.db`.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("sessions").join("sidepanel.db")
}

/// `<data_dir>/store.key`.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("store.key")
}

/// `path` with `suffix` appended to its file name (`x.db` -> `x.db-wal`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(lines: &'a [(&str, String)], name: &str) -> &'a str {
        lines
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    #[test]
    fn describe_names_the_key_source_and_retention_but_no_secret() {
        let mut c = StoreConfig::in_dir(Path::new("/data"));
        let lines = describe(&c);
        assert_eq!(value(&lines, "store"), "/data/sessions/sidepanel.db");
        assert_eq!(value(&lines, "store key"), "key file /data/store.key");
        assert!(value(&lines, "store writes").contains("every 500 updates"));
        assert!(value(&lines, "store writes").contains("5ms"));
        assert!(value(&lines, "retention").contains("30 days"));
        assert!(value(&lines, "retention").contains("1073741824 bytes"));

        c.passphrase = Passphrase::new("correct horse battery staple");
        c.retention_days = None;
        c.max_bytes = None;
        let lines = describe(&c);
        let text = format!("{lines:?}");
        assert!(!text.contains("horse"), "{text}");
        assert!(value(&lines, "store key").contains(PASSPHRASE_ENV));
        assert_eq!(value(&lines, "retention"), "no age limit; no size bound");

        c.enabled = false;
        assert!(value(&describe(&c), "store").starts_with("disabled"));
    }
}
