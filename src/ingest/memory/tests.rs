//! Unit tests of the ingest memory: replaying the `remembered` changes of the session updates
//! rebuilds it exactly, resends remember nothing, and stored records stay bounded.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::*;
use crate::ingest::apply::{apply, OpencodeBatch, OpencodeMessage};
use crate::ingest::event::parse;

fn ev(rng: &mut fastrand::Rng) -> Value {
    let tokens = json!({"input": rng.u64(0..50), "output": rng.u64(0..50), "reasoning": 0,
                        "cache": {"read": 0, "write": 0}});
    let data = match rng.u32(0..4) {
        0 => json!({"info": {"id": format!("m{}", rng.u32(0..400)), "role": "assistant",
                    "time": {"created": 1, "completed": 2}, "cost": rng.f64(), "tokens": tokens}}),
        1 => json!({"info": {"id": format!("m{}", rng.u32(0..400)), "role": "user"}}),
        2 => json!({"part": {"id": format!("p{}", rng.u32(0..900)), "type": "step-finish",
                    "tokens": tokens}}),
        _ => {
            json!({"part": {"id": "t", "type": "tool", "callID": format!("c{}", rng.u32(0..900)),
                    "tool": "read", "state": {"status": "completed"}}})
        }
    };
    let mut data = data;
    data["sessionID"] = json!("s");
    let name = ["message.part.updated", "message.updated"][usize::from(data["info"].is_object())];
    json!({"event": name, "timestamp": 1, "data": data})
}

fn memory_json(st: &State) -> Value {
    serde_json::to_value(st.ingest_memory()).expect("serialises")
}

#[test]
fn replaying_each_batchs_remembered_rebuilds_the_memory_exactly_past_its_bounds() {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut live = State::default();
    let mut replayed = State::default();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
    for _ in 0..300 {
        let events = (0..rng.usize(1..12))
            .map(|_| parse(&ev(&mut rng)).expect("valid"))
            .collect();
        let batch = OpencodeMessage::Batch(OpencodeBatch::new(at, events));
        for (_, _, payload) in apply(&mut live, batch) {
            let Some(remembered) = payload.get("remembered") else {
                continue;
            };
            let changes: Vec<Remembered> =
                serde_json::from_value(remembered.clone()).expect("reads back");
            assert!(
                payload["opencode"].get("memory").is_none(),
                "the memory itself is never in the JSON"
            );
            replayed.touch_session("s", at);
            let s = replayed.sessions.get_mut("s").expect("session");
            let shown = serde_json::from_value(payload["opencode"].clone()).expect("reads");
            s.opencode.replay(shown, &changes);
        }
    }
    let m = live.sessions["s"].opencode.memory();
    assert_eq!(m.message_order.len(), MAX_MESSAGES, "bounded");
    assert_eq!(m.ids.order.len(), MAX_IDS, "bounded");
    assert_eq!(memory_json(&replayed), memory_json(&live));

    // Whole, as a snapshot stores it: the same memory back.
    let back: SessionMemories = serde_json::from_value(memory_json(&live)).expect("reads back");
    let mut restored = live.clone();
    restored.set_ingest_memory(back);
    assert_eq!(memory_json(&restored), memory_json(&live));
}

#[test]
fn a_resent_batch_remembers_nothing_new_and_a_damaged_record_stays_bounded() {
    let at = SystemTime::UNIX_EPOCH;
    let mut st = State::default();
    let msg = json!({"event": "message.updated", "timestamp": 1, "data": {"sessionID": "s",
        "info": {"id": "m1", "role": "assistant", "time": {"created": 1, "completed": 2},
                 "cost": 0.5, "tokens": {"input": 3, "output": 4}}}});
    let batch = || {
        let events = vec![parse(&msg).expect("valid")];
        OpencodeMessage::Batch(OpencodeBatch::new(at, events))
    };
    let first = apply(&mut st, batch());
    assert_eq!(
        first[0].2["remembered"],
        json!([{"kind": "message", "id": "m1", "cost": 0.5,
                "tokens": {"input": 3, "output": 4, "reasoning": 0, "cache_read": 0,
                           "cache_write": 0, "total": null}}])
    );
    let again = apply(&mut st, batch());
    assert!(again[0].2.get("remembered").is_none(), "{}", again[0].2);

    let ids: Vec<String> = (0..2 * MAX_IDS).map(|i| format!("call:{i}")).collect();
    let steps = vec![json!([0, 0, 0, 0, 0, null]); 3 * MAX_PENDING];
    let m: Memory =
        serde_json::from_value(json!({"ids": ids, "pending_steps": steps})).expect("reads");
    assert_eq!(m.ids.order.len(), MAX_IDS);
    assert_eq!(m.ids.order.front().map(String::as_str), Some("call:512"));
    assert_eq!(m.pending_steps.len(), MAX_PENDING);
}
