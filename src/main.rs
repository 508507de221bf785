//! The `sidepanel` binary: parse the command line, load the configuration, run the library.

use std::process::ExitCode;

use clap::Parser;
use sidepanel::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match sidepanel::commands::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidepanel: {e}");
            ExitCode::FAILURE
        }
    }
}
