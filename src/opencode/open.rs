//! `sidepanel serve --open`: the last step of the seed's start-up sequence, opening the
//! dashboard in the user's browser.
//!
//! Owns [`dashboard_url`] (the listen address as a browsable URL, with the install token in
//! the fragment `#token=`, which is never sent to a server or logged) and [`open_dashboard`]:
//! `$BROWSER` (a `:`-separated list of commands, `%s` for the URL, as `xdg-utils` and Python's
//! `webbrowser` read it), else `open` on macOS, else `xdg-open` when a display is there
//! (`DISPLAY` or `WAYLAND_DISPLAY`). On a headless machine, or when nothing could be started,
//! it prints the URL instead. It never fails and never blocks: the browser runs detached and
//! is reaped by a small thread.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};

/// What [`open_dashboard`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A browser command was started (its program name).
    Browser(String),
    /// Nothing could be opened: the URL was printed.
    Printed,
}

/// The environment that decides how to open a URL (read with [`BrowserEnv::from_env`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserEnv {
    /// `$BROWSER`, when set and not empty.
    pub browser: Option<String>,
    /// `DISPLAY` or `WAYLAND_DISPLAY` is set.
    pub display: bool,
    /// macOS (`open` is always there, no display variable needed).
    pub macos: bool,
}

impl BrowserEnv {
    pub fn from_env() -> Self {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        Self {
            browser: std::env::var("BROWSER")
                .ok()
                .filter(|b| !b.trim().is_empty()),
            display: set("DISPLAY") || set("WAYLAND_DISPLAY"),
            macos: cfg!(target_os = "macos"),
        }
    }
}

/// The address a browser on this machine reaches `listen` at (a wildcard becomes loopback).
fn browsable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `http://<listen>/#token=<token>`; a wildcard listen address becomes the loopback one.
pub fn dashboard_url(listen: SocketAddr, token: &str) -> String {
    let token: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!("http://{}/#token={token}", browsable(listen))
}

/// The commands to try for `env`, each as program + arguments.
pub fn commands(env: &BrowserEnv, url: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if let Some(list) = &env.browser {
        for entry in list.split(':').map(str::trim).filter(|e| !e.is_empty()) {
            let mut words: Vec<String> = entry.split_whitespace().map(str::to_owned).collect();
            if words.iter().any(|w| w.contains("%s")) {
                for w in &mut words {
                    *w = w.replace("%s", url);
                }
            } else {
                words.push(url.to_owned());
            }
            out.push(words);
        }
    }
    if env.macos {
        out.push(vec!["open".into(), url.into()]);
    } else if env.display {
        out.push(vec!["xdg-open".into(), url.into()]);
    }
    out
}

/// Opens `url` in a browser as `env` allows; else (headless, or every command failed to
/// start) writes it to `out` with a hint. Never fails.
pub fn open_dashboard(url: &str, env: &BrowserEnv, out: &mut dyn Write) -> Opened {
    for cmd in commands(env, url) {
        let Some((program, args)) = cmd.split_first() else {
            continue;
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(mut child) => {
                tracing::info!(browser = %program, "opened the dashboard");
                // Reap it so it never lingers as a zombie; the wait is off every other path.
                let _ = std::thread::Builder::new()
                    .name("browser-reaper".into())
                    .spawn(move || child.wait());
                return Opened::Browser(program.clone());
            }
            Err(e) => {
                tracing::debug!(browser = %program, error = %e, "browser command not started")
            }
        }
    }
    let _ = writeln!(out, "sidepanel: dashboard at {url}");
    Opened::Printed
}

/// Longest wait for the gateway's listener before `--open` gives up (and says so).
const LISTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `--open`: on a side thread, waits until the gateway accepts connections on
/// `config.listen`, then opens the dashboard with the install token (created by then, since
/// the server reads it before it listens). Never fails the caller; problems are logged.
pub fn open_when_listening(config: &crate::config::Config) {
    let listen = config.listen;
    let data_dir = config.data_dir.clone();
    let spawned = std::thread::Builder::new()
        .name("open-dashboard".into())
        .spawn(move || {
            let deadline = std::time::Instant::now() + LISTEN_WAIT;
            let probe = std::time::Duration::from_millis(200);
            let addr = browsable(listen);
            while std::net::TcpStream::connect_timeout(&addr, probe).is_err() {
                if std::time::Instant::now() > deadline {
                    tracing::warn!(%listen, "--open: the gateway did not start listening; not opening");
                    return;
                }
                std::thread::sleep(probe);
            }
            match crate::ingest::load_or_create_token(&data_dir) {
                Ok(token) => {
                    let url = dashboard_url(listen, &token);
                    open_dashboard(&url, &BrowserEnv::from_env(), &mut std::io::stdout());
                }
                Err(e) => tracing::warn!(error = %e, "--open: the install token is unreadable"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "--open: could not start the opener thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_token_and_a_browsable_host() {
        let a: SocketAddr = "127.0.0.1:8765".parse().unwrap();
        assert_eq!(dashboard_url(a, "abc"), "http://127.0.0.1:8765/#token=abc");
        let any: SocketAddr = "0.0.0.0:9".parse().unwrap();
        assert_eq!(dashboard_url(any, "t"), "http://127.0.0.1:9/#token=t");
        let v6: SocketAddr = "[::]:9".parse().unwrap();
        assert_eq!(dashboard_url(v6, "a b"), "http://[::1]:9/#token=a+b");
    }

    #[test]
    fn browser_variable_first_then_the_platform_opener() {
        let env = BrowserEnv {
            browser: Some("firefox --new-tab:chromium %s".into()),
            display: true,
            macos: false,
        };
        let cmds = commands(&env, "U");
        assert_eq!(
            cmds,
            vec![
                vec!["firefox", "--new-tab", "U"],
                vec!["chromium", "U"],
                vec!["xdg-open", "U"],
            ]
        );
        let mac = BrowserEnv {
            macos: true,
            ..BrowserEnv::default()
        };
        assert_eq!(commands(&mac, "U"), vec![vec!["open", "U"]]);
    }

    #[test]
    fn headless_prints_the_url() {
        let mut out = Vec::new();
        let opened = open_dashboard("http://x/#token=t", &BrowserEnv::default(), &mut out);
        assert_eq!(opened, Opened::Printed);
        assert!(String::from_utf8_lossy(&out).contains("http://x/#token=t"));
    }

    #[test]
    fn a_missing_browser_falls_back_to_printing() {
        let env = BrowserEnv {
            browser: Some("/nonexistent/browser".into()),
            ..BrowserEnv::default()
        };
        let mut out = Vec::new();
        assert_eq!(open_dashboard("U", &env, &mut out), Opened::Printed);
        assert!(!out.is_empty());
    }

    #[test]
    fn the_browser_gets_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("url");
        let script = dir.path().join("browser.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$1\" > {}\n", file.display()),
        )
        .expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let env = BrowserEnv {
            browser: Some(script.display().to_string()),
            ..BrowserEnv::default()
        };
        let mut out = Vec::new();
        let opened = open_dashboard("http://127.0.0.1:1/#token=t", &env, &mut out);
        assert!(matches!(opened, Opened::Browser(_)), "{opened:?}");
        assert!(out.is_empty());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::read_to_string(&file) {
                Ok(s) if s.ends_with('\n') => {
                    assert_eq!(s.trim(), "http://127.0.0.1:1/#token=t");
                    break;
                }
                _ if std::time::Instant::now() > deadline => panic!("the browser never ran"),
                _ => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }
}
