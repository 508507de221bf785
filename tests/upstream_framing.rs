//! How a chat body is framed on its way upstream: a body that arrives whole goes with its exact
//! `Content-Length` (amended or not) and no chunked framing; one that arrives in many reads is
//! re-framed as chunked. Either way the upstream reads exactly the bytes the gateway meant to
//! send, and the client gets its answer.

mod common;

use std::sync::Arc;

use common::raw::{self, chunk, head, last_chunk, Step};
use common::*;
use serde_json::Value;

/// An upstream that answers every chat with a small JSON completion.
async fn upstream() -> raw::RawUpstream {
    raw::spawn(Arc::new(|_, _req: &[u8]| {
        let body = br#"{"model":"kimi-k2-5","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        vec![
            Step::Write(head(200, "application/json", &[])),
            Step::Write(chunk(body)),
            Step::Write(last_chunk()),
        ]
    }))
    .await
}

/// The head (lower-cased) and the body of the `n`th request the upstream read.
async fn received(up: &raw::RawUpstream, n: usize) -> (String, Vec<u8>) {
    let requests = up.requests.lock().await;
    let raw = requests.get(n).expect("the request reached the upstream");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    (head, raw[end..].to_vec())
}

fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

async fn post(gw: &sidepanel::app::Running, body: Vec<u8>) {
    let resp = client()
        .post(format!("{}/chat/completions", api(gw)))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("the body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_body_goes_upstream_with_its_exact_length_amended_or_not() {
    let up = upstream().await;
    let gw = gateway(config(&up.base_url())).await;

    // Not streamed: forwarded byte for byte, with the client's length.
    let plain = serde_json::to_vec(&chat("kimi-k2-5", false, 10)).expect("json");
    post(&gw, plain.clone()).await;
    let (h, body) = received(&up, 0).await;
    assert_eq!(
        header(&h, "content-length"),
        Some(&*plain.len().to_string()),
        "{h}"
    );
    assert_eq!(header(&h, "transfer-encoding"), None, "{h}");
    assert_eq!(body, plain);

    // Streamed without usage: amended (include_usage), sent with the amended length.
    let streamed = serde_json::to_vec(&chat("kimi-k2-5", true, 10)).expect("json");
    post(&gw, streamed.clone()).await;
    let (h, body) = received(&up, 1).await;
    assert_eq!(header(&h, "transfer-encoding"), None, "{h}");
    assert_eq!(
        header(&h, "content-length"),
        Some(&*body.len().to_string()),
        "{h}"
    );
    assert!(body.len() > streamed.len());
    let sent: Value = serde_json::from_slice(&body).expect("the amended body is JSON");
    assert_eq!(sent["stream_options"]["include_usage"], Value::Bool(true));
    assert_eq!(sent["messages"], chat("kimi-k2-5", true, 10)["messages"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_arriving_in_many_reads_is_reframed_as_chunked() {
    let up = upstream().await;
    let gw = gateway(config(&up.base_url())).await;
    // 4 MiB of conversation cannot arrive in the gateway's first read.
    let mut big = chat("kimi-k2-5", false, 10);
    big["messages"][0]["content"] = Value::String("x".repeat(4 << 20));
    let body = serde_json::to_vec(&big).expect("json");
    post(&gw, body.clone()).await;
    let (h, sent) = received(&up, 0).await;
    assert_eq!(header(&h, "transfer-encoding"), Some("chunked"), "{h}");
    assert_eq!(header(&h, "content-length"), None, "{h}");
    assert_eq!(
        dechunk(&sent),
        body,
        "the upstream reads the client's bytes exactly"
    );
}

/// The payload of a chunked body.
fn dechunk(mut framed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = framed
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&framed[..line]).expect("ascii"), 16)
            .expect("a hex chunk size");
        framed = &framed[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&framed[..size]);
        framed = &framed[size + 2..];
    }
}
