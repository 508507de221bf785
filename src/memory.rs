//! Giving freed memory back to the operating system.
//!
//! glibc's allocator keeps memory a program frees in its heaps for reuse and returns only what
//! lies at the very top of a heap. A gateway's memory use comes in bursts (a thousand streams
//! at once, each with its buffers, then a quiet terminal for an hour), so after a burst its RSS
//! would stay at the burst's peak, and the next burst on fragmented heaps would climb higher
//! still (measured: 162 MiB at the first 1,000-stream burst, 226 MiB at the second). A
//! background thread calls `malloc_trim(0)` every [`TRIM_EVERY`], which releases the free
//! pages inside the heaps too. It costs a walk of the free lists (milliseconds for hundreds of
//! MiB) on a thread of its own; nothing on the proxy path waits for it except an allocation in
//! the arena being trimmed at that moment.
//!
//! The `sidepanel` binary allocates Rust memory with jemalloc (`src/main.rs`), whose own
//! background thread returns unused pages; glibc's heaps still serve the C code (SQLite), and
//! the library embedded elsewhere (tests, benches) stays on glibc, so the trimmer remains.
//!
//! Owns only that thread. Other allocators or platforms: nothing to do.

use std::time::Duration;

/// Time between two trims.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Starts the trimming thread (once per process; the binary calls it at start).
pub fn spawn_trimmer() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("sidepanel-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim only releases free memory of glibc's own heaps; it takes
                // each arena's lock like any allocation does.
                unsafe { libc::malloc_trim(0) };
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "memory trimming thread not started");
        }
    }
}
