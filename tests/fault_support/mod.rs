//! Helpers of the reliability and security tests (`security_invariants`, `faults_upstream`,
//! `faults_client`): raw HTTP/1.1 exchanges written byte for byte (so Host, Origin, framing and
//! smuggling shapes are exactly what the test says), file-descriptor counts of this process (the
//! gateway runs in-process), and polling with a deadline instead of sleeps. [`tls`] is a scripted
//! TLS/HTTP/2 upstream; [`serve`] runs the real binary as a child process.

#![allow(dead_code)]

pub mod serve;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait of any one poll or exchange.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A response read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// 0 when the connection closed before a status line.
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `request` (bytes as given) on a new connection and reads until the peer closes or
/// [`DEADLINE`]; the request should say `Connection: close`.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf)).await;
    parse(&buf)
}

/// Sends `request` and reads only the response head (for upgrades and streams that stay open).
pub async fn head_only(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write request");
    read_head(&mut s).await
}

/// Reads from `s` until a whole response head arrived (or the peer closed).
pub async fn read_head(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, read).await;
    parse(&buf)
}

/// Splits raw bytes into status, head and (unframed) body.
pub fn parse(buf: &[u8]) -> RawResponse {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        head,
        body: buf[end..].to_vec(),
    }
}

/// Number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The fd count once it has stopped changing (the same over 10 polls 20 ms apart): the
/// baseline after start-up work (store files, listeners) has settled.
pub async fn settled_fds() -> usize {
    let (mut last, mut same) = (open_fds(), 0);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while same < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = open_fds();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Waits until this process has at most `baseline + slack` fds open; panics with the count
/// after [`DEADLINE`]. Pooled upstream and keep-alive connections close on their own timers,
/// so the slack covers the harness's own sockets only.
pub async fn fds_back_to(baseline: usize, slack: usize) {
    let ok = poll(|| async { open_fds() <= baseline + slack }).await;
    if !ok {
        let pid = std::process::id();
        let sockets = std::process::Command::new("ss")
            .args(["-tanp"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mine: Vec<&str> = sockets
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .collect();
        panic!(
            "file descriptors did not return to baseline: {} open, baseline {baseline} (+{slack}); sockets:\n{}",
            open_fds(),
            mine.join("\n")
        );
    }
}

/// Polls `cond` every 10 ms until it holds (true) or [`DEADLINE`] passes (false).
pub async fn poll<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A GET with exactly these header lines, closing the connection after.
pub fn get(path: &str, headers: &[String]) -> Vec<u8> {
    request("GET", path, headers, b"")
}

/// A request with exactly these header lines plus `Content-Length` when `body` is not empty.
pub fn request(method: &str, path: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    if !body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("Connection: close\r\n\r\n");
    let mut out = s.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A WebSocket upgrade request's header lines (the caller adds Host, Origin, token).
pub fn upgrade_headers() -> Vec<String> {
    vec![
        "Upgrade: websocket".into(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        "Sec-WebSocket-Version: 13".into(),
    ]
}

/// A GET `/ws` upgrade; `Connection: Upgrade` replaces the usual close.
pub fn upgrade(path: &str, headers: &[String]) -> Vec<u8> {
    let mut s = format!("GET {path} HTTP/1.1\r\nConnection: Upgrade\r\n");
    for h in upgrade_headers().iter().chain(headers) {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Reads one request (head, then a `content-length` or chunked body) and returns its head.
pub async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[end..];
        let done = if chunked {
            body.ends_with(b"0\r\n\r\n")
        } else {
            body.len() >= length.unwrap_or(0)
        };
        if done {
            return Some(head);
        }
        let n = s.read(&mut tmp).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// An upstream answering every request with `total` bytes of `content_type`, generated as it
/// goes (~1 MiB writes), so neither side ever holds the whole body.
pub async fn big_upstream(total: u64, content_type: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if read_request(&mut s).await.is_none() {
                    return;
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {total}\r\n\r\n"
                );
                s.write_all(head.as_bytes()).await.ok();
                let block = pattern(26 * 40 * 1024);
                let mut left = total;
                while left > 0 {
                    let n = left.min(block.len() as u64) as usize;
                    if s.write_all(&block[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// `n` bytes of the repeating pattern `a..z` (byte `i` is `b'a' + i % 26`).
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

/// An upstream that answers each request with an SSE head and one event, then keeps the stream
/// open until the gateway closes its side; each such close is sent on the channel.
pub async fn watching_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if read_request(&mut s).await.is_none() {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"first\"}}]}\n\n";
                let mut out = head.as_bytes().to_vec();
                out.extend_from_slice(format!("{:x}\r\n", event.len()).as_bytes());
                out.extend_from_slice(event);
                out.extend_from_slice(b"\r\n");
                if s.write_all(&out).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = tx.send(());
            });
        }
    });
    (addr, rx)
}

/// This process's resident set and peak, in KiB (`VmRSS`, `VmHWM`), for the printed figures.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A gateway config in front of `url` with short upstream timeouts (`timeout` to connect and
/// between reads) and no admission pacing or retries: a fault shows at once, as itself.
pub fn short_config(url: &str, timeout: Duration) -> sidepanel::config::Config {
    let mut cfg = crate::common::config(url);
    cfg.upstream.read_timeout = timeout;
    cfg.upstream.connect_timeout = timeout;
    cfg.admission.enabled = false;
    cfg
}

/// A streamed chat (8 tokens) through the gateway; the response as it starts.
pub async fn post_stream(gw: &sidepanel::app::Running) -> reqwest::Response {
    crate::common::client()
        .post(format!("{}/chat/completions", crate::common::api(gw)))
        .json(&crate::common::chat("kimi-k2-5", true, 8))
        .send()
        .await
        .expect("the gateway answers")
}
