//! Operational figures, recorded through the `metrics` facade so one set of recording
//! calls feeds whichever exporter the process installed: CloudWatch Embedded Metric
//! Format lines on Lambda ([`emf`], feature `emf`), Prometheus text at tm-local's
//! `GET /metrics`. With no exporter installed every recording is a no-op.
//!
//! The handles are registered once, on first use, and kept in a static, so the resolve
//! hot path costs an atomic add per counter and a lock-free push per histogram sample:
//! no key hashing, no registry lookup, no lock. An exporter must therefore be installed
//! before the first recording (first thing in `main`); handles taken earlier stay no-ops.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `tm_resolve_requests_total` | counter | `layer` | resolves that found a route, by the layer that answered (`hit-l1`, `hit-l2`, `miss`, `stale`) |
//! | `tm_resolve_negative_total` | counter | `layer` | "no such route" answers, by the layer that said so (negative hits when it is a cache) |
//! | `tm_resolve_latency_seconds` | histogram | | time to answer a resolve, in the function |
//! | `tm_store_reads_total` | counter | `op` | store reads made by resolve (`get`, `versions`) |
//! | `tm_consumer_batch_records` | histogram | | records per event batch |
//! | `tm_consumer_lag_seconds` | histogram | | per batch, the age of its oldest record (from its Kafka timestamp) when the batch is handled |
//! | `tm_consumer_dead_letters_total` | counter | | records sent to the dead-letter topic |
//! | `tm_outbox_backlog` | gauge | | outbox entries the relay found pending at its last read (at most one batch, 100) |
//! | `tm_outbox_published_total` | counter | | events the relay published |
//! | `tm_outbox_parked_total` | counter | | outbox entries the relay set aside (undecodable, or rejected by the publisher on their own): kept in the store's parked place, each logged with its id and reason; any is worth an alarm (docs/reliability.md) |
//! | `tm_write_requests_total` | counter | `status` | management API requests answered, by status class (`2xx`, `3xx`, `4xx`, `5xx`) |
//! | `tm_write_latency_seconds` | histogram | | time to answer a management API request, in the function |
//! | `tm_publish_deferred_total` | counter | | events a write or the prober committed but could not publish within its deadline: left in the outbox for the relay |
//! | `tm_health_probes_total` | counter | | health probes made by the prober |
//! | `tm_health_transitions_total` | counter | | endpoint health transitions the prober recorded |
//! | `tm_ratelimit_degraded_total` | counter | | rate-limit exchanges with the fleet's ledger (Redis) that failed: the instance limited on its own meanwhile |

#[cfg(feature = "emf")]
pub mod emf;

use crate::ports::CacheSource;
use metrics::{Counter, Gauge, Histogram, Unit};
use std::sync::OnceLock;
use std::time::Duration;

/// The CloudWatch namespace of the EMF lines.
pub const NAMESPACE: &str = "TrafficManager";
/// Resolves answered, by layer.
pub const RESOLVE_REQUESTS: &str = "tm_resolve_requests_total";
/// "No such route" answers, by layer.
pub const RESOLVE_NEGATIVE: &str = "tm_resolve_negative_total";
/// Resolve latency.
pub const RESOLVE_LATENCY: &str = "tm_resolve_latency_seconds";
/// Store reads by resolve, by operation.
pub const STORE_READS: &str = "tm_store_reads_total";
/// Records per consumer batch.
pub const CONSUMER_BATCH: &str = "tm_consumer_batch_records";
/// Consumer lag.
pub const CONSUMER_LAG: &str = "tm_consumer_lag_seconds";
/// Dead-lettered records.
pub const DEAD_LETTERS: &str = "tm_consumer_dead_letters_total";
/// Pending outbox entries.
pub const OUTBOX_BACKLOG: &str = "tm_outbox_backlog";
/// Published events.
pub const OUTBOX_PUBLISHED: &str = "tm_outbox_published_total";
/// Outbox entries set aside (parked).
pub const OUTBOX_PARKED: &str = "tm_outbox_parked_total";
/// Management API requests, by status class.
pub const WRITE_REQUESTS: &str = "tm_write_requests_total";
/// Management API latency.
pub const WRITE_LATENCY: &str = "tm_write_latency_seconds";
/// Events left in the outbox for the relay after a missed publish.
pub const PUBLISH_DEFERRED: &str = "tm_publish_deferred_total";
/// Health probes made.
pub const HEALTH_PROBES: &str = "tm_health_probes_total";
/// Endpoint health transitions recorded.
pub const HEALTH_TRANSITIONS: &str = "tm_health_transitions_total";

/// Failed exchanges of the rate limiter with the fleet's usage ledger.
pub const LIMITER_DEGRADED: &str = "tm_ratelimit_degraded_total";

/// Histogram buckets (Prometheus) for the latency, in seconds: 50 µs to 2.5 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];
/// Buckets for the consumer lag, in seconds.
pub const LAG_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Buckets for the batch size, in records.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10000.0,
];

/// Registers the descriptions and units (exporters show them: `# HELP`, EMF `Unit`).
/// Call once, right after installing an exporter.
pub fn describe() {
    metrics::describe_counter!(
        RESOLVE_REQUESTS,
        Unit::Count,
        "Resolves answered, by the layer that answered"
    );
    metrics::describe_counter!(
        RESOLVE_NEGATIVE,
        Unit::Count,
        "No-such-route answers, by the layer that answered"
    );
    metrics::describe_histogram!(
        RESOLVE_LATENCY,
        Unit::Seconds,
        "Time to answer a resolve, in the function"
    );
    metrics::describe_counter!(
        STORE_READS,
        Unit::Count,
        "Store reads made by resolve, by operation"
    );
    metrics::describe_histogram!(CONSUMER_BATCH, Unit::Count, "Records per event batch");
    metrics::describe_histogram!(
        CONSUMER_LAG,
        Unit::Seconds,
        "Per batch, the age of its oldest record when the batch is handled"
    );
    metrics::describe_counter!(
        DEAD_LETTERS,
        Unit::Count,
        "Records sent to the dead-letter topic"
    );
    metrics::describe_gauge!(
        OUTBOX_BACKLOG,
        Unit::Count,
        "Outbox entries pending at the relay's last read (at most one batch)"
    );
    metrics::describe_counter!(OUTBOX_PUBLISHED, Unit::Count, "Events the relay published");
    metrics::describe_counter!(
        OUTBOX_PARKED,
        Unit::Count,
        "Outbox entries the relay set aside: undecodable, or rejected by the publisher"
    );
    metrics::describe_counter!(
        WRITE_REQUESTS,
        Unit::Count,
        "Management API requests answered, by status class"
    );
    metrics::describe_histogram!(
        WRITE_LATENCY,
        Unit::Seconds,
        "Time to answer a management API request, in the function"
    );
    metrics::describe_counter!(
        PUBLISH_DEFERRED,
        Unit::Count,
        "Committed events not published within the deadline, left for the outbox relay"
    );
    metrics::describe_counter!(HEALTH_PROBES, Unit::Count, "Health probes made");
    metrics::describe_counter!(
        HEALTH_TRANSITIONS,
        Unit::Count,
        "Endpoint health transitions recorded"
    );
    metrics::describe_counter!(
        LIMITER_DEGRADED,
        Unit::Count,
        "Rate-limit exchanges with the fleet's usage ledger that failed"
    );
}

/// The registered handles.
pub struct Figures {
    by_layer: [Counter; 4],
    negative_by_layer: [Counter; 4],
    latency: Histogram,
    store_get: Counter,
    store_versions: Counter,
    batch: Histogram,
    lag: Histogram,
    dead_letters: Counter,
    backlog: Gauge,
    published: Counter,
    parked: Counter,
    write_by_class: [Counter; 4],
    write_latency: Histogram,
    deferred: Counter,
    probes: Counter,
    transitions: Counter,
    limiter_degraded: Counter,
}

const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The slot of a status code's class in [`STATUS_CLASSES`] (1xx counts as 2xx: none are
/// answered).
fn class_slot(status: u16) -> usize {
    match status {
        300..=399 => 1,
        400..=499 => 2,
        500.. => 3,
        _ => 0,
    }
}

const LAYERS: [CacheSource; 4] = [
    CacheSource::HitL1,
    CacheSource::HitL2,
    CacheSource::Miss,
    CacheSource::Stale,
];

fn slot(source: CacheSource) -> usize {
    match source {
        CacheSource::HitL1 => 0,
        CacheSource::HitL2 => 1,
        CacheSource::Miss => 2,
        CacheSource::Stale => 3,
    }
}

static FIGURES: OnceLock<Figures> = OnceLock::new();

/// The handles, registered with the installed exporter on first use.
pub fn figures() -> &'static Figures {
    FIGURES.get_or_init(|| Figures {
        by_layer: LAYERS.map(|l| metrics::counter!(RESOLVE_REQUESTS, "layer" => l.header())),
        negative_by_layer: LAYERS
            .map(|l| metrics::counter!(RESOLVE_NEGATIVE, "layer" => l.header())),
        latency: metrics::histogram!(RESOLVE_LATENCY),
        store_get: metrics::counter!(STORE_READS, "op" => "get"),
        store_versions: metrics::counter!(STORE_READS, "op" => "versions"),
        batch: metrics::histogram!(CONSUMER_BATCH),
        lag: metrics::histogram!(CONSUMER_LAG),
        dead_letters: metrics::counter!(DEAD_LETTERS),
        backlog: metrics::gauge!(OUTBOX_BACKLOG),
        published: metrics::counter!(OUTBOX_PUBLISHED),
        parked: metrics::counter!(OUTBOX_PARKED),
        write_by_class: STATUS_CLASSES.map(|c| metrics::counter!(WRITE_REQUESTS, "status" => c)),
        write_latency: metrics::histogram!(WRITE_LATENCY),
        deferred: metrics::counter!(PUBLISH_DEFERRED),
        probes: metrics::counter!(HEALTH_PROBES),
        transitions: metrics::counter!(HEALTH_TRANSITIONS),
        limiter_degraded: metrics::counter!(LIMITER_DEGRADED),
    })
}

impl Figures {
    /// One resolve answered by `source`, in `took`.
    #[inline]
    pub fn resolved(&self, source: CacheSource, took: Duration) {
        self.by_layer[slot(source)].increment(1);
        self.latency.record(took.as_secs_f64());
    }

    /// One "no such route" answer from `source`.
    #[inline]
    pub fn negative(&self, source: CacheSource) {
        self.negative_by_layer[slot(source)].increment(1);
    }

    /// One store read by resolve: a single route (`get`) or a service's versions.
    #[inline]
    pub fn store_read(&self, versions: bool) {
        if versions {
            self.store_versions.increment(1);
        } else {
            self.store_get.increment(1);
        }
    }

    /// One event batch of `records` records.
    pub fn batch(&self, records: usize) {
        self.batch.record(records as f64);
    }

    /// A batch whose oldest record was `lag` old when handled.
    pub fn lag(&self, lag: Duration) {
        self.lag.record(lag.as_secs_f64());
    }

    /// One record dead-lettered.
    pub fn dead_letter(&self) {
        self.dead_letters.increment(1);
    }

    /// The relay found `pending` entries.
    pub fn backlog(&self, pending: usize) {
        self.backlog.set(pending as f64);
    }

    /// The relay published `n` events.
    pub fn published(&self, n: usize) {
        self.published.increment(n as u64);
    }

    /// The relay set one outbox entry aside.
    pub fn outbox_parked(&self) {
        self.parked.increment(1);
    }

    /// One management API request answered with `status`, in `took`.
    pub fn wrote(&self, status: u16, took: Duration) {
        self.write_by_class[class_slot(status)].increment(1);
        self.write_latency.record(took.as_secs_f64());
    }

    /// One committed event left in the outbox for the relay.
    pub fn publish_deferred(&self) {
        self.deferred.increment(1);
    }

    /// A prober round made `probes` probes and recorded `transitions` transitions.
    pub fn probed(&self, probes: usize, transitions: usize) {
        self.probes.increment(probes as u64);
        self.transitions.increment(transitions as u64);
    }

    /// One failed exchange with the rate limiter's usage ledger.
    pub fn limiter_degraded(&self) {
        self.limiter_degraded.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_fall_in_their_class() {
        let classes: Vec<&str> = [200, 201, 204, 304, 400, 404, 412, 429, 500, 503]
            .map(|s| STATUS_CLASSES[class_slot(s)])
            .to_vec();
        assert_eq!(
            classes,
            [
                "2xx", "2xx", "2xx", "3xx", "4xx", "4xx", "4xx", "4xx", "5xx", "5xx"
            ]
        );
    }
}
