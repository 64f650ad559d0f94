//! MSK batch → records → `Consumer`.
//!
//! Records are grouped into chains by (partition, record key): one chain holds the events
//! of one tenant/service/env in offset order and is applied one record after the other,
//! while different chains run concurrently (at most [`CHAIN_CONCURRENCY`] at once), so a
//! batch costs about as many cache round trips as its longest chain, not as its length.
//!
//! A retryable failure stops its chain at the failed record; the partition is reported
//! in `batchItemFailures` at the lowest failed offset, so the trigger redelivers from
//! there. The partition is named as the event names it, `"<topic>-<partition>"` (the key
//! of the event's `records` map), which is what the Kafka event source mapping and AWS
//! Powertools expect; a bare number is not recognised and the whole batch is retried. Records of other keys after that offset may already be applied: redelivery finds
//! them in the cache and skips them (apply-if-newer), so nothing is applied twice or out
//! of order per key. A poison record goes to the dead-letter port and its chain keeps
//! flowing.
//!
//! A poison record is dead-lettered once, not once per delivery: before sending a letter
//! the handler asks its [`DeadLetterMarks`] whether that record (topic, partition, offset,
//! same key and value) was sent already, and marks it after the send succeeded. Lambda
//! redelivers a whole batch after a timeout or a later record's failure, so without the
//! mark every redelivery would add the same letter to the DLQ again. The marks are
//! in-process unless [`ConsumerHandler::with_marks`] gives shared ones (the Lambda gives
//! Redis, so a redelivery to another instance is caught too). A marks store that fails is
//! only logged: the letter is sent anyway (a duplicate letter beats a stuck partition),
//! and a crash between the send and the mark can still duplicate one; a letter is never
//! skipped unless it was sent.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::file_dead_letters::MemoryDeadLetterMarks;
use tm_core::ports::{DeadLetter, DeadLetterMarks, DeadLetters};
use tm_core::services::consume::{Consumer, Outcome};

/// The failed record's position, as the Kafka event source mapping expects it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdentifier {
    /// The partition as `"<topic>-<partition>"`, e.g. `"route-events-0"`.
    pub partition: String,
    /// Offset of the first record to redeliver.
    pub offset: i64,
}

/// One failed record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    /// Which record.
    pub item_identifier: ItemIdentifier,
}

/// The partial batch response (`ReportBatchItemFailures`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    /// Empty when the whole batch succeeded.
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// Counts of what one batch did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Records applied.
    pub applied: usize,
    /// Records already reflected (redeliveries, older revisions).
    pub skipped: usize,
    /// Records sent to the dead-letter port.
    pub dead_lettered: usize,
    /// Poison records whose letter an earlier delivery of the batch already sent: not sent
    /// again.
    pub already_dead_lettered: usize,
    /// Partitions stopped by a retryable failure.
    pub failed_partitions: usize,
}

/// How many chains (partition × event key) are applied at once.
pub const CHAIN_CONCURRENCY: usize = 64;

/// The records of one event key in one partition, in offset order.
struct Chain {
    /// `"<topic>-<partition>"`, the key the records came under.
    partition: String,
    records: Vec<KafkaRecord>,
}

/// What one chain did: its counts and, if it stopped, the offset it stopped at.
struct ChainResult {
    partition: String,
    stats: BatchStats,
    failed_at: Option<i64>,
}

/// Splits a batch into chains, ordered by partition, then by first offset.
fn chains(event: KafkaEvent) -> Vec<Chain> {
    let mut by_key: BTreeMap<(String, Option<String>), Vec<KafkaRecord>> = BTreeMap::new();
    for (partition, records) in event.records {
        for record in records {
            by_key
                .entry((partition.clone(), record.key.clone()))
                .or_default()
                .push(record);
        }
    }
    let mut chains: Vec<Chain> = by_key
        .into_iter()
        .map(|((partition, _), mut records)| {
            records.sort_by_key(|r| r.offset);
            Chain { partition, records }
        })
        .collect();
    chains.sort_by(|a, b| {
        (&a.partition, a.records[0].offset).cmp(&(&b.partition, b.records[0].offset))
    });
    chains
}

/// What became of one record.
enum Step {
    Applied,
    Skipped,
    DeadLettered,
    AlreadyDeadLettered,
}

/// The event consumer's handler.
pub struct ConsumerHandler {
    consumer: Consumer,
    dead_letters: Arc<dyn DeadLetters>,
    marks: Arc<dyn DeadLetterMarks>,
}

fn decode(field: &Option<String>) -> Result<Option<Vec<u8>>, String> {
    field
        .as_ref()
        .map(|s| B64.decode(s).map_err(|e| format!("not base64: {e}")))
        .transpose()
}

impl ConsumerHandler {
    /// A handler applying through `consumer`, dead-lettering to `dead_letters`, with
    /// in-process marks of the letters sent ([`MemoryDeadLetterMarks`]).
    pub fn new(consumer: Consumer, dead_letters: Arc<dyn DeadLetters>) -> Self {
        Self {
            consumer,
            dead_letters,
            marks: Arc::new(MemoryDeadLetterMarks::default()),
        }
    }

    /// The same handler, keeping its marks of the letters sent in `marks` (shared by
    /// every instance: Redis in the Lambda).
    pub fn with_marks(mut self, marks: Arc<dyn DeadLetterMarks>) -> Self {
        self.marks = marks;
        self
    }

    /// Handles one MSK batch.
    pub async fn handle(&self, event: KafkaEvent) -> (BatchResponse, BatchStats) {
        let figures = tm_core::metrics::figures();
        figures.batch(event.records.values().map(Vec::len).sum());
        // Lag as the oldest record's age: one sample per batch (EMF keeps at most 100
        // values per metric and flush), and the figure an operator alarms on.
        if let Some(oldest) = event
            .records
            .values()
            .flatten()
            .map(|r| r.timestamp.0.timestamp_millis())
            .min()
        {
            let lag_ms = tm_core::domain::timefmt::Timestamp::now().millis() - oldest;
            figures.lag(Duration::from_millis(lag_ms.max(0) as u64));
        }
        let results: Vec<ChainResult> = stream::iter(chains(event))
            .map(|chain| self.run(chain))
            .buffer_unordered(CHAIN_CONCURRENCY)
            .collect()
            .await;
        let mut stats = BatchStats::default();
        let mut failed: BTreeMap<String, i64> = BTreeMap::new();
        for r in results {
            stats.applied += r.stats.applied;
            stats.skipped += r.stats.skipped;
            stats.dead_lettered += r.stats.dead_lettered;
            stats.already_dead_lettered += r.stats.already_dead_lettered;
            if let Some(offset) = r.failed_at {
                let lowest = failed.entry(r.partition).or_insert(offset);
                *lowest = (*lowest).min(offset);
            }
        }
        stats.failed_partitions = failed.len();
        let response = BatchResponse {
            batch_item_failures: failed
                .into_iter()
                .map(|(partition, offset)| BatchItemFailure {
                    item_identifier: ItemIdentifier { partition, offset },
                })
                .collect(),
        };
        tracing::info!(
            applied = stats.applied,
            skipped = stats.skipped,
            dead_lettered = stats.dead_lettered,
            already_dead_lettered = stats.already_dead_lettered,
            failed_partitions = stats.failed_partitions,
            "batch handled"
        );
        (response, stats)
    }

    /// Applies one chain in order, stopping at the first retryable failure.
    async fn run(&self, chain: Chain) -> ChainResult {
        let mut stats = BatchStats::default();
        for record in &chain.records {
            match self.one(record).await {
                Ok(Step::Applied) => stats.applied += 1,
                Ok(Step::Skipped) => stats.skipped += 1,
                Ok(Step::DeadLettered) => stats.dead_lettered += 1,
                Ok(Step::AlreadyDeadLettered) => stats.already_dead_lettered += 1,
                Err(e) => {
                    tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "record failed; partition will be redelivered from here");
                    return ChainResult {
                        partition: chain.partition,
                        stats,
                        failed_at: Some(record.offset),
                    };
                }
            }
        }
        ChainResult {
            partition: chain.partition,
            stats,
            failed_at: None,
        }
    }

    async fn one(&self, record: &KafkaRecord) -> tm_core::Result<Step> {
        let outcome = match (decode(&record.key), decode(&record.value)) {
            (Ok(k), Ok(v)) => self.consumer.apply(k.as_deref(), v.as_deref()).await?,
            (Err(e), _) => Outcome::Poison(format!("key {e}")),
            (_, Err(e)) => Outcome::Poison(format!("value {e}")),
        };
        let reason = match outcome {
            Outcome::Applied => return Ok(Step::Applied),
            Outcome::Skipped => return Ok(Step::Skipped),
            Outcome::Poison(reason) => reason,
        };
        let letter = DeadLetter {
            topic: record.topic.clone().unwrap_or_default(),
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            value: record.value.clone(),
            reason,
        };
        match self.marks.was_sent(&letter).await {
            Ok(true) => {
                tracing::info!(partition = record.partition, offset = record.offset, reason = %letter.reason, "poison record already in the dead-letter topic (its batch came again); not sent again");
                return Ok(Step::AlreadyDeadLettered);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "could not check whether this poison record was dead-lettered already; sending it");
            }
        }
        tracing::warn!(partition = record.partition, offset = record.offset, reason = %letter.reason, "poison record sent to the dead-letter topic");
        self.dead_letters.send(&letter).await?;
        tm_core::metrics::figures().dead_letter();
        if let Err(e) = self.marks.mark_sent(&letter).await {
            tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "could not mark the poison record as dead-lettered; a redelivery may send it again");
        }
        Ok(Step::DeadLettered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tm_core::adapters::memory_cache::MemoryCache;
    use tm_core::{Error, Result};

    /// Keeps every letter it is sent.
    #[derive(Default)]
    struct Letters(Mutex<Vec<DeadLetter>>);

    #[async_trait::async_trait]
    impl DeadLetters for Letters {
        async fn send(&self, letter: &DeadLetter) -> Result<()> {
            self.0.lock().unwrap().push(letter.clone());
            Ok(())
        }
    }

    /// Marks that are always down.
    struct DownMarks;

    #[async_trait::async_trait]
    impl DeadLetterMarks for DownMarks {
        async fn was_sent(&self, _: &DeadLetter) -> Result<bool> {
            Err(Error::Unavailable("redis down".into()))
        }
        async fn mark_sent(&self, _: &DeadLetter) -> Result<()> {
            Err(Error::Unavailable("redis down".into()))
        }
    }

    /// A batch of one partition: a real event at offset 1, a record that is not JSON at
    /// offset 2, and the next real event at offset 3.
    fn batch() -> KafkaEvent {
        let event = |revision: u64| {
            serde_json::json!({
                "schema": 1, "event_id": format!("e{revision}"), "type": "route.deleted",
                "tenant": "acme", "service": "checkout", "env": "prod", "version": "1.0.0",
                "revision": revision, "occurred_at": "2026-11-28T12:00:00.000Z", "actor": "u",
                "correlation_id": "c", "route": null
            })
            .to_string()
        };
        let record = |offset: i64, value: &str| {
            serde_json::json!({
                "topic": "route-events", "partition": 0, "offset": offset,
                "timestamp": 1795867200000_i64, "timestampType": "CREATE_TIME",
                "key": B64.encode("acme/checkout/prod"), "value": B64.encode(value),
                "headers": []
            })
        };
        serde_json::from_value(serde_json::json!({
            "eventSource": "aws:kafka",
            "records": {"route-events-0": [record(1, &event(1)), record(2, "{oops"), record(3, &event(2))]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_batch_handled_twice_dead_letters_its_poison_record_once() {
        // GIVEN a handler, and a batch with one poison record that it handled once
        let letters = Arc::new(Letters::default());
        let h = ConsumerHandler::new(Consumer::new(Arc::new(MemoryCache::new())), letters.clone());
        let (resp, stats) = h.handle(batch()).await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!((stats.applied, stats.dead_lettered), (2, 1));
        // WHEN the same batch comes again (Lambda retries a whole batch)
        let (resp, stats) = h.handle(batch()).await;
        // THEN nothing is applied again and no second letter is sent
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(
            (
                stats.skipped,
                stats.dead_lettered,
                stats.already_dead_lettered
            ),
            (2, 0, 1)
        );
        let sent = letters.0.lock().unwrap();
        assert_eq!(sent.len(), 1, "one letter for one poison record: {sent:?}");
        assert_eq!((sent[0].partition, sent[0].offset), (0, 2));
    }

    #[tokio::test]
    async fn instances_sharing_their_marks_dead_letter_a_redelivered_batch_once() {
        // GIVEN two instances (handlers) with the same marks, as Redis shares them
        let letters = Arc::new(Letters::default());
        let marks = Arc::new(MemoryDeadLetterMarks::default());
        let instance = || {
            ConsumerHandler::new(Consumer::new(Arc::new(MemoryCache::new())), letters.clone())
                .with_marks(marks.clone())
        };
        // WHEN the batch goes to the first, then again to the second
        instance().handle(batch()).await;
        let (_, stats) = instance().handle(batch()).await;
        // THEN only the first sent the letter
        assert_eq!((stats.dead_lettered, stats.already_dead_lettered), (0, 1));
        assert_eq!(letters.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn marks_that_are_down_never_keep_a_letter_from_being_sent() {
        let letters = Arc::new(Letters::default());
        let h = ConsumerHandler::new(Consumer::new(Arc::new(MemoryCache::new())), letters.clone())
            .with_marks(Arc::new(DownMarks));
        for _ in 0..2 {
            let (resp, stats) = h.handle(batch()).await;
            assert!(resp.batch_item_failures.is_empty());
            assert_eq!(stats.dead_lettered, 1);
        }
        assert_eq!(
            letters.0.lock().unwrap().len(),
            2,
            "at least once: without marks a redelivery sends again"
        );
    }
}
