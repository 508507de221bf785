//! What the session store refuses, and what it never leaks: wrong key, corrupt file, newer
//! schema, a second writer, a full disk, edits of the append-only log, and a marker string
//! that must not appear in clear in any database file.

mod store_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sidepanel::hub::{HubEvent, StateUpdate, UpdateSource, UpdateType};
use sidepanel::store::{
    ExportFormat, Passphrase, Reader, RestoreTarget, Store, StoreConfig, StoreError,
};
use store_support::{config, event, finish, record, rig, runtime};

/// A store with a few hundred updates in `dir`.
fn filled(cfg: &StoreConfig) -> u64 {
    let rt = runtime();
    let rig = rig(cfg);
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..300 {
        rig.hub.apply(event(&mut rng, i));
    }
    let last = rig.handle.with_state(|s| s.sequence);
    finish(&rt, &rig);
    last
}

/// Folds the WAL into the main file, so the file alone holds everything.
fn checkpoint(db: &Path) {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
}

/// The main database file's bytes (after a checkpoint), compared by value without dumping.
fn main_file(db: &Path) -> Vec<u8> {
    std::fs::read(db).expect("database file")
}

fn files(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            std::fs::read(&name)
                .ok()
                .map(|bytes| (suffix.to_string(), bytes))
        })
        .collect()
}

fn open_err(cfg: &StoreConfig) -> StoreError {
    match Store::open(cfg) {
        Ok(_) => panic!("opening {} should have failed", cfg.path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_wrong_passphrase_or_key_file_is_refused_and_nothing_is_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 50);
    cfg.passphrase = Passphrase::new("correct horse battery staple");
    let last = filled(&cfg);
    checkpoint(&cfg.path);
    let before = main_file(&cfg.path);

    cfg.passphrase = Passphrase::new("wrong horse");
    let e = open_err(&cfg);
    assert!(matches!(e, StoreError::WrongKey { .. }), "{e}");
    assert!(e.to_string().contains("SIDEPANEL_PASSPHRASE"), "{e}");
    assert!(Reader::open(&cfg).is_err(), "the read side refuses too");
    cfg.passphrase = None;
    let e = open_err(&cfg);
    assert!(matches!(e, StoreError::PassphraseRequired { .. }), "{e}");
    assert!(
        main_file(&cfg.path) == before,
        "a refused open changes no byte"
    );

    cfg.passphrase = Passphrase::new("correct horse battery staple");
    let (_store, restored) = Store::open(&cfg).expect("the right passphrase opens it");
    assert_eq!(restored.sequence, last);
    drop(_store);

    // A key-file store: a replaced key file is a wrong key, a missing one a clear error.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    filled(&cfg);
    let key = std::fs::read(&cfg.key_file).expect("key file exists");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cfg.key_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file is private");
    std::fs::write(&cfg.key_file, format!("{}\n", "ab".repeat(32))).expect("replace key");
    let e = open_err(&cfg);
    assert!(matches!(e, StoreError::WrongKey { .. }), "{e}");
    std::fs::remove_file(&cfg.key_file).expect("remove key");
    let e = open_err(&cfg);
    assert!(matches!(e, StoreError::KeyFile { .. }), "{e}");
    assert!(!cfg.key_file.exists(), "no new key file was made up");
    let mut with_pass = cfg.clone();
    with_pass.passphrase = Passphrase::new("x");
    std::fs::write(&cfg.key_file, &key).expect("restore key");
    let e = open_err(&with_pass);
    assert!(matches!(e, StoreError::PassphraseNotUsed { .. }), "{e}");
    Store::open(&cfg).expect("the original key file opens it");
}

#[test]
fn a_corrupt_file_is_refused_never_replaced_by_an_empty_store() {
    // Garbage where the header should be.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    filled(&cfg);
    checkpoint(&cfg.path);
    let mut bytes = std::fs::read(&cfg.path).expect("db");
    bytes[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&cfg.path, &bytes).expect("write");
    let e = open_err(&cfg);
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(main_file(&cfg.path) == bytes, "left as it was");

    // Damaged pages inside an otherwise valid file.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    filled(&cfg);
    checkpoint(&cfg.path);
    let mut bytes = std::fs::read(&cfg.path).expect("db");
    assert!(bytes.len() > 8 * 4096, "several pages: {}", bytes.len());
    for b in &mut bytes[4096 + 100..6 * 4096] {
        *b = 0xA5;
    }
    std::fs::write(&cfg.path, &bytes).expect("write");
    let e = open_err(&cfg);
    assert!(
        matches!(e, StoreError::Corrupt { .. } | StoreError::Decrypt { .. }),
        "{e}"
    );
}

#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    filled(&cfg);
    let conn = rusqlite::Connection::open(&cfg.path).expect("open");
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    let e = open_err(&cfg);
    assert!(
        matches!(e, StoreError::NewerSchema { found: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("newer sidepanel"), "{e}");
    assert!(matches!(
        Reader::open(&cfg),
        Err(StoreError::NewerSchema { .. })
    ));

    // A foreign SQLite file is not taken over either.
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).expect("open");
    conn.execute_batch("CREATE TABLE notes (x TEXT)")
        .expect("table");
    drop(conn);
    let mut foreign = cfg.clone();
    foreign.path = other;
    assert!(matches!(open_err(&foreign), StoreError::Foreign { .. }));
}

#[test]
fn a_second_writer_on_the_same_database_is_refused_and_readers_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    filled(&cfg);
    let (first, _) = Store::open(&cfg).expect("first writer");
    let e = open_err(&cfg);
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    assert!(e.to_string().contains("another sidepanel process"), "{e}");
    let reader = Reader::open(&cfg).expect("a reader needs no lock");
    assert!(reader.last_sequence().expect("reads") > 0);
    drop(first);
    Store::open(&cfg).expect("free after the first closed");
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_batch_is_kept_for_a_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1_000_000);
    let (mut store, _) = Store::open(&cfg).expect("opens");
    let pages: i64 = rusqlite::Connection::open(&cfg.path)
        .expect("open")
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .expect("pages");
    store.limit_pages(pages as u64 + 2).expect("cap");
    let mut rng = fastrand::Rng::with_seed(1);
    let batch: Vec<Arc<StateUpdate>> = (1..=2000)
        .map(|seq| {
            Arc::new(StateUpdate::new(
                UpdateType::Usage,
                1_700_000_000_000 + seq,
                seq,
                json!({"request": record(&mut rng, 1_700_000_000_000 + seq)}),
                UpdateSource::Venice,
            ))
        })
        .collect();
    let e = store.append(&batch).expect_err("does not fit");
    assert!(matches!(e, StoreError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains("disk is full"), "{e}");
    assert_eq!(store.last_sequence(), 0, "nothing half-written");
    store.limit_pages(1 << 30).expect("uncap");
    assert_eq!(store.append(&batch).expect("fits now"), 2000);
}

#[test]
fn the_log_is_append_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 50);
    filled(&cfg);
    let conn = rusqlite::Connection::open(&cfg.path).expect("open");
    for sql in [
        "UPDATE events SET type = 'x' WHERE sequence = 1",
        "DELETE FROM events WHERE sequence = 1",
        "UPDATE snapshots SET reason = 'x'",
        "DELETE FROM snapshots",
    ] {
        let e = conn.execute(sql, []).expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
}

#[test]
fn a_marker_sent_through_the_system_never_appears_in_clear_on_disk() {
    const MARKER: &str = "MARKER-7f3e9b1c-plaintext";
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 7);
    cfg.redact = vec![sidepanel::config::ApiKey::new("sk-venice-key-0042").expect("key")];
    let rt = runtime();
    let rig = rig(&cfg);
    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0..200 {
        let mut r = record(&mut rng, 1_700_000_000_000 + i);
        r.model = Some(format!("{MARKER}-model"));
        r.session_id = Some("ses_marker".into());
        r.error = Some(sidepanel::gateway::usage::UpstreamError {
            message: format!("{MARKER} sk-venice-key-0042 in an error"),
            code: None,
        });
        rig.hub.apply(HubEvent::Request(Box::new(r)));
        rig.hub.apply(HubEvent::Proof {
            file: format!("{MARKER}.lean"),
            state: json!({"goal": MARKER}),
        });
    }
    let last = rig.handle.with_state(|s| s.sequence);
    rt.block_on(rig.store.wait_committed(last, Duration::from_secs(60)))
        .expect("committed");
    // While running (WAL and shared memory in use) and after shutdown.
    let check = |when: &str| {
        let found = files(&cfg.path);
        assert!(
            found.iter().any(|(s, _)| s == "-wal"),
            "{when}: a WAL exists"
        );
        for (suffix, bytes) in found {
            let hit = bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes());
            assert!(
                !hit,
                "{when}: the marker is in clear in the database{suffix} file"
            );
        }
    };
    check("running");
    let md = rt
        .block_on(rig.store.export("ses_marker", ExportFormat::Markdown))
        .expect("export");
    assert!(md.contains(MARKER), "decrypts for the owner");
    let lines = rt
        .block_on(rig.store.export("ses_marker", ExportFormat::Jsonl))
        .expect("export");
    assert!(lines.contains(MARKER), "decrypts for the owner");
    assert!(!lines.contains("sk-venice-key-0042") && lines.contains("<redacted>"));
    finish(&rt, &rig);
    check("stopped");
    let reader = Reader::open(&cfg).expect("reader");
    let (_, state) = reader
        .state_at(RestoreTarget::Sequence(last))
        .expect("state");
    assert!(state.models.contains_key(&format!("{MARKER}-model")));
}
