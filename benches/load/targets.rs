//! The things measured: (a) the simulator itself, (b) `sidepanel serve`, (c) nginx, (d) the
//! LiteLLM proxy, (e) TensorZero's embedded gateway and (f) a bare pingora proxy (the floor of
//! the library sidepanel is built on, `benches/pingora_floor.rs`) — each started as its own process with a
//! generated config in the output directory, all in front of the same simulator. A peer that is
//! not installed, does not start, or cannot answer a chat request is reported with the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::http::Endpoint;
use crate::procs::{wait_port, Proc};

/// What the targets share.
pub struct Ctx {
    pub out: PathBuf,
    pub sidepanel_bin: PathBuf,
    /// `benches/pingora_floor.rs`, built by `run.sh` (none: (f) is reported as not built).
    pub floor_bin: Option<PathBuf>,
    pub peers: PathBuf,
    pub sim: SocketAddr,
}

/// The simulator model every target ends up calling: no reasoning chunks before the content,
/// and a name that does not make LiteLLM fetch a Hugging Face tokenizer (it does for
/// "llama-3*", which stalls each request for ~20 s of retries without a network).
pub const SIM_MODEL: &str = "zai-org-glm-5-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Direct,
    Sidepanel,
    Nginx,
    Litellm,
    Tensorzero,
    Floor,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Direct,
        Kind::Sidepanel,
        Kind::Nginx,
        Kind::Litellm,
        Kind::Tensorzero,
        Kind::Floor,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Sidepanel => "sidepanel",
            Kind::Nginx => "nginx",
            Kind::Litellm => "litellm",
            Kind::Tensorzero => "tensorzero",
            Kind::Floor => "pingora-floor",
        }
    }

    pub fn letter(self) -> char {
        match self {
            Kind::Direct => 'a',
            Kind::Sidepanel => 'b',
            Kind::Nginx => 'c',
            Kind::Litellm => 'd',
            Kind::Tensorzero => 'e',
            Kind::Floor => 'f',
        }
    }
}

/// A started target.
pub struct Running {
    pub kind: Kind,
    pub ep: Endpoint,
    /// The target's own process (none for (a): the simulator is measured through `sim`).
    pub proc: Option<Proc>,
    pub version: String,
    pub startup: Duration,
    /// For sidepanel: the install token for `/ws`.
    pub ws_token: Option<String>,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

fn with_arg(bin: &Path, arg: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg(arg);
    c
}

fn version_of(mut cmd: Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            }
            s.lines().next().unwrap_or("").to_owned()
        })
        .unwrap_or_default()
}

/// The simulator as the common upstream, with streamed tokens paced at `token_interval`.
pub fn start_simulator(
    bin: &Path,
    out: &Path,
    token_interval: Duration,
) -> Result<(Proc, SocketAddr), String> {
    let addr = free_addr();
    let mut cmd = Command::new(bin);
    cmd.args([
        "simulate",
        "--listen",
        &addr.to_string(),
        "--token-interval",
        &format!("{}ms", token_interval.as_millis()),
        "--threads",
        "2",
        // Limits the gateways' limiters can represent (u32), far above the load.
        "--rpm",
        "1000000000",
        "--tpm",
        "4000000000",
    ]);
    let mut p = Proc::spawn("simulator", cmd, out)?;
    wait_port(&mut p, addr, Duration::from_secs(20))?;
    Ok((p, addr))
}

pub fn start(kind: Kind, ctx: &Ctx) -> Result<Running, String> {
    match kind {
        Kind::Direct => Ok(Running {
            kind,
            ep: Endpoint::chat(ctx.sim, "Bearer bench-key"),
            proc: None,
            version: version_of(with_arg(&ctx.sidepanel_bin, "--version")) + " simulator",
            startup: Duration::ZERO,
            ws_token: None,
        }),
        Kind::Sidepanel => sidepanel(ctx),
        Kind::Nginx => nginx(ctx),
        Kind::Litellm => litellm(ctx),
        Kind::Tensorzero => tensorzero(ctx),
        Kind::Floor => floor(ctx),
    }
}

/// (f): pingora with sidepanel's server settings (2 threads) and no gateway work.
fn floor(ctx: &Ctx) -> Result<Running, String> {
    let bin = ctx
        .floor_bin
        .clone()
        .ok_or("not built (cargo bench --bench pingora_floor --no-run; run.sh does it)")?;
    let addr = free_addr();
    let mut cmd = Command::new(&bin);
    cmd.arg(addr.to_string()).arg(ctx.sim.to_string()).arg("2");
    let mut p = Proc::spawn("pingora-floor", cmd, &ctx.out)?;
    let startup = wait_port(&mut p, addr, Duration::from_secs(20))?;
    Ok(Running {
        kind: Kind::Floor,
        ep: Endpoint::chat(addr, "Bearer bench-key"),
        version: "pingora 0.9 (bare ProxyHttp)".into(),
        proc: Some(p),
        startup,
        ws_token: None,
    })
}

fn sidepanel(ctx: &Ctx) -> Result<Running, String> {
    let addr = free_addr();
    let data = ctx.out.join("sidepanel-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    // Every hot-path feature on: metrics (always), hub, store (encrypted, WAL), admission
    // limiter + queue. Limits far above the load so nothing waits; Lean is not on the proxy path.
    let config = format!(
        r#"listen = "{addr}"
data_dir = "{data}"
threads = 2

[upstream]
url = "http://{sim}/api/v1"
models_refresh = "off"

[log]
filter = "warn"

[admission]
enabled = true
max_queue = 4096
default_rpm = 1000000000
default_tpm = 4000000000

[store]
enabled = true

[lean]
enabled = false
"#,
        data = data.display(),
        sim = ctx.sim,
    );
    let file = ctx.out.join("sidepanel.toml");
    std::fs::write(&file, config).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&ctx.sidepanel_bin);
    cmd.args(["serve", "--config"])
        .arg(&file)
        .env("VENICE_API_KEY", "bench-key")
        .env_remove("SIDEPANEL_PASSPHRASE");
    let mut p = Proc::spawn("sidepanel", cmd, &ctx.out)?;
    let startup = wait_port(&mut p, addr, Duration::from_secs(60))?;
    let token_file = data.join("token");
    let mut token = None;
    for _ in 0..100 {
        if let Ok(t) = std::fs::read_to_string(&token_file) {
            if !t.trim().is_empty() {
                token = Some(t.trim().to_owned());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Running {
        kind: Kind::Sidepanel,
        ep: Endpoint::chat(addr, "Bearer opencode-client"),
        version: version_of(with_arg(&ctx.sidepanel_bin, "--version")),
        proc: Some(p),
        startup,
        ws_token: token,
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn nginx(ctx: &Ctx) -> Result<Running, String> {
    let bin = which("nginx").ok_or_else(|| not_installed(ctx, "nginx"))?;
    let addr = free_addr();
    let dir = ctx.out.join("nginx");
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    // A plain reverse proxy: upstream keepalive, no buffering (SSE must flow), no access log.
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 20000;
user root;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream venice {{
        server {sim};
        keepalive 512;
        keepalive_requests 1000000;
    }}
    server {{
        listen {addr} backlog=4096;
        location / {{
            proxy_pass http://venice;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"#,
        dir = dir.display(),
        sim = ctx.sim,
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-p").arg(&dir).arg("-c").arg(&file);
    let mut p = Proc::spawn("nginx", cmd, &ctx.out)?;
    let startup = wait_port(&mut p, addr, Duration::from_secs(20))?;
    Ok(Running {
        kind: Kind::Nginx,
        ep: Endpoint::chat(addr, "Bearer bench-key"),
        version: version_of({
            let mut c = Command::new(&bin);
            c.arg("-v");
            c
        }),
        proc: Some(p),
        startup,
        ws_token: None,
    })
}

/// Why a peer is missing: the install log `run.sh` left, else a plain "not installed".
fn not_installed(ctx: &Ctx, peer: &str) -> String {
    let log = ctx.out.join("install").join(format!("{peer}.txt"));
    match std::fs::read_to_string(&log) {
        Ok(s) if !s.trim().is_empty() => {
            let tail: Vec<&str> = s.lines().rev().take(3).collect();
            format!(
                "not installed: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )
        }
        _ => format!(
            "not installed (run benches/load/run.sh without --no-install; see {})",
            log.display()
        ),
    }
}

fn litellm(ctx: &Ctx) -> Result<Running, String> {
    let venv = ctx.peers.join("litellm-venv");
    let bin = venv.join("bin/litellm");
    if !bin.is_file() {
        return Err(not_installed(ctx, "litellm"));
    }
    let addr = free_addr();
    let dir = ctx.out.join("litellm");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // As in shared/facts/peer-gateways.md §4.2: one worker, Prometheus callback, no database.
    let conf = format!(
        r#"model_list:
  - model_name: mock-model
    litellm_params:
      model: openai/{SIM_MODEL}
      api_base: http://{sim}/api/v1
      api_key: bench-key
litellm_settings:
  num_retries: 2
  request_timeout: 30
  callbacks: ["prometheus"]
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
"#,
        sim = ctx.sim
    );
    let file = dir.join("litellm_config.yaml");
    std::fs::write(&file, conf).map_err(|e| e.to_string())?;
    let key = "sk-bench-0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let mut cmd = Command::new(&bin);
    cmd.arg("--config")
        .arg(&file)
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--telemetry", "False"])
        .env("LITELLM_MASTER_KEY", key)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("NO_DOCS", "True")
        .env("HF_HUB_OFFLINE", "1")
        .current_dir(&dir);
    let mut p = Proc::spawn("litellm", cmd, &ctx.out)?;
    let startup = wait_port(&mut p, addr, Duration::from_secs(180))?;
    Ok(Running {
        kind: Kind::Litellm,
        ep: Endpoint {
            addr,
            path: "/v1/chat/completions".into(),
            model: "mock-model".into(),
            auth: Some(format!("Bearer {key}")),
        },
        version: format!(
            "litellm {}",
            version_of({
                let mut c = Command::new(venv.join("bin/python"));
                c.args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('litellm'))",
                ]);
                c
            })
        ),
        proc: Some(p),
        startup,
        ws_token: None,
    })
}

const TZ_SCRIPT: &str = r#"
import signal, sys, time
import tensorzero
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
gw = tensorzero._start_http_gateway(config_file=sys.argv[1], clickhouse_url=None,
                                    postgres_url=None, valkey_url=None, async_setup=False)
print("TZ_BASE_URL", gw.base_url, flush=True)
deadline = time.time() + 4 * 3600
while not stop and time.time() < deadline:
    time.sleep(0.2)
gw.close()
"#;

fn tensorzero(ctx: &Ctx) -> Result<Running, String> {
    let venv = ctx.peers.join("tz-venv");
    let python = venv.join("bin/python");
    let ok = python.is_file()
        && Command::new(&python)
            .args(["-c", "import tensorzero"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        return Err(not_installed(ctx, "tensorzero"));
    }
    let dir = ctx.out.join("tensorzero");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let conf = format!(
        r#"[gateway.observability]
enabled = false

[models.mock]
routing = ["mock"]

[models.mock.providers.mock]
type = "openai"
model_name = "{SIM_MODEL}"
api_base = "http://{sim}/api/v1"
api_key_location = "none"
"#,
        sim = ctx.sim
    );
    let file = dir.join("tensorzero.toml");
    std::fs::write(&file, conf).map_err(|e| e.to_string())?;
    let script = dir.join("tz_gateway.py");
    std::fs::write(&script, TZ_SCRIPT).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .arg(&file)
        .env("TENSORZERO_DISABLE_PSEUDONYMOUS_USAGE_ANALYTICS", "1")
        .env("RUST_LOG", "warn")
        .current_dir(&dir);
    let mut p = Proc::spawn("tensorzero", cmd, &ctx.out)?;
    // The gateway picks its own port and prints its base URL.
    let log = ctx.out.join("tensorzero.log");
    let t0 = std::time::Instant::now();
    let base = loop {
        if let Ok(s) = std::fs::read_to_string(&log) {
            if let Some(line) = s.lines().find(|l| l.starts_with("TZ_BASE_URL ")) {
                break line["TZ_BASE_URL ".len()..].trim().to_owned();
            }
        }
        if !p.alive() {
            let s = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = s.lines().rev().take(3).collect();
            return Err(format!("tensorzero exited: {}", tail.join(" / ")));
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err("tensorzero printed no base URL within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let url = url::Url::parse(&base).map_err(|e| format!("tensorzero base URL {base}: {e}"))?;
    let addr: SocketAddr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(80)
    )
    .parse()
    .map_err(|e| format!("tensorzero base URL {base}: {e}"))?;
    let startup = t0.elapsed() + wait_port(&mut p, addr, Duration::from_secs(30))?;
    // The base URL may already name the OpenAI-compatible prefix.
    let mut prefix = url.path().trim_end_matches('/').to_owned();
    if !prefix.ends_with("/openai/v1") {
        prefix.push_str("/openai/v1");
    }
    Ok(Running {
        kind: Kind::Tensorzero,
        ep: Endpoint {
            addr,
            path: format!("{prefix}/chat/completions"),
            model: "tensorzero::model_name::mock".into(),
            auth: None,
        },
        version: format!(
            "tensorzero {} (PyPI wheel, embedded HTTP gateway)",
            version_of({
                let mut c = Command::new(&python);
                c.args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('tensorzero'))",
                ]);
                c
            })
        ),
        proc: Some(p),
        startup,
        ws_token: None,
    })
}
