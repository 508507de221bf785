//! The metrics catalogue agrees with what the gateway exports and what the shipped dashboards
//! and alert rules use: every exported family is in `docs/METRICS.md` with its type and labels,
//! every listed metric is exported, every metric a dashboard or rule names is listed, the
//! dashboards are importable (datasource variable, unique ids, a query per panel), and label
//! values stay bounded under hostile input (many models, odd paths, session ids).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::*;
use serde_json::Value;
use sidepanel::simulator::{self, SimConfig};

/// A metric as `docs/METRICS.md` lists it.
#[derive(Debug)]
struct Doc {
    kind: String,
    labels: BTreeSet<String>,
    /// Exported only once its value is known.
    optional: bool,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The metric tables of `docs/METRICS.md`: `| \`name\` | type | unit | labels | meaning |`.
fn catalogue() -> BTreeMap<String, Doc> {
    let mut out = BTreeMap::new();
    for line in read("docs/METRICS.md").lines() {
        let cells: Vec<&str> = line
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        if cells.len() != 5 || !["counter", "gauge", "histogram"].contains(&cells[1]) {
            continue;
        }
        let name = cells[0].trim_matches('`').to_owned();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty() && l != "—")
            .collect();
        let optional = cells[4].contains("*when known*") || cells[4].contains("*when set*");
        let doc = Doc {
            kind: cells[1].to_owned(),
            labels,
            optional,
        };
        assert!(
            out.insert(name.clone(), doc).is_none(),
            "{name} listed twice"
        );
    }
    assert!(out.len() > 40, "catalogue not parsed: {out:?}");
    out
}

/// Families in an exposition: name → (type, label names seen).
fn exported(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_owned(), (kind.to_owned(), BTreeSet::new()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.split(' ').next().unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| out.contains_key(*f)))
                .unwrap_or(name);
            let entry = out.get_mut(family).expect("sample after its # TYPE");
            for pair in labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|p| !p.is_empty())
            {
                let label = pair.split('=').next().unwrap();
                if label != "le" {
                    entry.1.insert(label.to_owned());
                }
            }
        }
    }
    out
}

/// Metric names a PromQL text mentions (`sidepanel_*`, `process_*`), histogram suffixes removed
/// when the base is a histogram.
fn mentioned(text: &str, docs: &BTreeMap<String, Doc>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["sidepanel_", "process_"] {
        for (i, _) in text.match_indices(prefix) {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| docs.get(*b).is_some_and(|d| d.kind == "histogram"));
            out.insert(base.map(str::to_owned).unwrap_or(name));
        }
    }
    out
}

/// `sidepanel_requests_total` summed by its `model` label.
fn requests_by_model(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("sidepanel_requests_total{"))
    {
        let model = line.split("model=\"").nth(1).unwrap().split('"').next();
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry(model.unwrap().to_owned()).or_default() += value;
    }
    out
}

/// Scrapes `/metrics` until `sidepanel_requests_total` counts `n` requests: the hub updates its
/// metrics just after the state that `requests_recorded` waits on.
async fn requests_counted(gw: &sidepanel::app::Running, n: f64) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics_text(gw).await;
        if requests_by_model(&text).values().sum::<f64>() >= n {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {n} requests in /metrics:\n{text}"
        );
        tokio::task::yield_now().await;
    }
}

async fn post_chat(gw: &sidepanel::app::Running, model: &str, stream: bool) -> u16 {
    let resp = client()
        .post(format!("{}/chat/completions", api(gw)))
        .header("x-session-id", "ses_secret_label_probe")
        .json(&chat(model, stream, 8))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    resp.bytes().await.unwrap();
    status
}

fn sim_config() -> SimConfig {
    SimConfig {
        api_key: Some(GATEWAY_KEY.to_owned()),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exported_metric_is_catalogued_with_its_type_and_labels() {
    let docs = catalogue();
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    assert_eq!(post_chat(&gw, "kimi-k2-5", true).await, 200);
    assert_eq!(post_chat(&gw, "kimi-k2-5", false).await, 200);
    requests_recorded(&gw, 2).await;
    let families = exported(&metrics_text(&gw).await);

    for (name, (kind, labels)) in &families {
        let doc = docs
            .get(name)
            .unwrap_or_else(|| panic!("{name} is exported but not in docs/METRICS.md"));
        assert_eq!(&doc.kind, kind, "{name}: type");
        assert!(
            labels.is_subset(&doc.labels),
            "{name}: labels {labels:?}, documented {:?}",
            doc.labels
        );
    }
    for (name, doc) in &docs {
        if doc.optional || name == "sidepanel_upstream_malformed_headers_total" {
            continue;
        }
        let (_, labels) = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} is documented but not exported"));
        assert_eq!(labels, &doc.labels, "{name}: labels of its series");
    }
    gw.stop().unwrap();
}

#[test]
fn dashboards_and_rules_use_only_catalogued_metrics() {
    let docs = catalogue();
    let sources = [
        "config/prometheus-rules.yml",
        "dashboards/grafana/overview.json",
        "dashboards/grafana/model.json",
    ];
    let mut used = BTreeSet::new();
    for path in sources {
        for name in mentioned(&read(path), &docs) {
            assert!(
                docs.contains_key(&name),
                "{path} uses {name}, not in docs/METRICS.md"
            );
            used.insert(name);
        }
    }
    // The dashboards show what matters: at least these families are on a panel.
    for must in [
        "sidepanel_requests_total",
        "sidepanel_time_to_first_token_seconds",
        "sidepanel_gateway_overhead_seconds",
        "sidepanel_cost_diem_total",
        "sidepanel_balance_usd",
        "sidepanel_ratelimit_remaining",
        "sidepanel_queue_wait_seconds",
        "sidepanel_lean_server_state",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(must), "no dashboard or rule shows {must}");
    }
}

#[test]
fn dashboards_are_importable_with_a_datasource_variable() {
    for (name, uid) in [
        ("overview", "sidepanel-overview"),
        ("model", "sidepanel-model"),
    ] {
        let d: Value =
            serde_json::from_str(&read(&format!("dashboards/grafana/{name}.json"))).unwrap();
        assert_eq!(d["uid"], uid);
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{name}: schemaVersion"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "DS_PROMETHEUS")
            .expect("DS_PROMETHEUS");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        if name == "model" {
            assert!(vars
                .iter()
                .any(|v| v["name"] == "model" && v["type"] == "query"));
        }
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{name}: duplicate panel id"
            );
            let g = &p["gridPos"];
            assert!(
                g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
                "{name}: gridPos"
            );
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap();
            assert_eq!(
                p["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{name}: {title}"
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has no query");
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${DS_PROMETHEUS}",
                    "{name}: {title}"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{name}: {title}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_stay_bounded_under_hostile_input() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let gw = gateway(config(&sim.base_url())).await;
    let models = sidepanel::metrics::DEFAULT_MAX_MODELS + 10;
    for i in 0..models {
        post_chat(&gw, &format!("made-up-model-{i}"), false).await;
    }
    let odd = client()
        .get(format!("{}/ses_path_probe/x?y=1", api(&gw)))
        .send()
        .await
        .unwrap();
    odd.bytes().await.unwrap();
    requests_recorded(&gw, models as u64 + 1).await;
    let text = metrics_text(&gw).await;
    for secret in [
        "ses_secret_label_probe",
        "ses_path_probe",
        GATEWAY_KEY,
        CLIENT_KEY,
    ] {
        assert!(!text.contains(secret), "{secret} leaked into a label value");
    }
    let values: BTreeSet<String> = requests_by_model(&text).into_keys().collect();
    assert!(
        values.contains("other"),
        "models past the cap fold into other: {values:?}"
    );
    assert!(
        values.len() <= sidepanel::metrics::DEFAULT_MAX_MODELS + 2,
        "{} model values",
        values.len()
    );
    gw.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_max_models_from_the_config_folds_later_models_into_other() {
    let sim = simulator::spawn(sim_config()).await.unwrap();
    let mut cfg = config(&sim.base_url());
    cfg.metrics.max_models = 2;
    let gw = gateway(cfg).await;
    // Sequential, so the first two models seen are these two.
    for model in ["kimi-k2-5", "llama-3.3-70b", "deepseek-v4-flash"] {
        assert_eq!(post_chat(&gw, model, false).await, 200, "{model}");
    }
    let text = requests_counted(&gw, 3.0).await;
    let requests = requests_by_model(&text);
    let expected: BTreeMap<String, f64> =
        [("kimi-k2-5", 1.0), ("llama-3.3-70b", 1.0), ("other", 1.0)]
            .into_iter()
            .map(|(m, n)| (m.to_owned(), n))
            .collect();
    assert_eq!(requests, expected, "requests by model label:\n{text}");
    gw.stop().unwrap();
}
