//! Soak: steady proxied load, streams, plugin events and WebSocket clients against the real
//! gateway (in-process, in front of the simulator), with periodic upstream faults and gateway
//! restarts, for `SIDEPANEL_SOAK_SECS` (default 120). It prints RSS, fds, error counts and
//! lost-event counts, and fails on any lost event or unexpected error:
//!
//! - WebSocket: every client checks that the sequences it receives are contiguous after its
//!   `state.get`/`state.since` answer (a `state.resync` covers a gap, is counted, and is not a
//!   loss) and that it ends at the hub's sequence;
//! - store: every `POST /events` answered 2xx (= committed) is in the database afterwards.
//!
//! Ignored by default: `bash benches/soak.sh [seconds]` runs it (docs/RELIABILITY.md).

mod common;
mod fault_support;
mod soak_support;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{chat, client, config, gateway};
use serde_json::json;
use sidepanel::simulator::{self, SimConfig};
use sidepanel::store::{ExportFormat, Reader};
use soak_support::{ws_client, Counters, Shared};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Faults the load workers inject now and then (through `x-sim-fault`).
const FAULTS: [&str; 4] = ["server_error", "reset", "midstream_error", "unavailable"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run with benches/soak.sh"]
async fn soak() {
    // As the binary does: give freed heap pages back (src/memory.rs); SIDEPANEL_SOAK_TRIM=0
    // measures without it.
    if std::env::var("SIDEPANEL_SOAK_TRIM").as_deref() != Ok("0") {
        sidepanel::memory::spawn_trimmer();
    }
    let duration = env_secs("SIDEPANEL_SOAK_SECS", 120);
    let restart_every = env_secs("SIDEPANEL_SOAK_RESTART_SECS", 40);
    let sim = simulator::spawn(SimConfig {
        rpm: 10_000_000,
        tpm: 10_000_000_000,
        token_interval: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut cfg = config(&sim.base_url());
    cfg.admission.enabled = false;
    let gw = gateway(cfg.clone()).await;
    let shared = Arc::new(Shared::new(gw));
    let c = Arc::new(Counters::default());
    let start = Instant::now();
    let until = start + duration;
    let mut tasks = Vec::new();

    // Proxied load: two plain workers and one streaming worker; every 25th request a fault.
    for (worker, stream) in [(0u64, false), (1, false), (2, true)] {
        let (shared, c) = (shared.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let fault = n.is_multiple_of(25).then(|| FAULTS[(n / 25 % 4) as usize]);
                let mut req = http
                    .post(format!("http://{}/api/v1/chat/completions", shared.addr))
                    .header("x-session-id", format!("soak-load-{worker}"))
                    .json(&chat("kimi-k2-5", stream, 16));
                if let Some(f) = fault {
                    req = req.header("x-sim-fault", f);
                }
                let restarting = shared.restarting();
                let outcome = match req.send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await;
                        Some(status.is_success() && body.is_ok_and(|b| !b.contains("\"error\"")))
                    }
                    Err(_) => {
                        // Refused while restarting: pace the retries (not a synchronisation).
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        None
                    }
                };
                c.record_request(outcome, fault.is_some(), restarting || shared.restarting());
            }
        }));
    }

    // Plugin events: one per POST, to 20 sessions; a 2xx means committed.
    {
        let (shared, c) = (shared.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let session = format!("soak-ev-{}", n % 20);
                let ev = json!({"event": "session.updated", "timestamp": 1_795_520_697_742u64 + n,
                    "data": {"sessionID": session, "info": {"id": session, "title": format!("t{n}")}}});
                let token = shared.token();
                let resp = http
                    .post(format!("http://{}/events", shared.addr))
                    .bearer_auth(token)
                    .json(&ev)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => c.acked(&session),
                    Ok(r) if !shared.restarting() => c.event_refused(r.status().as_u16()),
                    _ => {
                        c.events_refused.fetch_add(1, Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await; // pacing, not sync
            }
        }));
    }

    // WebSocket clients.
    for _ in 0..3 {
        tasks.push(tokio::spawn(ws_client(shared.clone(), c.clone(), until)));
    }

    // Gateway restarts, and samples of RSS and fds.
    let mut next_restart = start + restart_every;
    let mut next_sample = start;
    while Instant::now() < until {
        if Instant::now() >= next_sample {
            c.sample();
            next_sample += Duration::from_secs(1);
        }
        if Instant::now() >= next_restart {
            shared.restart(&cfg).await;
            c.restarts.fetch_add(1, Relaxed);
            next_restart += restart_every;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // the sampling tick
    }
    for t in tasks {
        t.await.expect("a soak task panicked");
    }
    c.sample();

    // Lost events in the store: stop cleanly, then read the database.
    let final_sequence = shared.with_gateway(|gw| gw.hub.with_state(|s| s.sequence));
    shared.stop().await;
    let reader = Reader::open(&cfg.store).expect("the store opens");
    let mut lost_store = 0u64;
    for (session, acked) in c.acked_by_session() {
        let stored = reader
            .export(&session, ExportFormat::Jsonl)
            .map(|text| {
                text.lines()
                    .filter(|l| l.contains("\"type\":\"session\""))
                    .count() as u64
            })
            .unwrap_or(0);
        lost_store += acked.saturating_sub(stored);
    }
    let report = c.report(start.elapsed(), final_sequence, lost_store);
    println!("{report}");
    assert_eq!(c.lost_ws.load(Relaxed), 0, "{report}");
    assert_eq!(lost_store, 0, "{report}");
    assert_eq!(c.unexpected.load(Relaxed), 0, "{report}");
    assert!(
        c.requests_ok.load(Relaxed) > 0 && c.ws_updates.load(Relaxed) > 0,
        "{report}"
    );
}
