//! Who may reach the gateway, tried route by route: a foreign `Host` or `Origin` (DNS
//! rebinding, cross-site requests) is refused on every route that reads or changes state, `/ws`
//! and `/events` need the install token, and the asset route serves only embedded files.

mod common;
mod fault_support;

use common::{chat, config, gateway};
use fault_support::{exchange, get, head_only, request, upgrade};
use serde_json::json;
use sidepanel::simulator::{self, SimConfig};

/// Host lines (and extra lines) a DNS-rebinding page or a foreign site would send.
fn foreign(port: u16) -> Vec<Vec<String>> {
    let ok_host = format!("Host: 127.0.0.1:{port}");
    vec![
        vec![format!("Host: evil.example:{port}")],
        vec!["Host: evil.example".into()],
        vec![format!("Host: 127.0.0.1.evil.example:{port}")],
        vec![format!("Host: localhost.evil.example:{port}")],
        vec![ok_host.clone(), "Origin: http://evil.example".into()],
        vec![ok_host.clone(), format!("Origin: https://127.0.0.1:{port}")],
        vec![ok_host.clone(), "Origin: null".into()],
        vec![
            ok_host,
            format!("Origin: http://127.0.0.1@evil.example:{port}"),
        ],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_hosts_and_origins_are_refused_on_every_state_route() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let port = gw.addr.port();
    let auth = format!("Authorization: Bearer {}", gw.token);
    let event = json!({"event": "x.y", "timestamp": 1, "data": {}}).to_string();
    // (what, request builder given the header lines).
    type Build = Box<dyn Fn(Vec<String>) -> Vec<u8>>;
    let ws_path = format!("/ws?token={}", gw.token);
    let routes: Vec<(&str, Build)> = vec![
        ("GET /", Box::new(|h| get("/", &h))),
        ("GET /index.html", Box::new(|h| get("/index.html", &h))),
        (
            "GET /api/sidepanel/state",
            Box::new(|h| get("/api/sidepanel/state", &h)),
        ),
        ("GET /metrics", Box::new(|h| get("/metrics", &h))),
        ("GET /ws", Box::new(move |h| upgrade(&ws_path, &h))),
        ("POST /events", {
            let (auth, event) = (auth.clone(), event.clone());
            Box::new(move |mut h| {
                h.extend([auth.clone(), "Content-Type: application/json".into()]);
                request("POST", "/events", &h, event.as_bytes())
            })
        }),
        (
            "GET /api/v1/models",
            Box::new(|h| get("/api/v1/models", &h)),
        ),
        ("POST /api/v1/chat/completions", {
            let body = chat("kimi-k2-5", false, 8).to_string();
            Box::new(move |mut h| {
                h.push("Content-Type: application/json".into());
                request("POST", "/api/v1/chat/completions", &h, body.as_bytes())
            })
        }),
    ];
    for (what, build) in &routes {
        for headers in foreign(port) {
            let r = head_only(gw.addr, &build(headers.clone())).await;
            assert_eq!(r.status, 403, "{what} with {headers:?}: {}", r.head);
        }
        // A request without any Host is refused too (pingora or the policy).
        let r = head_only(gw.addr, &build(Vec::new())).await;
        assert!(
            matches!(r.status, 400 | 403),
            "{what} without Host: {}",
            r.head
        );
        // The same request from this machine's own page or tool is served.
        let mine = vec![
            format!("Host: 127.0.0.1:{port}"),
            format!("Origin: http://localhost:{port}"),
        ];
        let r = head_only(gw.addr, &build(mine)).await;
        assert!(
            matches!(r.status, 101 | 200..=299),
            "{what} from loopback: {}",
            r.head
        );
    }
    assert_eq!(
        sim.observed().requests,
        2,
        "only the two loopback proxied calls reached Venice"
    );
    // Liveness is exempt by design.
    let r = exchange(gw.addr, &get("/healthz", &["Host: evil.example".into()])).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains(&gw.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_and_the_ingest_need_the_install_token() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let host = format!("Host: 127.0.0.1:{}", gw.addr.port());
    let t = &gw.token;
    let wrong_ws = [
        "/ws".to_owned(),
        "/ws?token=".to_owned(),
        "/ws?token=wrong".to_owned(),
        format!("/ws?token={}", &t[..t.len() - 1]),
        format!("/ws?token={t}x"),
        format!("/ws?tok={t}"),
    ];
    for path in &wrong_ws {
        let r = head_only(gw.addr, &upgrade(path, std::slice::from_ref(&host))).await;
        assert_eq!(r.status, 401, "{path}: {}", r.head);
    }
    let protocol = format!("Sec-WebSocket-Protocol: sidepanel.{}", t.to_uppercase());
    let r = head_only(gw.addr, &upgrade("/ws", &[host.clone(), protocol])).await;
    assert_eq!(r.status, 401, "tokens are case-sensitive: {}", r.head);

    let event = json!({"event": "x.y", "timestamp": 1, "data": {}}).to_string();
    let wrong_events = [
        vec![],
        vec!["Authorization: Bearer".to_owned()],
        vec!["Authorization: Bearer wrong".to_owned()],
        vec![format!("Authorization: Basic {t}")],
        vec![format!("Authorization: Bearer {t}0")],
        vec![format!("x-sidepanel-token: {}", &t[1..])],
        vec![format!("Cookie: token={t}")],
    ];
    for extra in wrong_events {
        let mut h = vec![host.clone(), "Content-Type: application/json".into()];
        h.extend(extra.clone());
        let r = exchange(gw.addr, &request("POST", "/events", &h, event.as_bytes())).await;
        assert_eq!(r.status, 401, "{extra:?}: {}", r.head);
    }
    let path = format!("/events?token={t}");
    let h = vec![host.clone(), "Content-Type: application/json".into()];
    let r = exchange(gw.addr, &request("POST", &path, &h, event.as_bytes())).await;
    assert_ne!(
        r.status / 100,
        2,
        "a token in the URL is not accepted: {}",
        r.head
    );
    let state = gw.hub.with_state(|s| s.plugin.events);
    assert_eq!(state, 0, "no refused event reached the hub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asset_route_serves_only_embedded_files() {
    let sim = simulator::spawn(SimConfig::default()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let host = format!("Host: 127.0.0.1:{}", gw.addr.port());
    let attempts = [
        "/assets/../index.html",
        "/assets/../../Cargo.toml",
        "/assets/../../../../../../etc/passwd",
        "/assets/..%2f..%2fCargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/%252e%252e/Cargo.toml",
        "/assets/..%5c..%5cCargo.toml",
        "/assets/..\\..\\Cargo.toml",
        "/assets//etc/passwd",
        "/assets/%00index.html",
        "/assets/",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "//etc/passwd",
        "/src/main.rs",
        "/Cargo.toml",
    ];
    for path in attempts {
        let r = exchange(gw.addr, &get(path, std::slice::from_ref(&host))).await;
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.head);
        let body = r.text();
        for secret in ["[package]", "root:", "fn main", gw.token.as_str()] {
            assert!(
                !body.contains(secret),
                "{path} leaked {secret:?}: {body:.500}"
            );
        }
    }
    // The real page and one of its assets are still served.
    let page = exchange(gw.addr, &get("/", std::slice::from_ref(&host))).await;
    assert_eq!(page.status, 200);
    let asset = page
        .text()
        .split('"')
        .find(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .expect("the page links an asset");
    let r = exchange(gw.addr, &get(&asset, std::slice::from_ref(&host))).await;
    assert_eq!(r.status, 200, "{asset}");
}
