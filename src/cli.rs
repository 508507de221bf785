//! The command line: `sidepanel serve | demo | check-config | install | sessions | key`.
//!
//! Owns the clap definitions, turning flags and `SIDEPANEL_*` variables into config
//! [`Overrides`] (plus `VENICE_API_KEY`, read here and never shown by clap), and [`describe`],
//! the secret-free summary of a loaded [`Config`] that `check-config` prints.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

/// Environment variable holding the Venice API key; wins over `upstream.api_key_file`.
pub const API_KEY_ENV: &str = "VENICE_API_KEY";

/// A live side panel for OpenCode on Venice: tokens, cost, balance and rate limits.
#[derive(Debug, Parser)]
#[command(
    name = "sidepanel",
    version,
    about,
    long_about = "A pingora gateway between OpenCode and the Venice AI API.\n\n\
        Point OpenCode's Venice provider at http://127.0.0.1:8765/api/v1 and open \
        http://127.0.0.1:8765/ to watch tokens, cost, balance and rate limits live.\n\n\
        The Venice key is read from VENICE_API_KEY, else from upstream.api_key_file in the \
        config file, else from the session store (`sidepanel key set`, kept encrypted). Precedence: flag (or its SIDEPANEL_* variable) > config file > built-in \
        defaults."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway in front of the Venice API.
    ///
    /// Needs a Venice key: VENICE_API_KEY, else the file named by upstream.api_key_file, else
    /// the key stored with `sidepanel key set`.
    Serve(RunArgs),
    /// Run the gateway in front of the built-in Venice simulator, with a synthetic client.
    ///
    /// No key is needed and nothing leaves this machine; the dashboard shows live traffic
    /// at once. The [demo] section of the config file tunes the simulator.
    Demo(RunArgs),
    /// Validate the configuration and print the effective settings, without secrets.
    ///
    /// Exits non-zero with a message naming the file and the key when something is wrong.
    CheckConfig(ServeArgs),
    /// Wire OpenCode to the gateway: the sidepanel plugin and the venice provider's baseURL.
    ///
    /// Writes .opencode/plugins/sidepanel.js and sidepanel.json (install token, mode 0600) in
    /// the project (or ~/.config/opencode/plugins/ with --global), and sets only
    /// provider.venice.options.baseURL in opencode.jsonc/opencode.json, keeping comments and
    /// everything else; the old file is saved as <file>.sidepanel-backup. Idempotent.
    Install(InstallArgs),
    /// List or export the stored sessions (read-only; works while `serve` runs).
    ///
    /// Reads the session store (store.path, default <data_dir>/sessions/sidepanel.db) with
    /// the key from SIDEPANEL_PASSPHRASE or the key file. Exports never contain the Venice key.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Keep the Venice API key encrypted in the session store (set | clear | status).
    ///
    /// `key set` reads the key from standard input, never from the command line. `serve` uses
    /// the stored key when neither VENICE_API_KEY nor upstream.api_key_file gives one.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run the built-in Venice simulator alone (for benchmarks; see benches/load/run.sh).
    #[command(hide = true)]
    Simulate(crate::simulator::cli::SimulateArgs),
}

/// `sidepanel sessions …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, most recently active first.
    List {
        /// Show at most this many.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Export one session as JSON Lines (every stored update) or a Markdown summary.
    Export {
        /// The OpenCode session id (see `sidepanel sessions list`).
        id: String,
        /// jsonl or markdown.
        #[arg(long, value_name = "FORMAT", default_value = "jsonl")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

/// `sidepanel key …`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeyCommand {
    /// Store the key read from standard input, sealed like the session data (stop a running
    /// server first; it reads the key when it starts).
    Set {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Remove the stored key.
    Clear {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Say whether a key is stored and which key `serve` would use (never the key itself).
    Status {
        #[command(flatten)]
        serve: ServeArgs,
    },
}

/// Flags of `install`.
#[derive(Debug, Clone, Default, Args)]
pub struct InstallArgs {
    /// The OpenCode project to wire (default: the current directory).
    #[arg(long, value_name = "DIR", conflicts_with = "global")]
    pub project: Option<PathBuf>,
    /// Wire the global OpenCode config ($XDG_CONFIG_HOME/opencode or ~/.config/opencode).
    #[arg(long)]
    pub global: bool,
    /// Print the changes as a diff (token redacted) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Gateway port to point OpenCode at (default: the port of the configured listen address).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Flags of `serve` and `demo`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Open the dashboard (install token included) in the browser once the gateway listens:
    /// $BROWSER, else xdg-open / open; on a machine without a display the URL is printed.
    #[arg(long)]
    pub open: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Flags shared by every command; each also reads a `SIDEPANEL_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML; see config/sidepanel.toml). Without it the built-in defaults
    /// apply.
    #[arg(long, value_name = "FILE", env = "SIDEPANEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the public listener, e.g. 127.0.0.1:8765 [config: listen].
    #[arg(long, value_name = "ADDR", env = "SIDEPANEL_LISTEN")]
    pub listen: Option<String>,
    /// Venice API base URL, e.g. https://api.venice.ai/api/v1 [config: upstream.url].
    #[arg(long, value_name = "URL", env = "SIDEPANEL_UPSTREAM")]
    pub upstream: Option<String>,
    /// Directory for the database, install token and exports [config: data_dir].
    #[arg(long, value_name = "DIR", env = "SIDEPANEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. "info" or "info,sidepanel=debug" [config: log.filter].
    #[arg(long = "log", value_name = "FILTER", env = "SIDEPANEL_LOG")]
    pub log: Option<String>,
    /// An `opencode serve` to link to, e.g. http://127.0.0.1:4096: its events feed the panel
    /// and restores revert its sessions; Basic auth from OPENCODE_SERVER_PASSWORD
    /// [config: opencode.url].
    #[arg(long, value_name = "URL", env = "SIDEPANEL_OPENCODE_URL")]
    pub opencode_url: Option<String>,
}

impl ServeArgs {
    /// The overrides these flags ask for, plus the key from `VENICE_API_KEY` if set.
    pub fn overrides(&self) -> Overrides {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Overrides {
            opencode_password: env(crate::opencode::PASSWORD_ENV),
            opencode_username: env(crate::opencode::USERNAME_ENV),
            ..self.overrides_with_key(std::env::var(API_KEY_ENV).ok())
        }
    }

    fn overrides_with_key(&self, api_key: Option<String>) -> Overrides {
        Overrides {
            config: self.config.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            data_dir: self.data_dir.clone(),
            api_key: api_key.filter(|key| !key.trim().is_empty()),
            log_filter: self.log.clone(),
            opencode_url: self.opencode_url.clone(),
            ..Overrides::default()
        }
    }
}

/// The effective settings, one per line, for `check-config`. Never contains the key.
pub fn describe(config: &Config) -> String {
    let env_key = std::env::var_os(API_KEY_ENV).is_some_and(|v| !v.is_empty());
    describe_with(config, env_key)
}

/// [`describe`] for a configuration whose key is the one `sidepanel key set` stored.
pub fn describe_stored_key(config: &Config) -> String {
    describe_keyed(config, false, true)
}

/// [`describe`] with the presence of `VENICE_API_KEY` given, so tests need no environment.
fn describe_with(config: &Config, env_key_set: bool) -> String {
    describe_keyed(config, env_key_set, false)
}

fn describe_keyed(config: &Config, env_key_set: bool, stored_key: bool) -> String {
    let up = &config.upstream;
    let key = match (&up.api_key, env_key_set) {
        (Some(_), _) if stored_key => "set (stored encrypted in the session store: key set)",
        (Some(_), true) => "set (from env VENICE_API_KEY)",
        (Some(_), false) => "set (from file upstream.api_key_file)",
        (None, _) if up.pass_client_key => "not set (client keys passed through)",
        (None, _) => "not set (loopback upstream)",
    };
    let source = config.source.as_ref().map_or_else(
        || "none (built-in defaults)".to_owned(),
        |p| p.display().to_string(),
    );
    let ca = up
        .ca_file
        .as_ref()
        .map_or_else(|| "system roots".to_owned(), |p| p.display().to_string());
    let demo = &config.demo;

    let mut out = String::new();
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{:<16} {value}", format!("{name}:"));
    };
    line("config file", source);
    line("listen", config.listen.to_string());
    line(
        "allowed hosts",
        if config.allowed_hosts.is_empty() {
            "loopback names only".to_owned()
        } else {
            format!("loopback names, {}", config.allowed_hosts.join(", "))
        },
    );
    line(
        "upstream",
        format!(
            "{} (host {}, port {}, {})",
            up.url,
            up.host,
            up.port,
            if up.tls { "tls" } else { "plain http" }
        ),
    );
    line("api key", key.to_owned());
    line("pass client key", up.pass_client_key.to_string());
    line(
        "timeouts",
        format!(
            "connect {}, read {}, idle {}, dns ttl {}",
            human(up.connect_timeout),
            human(up.read_timeout),
            human(up.idle_timeout),
            human(up.dns_ttl)
        ),
    );
    line("ca file", ca);
    line("models refresh", every(up.models_refresh));
    line(
        "limits",
        format!(
            "request body {} bytes, scanned response body {} bytes",
            config.limits.max_request_body_bytes, config.limits.max_scan_body_bytes
        ),
    );
    line(
        "log",
        format!(
            "filter {:?}, format {}",
            config.log.filter,
            if config.log.json { "json" } else { "text" }
        ),
    );
    line("data dir", config.data_dir.display().to_string());
    for (name, value) in crate::store::describe(&config.store) {
        line(name, value);
    }
    let oc = &config.opencode;
    line(
        "opencode",
        match &oc.url {
            Some(url) => format!(
                "{url} (basic auth {})",
                if oc.password.is_some() {
                    format!(
                        "as {}, password from env {}",
                        oc.username,
                        crate::opencode::PASSWORD_ENV
                    )
                } else {
                    "off".to_owned()
                }
            ),
            None => "no server linked (set opencode.url or --opencode-url)".to_owned(),
        },
    );
    line("threads", config.threads.to_string());
    line("models priced", config.pricing.len().to_string());
    line(
        "demo",
        format!(
            "balance {} USD / {} Diem, latency {}, token interval {}, client {}",
            demo.balance_usd,
            demo.balance_diem,
            human(demo.latency),
            human(demo.token_interval),
            every(demo.client_interval)
        ),
    );
    out
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn every(d: Option<Duration>) -> String {
    d.map_or_else(|| "off".to_owned(), |d| format!("every {}", human(d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_overrides() {
        let cli = Cli::try_parse_from([
            "sidepanel",
            "check-config",
            "--config",
            "c.toml",
            "--listen",
            "127.0.0.1:9",
            "--upstream",
            "http://127.0.0.1:7/api/v1",
            "--data-dir",
            "/tmp/d",
            "--log",
            "debug",
        ])
        .expect("parses");
        let Command::CheckConfig(args) = cli.command else {
            panic!("wrong command: {:?}", cli.command);
        };
        let o = args.overrides_with_key(Some("k".into()));
        assert_eq!(o.config, Some(PathBuf::from("c.toml")));
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(o.upstream.as_deref(), Some("http://127.0.0.1:7/api/v1"));
        assert_eq!(o.data_dir, Some(PathBuf::from("/tmp/d")));
        assert_eq!(o.log_filter.as_deref(), Some("debug"));
        assert_eq!(o.api_key.as_deref(), Some("k"));
        assert_eq!(args.overrides_with_key(Some("  ".into())).api_key, None);
        assert!(Cli::try_parse_from(["sidepanel", "demo"]).is_ok());
        assert!(Cli::try_parse_from(["sidepanel", "serve", "--bogus"]).is_err());
    }

    #[test]
    fn help_names_commands_and_never_the_key_value() {
        let help = Cli::command().render_long_help().to_string();
        for word in ["serve", "demo", "check-config", "VENICE_API_KEY"] {
            assert!(help.contains(word), "{word} missing from:\n{help}");
        }
        let mut cmd = Cli::command();
        let serve = cmd.find_subcommand_mut("serve").expect("serve exists");
        let help = serve.render_long_help().to_string();
        assert!(
            help.contains("SIDEPANEL_CONFIG") && help.contains("--data-dir"),
            "{help}"
        );
    }

    #[test]
    fn describe_shows_settings_but_not_the_key() {
        let overrides = Overrides {
            api_key: Some("sk-very-secret".into()),
            ..Overrides::default()
        };
        let config = crate::config::load(&overrides).expect("defaults load");
        for env_key in [true, false] {
            let text = describe_with(&config, env_key);
            assert!(!text.contains("sk-very-secret"), "{text}");
            assert!(
                text.contains("127.0.0.1:8765") && text.contains("api.venice.ai"),
                "{text}"
            );
            assert!(
                text.contains("read 5m") && text.contains("models priced:"),
                "{text}"
            );
        }
        assert!(describe_with(&config, true).contains("set (from env"));
        assert!(describe_with(&config, false).contains("set (from file"));
        let local = Overrides {
            upstream: Some("http://127.0.0.1:9/".into()),
            ..Overrides::default()
        };
        let config = crate::config::load(&local).expect("loopback loads");
        assert!(describe(&config).contains("not set"));
    }
}
