//! Assembling and running the server: one pingora `Server` hosting the gateway on the public
//! listener plus the named background services.
//!
//! Owns the process model. [`run`] blocks (pingora's `Server::run` must not be called inside a
//! tokio runtime); [`start`] runs the same server on its own thread and returns once it accepts
//! connections, so integration tests can start and stop real servers on free ports.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::ServiceWithDependents;
use tokio::sync::Notify;

use crate::admission::Admission;
use crate::config::Config;
use crate::gateway::upstream::Upstream;
use crate::gateway::Gateway;
use crate::hub::state::AlertCurrency;
use crate::hub::{Hub, HubEvent, HubHandle};
use crate::ingest::Ingest;
use crate::lean::LeanControl;
use crate::metrics::Metrics;
use crate::refresh::{HealthProbe, Refresh};
use crate::services::{Supervised, Task};
use crate::store::{Store, StoreHandle};
use crate::ws::{WsConfig, WsServer};

/// Longest wait for the store to commit what is queued when the server stops.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an unavailable upstream is asked whether it is back.
const HEALTH_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read or create the install token {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(crate::store::StoreError),
    #[error("the server did not start listening on {0} within 30 s")]
    NotReady(SocketAddr),
    #[error("the server thread panicked")]
    Panicked,
}

/// Asks a running server to stop. Cheap to clone; a trigger before the server waits still
/// counts.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Notify>);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// What stops the server: [`Shutdown::trigger`], Ctrl-C or SIGTERM. Before pingora stops the
/// runtimes (which drops every task at once), WebSocket clients are closed with 1001.
struct Signals {
    shutdown: Shutdown,
    ws: Arc<WsServer>,
}

impl Signals {
    async fn wait(&self) -> ShutdownSignal {
        let notified = &self.shutdown.0;
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    notified.notified().await;
                    return ShutdownSignal::FastShutdown;
                }
            };
        tokio::select! {
            _ = notified.notified() => ShutdownSignal::FastShutdown,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; shutting down");
                ShutdownSignal::FastShutdown
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM; shutting down");
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.wait().await;
        self.ws.close_all().await;
        signal
    }
}

/// What was built, for callers that want to watch it (tests, demo).
pub struct Built {
    pub server: Server,
    pub hub: HubHandle,
    /// The session store, when enabled; close it after the server stops.
    pub store: Option<StoreHandle>,
    /// The per-install token (`/events`, `/ws`; the dashboard page carries it).
    pub token: String,
    /// The WebSocket server behind `/ws` (its clients are closed before the server stops).
    pub ws: Arc<WsServer>,
}

/// Builds the server for `config`, plus any `extra` background services (demo, simulator).
pub fn build(
    config: &Config,
    extra: Vec<Box<dyn ServiceWithDependents>>,
) -> Result<Built, AppError> {
    // Fail early and clearly if the port is taken (pingora would panic in a service thread).
    std::net::TcpListener::bind(config.listen).map_err(|source| AppError::Bind {
        addr: config.listen,
        source,
    })?;
    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ca_file: config
            .upstream
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let metrics = Arc::new(Metrics::with_max_models(config.metrics.max_models));
    let pricing = Arc::new(RwLock::new(config.pricing.clone()));
    // The store, when enabled, seeds the hub with the last state so sequences continue.
    let (hub, handle, store) = if config.store.enabled {
        let (store, restored) = Store::open(&config.store).map_err(AppError::Store)?;
        let (hub, handle) = Hub::resume(
            metrics.clone(),
            pricing.clone(),
            restored.sequence,
            restored.state,
        );
        let (task, store_handle, sink) = store.with_metrics(metrics.clone()).start();
        hub.set_sink(sink);
        server.add_service(background_service("store", Supervised(Arc::new(task))));
        (hub, handle, Some(store_handle))
    } else {
        let (hub, handle) = Hub::new(metrics.clone(), pricing.clone());
        (hub, handle, None)
    };
    let upstream = Arc::new(Upstream::new(config.upstream.clone()));
    let admission = Arc::new(Admission::new(config.admission.clone()));
    let limits_admission = admission.clone();
    let budget = config.admission.budget;
    for (currency, below) in [
        (AlertCurrency::Diem, budget.alert_diem_below),
        (AlertCurrency::Usd, budget.alert_usd_below),
    ] {
        if below.is_some() {
            handle.send(HubEvent::SetAlert { currency, below });
        }
    }

    let (lean_task, lean) = crate::lean::new(config.lean.clone(), handle.clone());
    server.add_service(background_service("lean", Supervised(Arc::new(lean_task))));

    let (mut ingest, token) =
        Ingest::for_gateway(handle.clone(), config, lean.clone()).map_err(|source| {
            AppError::Token {
                path: config.data_dir.join(crate::ingest::TOKEN_FILE),
                source,
            }
        })?;
    if let Some(store) = &store {
        // `POST /events` answers 2xx once its events are committed (ARCHITECTURE, Storage).
        ingest = ingest.with_store(store.clone(), crate::ingest::COMMIT_TIMEOUT);
    }
    let ingest = Arc::new(ingest);

    // The link to `opencode serve` feeds the same ingest; idle (`disabled`) without a URL.
    let (link_task, link) =
        crate::opencode::new(config.opencode.clone(), ingest.clone(), handle.clone());
    server.add_service(background_service(
        "opencode-link",
        Supervised(Arc::new(link_task)),
    ));
    // A plugin reports the server it runs in; the link uses it when no URL is configured.
    // Weak: the ingest holds this callback, and the link holds the ingest.
    let learner = link.downgrade();
    ingest.on_server_url(move |url| {
        learner.learn_url(url);
    });

    // Browsers reach the WebSocket server through the gateway's `/ws` route.
    let ws_config = WsConfig {
        hosts: crate::access::HostPolicy::new(&config.allowed_hosts),
        token: Some(token.clone()),
        ..WsConfig::default()
    };
    let mut ws = WsServer::new(handle.clone(), ws_config).with_lean(Arc::new(LeanBridge(lean)));
    if let Some(store) = &store {
        // The store's status is part of the live state (`store`) that clients see.
        store.report_to(handle.clone());
        ws = ws.with_store(store.clone());
    }
    ws = ws.with_opencode(link);
    let ws = Arc::new(ws);

    let gateway = Gateway::new(
        upstream,
        handle.clone(),
        metrics,
        config.limits.clone(),
        admission,
        ws.clone(),
        ingest,
    );
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    proxy.add_tcp(&config.listen.to_string());
    server.add_service(proxy);
    server.add_service(background_service(
        "hub",
        Supervised(Arc::new(HubTask(hub))),
    ));
    let api = format!("http://{}/api/v1", config.listen);
    if let Some(every) = config.upstream.models_refresh {
        let refresh = Refresh {
            name: "pricing-refresh",
            url: format!("{api}/models?type=all"),
            every,
            apply: Box::new(move |body| pricing.write().merge_models_response(body)),
        };
        server.add_service(background_service(
            "pricing-refresh",
            Supervised(Arc::new(refresh)),
        ));
    }
    let probe = HealthProbe {
        url: format!("{api}/models"),
        every: HEALTH_PROBE_EVERY,
        hub: handle.clone(),
    };
    server.add_service(background_service(
        "health-probe",
        Supervised(Arc::new(probe)),
    ));
    if let Some(every) = config.admission.limits_refresh {
        let refresh = Refresh {
            name: "rate-limits-refresh",
            url: format!("{api}/api_keys/rate_limits"),
            every,
            apply: Box::new(move |body| limits_admission.apply_rate_limits_response(body)),
        };
        server.add_service(background_service(
            "rate-limits-refresh",
            Supervised(Arc::new(refresh)),
        ));
    }
    for service in extra {
        server.add_boxed_service(service);
    }
    Ok(Built {
        server,
        hub: handle,
        store,
        token,
        ws,
    })
}

/// The WebSocket server's view of the Lean component.
struct LeanBridge(Arc<crate::lean::LeanHandle>);

impl crate::ws::LeanCommands for LeanBridge {
    fn check(&self, file: &str, line: Option<u32>) -> Result<(), String> {
        LeanControl::check(self.0.as_ref(), file, line).map_err(|e| e.to_string())
    }

    fn restart(&self) -> Result<(), String> {
        LeanControl::restart(self.0.as_ref()).map_err(|e| e.to_string())
    }
}

struct HubTask(Hub);

#[async_trait]
impl Task for HubTask {
    fn name(&self) -> &'static str {
        "hub"
    }

    async fn run(self: Arc<Self>, shutdown: pingora::server::ShutdownWatch) -> Result<(), String> {
        self.0.run(shutdown).await;
        Ok(())
    }
}

/// Runs the server until `shutdown` is triggered or a signal arrives. Blocks.
pub fn run(
    config: &Config,
    extra: Vec<Box<dyn ServiceWithDependents>>,
    shutdown: Shutdown,
) -> Result<(), AppError> {
    let built = build(config, extra)?;
    tracing::info!(listen = %config.listen, upstream = %config.upstream.url, "sidepanel running");
    built.server.run(RunArgs {
        shutdown_signal: Box::new(Signals {
            shutdown,
            ws: built.ws,
        }),
    });
    if let Some(store) = built.store {
        store.close(STORE_CLOSE_TIMEOUT);
    }
    Ok(())
}

/// A server running on its own thread.
pub struct Running {
    pub addr: SocketAddr,
    pub hub: HubHandle,
    /// The per-install token, for clients of `/ws` and `/events`.
    pub token: String,
    shutdown: Shutdown,
    thread: Option<JoinHandle<()>>,
    store: Option<StoreHandle>,
}

impl Running {
    /// Stops the server and waits for its thread.
    pub fn stop(mut self) -> Result<(), AppError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), AppError> {
        self.shutdown.trigger();
        let joined = match self.thread.take() {
            Some(t) => t.join().map_err(|_| AppError::Panicked),
            None => Ok(()),
        };
        if let Some(store) = self.store.take() {
            store.close(STORE_CLOSE_TIMEOUT);
        }
        joined
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Starts the server on a new thread and returns once its listener accepts connections.
pub fn start(
    config: &Config,
    extra: Vec<Box<dyn ServiceWithDependents>>,
) -> Result<Running, AppError> {
    let built = build(config, extra)?;
    let shutdown = Shutdown::new();
    let signals = Signals {
        shutdown: shutdown.clone(),
        ws: built.ws,
    };
    let server = built.server;
    let thread = std::thread::Builder::new()
        .name("sidepanel-server".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signals),
            })
        })
        .map_err(|source| AppError::Bind {
            addr: config.listen,
            source,
        })?;
    let mut running = Running {
        addr: config.listen,
        hub: built.hub,
        token: built.token,
        shutdown,
        thread: Some(thread),
        store: built.store,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&config.listen, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline || running.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let _ = running.stop_inner();
            return Err(AppError::NotReady(config.listen));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(running)
}
