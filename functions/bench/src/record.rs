//! One measurement as a JSON line, and the machine it was taken on.

use serde::{Deserialize, Serialize};
use std::io::Write;

/// One value of one series of one report row, from one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The report row (see [`crate::report::ROWS`]).
    pub row: String,
    /// What was measured within the row (`tm-local`, `nginx`, `L2 p99`, ...).
    pub series: String,
    /// The run (0-based); runs of different series with the same number were interleaved.
    pub run: u32,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The 1-minute load average when the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    /// CPU cores kept busy by other processes around the run (the larger of the samples
    /// bench.sh takes just before and just after it, while its own servers are idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<f64>,
    /// Free text (what was run, counts behind a percentage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Set on a record kept from an earlier report for a row this run did not measure:
    /// when that run started and on which commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier_run: Option<String>,
}

impl Record {
    /// A record stamped with the current load average.
    pub fn new(row: &str, series: &str, run: u32, value: f64, unit: &str) -> Self {
        Self {
            row: row.to_owned(),
            series: series.to_owned(),
            run,
            value,
            unit: unit.to_owned(),
            load1: load_average().map(|l| l[0]),
            // bench.sh sets it around a driver that records runs itself.
            busy: std::env::var("BENCH_BUSY")
                .ok()
                .and_then(|b| b.parse().ok()),
            note: None,
            earlier_run: None,
        }
    }

    /// With the other processes' load around the run.
    pub fn busy(mut self, busy: f64) -> Self {
        self.busy = Some(busy);
        self
    }

    /// With a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Prints the record as one JSON line on stdout (and a readable line on stderr).
    pub fn emit(&self) {
        eprintln!(
            "  {} / {} [run {}]: {:.3} {}{}",
            self.row,
            self.series,
            self.run,
            self.value,
            self.unit,
            self.note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
        let line = serde_json::to_string(self).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// The 1, 5 and 15-minute load averages.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// What the report says about the machine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// OS name.
    pub os: String,
    /// Load averages when the run started.
    pub load_start: Option<[f64; 3]>,
    /// Load averages when the report was written.
    pub load_end: Option<[f64; 3]>,
    /// When the run started (RFC 3339).
    pub started_at: String,
    /// Git commit of the tree measured (with `-dirty` for uncommitted changes).
    pub commit: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Tool versions (wrk, nginx, redis-benchmark, ...), as the script found them.
    pub tools: Vec<String>,
}

impl Machine {
    /// Reads what `/proc` and `uname` say; the rest is filled by the caller.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        Self {
            cpu,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            memory_mib,
            kernel,
            os,
            load_start: load_average(),
            ..Self::default()
        }
    }
}

/// Resident set size and its peak (`VmRSS`, `VmHWM`) of process `pid`, in MB (10^6
/// bytes, the unit of the targets), from `/proc/<pid>/status`.
pub fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| kib * 1024.0 / 1e6)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_json_round_trip() {
        let r = Record::new("http_l1", "nginx", 2, 1234.5, "req/s").note("wrk -t2 -c32");
        let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let (rss, peak) = rss_mb(std::process::id()).unwrap();
        assert!(rss > 0.0 && peak >= rss);
    }
}
