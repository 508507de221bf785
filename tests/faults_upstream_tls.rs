//! Faults of an HTTPS upstream that the raw-TCP tests cannot show: HTTP/2 GOAWAY before, while
//! and after answering and RST_STREAM mid-stream (real h2 frames from the `h2` crate over
//! rustls, ALPN h2), TLS handshakes that fail (a certificate from an untrusted CA or for another
//! name, plain-TCP garbage, a close or silence during the handshake), and a host name that does
//! not resolve. Each gets the right status or a cut stream and the right recorded outcome; a
//! healthy request succeeds afterwards, and this process's fds (gateway and upstream run
//! in-process) return to the baseline of a warm gateway whose pooled connections have closed.

mod common;
mod fault_support;

use std::time::Duration;

use common::*;
use fault_support::tls::{Mode, TlsUpstream};
use fault_support::{fds_back_to, poll, post_stream, settled_fds, short_config};
use futures_util::StreamExt;
use sidepanel::app::Running;
use sidepanel::gateway::record::{Outcome, RequestRecord};

/// A gateway in front of `url` trusting `ca`, with 1 s timeouts and pooled connections closed
/// after 200 ms idle.
async fn short_gateway(url: &str, ca: Option<&std::path::Path>) -> Running {
    let mut cfg = short_config(url, Duration::from_millis(1000));
    cfg.upstream.ca_file = ca.map(std::path::Path::to_path_buf);
    cfg.upstream.idle_timeout = Duration::from_millis(200);
    gateway(cfg).await
}

/// The first `n` chat records, once there are `n` (the health probe's `/models` calls are
/// skipped).
async fn chats(gw: &Running, n: usize) -> Vec<RequestRecord> {
    eventually(gw, &format!("{n} chat records"), |s| {
        let chats: Vec<RequestRecord> = s
            .recent
            .iter()
            .filter(|r| r.path == "/chat/completions")
            .cloned()
            .collect();
        (chats.len() >= n).then_some(chats)
    })
    .await
}

/// The response is the gateway's own error: `status`, `x-sidepanel-error: slug`, an
/// OpenAI-shaped body whose message starts with `sidepanel:`.
async fn own_error(resp: reqwest::Response, status: u16, slug: &str, case: &str) -> String {
    assert_eq!(resp.status(), status, "{case}");
    assert_eq!(resp.headers()["x-sidepanel-error"], slug, "{case}");
    let body: serde_json::Value = resp.json().await.expect("a JSON error body");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("sidepanel:"), "{case}: {body}");
    message.to_owned()
}

/// A streamed answer read to its end: the text, and whether the stream was cut.
async fn read_stream(resp: reqwest::Response) -> (String, bool) {
    let mut body = resp.bytes_stream();
    let (mut got, mut cut) = (Vec::new(), false);
    while let Some(part) = body.next().await {
        match part {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => cut = true,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), cut)
}

/// Waits until the upstream has no connection open (the pool's idle timeout closed it).
async fn pool_drained(up: &TlsUpstream) {
    assert!(
        poll(|| async { up.live() == 0 }).await,
        "{} upstream connections still open",
        up.live()
    );
}

/// A healthy request first; the baseline is the settled fd count once its pooled connection
/// closed.
async fn warm_up(up: &TlsUpstream, gw: &Running) -> usize {
    let (text, cut) = read_stream(post_stream(gw).await).await;
    assert!(!cut && text.contains("[DONE]"), "{text}");
    pool_drained(up).await;
    settled_fds().await
}

/// The gateway proxies a healthy request over a new connection; fds return to `baseline`.
async fn carries_on(up: &TlsUpstream, gw: &Running, baseline: usize) {
    up.set_mode(Mode::Healthy);
    let resp = post_stream(gw).await;
    assert_eq!(resp.status(), 200);
    let (text, cut) = read_stream(resp).await;
    assert!(!cut && text.contains("[DONE]"), "{text}");
    pool_drained(up).await;
    fds_back_to(baseline, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_goaway_before_the_answer_is_a_502() {
    let up = TlsUpstream::start().await;
    let gw = short_gateway(&up.base_url(), Some(up.ca_file.path())).await;
    let baseline = warm_up(&up, &gw).await;
    up.set_mode(Mode::GoawayBeforeAnswer);
    let resp = post_stream(&gw).await;
    own_error(
        resp,
        502,
        "upstream_unreachable",
        "GOAWAY before the answer",
    )
    .await;
    assert_eq!(up.requests(), 2, "the request reached the upstream once");
    let records = chats(&gw, 2).await;
    assert_eq!(records[1].outcome, Outcome::UpstreamFailed);
    carries_on(&up, &gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_refused_stream_is_retried_even_for_a_chat() {
    let up = TlsUpstream::start().await;
    let gw = short_gateway(&up.base_url(), Some(up.ca_file.path())).await;
    let baseline = warm_up(&up, &gw).await;
    pool_drained(&up).await; // The mode applies to new connections.
    up.set_mode(Mode::RefuseStream);
    let before = up.requests();
    let resp = post_stream(&gw).await;
    assert_eq!(
        resp.status(),
        200,
        "REFUSED_STREAM means unprocessed: retried"
    );
    assert_eq!(
        resp.headers()
            .get("x-sidepanel-attempts")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let (text, cut) = read_stream(resp).await;
    assert!(!cut && text.contains("[DONE]"), "{text}");
    assert_eq!(up.requests(), before + 2, "refused once, then answered");
    let records = chats(&gw, 2).await;
    assert_eq!(records[1].outcome, Outcome::Ok);
    up.set_mode(Mode::Healthy);
    carries_on(&up, &gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_goaway_while_or_after_answering_loses_nothing() {
    let up = TlsUpstream::start().await;
    let gw = short_gateway(&up.base_url(), Some(up.ca_file.path())).await;
    let baseline = warm_up(&up, &gw).await;
    for mode in [Mode::GoawayWhileAnswering, Mode::GoawayAfterAnswer] {
        pool_drained(&up).await; // The mode applies to new connections.
        up.set_mode(mode);
        let handshakes = up.handshakes();
        let resp = post_stream(&gw).await;
        assert_eq!(resp.status(), 200, "{mode:?}");
        let (text, cut) = read_stream(resp).await;
        assert!(
            !cut && text.contains("first") && text.contains("[DONE]"),
            "{mode:?}: a graceful GOAWAY lets the open stream finish: {text}"
        );
        // The upstream closes the connection after its GOAWAY; the next request needs a new one.
        assert!(poll(|| async { up.live() == 0 }).await, "{mode:?}");
        up.set_mode(Mode::Healthy);
        let (text, cut) = read_stream(post_stream(&gw).await).await;
        assert!(!cut && text.contains("[DONE]"), "{mode:?}: {text}");
        assert_eq!(
            up.handshakes(),
            handshakes + 2,
            "{mode:?}: a new connection"
        );
    }
    let records = chats(&gw, 5).await;
    assert!(
        records.iter().all(|r| r.outcome == Outcome::Ok),
        "{:?}",
        records.iter().map(|r| r.outcome).collect::<Vec<_>>()
    );
    carries_on(&up, &gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rst_stream_mid_stream_cuts_the_stream() {
    let up = TlsUpstream::start().await;
    let gw = short_gateway(&up.base_url(), Some(up.ca_file.path())).await;
    let baseline = warm_up(&up, &gw).await;
    up.set_mode(Mode::ResetMidStream);
    let resp = post_stream(&gw).await;
    assert_eq!(resp.status(), 200, "the head went out before the reset");
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let part = body.next().await.expect("the first event arrives");
        got.extend_from_slice(&part.expect("no error before the reset"));
    }
    up.release(); // Now the upstream resets the stream.
    let mut cut = false;
    while let Some(part) = body.next().await {
        match part {
            Ok(b) => got.extend_from_slice(&b),
            Err(_) => cut = true,
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(cut || !text.contains("[DONE]"), "a cut stream: {text}");
    let records = chats(&gw, 2).await;
    assert_eq!(records[1].outcome, Outcome::Truncated);
    carries_on(&up, &gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tls_handshakes_are_502_or_504_and_survived() {
    let up = TlsUpstream::start().await;
    let gw = short_gateway(&up.base_url(), Some(up.ca_file.path())).await;
    let baseline = warm_up(&up, &gw).await;
    let cases = [
        (Mode::UntrustedCert, 502, "upstream_unreachable"),
        (Mode::WrongName, 502, "upstream_unreachable"),
        (Mode::PlainGarbage, 502, "upstream_unreachable"),
        (Mode::CloseInHandshake, 502, "upstream_unreachable"),
        (Mode::SilentHandshake, 504, "upstream_connect_timeout"),
    ];
    for (i, (mode, status, slug)) in cases.into_iter().enumerate() {
        pool_drained(&up).await; // The fault needs a new connection.
        up.set_mode(mode);
        let (handshakes, requests) = (up.handshakes(), up.requests());
        let message = own_error(post_stream(&gw).await, status, slug, &format!("{mode:?}")).await;
        assert!(!message.contains(GATEWAY_KEY), "{mode:?}: {message}");
        if status == 502 {
            assert!(
                message.contains("TLSHandshakeFailure"),
                "{mode:?}: {message}"
            );
        }
        assert_eq!(
            up.handshakes(),
            handshakes,
            "{mode:?}: no handshake completed"
        );
        assert_eq!(
            up.requests(),
            requests,
            "{mode:?}: nothing reached the upstream"
        );
        let records = chats(&gw, 2 + 2 * i).await;
        assert_eq!(
            records[1 + 2 * i].outcome,
            Outcome::ConnectFailed,
            "{mode:?}"
        );
        // The next request gets a healthy upstream and succeeds.
        up.set_mode(Mode::Healthy);
        let (text, cut) = read_stream(post_stream(&gw).await).await;
        assert!(!cut && text.contains("[DONE]"), "after {mode:?}: {text}");
    }
    carries_on(&up, &gw, baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_host_that_does_not_resolve_is_a_502() {
    let gw = short_gateway("https://nonexistent.invalid/api/v1", None).await;
    let baseline = settled_fds().await;
    for attempt in 0..2 {
        let case = format!("DNS failure, attempt {attempt}");
        let message = own_error(post_stream(&gw).await, 502, "upstream_unreachable", &case).await;
        assert!(message.contains("ConnectNoRoute"), "{case}: {message}");
        let records = chats(&gw, attempt + 1).await;
        assert_eq!(records[attempt].outcome, Outcome::ConnectFailed, "{case}");
    }
    // The gateway itself carries on: its own routes answer.
    for path in ["/healthz", "/api/sidepanel/state"] {
        let r = client()
            .get(format!("http://{}{path}", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    fds_back_to(baseline, 2).await;
}
