//! MSK batch → records → `Consumer`. Records of one partition are applied in offset
//! order; a retryable failure stops that partition at the failed record (reported in
//! `batchItemFailures`, so the trigger redelivers from there) while other partitions go
//! on; a poison record goes to the dead-letter port and its partition keeps flowing.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tm_core::ports::{DeadLetter, DeadLetters};
use tm_core::services::consume::{Consumer, Outcome};

/// The failed record's position, as the Kafka event source mapping expects it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemIdentifier {
    /// Partition.
    pub partition: i64,
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
        let mut response = BatchResponse::default();
        let mut stats = BatchStats::default();
        let mut partitions: Vec<_> = event.records.into_iter().collect();
        partitions.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, mut records) in partitions {
            records.sort_by_key(|r| r.offset);
            for record in &records {
                match self.one(record).await {
                    Ok(Outcome::Applied) => stats.applied += 1,
                    Ok(Outcome::Skipped) => stats.skipped += 1,
                    Ok(Outcome::Poison(_)) => stats.dead_lettered += 1,
                    Err(e) => {
                        tracing::warn!(partition = record.partition, offset = record.offset, error = %e, "record failed; partition will be redelivered from here");
                        stats.failed_partitions += 1;
                        response.batch_item_failures.push(BatchItemFailure {
                            item_identifier: ItemIdentifier {
                                partition: record.partition,
                                offset: record.offset,
                            },
                        });
                        break;
                    }
                }
            }
        }
        tracing::info!(
            applied = stats.applied,
            skipped = stats.skipped,
            dead_lettered = stats.dead_lettered,
            failed_partitions = stats.failed_partitions,
            "batch handled"
        );
        (response, stats)
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
        }
        Ok(outcome)
    }
}
