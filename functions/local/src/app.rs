//! Builds tm-local's backends, services and handlers from configuration.

use crate::secret;
use crate::trigger::LocalTrigger;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::adapters::file_dead_letters::FileDeadLetters;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::config::{Config, Secret};
use tm_core::cursor::CursorKey;
use tm_core::services::consume::Consumer;
use tm_core::services::relay::Relay;
use tm_core::services::resolve::Resolver;
use tm_core::services::write::{AfterCommit, WriteService};
use tm_event_consumer::ConsumerHandler;
use tm_resolve::ResolveHandler;
use tm_write::WriteHandler;

/// Everything the gateway dispatches to.
pub struct App {
    /// The write function's handler.
    pub write: WriteHandler,
    /// The resolve function's handler (health endpoints included).
    pub resolve: ResolveHandler,
    /// Moves committed events to the consumer.
    pub relay: Arc<Relay>,
    /// Verifies tokens (the gateway's JWT authorizer).
    pub jwt_secret: Secret,
}

fn refuse_unbuilt_backends(config: &Config) -> anyhow::Result<()> {
    let mut set = Vec::new();
    if config.table_name.is_some() {
        set.push("TM_TABLE_NAME");
    }
    if config.redis_url.is_some() {
        set.push("TM_REDIS_URL");
    }
    if config.kafka_brokers.is_some() {
        set.push("TM_KAFKA_BROKERS");
    }
    if !set.is_empty() {
        bail!(
            "{} set, but this build has only the embedded backends; unset {} to run on them",
            set.join(", "),
            if set.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

fn cursor_key(config: &Config, jwt_secret: &Secret) -> CursorKey {
    match &config.cursor_secret {
        Some(s) => CursorKey::new(s.expose().as_bytes()),
        // Derived, not reused: a cursor MAC must never double as a token signature.
        None => CursorKey::new(format!("tm-cursor-v1/{}", jwt_secret.expose()).as_bytes()),
    }
}

impl App {
    /// Opens the data dir and wires the embedded backends.
    pub async fn build(data_dir: &Path) -> anyhow::Result<Self> {
        let config = Config::from_env().map_err(anyhow::Error::msg)?;
        refuse_unbuilt_backends(&config)?;
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
        let db_path = data_dir.join("tm.redb");
        let store = Arc::new(
            EmbeddedStore::open(&db_path)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!(
                        "opening {} (is another tm-local using this data dir?)",
                        db_path.display()
                    )
                })?,
        );
        let cache = Arc::new(MemoryCache::new());
        let dead_letters = Arc::new(FileDeadLetters::new(data_dir.join("dead-letters.jsonl")));
        let consumer = Arc::new(ConsumerHandler::new(
            Consumer::new(cache.clone()),
            dead_letters,
        ));
        let trigger = Arc::new(LocalTrigger::new(consumer, config.kafka_topic.clone()));
        let relay = Arc::new(Relay::new(store.clone(), trigger));
        let write = WriteService::new(
            store.clone(),
            store.clone(),
            store.clone(),
            cache.clone(),
            AfterCommit::Wake(relay.clone()),
            cursor_key(&config, &jwt_secret),
        );
        let resolver = Resolver::new(store.clone(), cache.clone(), config.l1_ttl);
        tracing::info!(data_dir = %data_dir.display(), l1_ttl_ms = config.l1_ttl.as_millis() as u64, "embedded backends ready");
        Ok(App {
            write: WriteHandler::new(write),
            resolve: ResolveHandler::new(resolver, vec![store, cache]),
            relay,
            jwt_secret,
        })
    }
}

/// `tm-local init`: creates what configured backends lack. The embedded ones need nothing.
pub async fn init(data_dir: &Path) -> anyhow::Result<()> {
    let config = Config::from_env().map_err(anyhow::Error::msg)?;
    refuse_unbuilt_backends(&config)?;
    println!(
        "nothing to do: the embedded backends create their files under {} on first start",
        data_dir.display()
    );
    Ok(())
}
