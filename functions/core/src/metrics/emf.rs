//! The Lambda exporter: the figures as CloudWatch Embedded Metric Format lines on
//! stdout, written by `metrics_cloudwatch_embedded` (namespace [`NAMESPACE`], dimension
//! `FunctionName`, plus each figure's labels as dimensions).
//!
//! A Lambda execution environment runs one invocation at a time, so the function calls
//! [`Emf::after_invocation`] once per invocation; it flushes when [`FLUSH_EVERY`] has
//! passed or [`FLUSH_AFTER`] invocations ran since the last flush. Each invocation
//! records at most one sample per histogram, so a flush never holds more than the 100
//! values EMF allows per metric, and a busy function writes one line per label set
//! every few seconds instead of one per request.

use metrics_cloudwatch_embedded::{Builder, Collector};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use super::NAMESPACE;
/// Longest time between flushes while invocations arrive.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Most invocations between flushes: EMF allows 100 values per metric per line, and
/// the exporter holds at most 100 histogram samples between flushes (a full buffer
/// blocks the recording call), so 64 leaves room for invocations running concurrently.
pub const FLUSH_AFTER: u32 = 64;

/// When to flush: a count of invocations and the time of the last flush, both atomics
/// (no lock on the request path).
struct FlushPolicy {
    since_flush: AtomicU32,
    last_flush_ms: AtomicI64,
}

impl FlushPolicy {
    fn new(now_ms: i64) -> Self {
        Self {
            since_flush: AtomicU32::new(0),
            last_flush_ms: AtomicI64::new(now_ms),
        }
    }

    /// Whether a flush is due after one more invocation, at `now_ms`; resets the count
    /// and the clock when it is.
    fn due(&self, now_ms: i64) -> bool {
        let n = self.since_flush.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        if n < FLUSH_AFTER && now_ms - last < FLUSH_EVERY.as_millis() as i64 {
            return false;
        }
        self.since_flush.store(0, Ordering::Relaxed);
        self.last_flush_ms.store(now_ms, Ordering::Relaxed);
        true
    }
}

/// The installed exporter.
pub struct Emf {
    collector: &'static Collector,
    policy: FlushPolicy,
}

fn now_ms() -> i64 {
    crate::domain::timefmt::Timestamp::now().millis()
}

impl Emf {
    /// On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set), installs the EMF recorder as the
    /// process's metrics recorder and answers it; elsewhere `None` (nothing recorded).
    /// Call first thing in `main`, before anything records.
    pub fn install_from_env() -> Result<Option<Self>, String> {
        match std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
            Ok(name) if !name.is_empty() => Self::install(Builder::new(), &name).map(Some),
            _ => Ok(None),
        }
    }

    /// Installs the EMF recorder built by `builder` with `FunctionName` = `function`.
    fn install(builder: Builder, function: &str) -> Result<Self, String> {
        let collector = builder
            .cloudwatch_namespace(NAMESPACE)
            .with_dimension("FunctionName", function.to_owned())
            .init()
            .map_err(|e| format!("installing the EMF metrics recorder: {e}"))?;
        super::describe();
        super::figures();
        Ok(Self {
            collector,
            policy: FlushPolicy::new(now_ms()),
        })
    }

    /// Counts one invocation; writes the EMF lines to stdout when due.
    pub fn after_invocation(&self) {
        if self.policy.due(now_ms()) {
            self.flush();
        }
    }

    /// Writes the EMF lines now.
    pub fn flush(&self) {
        let stdout = std::io::stdout();
        if let Err(e) = self.collector.flush(stdout.lock()) {
            tracing::warn!(error = %e, "could not write the EMF metrics");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics as m;

    #[test]
    fn a_flush_is_due_every_sixty_four_invocations_or_ten_seconds() {
        let p = FlushPolicy::new(0);
        for _ in 1..FLUSH_AFTER {
            assert!(!p.due(1_000));
        }
        assert!(p.due(1_000), "the 64th invocation flushes");
        assert!(!p.due(1_001), "and the count starts over");
        assert!(
            p.due(1_000 + FLUSH_EVERY.as_millis() as i64),
            "time alone flushes too"
        );
    }

    #[test]
    fn figures_become_emf_lines_with_the_function_and_label_dimensions() {
        // The process's global recorder: this is the only test that installs one.
        let emf = Emf::install(Builder::new().with_timestamp(1), "tm-resolve-test").unwrap();
        // The macros, not `figures()`: its handles may have been taken in this process
        // before the recorder existed (other tests, when run in one process).
        metrics::counter!(m::RESOLVE_REQUESTS, "layer" => "hit-l1").increment(2);
        let latency = metrics::histogram!(m::RESOLVE_LATENCY);
        latency.record(0.0002);
        latency.record(0.0003);
        metrics::gauge!(m::OUTBOX_BACKLOG).set(7.0);
        let mut out = Vec::new();
        emf.collector.flush(&mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let find = |name: &str| {
            lines
                .iter()
                .find(|l| l.get(name).is_some())
                .unwrap_or_else(|| panic!("no line for {name}: {lines:?}"))
        };
        let counter = find(m::RESOLVE_REQUESTS);
        assert_eq!(counter[m::RESOLVE_REQUESTS], 2);
        assert_eq!(counter["layer"], "hit-l1");
        assert_eq!(counter["FunctionName"], "tm-resolve-test");
        let cw = &counter["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], NAMESPACE);
        assert_eq!(
            cw["Dimensions"][0],
            serde_json::json!(["FunctionName", "layer"])
        );
        let latency = find(m::RESOLVE_LATENCY);
        assert_eq!(
            latency[m::RESOLVE_LATENCY],
            serde_json::json!([0.0002, 0.0003])
        );
        assert_eq!(
            latency["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0],
            serde_json::json!(["FunctionName"])
        );
        assert_eq!(find(m::OUTBOX_BACKLOG)[m::OUTBOX_BACKLOG], 7.0);
        // AND a second flush has no counts left to report
        let mut again = Vec::new();
        emf.collector.flush(&mut again).unwrap();
        assert!(
            !String::from_utf8(again)
                .unwrap()
                .contains(m::RESOLVE_REQUESTS)
        );
    }
}
