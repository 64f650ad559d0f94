//! A consumer-group member with manual commits: what tm-local needs to play the MSK
//! trigger against a real broker. (In AWS the event source mapping does this work.)
//!
//! Consumer settings, and why:
//! - `enable.auto.commit=false`, `enable.auto.offset.store=false`: an offset is committed
//!   only by [`GroupConsumer::commit`], after the batch it ends was applied; a crash
//!   redelivers, it never skips.
//! - `auto.offset.reset=earliest`: a new group starts from the oldest retained event.
//! - `fetch.wait.max.ms=10`: a change reaches the cache within milliseconds even on
//!   brokers that hold an empty fetch for its whole wait instead of answering when a
//!   record arrives (Tansu and nisshi do); the price is ~100 small fetches a second when idle.
//! - `session.timeout.ms=10000`: a member that died without leaving frees its partitions
//!   within seconds.

use super::{ClientCtx, KafkaCluster, unavailable};
use crate::{Error, Result};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, Timestamp as KafkaTimestamp};
use std::sync::Arc;
use std::time::Duration;

/// How long a seek may take before it is reported as failed.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// One record as it came off the topic, owned and free of rdkafka types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Milliseconds since the Unix epoch (0 when the broker gave none).
    pub timestamp_ms: i64,
    /// `CREATE_TIME`, `LOG_APPEND_TIME` or `NO_TIMESTAMP_TYPE`, as MSK names them.
    pub timestamp_type: &'static str,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers in record order (a header without a value has an empty one).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A member of one consumer group, subscribed to one topic. Leaves the group when
/// dropped (prefer [`GroupConsumer::close`] in async code: leaving blocks briefly).
pub struct GroupConsumer {
    inner: Arc<StreamConsumer<ClientCtx>>,
    topic: String,
}

impl GroupConsumer {
    /// Joins `group_id` and subscribes to `topic`; partitions are assigned on the first
    /// [`recv`](Self::recv).
    pub fn subscribe(cluster: &KafkaCluster, group_id: &str, topic: &str) -> Result<Self> {
        let consumer: StreamConsumer<ClientCtx> = cluster
            .client_config()
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(cluster.context())
            .map_err(|e| unavailable("create the consumer", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| unavailable("subscribe", e))?;
        Ok(Self {
            inner: Arc::new(consumer),
            topic: topic.to_string(),
        })
    }

    /// The subscribed topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next record. Waits as long as it takes; cancellation-safe (dropping the future
    /// loses no record), so it can sit in a `select!`. `Err` is a transient client error
    /// (the broker is unreachable, a rebalance failed): log it and call again.
    pub async fn recv(&self) -> Result<ConsumedRecord> {
        let m = self
            .inner
            .recv()
            .await
            .map_err(|e| unavailable("receive", e))?;
        let (timestamp_type, timestamp_ms) = match m.timestamp() {
            KafkaTimestamp::NotAvailable => ("NO_TIMESTAMP_TYPE", 0),
            KafkaTimestamp::CreateTime(t) => ("CREATE_TIME", t),
            KafkaTimestamp::LogAppendTime(t) => ("LOG_APPEND_TIME", t),
        };
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ConsumedRecord {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms,
            timestamp_type,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        })
    }

    /// Commits, for each `(partition, next_offset)`, that every record before
    /// `next_offset` is done. Waits for the group coordinator's answer.
    pub async fn commit(&self, next_offsets: &[(i32, i64)]) -> Result<()> {
        if next_offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in next_offsets {
            tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
                .map_err(|e| unavailable("build the commit", e))?;
        }
        let consumer = self.inner.clone();
        // A synchronous commit blocks its thread until the coordinator answers.
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| Error::Internal(format!("kafka commit task: {e}")))?
            .map_err(|e| unavailable("commit", e))
    }

    /// Stops fetching `partition` and moves its position back to `offset`, so that after
    /// [`resume`](Self::resume) the record at `offset` is delivered again. Records of the
    /// partition already fetched past `offset` are discarded by librdkafka.
    pub async fn rewind(&self, partition: i32, offset: i64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        self.inner
            .pause(&tpl)
            .map_err(|e| unavailable("pause", e))?;
        let consumer = self.inner.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            consumer.seek(&topic, partition, Offset::Offset(offset), SEEK_TIMEOUT)
        })
        .await
        .map_err(|e| Error::Internal(format!("kafka seek task: {e}")))?
        .map_err(|e| unavailable("seek", e))
    }

    /// Starts fetching a partition stopped by [`rewind`](Self::rewind) again.
    pub fn resume(&self, partition: i32) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        self.inner
            .resume(&tpl)
            .map_err(|e| unavailable("resume", e))
    }

    /// Leaves the group (its partitions go to the other members at once) without blocking
    /// the async runtime.
    pub async fn close(self) {
        let inner = self.inner;
        let _ = tokio::task::spawn_blocking(move || drop(inner)).await;
    }
}
