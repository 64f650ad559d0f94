//! The composition root: every Lambda main and tm-local pick their backends here, from
//! [`Config`], in one place. Each backend is one `match` on its setting, with one arm per
//! adapter: the production adapter (guarded: a deadline on every call and a circuit
//! breaker per backend, [`Guarded`]) when its variable is set, the embedded one when the
//! process may keep data of its own ([`Place::DataDir`], tm-local), and an error naming
//! the variable otherwise ([`Place::Lambda`]: a function has nowhere to keep anything).
//! Adding a backend is one adapter and one arm.

use crate::adapters::embedded_store::EmbeddedStore;
#[cfg(any(feature = "dynamodb", feature = "redis"))]
use crate::adapters::guarded::{Guarded, Limits};
use crate::adapters::memory_cache::MemoryCache;
use crate::adapters::token_buckets::{EXCHANGE_PERIOD, TokenBuckets};
use crate::config::Config;
use crate::cursor::{CursorKey, CursorKeys};
use crate::ports::{
    Cache, DeadLetterMarks, RouteReader, SharedCache, Store, TenantLimiter, UsageLedger,
};
use std::path::Path;
use std::sync::Arc;

/// Where the process runs, which decides whether embedded backends are allowed.
#[derive(Clone, Copy, Debug)]
pub enum Place<'a> {
    /// A Lambda function: every backend must be configured.
    Lambda,
    /// tm-local: unconfigured backends are embedded, under this data dir.
    DataDir(&'a Path),
}

/// The route store, and the resolve path's view of it.
pub struct StoreParts {
    /// The store, for writes, the consumer, the relay and the prober.
    pub store: Arc<dyn Store>,
    /// The same store behind the read path's fail-fast deadlines (resolve).
    pub reads: Arc<dyn RouteReader>,
}

/// The shared cache, the resolve path's view of it, and the rate limiter's fleet ledger.
pub struct CacheParts {
    /// The cache, for writes and the consumer.
    pub cache: Arc<dyn Cache>,
    /// The same cache behind the read path's fail-fast deadlines (resolve).
    pub reads: Arc<dyn SharedCache>,
    /// Where rate-limit usage is exchanged with the rest of the fleet; `None` when the
    /// cache lives in this process (there is no fleet to agree with).
    pub ledger: Option<Arc<dyn UsageLedger>>,
    /// Where the event consumers of a fleet mark the dead letters they sent, so a
    /// redelivered batch does not dead-letter its poison again; `None` in process (the
    /// consumer then keeps its own marks).
    pub marks: Option<Arc<dyn DeadLetterMarks>>,
}

/// The store: DynamoDB when `TM_TABLE_NAME` is set, else the embedded store.
pub async fn store(config: &Config, place: Place<'_>) -> Result<StoreParts, String> {
    match (&config.table_name, place) {
        #[cfg(feature = "dynamodb")]
        (Some(table), _) => {
            let store = crate::adapters::dynamodb::DynamoStore::connect(table.clone())
                .await
                .map_err(|e| format!("connecting to DynamoDB (TM_TABLE_NAME={table}): {e}"))?;
            tracing::info!(table = %table, "store: DynamoDB");
            let store = Arc::new(Guarded::new("store", Arc::new(store), Limits::STORE));
            let reads = Arc::new(store.sibling(Limits::STORE_READS));
            Ok(StoreParts { store, reads })
        }
        #[cfg(not(feature = "dynamodb"))]
        (Some(_), _) => Err("TM_TABLE_NAME is set, but this build has no DynamoDB support".into()),
        (None, Place::Lambda) => Err("TM_TABLE_NAME is required".into()),
        (None, Place::DataDir(dir)) => {
            let path = dir.join("tm.redb");
            let store = EmbeddedStore::open(&path).map_err(|e| {
                format!(
                    "opening {} (is another tm-local using this data dir?): {e}",
                    path.display()
                )
            })?;
            tracing::info!(path = %path.display(), "store: embedded");
            let store = Arc::new(store);
            Ok(StoreParts {
                store: store.clone(),
                reads: store,
            })
        }
    }
}

/// The shared cache: Redis when `TM_REDIS_URL` is set, else one in this process.
pub async fn cache(config: &Config, place: Place<'_>) -> Result<CacheParts, String> {
    match (&config.redis_url, place) {
        #[cfg(feature = "redis")]
        (Some(url), _) => {
            let cache = crate::adapters::redis_cache::RedisCache::connect(
                url.expose(),
                &config.redis_prefix,
            )
            .await
            .map_err(|e| format!("connecting to Redis (TM_REDIS_URL): {e}"))?;
            tracing::info!(prefix = %config.redis_prefix, "shared cache: Redis");
            let cache = Arc::new(Guarded::new("cache", Arc::new(cache), Limits::CACHE));
            Ok(CacheParts {
                reads: Arc::new(cache.sibling(Limits::CACHE_READS)),
                ledger: Some(cache.clone()),
                marks: Some(cache.clone()),
                cache,
            })
        }
        #[cfg(not(feature = "redis"))]
        (Some(_), _) => Err("TM_REDIS_URL is set, but this build has no Redis support".into()),
        (None, Place::Lambda) => Err("TM_REDIS_URL is required".into()),
        (None, Place::DataDir(_)) => {
            tracing::info!("shared cache: in process");
            let cache = Arc::new(MemoryCache::new());
            Ok(CacheParts {
                cache: cache.clone(),
                reads: cache,
                ledger: None,
                marks: None,
            })
        }
    }
}

/// The per-tenant rate limiter when `TM_RATE_LIMIT_RPS` is set: buckets in this process,
/// kept in step with the fleet through `ledger` by a background task (started here, so
/// call this inside the runtime). One limiter serves every function of the process; each
/// function charges its own class of buckets.
pub fn limiter(
    config: &Config,
    ledger: Option<Arc<dyn UsageLedger>>,
) -> Option<Arc<dyn TenantLimiter>> {
    let limit = config.rate_limit?;
    let buckets = Arc::new(TokenBuckets::new(limit));
    if let Some(ledger) = ledger {
        tokio::spawn(buckets.clone().reconcile(ledger, EXCHANGE_PERIOD));
    }
    tracing::info!(
        rps = limit.rps,
        burst = limit.burst,
        "per-tenant rate limit on"
    );
    Some(buckets)
}

/// The keys that sign pagination cursors: the Secrets Manager secret named by
/// `TM_CURSOR_SECRET_ID`, read at run time with its previous version (a key ring, so a
/// rotation breaks no open pagination) and refreshed in the background; else the fixed
/// `TM_CURSOR_SECRET`, which tm-local and emulators use. In Lambda the secret id is
/// required: a cursor key is never a plain environment variable there. `Ok(None)` when
/// tm-local has neither (it derives a key of its own).
pub async fn cursor_keys(
    config: &Config,
    place: Place<'_>,
) -> Result<Option<Arc<CursorKeys>>, String> {
    match (&config.cursor_secret_id, &config.cursor_secret, place) {
        #[cfg(feature = "secretsmanager")]
        (Some(id), _, _) => crate::adapters::secretsmanager::cursor_keys(Some(id))
            .await
            .map(Some),
        #[cfg(not(feature = "secretsmanager"))]
        (Some(_), _, _) => {
            Err("TM_CURSOR_SECRET_ID is set, but this build has no Secrets Manager support".into())
        }
        (None, _, Place::Lambda) => Err("TM_CURSOR_SECRET_ID is required".into()),
        (None, Some(secret), Place::DataDir(_)) => {
            Ok(Some(CursorKey::new(secret.expose().as_bytes()).into()))
        }
        (None, None, Place::DataDir(_)) => Ok(None),
    }
}

/// The Kafka cluster when `TM_KAFKA_BROKERS` is set; in Lambda it is required.
#[cfg(feature = "kafka")]
pub async fn kafka(
    config: &Config,
    place: Place<'_>,
) -> Result<Option<crate::adapters::kafka::KafkaCluster>, String> {
    match (
        crate::adapters::kafka::KafkaCluster::from_config(config).await,
        place,
    ) {
        (Some(cluster), _) => cluster
            .map(Some)
            .map_err(|e| format!("configuring Kafka (TM_KAFKA_BROKERS): {e}")),
        (None, Place::Lambda) => Err("TM_KAFKA_BROKERS is required".into()),
        (None, Place::DataDir(_)) => Ok(None),
    }
}

/// What every Lambda main starts from: JSON logs, the EMF exporter (installed before
/// anything records) and the configuration, parsed once per cold start.
#[cfg(feature = "emf")]
pub struct Lambda {
    /// The configuration.
    pub config: Config,
    emf: Option<Arc<crate::metrics::emf::Emf>>,
}

#[cfg(feature = "emf")]
impl Lambda {
    /// Starts a function: logs, metrics exporter, configuration (a bad value fails the
    /// cold start with a message naming the variable).
    pub fn start() -> Result<Self, String> {
        crate::logging::init();
        let emf = crate::metrics::emf::Emf::install_from_env()?.map(Arc::new);
        Ok(Self {
            config: Config::from_env()?,
            emf,
        })
    }

    /// The hook after each invocation of a busy function: EMF lines when due.
    pub fn after_invocation(&self) -> impl Fn() + Send + Sync + 'static {
        let emf = self.emf.clone();
        move || {
            if let Some(emf) = &emf {
                emf.after_invocation();
            }
        }
    }

    /// Writes the figures now (a scheduled function's one invocation in minutes).
    pub fn flush(&self) -> impl Fn() + Send + Sync + 'static {
        let emf = self.emf.clone();
        move || {
            if let Some(emf) = &emf {
                emf.flush();
            }
        }
    }
}
