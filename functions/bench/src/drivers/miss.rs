//! Resolve on a cache miss, against DynamoDB Local, vs the raw SDK.
//!
//! Each run reads the same `routes` items three ways, one call after the other (a loop,
//! like the baseline the issue names), in an order that rotates from run to run:
//! - `GetItem (SDK)`: the baseline, `GetItem` with the SDK client and the same timeouts
//!   as the adapter, eventually consistent, the answer not decoded;
//! - `resolve (miss)`: the resolve function's handler (API Gateway v2 request in,
//!   response out) with L1 off over the guarded DynamoDB store and the guarded Redis
//!   cache, under a key prefix no earlier run used, so every call is a real miss: Redis
//!   `HGET` (nothing), `GetItem`, decode, the Redis fill, the endpoint choice and the JSON
//!   answer;
//! - `resolve (miss, no shared cache)`: the same with a cache that holds nothing and
//!   costs nothing, to tell the resolver's own overhead from Redis's round trips;
//! - `Redis HGET round trip`: the shared-cache lookup alone (the guarded adapter's `get`
//!   of an absent field), the least any cache-aside miss must add to the store read.
//!
//! Requests are parsed before the clock starts; only `handle` is timed.

use super::{dynamo, redis_cache, seed_route, unique_prefix};
use crate::counting::NullCache;
use crate::fixtures;
use crate::record::Record;
use anyhow::{Context, bail};
use aws_config::BehaviorVersion;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::adapters::dynamodb::aws_sdk_dynamodb::Client;
use tm_core::adapters::dynamodb::aws_sdk_dynamodb::types::AttributeValue;
use tm_core::adapters::dynamodb::{ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, OPERATION_TIMEOUT};
use tm_core::ports::SharedCache;
use tm_core::services::resolve::Resolver;
use tm_resolve::ResolveHandler;

/// The report row.
pub const ROW: &str = "miss";

/// Settings.
pub struct Args {
    /// DynamoDB table (created if missing).
    pub table: String,
    /// Routes read per run and way.
    pub routes: usize,
    /// Runs.
    pub runs: u32,
}

async fn raw_client() -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&conf)
}

/// Mean microseconds per raw `GetItem`.
async fn raw_loop(client: &Client, table: &str, routes: usize) -> anyhow::Result<f64> {
    let mut total = Duration::ZERO;
    for i in 0..routes {
        let started = Instant::now();
        let out = client
            .get_item()
            .table_name(table)
            .key(
                "pk",
                AttributeValue::S(format!("TENANT#{}", fixtures::TENANT)),
            )
            .key("sk", AttributeValue::S(format!("ROUTE#svc-{i}#prod#1.0.0")))
            .consistent_read(false)
            .send()
            .await
            .context("GetItem")?;
        total += started.elapsed();
        if out.item().is_none() {
            bail!("GetItem found no item for svc-{i}");
        }
    }
    Ok(total.as_secs_f64() * 1e6 / routes as f64)
}

/// Mean microseconds per resolve through the handler; every answer must be a 200 miss.
async fn resolve_loop(handler: &ResolveHandler, routes: usize) -> anyhow::Result<f64> {
    let requests = (0..routes)
        .map(|i| fixtures::resolve_request(&format!("svc-{i}"), "1.0.0", Some("user-42")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut total = Duration::ZERO;
    for req in requests {
        let started = Instant::now();
        let resp = handler.handle(req).await;
        total += started.elapsed();
        let cache = resp
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if resp.status() != 200 || cache != "miss" {
            bail!("resolve answered {} (x-cache {cache:?})", resp.status());
        }
    }
    Ok(total.as_secs_f64() * 1e6 / routes as f64)
}

/// Mean microseconds per shared-cache lookup of an absent version.
async fn lookup_loop(cache: &dyn SharedCache, routes: usize) -> anyhow::Result<f64> {
    let mut total = Duration::ZERO;
    for i in 0..routes {
        let key = fixtures::key(i, "9.9.9");
        let started = Instant::now();
        let got = cache
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("HGET: {e}"))?;
        total += started.elapsed();
        if got.is_some() {
            bail!("the lookup prefix holds {key}");
        }
    }
    Ok(total.as_secs_f64() * 1e6 / routes as f64)
}

fn handler(
    store: Arc<dyn tm_core::ports::RouteReader>,
    cache: Arc<dyn SharedCache>,
) -> ResolveHandler {
    ResolveHandler::new(Resolver::new(store, cache, Duration::ZERO), Vec::new())
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let (store, guarded) = dynamo(&args.table).await?;
    eprintln!("miss: seeding {} routes into {}", args.routes, args.table);
    for i in 0..args.routes {
        seed_route(&store, i, "1.0.0", 3).await?;
    }
    let client = raw_client().await;
    // Warm both paths (connections, the JVM's caches) before measuring.
    raw_loop(&client, &args.table, args.routes.min(50)).await?;
    resolve_loop(
        &handler(guarded.clone(), Arc::new(NullCache)),
        args.routes.min(50),
    )
    .await?;
    let mut prefixes = Vec::new();
    let lookups = redis_cache(&unique_prefix("miss-rtt")).await?;
    for run in 0..args.runs {
        for step in 0..4 {
            match (run as usize + step) % 4 {
                3 => {
                    let us = lookup_loop(lookups.as_ref(), args.routes).await?;
                    Record::new(ROW, "Redis HGET round trip", run, us, "µs/call")
                        .note("guarded RedisCache::get of an absent version, sequential")
                        .emit();
                }
                0 => {
                    let us = raw_loop(&client, &args.table, args.routes).await?;
                    Record::new(ROW, "GetItem (SDK)", run, us, "µs/call")
                        .note(format!("{} sequential GetItem", args.routes))
                        .emit();
                }
                1 => {
                    let prefix = unique_prefix("miss");
                    let cache = redis_cache(&prefix).await?;
                    prefixes.push(prefix);
                    let us = resolve_loop(&handler(guarded.clone(), cache), args.routes).await?;
                    Record::new(ROW, "resolve (miss)", run, us, "µs/call")
                        .note("handler, L1 off, Redis HGET miss + GetItem + Redis fill")
                        .emit();
                }
                _ => {
                    let us =
                        resolve_loop(&handler(guarded.clone(), Arc::new(NullCache)), args.routes)
                            .await?;
                    Record::new(ROW, "resolve (miss, no shared cache)", run, us, "µs/call")
                        .note("handler, L1 off, GetItem only")
                        .emit();
                }
            }
        }
    }
    for p in prefixes {
        super::delete_prefix(&p).await?;
    }
    Ok(())
}
