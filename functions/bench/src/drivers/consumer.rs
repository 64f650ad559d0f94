//! Event-consumer throughput: MSK batches of `batch` records through the event-consumer
//! handler (as the Lambda runtime hands them over) into the real Redis, one batch after
//! the other (one consumer, like one Lambda concurrency per partition set).
//!
//! Each record is a `route.updated` event of a distinct route (every record is applied,
//! none skipped as a redelivery), spread over `partitions` partitions by event key as the
//! publisher spreads them. Batches are built before the clock starts; each run writes
//! under a key prefix of its own, deleted afterwards. One run per invocation, so that the
//! script can interleave it with its baseline. Logging is on, at the Lambda's default
//! level (`info`: one line per applied event), written wherever stderr goes.
//!
//! Two more series measure prototypes of a faster handler, built from the same public
//! parts (`Consumer::apply` per record), for the report's notes:
//! - `partitions in parallel`: each partition's records in order, partitions at once;
//! - `keys in parallel`: within a partition, each event key's records in order, keys at
//!   once (Kafka orders per key, and apply-if-newer makes the cache's end state the same).

use super::{delete_prefix, redis_cache, unique_prefix};
use crate::counting::CountingDeadLetters;
use crate::fixtures;
use crate::record::Record;
use anyhow::bail;
use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::services::consume::{Consumer, Outcome};
use tm_event_consumer::ConsumerHandler;

/// The report row.
pub const ROW: &str = "consumer";

/// Settings.
pub struct Args {
    /// Batches per run.
    pub batches: usize,
    /// Records per batch.
    pub batch: usize,
    /// Partitions the records are spread over.
    pub partitions: usize,
    /// The run's number (for the report).
    pub run: u32,
    /// Also measure the prototypes.
    pub prototypes: bool,
}

fn build(args: &Args, key_base: usize) -> anyhow::Result<Vec<KafkaEvent>> {
    let mut batches = Vec::with_capacity(args.batches);
    for b in 0..args.batches {
        let events: Vec<_> = (0..args.batch)
            .map(|j| {
                let i = key_base + b * args.batch + j;
                let rev = 2 + (i % 5) as u64;
                fixtures::event(fixtures::route(&fixtures::key(i, "1.0.0"), rev, 3), rev)
            })
            .collect();
        batches.push(fixtures::msk_batch(
            &events,
            "route-events",
            args.partitions,
            (b * args.batch) as i64,
        )?);
    }
    Ok(batches)
}

async fn apply_in_order(
    consumer: Arc<Consumer>,
    records: Vec<KafkaRecord>,
) -> anyhow::Result<usize> {
    let mut applied = 0;
    for r in records {
        let key = r.key.as_ref().map(|k| B64.decode(k)).transpose()?;
        let value = r.value.as_ref().map(|v| B64.decode(v)).transpose()?;
        match consumer.apply(key.as_deref(), value.as_deref()).await {
            Ok(Outcome::Applied) => applied += 1,
            other => bail!("record {}: {other:?}", r.offset),
        }
    }
    Ok(applied)
}

/// Runs each group's records in order and the groups at once; returns records applied.
async fn run_groups(
    consumer: &Arc<Consumer>,
    groups: Vec<Vec<KafkaRecord>>,
) -> anyhow::Result<usize> {
    let mut set = tokio::task::JoinSet::new();
    for g in groups {
        set.spawn(apply_in_order(consumer.clone(), g));
    }
    let mut applied = 0;
    while let Some(done) = set.join_next().await {
        applied += done??;
    }
    Ok(applied)
}

/// Times `batches` through a prototype that splits each batch into `groups_of(batch)`.
async fn prototype(
    consumer: &Arc<Consumer>,
    batches: Vec<KafkaEvent>,
    groups_of: impl Fn(KafkaEvent) -> Vec<Vec<KafkaRecord>>,
) -> anyhow::Result<(usize, Duration)> {
    let started = Instant::now();
    let mut applied = 0;
    for batch in batches {
        applied += run_groups(consumer, groups_of(batch)).await?;
    }
    Ok((applied, started.elapsed()))
}

fn by_partition(batch: KafkaEvent) -> Vec<Vec<KafkaRecord>> {
    batch
        .records
        .into_values()
        .map(|mut r| {
            r.sort_by_key(|r| r.offset);
            r
        })
        .collect()
}

fn by_key(batch: KafkaEvent) -> Vec<Vec<KafkaRecord>> {
    let mut groups: BTreeMap<(i64, Option<String>), Vec<KafkaRecord>> = BTreeMap::new();
    for mut records in batch.records.into_values() {
        records.sort_by_key(|r| r.offset);
        for r in records {
            groups
                .entry((r.partition, r.key.clone()))
                .or_default()
                .push(r);
        }
    }
    groups.into_values().collect()
}

/// Runs one run and emits its record.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    tm_core::logging::init();
    let prefix = unique_prefix("consumer");
    let cache = redis_cache(&prefix).await?;
    let dead = Arc::new(CountingDeadLetters::default());
    let handler = ConsumerHandler::new(Consumer::new(cache.clone()), dead.clone());
    let batches = build(args, 0)?;
    // One warm-up batch on other keys opens the connection and loads the script.
    let warm: Vec<_> = (0..args.batch)
        .map(|j| {
            fixtures::event(
                fixtures::route(&fixtures::key(9_000_000 + j, "1.0.0"), 2, 3),
                2,
            )
        })
        .collect();
    handler
        .handle(fixtures::msk_batch(
            &warm,
            "route-events",
            args.partitions,
            0,
        )?)
        .await;
    let events = (args.batches * args.batch) as u64;
    let started = Instant::now();
    let mut applied = 0;
    for batch in batches {
        let (response, stats) = handler.handle(batch).await;
        if !response.batch_item_failures.is_empty() {
            bail!("a batch reported failures: {response:?}");
        }
        applied += stats.applied;
    }
    let elapsed = started.elapsed();
    if applied as u64 != events {
        bail!(
            "{applied} of {events} records applied ({} dead-lettered)",
            dead.count.load(std::sync::atomic::Ordering::SeqCst)
        );
    }
    Record::new(
        ROW,
        "event-consumer",
        args.run,
        events as f64 / elapsed.as_secs_f64(),
        "events/s",
    )
    .note(format!(
        "{} batches of {} records over {} partitions, {:.2} s",
        args.batches,
        args.batch,
        args.partitions,
        elapsed.as_secs_f64()
    ))
    .emit();
    if args.prototypes {
        let consumer = Arc::new(Consumer::new(cache));
        for (n, (series, split)) in [
            (
                "prototype: partitions in parallel",
                by_partition as fn(KafkaEvent) -> Vec<Vec<KafkaRecord>>,
            ),
            ("prototype: keys in parallel", by_key),
        ]
        .into_iter()
        .enumerate()
        {
            let batches = build(args, (n + 1) * 1_000_000)?;
            let (applied, elapsed) = prototype(&consumer, batches, split).await?;
            if applied as u64 != events {
                bail!("{series}: {applied} of {events} records applied");
            }
            Record::new(
                ROW,
                series,
                args.run,
                events as f64 / elapsed.as_secs_f64(),
                "events/s",
            )
            .note("Consumer::apply per record; not the shipped handler")
            .emit();
        }
    }
    delete_prefix(&prefix).await?;
    Ok(())
}
