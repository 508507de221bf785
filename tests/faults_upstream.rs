//! Faults from the upstream that `hostile_upstream.rs` does not cover: a response head that
//! never finishes, a stream that stalls after its first event, a reset before any byte,
//! invalid chunked framing, a 100 MB body, and a storm of 5xx. Each gets the right status or a
//! cut stream within the configured timeouts; afterwards a normal request succeeds and this
//! process's file descriptors are back to where they were (the gateway runs in-process).

mod common;
mod fault_support;

use std::sync::Arc;
use std::time::Duration;

use common::raw::{self, chunk, head, last_chunk, Step};
use common::*;
use fault_support::{big_upstream, fds_back_to, post_stream, rss_kib, settled_fds, short_config};
use futures_util::StreamExt;
use sidepanel::app::Running;
use sidepanel::gateway::record::Outcome;

const DONE: &[u8] = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n";

/// A healthy streamed answer: the warm-up (request 0) and the request after the fault.
fn healthy() -> Vec<Step> {
    vec![
        Step::Write(head(200, "text/event-stream", &[])),
        Step::Write(chunk(DONE)),
        Step::Write(last_chunk()),
    ]
}

/// A gateway in front of `up` with 500 ms upstream timeouts.
async fn short_gateway(up: &str) -> Running {
    gateway(short_config(up, Duration::from_millis(500))).await
}

/// A first healthy request, then the settled fd count: the baseline.
async fn warm_up(gw: &Running) -> usize {
    let resp = post_stream(gw).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    requests_recorded(gw, 1).await;
    settled_fds().await
}

/// The gateway still proxies a healthy request, and fds return to `baseline`.
async fn carries_on(gw: &Running, baseline: usize) {
    let resp = post_stream(gw).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("[DONE]"));
    fds_back_to(baseline, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_that_never_finishes_is_a_504() {
    let up = raw::spawn(Arc::new(|n, _req: &[u8]| match n {
        1 => vec![
            Step::Write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-str".to_vec()),
            Step::Hang,
        ],
        _ => healthy(),
    }))
    .await;
    let gw = short_gateway(&up.base_url()).await;
    let baseline = warm_up(&gw).await;
    let resp = post_stream(&gw).await;
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-sidepanel-error"], "upstream_timeout");
    let state = requests_recorded(&gw, 2).await;
    assert_eq!(state.recent[1].outcome, Outcome::UpstreamFailed);
    carries_on(&gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_is_cut_after_the_read_timeout() {
    let up = raw::spawn(Arc::new(|n, _req: &[u8]| match n {
        1 => vec![
            Step::Write(head(200, "text/event-stream", &[])),
            Step::Write(chunk(
                b"data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n",
            )),
            Step::Hang,
        ],
        _ => healthy(),
    }))
    .await;
    let gw = short_gateway(&up.base_url()).await;
    let baseline = warm_up(&gw).await;
    let resp = post_stream(&gw).await;
    assert_eq!(resp.status(), 200, "the head went out before the stall");
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    let mut cut = false;
    while let Some(part) = body.next().await {
        match part {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => cut = true,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("first"),
        "what arrived before the stall is forwarded"
    );
    assert!(
        cut || !text.contains("[DONE]"),
        "the client sees a cut stream"
    );
    let state = requests_recorded(&gw, 2).await;
    assert_eq!(state.recent[1].outcome, Outcome::Truncated);
    carries_on(&gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_before_the_response_is_a_502() {
    let up = raw::spawn(Arc::new(|n, _req: &[u8]| match n {
        1 => vec![Step::Reset],
        _ => healthy(),
    }))
    .await;
    let gw = short_gateway(&up.base_url()).await;
    let baseline = warm_up(&gw).await;
    let resp = post_stream(&gw).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-sidepanel-error"], "upstream_unreachable");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("sidepanel:"));
    carries_on(&gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunked_framing_never_passes_as_a_complete_response() {
    let bad: Vec<Vec<u8>> = vec![
        b"zz\r\nhello\r\n0\r\n\r\n".to_vec(),
        b"ffffffffffffffffffff\r\nhello\r\n".to_vec(),
        b"5\r\nhello world, longer than five\r\n0\r\n\r\n".to_vec(),
        b"-5\r\nhello\r\n0\r\n\r\n".to_vec(),
    ];
    let cases = bad.len();
    let framing = bad.clone();
    let up = raw::spawn(Arc::new(move |n, _req: &[u8]| {
        match framing.get(n.wrapping_sub(1)) {
            Some(body) => vec![
                Step::Write(head(200, "text/event-stream", &[])),
                Step::Write(body.clone()),
            ],
            None => healthy(),
        }
    }))
    .await;
    let gw = short_gateway(&up.base_url()).await;
    let baseline = warm_up(&gw).await;
    for (i, body) in bad.iter().enumerate() {
        let resp = post_stream(&gw).await;
        let status = resp.status().as_u16();
        let text = resp.text().await;
        let framing = String::from_utf8_lossy(body);
        // Either refused before the head (502) or cut: never a clean, complete 200.
        assert!(
            status == 502 || text.is_err() || !text.as_deref().unwrap_or("").contains("[DONE]"),
            "case {i} ({framing:?}): {status}"
        );
    }
    let state = requests_recorded(&gw, cases as u64 + 1).await;
    assert!(
        state
            .recent
            .iter()
            .skip(1)
            .all(|r| r.outcome != Outcome::Ok),
        "{:?}",
        state.recent.iter().map(|r| r.outcome).collect::<Vec<_>>()
    );
    carries_on(&gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_5xx_is_passed_through_and_survived() {
    let storm = 60usize;
    let up = raw::spawn(Arc::new(move |n, _req: &[u8]| {
        if n == 0 || n > storm {
            return healthy();
        }
        let status = [500u16, 502, 503, 504][n % 4];
        vec![
            Step::Write(head(status, "application/json", &[])),
            Step::Write(chunk(br#"{"error":"upstream storm"}"#)),
            Step::Write(last_chunk()),
        ]
    }))
    .await;
    let gw = short_gateway(&up.base_url()).await;
    let baseline = warm_up(&gw).await;
    {
        let c = client();
        let sends = (0..storm).map(|_| {
            c.post(format!("{}/chat/completions", api(&gw)))
                .json(&chat("kimi-k2-5", false, 8))
                .send()
        });
        let answers = futures_util::future::join_all(sends).await;
        for a in answers {
            let resp = a.expect("every request is answered");
            assert!(resp.status().is_server_error(), "{}", resp.status());
            resp.bytes().await.unwrap();
        }
    } // The client and its keep-alive connections are gone.
    let state = requests_recorded(&gw, storm as u64 + 1).await;
    assert_eq!(state.totals.errors, storm as u64);
    assert_eq!(
        state.upstream.status,
        sidepanel::hub::state::UpstreamStatus::Unavailable
    );
    carries_on(&gw, baseline).await;
}

/// 100 MB through the gateway, JSON (copied aside only up to `max_scan_body_bytes`) and opaque:
/// it arrives whole, the gateway answers others meanwhile, and the figures are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabyte_body_streams_through_without_being_held() {
    const TOTAL: u64 = 100 * 1024 * 1024;
    for content_type in ["application/json", "application/octet-stream"] {
        let up = big_upstream(TOTAL, content_type).await;
        let gw = short_gateway(&format!("http://{up}/api/v1")).await;
        let baseline = settled_fds().await;
        let (rss_before, _) = rss_kib();
        let resp = client()
            .get(format!("{}/files/big", api(&gw)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.bytes_stream();
        let (mut received, mut checked_healthz) = (0u64, false);
        while let Some(part) = body.next().await {
            let part = part.expect("the body arrives whole");
            // Every byte is where the pattern says (offset mod 26).
            let bad = part
                .iter()
                .enumerate()
                .position(|(i, &b)| b != b'a' + ((received + i as u64) % 26) as u8);
            assert!(
                bad.is_none(),
                "byte {} is wrong",
                received + bad.unwrap_or(0) as u64
            );
            received += part.len() as u64;
            if !checked_healthz && received > TOTAL / 2 {
                let h = client()
                    .get(format!("http://{}/healthz", gw.addr))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(h.status(), 200, "the gateway answers others mid-transfer");
                checked_healthz = true;
            }
        }
        assert_eq!(received, TOTAL);
        let (rss_after, peak) = rss_kib();
        eprintln!(
            "100 MB {content_type}: test process RSS {rss_before} -> {rss_after} KiB, peak {peak} KiB"
        );
        let state = requests_recorded(&gw, 1).await;
        assert_eq!(state.recent[0].response_bytes, TOTAL);
        fds_back_to(baseline, 2).await;
        gw.stop().unwrap();
    }
}
