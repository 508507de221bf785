//! The standard `process_*` metrics every Prometheus client library exports (resident and
//! virtual memory, CPU time, open and maximum descriptors, threads, start time), read from
//! `/proc/self` at scrape time, plus `sidepanel_build_info`.
//!
//! Owns [`ProcessCollector`]. These keep their conventional unprefixed names so the usual
//! process dashboards and alerts work unchanged; on a system without `/proc` nothing is
//! exported.

use std::fs;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, IntGaugeVec, Opts, Registry};

/// Collects the process metrics when gathered.
pub struct ProcessCollector {
    cpu: Counter,
    resident: IntGauge,
    virtual_mem: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    descs: Vec<Desc>,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

impl ProcessCollector {
    pub fn new() -> Self {
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds",
        )
        .expect("valid metric");
        let start_time = Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
        )
        .expect("valid metric");
        let mut c = Self {
            cpu,
            resident: gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
            ),
            virtual_mem: gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
            ),
            open_fds: gauge("process_open_fds", "Number of open file descriptors"),
            max_fds: gauge("process_max_fds", "Maximum number of open file descriptors"),
            threads: gauge("process_threads", "Number of OS threads in the process"),
            start_time,
            descs: Vec::new(),
        };
        c.descs = c.parts().iter().flat_map(|m| m.desc()).cloned().collect();
        c
    }

    fn parts(&self) -> [&dyn Collector; 7] {
        [
            &self.cpu,
            &self.resident,
            &self.virtual_mem,
            &self.open_fds,
            &self.max_fds,
            &self.threads,
            &self.start_time,
        ]
    }

    /// Reads `/proc/self`; false when it cannot.
    fn refresh(&self) -> bool {
        let Some(stat) = Stat::read() else {
            return false;
        };
        let ticks = clock_ticks();
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        self.cpu.inc_by((cpu - self.cpu.get()).max(0.0));
        self.resident.set((stat.rss_pages * page_size()) as i64);
        self.virtual_mem.set(stat.vsize as i64);
        self.threads.set(stat.threads as i64);
        if let Some(boot) = boot_time() {
            self.start_time.set(boot + stat.start_ticks as f64 / ticks);
        }
        if let Ok(dir) = fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max);
        }
        true
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if !self.refresh() {
            return Vec::new();
        }
        self.parts().iter().flat_map(|m| m.collect()).collect()
    }
}

/// The fields of `/proc/self/stat` used here.
struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    fn read() -> Option<Self> {
        let text = fs::read_to_string("/proc/self/stat").ok()?;
        // The command name may contain spaces and parentheses: fields start after the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state); field n is at index n - 3.
        let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

fn boot_time() -> Option<f64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

fn max_open_files() -> Option<i64> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value; it takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// Registers `sidepanel_build_info{version}` (always 1) in `r`.
pub fn register_build_info(r: &Registry) {
    let opts = Opts::new(
        "build_info",
        "Always 1; the labels name the running build (version from Cargo.toml)",
    );
    let info = IntGaugeVec::new(opts, &["version"]).expect("valid metric");
    info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    r.register(Box::new(info)).expect("unique metric");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_from_proc() {
        let c = ProcessCollector::new();
        let families = c.collect();
        if !std::path::Path::new("/proc/self/stat").exists() {
            assert!(families.is_empty());
            return;
        }
        let value = |name: &str| {
            let f = families.iter().find(|f| f.name() == name).expect(name);
            let m = &f.get_metric()[0];
            m.get_gauge().get_value() + m.get_counter().get_value()
        };
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_start_time_seconds") > 1.6e9);
    }
}
