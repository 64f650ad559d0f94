//! 1,000 concurrent resolves of one key that no layer holds yet, against DynamoDB Local
//! and Redis: how many store reads they cost (the target: exactly one). Each trial uses a
//! new route and a new key prefix; trials alternate `latest` (a `Query`) and an exact
//! version (a `GetItem`).

use super::{dynamo, redis_cache, seed_route, unique_prefix};
use crate::counting::CountingReader;
use crate::record::Record;
use anyhow::bail;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::domain::select::Selector;
use tm_core::services::resolve::Resolver;

/// The report row.
pub const ROW: &str = "burst";

/// Settings.
pub struct Args {
    /// DynamoDB table.
    pub table: String,
    /// Concurrent resolves per trial.
    pub concurrency: usize,
    /// Trials.
    pub trials: u32,
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let (store, guarded) = dynamo(&args.table).await?;
    let base = 1_000_000 + (std::process::id() as usize % 1000) * 1000;
    for trial in 0..args.trials {
        let i = base + trial as usize;
        seed_route(&store, i, "1.0.0", 3).await?;
        let prefix = unique_prefix("burst");
        let counting = Arc::new(CountingReader::new(guarded.clone()));
        let resolver = Arc::new(Resolver::new(
            counting.clone(),
            redis_cache(&prefix).await?,
            Duration::from_secs(1),
        ));
        let selector_text = if trial % 2 == 0 { "latest" } else { "1.0.0" };
        let selector = Selector::parse(selector_text)?;
        let svc = crate::fixtures::key(i, "1.0.0").svc;
        let barrier = Arc::new(tokio::sync::Barrier::new(args.concurrency));
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (r, b, svc, sel) = (
                    resolver.clone(),
                    barrier.clone(),
                    svc.clone(),
                    selector.clone(),
                );
                tokio::spawn(async move {
                    b.wait().await;
                    r.resolve(&svc, selector_text, &sel)
                        .await
                        .map(|(route, _)| route.revision)
                })
            })
            .collect();
        for t in tasks {
            match t.await? {
                Ok(1) => {}
                other => bail!("a concurrent resolve answered {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        Record::new(ROW, "store reads", trial, counting.reads() as f64, "reads")
            .note(format!(
                "{} concurrent `{selector_text}` resolves, all answered in {:.1} ms",
                args.concurrency,
                elapsed.as_secs_f64() * 1e3
            ))
            .emit();
        super::delete_prefix(&prefix).await?;
    }
    Ok(())
}
