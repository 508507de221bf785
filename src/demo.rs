//! `sidepanel demo`: the gateway in front of the built-in Venice simulator, with a small
//! synthetic OpenCode-like client, so everything can be seen without a key.
//!
//! Owns wiring the simulator and the client in as supervised background services and printing
//! where to look.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::background_service;
use pingora::services::ServiceWithDependents;
use serde_json::json;

use crate::config::{Config, DemoConfig};
use crate::services::{stopped, Supervised, Task};
use crate::simulator::SimConfig;

/// The simulator as a background task, serving on a listener bound before the server starts.
struct SimulatorTask {
    listener: parking_lot::Mutex<Option<std::net::TcpListener>>,
    addr: SocketAddr,
    config: SimConfig,
}

#[async_trait]
impl Task for SimulatorTask {
    fn name(&self) -> &'static str {
        "simulator"
    }

    async fn run(self: Arc<Self>, shutdown: ShutdownWatch) -> Result<(), String> {
        // After a restart the listener is rebound on the same address.
        let bound = self.listener.lock().take();
        let listener = match bound {
            Some(l) => tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?,
            None => tokio::net::TcpListener::bind(self.addr)
                .await
                .map_err(|e| e.to_string())?,
        };
        let mut watch = shutdown;
        crate::simulator::serve(listener, self.config.clone(), async move {
            stopped(&mut watch).await;
        })
        .await
        .map_err(|e| e.to_string())
    }
}

/// The synthetic client: a few sessions sending chat requests through the gateway.
struct DemoClient {
    base: String,
    every: Duration,
}

const MODELS: &[&str] = &[
    "kimi-k2-5",
    "zai-org-glm-5-1",
    "qwen3-coder-480b-a35b-instruct-turbo",
];
const SESSIONS: &[&str] = &["ses_demo_refactor", "ses_demo_proof", "ses_demo_docs"];

impl DemoClient {
    async fn one(&self, client: &reqwest::Client, n: u64) -> Result<(), String> {
        let i = n as usize;
        let model = MODELS[i % MODELS.len()];
        let session = SESSIONS[(i / 2) % SESSIONS.len()];
        let body = json!({
            "model": model,
            "stream": i % 3 != 2,
            "max_completion_tokens": 40 + (n * 37) % 200,
            "messages": [{"role": "user", "content": format!("demo request {n}: explain step {}", n % 7)}],
        });
        let mut req = client
            .post(format!("{}/chat/completions", self.base))
            .header("authorization", "Bearer demo-client-key")
            .header("x-session-id", session)
            .json(&body);
        if n % 11 == 10 {
            req = req.header("x-sim-fault", "overloaded");
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        resp.bytes().await.map_err(|e| e.to_string())?;
        tracing::debug!(%status, model, session, "demo request done");
        Ok(())
    }
}

#[async_trait]
impl Task for DemoClient {
    fn name(&self) -> &'static str {
        "demo-client"
    }

    async fn run(self: Arc<Self>, mut shutdown: ShutdownWatch) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stopped(&mut shutdown) => return Ok(()),
            }
            if let Err(e) = self.one(&client, n).await {
                tracing::warn!(error = %e, "demo request failed");
            }
            n += 1;
        }
    }
}

/// Prepares `config` for the demo: binds the simulator, points the upstream at it and returns
/// the extra services to run.
pub fn prepare(config: &mut Config) -> std::io::Result<Vec<Box<dyn ServiceWithDependents>>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let up = &mut config.upstream;
    up.url = url::Url::parse(&format!("http://{addr}/api/v1")).map_err(std::io::Error::other)?;
    up.host = addr.ip().to_string();
    up.port = addr.port();
    up.tls = false;
    up.base_path = "/api/v1".into();
    up.api_key = None;
    let d: &DemoConfig = &config.demo;
    let sim = SimulatorTask {
        listener: parking_lot::Mutex::new(Some(listener)),
        addr,
        config: SimConfig {
            balance_usd: d.balance_usd,
            balance_diem: d.balance_diem,
            latency: d.latency,
            token_interval: d.token_interval,
            ..SimConfig::default()
        },
    };
    let mut extra: Vec<Box<dyn ServiceWithDependents>> = vec![Box::new(background_service(
        "simulator",
        Supervised(Arc::new(sim)),
    ))];
    if let Some(every) = d.client_interval {
        let client = DemoClient {
            base: format!("http://{}/api/v1", config.listen),
            every,
        };
        extra.push(Box::new(background_service(
            "demo-client",
            Supervised(Arc::new(client)),
        )));
    }
    Ok(extra)
}

/// What the demo prints for the user.
pub fn banner(config: &Config) -> String {
    let listen = config.listen;
    format!(
        "\nopencode-sidepanel demo: gateway on http://{listen} in front of the built-in Venice simulator\n\
         \n  dashboard   http://{listen}/\n  state       http://{listen}/api/sidepanel/state\n  metrics     http://{listen}/metrics\n\
         \nPoint OpenCode at it (opencode.json):\n\n{}\nPress Ctrl-C to stop.\n",
        opencode_snippet(config)
    )
}

/// The `provider.venice` snippet for `opencode.json`.
pub fn opencode_snippet(config: &Config) -> String {
    let v = json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {"venice": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "Venice AI (via sidepanel)",
            "options": {"baseURL": format!("http://{}/api/v1", config.listen), "apiKey": "sidepanel"},
            "models": {"kimi-k2-5": {"name": "Kimi K2.5"}, "zai-org-glm-5-1": {"name": "GLM 5.1"}}
        }}
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}
