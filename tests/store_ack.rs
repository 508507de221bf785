//! What a 2xx from `POST /events` promises with the session store on: the events' updates are
//! committed to SQLite before the answer. Checked with the store's own read side right after
//! the answer (no waiting), through the real gateway; and the 503 when they cannot be
//! acknowledged (the hub does not apply them, the store stopped). Also: the store's metrics
//! count every committed batch.

mod common;
mod ingest_support;
mod store_support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sidepanel::ingest::{load_or_create_token, Ingest, IngestConfig};
use sidepanel::simulator::{self, SimConfig};
use sidepanel::store::{Reader, RestoreTarget};

use ingest_support::{assistant, ev, post, TOKEN};

/// A Prometheus sample's value (`name` with its labels, if any, as written).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_from_events_means_its_events_are_committed_to_the_database() {
    let sim = simulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    let cfg = common::config(&sim.base_url());
    let store = cfg.store.clone();
    let token = load_or_create_token(&cfg.data_dir).expect("token");
    let gw = common::gateway(cfg).await;

    for i in 0..12 {
        let sid = format!("ses_ack{}", i % 3);
        let msg = format!("msg_ack{i}");
        let batch = json!([
            ev(
                "session.updated",
                json!({"sessionID": sid, "info": {"id": sid, "title": format!("title {i}")}})
            ),
            assistant(&sid, &msg, true, 10 + i, 5, 0.001),
        ]);
        let r = post(gw.addr, &token, &batch).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let seq = r.body["sequence"]
            .as_u64()
            .expect("a stored batch names its sequence");

        // Straight after the answer, through the store's read side: it is there.
        let reader = Reader::open(&store).expect("reader");
        assert!(reader.last_sequence().expect("last") >= seq);
        let (_, state) = reader
            .state_at(RestoreTarget::Sequence(seq))
            .expect("the acknowledged state");
        let session = &state.sessions[&sid];
        assert_eq!(session.opencode.title, Some(format!("title {i}")));
        let points = reader.timeline(&sid, 100).expect("timeline");
        let point = points
            .iter()
            .find(|p| p.message_id.as_deref() == Some(msg.as_str()))
            .expect("the completed message is a timeline point with its OpenCode id");
        assert!(point.sequence <= seq);
    }

    // Every committed batch was counted, before it was acknowledged.
    let text = common::metrics_text(&gw).await;
    let appended = sample(&text, "sidepanel_store_events_appended_total").expect("counter");
    assert!(appended >= 12.0, "appended {appended}");
    let lags = sample(&text, "sidepanel_store_write_lag_seconds_count").expect("histogram");
    assert!(lags >= 1.0, "write lag observations {lags}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_acknowledged_get_a_503_and_nothing_waits_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = store_support::config(dir.path(), 1_000_000);
    let rig = store_support::rig(&cfg);
    let hub = Arc::new(rig.hub);
    let (stop_hub, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn({
        let hub = hub.clone();
        async move { hub.run(stopped).await }
    });
    let ingest = Ingest::new(rig.handle.clone(), IngestConfig::default(), TOKEN.into())
        .with_store(rig.store.clone(), Duration::from_millis(500));
    let server = tokio::task::spawn_blocking(move || ingest_support::start(Arc::new(ingest)))
        .await
        .expect("events server");
    let batch = |title: &str| {
        json!([ev(
            "session.updated",
            json!({"sessionID": "ses_x", "info": {"id": "ses_x", "title": title}})
        )])
    };

    // Healthy: acknowledged, and stored.
    let r = post(server.addr, TOKEN, &batch("stored")).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let seq = r.body["sequence"].as_u64().expect("sequence");
    let reader = Reader::open(&cfg).expect("reader");
    let (_, state) = reader
        .state_at(RestoreTarget::Sequence(seq))
        .expect("state");
    assert_eq!(
        state.sessions["ses_x"].opencode.title.as_deref(),
        Some("stored")
    );

    // The store stopped: applied live, but not acknowledged.
    let store = rig.store.clone();
    let closed = tokio::task::spawn_blocking(move || store.close(Duration::from_secs(30)))
        .await
        .expect("close");
    assert!(closed, "the writer stopped");
    let r = post(server.addr, TOKEN, &batch("not stored")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("not_acknowledged")),
        "{:?}",
        r.body
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry later")),
        "{:?}",
        r.body
    );

    // The hub no longer applies events: the wait is bounded, the answer a 503 too.
    stop_hub.send_replace(true);
    running.await.expect("hub stopped");
    let r = post(server.addr, TOKEN, &batch("never applied")).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("hub")),
        "{:?}",
        r.body
    );
}

/// The database files this process holds open.
fn open_db_files() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .filter(|p| p.contains("sidepanel.db"))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_lets_go_of_its_store_and_state() {
    // Reference cycles once kept every stopped gateway alive: ingest -> plugin URL callback ->
    // OpenCode link -> ingest (its store connection and the hub's whole state), and hub handle
    // -> metrics -> store probe -> store health -> hub handle.
    let sim = simulator::spawn(SimConfig::default())
        .await
        .expect("simulator");
    let cfg = common::config(&sim.base_url());
    assert!(open_db_files().is_empty());
    for round in 0..3 {
        let gw = common::gateway(cfg.clone()).await;
        assert!(
            !open_db_files().is_empty(),
            "round {round}: the store is open"
        );
        let hub = gw.hub.downgrade();
        tokio::task::spawn_blocking(move || drop(gw))
            .await
            .expect("the gateway stops");
        assert_eq!(open_db_files(), Vec::<String>::new(), "round {round}");
        assert!(
            hub.upgrade().is_none(),
            "round {round}: the stopped gateway's hub (state, history) is dropped"
        );
    }
}
