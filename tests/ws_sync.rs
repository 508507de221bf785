//! The WebSocket server's update stream against a real hub and real WebSocket clients: order,
//! snapshot + updates, reconnect with `state.since`, full-state fallbacks, a client that stops
//! reading, many clients, shutdown, and the supervised task.

mod ws_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use sidepanel::hub::update::HISTORY;
use sidepanel::hub::HubEvent;
use sidepanel::ws::WsConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use ws_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_arrive_in_sequence_order() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;
    let got = c.call("state.get", None).await;
    assert_eq!(got["result"]["sequence"], 0);
    assert!(got["result"]["state"]["balance"].is_object(), "{got}");

    env.hub.send(balance(9.5));
    env.hub.send(request("ses_a", 1_000));
    for i in 0..20 {
        env.hub.send(proof("A.lean", i));
    }
    env.hub.send(marker());
    let updates = c.updates_until_marker().await;
    let seqs: Vec<u64> = updates.iter().map(seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(updates[0]["type"], "balance");
    assert_eq!(updates[0]["source"], "venice");
    assert_eq!(updates[0]["payload"]["balance"]["diem"], 9.5);
    assert_eq!(updates[1]["type"], "usage");
    for u in &updates {
        assert!(u["timestamp"].as_u64().is_some_and(|t| t > 0), "{u}");
    }
    assert_eq!(env.hub.with_state(|s| s.sequence), *seqs.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_and_the_updates_after_it_lose_and_double_nothing() {
    // A queue that this test cannot overrun: it is about order, not backpressure.
    let env = start(WsConfig {
        client_queue: 4096,
        ..WsConfig::default()
    })
    .await;
    // Events keep coming while the client connects and asks for the state, and a little after.
    let snapshot_taken = Arc::new(AtomicBool::new(false));
    let (hub, taken) = (env.hub.clone(), snapshot_taken.clone());
    let producer = tokio::spawn(async move {
        let (mut sent, mut after) = (0, 0);
        while after < 50 {
            hub.send(proof("P.lean", sent));
            sent += 1;
            after += u64::from(taken.load(Ordering::SeqCst));
            tokio::task::yield_now().await;
        }
        sent
    });
    let mut c = Client::connect(&env).await;
    let snap = c.call("state.get", None).await["result"].clone();
    snapshot_taken.store(true, Ordering::SeqCst);
    let s = snap["sequence"].as_u64().unwrap();
    if s > 0 {
        // Proof i is sequence i + 1: the state is exactly the one its sequence names.
        assert_eq!(snap["state"]["proof"]["P.lean"]["n"], s - 1, "{snap}");
    }
    let sent = producer.await.unwrap();
    assert!(s < sent, "the snapshot came before the last event");
    env.hub.send(marker());
    let updates = c.updates_until_marker().await;
    let seqs: Vec<u64> = updates.iter().map(seq).collect();
    assert_eq!(seqs, (s + 1..=sent + 1).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_state_since_gets_exactly_the_missed_updates() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;
    c.call("state.get", None).await;
    for i in 0..5 {
        env.hub.send(proof("R.lean", i));
    }
    let first: Vec<u64> = c.updates(5).await.iter().map(seq).collect();
    assert_eq!(first, [1, 2, 3, 4, 5]);
    c.close().await;

    for i in 5..15 {
        env.hub.send(proof("R.lean", i));
    }
    // A witness that the hub applied them all.
    let mut w = Client::connect(&env).await;
    w.call("state.get", None).await;
    env.hub.send(marker());
    w.updates_until_marker().await;

    let mut c = Client::connect(&env).await;
    let r = c.call("state.since", Some(json!({"sequence": 5}))).await["result"].clone();
    assert_eq!(r["resync"], false);
    let missed: Vec<u64> = r["updates"].as_array().unwrap().iter().map(seq).collect();
    assert_eq!(missed, (6..=16).collect::<Vec<_>>());
    assert_eq!(r["updates"][0]["payload"]["state"]["n"], 5);
    assert_eq!(r["sequence"], 16);
    // Live updates continue right after, with nothing repeated.
    env.hub.send(proof("R.lean", 99));
    assert_eq!(seq(&c.update().await), 17);
    // Asking again from the present gives nothing.
    let r = c.call("state.since", Some(json!({"sequence": 17}))).await;
    assert_eq!(r["result"]["updates"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_too_old_or_foreign_sequence_gets_a_full_state() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;
    c.call("state.get", None).await;
    let total = HISTORY as u64 + 10;
    for i in 0..total {
        env.hub.send(proof("O.lean", i));
    }
    // Updates or a resync (this burst may overrun the client) until the last one is covered.
    c.until_sequence(total).await;

    let r = c.call("state.since", Some(json!({"sequence": 1}))).await["result"].clone();
    assert_eq!(r["resync"], true);
    assert_eq!(r["sequence"], total);
    assert_eq!(r["state"]["proof"]["O.lean"]["n"], total - 1);
    // A sequence from another run (ahead of this one) is not trusted either.
    let r = c
        .call("state.since", Some(json!({"sequence": total + 100})))
        .await;
    assert_eq!(r["result"]["resync"], true);
    assert_eq!(r["result"]["sequence"], total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_delay_others_and_later_resyncs() {
    let env = start(WsConfig {
        client_queue: 4,
        ..WsConfig::default()
    })
    .await;
    let mut stuck = Client::connect_small_buffer(&env).await;
    stuck.call("state.get", None).await;
    let mut fast = Client::connect(&env).await;
    fast.call("state.get", None).await;

    // Far more than the socket buffers and the queue hold; the fast client gets each at once.
    let big = "x".repeat(256 * 1024);
    let n = 64;
    for i in 0..n {
        env.hub.send(HubEvent::Proof {
            file: "Big.lean".into(),
            state: json!({"n": i, "blob": big}),
        });
        let u = fast.update().await;
        assert_eq!(seq(&u), i + 1);
    }

    // Now the stuck client reads again: contiguous updates, with a resync wherever it was
    // overrun (the kernel may take more bytes later, so there can be more than one), up to the
    // present.
    let (mut last, mut resyncs) = (0, 0);
    while last < n {
        let m = stuck.notification().await;
        match m["method"].as_str() {
            Some("state.update") => {
                assert_eq!(seq(&m["params"]), last + 1, "{}", m["params"]["sequence"]);
                last += 1;
            }
            Some("state.resync") => {
                let s = m["params"]["sequence"].as_u64().unwrap();
                assert!(s > last, "a resync never goes back ({s} after {last})");
                let n_in_state = &m["params"]["state"]["proof"]["Big.lean"]["n"];
                assert_eq!(n_in_state, s - 1);
                (last, resyncs) = (s, resyncs + 1);
            }
            _ => panic!("unexpected {m}"),
        }
    }
    assert!(resyncs > 0, "the stuck client was never overrun");
    assert_eq!(last, n);
    env.hub.send(proof("Big.lean", 0));
    assert_eq!(seq(&stuck.update().await), n + 1);
    assert_eq!(seq(&fast.update().await), n + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_all_receive_the_same_updates() {
    let env = start(WsConfig::default()).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = Client::connect(&env).await;
        c.call("state.get", None).await;
        clients.push(c);
    }
    env.hub.send(balance(3.25));
    for i in 0..30 {
        env.hub.send(proof("M.lean", i));
    }
    env.hub.send(marker());
    let mut seen = Vec::new();
    for c in &mut clients {
        seen.push(c.updates_until_marker().await);
    }
    assert_eq!(seen[0].len(), 32);
    for s in &seen[1..] {
        assert_eq!(s, &seen[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_clients_with_going_away() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;
    c.call("state.get", None).await;
    env.stop.send_replace(true);
    let (code, reason) = c.close_frame().await;
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("shutting down"), "{reason}");
}
