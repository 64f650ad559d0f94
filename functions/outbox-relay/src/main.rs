//! The outbox-relay Lambda: reads configuration once per cold start; on each scheduled
//! invocation publishes what the outbox still holds; when the deployment's `KafkaTopics`
//! custom resource asks, creates the event topics (MSK Serverless topics can only be
//! created by a client), answering with what it created or failing the invocation.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::adapters::kafka::{KafkaCluster, ensure_topics};
use tm_core::config::Config;
use tm_core::metrics::emf::Emf;
use tm_core::services::relay::Relay;
use tm_outbox_relay::{Invocation, RelayHandler};

/// Time spent draining per run; the function timeout must be larger.
const BUDGET: Duration = Duration::from_secs(40);

#[tokio::main]
async fn main() -> Result<(), Error> {
    tm_core::logging::init();
    // Before anything records (tm_core::metrics): EMF lines on stdout.
    let emf = Emf::install_from_env()?.map(Arc::new);
    let config = Config::from_env()?;
    let cluster = KafkaCluster::from_config(&config)
        .await
        .ok_or("TM_KAFKA_BROKERS is required")??;
    let store = tm_core::wiring::dynamodb_store(&config).await?;
    let publisher = Arc::new(KafkaPublisher::new(&cluster, config.kafka_topic.clone())?);
    let handler = Arc::new(RelayHandler::new(
        Arc::new(Relay::new(store, publisher)),
        BUDGET,
    ));
    let config = Arc::new(config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (handler, cluster, config, emf) =
            (handler.clone(), cluster.clone(), config.clone(), emf.clone());
        async move {
            match Invocation::from_event(&event.payload)? {
                Invocation::Drain => {
                    let report = handler.handle().await;
                    if let Some(emf) = &emf {
                        // One run every few minutes: write its figures now.
                        emf.flush();
                    }
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
