//! Start-up wiring shared by the Lambda binaries and `tm-local`: the production store and
//! cache built from [`Config`], each wrapped in [`Guarded`] (a deadline on every call and a
//! circuit breaker per backend), so every process guards its backends the same way.

#[cfg(any(feature = "dynamodb", feature = "redis"))]
use crate::adapters::guarded::{Guarded, Limits};
#[cfg(any(feature = "dynamodb", feature = "redis"))]
use crate::config::Config;
#[cfg(any(feature = "dynamodb", feature = "redis"))]
use std::sync::Arc;

/// The DynamoDB store named by `TM_TABLE_NAME`, guarded. Errors name the variable or the
/// failed step.
#[cfg(feature = "dynamodb")]
pub async fn dynamodb_store(
    config: &Config,
) -> Result<Arc<Guarded<crate::adapters::dynamodb::DynamoStore>>, String> {
    let table = config
        .table_name
        .clone()
        .ok_or("TM_TABLE_NAME is required")?;
    let store = crate::adapters::dynamodb::DynamoStore::connect(table)
        .await
        .map_err(|e| format!("connecting to DynamoDB: {e}"))?;
    Ok(Arc::new(Guarded::new(
        "store",
        Arc::new(store),
        Limits::STORE,
    )))
}

/// The resolve path's view of a guarded backend: the same client behind the read-path
/// deadlines ([`Limits::STORE_READS`], [`Limits::CACHE_READS`]) and the same breaker, so
/// a hung backend costs a resolve a fraction of a second, while writes and the event
/// consumer keep their longer deadlines.
#[cfg(any(feature = "dynamodb", feature = "redis"))]
pub fn read_path<T: ?Sized>(backend: &Guarded<T>, limits: Limits) -> Arc<Guarded<T>> {
    Arc::new(backend.sibling(limits))
}

/// The Redis shared cache at `TM_REDIS_URL` (prefix `TM_REDIS_PREFIX`), guarded.
#[cfg(feature = "redis")]
pub async fn redis_cache(
    config: &Config,
) -> Result<Arc<Guarded<crate::adapters::redis_cache::RedisCache>>, String> {
    let url = config
        .redis_url
        .as_ref()
        .ok_or("TM_REDIS_URL is required")?;
    let cache =
        crate::adapters::redis_cache::RedisCache::connect(url.expose(), &config.redis_prefix)
            .await
            .map_err(|e| format!("connecting to Redis (TM_REDIS_URL): {e}"))?;
    Ok(Arc::new(Guarded::new(
        "cache",
        Arc::new(cache),
        Limits::CACHE,
    )))
}
