//! `sidepanel sessions list | export`: reading the store from the command line.
//!
//! Opens the database read-only with [`Reader`] and takes no writer lock, so it works while
//! `serve` runs (SQLite's WAL lets readers see every committed batch beside the writer) and when
//! it does not. It needs the store's key (`SIDEPANEL_PASSPHRASE`, or the key file), and neither
//! an upstream nor a Venice key: the configured upstream is ignored here, and a key that is set
//! only serves to redact it from exports.

use std::io::Write;

use super::{ExportFormat, Reader, StoreError};
use crate::cli::{ServeArgs, SessionsCommand};
use crate::config::{self, ConfigError};

/// Why a store command from the command line (`sessions`, `key`) failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn open(args: &ServeArgs) -> Result<Reader, CliError> {
    let mut overrides = args.overrides();
    // Only the store is read: no upstream is contacted, so none is required.
    overrides.upstream = Some("http://127.0.0.1:9/api/v1".into());
    let config = config::load(&overrides)?;
    if !config.store.enabled {
        tracing::warn!("store.enabled is false; reading what an earlier run stored");
    }
    Ok(Reader::open(&config.store)?)
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(crate::util::from_epoch_ms(ms)).to_string()
}

/// Runs one `sessions` subcommand, printing to `out`.
pub fn run(cmd: &SessionsCommand, out: &mut impl Write) -> Result<(), CliError> {
    let stdout = |source| CliError::Io {
        what: "write to standard output".into(),
        source,
    };
    match cmd {
        SessionsCommand::List { limit, json, serve } => {
            let reader = open(serve)?;
            let sessions = reader.sessions(*limit)?;
            if *json {
                let text = serde_json::to_string_pretty(&sessions)
                    .map_err(|e| CliError::Usage(e.to_string()))?;
                writeln!(out, "{text}").map_err(stdout)?;
                return Ok(());
            }
            if sessions.is_empty() {
                writeln!(out, "no stored sessions in {}", reader.path().display())
                    .map_err(stdout)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<36} {:<20} {:<20} {:>8} {:>8}",
                "SESSION", "FIRST (UTC)", "LAST (UTC)", "UPDATES", "REQUESTS"
            )
            .map_err(stdout)?;
            for s in sessions {
                writeln!(
                    out,
                    "{:<36} {:<20} {:<20} {:>8} {:>8}",
                    s.id,
                    time(s.first_timestamp),
                    time(s.last_timestamp),
                    s.events,
                    s.requests
                )
                .map_err(stdout)?;
            }
        }
        SessionsCommand::Export {
            id,
            format,
            output,
            serve,
        } => {
            let format: ExportFormat = format.parse().map_err(CliError::Usage)?;
            let reader = open(serve)?;
            let text = reader.export(id, format)?;
            match output {
                Some(path) => std::fs::write(path, text).map_err(|source| CliError::Io {
                    what: format!("write {}", path.display()),
                    source,
                })?,
                None => out.write_all(text.as_bytes()).map_err(stdout)?,
            }
        }
    }
    Ok(())
}
