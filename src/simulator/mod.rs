//! The built-in Venice AI simulator used by `sidepanel demo`, integration tests and
//! benchmarks: an axum server that follows `facts/venice-api.md` for headers, error
//! bodies, SSE (with the final `choices: []` usage + cost chunk), billing and
//! rate-limit reset units.
//!
//! This file owns the public API ([`SimConfig`], [`SimHandle`], [`Observed`],
//! [`serve`], [`spawn`], [`app`]), the shared state, the router and the front middleware
//! (observation, authentication, latency and the headers every response carries).
//!
//! Endpoints, all under `/api/v1`:
//! - `POST /chat/completions` (`chat.rs`, validated by `request.rs`),
//! - `POST /embeddings` (`embeddings.rs`),
//! - `GET /models[?type=text|embedding|all]` (`models.rs`),
//! - `GET /api_keys/rate_limits` (`models.rs`);
//!
//! anything else is 404 `{"error":"Not found"}`. Faults are injected with request
//! headers, see `faults.rs`.

mod account;
mod chat;
pub mod cli;
mod embeddings;
mod faults;
mod inference;
mod models;
mod request;
mod respond;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use account::Account;
use faults::FaultCounters;

/// Largest request body the simulator reads.
const MAX_BODY: usize = 64 << 20;

/// Settings of a simulator instance.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Starting USD balance (default 25.0).
    pub balance_usd: f64,
    /// Starting DIEM balance, refreshed at 00:00 UTC (default 10.0).
    pub balance_diem: f64,
    /// Requests per window per model (default 100).
    pub rpm: u64,
    /// Tokens (prompt + completion) per window per model (default 2 000 000).
    pub tpm: u64,
    /// Length of the fixed rate-limit windows (default 60 s).
    pub window: Duration,
    /// Delay before the response headers (default 0).
    pub latency: Duration,
    /// Delay between streamed content chunks (default 0).
    pub token_interval: Duration,
    /// When set, requests must carry `Authorization: Bearer <it>` or get 401.
    pub api_key: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            balance_usd: 25.0,
            balance_diem: 10.0,
            rpm: 100,
            tpm: 2_000_000,
            window: Duration::from_secs(60),
            latency: Duration::ZERO,
            token_interval: Duration::ZERO,
            api_key: None,
        }
    }
}

/// What the simulator saw: the request count and the last request's details.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Every request received, whatever its outcome.
    pub requests: u64,
    /// The `Authorization` header of the last request, as received.
    pub last_authorization: Option<String>,
    /// The last JSON body received (requests without a JSON body leave it as is).
    pub last_body: Option<serde_json::Value>,
    pub last_path: Option<String>,
    pub last_query: Option<String>,
    pub last_method: Option<String>,
    /// All headers of the last request, names lowercased.
    pub last_headers: Vec<(String, String)>,
    /// The HTTP version of the last request, e.g. `HTTP/1.1` or `HTTP/2.0`.
    pub last_version: Option<String>,
}

/// State shared by every handler of one simulator.
pub(crate) struct SimState {
    config: SimConfig,
    account: Mutex<Account>,
    observed: Mutex<Observed>,
    faults: FaultCounters,
    /// How many admitted requests used each `prompt_cache_key`.
    prompt_cache: Mutex<HashMap<String, u64>>,
    ids: AtomicU64,
    seed: u64,
}

pub(crate) type SharedState = Arc<SimState>;

impl SimState {
    fn new(config: SimConfig) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Self {
            account: Mutex::new(Account::new(&config, respond::utc_day())),
            config,
            observed: Mutex::new(Observed::default()),
            faults: FaultCounters::default(),
            prompt_cache: Mutex::new(HashMap::new()),
            ids: AtomicU64::new(0),
            seed,
        }
    }

    /// A fresh 16-hex-digit id (splitmix64 of a counter).
    fn next_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{:016x}", z ^ (z >> 31))
    }

    fn observe(&self, parts: &Parts, body: Option<&Bytes>) {
        let header =
            |v: &axum::http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), header(v)))
            .collect();
        let json = body
            .filter(|b| !b.is_empty())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
        let mut o = self.observed.lock();
        o.requests += 1;
        o.last_authorization = parts.headers.get("authorization").map(header);
        if json.is_some() {
            o.last_body = json;
        }
        o.last_path = Some(parts.uri.path().to_string());
        o.last_query = parts.uri.query().map(str::to_string);
        o.last_method = Some(parts.method.as_str().to_string());
        o.last_headers = headers;
        o.last_version = Some(format!("{:?}", parts.version));
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.config.api_key else {
            return true;
        };
        let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        match value.trim().split_once(' ') {
            Some((scheme, token)) => {
                scheme.eq_ignore_ascii_case("bearer") && token.trim() == key.as_str()
            }
            None => false,
        }
    }
}

/// A running simulator. Dropping it does not stop it; call [`SimHandle::shutdown`].
pub struct SimHandle {
    pub addr: SocketAddr,
    state: SharedState,
    stop: watch::Sender<bool>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimHandle {
    /// The API base URL, e.g. `http://127.0.0.1:PORT/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// A snapshot of what the simulator saw.
    pub fn observed(&self) -> Observed {
        self.state.observed.lock().clone()
    }

    /// Current `(usd, diem)` balances.
    pub fn balance(&self) -> (f64, f64) {
        self.state.account.lock().balances(respond::utc_day())
    }

    /// Stops accepting connections and ends the server once in-flight ones finish.
    /// Calling it again does nothing.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// Front middleware: records the request, authenticates it, waits `latency`, and
/// adds `x-venice-version`, `cf-ray` and (when authenticated) the balance headers.
async fn front(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let mut resp = match axum::body::to_bytes(body, MAX_BODY).await {
        Err(_) => {
            state.observe(&parts, None);
            respond::error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
        }
        Ok(bytes) => {
            state.observe(&parts, Some(&bytes));
            if state.authorized(&parts.headers) {
                if !state.config.latency.is_zero() {
                    tokio::time::sleep(state.config.latency).await;
                }
                let (usd, diem) = state.account.lock().balances(respond::utc_day());
                let mut resp = next
                    .run(Request::from_parts(parts, Body::from(bytes)))
                    .await;
                respond::set_balance_headers(resp.headers_mut(), usd, diem);
                resp
            } else {
                respond::error(StatusCode::UNAUTHORIZED, "Authentication failed")
            }
        }
    };
    let headers = resp.headers_mut();
    respond::insert(headers, "x-venice-version", respond::VENICE_VERSION);
    respond::insert(headers, "cf-ray", format!("{}-SJC", state.next_id()));
    resp
}

async fn not_found() -> Response {
    respond::error(StatusCode::NOT_FOUND, "Not found")
}

async fn method_not_allowed() -> Response {
    respond::error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

fn router(state: SharedState) -> Router {
    let api = Router::new()
        .route("/chat/completions", post(chat::completions))
        .route("/embeddings", post(embeddings::create))
        .route("/models", get(models::list))
        .route("/api_keys/rate_limits", get(models::rate_limits));
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), front))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn serve_state(
    listener: TcpListener,
    state: SharedState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves on an already-bound listener until `shutdown` resolves (used by pingora
/// background services). The state is private to this call.
pub async fn serve(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_state(listener, Arc::new(SimState::new(config)), shutdown).await
}

/// The simulator's router with fresh state, for serving over a listener of the caller's
/// own (e.g. TLS), and a function returning a snapshot of what it saw.
pub fn app(config: SimConfig) -> (Router, impl Fn() -> Observed + Send + Sync + 'static) {
    let state = Arc::new(SimState::new(config));
    let seen = state.clone();
    (router(state), move || seen.observed.lock().clone())
}

/// Binds `127.0.0.1:0` and spawns the server on the current tokio runtime.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(SimState::new(config));
    let (stop, mut stopped) = watch::channel(false);
    let shutdown = async move {
        // A dropped handle never stops the server: only `shutdown()` does.
        if stopped.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let server_state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = serve_state(listener, server_state, shutdown).await {
            tracing::warn!(error = %e, %addr, "venice simulator stopped with an error");
        }
    });
    Ok(SimHandle { addr, state, stop })
}
