//! The OpenCode server link against the real `opencode serve` (npm `opencode-ai` 1.18.33, run
//! offline as in facts/opencode.md §3.3), with its provider pointed at the real gateway in
//! front of the simulator.
//!
//! A prompt sent through the server's HTTP API shows up over `/ws` as session and usage
//! updates; killing and restarting the server makes the link reconnect; a wrong password is
//! reported as `auth_failed` (state and metric); a restore of a point that maps to an OpenCode
//! message reverts the session in OpenCode. Plus, without OpenCode: the same session reported
//! by the plugin and by the stream is counted once, in either order.
//!
//! Needs `SIDEPANEL_OPENCODE_BIN` (set by `.ci/test`); without it the real-server tests say
//! they are skipped and pass — except in CI (`CI` set), where a missing binary fails.

mod common;
mod opencode_support;
mod ws_common;

use std::sync::Arc;
use std::time::Duration;

use opencode_support::{
    bus_events, gateway, link_is, opencode_bin, opencode_totals, plugin_body, serve_with_open,
    settled_session, wait_for, OpencodeServer, DEADLINE,
};
use serde_json::{json, Value};
use sidepanel::hub::State;
use sidepanel::ingest::{Ingest, IngestConfig};
use sidepanel::opencode::LinkState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_through_opencode_serve_reaches_ws_and_the_link_survives_a_restart() {
    let Some(bin) = opencode_bin("opencode_link") else {
        return;
    };
    // The gateway knows the URL before the server runs: the link waits for it to answer.
    let port_owner = common::free_addr();
    let url = format!("http://127.0.0.1:{}", port_owner.port());
    let (_sim, gw) = gateway(Some(&url), None).await;
    let mut oc = OpencodeServer::new(bin, &gw, None);
    oc.port = port_owner.port();
    oc.start();
    let linked = wait_for(&gw, "the link to connect", link_is(LinkState::Connected)).await;
    assert_eq!(linked.url.as_deref(), Some(format!("{url}/").as_str()));
    assert_eq!(linked.server_version.as_deref(), Some("1.18.33"));

    let mut ws = ws_common::Client::connect_gateway(&gw).await;
    let snap = ws.call("state.get", None).await;
    assert_eq!(
        snap["result"]["state"]["opencode_link"]["state"], "connected",
        "{snap}"
    );

    let (sid, answer) = oc.prompt("Say hello").await;
    let info = &answer["info"];
    assert_eq!(info["role"], "assistant", "{answer}");
    println!("opencode answered: {info}");

    // Over /ws: the proxied call (usage, tied to the session by x-session-id) and the session
    // as OpenCode's event stream reported it, with OpenCode's own tokens and cost.
    let (mut usage_seen, mut session_seen) = (false, None::<Value>);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(usage_seen && session_seen.is_some()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no session/usage updates over /ws"
        );
        let u = ws.update().await;
        let p = &u["payload"];
        if u["type"] == "usage" && p["request"]["session_id"] == sid.as_str() {
            usage_seen = true;
        }
        let oc_state = &p["opencode"];
        if u["type"] == "session"
            && p["session"] == sid.as_str()
            && oc_state["messages"]["assistant"].as_u64() >= Some(1)
            && oc_state["tokens"]["input"] == info["tokens"]["input"]
        {
            assert_eq!(u["source"], "opencode", "{u}");
            session_seen = Some(oc_state.clone());
        }
    }
    let oc_state = session_seen.expect("session update");
    assert_eq!(
        oc_state["tokens"]["output"], info["tokens"]["output"],
        "{oc_state}"
    );
    assert_eq!(oc_state["title"], "link test", "{oc_state}");
    let cost = info["cost"].as_f64().unwrap_or(0.0);
    assert!((oc_state["cost"].as_f64().unwrap_or(-1.0) - cost).abs() < 1e-9);
    // Every assistant message OpenCode holds is counted exactly once.
    let messages = oc.get_json(&format!("/session/{sid}/message")).await;
    let assistants = messages
        .as_array()
        .expect("message list")
        .iter()
        .filter(|m| m["info"]["role"] == "assistant")
        .count() as u64;
    let s = wait_for(&gw, "the session idle", |st| {
        let s = st.sessions.get(&sid)?;
        (s.opencode.status.as_deref() == Some("idle")).then(|| s.clone())
    })
    .await;
    assert_eq!(s.opencode.messages.assistant, assistants);
    assert_eq!(s.opencode.counted.requests, assistants, "{:?}", s.opencode);

    // Kill the server: the link notices and retries; a restarted server is picked up again.
    oc.kill().await;
    let lost = wait_for(&gw, "the link to notice the server is gone", |s| {
        let l = &s.opencode_link;
        matches!(l.state, LinkState::Reconnecting | LinkState::ServerGone).then(|| l.clone())
    })
    .await;
    assert!(lost.reconnects >= 1, "{lost:?}");
    assert!(lost.last_error.is_some(), "{lost:?}");
    oc.start();
    let back = wait_for(&gw, "the link to reconnect", link_is(LinkState::Connected)).await;
    assert!(back.reconnects >= 1, "{back:?}");
    let metrics = common::metrics_text(&gw).await;
    assert!(
        metrics.contains("sidepanel_opencode_link_state{state=\"connected\"} 1"),
        "{metrics}"
    );
    oc.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_and_the_right_one_connects() {
    let Some(bin) = opencode_bin("opencode_link") else {
        return;
    };
    let port = common::free_addr().port();
    let url = format!("http://127.0.0.1:{port}");
    let (_sim, gw) = gateway(Some(&url), Some("not-the-password")).await;
    let mut oc = OpencodeServer::new(bin.clone(), &gw, Some("s3cret-pw"));
    oc.port = port;
    oc.start();
    let failed = wait_for(&gw, "auth_failed", link_is(LinkState::AuthFailed)).await;
    let error = failed.last_error.unwrap_or_default();
    assert!(error.contains("OPENCODE_SERVER_PASSWORD"), "{error}");
    assert!(
        !error.contains("not-the-password"),
        "the password leaked: {error}"
    );
    assert!(failed.auth);
    let state = common::state_json(&gw).await;
    assert_eq!(state["opencode_link"]["state"], "auth_failed", "{state}");
    assert!(!state.to_string().contains("not-the-password"));
    let metrics = common::metrics_text(&gw).await;
    assert!(
        metrics.contains("sidepanel_opencode_link_state{state=\"auth_failed\"} 1"),
        "{metrics}"
    );
    drop(gw);

    // The same server with the right password: connected.
    let (_sim2, gw) = gateway(Some(&url), Some("s3cret-pw")).await;
    wait_for(
        &gw,
        "connected with the password",
        link_is(LinkState::Connected),
    )
    .await;
    oc.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_reverts_the_opencode_session() {
    let Some(bin) = opencode_bin("opencode_link") else {
        return;
    };
    let port = common::free_addr().port();
    let url = format!("http://127.0.0.1:{port}");
    let (_sim, gw) = gateway(Some(&url), None).await;
    let mut oc = OpencodeServer::new(bin, &gw, None);
    oc.port = port;
    oc.start();
    wait_for(&gw, "the link to connect", link_is(LinkState::Connected)).await;
    let (sid, _) = oc.prompt("Say hello").await;
    wait_for(&gw, "the session idle", |st| {
        let s = st.sessions.get(&sid)?;
        (s.opencode.status.as_deref() == Some("idle")).then_some(())
    })
    .await;

    let mut ws = ws_common::Client::connect_gateway(&gw).await;
    let timeline = ws.call("timeline", Some(json!({"sessionId": sid}))).await;
    let points = timeline["result"]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(point) = points
        .iter()
        .find(|p| p["messageId"].is_string() || p["message_id"].is_string())
    else {
        panic!("no timeline point maps to an OpenCode message: {timeline}");
    };
    let message = point["messageId"]
        .as_str()
        .or(point["message_id"].as_str())
        .expect("message id")
        .to_owned();
    let restored = ws
        .call("restore", Some(json!({"sequence": point["sequence"]})))
        .await;
    let revert = &restored["result"]["revert"];
    assert_eq!(revert["ok"], true, "{restored}");
    assert_eq!(revert["session_id"], sid.as_str(), "{restored}");
    assert_eq!(revert["message_id"], message.as_str(), "{restored}");
    // OpenCode now has the session reverted at that message.
    let session = oc.get_json(&format!("/session/{sid}")).await;
    assert_eq!(
        session["revert"]["messageID"],
        message.as_str(),
        "{session}"
    );
    let last = wait_for(&gw, "the revert in the state", |s| {
        s.opencode_link.last_revert.clone()
    })
    .await;
    assert!(last.ok);

    // A revert that cannot work (the server is gone) is reported, not skipped.
    oc.kill().await;
    let again = ws
        .call("restore", Some(json!({"sequence": point["sequence"]})))
        .await;
    let revert = &again["result"]["revert"];
    assert_eq!(revert["ok"], false, "{again}");
    assert!(
        revert["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_plugin_and_the_link_together_count_each_message_once() {
    let Some(bin) = opencode_bin("opencode_link") else {
        return;
    };
    let port = common::free_addr().port();
    let url = format!("http://127.0.0.1:{port}");
    let (_sim, gw) = gateway(Some(&url), None).await;
    let mut oc = OpencodeServer::new(bin, &gw, None);
    oc.port = port;
    let opts = sidepanel::install::InstallOptions {
        scope: sidepanel::install::Scope::Project(oc.project.path().to_owned()),
        gateway: format!("http://{}", gw.addr),
        token: gw.token.clone(),
        command: "/nonexistent/sidepanel".into(),
        serve_args: vec!["serve".into()],
    };
    sidepanel::install::plan(&opts)
        .expect("plan")
        .apply()
        .expect("install the plugin");
    oc.env.push(("SIDEPANEL_AUTOSTART".into(), "0".into()));
    oc.start();
    wait_for(&gw, "the link to connect", link_is(LinkState::Connected)).await;
    let (sid, _) = oc.prompt("Say hello").await;
    let (assistants, input, cost) = opencode_totals(&oc, &sid).await;
    assert!(assistants >= 1);
    let counted_once = |s: &State| {
        let x = s.sessions.get(&sid)?;
        let o = &x.opencode;
        // `chat.params` only comes from the plugin: both sources have delivered.
        let both = o.agents.get("build").copied().unwrap_or(0) >= assistants;
        let done = o.status.as_deref() == Some("idle") && o.tokens.input == input;
        (both && done).then(|| x.clone())
    };
    let s = wait_for(&gw, "both sources", &counted_once).await;
    assert_eq!(
        s.opencode.messages.assistant, assistants,
        "{:?}",
        s.opencode
    );
    assert!((s.opencode.cost - cost).abs() < 1e-9, "{:?}", s.opencode);

    // Disposing the instance makes the plugin flush what it still queues (OpenCode awaits it);
    // whatever both sources sent by then, each message is still counted once.
    let disposed = oc
        .request(
            reqwest::Method::POST,
            "/instance/dispose",
            Duration::from_secs(30),
        )
        .send()
        .await
        .expect("POST /instance/dispose");
    assert!(disposed.status().is_success(), "{}", disposed.status());
    let s = wait_for(&gw, "both sources", &counted_once).await;
    assert_eq!(
        s.opencode.messages.assistant, assistants,
        "{:?}",
        s.opencode
    );
    assert_eq!(s.opencode.counted.requests, assistants, "{:?}", s.opencode);
    assert!((s.opencode.cost - cost).abs() < 1e-9, "{:?}", s.opencode);
    assert!(gw.hub.with_state(|st| st.plugin.starts >= 1));
    oc.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_and_stream_reporting_the_same_session_count_it_once() {
    let events = bus_events("ses_dup");
    let relevant = events
        .iter()
        .filter(|e| sidepanel::ingest::to_wire(e, 1).is_some())
        .count() as u64;
    assert_eq!(relevant, 8, "the delta is not forwarded");

    // Reference: the plugin alone.
    let (_sim, gw) = gateway(None, None).await;
    let ingest = Ingest::new(gw.hub.clone(), IngestConfig::default(), "t".into());
    ingest.accept(&plugin_body(&events)).expect("plugin batch");
    let alone = settled_session(&gw, "ses_dup", relevant).await;
    assert_eq!(
        alone["messages"],
        json!({"user": 1, "assistant": 1}),
        "{alone}"
    );
    assert_eq!(alone["tool_calls"], 1, "{alone}");
    assert_eq!(alone["tokens"]["input"], 1034, "{alone}");

    // Both sources, in both orders (and the stream twice, as after a reconnect).
    for plugin_first in [true, false] {
        let (_sim, gw) = gateway(None, None).await;
        let ingest = Arc::new(Ingest::new(
            gw.hub.clone(),
            IngestConfig::default(),
            "t".into(),
        ));
        if plugin_first {
            ingest.accept(&plugin_body(&events)).expect("plugin batch");
        }
        assert_eq!(ingest.feed(&events).accepted as u64, relevant);
        assert_eq!(ingest.feed(&events[1..]).accepted as u64, relevant - 1);
        if !plugin_first {
            ingest.accept(&plugin_body(&events)).expect("plugin batch");
        }
        let both = settled_session(&gw, "ses_dup", 3 * relevant - 1).await;
        assert_eq!(both, alone, "plugin first: {plugin_first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_without_a_linked_server_says_the_session_was_not_reverted() {
    let (_sim, gw) = gateway(None, None).await;
    let ingest = Ingest::new(gw.hub.clone(), IngestConfig::default(), "t".into());
    ingest
        .accept(&plugin_body(&bus_events("ses_nolink")))
        .expect("plugin batch");
    settled_session(&gw, "ses_nolink", 8).await;
    let mut ws = ws_common::Client::connect_gateway(&gw).await;
    let mut point = None;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while point.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message point stored"
        );
        let t = ws
            .call("timeline", Some(json!({"sessionId": "ses_nolink"})))
            .await;
        point = t["result"]["points"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["message_id"].is_string()).cloned());
    }
    let point = point.expect("point");
    // Live updates start once the client has synced.
    ws.call("state.get", None).await;
    let r = ws
        .call("restore", Some(json!({"sequence": point["sequence"]})))
        .await;
    let revert = &r["result"]["revert"];
    assert_eq!(revert["ok"], false, "{r}");
    assert_eq!(revert["skipped"], true, "{r}");
    assert_eq!(revert["session_id"], "ses_nolink", "{r}");
    assert!(
        revert["error"]
            .as_str()
            .is_some_and(|e| e.contains("no OpenCode server")),
        "{r}"
    );
    // The UI hears about it as a (non-firing) alert.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no opencode_revert alert"
        );
        let u = ws.update().await;
        if u["type"] == "alert" && u["payload"]["alert"] == "opencode_revert" {
            assert_eq!(u["payload"]["firing"], false, "{u}");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_open_starts_the_browser_with_the_tokened_url() {
    let dir = tempfile::tempdir().expect("dir");
    let seen = dir.path().join("opened.txt");
    let script = dir.path().join("browser.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" > {}.tmp && mv {0}.tmp {0}\n",
            seen.display()
        ),
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let browser = script.display().to_string();
    let (_child, url, _data) = serve_with_open(&[("BROWSER", browser.as_str())]).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let opened = loop {
        if let Ok(s) = std::fs::read_to_string(&seen) {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the browser was never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(opened.trim(), url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_open_on_a_headless_machine_prints_the_url() {
    use tokio::io::AsyncBufReadExt;
    let (mut child, url, _data) = serve_with_open(&[]).await;
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.contains("dashboard at") {
                return line;
            }
        }
        panic!("serve exited without printing the dashboard URL");
    })
    .await
    .expect("the URL is printed in time");
    assert!(line.ends_with(&url), "{line} vs {url}");
    // serve keeps running.
    assert!(child.try_wait().expect("status").is_none());
}
