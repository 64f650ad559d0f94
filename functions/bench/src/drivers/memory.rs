//! tm-local's resident set over `resolves` resolves of `routes` routes, sampled every
//! `every` answers.
//!
//! tm-local runs with Redis as its shared cache; the driver first puts every route in
//! Redis under tm-local's key prefix (as the event consumer and earlier fills leave it),
//! so the run measures the resolve path and its in-process cache, not the store. Routes
//! are drawn uniformly (every route ends up in L1: the largest footprint, unlike a Zipf
//! draw that leaves the tail out), half `latest` and half the exact version (two L1
//! entries per route), each with a sticky key, over `connections` keep-alive connections.

use super::{bounded, redis_cache};
use crate::fixtures;
use crate::load::{self, Plan};
use crate::record::{Record, rss_mb};
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tm_core::ports::{CachedRoute, SharedCache};

/// The resolve count at which the issue states its RSS target.
const TARGET_AT: u64 = 1_000_000;

/// The report row.
pub const ROW: &str = "memory";

/// Settings.
pub struct Args {
    /// tm-local.
    pub addr: SocketAddr,
    /// Its process id.
    pub pid: u32,
    /// A resolve token for the bench tenant.
    pub token: String,
    /// tm-local's `TM_REDIS_PREFIX`.
    pub redis_prefix: String,
    /// Routes.
    pub routes: usize,
    /// Resolves.
    pub resolves: u64,
    /// Connections.
    pub connections: usize,
    /// Sample every this many answers.
    pub every: u64,
}

fn rss(pid: u32) -> anyhow::Result<(f64, f64)> {
    rss_mb(pid).with_context(|| format!("reading /proc/{pid}/status"))
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let cache = redis_cache(&args.redis_prefix).await?;
    eprintln!("memory: putting {} routes in Redis", args.routes);
    let fill = |i: usize| {
        let cache = cache.clone();
        async move {
            let key = fixtures::key(i, "1.0.0");
            let entry = CachedRoute {
                revision: 1,
                route: Some(Arc::new(fixtures::route(&key, 1, 3))),
                health: None,
            };
            cache
                .fill(&key.svc, &[(key.version.clone(), entry)])
                .await
                .map_err(|e| anyhow::anyhow!("fill: {e}"))
        }
    };
    bounded(args.routes, 64, fill).await?;
    let (before, _) = rss(args.pid)?;
    Record::new(ROW, "RSS before load", 0, before, "MB").emit();
    let done = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, pid, every, total) = (done.clone(), args.pid, args.every, args.resolves);
        tokio::spawn(async move {
            let mut next = every;
            let mut samples = Vec::new();
            while next <= total {
                if done.load(Ordering::Relaxed) >= next {
                    if let Some((r, _)) = rss_mb(pid) {
                        samples.push((next, r));
                    }
                    next += every;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            samples
        })
    };
    let routes = args.routes;
    let plan = Plan {
        addr: args.addr,
        connections: args.connections,
        total: args.resolves,
        token: args.token.clone(),
        seed: 42,
    };
    let outcome = load::run(
        &plan,
        move |rng| {
            let sel = if rng.bool() { "latest" } else { "1.0.0" };
            format!(
                "/v1/resolve/{}/svc-{}/prod/{sel}?key=user-{}",
                fixtures::TENANT,
                rng.usize(..routes),
                rng.u32(..1_000_000)
            )
        },
        done,
    )
    .await?;
    let samples = sampler.await?;
    if outcome.ok != args.resolves {
        bail!(
            "only {} of {} resolves answered 200: {:?}",
            outcome.ok,
            args.resolves,
            outcome.other
        );
    }
    let note = format!(
        "{} resolves at {:.0}/s, x-cache {:?}",
        args.resolves,
        outcome.rate(),
        outcome.x_cache
    );
    for (i, (n, r)) in samples.iter().enumerate() {
        Record::new(ROW, "RSS at checkpoint", i as u32, *r, "MB")
            .note(format!("after {n} resolves"))
            .emit();
    }
    // The figure; the run goes on past it so that "flat" is judged on a plateau.
    if let Some((n, r)) = samples.iter().find(|(n, _)| *n == TARGET_AT) {
        Record::new(ROW, "RSS after 1M resolves", 0, *r, "MB")
            .note(format!("checkpoint after {n} resolves"))
            .emit();
    }
    let (after, peak) = rss(args.pid)?;
    Record::new(ROW, "RSS after all resolves", 0, after, "MB")
        .note(note)
        .emit();
    Record::new(ROW, "peak RSS (VmHWM)", 0, peak, "MB").emit();
    // The in-process cache is still taking in routes seen for the first time until near
    // the end (uniform draws: 98 % of the 2 × routes L1 keys by 80 % of the run), so
    // "flat" is judged on the last fifth.
    let at = args.resolves * 4 / 5;
    let (at, late) = samples
        .iter()
        .find(|(n, _)| *n >= at)
        .copied()
        .unwrap_or((args.resolves, after));
    Record::new(
        ROW,
        "RSS growth over the last fifth",
        0,
        100.0 * (after - late) / late,
        "%",
    )
    .note(format!(
        "{late:.1} MB after {at} resolves, {after:.1} MB at the end"
    ))
    .emit();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle, _) = rss(args.pid)?;
    Record::new(ROW, "RSS 5 s after the load", 0, idle, "MB").emit();
    Ok(())
}
