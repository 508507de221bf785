//! Faults from clients: a disconnect mid-stream (the upstream request is cancelled), a reader
//! that never reads (others are unaffected), oversized headers and bodies, and request
//! smuggling shapes (conflicting `Content-Length`/`Transfer-Encoding`, duplicate or malformed
//! lengths) — refused or normalised, never desynchronising the connection. Afterwards a normal
//! request succeeds and this process's fds are back to baseline (the gateway runs in-process).

mod common;
mod fault_support;

use std::sync::Arc;

use common::raw::{self, chunk, head, last_chunk, Step};
use common::*;
use fault_support::{
    big_upstream, exchange, fds_back_to, read_head, request, settled_fds, watching_upstream,
};
use sidepanel::app::Running;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A chat request over raw HTTP/1.1 to the gateway, with the given framing header lines.
fn chat_request(gw: &Running, framing: &[&str], body: &[u8]) -> Vec<u8> {
    let mut s = format!(
        "POST /api/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n",
        gw.addr.port()
    );
    for h in framing {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The gateway answers `/healthz` and proxies a normal chat.
async fn still_serving(gw: &Running) {
    let h = client()
        .get(format!("http://{}/healthz", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let resp = client()
        .post(format!("{}/chat/completions", api(gw)))
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.bytes().await.unwrap();
}

fn ok_json() -> Vec<Step> {
    let body = br#"{"model":"kimi-k2-5","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    vec![
        Step::Write(head(200, "application/json", &[])),
        Step::Write(chunk(body)),
        Step::Write(last_chunk()),
    ]
}

async fn plain_gateway(up: &str) -> Running {
    let mut cfg = config(up);
    cfg.admission.enabled = false;
    cfg.limits.max_request_body_bytes = 64 * 1024;
    gateway(cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_mid_stream_cancels_the_upstream_request() {
    let (up, mut closed) = watching_upstream().await;
    let gw = plain_gateway(&format!("http://{up}/api/v1")).await;
    let baseline = settled_fds().await;
    for _ in 0..3 {
        let body = chat("kimi-k2-5", true, 8).to_string();
        let req = chat_request(
            &gw,
            &[&format!("Content-Length: {}", body.len())],
            body.as_bytes(),
        );
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(&req).await.unwrap();
        let r = read_head(&mut s).await;
        assert_eq!(r.status, 200, "{}", r.head);
        drop(s); // The client goes away with the stream still open upstream.
        let cancelled = tokio::time::timeout(fault_support::DEADLINE, closed.recv()).await;
        assert!(
            matches!(cancelled, Ok(Some(()))),
            "the upstream connection was closed"
        );
    }
    let state = requests_recorded(&gw, 3).await;
    assert!(state
        .recent
        .iter()
        .all(|r| r.outcome != sidepanel::gateway::record::Outcome::Ok));
    fds_back_to(baseline, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_up_others() {
    // Every response is 64 MiB: far more than the socket buffers hold.
    let up = big_upstream(64 << 20, "application/octet-stream").await;
    let gw = plain_gateway(&format!("http://{up}/api/v1")).await;
    let baseline = settled_fds().await;
    let mut stuck = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let req = format!(
            "GET /api/v1/files/big HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            gw.addr.port()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        stuck.push(s); // Never read.
    }
    // Meanwhile other clients get their answers, repeatedly.
    for _ in 0..5 {
        let r = client()
            .get(format!("http://{}/api/sidepanel/state", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let big = client()
            .get(format!("{}/files/other", api(&gw)))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(big.len(), 64 << 20);
    }
    drop(stuck);
    fds_back_to(baseline, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_and_bodies_are_refused() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| ok_json())).await;
    let gw = plain_gateway(&up.base_url()).await;
    let baseline = settled_fds().await;
    let port = gw.addr.port();
    // One huge header, and very many headers.
    let huge = format!("X-Big: {}", "h".repeat(200 * 1024));
    let many: Vec<String> = (0..5000).map(|i| format!("X-H{i}: v")).collect();
    let larger_than_pingora = format!("X-Big: {}", "h".repeat(1 << 20));
    for (what, extra) in [
        ("200 KiB", vec![huge]),
        ("1 MiB", vec![larger_than_pingora]),
        ("5000", many),
    ] {
        let mut h = vec![format!("Host: 127.0.0.1:{port}")];
        h.extend(extra);
        for path in ["/api/v1/models", "/api/sidepanel/state", "/events", "/ws"] {
            let r = exchange(gw.addr, &fault_support::get(path, &h)).await;
            assert!(
                r.status == 0 || r.status == 431 || r.status == 400,
                "{what} headers on {path}: refused or closed: {}",
                r.head
            );
        }
    }
    // A chat body over limits.max_request_body_bytes, declared and undeclared (chunked).
    let big = chat("kimi-k2-5", false, 8)
        .to_string()
        .replace("Prove", &"y".repeat(100 * 1024));
    let declared = chat_request(
        &gw,
        &[
            &format!("Content-Length: {}", big.len()),
            "Connection: close",
        ],
        big.as_bytes(),
    );
    let r = exchange(gw.addr, &declared).await;
    assert_eq!(r.status, 413, "{}", r.head);
    let mut chunked_body = Vec::new();
    for part in big.as_bytes().chunks(8 * 1024) {
        chunked_body.extend(chunk(part));
    }
    chunked_body.extend(last_chunk());
    let undeclared = chat_request(
        &gw,
        &["Transfer-Encoding: chunked", "Connection: close"],
        &chunked_body,
    );
    let r = exchange(gw.addr, &undeclared).await;
    assert_eq!(r.status, 413, "{}", r.head);
    // A plugin batch over the ingest's 1 MiB.
    let events = format!(
        "[{}]",
        vec![r#"{"event":"x.y","timestamp":1,"data":{}}"#; 40_000].join(",")
    );
    let h = vec![
        format!("Host: 127.0.0.1:{port}"),
        format!("Authorization: Bearer {}", gw.token),
        "Content-Type: application/json".into(),
    ];
    let r = exchange(gw.addr, &request("POST", "/events", &h, events.as_bytes())).await;
    assert_eq!(r.status, 413, "{}", r.head);
    // pingora sends a request's head upstream before its body; an undeclared oversized chat
    // body may so open an upstream request, but the held body never follows.
    for req in up.requests.lock().await.iter() {
        let body_start = req
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        let text = String::from_utf8_lossy(req);
        assert!(
            !text.contains("X-Big") && !text.contains("X-H4999") && !text.contains("yyyy"),
            "nothing oversized reached the upstream: {} bytes, body {} bytes",
            req.len(),
            req.len() - body_start
        );
    }
    still_serving(&gw).await;
    fds_back_to(baseline, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_never_desynchronise_the_connection() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| ok_json())).await;
    let gw = plain_gateway(&up.base_url()).await;
    let baseline = settled_fds().await;
    let body = chat("kimi-k2-5", false, 8).to_string();
    // What a desynchronised parser would take for a second request.
    let smuggled = format!(
        "GET /api/v1/smuggled HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        gw.addr.port()
    );
    let chunked = {
        let mut v = chunk(body.as_bytes());
        v.extend(last_chunk());
        v
    };
    let cl = |n: usize| format!("Content-Length: {n}");
    let shapes: Vec<(Vec<String>, Vec<u8>)> = vec![
        // CL.TE: the length covers the chunked body plus the smuggled request.
        (
            vec![
                cl(chunked.len() + smuggled.len()),
                "Transfer-Encoding: chunked".into(),
            ],
            [chunked.clone(), smuggled.clone().into_bytes()].concat(),
        ),
        // TE.CL: chunked ends early, the length says more.
        (
            vec!["Transfer-Encoding: chunked".into(), cl(4)],
            [chunked.clone(), smuggled.clone().into_bytes()].concat(),
        ),
        // Duplicate, conflicting lengths.
        (
            vec![cl(body.len()), cl(body.len() + smuggled.len())],
            [body.clone(), smuggled.clone()].concat().into_bytes(),
        ),
        // Obfuscated transfer codings.
        (
            vec![cl(body.len()), "Transfer-Encoding: xchunked".into()],
            [body.clone(), smuggled.clone()].concat().into_bytes(),
        ),
        (
            vec![cl(body.len()), "Transfer-Encoding : chunked".into()],
            [body.clone(), smuggled.clone()].concat().into_bytes(),
        ),
        (
            vec![
                "Transfer-Encoding: chunked, identity".into(),
                cl(body.len()),
            ],
            [chunked.clone(), smuggled.clone().into_bytes()].concat(),
        ),
        // Malformed lengths.
        (
            vec![format!("Content-Length: +{}", body.len())],
            [body.clone(), smuggled.clone()].concat().into_bytes(),
        ),
        (
            vec![format!("Content-Length: {}, {}", body.len(), body.len())],
            [body.clone(), smuggled.clone()].concat().into_bytes(),
        ),
    ];
    for (i, (framing, payload)) in shapes.iter().enumerate() {
        let lines: Vec<&str> = framing.iter().map(String::as_str).collect();
        let mut req = chat_request(&gw, &lines, payload);
        // A well-formed follow-up on the same connection, pipelined.
        req.extend_from_slice(
            format!(
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                gw.addr.port()
            )
            .as_bytes(),
        );
        let r = exchange(gw.addr, &req).await;
        let all = String::from_utf8_lossy(&[r.head.as_bytes(), &r.body].concat()).into_owned();
        let answers = all.matches("HTTP/1.1 ").count();
        assert!(
            r.status == 0 || r.status == 200 || r.status == 400,
            "shape {i}: {}",
            r.head
        );
        assert!(
            answers <= 2,
            "shape {i}: one answer per real request: {all:.1500}"
        );
        assert!(!all.contains("smuggled"), "shape {i}: {all:.1500}");
    }
    let seen = up.requests.lock().await.clone();
    for req in &seen {
        assert!(
            !req.starts_with(b"GET /api/v1/smuggled"),
            "a smuggled request reached the upstream"
        );
    }
    still_serving(&gw).await;
    fds_back_to(baseline, 2).await;
}

/// Regression (found by the `plugin_event` fuzz target): token counts near `u64::MAX` made
/// `OcTokens` arithmetic overflow, which panicked the hub task in debug builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_token_counts_from_the_plugin_do_not_stop_the_hub() {
    let up = raw::spawn(Arc::new(|_, _req: &[u8]| ok_json())).await;
    let gw = plain_gateway(&up.base_url()).await;
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz/corpus/plugin_event/huge_tokens"
    );
    let body = std::fs::read(seed).unwrap();
    // Twice: a resend replaces what the first one counted.
    for _ in 0..2 {
        let resp = client()
            .post(format!("http://{}/events", gw.addr))
            .bearer_auth(&gw.token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    eventually(&gw, "the events applied", |s| {
        (s.plugin.events >= 10).then_some(())
    })
    .await;
    // The hub still applies what comes next.
    still_serving(&gw).await;
    requests_recorded(&gw, 1).await;
}
