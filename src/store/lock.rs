//! One writer per database: an exclusive `flock` on `<db>.lock`, held for the process's life.
//!
//! A second `serve` on the same data dir (or the same `store.path`) fails to take the lock and
//! refuses to start, naming the pid written in the lock file. The lock is advisory and taken
//! with `std::fs::File::try_lock` (flock(2) on Linux): the kernel drops it when the process
//! dies, even on `kill -9`, so a crash never leaves a stale lock behind. Readers
//! (`sidepanel sessions …`) do not take it: SQLite's WAL lets them read while the server writes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Takes the lock on `lock` for the database `db`, without waiting.
    pub fn acquire(db: &Path, lock: &Path) -> Result<Self, StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock)
            .map_err(|e| StoreError::io(lock, "open the lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text
                    .trim()
                    .parse::<u32>()
                    .map(|pid| format!(" by pid {pid}"))
                    .unwrap_or_default();
                return Err(StoreError::Locked {
                    db: db.to_owned(),
                    lock: lock.to_owned(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(StoreError::io(lock, "lock the lock file", e));
            }
        }
        // Diagnostics only: who holds it.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(Self {
            _file: file,
            path: lock.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("x.db");
        let lock = dir.path().join("x.db.lock");
        let first = WriterLock::acquire(&db, &lock).expect("first takes it");
        let err = WriterLock::acquire(&db, &lock).expect_err("second is refused");
        let msg = err.to_string();
        assert!(msg.contains("another sidepanel process"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        WriterLock::acquire(&db, &lock).expect("free again");
    }
}
