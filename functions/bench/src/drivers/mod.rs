//! One module per measurement, and what they share: connecting to the real backends the
//! way the Lambda mains do (guarded adapters), and cleaning up the keys a run wrote.
//!
//! - [`miss`]: resolve on a cache miss against DynamoDB Local vs a raw `GetItem` loop.
//! - [`burst`]: 1,000 concurrent misses on one key.
//! - [`zipf`]: Zipf(1.1) over 100k routes: which layer answers.
//! - [`consumer`]: event-consumer throughput on 100-record MSK batches into Redis.
//! - [`propagation`]: write → visible in the shared cache and through resolve.
//! - [`coldstart`]: the resolve Lambda's cold start under a local Runtime API.
//! - [`lambda_redis`]: the resolve Lambda's Redis commands per resolve and its answers
//!   with Redis frozen, the rate limit on.
//! - [`memory`]: tm-local's resident set over 1M resolves of 100k routes.
//! - [`criterion`]: imports criterion's estimates.

pub mod burst;
pub mod coldstart;
pub mod consumer;
pub mod criterion;
pub mod lambda_redis;
pub mod memory;
pub mod miss;
pub mod propagation;
pub mod zipf;

use anyhow::Context;
use std::sync::Arc;
use tm_core::adapters::dynamodb::DynamoStore;
use tm_core::adapters::guarded::{Guarded, Limits};
use tm_core::adapters::redis_cache::RedisCache;
use tm_core::ports::{Commit, RouteWriter};

/// `TM_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("TM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other run uses.
pub fn unique_prefix(what: &str) -> String {
    format!(
        "tm-bench-{what}-{}-{:08x}:",
        std::process::id(),
        fastrand::u32(..)
    )
}

/// The shared cache as the resolve Lambda builds it: Redis behind a guard.
pub async fn redis_cache(prefix: &str) -> anyhow::Result<Arc<Guarded<RedisCache>>> {
    let cache = RedisCache::connect(&redis_url(), prefix)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("connecting to Redis")?;
    Ok(Arc::new(Guarded::new(
        "cache",
        Arc::new(cache),
        Limits::CACHE,
    )))
}

/// The DynamoDB store (`table`, created if missing), unguarded (for seeding) and as the
/// resolve Lambda holds it (guarded).
pub async fn dynamo(table: &str) -> anyhow::Result<(Arc<DynamoStore>, Arc<Guarded<DynamoStore>>)> {
    let store = DynamoStore::connect(table.to_owned())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("connecting to DynamoDB")?;
    store
        .create_table_if_missing()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("creating the bench table")?;
    let store = Arc::new(store);
    let guarded = Arc::new(Guarded::new("store", store.clone(), Limits::STORE));
    Ok((store, guarded))
}

/// Commits route `i` (`svc-{i}`, `version`) at revision 1 unless it exists.
pub async fn seed_route(
    store: &DynamoStore,
    i: usize,
    version: &str,
    endpoints: usize,
) -> anyhow::Result<()> {
    let key = crate::fixtures::key(i, version);
    let commit = Commit {
        expected_revision: None,
        event: crate::fixtures::event(crate::fixtures::route(&key, 1, endpoints), 1),
    };
    match store.commit(&commit).await {
        Ok(_) | Err(tm_core::Error::Conflict) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("seeding {key}: {e}")),
    }
}

/// Deletes every Redis key under `prefix` (SCAN + UNLINK); returns how many.
pub async fn delete_prefix(prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(redis_url())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut con)
                .await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Runs `n` futures from `make(i)` as tasks, at most `width` at a time; fails on the
/// first error.
pub async fn bounded<F, Fut>(n: usize, width: usize, make: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        if set.len() >= width.max(1)
            && let Some(done) = set.join_next().await
        {
            done??;
        }
        set.spawn(make(i));
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    Ok(())
}
