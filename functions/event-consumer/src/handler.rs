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

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tm_core::ports::{DeadLetter, DeadLetters};
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

/// The event consumer's handler.
pub struct ConsumerHandler {
    consumer: Consumer,
    dead_letters: Arc<dyn DeadLetters>,
}

fn decode(field: &Option<String>) -> Result<Option<Vec<u8>>, String> {
    field
        .as_ref()
        .map(|s| B64.decode(s).map_err(|e| format!("not base64: {e}")))
        .transpose()
}

impl ConsumerHandler {
    /// A handler applying through `consumer`, dead-lettering to `dead_letters`.
    pub fn new(consumer: Consumer, dead_letters: Arc<dyn DeadLetters>) -> Self {
        Self {
            consumer,
            dead_letters,
        }
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
                Ok(Outcome::Applied) => stats.applied += 1,
                Ok(Outcome::Skipped) => stats.skipped += 1,
                Ok(Outcome::Poison(_)) => stats.dead_lettered += 1,
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

    async fn one(&self, record: &KafkaRecord) -> tm_core::Result<Outcome> {
        let outcome = match (decode(&record.key), decode(&record.value)) {
            (Ok(k), Ok(v)) => self.consumer.apply(k.as_deref(), v.as_deref()).await?,
            (Err(e), _) => Outcome::Poison(format!("key {e}")),
            (_, Err(e)) => Outcome::Poison(format!("value {e}")),
        };
        if let Outcome::Poison(reason) = &outcome {
            let letter = DeadLetter {
                topic: record.topic.clone().unwrap_or_default(),
                partition: record.partition,
                offset: record.offset,
                key: record.key.clone(),
                value: record.value.clone(),
                reason: reason.clone(),
            };
            tracing::warn!(partition = record.partition, offset = record.offset, reason = %reason, "poison record sent to the dead-letter topic");
            self.dead_letters.send(&letter).await?;
            tm_core::metrics::figures().dead_letter();
        }
        Ok(outcome)
    }
}
