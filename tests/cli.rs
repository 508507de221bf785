//! The `sidepanel` binary as a user runs it: refusing to start without a key, checking a
//! config, and the demo serving live state without one.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sidepanel"));
    c.env_remove("VENICE_API_KEY")
        .env_remove("SIDEPANEL_CONFIG")
        .env_remove("SIDEPANEL_LISTEN")
        .env_remove("SIDEPANEL_UPSTREAM")
        .env_remove("SIDEPANEL_DATA_DIR")
        .env_remove("SIDEPANEL_LOG");
    c
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_without_a_key_for_a_real_upstream_refuses_with_one_line() {
    let out = bin()
        .args(["serve", "--listen", &common::free_addr().to_string()])
        .args([
            "--data-dir",
            tempfile::tempdir().unwrap().path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("VENICE_API_KEY"), "{err}");
}

#[test]
fn check_config_validates_the_shipped_file_and_never_prints_the_key() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sidepanel.toml");
    let out = bin()
        .args(["check-config", "--config", file])
        .env("VENICE_API_KEY", "sk-very-secret-123")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("127.0.0.1:8765"), "{text}");
    assert!(!text.contains("sk-very-secret-123"));
}

#[test]
fn check_config_names_the_file_and_key_of_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[upstream]\nread_timeout = \"5 parsecs\"\n").unwrap();
    let out = bin()
        .args(["check-config", "--config", path.to_str().unwrap()])
        .env("VENICE_API_KEY", "k")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("upstream.read_timeout"), "{err}");
}

#[test]
fn help_documents_the_commands_and_flags() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "demo", "check-config"] {
        assert!(text.contains(word), "{text}");
    }
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--listen", "--upstream", "--data-dir"] {
        assert!(text.contains(flag), "{text}");
    }
}

#[test]
fn demo_runs_without_a_key_and_serves_live_state() {
    let addr = common::free_addr();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("demo.toml");
    std::fs::write(
        &cfg,
        "[demo]\nclient_interval = \"50ms\"\nlatency = \"0s\"\ntoken_interval = \"0s\"\n",
    )
    .unwrap();
    let mut child = bin()
        .args([
            "demo",
            "--listen",
            &addr.to_string(),
            "--config",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("SIDEPANEL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Killed(child);
    let mut banner = String::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("Ctrl-C") {
            break;
        }
    }
    // Keep draining stdout so the demo never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(banner.contains(&format!("http://{addr}/")), "{banner}");
    assert!(banner.contains("baseURL"), "{banner}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = common::client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let state: Option<serde_json::Value> = match c
                .get(format!("http://{addr}/api/sidepanel/state"))
                .send()
                .await
            {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            if let Some(s) = state {
                if s["totals"]["requests"].as_u64().unwrap_or(0) >= 3
                    && s["totals"]["total_tokens"].as_u64().unwrap_or(0) > 0
                    && s["balance"]["usd"].is_number()
                {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "demo traffic never showed up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn the_key_never_appears_in_trace_logs() {
    let secret = "sk-venice-secret-4242";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(sidepanel::simulator::spawn(
            sidepanel::simulator::SimConfig {
                api_key: Some(secret.to_owned()),
                ..Default::default()
            },
        ))
        .unwrap();
    let addr = common::free_addr();
    let data = tempfile::tempdir().unwrap();
    let child = bin()
        .args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--upstream",
            &sim.base_url(),
            "--data-dir",
            data.path().to_str().unwrap(),
        ])
        .env("VENICE_API_KEY", secret)
        .env("SIDEPANEL_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    let stderr = guard.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s).ok();
        s
    });
    rt.block_on(async {
        let c = common::client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let resp = loop {
            match c
                .post(format!("http://{addr}/api/v1/chat/completions"))
                .bearer_auth("client-key")
                .json(&common::chat("kimi-k2-5", true, 8))
                .send()
                .await
            {
                Ok(r) => break r,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("gateway never answered: {e}"),
            }
        };
        assert_eq!(resp.status(), 200, "the upstream accepted the injected key");
        resp.text().await.unwrap();
        // The request is logged before it is recorded: wait for the record, then stop.
        loop {
            let s: serde_json::Value = c
                .get(format!("http://{addr}/api/sidepanel/state"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if s["totals"]["requests"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never recorded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    drop(guard);
    let log = log.join().unwrap();
    assert!(log.contains("proxied"), "trace log captured");
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
    assert!(leaks.is_empty(), "the key leaked into the log: {leaks:#?}");
}
