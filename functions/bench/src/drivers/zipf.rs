//! Zipf(s) over `routes` routes, `resolves` resolves: which layer answers, and how often
//! the store is read.
//!
//! Routes: `svc-{i}` version `1.0.0`, `i` in `0..routes`, each its own service; rank `i`
//! has Zipf weight `1/(i+1)^s`. Each resolve picks a rank, then `latest` or the exact
//! version (half each), and a sticky key, and does what the function does: resolve
//! (L1 → Redis → store), choose the endpoint, encode the answer. `concurrency` tasks share
//! one resolver, as requests share one tm-local or one Lambda instance (L1 TTL
//! `l1_ttl`). The store is held in memory and counts its reads (what is measured is how
//! often it is asked); the shared cache is the real Redis.
//!
//! Two phases per run, each with a fresh resolver (an empty L1, as in a new instance):
//! - `cold`: the shared cache starts empty. Every route's first resolve must read the
//!   store, so store reads can't fall below the expected number of distinct routes drawn
//!   ([`Zipf::expected_distinct`]), reported next to them.
//! - `steady`: the shared cache holds every route, as the event consumer (every change is
//!   applied) and earlier fills (which mark a service's version set complete for
//!   `latest`) leave it. The target is checked here.

use super::{bounded, delete_prefix, redis_cache, unique_prefix};
use crate::counting::{CountingReader, MemoryStore};
use crate::fixtures;
use crate::record::Record;
use crate::zipf::Zipf;
use anyhow::bail;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tm_core::domain::names::ServiceKey;
use tm_core::domain::select::Selector;
use tm_core::ports::{CacheSource, CachedRoute, SharedCache};
use tm_core::services::render;
use tm_core::services::resolve::Resolver;

/// The report row.
pub const ROW: &str = "zipf";

/// Settings.
pub struct Args {
    /// Routes.
    pub routes: usize,
    /// Resolves per phase.
    pub resolves: u64,
    /// Zipf exponent.
    pub exponent: f64,
    /// Runs.
    pub runs: u32,
    /// Concurrent tasks.
    pub concurrency: usize,
    /// L1 lifetime.
    pub l1_ttl: Duration,
}

#[derive(Default)]
struct Counts {
    l1: AtomicU64,
    l2: AtomicU64,
    miss: AtomicU64,
    stale: AtomicU64,
}

struct Phase {
    l1: u64,
    l2: u64,
    miss: u64,
    stale: u64,
    reads: u64,
    elapsed: Duration,
}

async fn phase(
    args: &Args,
    zipf: &Arc<Zipf>,
    store: &Arc<CountingReader>,
    cache: Arc<dyn SharedCache>,
    services: &Arc<Vec<ServiceKey>>,
    seed: u64,
) -> anyhow::Result<Phase> {
    let resolver = Arc::new(Resolver::new(store.clone(), cache, args.l1_ttl));
    let counts = Arc::new(Counts::default());
    let reads_before = store.reads();
    let issued = Arc::new(AtomicU64::new(0));
    let latest = Selector::Latest;
    let exact = Selector::parse("1.0.0")?;
    let started = Instant::now();
    let total = args.resolves;
    let make = |task: usize| {
        let (resolver, counts, issued, zipf, services) = (
            resolver.clone(),
            counts.clone(),
            issued.clone(),
            zipf.clone(),
            services.clone(),
        );
        let (latest, exact) = (latest.clone(), exact.clone());
        let mut rng = fastrand::Rng::with_seed(seed ^ (task as u64).wrapping_mul(0x9e37_79b9));
        async move {
            while issued.fetch_add(1, Ordering::Relaxed) < total {
                let svc = &services[zipf.sample(&mut rng)];
                let (text, sel) = if rng.bool() {
                    ("latest", &latest)
                } else {
                    ("1.0.0", &exact)
                };
                let (route, source) = resolver
                    .resolve(svc, text, sel)
                    .await
                    .map_err(|e| anyhow::anyhow!("resolve {svc:?}: {e}"))?;
                let key = format!("user-{}", rng.u32(..100_000));
                let answer = render::answer(&route, Some(&key))
                    .map_err(|e| anyhow::anyhow!("answer: {e}"))?;
                std::hint::black_box(serde_json::to_string(&answer)?);
                let c = match source {
                    CacheSource::HitL1 => &counts.l1,
                    CacheSource::HitL2 => &counts.l2,
                    CacheSource::Miss => &counts.miss,
                    CacheSource::Stale => &counts.stale,
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }
    };
    bounded(args.concurrency, args.concurrency, make).await?;
    let p = Phase {
        l1: counts.l1.load(Ordering::SeqCst),
        l2: counts.l2.load(Ordering::SeqCst),
        miss: counts.miss.load(Ordering::SeqCst),
        stale: counts.stale.load(Ordering::SeqCst),
        reads: store.reads() - reads_before,
        elapsed: started.elapsed(),
    };
    if p.l1 + p.l2 + p.miss + p.stale != total {
        bail!(
            "counted {} answers for {total} resolves",
            p.l1 + p.l2 + p.miss
        );
    }
    Ok(p)
}

fn emit(run: u32, name: &str, p: &Phase, resolves: u64, lower_bound: Option<f64>) {
    let lookups = p.l2 + p.miss;
    let l2_hit = 100.0 * p.l2 as f64 / lookups.max(1) as f64;
    let reads = 100.0 * p.reads as f64 / resolves as f64;
    let detail = format!(
        "{resolves} resolves: L1 {} / L2 {} / store {} / stale {}; {} store reads; {:.0} resolves/s",
        p.l1,
        p.l2,
        p.miss,
        p.stale,
        p.reads,
        resolves as f64 / p.elapsed.as_secs_f64()
    );
    Record::new(ROW, &format!("shared-cache hit ({name})"), run, l2_hit, "%")
        .note(format!("L2 hits / lookups past L1; {detail}"))
        .emit();
    Record::new(
        ROW,
        &format!("store reads ({name})"),
        run,
        reads,
        "% of resolves",
    )
    .note(detail.clone())
    .emit();
    Record::new(
        ROW,
        &format!("answered without the store ({name})"),
        run,
        100.0 * (p.l1 + p.l2) as f64 / resolves as f64,
        "%",
    )
    .emit();
    if let Some(lb) = lower_bound {
        Record::new(
            ROW,
            &format!("store reads, lower bound ({name})"),
            run,
            100.0 * lb / resolves as f64,
            "% of resolves",
        )
        .note(format!(
            "expected distinct routes in {resolves} Zipf draws: {lb:.0}"
        ))
        .emit();
    }
}

/// Runs the measurement and emits its records.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let zipf = Arc::new(Zipf::new(args.routes, args.exponent));
    let keys: Vec<_> = (0..args.routes)
        .map(|i| fixtures::key(i, "1.0.0"))
        .collect();
    let routes: Vec<_> = keys.iter().map(|k| fixtures::route(k, 1, 3)).collect();
    let services = Arc::new(keys.iter().map(|k| k.svc.clone()).collect::<Vec<_>>());
    let store = Arc::new(CountingReader::new(Arc::new(MemoryStore::new(
        routes.clone(),
    ))));
    let lower_bound = zipf.expected_distinct(args.resolves);
    let entries: Arc<Vec<_>> = Arc::new(
        routes
            .into_iter()
            .map(|r| {
                let v = r.version.clone();
                (
                    v,
                    CachedRoute {
                        revision: r.revision,
                        route: Some(Arc::new(r)),
                        health: None,
                    },
                )
            })
            .collect(),
    );
    for run in 0..args.runs {
        let prefix = unique_prefix("zipf");
        let cache = redis_cache(&prefix).await?;
        let seed = 0x5eed_0000 + u64::from(run) * 1000;
        eprintln!("zipf run {run}: cold phase");
        let cold = phase(args, &zipf, &store, cache.clone(), &services, seed).await?;
        emit(run, "cold", &cold, args.resolves, Some(lower_bound));
        eprintln!("zipf run {run}: filling the shared cache with every route");
        let started = Instant::now();
        let fill = |i: usize| {
            let (cache, services, entries) = (cache.clone(), services.clone(), entries.clone());
            async move {
                cache
                    .fill(&services[i], std::slice::from_ref(&entries[i]))
                    .await
                    .map_err(|e| anyhow::anyhow!("fill: {e}"))
            }
        };
        bounded(args.routes, 64, fill).await?;
        eprintln!(
            "zipf run {run}: filled in {:.1} s; steady phase",
            started.elapsed().as_secs_f64()
        );
        let steady = phase(args, &zipf, &store, cache.clone(), &services, seed + 1).await?;
        emit(run, "steady", &steady, args.resolves, None);
        delete_prefix(&prefix).await?;
    }
    Ok(())
}
