//! The `sidepanel` binary: raise the open-file limit, start returning freed memory to the
//! system, parse the command line, load the configuration, run the library.

use std::process::ExitCode;

use clap::Parser;
use sidepanel::cli::Cli;

/// jemalloc instead of glibc's malloc: the proxy threads allocate and the hub thread frees
/// (records, buffers), which glibc pays for in lock traffic and heap consolidation, and after
/// a burst of streams its heaps stay fragmented. See docs/ARCHITECTURE.md, "Hot path and memory".
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    raise_fd_limit();
    sidepanel::memory::spawn_trimmer();
    let cli = Cli::parse();
    match sidepanel::commands::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sidepanel: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises this process's soft `RLIMIT_NOFILE` as far as the hard limit allows. Every client
/// and upstream connection is an fd, and desktop shells start programs with a soft limit of
/// 1024: at that limit the gateway could neither accept more connections (pingora's accept
/// loop pauses on `EMFILE`) nor reach the upstream. Done by the binary, not the library, so a
/// process that embeds the gateway (the tests) keeps its own limits.
fn raise_fd_limit() {
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("sidepanel: warning: could not raise the open-file limit: {error}");
    }
}
