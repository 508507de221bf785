//! The WebSocket JSON-RPC API against a real hub and real WebSocket clients: every JSON-RPC
//! error code, batches and notifications, `setAlert`, `sessions.list`, Lean forwarding, bad
//! frames, and the handshake's Origin/Host/token checks.

mod ws_common;

use std::sync::Arc;

use serde_json::{json, Value};
use sidepanel::ws::{LeanCommands, WsConfig, WsServer};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use ws_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_errors_follow_the_spec() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;

    let r = c
        .raw(r#"{"jsonrpc":"2.0","method":"state.get","id":1"#)
        .await;
    assert_eq!((code(&r), &r["id"]), (-32700, &Value::Null));
    for bad in [
        "1",
        r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#,
        r#"{"jsonrpc":"1.0","method":"state.get","id":2}"#,
        "[]",
    ] {
        let r = c.raw(bad).await;
        assert!(r.is_object(), "{bad} -> {r}");
        assert_eq!(code(&r), -32600, "{bad} -> {r}");
    }
    let r = c
        .raw(r#"{"jsonrpc":"2.0","method":"nope","id":"abc"}"#)
        .await;
    assert_eq!((code(&r), r["id"].as_str()), (-32601, Some("abc")));
    let r = c
        .raw(r#"{"jsonrpc":"2.0","method":"state.get","id":null}"#)
        .await;
    assert_eq!(r["id"], Value::Null);
    assert!(r["result"]["sequence"].is_u64());

    let r = c.call("state.since", Some(json!({"seq": 1}))).await;
    assert_eq!(code(&r), -32602);
    assert!(msg(&r).contains("unknown field `seq`"), "{r}");
    let r = c.call("state.since", None).await;
    assert!(msg(&r).contains("missing field `sequence`"), "{r}");
    let r = c.call("state.get", Some(json!([1, 2]))).await;
    assert_eq!(code(&r), -32602);
    let r = c
        .call("setAlert", Some(json!({"currency": "eur", "below": 1})))
        .await;
    assert_eq!(code(&r), -32602);
    let r = c
        .call("setAlert", Some(json!({"currency": "usd", "below": -1})))
        .await;
    assert_eq!(code(&r), -32602);
    let r = c.call("lean.check", Some(json!({"file": ""}))).await;
    assert_eq!(code(&r), -32602);

    // Server errors of methods that have nothing behind them yet.
    let r = c.call("lean.restart", None).await;
    assert_eq!((code(&r), msg(&r)), (-32000, "lean not available"));
    for m in ["restore", "timeline", "exportSession"] {
        let r = c.call(m, Some(json!({"session": "x"}))).await;
        assert_eq!(code(&r), -32001);
        assert_eq!(msg(&r), "not available yet: session storage is not enabled");
    }

    // A mixed batch: answers in order, none for the notifications.
    let r = c
        .raw(
            r#"[{"jsonrpc":"2.0","method":"sessions.list","id":1},
                {"jsonrpc":"2.0","method":"state.get"},
                1,
                {"jsonrpc":"2.0","method":"nope","id":"b"},
                {"jsonrpc":"2.0","method":"state.since","params":{"sequence":"x"},"id":3}]"#,
        )
        .await;
    let items = r.as_array().expect("a batch answer is an array");
    assert_eq!(items.len(), 4, "{r}");
    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["result"]["sessions"], json!([]));
    assert_eq!((code(&items[1]), &items[1]["id"]), (-32600, &Value::Null));
    assert_eq!((code(&items[2]), &items[2]["id"]), (-32601, &json!("b")));
    assert_eq!((code(&items[3]), &items[3]["id"]), (-32602, &json!(3)));

    // Notifications, alone or in a batch, get no reply: the next message answers the next call.
    c.send(r#"{"jsonrpc":"2.0","method":"state.get"}"#).await;
    c.send(r#"{"jsonrpc":"2.0","method":"nope"}"#).await;
    c.send(r#"[{"jsonrpc":"2.0","method":"state.get"},{"jsonrpc":"2.0","method":"x"}]"#)
        .await;
    let r = c
        .raw(r#"{"jsonrpc":"2.0","method":"state.get","id":42}"#)
        .await;
    assert_eq!(r["id"], 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_alert_is_stored_and_published() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;
    c.call("state.get", None).await;
    let r = c
        .call("setAlert", Some(json!({"currency": "diem", "below": 2.5})))
        .await;
    assert_eq!(r["result"], json!({"currency": "diem", "below": 2.5}));
    let u = c.update().await;
    assert_eq!(
        (u["type"].as_str(), u["source"].as_str()),
        (Some("alert"), Some("user"))
    );
    assert_eq!(u["payload"]["alerts"]["diem_below"], 2.5);
    c.call("setAlert", Some(json!({"currency": "diem", "below": null})))
        .await;
    let u = c.update().await;
    assert_eq!(u["payload"]["alerts"]["diem_below"], Value::Null);
    let r = c.call("setAlert", Some(json!({"currency": "usd"}))).await;
    assert!(msg(&r).contains("missing field `below`"), "{r}");
    let s = c.call("state.get", None).await;
    assert_eq!(s["result"]["state"]["alerts"]["diem_below"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_most_recent_first() {
    let env = start(WsConfig::default()).await;
    let mut c = Client::connect(&env).await;
    c.call("state.get", None).await;
    env.hub.send(request("ses_old", 1_000));
    env.hub.send(request("ses_new", 3_000));
    env.hub.send(request("ses_mid", 2_000));
    env.hub.send(request("ses_old", 1_500));
    env.hub.send(marker());
    c.updates_until_marker().await;
    let r = c.call("sessions.list", None).await["result"].clone();
    let ids: Vec<&str> = r["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ses_new", "ses_mid", "ses_old"]);
    assert_eq!(r["sessions"][2]["requests"], 2);
    assert_eq!(r["sessions"][2]["total_tokens"], 30);
    assert_eq!(r["sessions"][0]["last_active"], 3_000);
    let r = c.call("sessions.list", Some(json!({"limit": 1}))).await;
    assert_eq!(r["result"]["sessions"].as_array().unwrap().len(), 1);
}

#[derive(Default)]
struct FakeLean(parking_lot::Mutex<Vec<String>>);

impl LeanCommands for FakeLean {
    fn check(&self, file: &str, line: Option<u32>) -> Result<(), String> {
        self.0.lock().push(format!("check {file} {line:?}"));
        Ok(())
    }

    fn restart(&self) -> Result<(), String> {
        Err("lean-lsp-mcp is starting".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lean_commands_are_forwarded_to_the_lean_control() {
    let lean = Arc::new(FakeLean::default());
    let env = start_with(WsConfig::default(), |s: WsServer| s.with_lean(lean.clone())).await;
    let mut c = Client::connect(&env).await;
    let r = c
        .call("lean.check", Some(json!({"file": "Foo.lean", "line": 3})))
        .await;
    assert_eq!(r["result"], json!({"accepted": true}));
    let r = c.call("lean.restart", None).await;
    assert_eq!(
        (code(&r), msg(&r)),
        (-32002, "lean: lean-lsp-mcp is starting")
    );
    assert_eq!(*lean.0.lock(), ["check Foo.lean Some(3)"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_and_hosts_get_403_and_a_wrong_token_401() {
    let env = start(WsConfig::default()).await;
    let refused = |h: &[(&'static str, &'static str)]| refused_status(&env, "/ws", h.to_vec());
    assert_eq!(
        refused(&[("origin", "http://evil.example")]).await,
        Some(403)
    );
    assert_eq!(refused(&[("origin", "null")]).await, Some(403));
    assert_eq!(refused(&[("host", "evil.example:8765")]).await, Some(403));
    assert_eq!(
        refused(&[("host", "localhost:1"), ("origin", "http://127.0.0.1:8765")]).await,
        None
    );

    let env = start(WsConfig {
        token: Some("tok-1234".into()),
        hosts: sidepanel::access::HostPolicy::new(&["panel.lan"]),
        ..WsConfig::default()
    })
    .await;
    let try_ =
        |path: &'static str, h: Vec<(&'static str, &'static str)>| refused_status(&env, path, h);
    assert_eq!(try_("/ws", vec![]).await, Some(401));
    assert_eq!(try_("/ws?token=nope", vec![]).await, Some(401));
    assert_eq!(try_("/ws?token=tok-1234", vec![]).await, None);
    assert_eq!(
        try_(
            "/ws",
            vec![("sec-websocket-protocol", "sidepanel.tok-1234")]
        )
        .await,
        None
    );
    assert_eq!(
        try_("/ws", vec![("sec-websocket-protocol", "sidepanel.wrong")]).await,
        Some(401)
    );
    assert_eq!(
        try_(
            "/ws?token=tok-1234",
            vec![("host", "panel.lan:80"), ("origin", "http://panel.lan")]
        )
        .await,
        None
    );
    // Origin is checked before the token.
    assert_eq!(
        try_(
            "/ws?token=tok-1234",
            vec![("origin", "http://evil.example")]
        )
        .await,
        Some(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_with_a_reason() {
    let env = start(WsConfig {
        max_message_bytes: 1024,
        ..WsConfig::default()
    })
    .await;
    let mut c = Client::connect(&env).await;
    c.ws_send(Message::Binary(vec![1, 2, 3].into())).await;
    let (code, reason) = c.close_frame().await;
    assert_eq!(code, CloseCode::Unsupported);
    assert!(reason.contains("binary"), "{reason}");

    let mut c = Client::connect(&env).await;
    c.ws_send(Message::Text("x".repeat(2048).into())).await;
    let (code, reason) = c.close_frame().await;
    assert_eq!(code, CloseCode::Size);
    assert!(reason.contains("1024"), "{reason}");

    let mut c = Client::connect(&env).await;
    c.ws_send(invalid_utf8_text_frame()).await;
    let (code, _) = c.close_frame().await;
    assert_eq!(code, CloseCode::Invalid);

    // The server is unharmed.
    let mut c = Client::connect(&env).await;
    assert!(c.call("state.get", None).await["result"].is_object());
}
