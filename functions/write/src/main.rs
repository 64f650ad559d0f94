//! The write Lambda: reads configuration once per cold start, builds the clients
//! (DynamoDB, Redis, Kafka) once, and hands requests to [`tm_write::WriteHandler`].
//! After each commit it publishes the change within a short deadline; whatever misses it
//! stays in the outbox for the outbox-relay function.

use lambda_http::Error;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::kafka::KafkaCluster;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::config::Config;
use tm_core::cursor::CursorKey;
use tm_core::metrics::emf::Emf;
use tm_core::services::write::{AfterCommit, WriteService};
use tm_http::throttle::Throttle;
use tm_write::WriteHandler;

/// The most a write waits for Kafka after its commit. The write never fails because of
/// Kafka: a miss only delays the event until the relay's next run.
const PUBLISH_DEADLINE: Duration = Duration::from_millis(250);

#[tokio::main]
async fn main() -> Result<(), Error> {
    tm_core::logging::init();
    // Before anything records (tm_core::metrics): EMF lines on stdout.
    let emf = Emf::install_from_env()?.map(Arc::new);
    let config = Config::from_env()?;
    let cursor_secret = config
        .cursor_secret
        .clone()
        .ok_or("TM_CURSOR_SECRET is required")?;
    let cluster = KafkaCluster::from_config(&config)
        .await
        .ok_or("TM_KAFKA_BROKERS is required")??;
    let store = tm_core::wiring::dynamodb_store(&config).await?;
    let cache = tm_core::wiring::redis_cache(&config).await?;
    let publisher = Arc::new(KafkaPublisher::new(&cluster, config.kafka_topic.clone())?);
    let after_commit = AfterCommit::PublishNow {
        publisher,
        outbox: store.clone(),
        deadline: PUBLISH_DEADLINE,
    };
    // Per-tenant rate limit (TM_RATE_LIMIT_RPS), buckets in the same Redis: tm_http::throttle.
    let throttle = config
        .rate_limit
        .map(|limit| Arc::new(Throttle::new(cache.clone(), "write", limit)));
    let service = WriteService::new(
        store.clone(),
        store.clone(),
        store,
        cache,
        after_commit,
        CursorKey::new(cursor_secret.expose().as_bytes()),
    );
    let handler = Arc::new(WriteHandler::new(service));
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
