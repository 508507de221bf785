//! The session store against a real hub and real SQLite files: what is stored replays to
//! exactly the live state, at the end and at random points in between, and restores continue
//! the history instead of rewriting it.

mod store_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sidepanel::store::{Reader, RestoreTarget, Store};
use store_support::{assert_same, config, event, finish, ingest_event, rig, runtime, state_json};

const EVENTS: u64 = 3000;

/// Applies `n` random events (seeded) to the rig's hub; returns the state after some of them,
/// by sequence.
fn drive(rig: &store_support::Rig, seed: u64, n: u64, keep_every: u64) -> BTreeMap<u64, Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kept = BTreeMap::new();
    for i in 0..n {
        rig.hub.apply(event(&mut rng, i));
        if rng.u64(0..keep_every) == 0 {
            let s = state_json(&rig.handle);
            kept.insert(s["sequence"].as_u64().expect("sequence"), s);
        }
    }
    kept
}

fn reopened(cfg: &sidepanel::store::StoreConfig) -> (u64, Value) {
    let (store, restored) = Store::open(cfg).expect("store reopens");
    drop(store);
    let json = serde_json::to_value(&restored.state).expect("serialises");
    (restored.sequence, json)
}

#[test]
fn append_then_replay_equals_the_live_state_over_thousands_of_random_updates() {
    // Pure replay (no checkpoint in the way), and replay between the hub's checkpoints.
    for snapshot_every in [1_000_000, 97] {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config(dir.path(), snapshot_every);
        let rt = runtime();
        let rig = rig(&cfg);
        drive(&rig, 7 + snapshot_every, EVENTS, u64::MAX);
        let live = state_json(&rig.handle);
        let last = live["sequence"].as_u64().expect("sequence");
        assert!(last > EVENTS, "every event published at least one update");
        finish(&rt, &rig);

        // Through the read side too (nearest snapshot + replay).
        let reader = Reader::open(&cfg).expect("reader");
        let (_, at_last) = reader
            .state_at(RestoreTarget::Sequence(last))
            .expect("state at the last update");
        assert_same(
            &serde_json::to_value(&at_last).expect("json"),
            &live,
            "read side",
        );

        let (sequence, restored) = reopened(&cfg);
        assert_eq!(sequence, last, "the sequence continues from the store");
        assert_same(
            &restored,
            &live,
            &format!("snapshot_every = {snapshot_every}"),
        );
    }
}

#[test]
fn restore_at_random_points_equals_the_state_computed_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 37);
    let rt = runtime();
    let rig = rig(&cfg);
    let kept = drive(&rig, 42, EVENTS, 60);
    assert!(kept.len() >= 20, "enough random points: {}", kept.len());
    let last = rig.handle.with_state(|s| s.sequence);
    rt.block_on(rig.store.wait_committed(last, Duration::from_secs(60)))
        .expect("committed");

    for (seq, expected) in &kept {
        let (at, state) = rt
            .block_on(rig.store.state_at(RestoreTarget::Sequence(*seq)))
            .expect("state at a point");
        assert_eq!(at, *seq);
        assert_same(
            &serde_json::to_value(&state).expect("json"),
            expected,
            &format!("at {seq}"),
        );
    }

    // Restore one point: every client gets it as one `snapshot` update, history goes on.
    let (&point, expected) = kept.iter().nth(kept.len() / 2).expect("a point");
    let mut updates = rig.handle.subscribe();
    let r = rt
        .block_on(
            rig.store
                .restore(RestoreTarget::Sequence(point), &rig.handle),
        )
        .expect("restore");
    assert_eq!((r.restored, r.sequence), (point, last + 1));
    let published = updates.try_recv().expect("the restore was broadcast");
    assert_eq!(published.sequence, last + 1);
    assert_eq!(published.kind, sidepanel::hub::UpdateType::Snapshot);
    assert_eq!(published.payload["restored_from"]["sequence"], point);
    let mut now = state_json(&rig.handle);
    assert_eq!(now["sequence"], last + 1);
    now["sequence"] = point.into();
    assert_same(&now, expected, "the hub adopted the restored state");

    // The restore is itself stored; the log before it is untouched.
    rt.block_on(rig.store.wait_committed(last + 1, Duration::from_secs(60)))
        .expect("restore committed");
    let (_, before) = rt
        .block_on(rig.store.state_at(RestoreTarget::Sequence(last)))
        .expect("history kept");
    assert_eq!(before.sequence, last);

    // Restoring by snapshot id works too, and more traffic after a restore replays.
    let snap = rt.block_on(rig.store.snapshot_now()).expect("snapshot");
    let mut rng = fastrand::Rng::with_seed(99);
    for i in 0..300 {
        rig.hub.apply(event(&mut rng, EVENTS + i));
    }
    let r = rt
        .block_on(
            rig.store
                .restore(RestoreTarget::Snapshot(snap.id), &rig.handle),
        )
        .expect("restore by id");
    assert_eq!((r.restored, r.snapshot_id), (snap.sequence, Some(snap.id)));
    for i in 0..300 {
        rig.hub.apply(event(&mut rng, EVENTS + 300 + i));
    }
    let live = state_json(&rig.handle);
    finish(&rt, &rig);
    let (sequence, restored) = reopened(&cfg);
    assert_eq!(sequence, live["sequence"].as_u64().expect("sequence"));
    assert_same(&restored, &live, "after a restart");

    // Points outside the history are refused, not guessed.
    let reader = Reader::open(&cfg).expect("reader");
    assert!(reader
        .state_at(RestoreTarget::Sequence(sequence + 10))
        .is_err());
    assert!(reader.state_at(RestoreTarget::Snapshot(999_999)).is_err());
}

#[test]
fn a_clean_shutdown_keeps_the_exact_state_including_opencode_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 500);
    let rt = runtime();
    let store_support::Rig {
        hub,
        handle,
        store,
        task: _task,
    } = rig(&cfg);
    let hub = Arc::new(hub);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = rt.spawn({
        let hub = hub.clone();
        async move { hub.run(stopped).await }
    });
    let mut rng = fastrand::Rng::with_seed(5);
    for i in 0..1500 {
        let ev = if rng.u32(0..3) == 0 {
            ingest_event(&mut rng, i)
        } else {
            event(&mut rng, i)
        };
        handle.send(ev);
    }
    stop.send_replace(true);
    rt.block_on(running).expect("hub stopped");
    let live = state_json(&handle);
    assert!(
        live["sessions"]["ses_a"]["opencode"]["seen"] == true,
        "ingest reached the state"
    );
    let last = live["sequence"].as_u64().expect("sequence");
    rt.block_on(store.wait_committed(last, Duration::from_secs(60)))
        .expect("committed");
    assert!(store.close(Duration::from_secs(60)));
    let (sequence, restored) = reopened(&cfg);
    assert_eq!(sequence, last);
    assert_same(&restored, &live, "after a restart");

    // Sequences go on from there in the next run.
    let rig2 = rig(&cfg);
    let mut rng = fastrand::Rng::with_seed(6);
    rig2.hub.apply(event(&mut rng, 0));
    let next = rig2.handle.with_state(|s| s.sequence);
    assert!(next > last, "{next} continues after {last}");
    let mut updates = rig2.handle.subscribe();
    rig2.hub.apply(event(&mut rng, 1));
    assert_eq!(updates.try_recv().expect("published").sequence, next + 1);
    let next = rig2.handle.with_state(|s| s.sequence);
    finish(&rt, &rig2);
    assert_eq!(reopened(&cfg).0, next);
}
