//! The resolve Lambda: reads configuration once per cold start, builds the clients
//! (DynamoDB, Redis) once, and hands requests to [`tm_resolve::ResolveHandler`].

use lambda_http::Error;
use std::sync::Arc;
use tm_core::adapters::guarded::Limits;
use tm_core::config::Config;
use tm_core::metrics::emf::Emf;
use tm_core::ports::Probe;
use tm_core::services::resolve::Resolver;
use tm_http::throttle::Throttle;
use tm_resolve::ResolveHandler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tm_core::logging::init();
    // Before anything records (tm_core::metrics): EMF lines on stdout.
    let emf = Emf::install_from_env()?.map(Arc::new);
    let config = Config::from_env()?;
    // Both guarded (tm_core::wiring): a deadline on every call and a circuit breaker per
    // backend, so a dead backend costs a request nothing after the first few failures.
    let store = tm_core::wiring::dynamodb_store(&config).await?;
    let cache = tm_core::wiring::redis_cache(&config).await?;
    // The read path fails fast: 800 ms for the store, 100 ms per cache call (wiring::read_path).
    let resolver = Resolver::new(
        tm_core::wiring::read_path(&store, Limits::STORE_READS),
        tm_core::wiring::read_path(&cache, Limits::CACHE_READS),
        config.l1_ttl,
    );
    // Per-tenant rate limit (TM_RATE_LIMIT_RPS), buckets in the same Redis: tm_http::throttle.
    let throttle = config
        .rate_limit
        .map(|limit| Arc::new(Throttle::new(cache.clone(), "resolve", limit)));
    let probes: Vec<Arc<dyn Probe>> = vec![store, cache];
    let handler = Arc::new(ResolveHandler::new(resolver, probes));
    let handle = move |req| {
        let handler = handler.clone();
        async move { handler.handle(req).await }
    };
    let after_invocation = move || {
        if let Some(emf) = &emf {
            emf.after_invocation();
        }
    };
    tm_http::lambda::run(throttle, handle, after_invocation).await
}
