//! Cache metrics for CloudWatch: counts of which layer answered resolves, flushed as an
//! Embedded Metric Format (EMF) line on stdout at most every [`FLUSH_EVERY`], so the
//! "cache hit ratio" alarm has data without a metrics API call on the hot path. Only on
//! Lambda (`AWS_LAMBDA_FUNCTION_NAME` set); elsewhere recording is a no-op.

use crate::services::resolve::CacheSource;
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often counts are written out.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// The CloudWatch namespace.
pub const NAMESPACE: &str = "TrafficManager";

/// Counters of resolve answers per layer.
pub struct CacheMetrics {
    function: Option<String>,
    counts: [AtomicU64; 4],
    last_flush: Mutex<Instant>,
}

const NAMES: [&str; 4] = ["CacheHitL1", "CacheHitL2", "CacheMiss", "CacheStale"];

fn slot(source: CacheSource) -> usize {
    match source {
        CacheSource::HitL1 => 0,
        CacheSource::HitL2 => 1,
        CacheSource::Miss => 2,
        CacheSource::Stale => 3,
    }
}

impl CacheMetrics {
    /// Enabled on Lambda, named after the function.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .ok()
                .filter(|s| !s.is_empty()),
        )
    }

    /// Enabled when `function` is given.
    pub fn new(function: Option<String>) -> Self {
        Self {
            function,
            counts: Default::default(),
            last_flush: Mutex::new(Instant::now()),
        }
    }

    /// Counts one answer; writes the EMF line when it is time.
    pub fn record(&self, source: CacheSource) {
        if self.function.is_none() {
            return;
        }
        self.counts[slot(source)].fetch_add(1, Ordering::Relaxed);
        if let Some(line) = self.take_due(Instant::now()) {
            println!("{line}");
        }
    }

    /// The EMF line, when the flush interval has passed since the last one (resetting the
    /// counts), else `None`.
    pub fn take_due(&self, now: Instant) -> Option<String> {
        let function = self.function.as_ref()?;
        {
            let mut last = self.last_flush.try_lock().ok()?;
            if now.duration_since(*last) < FLUSH_EVERY {
                return None;
            }
            *last = now;
        }
        let values: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let millis = crate::domain::timefmt::Timestamp::now().millis();
        let metrics: Vec<_> = NAMES
            .iter()
            .map(|n| json!({"Name": n, "Unit": "Count"}))
            .collect();
        let mut line = json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [["FunctionName"]], "Metrics": metrics}]
            },
            "FunctionName": function,
        });
        for (name, v) in NAMES.iter().zip(values) {
            line[*name] = json!(v);
        }
        Some(line.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_flushed_as_one_emf_line_per_interval() {
        let m = CacheMetrics::new(Some("tm-resolve-dev".into()));
        let start = Instant::now();
        for s in [
            CacheSource::HitL1,
            CacheSource::HitL1,
            CacheSource::HitL2,
            CacheSource::Miss,
        ] {
            m.counts[slot(s)].fetch_add(1, Ordering::Relaxed);
        }
        assert!(m.take_due(start).is_none(), "not yet due");
        let line = m.take_due(start + FLUSH_EVERY).expect("due");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["CacheHitL1"], 2);
        assert_eq!(v["CacheHitL2"], 1);
        assert_eq!(v["CacheMiss"], 1);
        assert_eq!(v["FunctionName"], "tm-resolve-dev");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        let next = m.take_due(start + FLUSH_EVERY * 2).unwrap();
        let v: serde_json::Value = serde_json::from_str(&next).unwrap();
        assert_eq!(v["CacheHitL1"], 0, "counts restart after a flush");
    }

    #[test]
    fn off_lambda_nothing_is_recorded() {
        let m = CacheMetrics::new(None);
        m.record(CacheSource::Miss);
        assert!(m.take_due(Instant::now() + FLUSH_EVERY).is_none());
    }
}
