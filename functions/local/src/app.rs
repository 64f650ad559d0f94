//! Builds tm-local's services and handlers. Each backend comes from the same composition
//! root as the Lambdas' ([`tm_core::boot`]): the production one when its variable is set
//! (`TM_TABLE_NAME`, `TM_REDIS_URL`, `TM_KAFKA_BROKERS`), guarded as in AWS, else the
//! embedded one under the data dir. The throttle is the functions' own
//! ([`tm_http::throttle`]), over the same limiter.

use crate::kafka_trigger::KafkaTrigger;
use crate::secret;
use crate::trigger::LocalTrigger;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tm_core::adapters::dynamodb::DynamoStore;
use tm_core::adapters::file_dead_letters::FileDeadLetters;
use tm_core::adapters::http_probe::HyperProbe;
use tm_core::adapters::kafka::dead_letters::KafkaDeadLetters;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::adapters::kafka::{KafkaCluster, ensure_topics};
use tm_core::boot::{self, Place};
use tm_core::config::{Config, Secret};
use tm_core::cursor::{CursorKey, CursorKeys};
use tm_core::ports::{DeadLetters, EventPublisher};
use tm_core::services::consume::Consumer;
use tm_core::services::prober::{Prober, ProberSettings};
use tm_core::services::relay::Relay;
use tm_core::services::resolve::Resolver;
use tm_core::services::write::{AfterCommit, WriteService};
use tm_event_consumer::ConsumerHandler;
use tm_http::throttle::Throttle;
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
    /// The resolve function's per-tenant throttle (`TM_RATE_LIMIT_RPS`); `None` when off.
    pub resolve_throttle: Option<Throttle>,
    /// The write function's per-tenant throttle.
    pub write_throttle: Option<Throttle>,
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

/// The configured cursor keys ([`boot::cursor_keys`]), else a key derived from the JWT
/// secret: derived, not reused, as a cursor MAC must never double as a token signature.
async fn cursor_keys(
    config: &Config,
    place: Place<'_>,
    jwt_secret: &Secret,
) -> anyhow::Result<Arc<CursorKeys>> {
    Ok(
        match boot::cursor_keys(config, place)
            .await
            .map_err(anyhow::Error::msg)?
        {
            Some(keys) => keys,
            None => {
                CursorKey::new(format!("tm-cursor-v1/{}", jwt_secret.expose()).as_bytes()).into()
            }
        },
    )
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
        let place = Place::DataDir(data_dir);
        let boot::StoreParts {
            store,
            reads: store_reads,
        } = boot::store(&config, place)
            .await
            .map_err(anyhow::Error::msg)?;
        let boot::CacheParts {
            cache,
            reads: cache_reads,
            ledger,
            marks,
        } = boot::cache(&config, place)
            .await
            .map_err(anyhow::Error::msg)?;
        let cluster = boot::kafka(&config, place)
            .await
            .map_err(anyhow::Error::msg)?;
        let dead_letters: Arc<dyn DeadLetters> = match &cluster {
            Some(c) => Arc::new(KafkaDeadLetters::new(c, config.dlq_topic()).map_err(core_err)?),
            None => Arc::new(FileDeadLetters::new(data_dir.join("dead-letters.jsonl"))),
        };
        let consumer = ConsumerHandler::new(Consumer::new(cache.clone()), dead_letters);
        // With Redis, a fleet of tm-locals shares the marks of the letters sent, as the
        // Lambda instances do.
        let consumer = Arc::new(match marks {
            Some(marks) => consumer.with_marks(marks),
            None => consumer,
        });
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
            cursor_keys(&config, place, &jwt_secret).await?,
        );
        let resolver = Resolver::new(store_reads, cache_reads, config.l1_ttl);
        // One limiter, the functions' own throttle for each: with Redis, a fleet of
        // tm-locals shares each tenant's rate as Lambda instances do.
        let limiter = boot::limiter(&config, ledger);
        let throttle = |class| limiter.clone().map(|l| Throttle::new(l, class));
        tracing::info!(
            l1_ttl_ms = config.l1_ttl.as_millis() as u64,
            "backends ready"
        );
        Ok(App {
            write: WriteHandler::new(write),
            resolve: ResolveHandler::new(resolver, vec![store, cache]),
            relay,
            kafka_trigger,
            jwt_secret,
            resolve_throttle: throttle("resolve"),
            write_throttle: throttle("write"),
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
