//! Imports criterion's estimates (`<dir>/<bench>/new/{benchmark,estimates}.json`) as
//! records: the median of each benchmark's samples, in nanoseconds, for the benchmarks
//! written at or after `since` (so one `cargo bench` invocation is one run).

use crate::record::Record;
use anyhow::Context;
use serde_json::Value;
use std::path::Path;
use std::time::SystemTime;

/// The report row.
pub const ROW: &str = "criterion";

/// Emits one record per benchmark found; returns how many.
pub fn import(dir: &Path, run: u32, since: Option<SystemTime>) -> anyhow::Result<usize> {
    let mut n = 0;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let new = entry.path().join("new");
        let (Ok(bench), Ok(est)) = (
            std::fs::read_to_string(new.join("benchmark.json")),
            std::fs::read_to_string(new.join("estimates.json")),
        ) else {
            continue;
        };
        let written = std::fs::metadata(new.join("estimates.json"))
            .and_then(|m| m.modified())
            .ok();
        if let (Some(since), Some(w)) = (since, written)
            && w < since
        {
            continue;
        }
        let bench: Value = serde_json::from_str(&bench)?;
        let est: Value = serde_json::from_str(&est)?;
        let title = bench["title"].as_str().unwrap_or_default().to_owned();
        let Some(median) = est["median"]["point_estimate"].as_f64() else {
            continue;
        };
        found.push((title, median));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (title, median) in found {
        Record::new(ROW, &title, run, median, "ns")
            .note("criterion median")
            .emit();
        n += 1;
    }
    Ok(n)
}
