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
//! The handler applies the records of different event keys concurrently (each key's
//! records in order); every record here has a key of its own, the best case for that.

use super::{delete_prefix, redis_cache, unique_prefix};
use crate::counting::CountingDeadLetters;
use crate::fixtures;
use crate::record::Record;
use anyhow::bail;
use aws_lambda_events::event::kafka::KafkaEvent;
use std::sync::Arc;
use std::time::Instant;
use tm_core::services::consume::Consumer;
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
    delete_prefix(&prefix).await?;
    Ok(())
}
