//! Builds tm-local's backends, services and handlers from configuration: each backend is
//! the production one when its variable is set (`TM_TABLE_NAME`, `TM_REDIS_URL`,
//! `TM_KAFKA_BROKERS`), else the embedded one under the data dir. The production store
//! and cache are guarded (a deadline per call, a circuit breaker), as in the Lambdas.

use crate::kafka_trigger::KafkaTrigger;
use crate::ratelimit::RateLimiter;
use crate::secret;
use crate::trigger::LocalTrigger;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tm_core::adapters::dynamodb::DynamoStore;
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::adapters::file_dead_letters::FileDeadLetters;
use tm_core::adapters::guarded::Limits;
use tm_core::adapters::http_probe::HyperProbe;
use tm_core::adapters::kafka::dead_letters::KafkaDeadLetters;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::adapters::kafka::{KafkaCluster, ensure_topics};
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::config::{Config, Secret};
use tm_core::cursor::CursorKey;
use tm_core::ports::{Cache, DeadLetters, EventPublisher, Probe, RouteReader, SharedCache, Store};
use tm_core::services::consume::Consumer;
use tm_core::services::prober::{Prober, ProberSettings};
use tm_core::services::relay::Relay;
use tm_core::services::resolve::Resolver;
use tm_core::services::write::{AfterCommit, WriteService};
use tm_event_consumer::ConsumerHandler;
use tm_resolve::ResolveHandler;
use tm_write::WriteHandler;

/// Partitions of the event topic when `init` creates it.
const TOPIC_PARTITIONS: i32 = 3;

/// Everything the gateway dispatches to.
pub struct App {
    /// The write function's handler.
    pub write: WriteHandler,
    /// The resolve function's handler (health endpoints included).
    pub resolve: ResolveHandler,
    /// Moves committed events to the publisher.
    pub relay: Arc<Relay>,
    /// Plays the MSK trigger when events go through Kafka.
    pub kafka_trigger: Option<KafkaTrigger>,
    /// Verifies tokens (the gateway's JWT authorizer).
    pub jwt_secret: Secret,
    /// Per-tenant rate limits (`TM_RATE_LIMIT_RPS`); `None` when off.
    pub rate_limiter: Option<RateLimiter>,
    /// Probes checked endpoints in the background (docs/health.md).
    pub prober: Arc<Prober>,
}

/// The test-only `TM_HEALTH_MS_PER_SECOND` (docs/health.md): how many milliseconds one
/// second of a `health_check` lasts in this process, 10–1000 (default 1000), so tests can
/// probe a route with `interval_seconds: 10` every 100 ms. Never set it in production.
pub const HEALTH_SECOND_VAR: &str = "TM_HEALTH_MS_PER_SECOND";

/// Reads [`HEALTH_SECOND_VAR`]; a bad value is an error naming the variable.
pub fn health_second() -> anyhow::Result<std::time::Duration> {
    parse_health_second(std::env::var(HEALTH_SECOND_VAR).ok())
}

/// [`health_second`] over a value (empty counts as unset, as for every variable).
fn parse_health_second(v: Option<String>) -> anyhow::Result<std::time::Duration> {
    match v.filter(|v| !v.trim().is_empty()) {
        None => Ok(std::time::Duration::from_secs(1)),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if (10..=1000).contains(&ms) => Ok(std::time::Duration::from_millis(ms)),
            _ => {
                anyhow::bail!("{HEALTH_SECOND_VAR}: must be an integer from 10 to 1000 (got {v:?})")
            }
        },
    }
}

fn core_err(e: tm_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn cursor_key(config: &Config, jwt_secret: &Secret) -> CursorKey {
    match &config.cursor_secret {
        Some(s) => CursorKey::new(s.expose().as_bytes()),
        // Derived, not reused: a cursor MAC must never double as a token signature.
        None => CursorKey::new(format!("tm-cursor-v1/{}", jwt_secret.expose()).as_bytes()),
    }
}

/// The store, and the resolve path's view of it (fail-fast deadlines when guarded).
async fn store(
    config: &Config,
    data_dir: &Path,
) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn RouteReader>)> {
    if let Some(table) = &config.table_name {
        let store = tm_core::wiring::dynamodb_store(config)
            .await
            .map_err(anyhow::Error::msg)?;
        tracing::info!(table = %table, "store: DynamoDB");
        let reads = tm_core::wiring::read_path(&store, Limits::STORE_READS);
        return Ok((store, reads));
    }
    let db_path = data_dir.join("tm.redb");
    let store = EmbeddedStore::open(&db_path)
        .map_err(core_err)
        .with_context(|| {
            format!(
                "opening {} (is another tm-local using this data dir?)",
                db_path.display()
            )
        })?;
    tracing::info!(path = %db_path.display(), "store: embedded");
    let store = Arc::new(store);
    Ok((store.clone(), store))
}

/// The shared cache, and the resolve path's view of it (fail-fast deadlines when guarded).
async fn cache(config: &Config) -> anyhow::Result<(Arc<dyn Cache>, Arc<dyn SharedCache>)> {
    if config.redis_url.is_some() {
        let cache = tm_core::wiring::redis_cache(config)
            .await
            .map_err(anyhow::Error::msg)?;
        tracing::info!(prefix = %config.redis_prefix, "shared cache: Redis");
        let reads = tm_core::wiring::read_path(&cache, Limits::CACHE_READS);
        return Ok((cache, reads));
    }
    tracing::info!("shared cache: in process");
    let cache = Arc::new(MemoryCache::new());
    Ok((cache.clone(), cache))
}

impl App {
    /// Opens the data dir and wires the configured backends.
    pub async fn build(data_dir: &Path) -> anyhow::Result<Self> {
        let config = Config::from_env().map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let (jwt_secret, generated) = secret::resolve(data_dir)?;
        if generated {
            let path: PathBuf = data_dir.join("jwt-secret");
            tracing::warn!(
                secret_file = %path.display(),
                "TM_JWT_SECRET is unset: tokens are signed with the generated secret kept in secret_file; `tm-local token` uses it too"
            );
        }
        let (store, store_reads) = store(&config, data_dir).await?;
        let (cache, cache_reads) = cache(&config).await?;
        let cluster = match KafkaCluster::from_config(&config).await {
            Some(c) => Some(
                c.map_err(core_err)
                    .context("configuring Kafka (TM_KAFKA_BROKERS)")?,
            ),
            None => None,
        };
        let dead_letters: Arc<dyn DeadLetters> = match &cluster {
            Some(c) => Arc::new(KafkaDeadLetters::new(c, config.dlq_topic()).map_err(core_err)?),
            None => Arc::new(FileDeadLetters::new(data_dir.join("dead-letters.jsonl"))),
        };
        let consumer = Arc::new(ConsumerHandler::new(
            Consumer::new(cache.clone()),
            dead_letters,
        ));
        let (publisher, kafka_trigger): (Arc<dyn EventPublisher>, _) = match &cluster {
            Some(c) => {
                tracing::info!(brokers = %c.brokers(), topic = %config.kafka_topic, group = %config.kafka_group, "events: Kafka");
                let trigger =
                    KafkaTrigger::new(c, &config.kafka_group, &config.kafka_topic, consumer)
                        .map_err(core_err)?;
                (
                    Arc::new(KafkaPublisher::new(c, config.kafka_topic.clone()).map_err(core_err)?),
                    Some(trigger),
                )
            }
            None => {
                tracing::info!("events: in process");
                (
                    Arc::new(LocalTrigger::new(consumer, config.kafka_topic.clone())),
                    None,
                )
            }
        };
        let relay = Arc::new(Relay::new(store.clone(), publisher));
        let second = health_second()?;
        if second != std::time::Duration::from_secs(1) {
            tracing::warn!(
                ms_per_second = second.as_millis() as u64,
                "{HEALTH_SECOND_VAR} is set: health checks run faster than their documents say (tests only)"
            );
        }
        let prober = Arc::new(Prober::new(
            store.clone(),
            Arc::new(HyperProbe::new().map_err(core_err)?),
            AfterCommit::Wake(relay.clone()),
            ProberSettings {
                second,
                // A route's check starts within one refresh of its write.
                refresh: second * 2,
                ..ProberSettings::default()
            },
        ));
        let write = WriteService::new(
            store.clone(),
            store.clone(),
            store.clone(),
            cache.clone(),
            AfterCommit::Wake(relay.clone()),
            cursor_key(&config, &jwt_secret),
        );
        let resolver = Resolver::new(store_reads, cache_reads, config.l1_ttl);
        let probes: Vec<Arc<dyn Probe>> = vec![store, cache];
        tracing::info!(
            l1_ttl_ms = config.l1_ttl.as_millis() as u64,
            rate_limit_rps = config.rate_limit.map(|r| r.rps),
            rate_limit_burst = config.rate_limit.map(|r| r.burst),
            "backends ready"
        );
        Ok(App {
            write: WriteHandler::new(write),
            resolve: ResolveHandler::new(resolver, probes),
            relay,
            kafka_trigger,
            jwt_secret,
            rate_limiter: config.rate_limit.map(RateLimiter::new),
            prober,
        })
    }
}

/// `tm-local init`: creates what the configured backends lack (the DynamoDB table, the
/// Kafka topic and its dead-letter topic) and changes nothing that exists.
pub async fn init(data_dir: &Path) -> anyhow::Result<()> {
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    let mut did_something = false;
    if let Some(table) = &config.table_name {
        let store = DynamoStore::connect(table.clone())
            .await
            .map_err(core_err)?;
        let created = store
            .create_table_if_missing()
            .await
            .map_err(core_err)
            .context("creating the table")?;
        println!(
            "table {table}: {}",
            if created { "created" } else { "already exists" }
        );
        did_something = true;
    }
    if let Some(cluster) = KafkaCluster::from_config(&config).await {
        let cluster = cluster.map_err(core_err)?;
        let done = ensure_topics(
            &cluster,
            &config.kafka_topic,
            &config.dlq_topic(),
            TOPIC_PARTITIONS,
        )
        .await
        .map_err(core_err)
        .context("creating the topics")?;
        for t in &done.created {
            println!("topic {t}: created");
        }
        for t in &done.existing {
            println!("topic {t}: already exists");
        }
        did_something = true;
    }
    if config.redis_url.is_some() {
        println!("redis: nothing to create");
    }
    if !did_something {
        println!(
            "nothing to do: the embedded backends create their files under {} on first start",
            data_dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_second_defaults_to_a_second_and_refuses_what_is_out_of_range() {
        let s = |v: &str| parse_health_second(Some(v.to_owned()));
        assert_eq!(parse_health_second(None).unwrap().as_millis(), 1000);
        assert_eq!(s(" ").unwrap().as_millis(), 1000);
        assert_eq!(s("100").unwrap().as_millis(), 100);
        for bad in ["9", "1001", "0.5", "fast"] {
            let e = s(bad).unwrap_err().to_string();
            assert!(e.starts_with(HEALTH_SECOND_VAR), "{e}");
        }
    }
}
