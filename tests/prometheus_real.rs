//! The shipped Prometheus and Grafana configuration against a real Prometheus: the gateway runs
//! in front of the simulator with traffic (streamed and non-streamed chats, a retried 429, an
//! upstream error), `promtool` checks the exposition, the rules and the scrape config, and a
//! Prometheus started here scrapes the gateway every second. Then every panel query of every
//! dashboard in `dashboards/grafana/` (variables substituted) must parse and return data, every
//! variable query must find its values, and every alert rule in `config/prometheus-rules.yml`
//! must evaluate without error.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, installed by `.ci/test`).
//! Without them the test says so and passes, unless `CI` is set, where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;
use sidepanel::simulator::{self, SimConfig};

/// The model the per-model dashboard is checked with (the simulator prices it).
const MODEL: &str = "kimi-k2-5";
/// The shipped alert rules.
const RULES: &str = "config/prometheus-rules.yml";
/// How long Prometheus gets to show a query's data or evaluate the rules.
const DEADLINE: Duration = Duration::from_secs(90);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `prometheus` and `promtool`, or `None` (with a printed reason) when the test is skipped.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let tool = |name: &str| {
        let mut dirs = std::env::split_paths(&path);
        dirs.find_map(|d| Some(d.join(name)).filter(|p| p.is_file()))
    };
    match (tool("prometheus"), tool("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ if std::env::var_os("CI").is_some() => {
            panic!("prometheus/promtool are not installed, and CI is set: .ci/test installs the Debian package `prometheus`")
        }
        _ => {
            println!("SKIPPED: prometheus and promtool are not on PATH (apt-get install prometheus); set CI=1 to make this a failure");
            None
        }
    }
}

/// Runs `promtool` with `args` and `stdin`; returns (success, stdout + stderr).
fn promtool(promtool: &Path, args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    drop(input);
    let out = child.wait_with_output().expect("promtool finishes");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A Prometheus server this test started; killed (by its pid) when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = repo(RULES);
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: sidepanel\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write config");
        let listen = free_addr();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Self {
            child,
            url: format!("http://{listen}"),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `path` until `done` accepts the JSON `data`, or panics at the deadline.
    async fn poll<T>(
        &self,
        what: &str,
        path: &str,
        done: impl Fn(&Value) -> Result<T, String>,
    ) -> T {
        let c = client();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut last = String::from("no answer");
        loop {
            if let Ok(resp) = c.get(format!("{}{path}", self.url)).send().await {
                match resp.json::<Value>().await {
                    Ok(v) if v["status"] == "success" => match done(&v["data"]) {
                        Ok(t) => return t,
                        Err(e) => last = e,
                    },
                    Ok(v) if v["errorType"] == "bad_data" => {
                        panic!("{what}: Prometheus refused it: {v}")
                    }
                    Ok(v) => last = v.to_string(),
                    Err(e) => last = e.to_string(),
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{what}: no data within {DEADLINE:?}; last: {last}\nprometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs an instant query until it returns at least one sample; returns the result.
    async fn query(&self, what: &str, expr: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", urlencode(expr));
        self.poll(what, &path, |data| match data["result"].as_array() {
            Some(r) if !r.is_empty() => Ok(r.clone()),
            _ => Err(format!("empty result for {expr}")),
        })
        .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One chat completion through the gateway; `fault` adds simulator fault headers.
async fn chat_once(
    gw: &sidepanel::app::Running,
    model: &str,
    stream: bool,
    fault: &[(&str, &str)],
) -> u16 {
    let mut req = client()
        .post(format!("{}/chat/completions", api(gw)))
        .bearer_auth(CLIENT_KEY)
        .header("x-session-id", "ses_metrics")
        .json(&chat(model, stream, 24));
    for (k, v) in fault {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status().as_u16();
    resp.bytes().await.expect("body");
    status
}

/// Simulator fault headers: `name` once, for requests carrying `key`.
fn fault<'a>(name: &'a str, key: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-sim-fault", name),
        ("x-sim-fault-count", "1"),
        ("x-sim-fault-key", key),
    ]
}

/// Traffic that touches every request-path metric: streamed and non-streamed chats on two
/// models, a 429 the gateway retries, an upstream 500 and a model listing.
async fn traffic(gw: &sidepanel::app::Running) -> u64 {
    for stream in [true, false, true] {
        assert_eq!(chat_once(gw, MODEL, stream, &[]).await, 200);
    }
    assert_eq!(chat_once(gw, "zai-org-glm-5-1", false, &[]).await, 200);
    let retried = chat_once(gw, MODEL, true, &fault("overloaded", "k")).await;
    assert_eq!(retried, 200, "the 429 is retried");
    assert!(chat_once(gw, MODEL, false, &fault("server_error", "e")).await >= 500);
    let models = client().get(format!("{}/models", api(gw))).send().await;
    assert_eq!(models.expect("models").status(), 200);
    7
}

/// Every panel query of a dashboard, with its title: `(title, expr)`.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(p) = stack.pop() {
        stack.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push((
                    p["title"].as_str().unwrap_or("?").to_owned(),
                    expr.to_owned(),
                ));
            }
        }
    }
    out
}

/// Grafana's variables as Prometheus would see them for this gateway.
fn substitute(expr: &str, instance: &str) -> String {
    let mut e = expr.to_owned();
    for (var, value) in [
        ("$__rate_interval", "1m"),
        ("$__interval", "5s"),
        ("$__range", "10m"),
        ("${instance}", instance),
        ("$instance", instance),
        ("${model}", MODEL),
        ("$model", MODEL),
    ] {
        e = e.replace(var, value);
    }
    assert!(!e.contains('$'), "unsubstituted variable in {expr}");
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_gateway_and_every_dashboard_query_and_alert_works() {
    let Some((prometheus, promtool_bin)) = tools() else {
        return;
    };
    let sim = simulator::spawn(SimConfig {
        api_key: Some(GATEWAY_KEY.to_owned()),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let gw = gateway(config(&sim.base_url())).await;
    let sent = traffic(&gw).await;
    requests_recorded(&gw, sent).await;

    // The exposition passes promtool's lint without a single remark.
    let metrics = client().get(format!("http://{}/metrics", gw.addr)).send();
    let text = metrics.await.unwrap().text().await.unwrap();
    let (ok, report) = promtool(&promtool_bin, &["check", "metrics"], &text);
    assert!(
        ok && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
    assert!(
        !text.contains("ses_metrics"),
        "a session id became a label value"
    );

    // The shipped rules and scrape config are valid.
    for (what, file) in [("rules", RULES), ("config", "config/prometheus.yml")] {
        let path = repo(file);
        let (ok, report) = promtool(&promtool_bin, &["check", what, path.to_str().unwrap()], "");
        assert!(ok, "promtool check {what} {file}:\n{report}");
    }

    let prom = Prometheus::start(&prometheus, &gw.addr.to_string());
    let instance = gw.addr.to_string();
    prom.query("gateway scraped", "up{job=\"sidepanel\"} == 1")
        .await;

    // Keep streamed traffic flowing so rates and quantiles have fresh samples.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let gw_addr = gw.addr;
    let background = tokio::spawn(async move {
        let url = format!("http://{gw_addr}/api/v1/chat/completions");
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                _ = tick.tick() => {
                    let body = chat(MODEL, true, 16);
                    if let Ok(r) = client().post(&url).json(&body).send().await {
                        let _ = r.bytes().await;
                    }
                }
            }
        }
    });

    let mut checked = 0;
    let mut nan = Vec::new();
    for name in ["overview", "model"] {
        let path = repo(&format!("dashboards/grafana/{name}.json"));
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            let Some(q) = var["definition"]
                .as_str()
                .filter(|_| var["type"] == "query")
            else {
                continue;
            };
            let (metric, label) = label_values(&substitute(q, &instance));
            let path = format!("/api/v1/series?match[]={}", urlencode(&metric));
            let want = if label == "model" {
                MODEL
            } else {
                instance.as_str()
            };
            prom.poll(&format!("{name}: variable {q}"), &path, |data| {
                let found = data
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s[&label] == want);
                found
                    .then_some(())
                    .ok_or_else(|| format!("{want} not among {data}"))
            })
            .await;
        }
        for (title, expr) in panel_queries(&dashboard) {
            let expr = substitute(&expr, &instance);
            let result = prom
                .query(&format!("{name}: panel {title:?}: {expr}"), &expr)
                .await;
            if result.iter().all(|r| r["value"][1] == "NaN") {
                nan.push(format!("{name}: {title}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} panel queries");
    println!("{checked} panel queries returned data; only NaN (no samples yet): {nan:?}");

    // Every alert rule has been evaluated, and without error.
    let expected = std::fs::read_to_string(repo(RULES)).unwrap();
    let expected = expected.matches("- alert:").count();
    prom.poll("alert rules evaluated", "/api/v1/rules", |data| {
        let rules: Vec<&Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        for r in &rules {
            if r["health"] == "err" {
                panic!("rule {} fails: {}", r["name"], r["lastError"]);
            }
        }
        let evaluated = rules
            .iter()
            .filter(|r| r["health"] == "ok" && r["lastError"].as_str().unwrap_or("").is_empty())
            .count();
        (rules.len() == expected && evaluated == expected)
            .then_some(())
            .ok_or_else(|| format!("{evaluated} of {expected} rules evaluated: {data}"))
    })
    .await;

    let _ = stop_tx.send(true);
    background.await.unwrap();
    drop(prom);
    gw.stop().unwrap();
}

/// `label_values(metric{…}, label)` as `(metric{…}, label)`.
fn label_values(q: &str) -> (String, String) {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unsupported variable query {q}"));
    let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
    (metric.trim().to_owned(), label.trim().to_owned())
}
