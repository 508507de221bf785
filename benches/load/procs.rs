//! Child processes of the harness and their memory: spawning with logs in the output
//! directory, waiting for a port, stopping (SIGTERM, then SIGKILL) on drop, and resident set
//! sizes of a process and all its descendants from `/proc/PID/status` (`VmRSS`, `VmHWM`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A child process, stopped when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Spawns `cmd` with stdout/stderr appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Proc, String> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))
            .map_err(|e| format!("{name}: log file: {e}"))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("{name}: spawn: {e}"))?;
        Ok(Proc {
            name: name.into(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL for it and any descendant left.
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        let pids = tree(self.pid());
        // SAFETY: kill(2) with a pid this harness spawned (or one of its descendants).
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && self.alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in pids.iter().rev() {
            if Path::new(&format!("/proc/{pid}")).exists() {
                // SAFETY: as above.
                unsafe {
                    libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `addr` accepts TCP connections, or `timeout`; fails early if `proc` died.
pub fn wait_port(proc: &mut Proc, addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if !proc.alive() {
            return Err(format!("{} exited before listening on {addr}", proc.name));
        }
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{} did not listen on {addr} within {timeout:?}",
        proc.name
    ))
}

/// `root` and all its descendants (parents before children).
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                children.push((ppid, pid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(children.iter().filter(|(pp, _)| *pp == p).map(|(_, c)| *c));
        i += 1;
    }
    out
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Sum of `VmRSS` over the process tree, KiB.
pub fn rss_kib(root: u32) -> u64 {
    tree(root).iter().map(|p| status_kib(*p, "VmRSS:")).sum()
}

/// Sum of `VmHWM` (peak resident set) over the process tree, KiB.
pub fn hwm_kib(root: u32) -> u64 {
    tree(root).iter().map(|p| status_kib(*p, "VmHWM:")).sum()
}

/// CPU time (user + system) of the process tree, seconds.
pub fn cpu_secs(root: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tree(root)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After ')': state(0) ppid(1) ... utime(11) stime(12).
            let u: f64 = f.get(11)?.parse().ok()?;
            let s: f64 = f.get(12)?.parse().ok()?;
            Some((u + s) / tick)
        })
        .sum()
}

/// Samples the resident set of a process tree every 50 ms while a measurement runs.
#[derive(Clone)]
pub struct RssSampler {
    root: Option<u32>,
}

pub struct Sampling {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RssSampler {
    pub fn new(root: Option<u32>) -> Self {
        Self { root }
    }

    pub fn start(&self) -> Sampling {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let task = self.root.map(|root| {
            let (stop, max) = (stop.clone(), max.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let kib = tokio::task::spawn_blocking(move || rss_kib(root))
                        .await
                        .unwrap_or(0);
                    max.fetch_max(kib, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        Sampling { stop, max, task }
    }
}

impl Sampling {
    /// Stops sampling; the largest resident set seen, KiB (0 without a process).
    pub async fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.max.load(Ordering::Relaxed)
    }
}
