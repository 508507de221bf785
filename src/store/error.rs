//! Why the session store failed, in words a user can act on.
//!
//! Every variant names the database file. Opening never "recovers" by starting empty: a newer
//! schema, a corrupt file, a wrong key or a full disk stop the start with one of these, and
//! nothing on disk is changed.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// A session-store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "session store {}: another sidepanel process is using it (lock {} is held{holder}); \
         stop that process, or give this one another --data-dir or store.path",
        db.display(), lock.display()
    )]
    Locked {
        db: PathBuf,
        lock: PathBuf,
        /// `" by pid N"` when the lock file says so.
        holder: String,
    },
    #[error("session store {}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no session database at {} (has `sidepanel serve` run with this data dir and store.path?)", path.display())]
    NotFound { path: PathBuf },
    #[error(
        "session store {}: written by a newer sidepanel (schema version {found}; this build \
         knows up to {known}); upgrade sidepanel or point store.path at another file — nothing \
         was changed",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "session store {}: not a sidepanel session database ({reason}); point store.path at \
         another file — nothing was changed",
        path.display()
    )]
    Foreign { path: PathBuf, reason: String },
    #[error(
        "session store {}: the database is corrupt ({detail}); move the file (and its -wal and \
         -shm files) aside to start a new one, or restore a backup — nothing was changed",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "session store {}: the disk is full; free some space (updates not yet written are kept \
         in memory and retried)",
        path.display()
    )]
    DiskFull { path: PathBuf },
    #[error(
        "session store {}: wrong key — {hint}; the database was encrypted with another one, \
         and nothing was changed",
        path.display()
    )]
    WrongKey { path: PathBuf, hint: String },
    #[error(
        "session store {}: the database is encrypted with a passphrase; set SIDEPANEL_PASSPHRASE",
        path.display()
    )]
    PassphraseRequired { path: PathBuf },
    #[error(
        "session store {}: the database is encrypted with the key file {}, not a passphrase; \
         unset SIDEPANEL_PASSPHRASE",
        path.display(), key_file.display()
    )]
    PassphraseNotUsed { path: PathBuf, key_file: PathBuf },
    #[error(
        "session store {}: its key file {} is missing or unreadable ({reason}); restore the key \
         file — without it the stored sessions cannot be read, and nothing was changed",
        path.display(), key_file.display()
    )]
    KeyFile {
        path: PathBuf,
        key_file: PathBuf,
        reason: String,
    },
    #[error("session store {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("session store: cannot decrypt {what}: damaged, or written with another key")]
    Decrypt { what: String },
    #[error("session store: {what} is malformed: {reason}")]
    Decode { what: String, reason: String },
    #[error("session store: {0}")]
    Crypto(String),
    #[error("no session {0:?} in the store")]
    NoSuchSession(String),
    #[error("no snapshot {0} in the store")]
    NoSuchSnapshot(i64),
    #[error("sequence {sequence} is outside the stored history ({first}..={last})")]
    OutOfRange {
        sequence: u64,
        first: u64,
        last: u64,
    },
    #[error("session store: the writer is not running")]
    Stopped,
    #[error("session store: queued updates cannot be committed: {0}")]
    Unwritten(String),
    #[error("session store: {0}")]
    Internal(String),
}

impl StoreError {
    /// Classifies a SQLite error on `path`: corruption and a full disk get their own variants.
    pub fn sql(path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_owned();
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => Self::Corrupt {
                path,
                detail: source.to_string(),
            },
            Some(ErrorCode::DiskFull) => Self::DiskFull { path },
            _ => Self::Sqlite { path, source },
        }
    }

    /// Why a commit failed, as a bounded metric label: `disk_full`, `read_only`, `busy`
    /// (another process holds the database's lock), `io`, or `other`.
    pub fn failure_reason(&self) -> &'static str {
        match self {
            Self::DiskFull { .. } => "disk_full",
            Self::Io { .. } => "io",
            Self::Sqlite { source, .. } => match source.sqlite_error_code() {
                Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) => "read_only",
                Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => "busy",
                Some(ErrorCode::SystemIoFailure) => "io",
                _ => "other",
            },
            _ => "other",
        }
    }

    /// An I/O failure while doing `action` on `path`.
    pub fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }

    /// A payload that decrypted but does not parse.
    pub fn decode(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Decode {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// `.map_err` helper: SQLite errors on a known file.
pub(crate) trait SqlContext<T> {
    fn on(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> SqlContext<T> for Result<T, rusqlite::Error> {
    fn on(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::sql(path, e))
    }
}
