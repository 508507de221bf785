//! The session store against a real hub and real SQLite files: what is stored replays to
//! exactly the live state — including the sessions' deduplication memory, which the state's
//! JSON leaves out (compared as `ingest_memory`) — at the end and at random points in between,
//! and restores continue the history instead of rewriting it.

mod store_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sidepanel::store::{Reader, RestoreTarget, Store};
use store_support::{
    assert_same, config, event, finish, ingest_event, live_json, rig, runtime, with_memory,
};

const EVENTS: u64 = 3000;

/// Applies `n` random events (seeded) to the rig's hub; returns the state after some of them,
/// by sequence.
fn drive(rig: &store_support::Rig, seed: u64, n: u64, keep_every: u64) -> BTreeMap<u64, Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kept = BTreeMap::new();
    for i in 0..n {
        rig.hub.apply(event(&mut rng, i));
        if rng.u64(0..keep_every) == 0 {
            let s = live_json(&rig.handle);
            kept.insert(s["sequence"].as_u64().expect("sequence"), s);
        }
    }
    kept
}

fn reopened(cfg: &sidepanel::store::StoreConfig) -> (u64, Value) {
    let (store, restored) = Store::open(cfg).expect("store reopens");
    drop(store);
    let json = with_memory(&restored.state);
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
        let live = live_json(&rig.handle);
        let last = live["sequence"].as_u64().expect("sequence");
        assert!(last > EVENTS, "every event published at least one update");
        finish(&rt, &rig);

        // Through the read side too (nearest snapshot + replay).
        let reader = Reader::open(&cfg).expect("reader");
        let (_, at_last) = reader
            .state_at(RestoreTarget::Sequence(last))
            .expect("state at the last update");
        assert_same(&with_memory(&at_last), &live, "read side");

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
        assert_same(&with_memory(&state), expected, &format!("at {seq}"));
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
    assert_eq!(
        published.payload.value()["restored_from"]["sequence"],
        point
    );
    let mut now = live_json(&rig.handle);
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
    let live = live_json(&rig.handle);
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
fn plugin_events_mixed_with_requests_replay_exactly_between_checkpoints() {
    // No checkpoint in the way: every point is rebuilt from the payloads alone, so session
    // updates must carry what the batch changed (last_active, plugin) — not the hub's clock.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1_000_000);
    let rt = runtime();
    let rig = rig(&cfg);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut kept = BTreeMap::new();
    for i in 0..2000 {
        let plugin = rng.bool();
        let ev = if plugin {
            ingest_event(&mut rng, i)
        } else {
            event(&mut rng, i)
        };
        let before = rig.handle.with_state(|s| s.sequence);
        rig.hub.apply(ev);
        let seq = rig.handle.with_state(|s| s.sequence);
        // Every plugin batch publishes (what the ingest's acknowledgement waits for).
        assert!(
            !plugin || seq > before,
            "plugin batch {i} published nothing"
        );
        if rng.u32(0..40) == 0 {
            kept.insert(seq, live_json(&rig.handle));
        }
    }
    let live = live_json(&rig.handle);
    assert!(
        live["plugin"]["starts"].as_u64() > Some(0),
        "{}",
        live["plugin"]
    );
    assert!(
        live["ingest_memory"]["ses_a"]["messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "the sessions remember their messages: {}",
        live["ingest_memory"]["ses_a"]
    );
    kept.insert(live["sequence"].as_u64().expect("sequence"), live);
    finish(&rt, &rig);

    let reader = Reader::open(&cfg).expect("reader");
    let mut with_message = 0;
    for (seq, expected) in &kept {
        let (_, state) = reader
            .state_at(RestoreTarget::Sequence(*seq))
            .expect("state at a point");
        let got = with_memory(&state);
        assert_same(&got, expected, &format!("at {seq}"));
    }
    for sid in store_support::SESSIONS {
        let points = reader.timeline(sid, 5000).expect("timeline");
        with_message += points.iter().filter(|p| p.message_id.is_some()).count();
    }
    assert!(
        with_message > 0,
        "completed messages are timeline points with their id"
    );
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
    let live = live_json(&handle);
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
