//! The proxy core: pingora `ProxyHttp` phases and what they delegate to.
//!
//! - [`proxy`]: the phases themselves, kept thin;
//! - [`admit`]: peeking the model, waiting for admission, planning retries;
//! - [`refuse`]: the gateway's own refusals and error answers;
//! - [`routes`]: local routes (`/healthz`, `/metrics`, `/api/sidepanel/state`);
//! - [`upgrade`]: `/ws`: the WebSocket handshake, the connection handed to [`crate::ws`];
//! - [`upstream`]: DNS cache, peer (TLS), path/host/key rewrite;
//! - [`rewrite`]: reading and amending chat request bodies;
//! - [`headers`], [`usage`], [`sse`]: reading Venice's headers and bodies;
//! - [`ctx`], [`record`]: what one request accumulates and hands to the hub.

pub mod admit;
pub mod ctx;
pub mod headers;
pub mod peek;
pub mod proxy;
pub mod record;
pub mod refuse;
pub mod rewrite;
pub mod routes;
pub mod sse;
pub mod upgrade;
pub mod upstream;
pub mod usage;

pub use proxy::Gateway;
