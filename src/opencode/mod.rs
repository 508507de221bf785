//! The OpenCode server link: for users who run `opencode serve` (or attach to one), the
//! gateway subscribes to the server's event stream, feeds the events into the same ingest path
//! as the plugin's, reverts sessions through the server's API when a restore asks for it, and
//! shows the link's health in the hub state and as a metric.
//!
//! Owns the public surface: [`new`] (the supervised [`LinkTask`] and its [`LinkHandle`]),
//! [`OpencodeConfig`] (`[opencode]`), the health types ([`LinkState`], [`LinkStatus`],
//! [`LinkEvent`], [`RevertOutcome`], [`apply`] for the hub) and the `--open` helper ([`open`]).
//! Inside: [`config`], [`sse`] (event-stream parser), [`backoff`], [`client`] (HTTP calls),
//! `link` (the task), [`status`] (hub state) and `revert`. The design is in
//! `docs/ARCHITECTURE.md` ("OpenCode server link").

pub mod backoff;
pub mod client;
pub mod config;
mod link;
pub mod open;
mod revert;
pub mod sse;
pub mod status;

use std::sync::Arc;

use tokio::sync::watch;

use crate::hub::HubHandle;
use crate::ingest::Ingest;
pub use config::{OpencodeConfig, Password, PASSWORD_ENV, USERNAME_ENV};
pub use link::{unwrap_global, LinkTask};
pub use revert::{revert_after_restore, revert_json, session_of_point};
pub use status::{apply, LinkEvent, LinkState, LinkStatus, RevertOutcome};

/// The server the link talks to, and where its URL came from (`config` or `plugin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub url: url::Url,
    pub source: &'static str,
}

/// What the task and its handles share.
pub(crate) struct Inner {
    config: OpencodeConfig,
    ingest: Arc<Ingest>,
    hub: HubHandle,
    target: watch::Sender<Option<Target>>,
    status: parking_lot::Mutex<LinkStatus>,
}

/// The link's control side: the WebSocket `restore` method reverts sessions through it, and
/// a URL learned at run time is handed to it. Cheap to clone.
#[derive(Clone)]
pub struct LinkHandle {
    inner: Arc<Inner>,
}

/// The link for `config`, feeding `ingest` and reporting to `hub`. Add the task as a
/// supervised background service; it idles (`disabled`) while no URL is known.
pub fn new(config: OpencodeConfig, ingest: Arc<Ingest>, hub: HubHandle) -> (LinkTask, LinkHandle) {
    let target = link::initial_target(&config);
    // Start from what the hub holds (a stored state may say `connected` from the last run),
    // so the first report corrects it and a fresh state without a server stays untouched.
    let held = hub.with_state(|s| s.opencode_link.clone());
    let inner = Arc::new(Inner {
        config,
        ingest,
        hub,
        target,
        status: parking_lot::Mutex::new(held),
    });
    (
        LinkTask {
            inner: inner.clone(),
        },
        LinkHandle { inner },
    )
}

/// A [`LinkHandle`] that does not keep the link alive: for a callback held by the link's own
/// ingest (the plugin's `serverUrl`), which would otherwise make a cycle (ingest → callback →
/// link → ingest) and keep both, the store connection included, after the server stops.
#[derive(Clone)]
pub struct WeakLinkHandle(std::sync::Weak<Inner>);

impl WeakLinkHandle {
    /// [`LinkHandle::learn_url`] while the link exists; `false` after.
    pub fn learn_url(&self, url: &str) -> bool {
        self.0
            .upgrade()
            .is_some_and(|inner| LinkHandle { inner }.learn_url(url))
    }
}

impl LinkHandle {
    /// A handle that does not keep the link alive.
    pub fn downgrade(&self) -> WeakLinkHandle {
        WeakLinkHandle(Arc::downgrade(&self.inner))
    }

    /// Uses `url` from now on when no URL was configured (a configured one always wins), e.g.
    /// the `serverUrl` the plugin reports. Returns whether the link switched to it.
    pub fn learn_url(&self, url: &str) -> bool {
        if self.inner.config.url.is_some() {
            return false;
        }
        let Ok(url) = config::parse_url(url) else {
            tracing::debug!(url, "OpenCode server URL not usable; ignored");
            return false;
        };
        let target = Target {
            url,
            source: "plugin",
        };
        self.inner.target.send_if_modified(|t| {
            if t.as_ref() == Some(&target) {
                return false;
            }
            *t = Some(target);
            true
        })
    }

    /// The link's current status (as last reported).
    pub fn status(&self) -> LinkStatus {
        self.inner.status.lock().clone()
    }
}
