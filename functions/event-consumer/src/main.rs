//! The event-consumer Lambda: wires the shared cache and the dead-letter producer
//! ([`tm_core::boot`]) to [`tm_event_consumer::ConsumerHandler`], with the marks of the
//! letters sent in the same Redis, answering each MSK batch with the partial batch
//! response.

use aws_lambda_events::event::kafka::KafkaEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::sync::Arc;
use tm_core::adapters::kafka::dead_letters::KafkaDeadLetters;
use tm_core::boot::{self, Lambda, Place};
use tm_core::services::consume::Consumer;
use tm_event_consumer::{BatchResponse, ConsumerHandler};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lambda = Lambda::start()?;
    let config = &lambda.config;
    let cluster = boot::kafka(config, Place::Lambda)
        .await?
        .ok_or("TM_KAFKA_BROKERS is required")?;
    let cache = boot::cache(config, Place::Lambda).await?;
    let dead_letters = Arc::new(KafkaDeadLetters::new(&cluster, config.dlq_topic())?);
    // The marks of the letters sent live in the same Redis, so a batch redelivered to any
    // instance does not dead-letter its poison again.
    let marks = cache.marks.ok_or("TM_REDIS_URL is required")?;
    let handler =
        Arc::new(ConsumerHandler::new(Consumer::new(cache.cache), dead_letters).with_marks(marks));
    let after = Arc::new(lambda.after_invocation());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KafkaEvent>| {
        let (handler, after) = (handler.clone(), after.clone());
        async move {
            let (response, _) = handler.handle(event.payload).await;
            after();
            Ok::<BatchResponse, Error>(response)
        }
    }))
    .await
}
