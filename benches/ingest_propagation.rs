//! Propagation time to a WebSocket client (issue 4, item 7; target p99 < 5 ms):
//! - event: a plugin `POST /events` sent → its `session` update received on `/ws`;
//! - upstream: a proxied chat response fully read by the client → its `usage` update on `/ws`.
//!
//! The real gateway runs in front of the simulator; `/events` is served through pingora by
//! `ingest::handle` on the gateway's hub (the same function the gateway's route calls). Run with
//! `cargo bench --bench ingest_propagation`; it prints percentiles and whether the target holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::{Error, ErrorType};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use sidepanel::config::{self, Overrides};
use sidepanel::ingest::{self, Ingest, IngestConfig};
use sidepanel::simulator::{self, SimConfig};

const EVENTS: usize = 500;
const REQUESTS: usize = 200;
const TOKEN: &str = "bench-token-0123456789abcdef";

struct EventsOnly(Arc<Ingest>);

#[async_trait]
impl ProxyHttp for EventsOnly {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn request_filter(&self, s: &mut Session, _: &mut ()) -> pingora::Result<bool> {
        ingest::handle(s, &self.0).await?;
        Ok(true)
    }
    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> pingora::Result<Box<HttpPeer>> {
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

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn events_server(ingest: Arc<Ingest>, stop: Arc<Notify>) -> SocketAddr {
    let addr = free_addr();
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
    std::thread::spawn(move || {
        server.run(RunArgs {
            shutdown_signal: Box::new(Stop(stop)),
        })
    });
    while std::net::TcpStream::connect(addr).is_err() {
        std::thread::sleep(Duration::from_millis(10));
    }
    addr
}

fn report(name: &str, mut v: Vec<Duration>) -> bool {
    v.sort();
    let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = pct(0.99);
    let met = p99 < Duration::from_millis(5);
    println!(
        "{name:<9} n={:<4} p50={:.3} ms  p90={:.3} ms  p99={:.3} ms  max={:.3} ms  target p99 < 5 ms: {}",
        v.len(),
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(p99),
        ms(v[v.len() - 1]),
        if met { "met" } else { "NOT met" }
    );
    met
}

/// The next `state.update` whose payload satisfies `pred`.
async fn wait_for<S>(ws: &mut S, pred: impl Fn(&Value) -> bool) -> Instant
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an update within 10 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            if v["method"] == "state.update" && pred(&v["params"]) {
                return Instant::now();
            }
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let sim = simulator::spawn(SimConfig::default())
            .await
            .expect("simulator");
        let data = std::env::temp_dir().join(format!("sidepanel-bench-{}", std::process::id()));
        let overrides = Overrides {
            listen: Some(free_addr().to_string()),
            upstream: Some(sim.base_url()),
            api_key: Some("bench-key".into()),
            data_dir: Some(data.clone()),
            ..Overrides::default()
        };
        let mut cfg = config::load(&overrides).expect("config");
        cfg.upstream.models_refresh = None;
        cfg.admission.limits_refresh = None;
        cfg.lean.enabled = false;
        let gw = tokio::task::spawn_blocking(move || sidepanel::app::start(&cfg, Vec::new()))
            .await
            .expect("start")
            .expect("gateway");
        let ingest = Arc::new(Ingest::new(
            gw.hub.clone(),
            IngestConfig::default(),
            TOKEN.into(),
        ));
        let stop = Arc::new(Notify::new());
        let events = events_server(ingest, stop.clone());
        let ws_token = ingest::load_or_create_token(&data).expect("token");
        let url = format!("ws://{}/ws?token={ws_token}", gw.addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        let http = reqwest::Client::new();
        // A fresh connection per chat call: what is timed starts after the response anyway,
        // and no call races a pooled connection the server is closing.
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        // Updates flow once the client has synced with `state.get`.
        let get = json!({"jsonrpc": "2.0", "id": 1, "method": "state.get"}).to_string();
        ws.send(Message::Text(get.into())).await.expect("state.get");

        let mut event_times = Vec::with_capacity(EVENTS);
        for i in 0..EVENTS {
            let sid = format!("ses_bench_{i}");
            let body =
                json!([{"event": "session.idle", "timestamp": 1, "data": {"sessionID": sid}}]);
            let t0 = Instant::now();
            let send = http
                .post(format!("http://{events}/events"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send();
            let (resp, t1) =
                tokio::join!(send, wait_for(&mut ws, |p| p["payload"]["session"] == sid));
            assert_eq!(resp.expect("post").status(), 202);
            event_times.push(t1 - t0);
        }

        let mut upstream_times = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS {
            let sid = format!("ses_bench_up_{i}");
            let body = json!({"model": "llama-3.3-70b", "stream": false, "max_completion_tokens": 8,
                              "messages": [{"role": "user", "content": "hi"}]});
            let call = async {
                let r = fresh
                    .post(format!("http://{}/api/v1/chat/completions", gw.addr))
                    .header("x-session-id", &sid)
                    .json(&body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("chat {i}: {e}"));
                let _ = r.bytes().await;
                Instant::now()
            };
            let usage = wait_for(&mut ws, |p| {
                p["type"] == "usage" && p["payload"]["request"]["session_id"] == sid
            });
            let (done, seen) = tokio::join!(call, usage);
            upstream_times.push(seen.saturating_duration_since(done));
        }
        let a = report("event", event_times);
        let b = report("upstream", upstream_times);
        println!(
            "propagation target: {}",
            if a && b { "met" } else { "NOT met" }
        );
        stop.notify_one();
        sim.shutdown();
        let _ = std::fs::remove_dir_all(&data);
    });
}
