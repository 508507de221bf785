//! The HTTP side of the OpenCode server link: the few `opencode serve` endpoints the gateway
//! calls (facts/opencode.md §4), with Basic auth and short timeouts.
//!
//! Owns [`Client`] and [`LinkError`]. Every short request (`GET /global/health`,
//! `POST /session/{id}/revert`) has its own timeout, because the server's port accepts
//! connections before the app answers and a request sent too early can hang for minutes;
//! opening the event stream is bounded the same way up to the response head, after which the
//! link watches the stream for silence itself. Proxies from the environment are ignored: the
//! server is local.

use std::time::Duration;

use serde_json::{json, Value};

use super::config::{OpencodeConfig, Password};

/// Why a call to the OpenCode server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Nothing accepted the connection (refused, unreachable).
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// Connected, but no answer in time (the server may still be starting).
    #[error("{what} got no answer within {timeout:?}")]
    Timeout { what: String, timeout: Duration },
    /// 401/403: the password is wrong or missing.
    #[error("the server refused the credentials (HTTP {status}); check OPENCODE_SERVER_PASSWORD")]
    Auth { status: u16 },
    /// Any other non-2xx answer.
    #[error("{what} answered HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    /// The answer or the stream was not what OpenCode sends.
    #[error("{0}")]
    Protocol(String),
}

impl LinkError {
    /// Whether the failure means the server is not there (as opposed to misconfigured).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Timeout { .. })
    }
}

/// What `GET /global/health` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub version: Option<String>,
}

/// A client for one server URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    auth: Option<(String, Password)>,
    timeout: Duration,
}

/// Least time a revert may take (it is not a readiness probe: OpenCode undoes file changes).
const REVERT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest error body quoted in a [`LinkError::Status`].
const MAX_ERROR_BODY: usize = 300;

impl Client {
    /// A client for `base` with the credentials and timeouts of `config`.
    pub fn new(base: url::Url, config: &OpencodeConfig) -> Result<Self, LinkError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.request_timeout)
            .no_proxy()
            .build()
            .map_err(|e| LinkError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            auth: config
                .password
                .clone()
                .map(|p| (config.username.clone(), p)),
            timeout: config.request_timeout,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.url(path));
        match &self.auth {
            Some((user, pass)) => rb.basic_auth(user, Some(pass.expose())),
            None => rb,
        }
    }

    /// Sends `rb`, waiting at most the request timeout for the response head.
    async fn send(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LinkError> {
        self.send_within(what, rb, self.timeout).await
    }

    /// Sends `rb`, waiting at most `limit` for the response head.
    async fn send_within(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
        limit: Duration,
    ) -> Result<reqwest::Response, LinkError> {
        let timeout = || LinkError::Timeout {
            what: what.to_owned(),
            timeout: limit,
        };
        let resp = match tokio::time::timeout(limit, rb.send()).await {
            Err(_) => return Err(timeout()),
            Ok(Err(e)) if e.is_timeout() => return Err(timeout()),
            Ok(Err(e)) if e.is_connect() => {
                return Err(LinkError::Unreachable {
                    url: self.base.to_string(),
                    reason: root_cause(&e),
                })
            }
            Ok(Err(e)) => return Err(LinkError::Protocol(format!("{what}: {}", root_cause(&e)))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if matches!(status, 401 | 403) {
            return Err(LinkError::Auth { status });
        }
        if !resp.status().is_success() {
            let body = tokio::time::timeout(self.timeout, resp.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            return Err(LinkError::Status {
                what: what.to_owned(),
                status,
                body: error_text(&body),
            });
        }
        Ok(resp)
    }

    /// Reads a small JSON answer within the request timeout.
    async fn json(&self, what: &str, resp: reqwest::Response) -> Result<Value, LinkError> {
        match tokio::time::timeout(self.timeout, resp.bytes()).await {
            Err(_) => Err(LinkError::Timeout {
                what: what.to_owned(),
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(LinkError::Protocol(format!("{what}: {}", root_cause(&e)))),
            Ok(Ok(body)) if body.is_empty() => Ok(Value::Null),
            Ok(Ok(body)) => serde_json::from_slice(&body)
                .map_err(|e| LinkError::Protocol(format!("{what}: answer is not JSON: {e}"))),
        }
    }

    /// `GET /global/health`: whether the app (not just the port) answers.
    pub async fn health(&self) -> Result<Health, LinkError> {
        const WHAT: &str = "GET /global/health";
        let resp = self
            .send(WHAT, self.request(reqwest::Method::GET, "/global/health"))
            .await?;
        let v = self.json(WHAT, resp).await?;
        if v.get("healthy").and_then(Value::as_bool) == Some(false) {
            return Err(LinkError::Protocol(
                "the server says it is not healthy".into(),
            ));
        }
        Ok(Health {
            version: v.get("version").and_then(Value::as_str).map(str::to_owned),
        })
    }

    /// `GET /global/event`: the event stream of every instance the server runs (each event
    /// wrapped as `{directory, payload}`). Returns once the response head arrived.
    pub async fn events(&self) -> Result<reqwest::Response, LinkError> {
        let rb = self
            .request(reqwest::Method::GET, "/global/event")
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.send("GET /global/event", rb).await
    }

    /// `POST /session/{session}/revert` with `{messageID}` (in `directory`'s instance when
    /// known): OpenCode undoes that message and everything after it. Returns the session.
    pub async fn revert(
        &self,
        session: &str,
        message: &str,
        directory: Option<&str>,
    ) -> Result<Value, LinkError> {
        let what = format!("POST /session/{session}/revert");
        let mut path = format!("/session/{}/revert", url_segment(session));
        if let Some(dir) = directory {
            path.push_str("?directory=");
            path.push_str(&url_segment(dir));
        }
        let rb = self
            .request(reqwest::Method::POST, &path)
            .json(&json!({"messageID": message}));
        // Reverting restores files from OpenCode's snapshots: allow it more than a probe.
        let limit = self.timeout.max(REVERT_TIMEOUT);
        let resp = self.send_within(&what, rb, limit).await?;
        self.json(&what, resp).await
    }
}

/// Percent-encodes an id for one path segment.
fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The message OpenCode puts in its error bodies (`{name, data: {message}}`), else the body cut
/// short.
fn error_text(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let msg = v.as_ref().and_then(|v| {
        v.pointer("/data/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("name"))
            .and_then(Value::as_str)
    });
    let text = msg.unwrap_or(body).trim();
    text.chars().take(MAX_ERROR_BODY).collect()
}

/// The innermost cause of a reqwest error (its `Display` is just "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_summarised() {
        let b = r#"{"name":"NotFoundError","data":{"message":"Session not found: ses_x"}}"#;
        assert_eq!(error_text(b), "Session not found: ses_x");
        assert_eq!(error_text(r#"{"name":"BadRequest"}"#), "BadRequest");
        assert_eq!(error_text(&"x".repeat(1000)).len(), MAX_ERROR_BODY);
    }

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(url_segment("ses_1"), "ses_1");
        assert_eq!(url_segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[tokio::test]
    async fn refused_connections_are_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
        let c = Client::new(url, &OpencodeConfig::default()).expect("client");
        let e = c.health().await.unwrap_err();
        assert!(e.is_unreachable(), "{e}");
    }
}
