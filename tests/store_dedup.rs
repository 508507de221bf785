//! OpenCode's messages count once across a restart and a restore: the sessions' deduplication
//! memory (message ids with the tokens and cost counted for them, step and tool-call ids,
//! pending matches) is rebuilt exactly from the stored updates (replay), from a snapshot, and
//! at a restored point. OpenCode sends `message.updated` several times per message, and the
//! plugin re-sends a batch whose 2xx was lost (the store had committed it), so after any of
//! these a re-sent or later update of an already counted message must not count it twice.
//! Real SQLite files in temporary directories; the real hub.

mod store_support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use sidepanel::hub::{Hub, HubEvent, HubHandle, StateUpdate};
use sidepanel::ingest::{event, OpencodeBatch, OpencodeMessage};
use sidepanel::store::{RestoreTarget, SnapshotReason, Store, StoreConfig};
use store_support::{assert_same, config, finish, live_json, rig, runtime, with_memory};

const SID: &str = "ses_dedup";

/// A plugin batch (`PluginEvent`s) as the hub gets it from `POST /events`.
fn batch(events: &[Value]) -> HubEvent {
    let events = events
        .iter()
        .map(|e| event::parse(e).expect("valid plugin event"))
        .collect();
    let at = UNIX_EPOCH + Duration::from_millis(1_795_520_697_742);
    HubEvent::Opencode(OpencodeMessage::Batch(OpencodeBatch::new(at, events)))
}

fn ev(name: &str, data: Value) -> Value {
    json!({"event": name, "timestamp": 1_795_520_697_742u64, "data": data})
}

/// OpenCode's `message.updated` of a completed assistant message.
fn assistant(id: &str, input: u64, output: u64, cost: f64) -> Value {
    ev(
        "message.updated",
        json!({"sessionID": SID, "info": {
            "id": id, "sessionID": SID, "role": "assistant",
            "time": {"created": 1, "completed": 2}, "cost": cost,
            "tokens": {"total": input + output, "input": input, "output": output,
                       "reasoning": 0, "cache": {"read": 0, "write": 0}}}}),
    )
}

/// The first batch: a user message, a completed assistant message, its step and a tool call.
fn first_batch() -> Vec<Value> {
    vec![
        ev(
            "message.updated",
            json!({"sessionID": SID, "info": {"id": "msg_user", "sessionID": SID,
                   "role": "user", "time": {"created": 1}}}),
        ),
        assistant("msg_a", 100, 40, 0.004),
        ev(
            "message.part.updated",
            json!({"sessionID": SID, "part": {"id": "prt_1", "sessionID": SID,
                   "messageID": "msg_a", "type": "step-finish", "cost": 0.004,
                   "tokens": {"total": 140, "input": 100, "output": 40, "reasoning": 0,
                              "cache": {"read": 0, "write": 0}}}}),
        ),
        ev(
            "message.part.updated",
            json!({"sessionID": SID, "part": {"id": "prt_2", "sessionID": SID,
                   "messageID": "msg_a", "type": "tool", "callID": "call_1", "tool": "read",
                   "state": {"status": "completed"}}}),
        ),
    ]
}

/// Re-sends the first batch (a lost 2xx), then a later update of the same message with more
/// tokens; asserts OpenCode's tokens and cost for the session count the message once, with
/// its later values.
fn resend_and_check(hub: &Hub, handle: &HubHandle, what: &str) {
    hub.apply(batch(&first_batch()));
    hub.apply(batch(&[assistant("msg_a", 120, 50, 0.005)]));
    let s = live_json(handle);
    let oc = &s["sessions"][SID]["opencode"];
    assert_eq!(oc["tokens"]["input"], 120, "{what}: {oc}");
    assert_eq!(oc["tokens"]["output"], 50, "{what}: {oc}");
    assert_eq!(oc["tokens"]["total"], 170, "{what}: {oc}");
    assert!(
        (oc["cost"].as_f64().expect("cost") - 0.005).abs() < 1e-12,
        "{what}: {oc}"
    );
    assert_eq!(oc["messages"], json!({"user": 1, "assistant": 1}), "{what}");
    assert_eq!(oc["tool_calls"], 1, "{what}: {oc}");
}

/// Every update the hub published (from a subscription taken before).
fn drain(rx: &mut tokio::sync::broadcast::Receiver<Arc<StateUpdate>>) -> Vec<Arc<StateUpdate>> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

/// Runs the first batch on a hub resumed from the store in `cfg` and stores its updates
/// synchronously (no writer thread: nothing writes a snapshot unless `snapshot` says so).
/// Returns the live state with its memory.
fn first_run(cfg: &StoreConfig, snapshot: bool) -> Value {
    let (mut store, restored) = Store::open(cfg).expect("store opens");
    let (hub, handle) = store_support::hub(restored);
    let mut rx = handle.subscribe();
    hub.apply(batch(&first_batch()));
    store.append(&drain(&mut rx)).expect("stored");
    if snapshot {
        store.snapshot(SnapshotReason::Manual).expect("snapshot");
    }
    // More traffic after it (replayed on top of the snapshot, if any).
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..20 {
        hub.apply(store_support::event(&mut rng, i));
    }
    hub.apply(batch(&[ev(
        "session.status",
        json!({"sessionID": SID, "status": {"type": "busy"}}),
    )]));
    store.append(&drain(&mut rx)).expect("stored");
    let live = live_json(&handle);
    assert_eq!(
        live["sessions"][SID]["opencode"]["tokens"]["input"], 100,
        "counted once live"
    );
    live
}

#[test]
fn a_resent_message_counts_once_after_a_restart_that_replays_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1_000_000);
    let live = first_run(&cfg, false);
    // The store was dropped without a snapshot: the restart replays every stored update.
    let (store, restored) = Store::open(&cfg).expect("store reopens");
    drop(store);
    assert_same(&with_memory(&restored.state), &live, "replayed state");
    assert!(
        live["ingest_memory"][SID]["messages"]
            .as_array()
            .is_some_and(|m| m.len() == 2),
        "{}",
        live["ingest_memory"]
    );
    let (hub, handle) = store_support::hub(restored);
    resend_and_check(&hub, &handle, "after a replay");
}

#[test]
fn a_resent_message_counts_once_after_a_restart_from_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1_000_000);
    let live = first_run(&cfg, true);
    let (store, restored) = Store::open(&cfg).expect("store reopens");
    drop(store);
    assert_same(&with_memory(&restored.state), &live, "snapshot + replay");
    let (hub, handle) = store_support::hub(restored);
    resend_and_check(&hub, &handle, "after a snapshot");

    // The running writer's snapshots (here: at its stop) keep the memory too.
    let cfg2 = config(&dir.path().join("second"), 1_000_000);
    let rt = runtime();
    let r = rig(&cfg2);
    r.hub.apply(batch(&first_batch()));
    let live = live_json(&r.handle);
    finish(&rt, &r);
    let (store, restored) = Store::open(&cfg2).expect("store reopens");
    drop(store);
    assert_same(&with_memory(&restored.state), &live, "shutdown snapshot");
    let (hub, handle) = store_support::hub(restored);
    resend_and_check(&hub, &handle, "after a shutdown snapshot");
}

#[test]
fn a_resent_message_counts_once_after_a_restore_and_after_restarting_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1_000_000);
    let rt = runtime();
    let r = rig(&cfg);
    r.hub.apply(batch(&first_batch()));
    let at_point = live_json(&r.handle);
    let point = at_point["sequence"].as_u64().expect("sequence");
    rt.block_on(r.store.wait_committed(point, Duration::from_secs(60)))
        .expect("committed");
    let snap = rt.block_on(r.store.snapshot_now()).expect("snapshot");
    assert_eq!(snap.sequence, point);
    // Later: another message, and traffic.
    r.hub.apply(batch(&[assistant("msg_b", 7, 3, 0.001)]));
    let mut rng = fastrand::Rng::with_seed(8);
    for i in 0..30 {
        r.hub.apply(store_support::event(&mut rng, i));
    }

    for target in [
        RestoreTarget::Sequence(point),
        RestoreTarget::Snapshot(snap.id),
    ] {
        rt.block_on(r.store.restore(target, &r.handle))
            .expect("restore");
        let mut now = live_json(&r.handle);
        now["sequence"] = point.into();
        assert_same(&now, &at_point, &format!("restored {target:?}"));
        resend_and_check(&r.hub, &r.handle, &format!("after restoring {target:?}"));
        // msg_b came after the point: it counts again, once.
        r.hub.apply(batch(&[assistant("msg_b", 7, 3, 0.001)]));
        r.hub.apply(batch(&[assistant("msg_b", 7, 3, 0.001)]));
        let s = live_json(&r.handle);
        assert_eq!(s["sessions"][SID]["opencode"]["tokens"]["input"], 127);
    }

    // A restart after the restores rebuilds the same memory (the writer takes it from the
    // restored point, which the restore's own update leaves out).
    let live = live_json(&r.handle);
    finish(&rt, &r);
    let (store, restored) = Store::open(&cfg).expect("store reopens");
    let replayed = store
        .reader()
        .state_at(RestoreTarget::Sequence(restored.sequence - 1))
        .expect("state before the last update");
    drop(store);
    assert_same(
        &with_memory(&restored.state),
        &live,
        "restart after restores",
    );
    let replayed = with_memory(&replayed.1);
    assert_eq!(
        replayed["sessions"][SID]["opencode"]["tokens"]["input"],
        127
    );
    let ids: Vec<&str> = replayed["ingest_memory"][SID]["messages"]
        .as_array()
        .expect("the memory survives replay across the restores")
        .iter()
        .filter_map(|m| m[0].as_str())
        .collect();
    assert_eq!(ids, ["msg_user", "msg_a", "msg_b"]);
    let (hub, handle) = store_support::hub(restored);
    hub.apply(batch(&[assistant("msg_b", 7, 3, 0.001)]));
    let s = live_json(&handle);
    assert_eq!(s["sessions"][SID]["opencode"]["tokens"]["input"], 127);
}
