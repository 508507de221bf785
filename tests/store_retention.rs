//! Retention removes whole old sessions — by age and by size — and nothing else: the kept
//! history still replays, the current state does not change, and the log stays append-only.

mod store_support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::json;
use sidepanel::hub::{StateUpdate, UpdateSource, UpdateType};
use sidepanel::store::{Reader, RestoreTarget, Store, StoreError};
use store_support::{config, record};

const NOW_MS: u64 = 1_800_000_000_000;
const DAY_MS: u64 = 86_400_000;

fn usage(
    rng: &mut fastrand::Rng,
    seq: u64,
    ts: u64,
    session: &str,
    pad: usize,
) -> Arc<StateUpdate> {
    let mut r = record(rng, ts);
    r.session_id = Some(session.to_owned());
    r.path = format!("/chat/completions{}", "x".repeat(pad));
    Arc::new(StateUpdate::new(
        UpdateType::Usage,
        ts,
        seq,
        json!({ "request": r }),
        UpdateSource::Venice,
    ))
}

fn balance(seq: u64, ts: u64) -> Arc<StateUpdate> {
    Arc::new(StateUpdate::new(
        UpdateType::Balance,
        ts,
        seq,
        json!({"balance": {"diem": seq as f64, "usd": 1.5, "observed_at": ts}}),
        UpdateSource::Venice,
    ))
}

fn ids(reader: &Reader) -> Vec<String> {
    let mut v: Vec<String> = reader
        .sessions(100)
        .expect("sessions")
        .into_iter()
        .map(|s| s.id)
        .collect();
    v.sort();
    v
}

#[test]
fn age_retention_removes_whole_old_sessions_and_keeps_the_history_replayable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 40);
    cfg.retention_days = Some(30);
    cfg.max_bytes = None;
    let (mut store, _) = Store::open(&cfg).expect("opens");
    let mut rng = fastrand::Rng::with_seed(8);
    let mut batch = Vec::new();
    // old_a: 60 days ago, sequences 1..=100 (with global balance updates among them).
    for seq in 1..=100 {
        let ts = NOW_MS - 60 * DAY_MS + seq;
        batch.push(if seq % 10 == 0 {
            balance(seq, ts)
        } else {
            usage(&mut rng, seq, ts, "old_a", 0)
        });
    }
    // live_x starts 40 days ago and is active yesterday; old_b (35 days ago) lies inside it.
    batch.push(usage(&mut rng, 101, NOW_MS - 40 * DAY_MS, "live_x", 0));
    for seq in 102..=200 {
        batch.push(usage(&mut rng, seq, NOW_MS - 35 * DAY_MS + seq, "old_b", 0));
    }
    for seq in 201..=300 {
        batch.push(usage(&mut rng, seq, NOW_MS - DAY_MS + seq, "live_x", 0));
    }
    store.append(&batch).expect("append");
    let before = store
        .reader()
        .state_at(RestoreTarget::Sequence(300))
        .expect("state")
        .1;
    let at_100 = store
        .reader()
        .state_at(RestoreTarget::Sequence(100))
        .expect("state")
        .1;

    let report = store
        .retain(UNIX_EPOCH + Duration::from_millis(NOW_MS))
        .expect("retention");
    assert_eq!(
        (report.cuts, report.sessions, report.events),
        (1, 1, 100),
        "{report:?}"
    );
    assert_eq!(
        ids(store.reader()),
        ["live_x", "old_b"],
        "old_b lies inside live_x: kept"
    );

    let after = store
        .reader()
        .state_at(RestoreTarget::Sequence(300))
        .expect("state")
        .1;
    let json = |s: &sidepanel::hub::State| serde_json::to_value(s).expect("json");
    assert_eq!(
        json(&after),
        json(&before),
        "the current state is untouched"
    );
    let base = store
        .reader()
        .state_at(RestoreTarget::Sequence(100))
        .expect("base")
        .1;
    assert_eq!(
        json(&base),
        json(&at_100),
        "the kept history starts from a base snapshot"
    );
    let gone = store.reader().state_at(RestoreTarget::Sequence(50));
    assert!(
        matches!(gone, Err(StoreError::OutOfRange { .. })),
        "{gone:?}"
    );

    // A second run finds nothing more to remove; the gate is closed again.
    let again = store
        .retain(UNIX_EPOCH + Duration::from_millis(NOW_MS))
        .expect("retention");
    assert_eq!(again.cuts, 0);
    drop(store);
    let conn = rusqlite::Connection::open(&cfg.path).expect("open");
    let e = conn
        .execute("DELETE FROM events WHERE sequence = 200", [])
        .expect_err("still append-only");
    assert!(e.to_string().contains("append-only"), "{e}");
    let logged: i64 = conn
        .query_row("SELECT count(*) FROM retention_log", [], |r| r.get(0))
        .expect("log");
    assert_eq!(logged, 1);
}

#[test]
fn size_retention_removes_the_oldest_sessions_first_and_never_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 200);
    cfg.retention_days = None;
    // Reachable by cutting sessions: the newest session's updates plus the snapshots kept
    // (each with every session's state and deduplication memory) stay below it.
    cfg.max_bytes = Some(3 << 19);
    let (mut store, _) = Store::open(&cfg).expect("opens");
    let mut rng = fastrand::Rng::with_seed(9);
    let mut seq = 0;
    for s in 0..8 {
        let batch: Vec<_> = (0..300)
            .map(|_| {
                seq += 1;
                usage(
                    &mut rng,
                    seq,
                    NOW_MS - DAY_MS + seq,
                    &format!("ses_{s}"),
                    1200,
                )
            })
            .collect();
        store.append(&batch).expect("append");
    }
    let before = store
        .reader()
        .state_at(RestoreTarget::Sequence(seq))
        .expect("state")
        .1;
    let report = store
        .retain(UNIX_EPOCH + Duration::from_millis(NOW_MS))
        .expect("retention");
    assert!(report.cuts >= 1, "{report:?}");
    assert!(report.bytes <= 3 << 19, "under the bound: {report:?}");
    let kept = ids(store.reader());
    assert!(
        kept.contains(&"ses_7".to_owned()),
        "the newest stays: {kept:?}"
    );
    assert!(
        !kept.contains(&"ses_0".to_owned()),
        "the oldest goes first: {kept:?}"
    );
    let first_kept: u32 = kept[0].trim_start_matches("ses_").parse().expect("n");
    assert_eq!(
        kept.len() as u32,
        8 - first_kept,
        "a contiguous run of the newest: {kept:?}"
    );
    let after = store
        .reader()
        .state_at(RestoreTarget::Sequence(seq))
        .expect("state")
        .1;
    assert_eq!(
        serde_json::to_value(&after).expect("json"),
        serde_json::to_value(&before).expect("json")
    );
    assert_eq!(
        serde_json::to_value(after.ingest_memory()).expect("json"),
        serde_json::to_value(before.ingest_memory()).expect("json"),
        "the base snapshot keeps the deduplication memory"
    );
}
