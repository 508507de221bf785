//! Routes the gateway answers itself: `/healthz` (always 200 while the proxy answers; its body
//! tells the upstream's and the session store's status), `/metrics`, `/api/sidepanel/state` and
//! the browser dashboard at `/` and `/assets/*` (embedded by `build.rs`).
//!
//! Owns deciding whether a path is proxied or local, and writing local responses (JSON errors in
//! the OpenAI shape, so clients show them well).

use std::time::SystemTime;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;
use serde_json::json;

use crate::access::Site;
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

/// Answers a local route. Every route but `/healthz` first passes the install's host policy
/// (403 for a foreign `Host` or `Origin`: DNS-rebinding defence), since they all read state.
pub async fn serve(
    session: &mut Session,
    hub: &HubHandle,
    metrics: &Metrics,
    admission: &Admission,
    site: &Site,
) -> Result<()> {
    let path = session.req_header().uri.path().to_owned();
    let method = session.req_header().method.clone();
    if path != "/healthz" {
        if let Err(denied) = site.hosts().check(&session.req_header().headers) {
            return write_error(session, 403, "forbidden_host", denied.message()).await;
        }
    }
    if method != http::Method::GET && method != http::Method::HEAD {
        let body = error_body(
            "method not allowed on a sidepanel route",
            "method_not_allowed",
        );
        return write(session, 405, "application/json", body).await;
    }
    match path.as_str() {
        "/healthz" => {
            // Always 200 while the proxy answers; the store's status is told, not judged.
            let (upstream, store) = hub.with_state(|s| (s.upstream.status, s.store.clone()));
            let store = store.map_or_else(|| json!({"status": "disabled"}), |s| json!(s));
            let body = json!({"status": "ok", "upstream": upstream, "store": store}).to_string();
            write(session, 200, "application/json", body.into()).await
        }
        "/metrics" => {
            metrics.observe_scrape(hub, &admission.views());
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
            state["admission"]["models"] = json!(gates);
            let body = state.to_string();
            write(session, 200, "application/json", body.into()).await
        }
        _ => match dashboard_asset(&path) {
            Some((content_type, body, _)) if content_type.starts_with("text/html") => {
                // The page carries the install token: never cached, never shared.
                let body = with_token(body, site.token());
                write_with(session, 200, content_type, "no-store", true, body).await
            }
            Some((content_type, body, cache)) => {
                let body = Bytes::from_static(body);
                write_with(session, 200, content_type, cache, true, body).await
            }
            None => {
                let body = error_body(&format!("no such route: {path}"), "not_found");
                write(session, 404, "application/json", body).await
            }
        },
    }
}

// The browser dashboard (dashboards/web), built and embedded by build.rs: `DASHBOARD_ASSETS`.
include!(concat!(env!("OUT_DIR"), "/dashboard_assets.rs"));

/// The dashboard file at `path`: content type, bytes and cache policy. `/` is the page (always
/// revalidated, so a new binary's page is picked up); `/assets/*` names carry a content hash, so
/// browsers keep them.
fn dashboard_asset(path: &str) -> Option<(&'static str, &'static [u8], &'static str)> {
    let path = if path == "/" { "/index.html" } else { path };
    let immutable = path.starts_with("/assets/");
    if path != "/index.html" && !immutable {
        return None;
    }
    let (_, content_type, body) = DASHBOARD_ASSETS.iter().find(|(p, _, _)| *p == path)?;
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Some((content_type, body, cache))
}

/// Where the page expects the token (`dashboards/web/index.html`).
const TOKEN_SLOT: &str = r#"<meta name="sidepanel-token" content="""#;

/// The page with the install token filled into its `sidepanel-token` meta tag, so the page's
/// script can open `/ws` (the token is HTML-escaped; a page without the slot is served as is).
fn with_token(page: &[u8], token: &str) -> Bytes {
    let Ok(text) = std::str::from_utf8(page) else {
        return Bytes::copy_from_slice(page);
    };
    let escaped: String = token
        .chars()
        .map(|c| match c {
            '"' => "&quot;".to_owned(),
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let filled = format!(r#"<meta name="sidepanel-token" content="{escaped}""#);
    Bytes::from(text.replacen(TOKEN_SLOT, &filled, 1))
}

/// Headers on dashboard files: the page loads only its own scripts and talks only to its own
/// origin, and may not be framed by another site.
const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// An error body in the OpenAI shape, marked as the gateway's own.
pub fn error_body(message: &str, code: &str) -> Bytes {
    json!({"error": {"message": format!("sidepanel: {message}"), "type": "sidepanel_error", "code": code}})
        .to_string()
        .into()
}

/// Writes the gateway's own JSON error with `x-sidepanel-error: <code>`.
pub async fn write_error(
    session: &mut Session,
    status: u16,
    code: &str,
    message: &str,
) -> Result<()> {
    let body = error_body(message, code);
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(ERROR_HEADER, code)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// Writes a complete local response.
pub async fn write(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
) -> Result<()> {
    write_with(session, status, content_type, "no-store", false, body).await
}

/// Writes a complete local response with a cache policy, and the dashboard's security headers
/// when `dashboard`.
async fn write_with(
    session: &mut Session,
    status: u16,
    content_type: &str,
    cache_control: &str,
    dashboard: bool,
    body: Bytes,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(7))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, cache_control)?;
    if dashboard {
        resp.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
        resp.insert_header(http::header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP)?;
        resp.insert_header(http::header::REFERRER_POLICY, "no-referrer")?;
    }
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
