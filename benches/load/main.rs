//! The side-by-side load harness (issue 9): the built-in simulator as the upstream, and
//! (a) the simulator directly — the floor, (b) `sidepanel serve` (release, metrics + hub +
//! store + limiter on, a dashboard client connected), (c) nginx as a plain `proxy_pass` with
//! upstream keepalive, (d) the LiteLLM proxy, (e) TensorZero's embedded gateway — one target at
//! a time, all on loopback, measured by an in-process Rust client (hyper, one connection per
//! worker, `TCP_NODELAY`).
//!
//! Run it with `bash benches/load/run.sh` (installs the peers, builds, runs this in a private
//! network namespace when it can); `--smoke` for a short run. Results: a table on stdout and
//! `target/load-bench/results.json`. Not part of `cargo test`.
//!
//! Every figure is against (a) in the same run. Per round, the concurrency-1 and TTFT
//! measurements alternate (a) and the target; the reported value is the median over rounds of
//! the per-round difference. Throughput and streams are searched per target per round; the
//! reported value is the median over rounds.

mod http;
mod measure;
mod procs;
mod targets;
mod ws;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use measure::{closed, median, rate_search, streams, ttft, Closed, RateSearch, StreamLevel, Ttft};
use procs::RssSampler;
use targets::{Ctx, Kind, Running};

/// The throughput bound: highest rate with p99 at or under this.
const P99_BOUND_MS: f64 = 20.0;
/// A stream stalls when no byte arrives for this long (tokens are paced at 20 ms).
const STALL: Duration = Duration::from_secs(1);
const TOKEN_INTERVAL: Duration = Duration::from_millis(20);

struct Plan {
    smoke: bool,
    rounds: usize,
    seq: Duration,
    rate: Duration,
    bisections: u32,
    ttft: Duration,
    ttft_conc: usize,
    levels: Vec<usize>,
    prop_n: usize,
    max_conns: usize,
    only: Vec<Kind>,
    /// `--hold SECS CONNS`: only load each target (closed loop; sidepanel with its dashboard client
    /// connected, as in a full run) for profiling, no figures.
    hold: Option<(Duration, usize)>,
}

impl Plan {
    fn from_args() -> Plan {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = args.iter().any(|a| a == "--smoke");
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let only = value("--only")
            .map(|v| {
                Kind::ALL
                    .into_iter()
                    .filter(|k| {
                        v.split(',')
                            .any(|s| s == k.key() || s.starts_with(k.letter()))
                    })
                    .collect()
            })
            .unwrap_or_else(|| Kind::ALL.to_vec());
        let rounds = value("--rounds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 1 } else { 3 });
        let secs = |full: u64, quick: u64| Duration::from_secs(if smoke { quick } else { full });
        Plan {
            smoke,
            rounds,
            seq: secs(3, 1),
            rate: secs(3, 1),
            bisections: if smoke { 1 } else { 3 },
            ttft: secs(5, 2),
            ttft_conc: 10,
            levels: value("--levels")
                .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
                .unwrap_or_else(|| {
                    if smoke {
                        vec![1, 10, 100]
                    } else {
                        vec![1, 10, 100, 250, 500, 1000]
                    }
                }),
            prop_n: if smoke { 50 } else { 200 },
            max_conns: 64,
            only,
            hold: value("--hold").and_then(|v| v.parse().ok()).map(|secs| {
                let conns = args
                    .iter()
                    .position(|a| a == "--hold")
                    .and_then(|i| args.get(i + 2))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                (Duration::from_secs(secs), conns)
            }),
        }
    }
}

fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

fn machine() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let mem = read("/proc/meminfo")
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let os = read("/etc/os-release")
        .lines()
        .find(|l| l.starts_with("PRETTY_NAME="))
        .map(|l| {
            l.trim_start_matches("PRETTY_NAME=")
                .trim_matches('"')
                .to_owned()
        })
        .unwrap_or_default();
    json!({
        "cpu": model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory": mem.trim_start_matches("MemTotal:").trim(),
        "os": os,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Checks a target answers one chat request and one stream; the reason when it does not.
async fn probe(t: &Running) -> Result<(), String> {
    let ep = &t.ep;
    let mut c = http::Conn::open(ep.addr).await.map_err(|e| e.to_string())?;
    if let Err(e) = c.exchange(ep, &ep.body(false, 16), "ses_probe").await {
        return Err(format!(
            "chat request failed: {e}{}",
            probe_body(ep, false).await
        ));
    }
    let s = c
        .stream(
            ep,
            &ep.body(true, 8),
            "ses_probe",
            Instant::now(),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| format!("streamed request failed: {e}"))?;
    if !s.done || s.first_token.is_none() {
        return Err(format!(
            "stream incomplete (done {}, first token {:?}){}",
            s.done,
            s.first_token,
            probe_body(ep, true).await
        ));
    }
    Ok(())
}

/// The body of a failed probe, for the report.
async fn probe_body(ep: &http::Endpoint, stream: bool) -> String {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("http://{}{}", ep.addr, ep.path))
        .header("content-type", "application/json")
        .body(ep.body(stream, 8));
    if let Some(a) = &ep.auth {
        req = req.header("authorization", a);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            format!(
                " ({status}: {})",
                text.chars().take(300).collect::<String>()
            )
        }
        Err(e) => format!(" ({e})"),
    }
}

#[derive(Default)]
struct Rounds {
    c1: Vec<Closed>,
    c1_direct: Vec<Closed>,
    ttft: Vec<Ttft>,
    ttft_direct: Vec<Ttft>,
    rate: Vec<RateSearch>,
    max: Vec<Closed>,
    streams: Vec<Vec<StreamLevel>>,
}

fn highest_passed(levels: &[StreamLevel]) -> usize {
    levels
        .iter()
        .take_while(|l| l.pass)
        .last()
        .map_or(0, |l| l.concurrency)
}

/// The dashboard: a WebSocket client connected for the whole run (sidepanel only), so every
/// update is broadcast as it is in use.
async fn attach_dashboard(t: &Running) -> Option<(tokio::task::JoinHandle<()>, Arc<AtomicU64>)> {
    let tok = t.ws_token.as_ref().filter(|_| t.kind == Kind::Sidepanel)?;
    match ws::connect(t.ep.addr, tok).await {
        Ok(w) => Some(ws::dashboard(w)),
        Err(e) => {
            eprintln!("    dashboard client: {e}");
            None
        }
    }
}

async fn measure_target(plan: &Plan, t: &mut Running, direct: &http::Endpoint) -> Value {
    let kind = t.kind;
    let pid = t.proc.as_ref().map(procs::Proc::pid);
    let sampler = RssSampler::new(pid);
    let rss_idle = pid.map(procs::rss_kib).unwrap_or(0);
    let body = t.ep.body(false, 16);
    let dbody = direct.body(false, 16);
    let sbody = t.ep.body(true, 8);
    let dsbody = direct.body(true, 8);
    let long = t.ep.body(true, 64);

    let dash = attach_dashboard(t).await;

    eprintln!("    warm-up");
    let _ = closed(&t.ep, &body, 4, Duration::from_secs(1)).await;
    let rss_warm = pid.map(procs::rss_kib).unwrap_or(0);
    let cpu0 = pid.map(procs::cpu_secs).unwrap_or(0.0);

    let mut r = Rounds::default();
    let mut c1_requests = 0usize;
    let mut cpu_c1 = 0.0;
    for round in 0..plan.rounds {
        eprintln!("    round {}: concurrency 1", round + 1);
        if kind != Kind::Direct {
            r.c1_direct.push(closed(direct, &dbody, 1, plan.seq).await);
        }
        let c0 = pid.map(procs::cpu_secs).unwrap_or(0.0);
        let c = closed(&t.ep, &body, 1, plan.seq).await;
        cpu_c1 += pid.map(procs::cpu_secs).unwrap_or(0.0) - c0;
        c1_requests += c.latency.n;
        eprintln!(
            "      p50 {:.3} ms p99 {:.3} ms ({} requests, {} errors)",
            c.latency.p50, c.latency.p99, c.latency.n, c.errors
        );
        r.c1.push(c);
        eprintln!(
            "    round {}: time to first token, {} streams at once",
            round + 1,
            plan.ttft_conc
        );
        if kind != Kind::Direct {
            r.ttft_direct
                .push(ttft(direct, &dsbody, plan.ttft_conc, plan.ttft).await);
        }
        let s = ttft(&t.ep, &sbody, plan.ttft_conc, plan.ttft).await;
        eprintln!(
            "      first token p50 {:.3} ms p99 {:.3} ms ({} streams, {} errors)",
            s.first_token.p50, s.first_token.p99, s.first_token.n, s.errors
        );
        r.ttft.push(s);
    }
    let rss_sampling = sampler.start();
    for round in 0..plan.rounds {
        eprintln!(
            "    round {}: highest rate with p99 <= {P99_BOUND_MS} ms",
            round + 1
        );
        r.rate.push(
            rate_search(
                &t.ep,
                &body,
                100.0,
                100_000.0,
                plan.rate,
                P99_BOUND_MS,
                plan.bisections,
            )
            .await,
        );
        eprintln!(
            "    round {}: saturation, {} connections",
            round + 1,
            plan.max_conns
        );
        let m = closed(&t.ep, &body, plan.max_conns, plan.rate).await;
        eprintln!(
            "      {:.0} req/s, p99 {:.2} ms, {} errors",
            m.rps, m.latency.p99, m.errors
        );
        r.max.push(m);
    }
    let rss_rate = rss_sampling.stop().await;
    for round in 0..plan.rounds {
        eprintln!(
            "    round {}: concurrent streams (64 tokens, 20 ms apart)",
            round + 1
        );
        let mut levels = Vec::new();
        for &c in &plan.levels {
            let spread = Duration::from_millis((c as u64).min(500));
            let l = streams(&t.ep, &long, c, spread, STALL, &sampler).await;
            eprintln!(
                "      {c:>5} streams: completed {} errors {} stalled {} ttft p99 {:.1} ms max gap p99 {:.1} ms rss {:.1} MiB -> {}{}",
                l.completed,
                l.errors,
                l.stalled,
                l.first_token.p99,
                l.max_gap.p99,
                mib(l.rss_max_kib),
                if l.pass { "pass" } else { "FAIL" },
                l.first_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
            let pass = l.pass;
            levels.push(l);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !pass {
                break;
            }
        }
        r.streams.push(levels);
    }
    let mut prop = Value::Null;
    if let (Some(tok), Kind::Sidepanel) = (&t.ws_token, kind) {
        eprintln!("    propagation: response -> WebSocket update, idle");
        let idle = ws::propagation(&t.ep, &body, tok, plan.prop_n, "idle").await;
        eprintln!("    propagation: under 1,000 req/s of other traffic");
        let ep = t.ep.clone();
        let b = body.clone();
        let dur = Duration::from_secs_f64((plan.prop_n as f64 * 0.004).max(2.0));
        let load = tokio::spawn(async move { measure::open_loop(&ep, &b, 1000.0, dur, 1e9).await });
        let busy = ws::propagation(&t.ep, &body, tok, plan.prop_n, "busy").await;
        let load = load.await.ok();
        for (name, p) in [("idle", &idle), ("busy", &busy)] {
            match p {
                Ok(p) => eprintln!(
                    "      {name}: p50 {:.3} ms p99 {:.3} ms (n {}, missed {}, errors {})",
                    p.latency.p50, p.latency.p99, p.latency.n, p.missed, p.errors
                ),
                Err(e) => eprintln!("      {name}: {e}"),
            }
        }
        prop = json!({
            "idle": idle.map(|p| json!(p)).unwrap_or_else(|e| json!({"error": e})),
            "under_1000_rps": busy.map(|p| json!(p)).unwrap_or_else(|e| json!({"error": e})),
            "background_load": load,
        });
    }
    let dashboard_updates = match dash {
        Some((task, seen)) => {
            task.abort();
            json!(seen.load(std::sync::atomic::Ordering::Relaxed))
        }
        None => Value::Null,
    };
    let rss_1000 = r
        .streams
        .iter()
        .flatten()
        .filter(|l| l.concurrency == *plan.levels.last().unwrap_or(&0))
        .map(|l| l.rss_max_kib)
        .max()
        .unwrap_or(0);
    let hwm = pid.map(procs::hwm_kib).unwrap_or(0);
    let cpu_total = pid.map(procs::cpu_secs).unwrap_or(0.0) - cpu0;

    // Figures against (a).
    let diff = |f: &dyn Fn(&Closed) -> f64| -> Vec<f64> {
        r.c1.iter()
            .zip(&r.c1_direct)
            .map(|(t, d)| f(t) - f(d))
            .collect()
    };
    let tdiff = |f: &dyn Fn(&Ttft) -> f64| -> Vec<f64> {
        r.ttft
            .iter()
            .zip(&r.ttft_direct)
            .map(|(t, d)| f(t) - f(d))
            .collect()
    };
    let stream_best: Vec<f64> = r.streams.iter().map(|l| highest_passed(l) as f64).collect();
    let figures = json!({
        "c1_p50_ms": median(&r.c1.iter().map(|c| c.latency.p50).collect::<Vec<_>>()),
        "c1_p99_ms": median(&r.c1.iter().map(|c| c.latency.p99).collect::<Vec<_>>()),
        "c1_direct_p50_ms": median(&r.c1_direct.iter().map(|c| c.latency.p50).collect::<Vec<_>>()),
        "c1_direct_p99_ms": median(&r.c1_direct.iter().map(|c| c.latency.p99).collect::<Vec<_>>()),
        "added_p50_ms": median(&diff(&|c| c.latency.p50)),
        "added_p99_ms": median(&diff(&|c| c.latency.p99)),
        "added_p50_ms_rounds": diff(&|c| c.latency.p50),
        "added_p99_ms_rounds": diff(&|c| c.latency.p99),
        "c1_errors": r.c1.iter().map(|c| c.errors).sum::<u64>(),
        "ttft_p50_ms": median(&r.ttft.iter().map(|c| c.first_token.p50).collect::<Vec<_>>()),
        "ttft_p99_ms": median(&r.ttft.iter().map(|c| c.first_token.p99).collect::<Vec<_>>()),
        "added_ttft_p50_ms": median(&tdiff(&|c| c.first_token.p50)),
        "added_ttft_p99_ms": median(&tdiff(&|c| c.first_token.p99)),
        "added_ttft_p99_ms_rounds": tdiff(&|c| c.first_token.p99),
        "ttft_errors": r.ttft.iter().map(|c| c.errors).sum::<u64>(),
        "rps_p99_le_20ms": median(&r.rate.iter().map(|s| s.best_rps).collect::<Vec<_>>()),
        "rps_p99_le_20ms_rounds": r.rate.iter().map(|s| s.best_rps).collect::<Vec<_>>(),
        "max_rps_64_conns": median(&r.max.iter().map(|c| c.rps).collect::<Vec<_>>()),
        "streams_sustained": median(&stream_best),
        "streams_sustained_rounds": stream_best,
        "rss_idle_mib": mib(rss_idle),
        "rss_after_warmup_mib": mib(rss_warm),
        "rss_max_during_rate_mib": mib(rss_rate),
        "rss_at_max_streams_mib": mib(rss_1000),
        "rss_peak_hwm_mib": mib(hwm),
        "cpu_ms_per_request_c1": if c1_requests > 0 { cpu_c1 * 1000.0 / c1_requests as f64 } else { f64::NAN },
        "cpu_seconds_total": cpu_total,
    });
    json!({
        "figures": figures,
        "propagation": prop,
        "dashboard_updates": dashboard_updates,
        "raw": {
            "c1": r.c1, "c1_direct": r.c1_direct,
            "ttft": r.ttft, "ttft_direct": r.ttft_direct,
            "rate": r.rate, "max": r.max, "streams": r.streams,
        },
    })
}

fn fmt(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

fn summary(results: &Value) -> String {
    let mut s = String::new();
    let direct = &results["targets"]["direct"]["figures"];
    s.push_str("| target | c=1 p50 / p99 (ms) | added p50 / p99 (ms) | RPS p99≤20 ms (× direct) | max RPS, 64 conns | TTFT p99 (ms) | added TTFT p50 / p99 (ms) | streams sustained | RSS idle / peak (MiB) | RSS at max streams (MiB) |\n");
    s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for k in Kind::ALL {
        let t = &results["targets"][k.key()];
        if t.is_null() {
            continue;
        }
        let name = format!("({}) {}", k.letter(), k.key());
        if let Some(reason) = t["unavailable"].as_str() {
            s.push_str(&format!(
                "| {name} | not measured: {reason} | | | | | | | | |\n"
            ));
            continue;
        }
        let f = &t["figures"];
        let ratio = match (
            f["rps_p99_le_20ms"].as_f64(),
            direct["rps_p99_le_20ms"].as_f64(),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.0} ({:.2}×)", a, a / b),
            (Some(a), _) => format!("{a:.0}"),
            _ => "–".into(),
        };
        let added = if k == Kind::Direct {
            "—".to_owned()
        } else {
            format!(
                "{} / {}",
                fmt(&f["added_p50_ms"], 3),
                fmt(&f["added_p99_ms"], 3)
            )
        };
        let added_ttft = if k == Kind::Direct {
            "—".to_owned()
        } else {
            format!(
                "{} / {}",
                fmt(&f["added_ttft_p50_ms"], 3),
                fmt(&f["added_ttft_p99_ms"], 3)
            )
        };
        s.push_str(&format!(
            "| {name} | {} / {} | {added} | {ratio} | {} | {} | {added_ttft} | {} | {} / {} | {} |\n",
            fmt(&f["c1_p50_ms"], 3),
            fmt(&f["c1_p99_ms"], 3),
            fmt(&f["max_rps_64_conns"], 0),
            fmt(&f["ttft_p99_ms"], 2),
            fmt(&f["streams_sustained"], 0),
            fmt(&f["rss_idle_mib"], 1),
            fmt(&f["rss_peak_hwm_mib"], 1),
            fmt(&f["rss_at_max_streams_mib"], 1),
        ));
    }
    let p = &results["targets"]["sidepanel"]["propagation"];
    if !p.is_null() {
        s.push_str(&format!(
            "\nPropagation, sidepanel response -> WebSocket update: idle p50 {} ms p99 {} ms; under 1,000 req/s p50 {} ms p99 {} ms\n",
            fmt(&p["idle"]["latency"]["p50"], 3),
            fmt(&p["idle"]["latency"]["p99"], 3),
            fmt(&p["under_1000_rps"]["latency"]["p50"], 3),
            fmt(&p["under_1000_rps"]["latency"]["p99"], 3),
        ));
    }
    s
}

fn main() {
    let plan = Plan::from_args();
    let nofile = raise_nofile();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::var_os("SIDEPANEL_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/load-bench"));
    std::fs::create_dir_all(&out).expect("output directory");
    let sidepanel_bin = std::env::var_os("SIDEPANEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/sidepanel"));
    let floor_bin = std::env::var_os("SIDEPANEL_BENCH_FLOOR").map(PathBuf::from);
    let peers = std::env::var_os("SIDEPANEL_BENCH_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/sidepanel-bench")
        });
    let started = SystemTime::now();
    let load_before = loadavg();
    eprintln!(
        "load harness: {} rounds{}, output {}, loadavg {load_before}",
        plan.rounds,
        if plan.smoke { " (smoke)" } else { "" },
        out.display()
    );
    let (sim, sim_addr) = targets::start_simulator(&sidepanel_bin, &out, TOKEN_INTERVAL)
        .unwrap_or_else(|e| panic!("simulator: {e}"));
    let ctx = Ctx {
        out: out.clone(),
        sidepanel_bin,
        floor_bin,
        peers,
        sim: sim_addr,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let direct = targets::start(Kind::Direct, &ctx).expect("direct");
    let mut results = json!({
        "date_utc": httpdate::fmt_http_date(started),
        "unix_time": started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine(),
        "smoke": plan.smoke,
        "rounds": plan.rounds,
        "nofile": nofile,
        "network_namespace": std::env::var("SIDEPANEL_BENCH_NETNS").unwrap_or_default(),
        "loadavg_before": load_before,
        "settings": {
            "c1_seconds": plan.seq.as_secs_f64(),
            "rate_seconds_per_point": plan.rate.as_secs_f64(),
            "p99_bound_ms": P99_BOUND_MS,
            "ttft_seconds": plan.ttft.as_secs_f64(), "ttft_concurrency": plan.ttft_conc,
            "ttft_stream_tokens": 8, "token_interval_ms": TOKEN_INTERVAL.as_millis() as u64,
            "stream_levels": plan.levels, "stream_tokens": 64, "stall_ms": STALL.as_millis() as u64,
            "request_body_bytes": direct.ep.body(false, 16).len(),
            "completion_tokens": 16,
        },
        "simulator_pid": sim.pid(),
        "targets": {},
    });
    for kind in plan.only.clone() {
        eprintln!("({}) {}", kind.letter(), kind.key());
        let value = match targets::start(kind, &ctx) {
            Err(reason) => {
                eprintln!("    unavailable: {reason}");
                json!({"unavailable": reason})
            }
            Ok(mut t) => {
                let version = t.version.clone();
                let startup = t.startup;
                match rt.block_on(probe(&t)) {
                    Err(reason) => {
                        eprintln!("    unavailable: {reason}");
                        json!({"unavailable": reason, "version": version})
                    }
                    Ok(()) if plan.hold.is_some() => {
                        let (secs, conns) = plan.hold.unwrap_or_default();
                        eprintln!(
                            "    HOLD pid {} addr {}: {conns} connections for {secs:?}",
                            t.proc.as_ref().map_or(0, procs::Proc::pid),
                            t.ep.addr
                        );
                        let dash = rt.block_on(attach_dashboard(&t));
                        let c = rt.block_on(closed(&t.ep, &t.ep.body(false, 16), conns, secs));
                        if let Some((task, _)) = dash {
                            task.abort();
                        }
                        eprintln!(
                            "    {:.0} req/s p50 {:.3} ms p99 {:.3} ms cpu {:.1} s",
                            c.rps,
                            c.latency.p50,
                            c.latency.p99,
                            t.proc.as_ref().map_or(0.0, |p| procs::cpu_secs(p.pid()))
                        );
                        json!({"hold": c})
                    }
                    Ok(()) => {
                        eprintln!("    {version}, listening after {startup:?}");
                        let mut v = rt.block_on(measure_target(&plan, &mut t, &direct.ep));
                        v["version"] = json!(version);
                        v["startup_ms"] = json!(startup.as_secs_f64() * 1000.0);
                        v
                    }
                }
            }
        };
        results["targets"][kind.key()] = value;
        // Write after every target, so a long run that is cut short still leaves results.
        let _ = std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(&results).unwrap_or_default(),
        );
    }
    results["loadavg_after"] = json!(loadavg());
    results["simulator_rss_peak_mib"] = json!(mib(procs::hwm_kib(sim.pid())));
    results["duration_s"] = json!(started.elapsed().map(|d| d.as_secs()).unwrap_or(0));
    drop(sim);
    let text = serde_json::to_string_pretty(&results).unwrap_or_default();
    let stamp = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let _ = std::fs::write(out.join("results.json"), &text);
    let _ = std::fs::write(out.join(format!("results-{stamp}.json")), &text);
    let table = summary(&results);
    let _ = std::fs::write(out.join("summary.md"), &table);
    println!("{table}");
    println!("results: {}", out.join("results.json").display());
}
