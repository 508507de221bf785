//! The real `sidepanel` binary as a child process: the base command the tests start it with,
//! and a guard that kills and reaps it when the test ends (or panics).

use std::process::{Child, Command};

/// `sidepanel` with its logs at `warn` and no store passphrase from the test's environment;
/// callers add the subcommand, arguments and the rest of the environment.
pub fn sidepanel() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sidepanel"));
    c.env("SIDEPANEL_LOG", "warn")
        .env_remove("SIDEPANEL_PASSPHRASE");
    c
}

/// A child process, killed and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
