//! Ten thousand idle client connections against the real `sidepanel serve` binary in a child
//! process (its own fd table; the test process's limit is 20,000), started the way a desktop
//! shell starts it: soft `RLIMIT_NOFILE` 1024, hard limit higher. The gateway raises its soft
//! limit itself, accepts and holds all of them — most send nothing, some a partial request
//! head, some one request and then stay idle on keep-alive — while other clients are served
//! (`/healthz`, the state, a chat proxied to the simulator), and its fd count returns near the
//! baseline once the idle connections close.

mod common;
mod fault_support;

use std::net::SocketAddr;

use common::chat;
use fault_support::serve::Served;
use fault_support::{poll, read_head, DEADLINE};
use futures_util::StreamExt;
use sidepanel::simulator::{self, SimConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The Venice key the simulator accepts.
const KEY: &str = "sk-venice-idle-test-3c9e";
/// Idle connections in all.
const IDLE: usize = 10_000;
/// Of which send a request head that never finishes.
const PARTIAL: usize = 500;
/// Of which send one `/healthz` and then stay open on keep-alive.
const KEPT_ALIVE: usize = 100;
/// The soft fd limit the child starts with.
const DESKTOP_SOFT_LIMIT: u64 = 1024;

/// `/healthz`, the state and a proxied chat each answer 200 on new connections.
async fn served(addr: SocketAddr) {
    let c = common::client();
    for path in ["/healthz", "/api/sidepanel/state"] {
        let r = c.get(format!("http://{addr}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = c
        .post(format!("http://{addr}/api/v1/chat/completions"))
        .json(&chat("kimi-k2-5", false, 8))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a chat proxied to the simulator");
    r.bytes().await.unwrap();
}

/// Opens idle connection `i`: silent, a partial head, or one finished request.
async fn idle_connection(addr: SocketAddr, i: usize) -> TcpStream {
    let mut s = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("the gateway accepts within the deadline")
        .expect("connect");
    let host = format!("Host: {addr}");
    if i < PARTIAL {
        let partial = format!("POST /api/v1/chat/completions HTTP/1.1\r\n{host}\r\nContent-Le");
        s.write_all(partial.as_bytes()).await.unwrap();
    } else if i < PARTIAL + KEPT_ALIVE {
        let req = format!("GET /healthz HTTP/1.1\r\n{host}\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let r = read_head(&mut s).await;
        assert_eq!(r.status, 200, "{}", r.head);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_do_not_stop_the_gateway() {
    let sim = simulator::spawn(SimConfig {
        api_key: Some(KEY.to_owned()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let gw = Served::start(&sim.base_url(), KEY, Some(DESKTOP_SOFT_LIMIT)).await;
    let soft = gw.nofile_soft().unwrap_or(0);
    assert!(
        soft > IDLE as u64 + 1000,
        "the gateway raised its soft fd limit from {DESKTOP_SOFT_LIMIT}: {soft}"
    );
    served(gw.addr).await;
    let baseline = gw.settled_fds().await;

    let addr = gw.addr;
    let idle: Vec<TcpStream> = futures_util::stream::iter(0..IDLE)
        .map(|i| idle_connection(addr, i))
        .buffer_unordered(64)
        .collect()
        .await;
    let held = poll(|| async { gw.open_fds() >= baseline + IDLE }).await;
    assert!(
        held,
        "the gateway holds every idle connection: {} fds, baseline {baseline}",
        gw.open_fds()
    );
    for _ in 0..3 {
        served(gw.addr).await;
    }
    eprintln!(
        "{IDLE} idle connections: gateway fds {baseline} -> {}",
        gw.open_fds()
    );

    drop(idle);
    let back = poll(|| async { gw.open_fds() <= baseline + 8 }).await;
    assert!(
        back,
        "the gateway's fds return near baseline: {} open, baseline {baseline}",
        gw.open_fds()
    );
    served(gw.addr).await;
}
