//! The event-consumer Lambda: reads configuration once per cold start, builds the
//! clients (Redis, the Kafka dead-letter producer) once, and hands MSK batches to
//! [`tm_event_consumer::ConsumerHandler`], answering with the partial batch response.

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;
use tm_core::adapters::kafka::KafkaCluster;
use tm_core::adapters::kafka::dead_letters::KafkaDeadLetters;
use tm_core::config::Config;
use tm_core::metrics::emf::Emf;
use tm_core::services::consume::Consumer;
use tm_event_consumer::{BatchResponse, ConsumerHandler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tm_core::logging::init();
    // Before anything records (tm_core::metrics): EMF lines on stdout.
    let emf = Emf::install_from_env()?.map(Arc::new);
    let config = Config::from_env()?;
    let cluster = KafkaCluster::from_config(&config)
        .await
        .ok_or("TM_KAFKA_BROKERS is required")??;
    let cache = tm_core::wiring::redis_cache(&config).await?;
    let dead_letters = Arc::new(KafkaDeadLetters::new(&cluster, config.dlq_topic())?);
    let handler = Arc::new(ConsumerHandler::new(Consumer::new(cache), dead_letters));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KafkaEvent>| {
        let (handler, emf) = (handler.clone(), emf.clone());
        async move {
            let (response, _) = handler.handle(event.payload).await;
            if let Some(emf) = &emf {
                emf.after_invocation();
            }
            Ok::<BatchResponse, Error>(response)
        }
    }))
    .await
}
