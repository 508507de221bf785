//! Who may post events: [`Access`] applies the install's [`Site`] to `/events` — host policy
//! (403) then token (401) — and maps refusals onto [`IngestError`]. The policy, the host
//! parser and the token file live in [`crate::access`]; they are re-exported here for the
//! ingest's callers.

use http::HeaderMap;

use crate::access::Site;
pub use crate::access::{host_name, load_or_create_token, TOKEN_FILE, TOKEN_HEADER};

use super::IngestError;

/// The checks of one install: its token and the hosts it answers to.
#[derive(Debug, Clone)]
pub struct Access {
    site: Site,
}

impl Access {
    pub fn new(token: String, allowed_hosts: Vec<String>) -> Self {
        Self {
            site: Site::new(token, &allowed_hosts),
        }
    }

    /// The same token, answering to `hosts` besides loopback names.
    pub fn with_hosts(self, hosts: Vec<String>) -> Self {
        Self::new(self.site.token().to_owned(), hosts)
    }

    /// The install's token and host policy.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Checks `Host`, `Origin` (403) and the token (401), in that order.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), IngestError> {
        self.site
            .hosts()
            .check(headers)
            .map_err(|denied| IngestError::Forbidden(denied.message()))?;
        if self.site.has_token(headers) {
            Ok(())
        } else {
            Err(IngestError::Unauthorized)
        }
    }
}
