//! `sidepanel key set | status | clear` with the real binary: the Venice key read from
//! standard input is sealed in the session store (in clear in no file of the data dir), and
//! `serve` uses it for upstream calls when no key comes from the environment or the config
//! file — the simulator refuses any other bearer key — while `VENICE_API_KEY` still wins.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;

use common::child::Killed;
use common::free_addr;

const KEY: &str = "sk-venice-stored-key-6b1d92";

/// `sidepanel <args> --data-dir <data> --config <config>` without any key in the environment.
fn sidepanel(args: &[&str], data: &Path, config: &Path) -> Command {
    let mut c = common::child::sidepanel();
    c.args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env_remove("VENICE_API_KEY")
        .env_remove("SIDEPANEL_UPSTREAM");
    c
}

fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sidepanel");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("sidepanel ran");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Serves on a free port in front of `upstream`; proxies one chat call and returns its status.
async fn chat_status(mut serve: Command, upstream: &str) -> u16 {
    let addr = free_addr();
    serve.args(["--listen", &addr.to_string(), "--upstream", upstream]);
    let _server = Killed(
        serve
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve"),
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = json!({"model": "kimi-k2-5", "stream": false, "max_completion_tokens": 8,
                      "messages": [{"role": "user", "content": "hi"}]});
    c.post(format!("http://{addr}/api/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("chat answered")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_key_is_sealed_on_disk_and_used_upstream_when_no_other_key_is_given() {
    let sim = sidepanel::simulator::spawn(sidepanel::simulator::SimConfig {
        api_key: Some(KEY.into()),
        ..Default::default()
    })
    .await
    .expect("simulator");
    let upstream = sim.base_url();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("sidepanel.toml");
    std::fs::write(
        &config,
        "[upstream]\nmodels_refresh = \"off\"\n[admission]\nlimits_refresh = \"off\"\n\
         [lean]\nenabled = false\n",
    )
    .expect("config");

    // Nothing stored yet: serve would run keyless against a loopback upstream.
    let status = text(&run(sidepanel(&["key", "status"], &data, &config), b""));
    assert!(
        status.contains("stored key:") && status.contains("no"),
        "{status}"
    );

    // Set it through standard input (as a pipe: the whole input, trimmed).
    let set = text(&run(
        sidepanel(&["key", "set"], &data, &config),
        format!("{KEY}\n").as_bytes(),
    ));
    assert!(set.contains("stored the Venice key"), "{set}");
    assert!(!set.contains(KEY), "{set}");
    let status = text(&run(sidepanel(&["key", "status"], &data, &config), b""));
    assert!(
        status.contains("yes") && status.contains("the stored key"),
        "{status}"
    );
    assert!(!status.contains(KEY), "{status}");
    let check = text(&run(sidepanel(&["check-config"], &data, &config), b""));
    assert!(check.contains("stored encrypted"), "{check}");
    assert!(
        check.contains("store key:") && check.contains("retention:"),
        "{check}"
    );
    assert!(!check.contains(KEY), "{check}");

    // Sealed: in no file of the data dir in clear.
    let mut all = Vec::new();
    files(&data, &mut all);
    assert!(all.iter().any(|p| p.ends_with("sidepanel.db")), "{all:?}");
    for path in &all {
        let bytes = std::fs::read(path).expect("read");
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is in clear in {}",
            path.display()
        );
    }

    // serve uses it: the simulator accepts only that bearer key.
    let serve = sidepanel(&["serve"], &data, &config);
    assert_eq!(chat_status(serve, &upstream).await, 200);
    // VENICE_API_KEY wins over the stored key (and this one is wrong).
    let mut serve = sidepanel(&["serve"], &data, &config);
    serve.env("VENICE_API_KEY", "sk-some-other-key");
    assert_eq!(chat_status(serve, &upstream).await, 401);

    // Cleared: serve goes keyless again, which the simulator refuses.
    let clear = text(&run(sidepanel(&["key", "clear"], &data, &config), b""));
    assert!(clear.contains("removed"), "{clear}");
    let serve = sidepanel(&["serve"], &data, &config);
    assert_eq!(chat_status(serve, &upstream).await, 401);
}
