//! The resolution rules, measured: endpoint choice (weighted, sticky) and version
//! selection over many versions. Targets (issue: benchmarks): sticky choice over 3
//! endpoints ≤ 200 ns, over 64 ≤ 2 µs; `latest` / a range over 100 versions ≤ 5 µs.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use tm_core::domain::names::RouteKey;
use tm_core::domain::pick;
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::domain::select::{Selector, VersionSet};
use tm_core::domain::timefmt::Timestamp;

fn route(version: &str, endpoints: usize) -> Route {
    let eps: Vec<String> = (0..endpoints)
        .map(|i| {
            format!(
                r#"{{"id":"endpoint-{i}","url":"https://e{i}.example.internal","weight":{}}}"#,
                1 + i % 100
            )
        })
        .collect();
    let body = format!(r#"{{"endpoints":[{}]}}"#, eps.join(","));
    let key = RouteKey::parse("acme", "checkout", "prod", version).unwrap();
    Route::from_spec(
        &key,
        RouteSpec::from_json(body.as_bytes()).unwrap(),
        1,
        Timestamp::from_millis(0),
        "bench",
    )
}

/// The documented rule computed directly (every candidate's exact score): how
/// `choose_sticky` worked before it filtered candidates with the platform's `ln`.
fn sticky_every_score_exact<'a>(
    candidates: &[&'a tm_core::domain::route::Endpoint],
    key: &str,
) -> Option<&'a tm_core::domain::route::Endpoint> {
    let prefix = pick::fnv1a(pick::fnv1a(0xcbf2_9ce4_8422_2325, key.as_bytes()), &[0]);
    let mut best: Option<(&tm_core::domain::route::Endpoint, f64)> = None;
    for e in candidates {
        let s = pick::score(prefix, e.id.as_str(), e.weight);
        best = match best {
            Some((b, bs)) if bs > s || (bs == s && b.id <= e.id) => Some((b, bs)),
            _ => Some((e, s)),
        };
    }
    best.map(|(e, _)| e)
}

fn choice(c: &mut Criterion) {
    for n in [3usize, 64] {
        let r = route("1.0.0", n);
        let cands = pick::candidates(&r);
        c.bench_function(&format!("sticky choice, {n} endpoints"), |b| {
            b.iter(|| pick::choose_sticky(black_box(&cands), black_box("user-1234567")))
        });
        c.bench_function(
            &format!("sticky choice, {n} endpoints, every score exact (before)"),
            |b| b.iter(|| sticky_every_score_exact(black_box(&cands), black_box("user-1234567"))),
        );
        c.bench_function(&format!("weighted choice, {n} endpoints"), |b| {
            b.iter(|| pick::choose(black_box(&cands), None))
        });
        c.bench_function(&format!("candidates + sticky choice, {n} endpoints"), |b| {
            b.iter(|| {
                let cands = pick::candidates(black_box(&r));
                pick::choose_sticky(&cands, black_box("user-1234567")).map(|e| e.weight)
            })
        });
    }
}

fn selection(c: &mut Criterion) {
    let routes: Vec<Arc<Route>> = (0..100)
        .map(|i| Arc::new(route(&format!("{}.{}.{}", i / 20, i % 20, i % 3), 3)))
        .collect();
    let set = VersionSet::new(routes.clone());
    let latest = Selector::Latest;
    let range = Selector::parse(">=2.3, <4").unwrap();
    let exact = Selector::parse("3.4.1").unwrap();
    c.bench_function("latest over 100 versions", |b| {
        b.iter(|| set.choose(black_box(&latest)))
    });
    c.bench_function("range over 100 versions", |b| {
        b.iter(|| set.choose(black_box(&range)))
    });
    c.bench_function("exact over 100 versions", |b| {
        b.iter(|| set.choose(black_box(&exact)))
    });
    c.bench_function("index 100 versions (parse semver once)", |b| {
        b.iter(|| VersionSet::new(black_box(routes.clone())))
    });
}

criterion_group!(benches, choice, selection);
criterion_main!(benches);
