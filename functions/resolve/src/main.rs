//! The resolve Lambda: reads configuration once per cold start, builds the clients
//! (DynamoDB, Redis) once, and hands requests to [`tm_resolve::ResolveHandler`].

use lambda_http::{Error, service_fn};
use std::sync::Arc;
use tm_core::adapters::dynamodb::DynamoStore;
use tm_core::adapters::guarded::{Guarded, Limits};
use tm_core::adapters::redis_cache::RedisCache;
use tm_core::config::Config;
use tm_core::ports::Probe;
use tm_core::services::resolve::Resolver;
use tm_resolve::ResolveHandler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tm_core::logging::init();
    let config = Config::from_env()?;
    let table = config
        .table_name
        .clone()
        .ok_or("TM_TABLE_NAME is required")?;
    let redis = config.redis_url.clone().ok_or("TM_REDIS_URL is required")?;
    // Guarded: a deadline on every call and a circuit breaker per backend, so a dead
    // backend costs a request nothing after the first few failures.
    let store = Arc::new(Guarded::new(
        "store",
        Arc::new(DynamoStore::connect(table).await?),
        Limits::STORE,
    ));
    let cache = Arc::new(Guarded::new(
        "cache",
        Arc::new(RedisCache::connect(redis.expose(), &config.redis_prefix).await?),
        Limits::CACHE,
    ));
    let resolver = Resolver::new(store.clone(), cache.clone(), config.l1_ttl);
    let probes: Vec<Arc<dyn Probe>> = vec![store, cache];
    let handler = Arc::new(ResolveHandler::new(resolver, probes));
    lambda_http::run(service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handler.handle(req).await) }
    }))
    .await
}
