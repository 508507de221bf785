//! The MCP client: handshake, tool check and tool calls over a [`Transport`].
//!
//! Owns the protocol rules: the 2025-11-25 `initialize` handshake (the answer's version must be
//! one this client speaks), `tools/list` (all pages) with the tools the flow needs, and
//! `tools/call` with a timeout. A tool's own failure (`isError: true`, text only) is a
//! [`CallError::Tool`]; anything wrong with the exchange itself is an [`McpError`], and only
//! [`McpError::is_fatal`] ones (no answer, connection gone) mean the server must be restarted.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use super::transport::{RpcFailure, Transport};
use crate::config::LeanConfig;

/// The protocol version this client asks for.
pub(super) const PROTOCOL_VERSION: &str = "2025-11-25";
/// Versions whose `initialize`/`tools/*` shapes this client understands.
const SPOKEN: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Tools the check flow calls.
pub(super) const REQUIRED_TOOLS: [&str; 3] =
    ["lean_diagnostic_messages", "lean_goal", "lean_code_actions"];
/// `tools/list` pages followed before giving up on a server that never stops paging.
const MAX_PAGES: usize = 16;
/// Longest tool error text kept.
const MAX_ERROR_TEXT: usize = 4000;

/// Something wrong with the server or the exchange (as opposed to a tool reporting an error).
#[derive(Debug, Clone, thiserror::Error)]
pub enum McpError {
    #[error("`{0}` was not found (is it installed and on PATH?)")]
    NotFound(String),
    #[error("cannot start `{command}`: {reason}")]
    Spawn { command: String, reason: String },
    #[error("{method} got no answer within {after:?}; the server counts as hung")]
    Timeout { method: String, after: Duration },
    #[error("{0}")]
    Closed(String),
    #[error("{method} failed with JSON-RPC error {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("malformed answer to {method}: {detail}")]
    Malformed { method: String, detail: String },
    #[error("the server answered protocol version {0:?}, which this client does not speak")]
    Version(String),
    #[error("the server lacks the tools {0:?} (is it lean-lsp-mcp 0.15 or newer?)")]
    MissingTools(Vec<String>),
}

impl McpError {
    /// The server is hung or gone: restart it.
    pub(super) fn is_fatal(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Closed(_))
    }
}

/// Why a tool call produced no result.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum CallError {
    /// The tool ran and failed (`isError: true`); its text.
    #[error("{0}")]
    Tool(String),
    #[error(transparent)]
    Mcp(#[from] McpError),
}

/// What the server said about itself in the handshake.
#[derive(Debug, Clone)]
pub(super) struct ServerInfo {
    pub name: Option<String>,
    pub version: Option<String>,
    pub protocol_version: String,
}

/// A connected, initialised server.
pub(super) struct McpClient {
    transport: Transport,
    timeout: Duration,
    pub info: ServerInfo,
}

impl McpClient {
    /// Spawns the server, performs the handshake and checks the tools.
    pub(super) async fn start(config: &LeanConfig) -> Result<Self, McpError> {
        let transport = Transport::spawn(config).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => McpError::NotFound(config.command.clone()),
            _ => McpError::Spawn {
                command: config.command.clone(),
                reason: e.to_string(),
            },
        })?;
        let mut client = Self {
            transport,
            timeout: config.call_timeout,
            info: ServerInfo {
                name: None,
                version: None,
                protocol_version: String::new(),
            },
        };
        client.info = client.initialize().await?;
        client.check_tools().await?;
        Ok(client)
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.transport.pid()
    }

    /// Resolves when the server has gone, with the reason.
    pub(super) async fn closed(&self) -> String {
        self.transport.closed().await
    }

    async fn initialize(&self) -> Result<ServerInfo, McpError> {
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "opencode-sidepanel", "version": env!("CARGO_PKG_VERSION")},
        });
        let result = self.rpc("initialize", Some(params)).await?;
        let Some(version) = result.get("protocolVersion").and_then(Value::as_str) else {
            return Err(malformed("initialize", "no protocolVersion"));
        };
        if !SPOKEN.contains(&version) {
            return Err(McpError::Version(version.chars().take(64).collect()));
        }
        let text = |p: &str| {
            result
                .pointer(p)
                .and_then(Value::as_str)
                .map(|s| s.chars().take(200).collect())
        };
        let info = ServerInfo {
            name: text("/serverInfo/name"),
            version: text("/serverInfo/version"),
            protocol_version: version.to_owned(),
        };
        if let Err(f) = self
            .transport
            .notify("notifications/initialized", self.timeout)
            .await
        {
            return Err(self.failure("notifications/initialized", f).await);
        }
        Ok(info)
    }

    async fn check_tools(&self) -> Result<(), McpError> {
        let mut names = HashSet::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.as_ref().map(|c| json!({"cursor": c}));
            let result = self.rpc("tools/list", params).await?;
            let Some(tools) = result.get("tools").and_then(Value::as_array) else {
                return Err(malformed("tools/list", "no tools array"));
            };
            names.extend(
                tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .map(str::to_owned),
            );
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        let missing: Vec<String> = REQUIRED_TOOLS
            .iter()
            .filter(|t| !names.contains(**t))
            .map(|t| (*t).to_owned())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(McpError::MissingTools(missing))
        }
    }

    /// Calls a tool; the result is its JSON output (`structuredContent`, or the text parsed as
    /// JSON for servers that send none).
    pub(super) async fn call_tool(&self, name: &str, arguments: Value) -> Result<Value, CallError> {
        let started = std::time::Instant::now();
        let params = json!({"name": name, "arguments": arguments});
        let result = self.rpc("tools/call", Some(params)).await?;
        tracing::debug!(
            tool = name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tool answered"
        );
        tool_output(name, &result)
    }

    /// One request; its `result`, or the error the exchange produced.
    async fn rpc(&self, method: &str, params: Option<Value>) -> Result<Value, McpError> {
        let mut msg = match self.transport.request(method, params, self.timeout).await {
            Ok(m) => m,
            Err(f) => return Err(self.failure(method, f).await),
        };
        if let Some(err) = msg.get("error") {
            return Err(McpError::Rpc {
                method: method.to_owned(),
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .chars()
                    .take(MAX_ERROR_TEXT)
                    .collect(),
            });
        }
        match msg.get_mut("result").map(Value::take) {
            Some(r @ Value::Object(_)) => Ok(r),
            _ => Err(malformed(method, "no result object")),
        }
    }

    /// The error for a failed exchange; a closed connection says why it closed (exit status,
    /// last stderr line) when that is known within a second.
    async fn failure(&self, method: &str, f: RpcFailure) -> McpError {
        match f {
            RpcFailure::Timeout => McpError::Timeout {
                method: method.to_owned(),
                after: self.timeout,
            },
            RpcFailure::Closed => {
                let why = tokio::time::timeout(Duration::from_secs(1), self.transport.closed())
                    .await
                    .unwrap_or_else(|_| "the connection broke".to_owned());
                McpError::Closed(format!("{why} (during {method})"))
            }
        }
    }
}

fn malformed(method: &str, detail: &str) -> McpError {
    McpError::Malformed {
        method: method.to_owned(),
        detail: detail.to_owned(),
    }
}

/// Reads a `tools/call` result: `isError` text becomes [`CallError::Tool`].
fn tool_output(name: &str, result: &Value) -> Result<Value, CallError> {
    let text = || {
        let mut s = String::new();
        for block in result
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                if !s.is_empty() {
                    s.push('\n');
                }
                s.push_str(t);
            }
        }
        s
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let mut message: String = text().chars().take(MAX_ERROR_TEXT).collect();
        if message.is_empty() {
            message = format!("{name} failed without a message");
        }
        return Err(CallError::Tool(message));
    }
    match result.get("structuredContent") {
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        _ => serde_json::from_str::<Value>(&text())
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                CallError::Mcp(malformed(
                    "tools/call",
                    &format!("{name} returned neither structuredContent nor JSON text"),
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_error_results_are_tool_errors_with_their_text() {
        let r = json!({"content": [{"type": "text", "text": "Error executing tool lean_goal: boom"}], "isError": true});
        match tool_output("lean_goal", &r) {
            Err(CallError::Tool(t)) => assert_eq!(t, "Error executing tool lean_goal: boom"),
            other => panic!("expected a tool error, got {other:?}"),
        }
    }

    #[test]
    fn structured_content_wins_and_text_json_is_the_fallback() {
        let r = json!({"content": [{"type": "text", "text": "{\"a\": 2}"}], "structuredContent": {"a": 1}, "isError": false});
        assert_eq!(tool_output("t", &r).ok(), Some(json!({"a": 1})));
        let r = json!({"content": [{"type": "text", "text": "{\"a\": 2}"}]});
        assert_eq!(tool_output("t", &r).ok(), Some(json!({"a": 2})));
        let r = json!({"content": [{"type": "text", "text": "plain words"}]});
        assert!(matches!(
            tool_output("t", &r),
            Err(CallError::Mcp(McpError::Malformed { .. }))
        ));
    }

    #[test]
    fn only_hangs_and_closes_are_fatal() {
        assert!(McpError::Closed("x".into()).is_fatal());
        assert!(McpError::Timeout {
            method: "m".into(),
            after: Duration::from_secs(1)
        }
        .is_fatal());
        assert!(!McpError::Rpc {
            method: "m".into(),
            code: -32602,
            message: "bad".into()
        }
        .is_fatal());
    }
}
