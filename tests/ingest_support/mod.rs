//! Test support for the ingest: a minimal pingora server whose `request_filter` calls
//! `sidepanel::ingest::handle` exactly as the gateway's does, so `/events` is tested through
//! pingora before (and independently of) the gateway's own route; a raw HTTP/1.1 client with
//! full control over `Host`, `Origin` and the body; and builders for OpenCode-shaped events.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::{Error, ErrorType, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use sidepanel::app::Running;
use sidepanel::gateway::routes;
use sidepanel::ingest::{self, Ingest, IngestConfig};
use sidepanel::simulator::{self, SimConfig, SimHandle};

/// A pingora server answering only `/events` (404 elsewhere), stopped on drop.
pub struct EventsServer {
    pub addr: SocketAddr,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for EventsServer {
    fn drop(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct EventsOnly(Arc<Ingest>);

#[async_trait]
impl ProxyHttp for EventsOnly {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if session.req_header().uri.path() == ingest::EVENTS_PATH {
            ingest::handle(session, &self.0).await?;
        } else {
            let body = routes::error_body("no such route", "not_found");
            routes::write(session, 404, "application/json", body).await?;
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Err(Error::new(ErrorType::InternalError))
    }
}

struct Stop(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// Starts the server on a free loopback port; returns once it accepts connections.
pub fn start(ingest: Arc<Ingest>) -> EventsServer {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
        l.local_addr().expect("addr")
    };
    let conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, EventsOnly(ingest));
    svc.add_tcp(&addr.to_string());
    server.add_service(svc);
    let stop = Arc::new(Notify::new());
    let signal = Stop(stop.clone());
    let thread = std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(signal),
        })
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "events server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    EventsServer {
        addr,
        stop,
        thread: Some(thread),
    }
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// Sends one raw HTTP/1.1 request (`Connection: close`) and reads the whole answer.
pub async fn raw(addr: SocketAddr, method: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut head = format!("{method} /events HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write head");
    // A refused request may be answered before its body is read; ignore a reset here.
    let _ = s.write_all(body).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "no complete answer within 20 s");
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    Reply { status, body }
}

/// Posts `body` as JSON with a loopback Host and the token.
pub async fn post(addr: SocketAddr, token: &str, body: &Value) -> Reply {
    let host = addr.to_string();
    let auth = format!("Bearer {token}");
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    raw(addr, "POST", &headers, body.to_string().as_bytes()).await
}

/// A `PluginEvent`.
pub fn ev(name: &str, data: Value) -> Value {
    json!({"event": name, "timestamp": 1_795_520_697_742u64, "data": data})
}

/// OpenCode's `message.updated` for an assistant message.
pub fn assistant(
    sid: &str,
    id: &str,
    completed: bool,
    input: u64,
    output: u64,
    cost: f64,
) -> Value {
    let time = if completed {
        json!({"created": 1, "completed": 2})
    } else {
        json!({"created": 1})
    };
    ev(
        "message.updated",
        json!({"sessionID": sid, "info": {
            "id": id, "sessionID": sid, "role": "assistant", "time": time, "cost": cost,
            "tokens": {"total": input + output, "input": input, "output": output, "reasoning": 0,
                       "cache": {"read": 0, "write": 0}},
        }}),
    )
}

/// OpenCode's `step-finish` part for one LLM call.
pub fn step(sid: &str, id: &str, input: u64, cached: u64, output: u64, reasoning: u64) -> Value {
    ev(
        "message.part.updated",
        json!({"sessionID": sid, "part": {
            "id": id, "sessionID": sid, "messageID": "msg_x", "type": "step-finish", "reason": "stop",
            "tokens": {"total": input + cached + output + reasoning, "input": input, "output": output,
                       "reasoning": reasoning, "cache": {"read": cached, "write": 0}},
            "cost": 0.0,
        }}),
    )
}

/// The token the test ingests accept.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The simulator, the real gateway in front of it, and an events server on the gateway's hub.
pub async fn setup(cfg: IngestConfig) -> (SimHandle, Running, EventsServer) {
    // Tests here send requests in a loop: no rate limit may interfere.
    let sim = simulator::spawn(SimConfig {
        rpm: 1_000_000,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let mut gw_config = crate::common::config(&sim.base_url());
    gw_config.admission.enabled = false;
    let gw = crate::common::gateway(gw_config).await;
    let ingest = Arc::new(Ingest::new(gw.hub.clone(), cfg, TOKEN.into()));
    let events = tokio::task::spawn_blocking(move || start(ingest))
        .await
        .expect("start");
    (sim, gw, events)
}

/// A non-streamed chat call through the gateway for session `sid`; returns its usage.
pub async fn chat(gw: &Running, sid: &str, max_tokens: u64) -> Value {
    let resp = crate::common::client()
        .post(format!("{}/chat/completions", crate::common::api(gw)))
        .header("x-session-id", sid)
        .json(&crate::common::chat("llama-3.3-70b", false, max_tokens))
        .send()
        .await
        .expect("chat");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["usage"].clone()
}
