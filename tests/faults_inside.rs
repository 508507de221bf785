//! Faults inside the gateway (issue 10): a Lean server crash loop, a full disk and a read-only
//! session database, a store writer held up by another process's lock, a flood of WebSocket
//! clients and a flood of plugin posts. Each degrades only its own feature, visibly (state,
//! `/metrics`, the answer to `/events` or `/ws`), and recovers; proxied requests to the
//! simulator keep succeeding all through each fault.

mod common;
mod fault_support;
mod ingest_support;
mod inside_support;
mod lean_support;
mod ws_common;

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use inside_support::client::{
    assert_not_acknowledged, flood_updates, held_post, install_script, post, post_acked,
    raise_fd_limit, raw_upgrade, shown_store_is, store_is, stored_title, titled, watcher,
    ws_store_is,
};
use inside_support::{sample, start, until, Traffic};
use serde_json::Value;
use sidepanel::store::{Reader, RestoreTarget, StoreFault, StoreState};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lean_crash_loop_is_visible_backs_off_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("lean-lsp-mcp");
    let runs = dir.path().join("runs");
    let crash = format!("#!/bin/sh\necho run >> '{}'\nexit 3\n", runs.display());
    install_script(&script, &crash);
    let replay = lean_support::replay::Replay::new();
    let working = replay.config(&[]);
    let gw = start(|c| {
        c.lean.enabled = true;
        c.lean.command = script.display().to_string();
        c.lean.args = Vec::new();
        c.lean.restart_backoff_max = Duration::from_secs(2);
        c.lean.call_timeout = Duration::from_secs(5);
    })
    .await;
    let mut updates = gw.hub.subscribe();
    let traffic = Traffic::start(gw.api());

    // Crashing at every start: `disconnected` with the reason, more restarts, and the next
    // attempt announced further out each time (0.5 s, 1 s, 2 s: the backoff).
    let delays = inside_support::lean_restart_delays(&mut updates, 3, 2000).await;
    let last = delays.last().map_or(0, |d| d.0) as usize;
    let started = std::fs::read_to_string(&runs)
        .unwrap_or_default()
        .lines()
        .count();
    assert!(
        started <= last + 1,
        "no start without its backoff: {started} starts, {last} restarts"
    );
    let state = gw.state().await;
    assert_eq!(
        state["proof"]["@server"]["server"]["command"],
        script.display().to_string()
    );
    let text = gw.metrics().await;
    assert_eq!(sample(&text, "sidepanel_lean_up"), Some(0.0));
    assert!(
        sample(&text, "sidepanel_lean_restarts_total").unwrap_or(0.0) >= 3.0,
        "{text}"
    );
    let ok = traffic.serves(0, 5, "Lean crash loop").await;

    // A working server in its place: the next attempt starts it and Lean is ready again.
    let mut line = vec!["exec".to_owned(), working.command.clone()];
    line.extend(working.args.iter().map(|a| format!("'{a}'")));
    install_script(&script, &format!("#!/bin/sh\n{}\n", line.join(" ")));
    until("the Lean server ready again", || async {
        let s = gw.state().await;
        let server = s["proof"]["@server"]["server"].clone();
        (server["status"] == "ready").then_some(server)
    })
    .await;
    let text = gw.metrics().await;
    assert_eq!(sample(&text, "sidepanel_lean_up"), Some(1.0));
    traffic.serves(ok, 5, "after the Lean recovery").await;
    traffic.stop("Lean crash loop").await;
}

/// A store fault made real on the writer's own connection: it fails visibly (the store's
/// status in the state, `/healthz` and a WebSocket update), `/events` says so at once, the
/// proxy and WebSocket updates go on, a flood of updates does not make the writer spin, and
/// once cleared everything published is committed and the status is `ok` again everywhere.
async fn a_failing_store_degrades_only_storage(fault: StoreFault, reason: &str, says: &str) {
    let gw = start(|_| {}).await;
    let traffic = Traffic::start(gw.api());
    post_acked(&gw, &titled("ses_ok", "before")).await;
    let mut ws = watcher(&gw).await;
    assert_eq!(shown_store_is(&gw, "ok").await["failures"], 0);

    gw.store.simulate(fault).await.expect("fault set");
    let status = store_is(&gw, StoreState::Failing).await;
    let failing_at = tokio::time::Instant::now();
    let error = status.error.unwrap_or_default();
    assert!(error.contains(says), "the reason is given: {error}");
    for shown in [
        ws_store_is(&mut ws, "failing").await,
        shown_store_is(&gw, "failing").await,
    ] {
        let error = shown["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "the reason is shown: {shown}");
        assert!(shown["failures"].as_u64() >= Some(1), "{shown}");
    }

    // A flood of updates while failing: they wait in memory, the writer retries on its backoff.
    flood_updates(&gw, 6000);
    assert_not_acknowledged(&post(&gw, &titled("ses_refused", "refused")).await, says);
    let target = gw.sequence();
    ws.until_sequence(target).await;
    let ok = traffic.serves(0, 10, "a failing store").await;
    let text = until("the backlog in the metrics", || async {
        let text = gw.metrics().await;
        let pending = sample(&text, "sidepanel_store_pending_updates").unwrap_or(0.0);
        (pending >= 6000.0).then_some(text)
    })
    .await;
    assert_eq!(sample(&text, "sidepanel_store_up"), Some(0.0), "{text}");
    let series = format!("sidepanel_store_write_failures_total{{reason=\"{reason}\"}}");
    let failures = sample(&text, &series).unwrap_or(0.0);
    assert!(failures >= 1.0, "{series}: {failures}");
    let allowed = 2 + failing_at.elapsed().as_secs() + 1;
    assert!(
        gw.store.status().failures <= allowed,
        "retries follow the backoff, not each arrival: {} failures in {:?}",
        gw.store.status().failures,
        failing_at.elapsed()
    );
    let refused = sample(
        &text,
        "sidepanel_ingest_rejected_total{reason=\"not_acknowledged\"}",
    );
    assert!(refused >= Some(1.0), "{refused:?}");

    // Cleared: the backlog commits, the store is up, and plugin posts are acknowledged again.
    gw.store
        .simulate(StoreFault::Cleared)
        .await
        .expect("fault cleared");
    gw.all_committed().await;
    store_is(&gw, StoreState::Ok).await;
    assert_eq!(ws_store_is(&mut ws, "ok").await["error"], Value::Null);
    assert_eq!(shown_store_is(&gw, "ok").await["error"], Value::Null);
    let text = gw.metrics().await;
    assert_eq!(sample(&text, "sidepanel_store_up"), Some(1.0));
    let after = post_acked(&gw, &titled("ses_ok", "after")).await;
    let seq = after.body["sequence"].as_u64().expect("sequence");
    assert_eq!(stored_title(&gw, "ses_ok", seq).as_deref(), Some("after"));
    traffic.serves(ok, 5, "after the store recovered").await;
    traffic.stop("a failing store").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_only_storage_and_recovers() {
    a_failing_store_degrades_only_storage(StoreFault::DiskFull, "disk_full", "disk is full").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_degrades_only_storage_and_recovers() {
    a_failing_store_degrades_only_storage(StoreFault::ReadOnly, "read_only", "readonly").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_writer_held_by_another_lock_lags_visibly_and_catches_up() {
    let gw = start(|_| {}).await;
    let traffic = Traffic::start(gw.api());
    let mut acked = Vec::new();
    for i in 0..3 {
        let r = post_acked(&gw, &titled("ses_slow", &format!("early {i}"))).await;
        acked.push((
            format!("early {i}"),
            r.body["sequence"].as_u64().expect("sequence"),
        ));
    }
    let mut ws = watcher(&gw).await;

    // Another process's connection takes the database's write lock and keeps it.
    let path = gw.store_config.path.clone();
    let lock = tokio::task::spawn_blocking(move || {
        let c = rusqlite::Connection::open(path).expect("second connection");
        c.execute_batch("BEGIN IMMEDIATE").expect("write lock");
        c
    })
    .await
    .expect("lock task");

    assert_not_acknowledged(&post(&gw, &titled("ses_slow", "while locked")).await, "");
    let status = until("the store lag to show", || async {
        let s = gw.store.status();
        matches!(s.status, StoreState::Behind | StoreState::Failing).then_some(s)
    })
    .await;
    assert!(status.lag_ms >= 1000, "{status:?}");
    let text = gw.metrics().await;
    let lag = sample(&text, "sidepanel_store_lag_seconds").unwrap_or(0.0);
    assert!(lag >= 1.0, "lag {lag}");
    assert!(sample(&text, "sidepanel_store_pending_updates").unwrap_or(0.0) >= 1.0);
    let target = gw.sequence();
    ws.until_sequence(target).await;
    let ok = traffic.serves(0, 10, "a locked store").await;

    // Released: the writer catches up; everything acknowledged is in the database.
    tokio::task::spawn_blocking(move || lock.execute_batch("ROLLBACK").expect("release"))
        .await
        .expect("release task");
    gw.all_committed().await;
    let r = post_acked(&gw, &titled("ses_slow", "after")).await;
    acked.push((
        "after".into(),
        r.body["sequence"].as_u64().expect("sequence"),
    ));
    for (title, seq) in &acked {
        assert_eq!(
            stored_title(&gw, "ses_slow", *seq).as_deref(),
            Some(title.as_str())
        );
    }
    store_is(&gw, StoreState::Ok).await;
    traffic.serves(ok, 5, "after the lock").await;
    traffic.stop("a locked store").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_websocket_clients_is_refused_visibly_and_others_keep_their_updates() {
    let limit = raise_fd_limit();
    // Each flood connection costs this process four fds (client, gateway both sides, ws server).
    let n = 2000.min((limit.saturating_sub(400) / 4) as usize);
    let gw = start(|_| {}).await;
    let traffic = Traffic::start(gw.api());
    let mut ws = watcher(&gw).await;
    let (rss_before, _) = fault_support::rss_kib();

    // The flood: upgrades that, once accepted, never read a byte.
    let flood: Vec<(tokio::net::TcpStream, u16)> = stream::iter(0..n)
        .map(|_| raw_upgrade(&gw))
        .buffer_unordered(64)
        .collect()
        .await;
    let accepted = flood.iter().filter(|(_, s)| *s == 101).count();
    let refused = flood.iter().filter(|(_, s)| *s == 503).count();
    assert_eq!(
        accepted + refused,
        n,
        "every upgrade is accepted or refused with 503"
    );
    // The server's limit, less the watcher.
    let max = sidepanel::ws::MAX_CLIENTS - 1;
    assert!(
        accepted <= max && refused >= n - max,
        "{accepted} accepted, {refused} refused"
    );
    let text = gw.metrics().await;
    let counted = sample(
        &text,
        "sidepanel_ws_refused_total{reason=\"too_many_clients\"}",
    );
    assert!(counted >= Some(refused as f64), "{counted:?} vs {refused}");
    assert!(sample(&text, "sidepanel_ws_clients") >= Some(accepted as f64));
    let (_late, status) = raw_upgrade(&gw).await;
    assert_eq!(status, 503, "a new tab sees the server is full");

    // Meanwhile: the proxy serves, and the client that was there keeps getting updates.
    let ok = traffic.serves(0, 10, "a WebSocket flood").await;
    let target = gw.sequence();
    ws.until_sequence(target).await;
    let (rss_after, _) = fault_support::rss_kib();
    println!("RSS {rss_before} KiB before the flood of {n}, {rss_after} KiB during");
    assert!(rss_after < rss_before + 256 * 1024, "memory stays bounded");

    // The flood leaves: new clients connect again.
    drop(flood);
    drop(_late);
    until("a new WebSocket client to be accepted", || async {
        let (s, status) = raw_upgrade(&gw).await;
        drop(s);
        (status == 101).then_some(())
    })
    .await;
    let mut again = watcher(&gw).await;
    traffic.serves(ok, 5, "after the WebSocket flood").await;
    let target = gw.sequence();
    again.until_sequence(target).await;
    traffic.stop("a WebSocket flood").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_plugin_posts_is_bounded_shed_with_429_and_loses_nothing_acknowledged() {
    let gw = start(|_| {}).await;
    let traffic = Traffic::start(gw.api());

    // Posts in flight are bounded: with every slot taken, more posts get 429 at once.
    let slots = sidepanel::ingest::MAX_IN_FLIGHT;
    let mut held = Vec::new();
    // A third more than the slots: on a loaded machine pingora may not have read every head yet.
    for i in 0..slots + slots / 2 {
        let body = titled(&format!("ses_held{i}"), "held")
            .to_string()
            .into_bytes();
        held.push((held_post(&gw, &body).await, body));
    }
    until("every slot to be taken", || async {
        let r = post(&gw, &titled("ses_probe", "probe")).await;
        (r.status == 429).then_some(())
    })
    .await;
    for _ in 0..10 {
        let r = post(&gw, &titled("ses_shed", "shed")).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (429, Some("busy")),
            "{:?}",
            r.body
        );
    }
    let text = gw.metrics().await;
    assert!(sample(&text, "sidepanel_ingest_rejected_total{reason=\"busy\"}") >= Some(10.0));
    let ok = traffic.serves(0, 10, "plugin slots all taken").await;
    for (s, body) in &mut held {
        s.write_all(&body[1..]).await.expect("rest of the body");
    }
    for (mut s, _) in held {
        let r = fault_support::read_head(&mut s).await;
        assert!(
            [202, 429, 503].contains(&r.status),
            "acknowledged or clearly not: {}",
            r.head
        );
    }

    // A flood of batches: each answered 202, 429 or 503; every 202 is in the database.
    let gw_ref = &gw;
    let answers: Vec<(String, u16)> = stream::iter(0..150)
        .map(|i| async move {
            let sid = format!("ses_flood{i}");
            let mut batch = vec![titled(&sid, "flood")[0].clone()];
            for m in 0..19 {
                batch.push(ingest_support::assistant(
                    &sid,
                    &format!("msg_{i}_{m}"),
                    true,
                    10,
                    5,
                    0.0,
                ));
            }
            let r = post(gw_ref, &Value::Array(batch)).await;
            (sid, r.status)
        })
        .buffer_unordered(96)
        .collect()
        .await;
    let acked: Vec<&String> = answers
        .iter()
        .filter(|(_, s)| *s == 202)
        .map(|(sid, _)| sid)
        .collect();
    let odd: Vec<_> = answers
        .iter()
        .filter(|(_, s)| ![202, 429, 503].contains(s))
        .collect();
    assert!(odd.is_empty(), "unexpected answers: {odd:?}");
    assert!(!acked.is_empty(), "the flood is served, not only refused");
    gw.all_committed().await;
    let reader = Reader::open(&gw.store_config).expect("reader");
    let last = reader.last_sequence().expect("last");
    let (_, state) = reader
        .state_at(RestoreTarget::Sequence(last))
        .expect("state");
    for sid in acked {
        let title = state
            .sessions
            .get(sid)
            .and_then(|s| s.opencode.title.as_deref());
        assert_eq!(
            title,
            Some("flood"),
            "{sid} was acknowledged but is not stored"
        );
    }
    let text = gw.metrics().await;
    assert_eq!(
        sample(&text, "sidepanel_hub_dropped_events_total"),
        Some(0.0),
        "proxy records never crowded out"
    );
    post_acked(&gw, &titled("ses_after", "after")).await;
    traffic.serves(ok, 5, "after the plugin flood").await;
    traffic.stop("a plugin flood").await;
}
