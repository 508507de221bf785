//! The database layout, its versioned migrations and the checks made when a file is opened.
//!
//! `PRAGMA user_version` holds the schema version. A new file gets `auto_vacuum =
//! INCREMENTAL` (so retention can hand freed pages back) and WAL journaling; an existing one
//! is migrated forward one step at a time inside the caller's transaction. A file from a newer
//! build, a file that is not ours, or one that fails `PRAGMA quick_check` is refused with a
//! clear error — never replaced by an empty store.
//!
//! `events` and `snapshots` are append-only: triggers abort any `UPDATE`, and any `DELETE`
//! unless the one-row `retention_gate` is open. Only retention opens it, inside its own
//! transaction, and closes it again before committing (`retention.rs`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction};

use super::error::{SqlContext, StoreError};

/// The schema version this build writes.
pub const VERSION: i64 = 1;

/// `MIGRATIONS[v]` takes a database from version `v` to `v + 1`.
const MIGRATIONS: &[&str] = &[V1];

const V1: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;

CREATE TABLE events (
    sequence   INTEGER PRIMARY KEY,   -- the hub's sequence: strictly increasing, never reused
    timestamp  INTEGER NOT NULL,      -- unix ms, clear for range queries
    type       TEXT NOT NULL,         -- StateUpdate.type, clear for the timeline
    session_id TEXT,                  -- OpenCode session, clear for per-session queries
    sealed     BLOB NOT NULL          -- nonce || XChaCha20-Poly1305(StateUpdate as JSON)
);
CREATE INDEX events_by_session ON events (session_id, sequence) WHERE session_id IS NOT NULL;

CREATE TABLE snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence   INTEGER NOT NULL,      -- the state after applying event `sequence`
    timestamp  INTEGER NOT NULL,
    reason     TEXT NOT NULL,         -- checkpoint | idle | manual | restore | shutdown | base
    session_id TEXT,
    sealed     BLOB NOT NULL          -- nonce || XChaCha20-Poly1305(State as JSON)
);
CREATE INDEX snapshots_by_sequence ON snapshots (sequence);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    first_sequence  INTEGER NOT NULL,
    last_sequence   INTEGER NOT NULL,
    first_timestamp INTEGER NOT NULL,
    last_timestamp  INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    requests        INTEGER NOT NULL,
    bytes           INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE secrets (name TEXT PRIMARY KEY, sealed BLOB NOT NULL) WITHOUT ROWID;

CREATE TABLE retention_gate (id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL);
INSERT INTO retention_gate (id, open) VALUES (1, 0);

CREATE TABLE retention_log (
    at           INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    cut_sequence INTEGER NOT NULL,
    sessions     INTEGER NOT NULL,
    events       INTEGER NOT NULL,
    snapshots    INTEGER NOT NULL
);

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
WHEN (SELECT open FROM retention_gate WHERE id = 1) IS NOT 1
BEGIN SELECT RAISE(ABORT, 'events are append-only: only retention deletes (whole sessions)'); END;
CREATE TRIGGER snapshots_no_update BEFORE UPDATE ON snapshots
BEGIN SELECT RAISE(ABORT, 'snapshots are append-only: UPDATE refused'); END;
CREATE TRIGGER snapshots_no_delete BEFORE DELETE ON snapshots
WHEN (SELECT open FROM retention_gate WHERE id = 1) IS NOT 1
BEGIN SELECT RAISE(ABORT, 'snapshots are append-only: only retention deletes'); END;
CREATE TRIGGER retention_log_no_update BEFORE UPDATE ON retention_log
BEGIN SELECT RAISE(ABORT, 'retention_log is append-only'); END;
CREATE TRIGGER retention_log_no_delete BEFORE DELETE ON retention_log
BEGIN SELECT RAISE(ABORT, 'retention_log is append-only'); END;
"#;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The version a database is at, refusing newer ones and foreign files.
fn version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .on(path)?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            known: VERSION,
        });
    }
    if found < 0 {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            reason: format!("user_version is {found}"),
        });
    }
    Ok(found)
}

/// Opens (creating if needed) the writer's connection and checks the file. Returns the
/// connection and the version it is at (0 = new, nothing in it yet).
pub fn open_writer(path: &Path) -> Result<(Connection, i64), StoreError> {
    let conn = Connection::open(path).on(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).on(path)?;
    let found = version(&conn, path)?;
    if found == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .on(path)?;
        if tables > 0 {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
                reason: "it has tables but no sidepanel schema version".into(),
            });
        }
        // Must precede the first table.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .on(path)?;
    } else {
        quick_check(&conn, path)?;
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .on(path)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            reason: format!("cannot switch it to WAL journaling (got {mode})"),
        });
    }
    // Durable against a crash of this process once a batch commits; see docs (Storage).
    conn.pragma_update(None, "synchronous", "NORMAL").on(path)?;
    Ok((conn, found))
}

/// Brings a database at `from` up to [`VERSION`] inside `tx`.
pub fn migrate(tx: &Transaction<'_>, path: &Path, from: i64) -> Result<(), StoreError> {
    for (v, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(from).unwrap_or(0))
    {
        tx.execute_batch(sql).on(path)?;
        tracing::info!(db = %path.display(), to = v + 1, "session store schema migrated");
    }
    tx.pragma_update(None, "user_version", VERSION).on(path)?;
    Ok(())
}

/// `PRAGMA quick_check`: page-level consistency, O(size of the file).
pub fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA quick_check").on(path)?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .on(path)?
        .collect::<Result<_, _>>()
        .on(path)?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("quick_check: {}", rows.join("; ")),
    })
}

/// Opens a read-only connection to an existing, current database (the CLI and the server's
/// query side). Takes no writer lock: WAL lets it read while the writer commits.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound {
            path: path.to_owned(),
        });
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).on(path)?;
    conn.busy_timeout(BUSY_TIMEOUT).on(path)?;
    match version(&conn, path)? {
        0 => Err(StoreError::Foreign {
            path: path.to_owned(),
            reason: "it has no sidepanel schema (empty or foreign file)".into(),
        }),
        v if v < VERSION => Err(StoreError::Foreign {
            path: path.to_owned(),
            reason: format!(
                "schema version {v} is older; start `sidepanel serve` once to migrate it"
            ),
        }),
        _ => Ok(conn),
    }
}
