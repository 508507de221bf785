//! From `sidepanel install [--project DIR | --global] [--dry-run] [--port N]` to an
//! [`InstallOptions`], and the report printed for the user.
//!
//! Owns the defaults: the gateway URL from the configured listen address (a wildcard address
//! becomes `127.0.0.1`; `--port` replaces the port), the install token from the data directory
//! (created on first run; a dry run only reads it), and the command line the plugin uses to
//! start `sidepanel serve` (this binary, with the same `--config`, `--listen` and `--data-dir`).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::{plan, InstallError, InstallOptions, Scope, BACKUP_SUFFIX};
use crate::cli::InstallArgs;
use crate::config::{self, Config};

/// Placeholder used by a dry run when no token exists yet.
const NEW_TOKEN: &str = "<new install token>";

/// The gateway's base URL for a listen address: loopback when it listens on all addresses.
pub fn gateway_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Runs `install`, writing what it does (or would do) to `out`.
pub fn run(args: &InstallArgs, out: &mut dyn Write) -> Result<(), InstallError> {
    let config = load_config(args)?;
    let mut listen = config.listen;
    if let Some(port) = args.port {
        listen.set_port(port);
    }
    let scope = scope(args)?;
    let token = if args.dry_run {
        std::fs::read_to_string(config.data_dir.join(crate::ingest::TOKEN_FILE))
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|_| NEW_TOKEN.to_owned())
    } else {
        crate::ingest::load_or_create_token(&config.data_dir).map_err(|source| {
            InstallError::Io {
                path: config.data_dir.join(crate::ingest::TOKEN_FILE),
                source,
            }
        })?
    };
    let command = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "sidepanel".to_owned());
    let opts = InstallOptions {
        scope,
        gateway: gateway_url(listen),
        token,
        command,
        serve_args: serve_args(args, (args.port.is_some()).then_some(listen)),
    };
    let plan = plan(&opts)?;
    let say = |out: &mut dyn Write, s: String| {
        let _ = writeln!(out, "{s}");
    };
    if plan.is_empty() {
        say(
            out,
            format!(
                "install: already wired to {} (nothing to change)",
                opts.gateway
            ),
        );
        return Ok(());
    }
    if args.dry_run {
        say(
            out,
            format!(
                "install --dry-run: would wire OpenCode to {}:",
                opts.gateway
            ),
        );
        let _ = write!(out, "{}", plan.diff());
        return Ok(());
    }
    let backups = plan.apply()?;
    for c in &plan.changes {
        let what = if c.old.is_some() {
            "updated"
        } else {
            "created"
        };
        say(out, format!("install: {what} {}", c.path.display()));
    }
    for b in backups {
        say(
            out,
            format!("install: previous content saved as {}", b.display()),
        );
    }
    say(
        out,
        format!(
            "install: OpenCode's venice provider now goes through {0}/api/v1; dashboard at {0}/",
            opts.gateway
        ),
    );
    Ok(())
}

fn load_config(args: &InstallArgs) -> Result<Config, InstallError> {
    let mut overrides = args.serve.overrides();
    // Install never calls Venice: it must not need (or read) the key.
    overrides.api_key = Some("install-does-not-use-the-key".into());
    config::load(&overrides).map_err(|e| InstallError::Invalid(e.to_string()))
}

fn scope(args: &InstallArgs) -> Result<Scope, InstallError> {
    if args.global {
        let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".config"))
                .ok_or_else(|| {
                    InstallError::Invalid("neither XDG_CONFIG_HOME nor HOME is set".into())
                })?,
        };
        return Ok(Scope::Global(dir.join("opencode")));
    }
    let dir = match &args.project {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(|source| InstallError::Io {
            path: PathBuf::from("."),
            source,
        })?,
    };
    if !dir.is_dir() {
        return Err(InstallError::Invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(Scope::Project(absolute(&dir)))
}

/// `serve` plus the flags that make the started gateway match this install.
fn serve_args(args: &InstallArgs, listen: Option<SocketAddr>) -> Vec<String> {
    let mut v = vec!["serve".to_owned()];
    if let Some(c) = &args.serve.config {
        v.extend(["--config".to_owned(), absolute(c).display().to_string()]);
    }
    match (listen, &args.serve.listen) {
        (Some(l), _) => v.extend(["--listen".to_owned(), l.to_string()]),
        (None, Some(l)) => v.extend(["--listen".to_owned(), l.clone()]),
        (None, None) => {}
    }
    if let Some(d) = &args.serve.data_dir {
        v.extend(["--data-dir".to_owned(), absolute(d).display().to_string()]);
    }
    v
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// The backup path of a config file.
pub fn backup_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}
