//! The load client's HTTP/1.1 plumbing: one hyper connection per worker (no pool, so the
//! concurrency is exactly the number of connections), `TCP_NODELAY` on every socket (without
//! it a request written after the previous response can wait for a delayed ACK: the 40 ms
//! artefact), and a reader for streamed (SSE) bodies that times the first byte, the first
//! content token and the longest gap between chunks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::targets::SIM_MODEL;

/// A request body sent in one frame.
pub struct Full(Option<Bytes>);

impl Body for Full {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Where and how to send a chat request to one target.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Path of the chat completions route on this target.
    pub path: String,
    /// Model name as this target wants it.
    pub model: String,
    /// `Authorization` value, when the target wants one.
    pub auth: Option<String>,
}

impl Endpoint {
    /// The simulator's chat route (`/api/v1/chat/completions`, its model) at `addr`, as the
    /// simulator, the gateway, nginx and the pingora floor all serve it.
    pub fn chat(addr: SocketAddr, auth: &str) -> Self {
        Self {
            addr,
            path: "/api/v1/chat/completions".into(),
            model: SIM_MODEL.into(),
            auth: Some(auth.into()),
        }
    }

    /// A realistic OpenCode-like chat body (system prompt, a user turn, ~1.3 KB).
    pub fn body(&self, stream: bool, max_tokens: u32) -> Bytes {
        let system = "You are a coding agent working in a Rust repository. Follow the user's \
            instructions, use the tools provided, keep answers short and cite files by path. "
            .repeat(6);
        let mut v = serde_json::json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": "Explain what src/gateway/sse.rs does in two sentences."}
            ],
            "max_completion_tokens": max_tokens,
            "temperature": 0.2,
            "stream": stream,
        });
        if stream {
            v["stream_options"] = serde_json::json!({"include_usage": true});
        }
        Bytes::from(v.to_string())
    }
}

/// Why one exchange failed.
#[derive(Debug)]
pub enum Failure {
    Connect(String),
    Http(String),
    Status(u16),
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Http(e) => write!(f, "http: {e}"),
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Timeout => write!(f, "timeout"),
        }
    }
}

/// One client connection.
pub struct Conn {
    sender: SendRequest<Full>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, Failure> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Whether the server closed this connection.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    async fn send(
        &mut self,
        ep: &Endpoint,
        body: &Bytes,
        session: &str,
    ) -> Result<hyper::Response<Incoming>, Failure> {
        self.sender
            .ready()
            .await
            .map_err(|e| Failure::Http(e.to_string()))?;
        let mut req = http::Request::post(ep.path.as_str())
            .header("host", ep.addr.to_string())
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .header("x-session-id", session);
        if let Some(auth) = &ep.auth {
            req = req.header("authorization", auth.as_str());
        }
        let req = req
            .body(Full(Some(body.clone())))
            .map_err(|e| Failure::Http(e.to_string()))?;
        self.sender
            .send_request(req)
            .await
            .map_err(|e| Failure::Http(e.to_string()))
    }

    /// A whole non-streamed exchange; returns the body length.
    pub async fn exchange(
        &mut self,
        ep: &Endpoint,
        body: &Bytes,
        session: &str,
    ) -> Result<usize, Failure> {
        let resp = self.send(ep, body, session).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut n = 0;
        while let Some(frame) = next_frame(&mut body).await {
            let frame = frame.map_err(|e| Failure::Http(e.to_string()))?;
            if let Some(d) = frame.data_ref() {
                n += d.len();
            }
        }
        if status != 200 {
            return Err(Failure::Status(status));
        }
        Ok(n)
    }

    /// A streamed exchange, read to its end (or `deadline`), timed from `start`.
    pub async fn stream(
        &mut self,
        ep: &Endpoint,
        body: &Bytes,
        session: &str,
        start: Instant,
        deadline: Duration,
    ) -> Result<StreamStats, Failure> {
        match tokio::time::timeout(deadline, self.stream_inner(ep, body, session, start)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn stream_inner(
        &mut self,
        ep: &Endpoint,
        body: &Bytes,
        session: &str,
        start: Instant,
    ) -> Result<StreamStats, Failure> {
        let resp = self.send(ep, body, session).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut s = StreamStats::default();
        let mut last: Option<Instant> = None;
        let mut tail: Vec<u8> = Vec::with_capacity(64);
        while let Some(frame) = next_frame(&mut body).await {
            let frame = frame.map_err(|e| Failure::Http(e.to_string()))?;
            let Some(d) = frame.data_ref() else { continue };
            if d.is_empty() {
                continue;
            }
            let now = Instant::now();
            match last {
                None => s.first_byte = now - start,
                Some(prev) => s.max_gap = s.max_gap.max(now - prev),
            }
            last = Some(now);
            if s.first_token.is_none() && has_content(d) {
                s.first_token = Some(now - start);
            }
            s.frames += 1;
            s.bytes += d.len();
            tail.extend_from_slice(d);
            if tail.len() > 32 {
                tail.drain(..tail.len() - 32);
            }
        }
        if status != 200 {
            return Err(Failure::Status(status));
        }
        s.done = tail.windows(6).any(|w| w == b"[DONE]");
        s.total = start.elapsed();
        Ok(s)
    }
}

/// What one streamed response looked like.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    /// Request sent -> first body bytes.
    pub first_byte: Duration,
    /// Request sent -> first chunk with non-empty `content` (time to first token).
    pub first_token: Option<Duration>,
    /// Longest pause between two body chunks.
    pub max_gap: Duration,
    pub frames: u32,
    pub bytes: usize,
    /// `data: [DONE]` arrived.
    pub done: bool,
    pub total: Duration,
}

async fn next_frame(body: &mut Incoming) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
}

/// Whether an SSE chunk carries a non-empty `"content"` string (compact or spaced JSON).
pub fn has_content(chunk: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":";
    let mut rest = chunk;
    while let Some(i) = rest.windows(KEY.len()).position(|w| w == KEY) {
        let after = &rest[i + KEY.len()..];
        let value = after.trim_ascii_start();
        if value.len() >= 2 && value[0] == b'"' && value[1] != b'"' {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_detection() {
        assert!(super::has_content(br#"{"delta":{"content":"The "}}"#));
        assert!(super::has_content(br#"{"delta": {"content": "x"}}"#));
        assert!(!super::has_content(
            br#"{"delta":{"role":"assistant","content":""}}"#
        ));
        assert!(!super::has_content(br#"{"delta":{"content":null}}"#));
    }
}
