//! Admission control end to end: retries that honour Retry-After, no retries where Venice
//! counts failures, holding a model until its reset, the bounded queue and the gateway's own
//! 429, and a burst of concurrent clients on a small limit.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::raw::{self, chunk, head, last_chunk, Step};
use common::*;
use serde_json::Value;
use sidepanel::simulator::{self, SimConfig};

fn sim() -> SimConfig {
    SimConfig {
        api_key: Some(GATEWAY_KEY.to_owned()),
        rpm: 10_000,
        ..SimConfig::default()
    }
}

fn attempts(resp: &reqwest::Response) -> u32 {
    resp.headers()["x-sidepanel-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_retried_once_after_the_wait() {
    let sim = simulator::spawn(sim()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let started = Instant::now();
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .header("x-sim-fault", "overloaded")
        .header("x-sim-retry-after", "1")
        .header("x-sim-fault-count", "1")
        .header("x-sim-fault-key", "retry-once")
        .json(&chat("kimi-k2-5", true, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(attempts(&resp), 2);
    assert!(resp.text().await.unwrap().contains("[DONE]"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(sim.observed().requests, 2);
    let state = requests_recorded(&gw, 1).await;
    assert_eq!(state.recent[0].retries, vec!["rate_limited"]);
    assert_eq!(state.admission.retries.get("rate_limited"), Some(&1));
    assert_eq!(state.totals.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_venice_counts_as_failures_are_never_retried() {
    let sim = simulator::spawn(sim()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let c = client();
    for (fault, status) in [("bad_request", 400), ("insufficient_balance", 402)] {
        let before = sim.observed().requests;
        let resp = c
            .post(format!("{}/chat/completions", api(&gw)))
            .header("x-sim-fault", fault)
            .json(&chat("kimi-k2-5", false, 8))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(attempts(&resp), 1);
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].is_string(),
            "Venice's own body passes through: {body}"
        );
        assert_eq!(sim.observed().requests, before + 1, "{fault} sent once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_fails_midway_is_not_retried() {
    let sim = simulator::spawn(sim()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let resp = client()
        .post(format!("{}/chat/completions", api(&gw)))
        .header("x-sim-fault", "midstream_error")
        .json(&chat("kimi-k2-5", true, 50))
        .send()
        .await
        .unwrap();
    assert_eq!(attempts(&resp), 1);
    assert!(resp.text().await.unwrap().contains("model_overloaded"));
    assert_eq!(sim.observed().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_zero_holds_the_model_until_the_reset() {
    let reset_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let up = raw::spawn(Arc::new(move |n, _req: &[u8]| {
        let body = br#"{"model":"kimi-k2-5","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let limits = if n == 0 {
            format!("x-ratelimit-remaining-requests: 0\r\nx-ratelimit-limit-requests: 50\r\nx-ratelimit-reset-requests: {reset_secs}")
        } else {
            "x-ratelimit-remaining-requests: 49".to_owned()
        };
        vec![
            Step::Write(head(200, "application/json", &[&limits])),
            Step::Write(chunk(body)),
            Step::Write(last_chunk()),
        ]
    }))
    .await;
    let gw = gateway(config(&up.base_url())).await;
    let c = client();
    for _ in 0..2 {
        let resp = c
            .post(format!("{}/chat/completions", api(&gw)))
            .json(&chat("kimi-k2-5", false, 8))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(attempts(&resp), 1);
        resp.bytes().await.unwrap();
    }
    let arrivals = up.arrivals.lock().await.clone();
    assert_eq!(arrivals.len(), 2);
    let reset = UNIX_EPOCH + Duration::from_secs(reset_secs);
    assert!(
        arrivals[1] >= reset,
        "the second request reached Venice only after the reset"
    );
    let state = requests_recorded(&gw, 2).await;
    assert!(state.recent[1].queue_wait_ms > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_gets_the_gateways_own_429() {
    let sim = simulator::spawn(sim()).await.unwrap();
    let mut cfg = config(&sim.base_url());
    cfg.admission
        .models
        .insert("kimi-k2-5".into(), (1, 1_000_000));
    cfg.admission.window = Duration::from_secs(3);
    cfg.admission.max_queue = 1;
    cfg.admission.max_wait = Duration::from_secs(20);
    let gw = gateway(cfg).await;
    let c = client();
    let url = format!("{}/chat/completions", api(&gw));
    let first = c
        .post(&url)
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    // The second waits for the next window; wait until it is queued.
    let waiting = {
        let c = c.clone();
        let url = url.clone();
        tokio::spawn(async move { c.post(&url).json(&chat("kimi-k2-5", false, 8)).send().await })
    };
    let state_url = format!("http://{}/api/sidepanel/state", gw.addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = c
            .get(&state_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["admission"]["models"]["kimi-k2-5"]["waiting"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never queued: {s}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let third = c
        .post(&url)
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()["x-sidepanel-limited"], "gateway");
    assert!(third.headers().contains_key("retry-after"));
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "gateway_rate_limited");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("kimi-k2-5"));
    let second = waiting.await.unwrap().unwrap();
    assert_eq!(
        second.status(),
        200,
        "the queued request went once the window reset"
    );
    assert_eq!(
        sim.observed().requests,
        2,
        "the refused request never reached Venice"
    );
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains("sidepanel_rejections_total{limit=\"queue\"} 1"),
        "{metrics}"
    );
    let state = requests_recorded(&gw, 3).await;
    assert_eq!(state.admission.rejections.get("queue"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100_clients_on_a_small_limit_all_complete_or_get_the_gateways_429() {
    let sim = simulator::spawn(sim()).await.unwrap();
    let mut cfg = config(&sim.base_url());
    // 60 per 600 s window: a burst of 60, then one every 10 s — far beyond `max_wait`, so
    // exactly the burst goes through however slowly the 100 requests arrive on a busy machine.
    cfg.admission
        .models
        .insert("kimi-k2-5".into(), (60, 1_000_000));
    cfg.admission.window = Duration::from_secs(600);
    cfg.admission.max_queue = 200;
    cfg.admission.max_wait = Duration::from_secs(2);
    let max_wait = cfg.admission.max_wait;
    let gw = gateway(cfg).await;
    let c = client();
    let url = format!("{}/chat/completions", api(&gw));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let resp = c
                    .post(&url)
                    .json(&chat("kimi-k2-5", false, 4))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let gateway_limited = resp.headers().get("x-sidepanel-limited").is_some();
                resp.bytes().await.unwrap();
                (status, gateway_limited)
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (429, true) => limited += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(ok + limited, 100, "no request lost");
    assert_eq!(ok, 60, "the burst went through");
    assert_eq!(limited, 40, "the rest were refused by the gateway");
    let state = requests_recorded(&gw, 100).await;
    let longest = state
        .recent
        .iter()
        .map(|r| r.queue_wait_ms)
        .fold(0.0, f64::max);
    assert!(
        longest <= max_wait.as_secs_f64() * 1000.0,
        "waited {longest} ms"
    );
    assert_eq!(
        sim.observed().requests as usize,
        ok,
        "refused requests never reached Venice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_read_from_the_rate_limits_endpoint_at_start() {
    let sim = simulator::spawn(SimConfig {
        rpm: 7,
        tpm: 7_000,
        ..sim()
    })
    .await
    .unwrap();
    let mut cfg = config(&sim.base_url());
    cfg.admission.limits_refresh = Some(Duration::from_secs(3600));
    let gw = gateway(cfg).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = state_json(&gw).await;
        let m = &s["admission"]["models"]["kimi-k2-5"];
        if m["rpm"] == 7 && m["tpm"] == 7_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "limits never learned: {s}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = sim.observed();
    assert_eq!(
        seen.last_path.as_deref(),
        Some("/api/v1/api_keys/rate_limits")
    );
    assert_eq!(
        seen.last_authorization.as_deref(),
        Some(format!("Bearer {GATEWAY_KEY}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_guard_alerts_and_refuses_below_the_floor() {
    let sim = simulator::spawn(SimConfig {
        balance_usd: 0.5,
        balance_diem: 0.0,
        ..sim()
    })
    .await
    .unwrap();
    let mut cfg = config(&sim.base_url());
    cfg.admission.budget.alert_usd_below = Some(2.0);
    cfg.admission.budget.floor_usd = Some(1.0);
    let gw = gateway(cfg).await;
    let c = client();
    let url = format!("{}/chat/completions", api(&gw));
    // The balance is unknown until Venice's headers say it: the first request goes.
    let first = c
        .post(&url)
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    eventually(&gw, "the USD alert firing", |s| {
        s.alerts.usd_firing.then_some(())
    })
    .await;
    let refused = c
        .post(&url)
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 402);
    assert_eq!(refused.headers()["x-sidepanel-error"], "budget_floor");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("floor_usd"));
    assert_eq!(
        sim.observed().requests,
        1,
        "the refused request never reached Venice"
    );
    let metrics = metrics_text(&gw).await;
    assert!(
        metrics.contains("sidepanel_balance_alert_firing{currency=\"usd\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_while_queued_leaves_the_queue() {
    let sim = simulator::spawn(sim()).await.unwrap();
    let mut cfg = config(&sim.base_url());
    cfg.admission
        .models
        .insert("kimi-k2-5".into(), (1, 1_000_000));
    // The next window is a minute away: only the hang-up can empty the queue in time.
    cfg.admission.window = Duration::from_secs(60);
    cfg.admission.max_wait = Duration::from_secs(90);
    let gw = gateway(cfg).await;
    let c = client();
    let url = format!("{}/chat/completions", api(&gw));
    let first = c
        .post(&url)
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    first.bytes().await.unwrap();
    let waiting = |n: u64| {
        let c = c.clone();
        let state_url = format!("http://{}/api/sidepanel/state", gw.addr);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let s: Value = c
                    .get(&state_url)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if s["admission"]["models"]["kimi-k2-5"]["waiting"] == n {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "waiting never {n}: {s}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // A second request queues for the next window; its client then goes away.
    let queued = {
        let c = c.clone();
        let url = url.clone();
        tokio::spawn(async move { c.post(&url).json(&chat("kimi-k2-5", false, 8)).send().await })
    };
    waiting(1).await;
    queued.abort();
    let _ = queued.await;
    waiting(0).await;
    assert_eq!(
        sim.observed().requests,
        1,
        "the abandoned request never went upstream"
    );
}
