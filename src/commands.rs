//! What each subcommand does: `serve`, `demo`, `check-config`, `install`, `sessions`, `key`.
//!
//! Owns the glue between the parsed command line and the library: logging set-up, loading the
//! configuration and handing it to [`crate::app`].

use std::io::Write;

use crate::app::{self, Shutdown};
use crate::cli::{describe, Cli, Command};
use crate::config::{self, Config};

/// Why a command failed; printed as one line by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    App(#[from] app::AppError),
    #[error("demo: {0}")]
    Demo(std::io::Error),
    #[error("install: {0}")]
    Install(#[from] crate::install::InstallError),
    #[error("sessions: {0}")]
    Sessions(crate::store::cli::CliError),
    /// A `key` command, or reading the stored key for `serve`/`check-config`.
    #[error("{0}")]
    Key(crate::store::cli::CliError),
    #[error("simulate: {0}")]
    Simulate(std::io::Error),
}

impl From<crate::store::cli::CliError> for CommandError {
    fn from(e: crate::store::cli::CliError) -> Self {
        match e {
            crate::store::cli::CliError::Config(e) => Self::Config(e),
            e => Self::Key(e),
        }
    }
}

/// Runs the parsed command to completion.
pub fn execute(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Serve(run) => {
            // The Venice key: VENICE_API_KEY, else upstream.api_key_file, else `key set`'s.
            let (config, _) = crate::store::keys::load_config(&run.serve.overrides())?;
            init_tracing(&config);
            if run.open {
                crate::opencode::open::open_when_listening(&config);
            }
            app::run(&config, Vec::new(), Shutdown::new())?;
        }
        Command::Demo(run) => {
            let args = run.serve;
            let mut overrides = args.overrides();
            // The demo never talks to Venice: it needs no key and must not send one.
            // Until the simulator is bound, the upstream is a loopback placeholder.
            overrides.api_key = None;
            overrides.upstream = Some("http://127.0.0.1:9/api/v1".into());
            let mut config = config::load(&overrides)?;
            init_tracing(&config);
            let extra = crate::demo::prepare(&mut config).map_err(CommandError::Demo)?;
            // A closed stdout must not stop the demo: the banner is a courtesy.
            let _ = writeln!(std::io::stdout().lock(), "{}", crate::demo::banner(&config));
            if run.open {
                crate::opencode::open::open_when_listening(&config);
            }
            app::run(&config, extra, Shutdown::new())?;
        }
        Command::Install(args) => {
            crate::install::run(&args, &mut std::io::stdout().lock())?;
        }
        Command::Sessions(cmd) => {
            crate::store::cli::run(&cmd, &mut std::io::stdout().lock())
                .map_err(CommandError::Sessions)?;
        }
        Command::Key(cmd) => {
            let mut input = std::io::stdin().lock();
            crate::store::keys::run(&cmd, &mut input, &mut std::io::stdout().lock())?;
        }
        Command::Simulate(args) => {
            crate::simulator::cli::run(&args).map_err(CommandError::Simulate)?;
        }
        Command::CheckConfig(args) => {
            let (config, key) = crate::store::keys::load_config(&args.overrides())?;
            if key == crate::store::keys::KeySource::Stored {
                println!("{}", crate::cli::describe_stored_key(&config));
            } else {
                println!("{}", describe(&config));
            }
        }
    }
    Ok(())
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(quiet_key_logger());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if config.log.json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("sidepanel: logging already initialised: {e}");
    }
}

/// pingora's HTTP/1 client traces the raw upstream request head — `Authorization` included —
/// so that one module never logs below `warn`, whatever the filter says.
fn quiet_key_logger() -> tracing_subscriber::filter::Directive {
    "pingora_core::protocols::http::v1::client=warn"
        .parse()
        .expect("static directive")
}
