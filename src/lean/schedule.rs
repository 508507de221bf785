//! When to check which file: per-file debounce and versions.
//!
//! Owns the rule that a burst of check requests for one file becomes one check, run once the
//! file has been quiet for `debounce` (but never later than [`MAX_DELAY_FACTOR`] × `debounce`
//! after the first request of the burst, so a file edited non-stop is still checked), and the
//! per-file version that lets the supervisor drop answers for older versions. Pure logic over
//! `Instant`s; the supervisor owns the timer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A burst is checked at the latest this many debounce periods after it began.
pub(super) const MAX_DELAY_FACTOR: u32 = 5;
/// Files whose version is remembered; older idle ones are forgotten.
const MAX_FILES: usize = 1024;

/// One check to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Job {
    pub file: String,
    /// 1-based line of interest, when known.
    pub line: Option<u32>,
    pub version: u64,
}

#[derive(Debug)]
struct Pending {
    line: Option<u32>,
    due: Instant,
    first: Instant,
}

#[derive(Debug, Default)]
struct FileEntry {
    version: u64,
    pending: Option<Pending>,
    touched: u64,
}

/// The per-file debounce timers and versions.
#[derive(Debug)]
pub(super) struct Scheduler {
    debounce: Duration,
    files: HashMap<String, FileEntry>,
    tick: u64,
}

impl Scheduler {
    pub(super) fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            files: HashMap::new(),
            tick: 0,
        }
    }

    /// A check was asked for: bumps the file's version and (re)arms its timer. A known `line`
    /// replaces the pending one; an unknown one keeps it. Returns the new version.
    pub(super) fn request(&mut self, file: &str, line: Option<u32>, now: Instant) -> u64 {
        self.arm(file, line, now, self.debounce)
    }

    /// Like [`request`](Self::request) but due at once (re-checks after a restart).
    pub(super) fn request_now(&mut self, file: &str, line: Option<u32>, now: Instant) -> u64 {
        self.arm(file, line, now, Duration::ZERO)
    }

    fn arm(&mut self, file: &str, line: Option<u32>, now: Instant, delay: Duration) -> u64 {
        self.tick += 1;
        let tick = self.tick;
        if !self.files.contains_key(file) {
            self.forget_idle();
        }
        let entry = self.files.entry(file.to_owned()).or_default();
        entry.version += 1;
        entry.touched = tick;
        let first = entry.pending.as_ref().map_or(now, |p| p.first);
        let latest = first + self.debounce * MAX_DELAY_FACTOR;
        let line = line.or(entry.pending.as_ref().and_then(|p| p.line));
        entry.pending = Some(Pending {
            line,
            due: (now + delay).min(latest),
            first,
        });
        entry.version
    }

    /// When the next check is due, if any is pending.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.files
            .values()
            .filter_map(|e| e.pending.as_ref().map(|p| p.due))
            .min()
    }

    /// Takes the earliest check due at `now`.
    pub(super) fn take_due(&mut self, now: Instant) -> Option<Job> {
        let (file, entry) = self
            .files
            .iter_mut()
            .filter(|(_, e)| e.pending.as_ref().is_some_and(|p| p.due <= now))
            .min_by_key(|(_, e)| e.pending.as_ref().map(|p| p.due))?;
        let pending = entry.pending.take()?;
        Some(Job {
            file: file.clone(),
            line: pending.line,
            version: entry.version,
        })
    }

    /// True when `version` is still the newest requested for `file`.
    pub(super) fn is_latest(&self, file: &str, version: u64) -> bool {
        self.files.get(file).is_some_and(|e| e.version == version)
    }

    /// A check is waiting for `file`.
    pub(super) fn is_pending(&self, file: &str) -> bool {
        self.files.get(file).is_some_and(|e| e.pending.is_some())
    }

    fn forget_idle(&mut self) {
        if self.files.len() < MAX_FILES {
            return;
        }
        let oldest = self
            .files
            .iter()
            .filter(|(_, e)| e.pending.is_none())
            .min_by_key(|(_, e)| e.touched)
            .map(|(f, _)| f.clone());
        if let Some(f) = oldest {
            self.files.remove(&f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(100);

    #[test]
    fn a_burst_becomes_one_job_with_the_last_line_and_version() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(D);
        s.request("A.lean", Some(3), t0);
        s.request("A.lean", None, t0 + D / 2);
        let v = s.request("A.lean", Some(7), t0 + D);
        assert_eq!(s.take_due(t0 + D + D / 2), None, "still quiet-waiting");
        assert_eq!(s.next_due(), Some(t0 + 2 * D));
        let job = s.take_due(t0 + 2 * D).expect("due");
        assert_eq!(
            job,
            Job {
                file: "A.lean".into(),
                line: Some(7),
                version: v
            }
        );
        assert_eq!(s.take_due(t0 + 10 * D), None, "one job only");
        assert!(s.is_latest("A.lean", v));
        s.request("A.lean", None, t0 + 3 * D);
        assert!(
            !s.is_latest("A.lean", v),
            "a newer request makes the old answer stale"
        );
    }

    #[test]
    fn a_never_quiet_file_is_still_checked() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(D);
        for i in 0..20 {
            s.request("A.lean", None, t0 + i * D / 2);
        }
        assert_eq!(s.next_due(), Some(t0 + D * MAX_DELAY_FACTOR));
    }

    #[test]
    fn files_are_independent_and_request_now_is_due_at_once() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(D);
        s.request("A.lean", None, t0);
        s.request_now("B.lean", Some(1), t0);
        assert_eq!(s.take_due(t0).map(|j| j.file), Some("B.lean".into()));
        assert!(s.is_pending("A.lean"));
        assert_eq!(s.take_due(t0 + D).map(|j| j.file), Some("A.lean".into()));
        assert!(!s.is_latest("C.lean", 1), "never requested");
    }
}
