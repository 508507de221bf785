//! Shared harness of the WebSocket tests: a real hub with its task, a `WsServer` on a free
//! loopback port, and a real tokio-tungstenite client that awaits messages with a timeout (never
//! sleeps) and keeps notifications that arrive while it waits for a response.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{SinkExt, StreamExt};
use parking_lot::RwLock;
use serde_json::{json, Value};
use sidepanel::gateway::headers::VeniceHeaders;
use sidepanel::gateway::record::{CostSource, Outcome, RequestRecord};
use sidepanel::gateway::usage::Usage;
use sidepanel::hub::{Hub, HubEvent, HubHandle};
use sidepanel::metrics::Metrics;
use sidepanel::pricing::PriceTable;
use sidepanel::util::from_epoch_ms;
use sidepanel::ws::{WsConfig, WsServer};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for any one message.
pub const WAIT: Duration = Duration::from_secs(20);

/// A hub and a WebSocket server in front of it.
pub struct Env {
    pub hub: HubHandle,
    pub addr: SocketAddr,
    pub stop: watch::Sender<bool>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

pub async fn start(config: WsConfig) -> Env {
    start_with(config, |s| s).await
}

/// Starts a hub and a server built by `build` from `WsServer::new`.
pub async fn start_with(config: WsConfig, build: impl FnOnce(WsServer) -> WsServer) -> Env {
    let (hub, handle) = Hub::new(
        Arc::new(Metrics::new()),
        Arc::new(RwLock::new(PriceTable::default())),
    );
    let (stop, watch) = watch::channel(false);
    let hub = Arc::new(hub);
    let hub_watch = watch.clone();
    tokio::spawn(async move { hub.run(hub_watch).await });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Arc::new(build(WsServer::new(handle.clone(), config)));
    tokio::spawn(server.serve(listener, watch));
    Env {
        hub: handle,
        addr,
        stop,
    }
}

pub fn proof(file: &str, n: u64) -> HubEvent {
    HubEvent::Proof {
        file: file.into(),
        state: json!({ "n": n }),
    }
}

/// The last event of a batch; [`Client::updates_until_marker`] stops at its update.
pub fn marker() -> HubEvent {
    proof("marker", 0)
}

pub fn balance(diem: f64) -> HubEvent {
    HubEvent::Headers {
        model: None,
        headers: Box::new(VeniceHeaders {
            balance_diem: Some(diem),
            ..VeniceHeaders::default()
        }),
        at: SystemTime::now(),
    }
}

/// A finished request of `session` that started at `started_ms` (10 + 5 tokens).
pub fn request(session: &str, started_ms: u64) -> HubEvent {
    HubEvent::Request(Box::new(RequestRecord {
        started_at: from_epoch_ms(started_ms),
        method: "POST".into(),
        path: "/chat/completions".into(),
        model: Some("kimi-k2-5".into()),
        session_id: Some(session.into()),
        status: Some(200),
        outcome: Outcome::Ok,
        streamed: false,
        usage: Some(Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            ..Usage::default()
        }),
        cost: None,
        cost_source: CostSource::Unknown,
        error: None,
        latency_ms: 1.0,
        ttfb_ms: Some(1.0),
        response_bytes: 100,
        usage_requested: false,
        unscanned: false,
        attempts: 1,
        retries: Vec::new(),
        queue_wait_ms: 0.0,
        limited: None,
    }))
}

pub fn seq(update: &Value) -> u64 {
    update["sequence"]
        .as_u64()
        .expect("an update has a sequence")
}

pub fn code(response: &Value) -> i64 {
    response["error"]["code"].as_i64().unwrap_or(0)
}

pub fn msg(response: &Value) -> &str {
    response["error"]["message"].as_str().unwrap_or("")
}

/// A text frame whose payload is not UTF-8 (tungstenite's `Message::Text` cannot hold one).
pub fn invalid_utf8_text_frame() -> Message {
    Message::Frame(Frame::message(
        vec![0xff, 0xfe, 0xfd],
        OpCode::Data(Data::Text),
        true,
    ))
}

/// The handshake's refusal status, or `None` when the upgrade was accepted.
pub async fn refused_status(
    env: &Env,
    path: &str,
    headers: Vec<(&'static str, &'static str)>,
) -> Option<u16> {
    let mut req = format!("ws://{}{path}", env.addr)
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
        Ok(Ok((mut ws, resp))) => {
            if let Some(p) = resp.headers().get("sec-websocket-protocol") {
                assert!(p.to_str().unwrap().starts_with("sidepanel."), "{p:?}");
            }
            let _ = ws.close(None).await;
            None
        }
        Ok(Err(WsError::Http(resp))) => Some(resp.status().as_u16()),
        other => panic!("handshake neither accepted nor refused: {other:?}"),
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket JSON-RPC client.
pub struct Client {
    ws: Ws,
    next_id: u64,
    pending: VecDeque<Value>,
    /// Longest wait for any one message ([`WAIT`] unless [`Client::patient`]).
    wait: Duration,
}

impl Client {
    pub async fn connect(env: &Env) -> Self {
        Self::connect_to(env.addr).await
    }

    pub async fn connect_to(addr: SocketAddr) -> Self {
        Self::connect_with(addr, None).await
    }

    /// A browser's connection through a gateway's public port, with its install token as
    /// the `sidepanel.<token>` subprotocol (as the dashboard sends it).
    pub async fn connect_gateway(gw: &sidepanel::app::Running) -> Self {
        Self::connect_with(gw.addr, Some(&gw.token)).await
    }

    pub async fn connect_with(addr: SocketAddr, token: Option<&str>) -> Self {
        let mut req = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("url");
        if let Some(token) = token {
            let protocol = HeaderValue::from_str(&format!("sidepanel.{token}")).expect("token");
            req.headers_mut().insert("sec-websocket-protocol", protocol);
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connect in time")
            .expect("connect");
        Self::new(ws)
    }

    /// A client with a tiny socket receive buffer, so a client that stops reading is overrun
    /// quickly.
    pub async fn connect_small_buffer(env: &Env) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(16 * 1024).expect("rcvbuf");
        let stream = socket.connect(env.addr).await.expect("connect");
        let url = format!("ws://{}/ws", env.addr);
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("handshake");
        Self::new(ws)
    }

    fn new(ws: Ws) -> Self {
        Self {
            ws,
            next_id: 1,
            pending: VecDeque::new(),
            wait: WAIT,
        }
    }

    /// The same client, waiting up to `wait` for each message (a real Lean server's first
    /// check can take longer than [`WAIT`] on a cold, loaded machine).
    pub fn patient(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    pub async fn ws_send(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    pub async fn send(&mut self, text: &str) {
        self.ws_send(Message::Text(text.to_owned().into())).await;
    }

    /// The next text message as JSON.
    async fn next_json(&mut self) -> Value {
        loop {
            match tokio::time::timeout(self.wait, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return serde_json::from_str(t.as_str()).expect("the server sends JSON")
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Sends `text` and returns the response (or batch response) it gets.
    pub async fn raw(&mut self, text: &str) -> Value {
        self.send(text).await;
        loop {
            let m = self.next_json().await;
            if m.get("method").is_some() {
                self.pending.push_back(m);
            } else {
                return m;
            }
        }
    }

    /// Calls `method` and returns the whole response object.
    pub async fn call(&mut self, method: &str, params: Option<Value>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            req["params"] = p;
        }
        let r = self.raw(&req.to_string()).await;
        assert_eq!(r["id"], id, "{r}");
        r
    }

    /// The next notification (`state.update` or `state.resync`).
    pub async fn notification(&mut self) -> Value {
        if let Some(n) = self.pending.pop_front() {
            return n;
        }
        let m = self.next_json().await;
        assert!(
            m.get("method").is_some(),
            "expected a notification, got {m}"
        );
        m
    }

    /// The params of the next notification, which must be a `state.update`.
    pub async fn update(&mut self) -> Value {
        let n = self.notification().await;
        assert_eq!(n["method"], "state.update", "{n}");
        n["params"].clone()
    }

    pub async fn updates(&mut self, count: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(self.update().await);
        }
        out
    }

    /// Updates up to and including the [`marker`]'s.
    pub async fn updates_until_marker(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let u = self.update().await;
            let done = u["type"] == "proof" && u["payload"]["file"] == "marker";
            out.push(u);
            if done {
                return out;
            }
        }
    }

    /// Reads updates or resyncs until one covers `target`.
    pub async fn until_sequence(&mut self, target: u64) {
        while self.notification().await["params"]["sequence"].as_u64() < Some(target) {}
    }

    /// The close frame the server sends next (other messages are skipped).
    pub async fn close_frame(&mut self) -> (CloseCode, String) {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(f))))) => return (f.code, f.reason.to_string()),
                Ok(Some(Ok(Message::Close(None)))) => panic!("close frame without a code"),
                Ok(Some(Ok(_))) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drive the close handshake to its end.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }
}
