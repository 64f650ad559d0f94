//! One instance of a rate-limited fleet, for the accuracy test
//! (`suite/redis_ratelimit.rs`): the functions' own limiter ([`TokenBuckets`]) reconciled
//! through the real Redis, offered a steady stream of one tenant's requests. Prints how
//! many it admitted inside the measuring window.
//!
//! `limiter-worker REDIS_URL PREFIX RPS BURST OFFERED_PER_SEC START_AT_UNIX_MS WARMUP_MS RUN_MS`

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tm_core::adapters::redis_cache::RedisCache;
use tm_core::adapters::token_buckets::{EXCHANGE_PERIOD, TokenBuckets};
use tm_core::config::RateLimit;
use tm_core::ports::{Admission, TenantLimiter};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        a.len() == 8,
        "usage: limiter-worker REDIS_URL PREFIX RPS BURST OFFERED START_AT_MS WARMUP_MS RUN_MS"
    );
    let cache = RedisCache::connect(&a[0], &a[1]).await?;
    let limit = RateLimit {
        rps: a[2].parse()?,
        burst: a[3].parse()?,
    };
    let offered: f64 = a[4].parse()?;
    let start_at: u64 = a[5].parse()?;
    let (warmup, run) = (
        Duration::from_millis(a[6].parse()?),
        Duration::from_millis(a[7].parse()?),
    );
    let buckets = Arc::new(TokenBuckets::new(limit));
    tokio::spawn(buckets.clone().reconcile(Arc::new(cache), EXCHANGE_PERIOD));
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(start_at.saturating_sub(now_ms))).await;
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / offered));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut admitted = 0u64;
    while start.elapsed() < run {
        tick.tick().await;
        let counted = start.elapsed() >= warmup;
        if buckets.admit("resolve", "acme") == Admission::Allowed && counted {
            admitted += 1;
        }
    }
    println!("{admitted}");
    Ok(())
}
