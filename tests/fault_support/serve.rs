//! The real `sidepanel serve` binary as a child process, for faults that need a process of its
//! own (its own fd table and limit): started on a free loopback port with a throwaway data dir,
//! optionally with a lower soft `RLIMIT_NOFILE` (as a desktop shell gives it), ready once
//! `/healthz` answers, killed when dropped. Its open fds are read from `/proc/<pid>/fd`.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use tokio::net::TcpStream;

use crate::common::child::Killed;

/// A running `sidepanel serve`; killed and reaped on drop (its [`Killed`] guard).
pub struct Served {
    child: Killed,
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl Served {
    /// `sidepanel serve` in front of `upstream` (an `http://…/api/v1` URL) with `key` as the
    /// Venice key; with `nofile_soft`, the child starts with that soft fd limit (hard kept).
    pub async fn start(upstream: &str, key: &str, nofile_soft: Option<u64>) -> Self {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind :0");
            l.local_addr().expect("addr")
        };
        let data = tempfile::tempdir().expect("data dir");
        let mut cmd = crate::common::child::sidepanel();
        cmd.args([
            "serve",
            "--listen",
            &addr.to_string(),
            "--upstream",
            upstream,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("VENICE_API_KEY", key)
        // pingora logs each client that leaves mid-head as an error; the idle tests make many.
        .env("SIDEPANEL_LOG", "warn,pingora_proxy=off")
        .env_remove("SIDEPANEL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        if let Some(soft) = nofile_soft {
            // SAFETY: between fork and exec only async-signal-safe calls (getrlimit, setrlimit).
            unsafe {
                cmd.pre_exec(move || {
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    lim.rlim_cur = soft.min(lim.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = Killed(cmd.spawn().expect("spawn sidepanel serve"));
        let served = Self {
            child,
            addr,
            _data: data,
        };
        let healthz = super::get("/healthz", &[format!("Host: {addr}")]);
        let ready = super::poll(|| async {
            TcpStream::connect(addr).await.is_ok()
                && super::exchange(addr, &healthz).await.status == 200
        })
        .await;
        assert!(ready, "sidepanel serve did not answer /healthz");
        served
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Open fds of the child.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    /// The child's soft `RLIMIT_NOFILE` as `/proc/<pid>/limits` shows it.
    pub fn nofile_soft(&self) -> Option<u64> {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }

    /// The child's fd count once it has stopped changing (as [`super::settled_fds`]).
    pub async fn settled_fds(&self) -> usize {
        let (mut last, mut same) = (self.open_fds(), 0);
        let deadline = tokio::time::Instant::now() + super::DEADLINE;
        while same < 10 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let now = self.open_fds();
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        last
    }
}
