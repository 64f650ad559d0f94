//! The write Lambda: wires the backends ([`tm_core::boot`]) to
//! [`tm_write::WriteHandler`] behind the per-tenant throttle. After each commit it
//! publishes the change within a short deadline; whatever misses it stays in the outbox
//! for the outbox-relay function.

use lambda_http::Error;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::boot::{self, Lambda, Place};
use tm_core::services::write::{AfterCommit, WriteService};
use tm_http::throttle::Throttle;
use tm_write::WriteHandler;

/// The most a write waits for Kafka after its commit. The write never fails because of
/// Kafka: a miss only delays the event until the relay's next run.
const PUBLISH_DEADLINE: Duration = Duration::from_millis(250);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lambda = Lambda::start()?;
    let config = &lambda.config;
    let cluster = boot::kafka(config, Place::Lambda)
        .await?
        .ok_or("TM_KAFKA_BROKERS is required")?;
    let store = boot::store(config, Place::Lambda).await?;
    let cache = boot::cache(config, Place::Lambda).await?;
    // Read from Secrets Manager at run time, refreshed: tm_core::boot::cursor_keys.
    let cursors = boot::cursor_keys(config, Place::Lambda)
        .await?
        .ok_or("TM_CURSOR_SECRET_ID is required")?;
    let throttle = boot::limiter(config, cache.ledger.clone()).map(|l| Throttle::new(l, "write"));
    let after_commit = AfterCommit::PublishNow {
        publisher: Arc::new(KafkaPublisher::new(&cluster, config.kafka_topic.clone())?),
        outbox: store.store.clone(),
        deadline: PUBLISH_DEADLINE,
    };
    let s = store.store;
    let service = WriteService::new(s.clone(), s.clone(), s, cache.cache, after_commit, cursors);
    let handler = Arc::new(WriteHandler::new(service));
    let serve = move |call| {
        let handler = handler.clone();
        async move { handler.serve(call).await }
    };
    tm_http::lambda::run(throttle, serve, lambda.after_invocation()).await
}
