//! Plays the MSK trigger against a real broker (when `TM_KAFKA_BROKERS` is set): a
//! consumer-group member polls the event topic, hands MSK-shaped batches to the same
//! [`ConsumerHandler`] Lambda invokes, and commits offsets only once a batch is handled.
//!
//! Semantics, as the MSK event source mapping with `ReportBatchItemFailures`:
//! - a batch holds at most [`MAX_BATCH`] records, gathered for at most [`BATCH_WINDOW`]
//!   after the first one; records are grouped under `"<topic>-<partition>"`, keys and values
//!   base64, headers as arrays of signed bytes;
//! - a partition the handler reports in `batchItemFailures` is committed up to the failed
//!   record, rewound to it and paused; it is redelivered from there after a backoff
//!   (doubling from [`DEFAULT_RETRY_BACKOFF`] to [`MAX_RETRY_BACKOFF`]) while the other
//!   partitions go on;
//! - every other partition is committed past its last record.
//!
//! Shutdown happens between batches only, so a batch is always handled and committed as a
//! whole: a restart with the same group resumes exactly after the last committed record.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::kafka::{ConsumedRecord, GroupConsumer, KafkaCluster};
use tm_core::{Error, Result};
use tm_event_consumer::ConsumerHandler;
use tokio::time::Instant;

/// The consumer group tm-local joins unless told otherwise.
pub const DEFAULT_GROUP_ID: &str = "tm-local";
/// Most records in one batch (the MSK trigger's default batch size is 100).
pub const MAX_BATCH: usize = 100;
/// How long a batch keeps gathering after its first record: short, so a change reaches
/// the cache within milliseconds (a burst still fills batches: records that are already
/// fetched arrive without waiting).
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);
/// First wait before a failed partition is redelivered.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait before a failed partition is redelivered.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);
/// Wait after a client error (broker unreachable, topic missing) before polling again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What the trigger knows about one partition between batches.
#[derive(Default)]
struct PartitionState {
    /// The next offset to hand to the handler; older records still arriving (fetched
    /// before a rewind) are dropped.
    next: Option<i64>,
    /// Paused for redelivery until then.
    held_until: Option<Instant>,
    /// Current redelivery backoff (doubles per consecutive failure).
    backoff: Option<Duration>,
}

/// The MSK trigger for one topic and consumer group.
pub struct KafkaTrigger {
    consumer: GroupConsumer,
    handler: Arc<ConsumerHandler>,
    brokers: String,
    retry_backoff: Duration,
}

impl KafkaTrigger {
    /// Joins `group_id` on `cluster` and subscribes to `topic`; events go to `handler`.
    pub fn new(
        cluster: &KafkaCluster,
        group_id: &str,
        topic: &str,
        handler: Arc<ConsumerHandler>,
    ) -> Result<Self> {
        Ok(Self {
            consumer: GroupConsumer::subscribe(cluster, group_id, topic)?,
            handler,
            brokers: cluster.brokers().to_string(),
            retry_backoff: DEFAULT_RETRY_BACKOFF,
        })
    }

    /// Sets the first wait before a failed partition is redelivered.
    pub fn with_retry_backoff(mut self, backoff: Duration) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Polls, delivers and commits until `shutdown` completes, then leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut partitions: BTreeMap<i32, PartitionState> = BTreeMap::new();
        tracing::info!(topic = self.consumer.topic(), "kafka trigger started");
        loop {
            let wake = partitions.values().filter_map(|p| p.held_until).min();
            let first = tokio::select! {
                _ = &mut shutdown => break,
                _ = sleep_until(wake) => {
                    self.release_due(&mut partitions).await;
                    continue;
                }
                r = self.consumer.recv() => r,
            };
            let first = match first {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka trigger could not poll; retrying");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(ERROR_PAUSE) => continue,
                    }
                }
            };
            let batch = self.gather(first).await;
            self.deliver(batch, &mut partitions).await;
        }
        self.consumer.close().await;
        tracing::info!("kafka trigger stopped");
    }

    /// The first record plus whatever else arrives within the batch window.
    async fn gather(&self, first: ConsumedRecord) -> Vec<ConsumedRecord> {
        let deadline = Instant::now() + BATCH_WINDOW;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(r)) => batch.push(r),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "kafka trigger poll error while gathering a batch");
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Resumes the partitions whose backoff is over, from the record that failed. The seek
    /// is repeated on purpose: records that arrived while the partition was held were
    /// dropped, and must come again even if a rebalance reset the position meanwhile. A
    /// partition whose seek fails stays held (paused) and is tried again after the next
    /// backoff: resuming it would fetch from wherever its position is, past records that
    /// were dropped while it was held, and commit past them.
    async fn release_due(&self, partitions: &mut BTreeMap<i32, PartitionState>) {
        let now = Instant::now();
        for (&p, state) in partitions.iter_mut() {
            if state.held_until.is_none_or(|t| t > now) {
                continue;
            }
            let seek = match state.next {
                Some(offset) => self.consumer.rewind(p, offset).await,
                None => Ok(()),
            };
            if let Err(e) = &seek {
                tracing::warn!(partition = p, offset = state.next, error = %e, "could not seek a held partition; it stays held");
            }
            if release(state, seek.is_ok(), now, self.retry_backoff)
                && let Err(e) = self.consumer.resume(p)
            {
                tracing::warn!(partition = p, error = %e, "could not resume a held partition");
            }
        }
    }

    /// Hands one batch to the handler, then commits, and rewinds what failed.
    async fn deliver(
        &self,
        batch: Vec<ConsumedRecord>,
        partitions: &mut BTreeMap<i32, PartitionState>,
    ) {
        let batch: Vec<_> = batch
            .into_iter()
            .filter(|r| {
                let state = partitions.entry(r.partition).or_default();
                // A held partition was rewound: its records come again after the backoff.
                state.held_until.is_none() && state.next.is_none_or(|n| r.offset >= n)
            })
            .collect();
        if batch.is_empty() {
            return;
        }
        let event = match msk_event(&batch, &self.brokers) {
            Ok(e) => e,
            Err(e) => {
                // Cannot happen for records read off a topic; never skip them silently.
                tracing::error!(error = %e, "could not build the MSK batch; rewinding");
                for p in first_offsets(&batch) {
                    self.hold(p.0, p.1, partitions).await;
                }
                return;
            }
        };
        let (response, _stats) = self.handler.handle(event).await;
        let topic = self.consumer.topic();
        let failed: HashMap<i32, i64> = response
            .batch_item_failures
            .iter()
            .filter_map(|f| {
                let id = &f.item_identifier;
                let partition = partition_number(&id.partition, topic);
                if partition.is_none() {
                    tracing::error!(partition = %id.partition, "batch item failure names no partition of this topic");
                }
                partition.map(|p| (p, id.offset))
            })
            .collect();
        let mut commits = Vec::new();
        for (partition, last) in last_offsets(&batch) {
            match failed.get(&partition) {
                Some(&offset) => {
                    commits.push((partition, offset));
                    self.hold(partition, offset, partitions).await;
                }
                None => {
                    commits.push((partition, last + 1));
                    let state = partitions.entry(partition).or_default();
                    state.next = Some(last + 1);
                    state.backoff = None;
                }
            }
        }
        if let Err(e) = self.consumer.commit(&commits).await {
            // Harmless beyond a redelivery after a restart: applying is idempotent.
            tracing::warn!(error = %e, "kafka trigger could not commit offsets");
        }
    }

    /// Rewinds `partition` to `offset` and holds it for its backoff.
    async fn hold(
        &self,
        partition: i32,
        offset: i64,
        partitions: &mut BTreeMap<i32, PartitionState>,
    ) {
        let state = partitions.entry(partition).or_default();
        let backoff = state
            .backoff
            .map_or(self.retry_backoff, |b| (b * 2).min(MAX_RETRY_BACKOFF));
        state.backoff = Some(backoff);
        state.next = Some(offset);
        state.held_until = Some(Instant::now() + backoff);
        if let Err(e) = self.consumer.rewind(partition, offset).await {
            tracing::warn!(partition, offset, error = %e, "could not rewind partition");
        }
        tracing::info!(
            partition,
            offset,
            retry_in_ms = backoff.as_millis() as u64,
            "partition will be redelivered"
        );
    }
}

/// Settles a held partition whose backoff is over, once its seek was tried: released
/// (`true`: resume it) when the seek worked, else held for another, longer backoff.
fn release(state: &mut PartitionState, seeked: bool, now: Instant, base: Duration) -> bool {
    if seeked {
        state.held_until = None;
        return true;
    }
    let backoff = state
        .backoff
        .map_or(base, |b| (b * 2).min(MAX_RETRY_BACKOFF));
    state.backoff = Some(backoff);
    state.held_until = Some(now + backoff);
    false
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The partition number in a `"<topic>-<partition>"` item identifier of `topic`.
fn partition_number(id: &str, topic: &str) -> Option<i32> {
    id.strip_prefix(topic)?.strip_prefix('-')?.parse().ok()
}

/// Each partition of the batch with its highest offset.
fn last_offsets(batch: &[ConsumedRecord]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for r in batch {
        let e = out.entry(r.partition).or_insert(r.offset);
        *e = (*e).max(r.offset);
    }
    out
}

/// Each partition of the batch with its lowest offset.
fn first_offsets(batch: &[ConsumedRecord]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    for r in batch {
        let e = out.entry(r.partition).or_insert(r.offset);
        *e = (*e).min(r.offset);
    }
    out
}

/// The MSK event Lambda would receive for these records (AWS's documented shape: records
/// under `"<topic>-<partition>"`, base64 key and value, headers as lists of
/// `{name: [signed bytes]}`).
pub fn msk_event(records: &[ConsumedRecord], brokers: &str) -> Result<KafkaEvent> {
    let mut grouped: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        let headers: Vec<Value> = r
            .headers
            .iter()
            .map(|(k, v)| json!({ k: v.iter().map(|b| *b as i8).collect::<Vec<i8>>() }))
            .collect();
        grouped
            .entry(format!("{}-{}", r.topic, r.partition))
            .or_default()
            .push(json!({
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp_ms,
                "timestampType": r.timestamp_type,
                "key": r.key.as_ref().map(|k| B64.encode(k)),
                "value": r.value.as_ref().map(|v| B64.encode(v)),
                "headers": headers,
            }));
    }
    let event = json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:local:000000000000:cluster/tm-local/0",
        "bootstrapServers": brokers,
        "records": grouped,
    });
    serde_json::from_value(event).map_err(|e| Error::Internal(format!("build MSK event: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64, value: Option<&[u8]>) -> ConsumedRecord {
        ConsumedRecord {
            topic: "route-events".into(),
            partition,
            offset,
            timestamp_ms: 1_764_331_200_000,
            timestamp_type: "CREATE_TIME",
            key: Some(b"acme/checkout/prod".to_vec()),
            value: value.map(<[u8]>::to_vec),
            headers: vec![("correlation_id".into(), vec![0x72, 0xff])],
        }
    }

    #[test]
    fn records_are_grouped_by_topic_and_partition_with_base64_keys_and_values() {
        let batch = [
            rec(1, 7, Some(b"{}")),
            rec(0, 3, None),
            rec(1, 8, Some(b"x")),
        ];
        let event = msk_event(&batch, "127.0.0.1:9092").unwrap();
        assert_eq!(event.event_source.as_deref(), Some("aws:kafka"));
        assert_eq!(event.bootstrap_servers.as_deref(), Some("127.0.0.1:9092"));
        let p1 = &event.records["route-events-1"];
        assert_eq!(p1.iter().map(|r| r.offset).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(p1[0].key.as_deref(), Some("YWNtZS9jaGVja291dC9wcm9k"));
        assert_eq!(p1[0].value.as_deref(), Some("e30="));
        assert_eq!(p1[0].headers[0]["correlation_id"], vec![0x72, -1]);
        assert_eq!(p1[0].timestamp_type.as_deref(), Some("CREATE_TIME"));
        let p0 = &event.records["route-events-0"];
        assert_eq!((p0.len(), p0[0].value.as_deref()), (1, None));
    }

    #[test]
    fn a_batch_item_failure_names_its_partition_as_topic_dash_number() {
        assert_eq!(
            partition_number("route-events-12", "route-events"),
            Some(12)
        );
        assert_eq!(partition_number("route-events-0", "route-events"), Some(0));
        assert_eq!(partition_number("other-1", "route-events"), None);
        assert_eq!(partition_number("route-events", "route-events"), None);
    }

    #[test]
    fn a_held_partition_whose_seek_fails_stays_held_and_skips_nothing() {
        // GIVEN a partition held at offset 7 after a failed record
        let now = Instant::now();
        let base = Duration::from_millis(500);
        let mut state = PartitionState {
            next: Some(7),
            held_until: Some(now),
            backoff: Some(base),
        };
        // WHEN its backoff is over but the seek back to 7 fails
        let resume = release(&mut state, false, now, base);
        // THEN it is not resumed: it stays held, longer, still at offset 7
        assert!(!resume);
        assert_eq!(state.next, Some(7));
        assert_eq!(state.held_until, Some(now + base * 2));
        // AND records fetched meanwhile are still dropped by the batch filter
        assert!(state.held_until.is_some());
        // WHEN the next seek works, it is released
        assert!(release(&mut state, true, now + base * 2, base));
        assert_eq!(state.held_until, None);
        assert_eq!(state.next, Some(7));
    }

    #[test]
    fn each_partition_commits_past_its_highest_offset() {
        let batch = [
            rec(1, 7, None),
            rec(0, 3, None),
            rec(1, 9, None),
            rec(1, 8, None),
        ];
        assert_eq!(last_offsets(&batch), BTreeMap::from([(0, 3), (1, 9)]));
        assert_eq!(first_offsets(&batch), BTreeMap::from([(0, 3), (1, 7)]));
    }
}
