//! The outbox-relay Lambda: reads configuration once per cold start, makes sure the
//! event topics exist (MSK Serverless topics can only be created by a client), and on
//! each scheduled invocation publishes what the outbox still holds.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::adapters::kafka::{KafkaCluster, ensure_topics};
use tm_core::config::Config;
use tm_core::metrics::emf::Emf;
use tm_core::services::relay::Relay;
use tm_outbox_relay::{RelayHandler, RelayReport};

/// Partitions of the event topics when this function creates them.
const TOPIC_PARTITIONS: i32 = 6;
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
    match ensure_topics(
        &cluster,
        &config.kafka_topic,
        &config.dlq_topic(),
        TOPIC_PARTITIONS,
    )
    .await
    {
        Ok(done) => {
            tracing::info!(created = ?done.created, existing = ?done.existing, "event topics ready")
        }
        // Not fatal: the topics may exist and only this call failed; publishing will say.
        Err(e) => tracing::warn!(error = %e, "could not ensure the event topics"),
    }
    let store = tm_core::wiring::dynamodb_store(&config).await?;
    let publisher = Arc::new(KafkaPublisher::new(&cluster, config.kafka_topic.clone())?);
    let handler = Arc::new(RelayHandler::new(
        Arc::new(Relay::new(store, publisher)),
        BUDGET,
    ));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| {
        let (handler, emf) = (handler.clone(), emf.clone());
        async move {
            let report = handler.handle().await;
            if let Some(emf) = &emf {
                // One run every few minutes: write its figures now.
                emf.flush();
            }
            Ok::<RelayReport, Error>(report)
        }
    }))
    .await
}
