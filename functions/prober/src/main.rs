//! The prober Lambda: wires the store, the publisher ([`tm_core::boot`]) and the HTTP
//! prober once per cold start, and on each scheduled invocation probes for
//! most of a minute. Health events are published right after their commit; whatever
//! misses that stays in the outbox for the outbox-relay function.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::http_probe::HyperProbe;
use tm_core::adapters::kafka::publisher::KafkaPublisher;
use tm_core::boot::{self, Lambda, Place};
use tm_core::services::prober::{Prober, ProberSettings};
use tm_core::services::write::AfterCommit;
use tm_prober::{ProberHandler, ProberReport};

/// Time spent starting probe rounds per run: the schedule fires every minute.
const BUDGET: Duration = Duration::from_secs(50);
/// How long the run then waits for rounds still probing; `BUDGET + GRACE` stays under
/// the function timeout (70 s). A probe cut off here is made again on the next run.
const GRACE: Duration = Duration::from_secs(12);
/// The most a health event waits for Kafka after its commit.
const PUBLISH_DEADLINE: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lambda = Lambda::start()?;
    let config = &lambda.config;
    let cluster = boot::kafka(config, Place::Lambda)
        .await?
        .ok_or("TM_KAFKA_BROKERS is required")?;
    let store = boot::store(config, Place::Lambda).await?.store;
    let publisher = Arc::new(KafkaPublisher::new(&cluster, config.kafka_topic.clone())?);
    let settings = ProberSettings::default();
    let prober = Arc::new(Prober::new(
        store.clone(),
        Arc::new(HyperProbe::new()?),
        AfterCommit::PublishNow {
            publisher,
            outbox: store,
            deadline: PUBLISH_DEADLINE,
        },
        settings,
    ));
    let handler = Arc::new(ProberHandler::new(prober, BUDGET, settings.second, GRACE));
    // One invocation a minute: its figures go out before the environment freezes.
    let flush = Arc::new(lambda.flush());
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| {
        let (handler, flush) = (handler.clone(), flush.clone());
        async move {
            let report = handler.handle().await;
            flush();
            Ok::<ProberReport, Error>(report)
        }
    }))
    .await
}
