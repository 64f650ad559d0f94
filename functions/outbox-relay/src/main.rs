//! The outbox-relay Lambda: wires the store and the publisher ([`tm_core::boot`]); on each scheduled
//! invocation publishes what the outbox still holds; when the deployment's `KafkaTopics`
//! custom resource asks, creates the event topics (MSK Serverless topics can only be
//! created by a client), answering with what it created or failing the invocation.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::kafka::ensure_topics;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::boot::{self, Lambda, Place};
use tm_core::services::relay::Relay;
use tm_outbox_relay::{Invocation, RelayHandler};

/// Time spent draining per run; the function timeout must be larger.
const BUDGET: Duration = Duration::from_secs(40);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lambda = Lambda::start()?;
    let config = Arc::new(lambda.config.clone());
    let cluster = boot::kafka(&config, Place::Lambda)
        .await?
        .ok_or("TM_KAFKA_BROKERS is required")?;
    let store = boot::store(&config, Place::Lambda).await?;
    let publisher = Arc::new(KafkaPublisher::new(&cluster, config.kafka_topic.clone())?);
    let handler = Arc::new(RelayHandler::new(
        Arc::new(Relay::new(store.store, publisher)),
        BUDGET,
    ));
    // One run every few minutes: its figures go out at its end.
    let flush = Arc::new(lambda.flush());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (handler, cluster, config, flush) =
            (handler.clone(), cluster.clone(), config.clone(), flush.clone());
        async move {
            match Invocation::from_event(&event.payload)? {
                Invocation::Drain => {
                    let report = handler.handle().await;
                    flush();
                    Ok::<Value, Error>(json!(report))
                }
                Invocation::EnsureTopics { partitions } => {
                    let topic = &config.kafka_topic;
                    let done = ensure_topics(&cluster, topic, &config.dlq_topic(), partitions)
                        .await?;
                    tracing::info!(created = ?done.created, existing = ?done.existing, "event topics ready");
                    Ok(json!({"created": done.created, "existing": done.existing}))
                }
            }
        }
    }))
    .await
}
