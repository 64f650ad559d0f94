//! The resolve function in process, per request: the handler on an L1 hit (API Gateway v2
//! request in, response out), the parts it is made of, and the HS256 check tm-local's
//! gateway does before it. Context for the HTTP figures of `scripts/bench.sh`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tm_bench::counting::MemoryStore;
use tm_bench::fixtures;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::domain::select::Selector;
use tm_core::jwt;
use tm_core::services::render;
use tm_core::services::resolve::Resolver;
use tm_resolve::ResolveHandler;

fn handler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = fixtures::key(0, "1.0.0");
    let store = Arc::new(MemoryStore::new([fixtures::route(&key, 1, 3)]));
    let resolver = Resolver::new(
        store,
        Arc::new(MemoryCache::new()),
        Duration::from_secs(3600),
    );
    let h = ResolveHandler::new(resolver, Vec::new());
    let warm = fixtures::resolve_request("svc-0", "latest", Some("user-42")).unwrap();
    assert_eq!(rt.block_on(h.handle(warm)).status(), 200);
    c.bench_function("handler: resolve, L1 hit, sticky key", |b| {
        b.iter_batched(
            || fixtures::resolve_request("svc-0", "latest", Some("user-42")).unwrap(),
            |req| rt.block_on(h.handle(req)),
            BatchSize::SmallInput,
        )
    });

    let resolver = Resolver::new(
        Arc::new(MemoryStore::new([fixtures::route(&key, 1, 3)])),
        Arc::new(MemoryCache::new()),
        Duration::from_secs(3600),
    );
    let sel = Selector::Latest;
    rt.block_on(resolver.resolve(&key.svc, "latest", &sel))
        .unwrap();
    c.bench_function("resolver: L1 hit", |b| {
        b.iter(|| rt.block_on(resolver.resolve(black_box(&key.svc), "latest", &sel)))
    });
    let route = fixtures::route(&key, 1, 3);
    c.bench_function("answer + JSON, 3 endpoints, sticky key", |b| {
        b.iter(|| {
            let a = render::answer(black_box(&route), Some("user-42")).unwrap();
            serde_json::to_string(&a).unwrap()
        })
    });
}

fn token(c: &mut Criterion) {
    let claims = json!({"sub": "bench", "scope": "routes:resolve", "tm_tenants": "bench",
                        "exp": 4_102_444_800i64})
    .as_object()
    .cloned()
    .unwrap();
    let t = jwt::mint(b"bench-secret", &claims);
    c.bench_function("HS256 verify (tm-local gateway)", |b| {
        b.iter(|| jwt::verify(b"bench-secret", black_box(&t), 1_800_000_000).unwrap())
    });
}

criterion_group!(benches, handler, token);
criterion_main!(benches);
