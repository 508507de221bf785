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

/// jemalloc's built-in options (it reads this symbol at start; `_RJEM_MALLOC_CONF` still
/// overrides). Two arenas instead of four per core: the gateway has a handful of busy threads,
/// each with its own thread cache in front of the arenas, and every arena costs idle memory.
#[cfg(target_os = "linux")]
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: MallocConf = MallocConf(c"narenas:2".as_ptr());

/// A C string pointer, as jemalloc declares `malloc_conf` (`const char *`).
#[cfg(target_os = "linux")]
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, immutable and valid for the whole program.
#[cfg(target_os = "linux")]
unsafe impl Sync for MallocConf {}

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
