//! Routes the gateway answers itself: `/healthz`, `/metrics`, `/api/sidepanel/state` and the
//! placeholder page at `/`.
//!
//! Owns deciding whether a path is proxied or local, and writing local responses (JSON errors in
//! the OpenAI shape, so clients show them well).

use std::time::SystemTime;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;

use crate::admission::Admission;
use crate::gateway::upstream::CLIENT_PREFIX;
use crate::hub::HubHandle;
use crate::metrics::Metrics;

/// Header on every response the gateway wrote itself, naming why.
pub const ERROR_HEADER: &str = "x-sidepanel-error";

/// Whether `path` is forwarded to Venice.
pub fn is_proxied(path: &str) -> bool {
    path == CLIENT_PREFIX
        || path
            .strip_prefix(CLIENT_PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` is a chat completion (its body is held and may be amended).
pub fn is_chat(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/chat/completions")
}

/// Answers a local route.
pub async fn serve(
    session: &mut Session,
    hub: &HubHandle,
    metrics: &Metrics,
    admission: &Admission,
) -> Result<()> {
    let path = session.req_header().uri.path().to_owned();
    let method = session.req_header().method.clone();
    if method != http::Method::GET && method != http::Method::HEAD {
        let body = error_body(
            "method not allowed on a sidepanel route",
            "method_not_allowed",
        );
        return write(session, 405, "application/json", body).await;
    }
    match path.as_str() {
        "/healthz" => {
            let status = hub.with_state(|s| s.upstream.status);
            let body = json!({"status": "ok", "upstream": status}).to_string();
            write(session, 200, "application/json", body.into()).await
        }
        "/metrics" => {
            metrics.observe_admission(&admission.views());
            let body = metrics.render();
            write(session, 200, "text/plain; version=0.0.4", body.into()).await
        }
        "/api/sidepanel/state" => {
            let mut state = hub.snapshot_json(SystemTime::now());
            let gates: serde_json::Map<String, serde_json::Value> = admission
                .views()
                .into_iter()
                .map(|(model, view)| (model, json!(view)))
                .collect();
            state["admission"] = json!({"models": gates});
            let body = state.to_string();
            write(session, 200, "application/json", body.into()).await
        }
        "/" | "/index.html" => {
            write(
                session,
                200,
                "text/html; charset=utf-8",
                Bytes::from_static(PAGE),
            )
            .await
        }
        _ => {
            let body = error_body(&format!("no such route: {path}"), "not_found");
            write(session, 404, "application/json", body).await
        }
    }
}

/// An error body in the OpenAI shape, marked as the gateway's own.
pub fn error_body(message: &str, code: &str) -> Bytes {
    json!({"error": {"message": format!("sidepanel: {message}"), "type": "sidepanel_error", "code": code}})
        .to_string()
        .into()
}

/// Writes a complete local response.
pub async fn write(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if status >= 400 {
        let code = if status == 404 { "route" } else { "request" };
        resp.insert_header(ERROR_HEADER, code)?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Until the dashboard lands (issue 7): a page that shows the live state JSON.
const PAGE: &[u8] = br#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>opencode-sidepanel</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;background:#111;color:#ddd}pre{background:#1b1b1b;padding:1em;overflow:auto}</style>
</head><body><h1>opencode-sidepanel</h1>
<p>Live gateway state (refreshes every second). Metrics: <a href="/metrics">/metrics</a>.</p>
<pre id="state">loading...</pre>
<script>
async function tick(){try{const r=await fetch('/api/sidepanel/state');document.getElementById('state').textContent=JSON.stringify(await r.json(),null,2)}catch(e){document.getElementById('state').textContent='gateway unreachable: '+e}}
tick();setInterval(tick,1000);
</script></body></html>
"#;
