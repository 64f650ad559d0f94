//! Plays the MSK trigger for the embedded backends: the relay hands it committed events,
//! it wraps them in an MSK-shaped batch (base64 keys and values under `topic-partition`)
//! and invokes the event-consumer handler, exactly as Lambda would.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tm_core::domain::event::RouteEvent;
use tm_core::ports::EventPublisher;
use tm_core::{Error, Result};
use tm_event_consumer::ConsumerHandler;

/// An [`EventPublisher`] that delivers straight to the consumer handler.
pub struct LocalTrigger {
    handler: Arc<ConsumerHandler>,
    topic: String,
    next_offset: AtomicI64,
}

impl LocalTrigger {
    /// Delivers to `handler` as records of `topic`, partition 0.
    pub fn new(handler: Arc<ConsumerHandler>, topic: String) -> Self {
        Self {
            handler,
            topic,
            next_offset: AtomicI64::new(0),
        }
    }
}

/// Builds the MSK event Lambda would deliver for these events on one partition.
pub fn msk_event(
    topic: &str,
    partition: i64,
    first_offset: i64,
    events: &[RouteEvent],
) -> Result<aws_lambda_events::event::kafka::KafkaEvent> {
    let now_ms = tm_core::domain::timefmt::Timestamp::now().millis();
    let records: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let value = serde_json::to_vec(e)
                .map_err(|err| Error::Internal(format!("encode event: {err}")))?;
            Ok(json!({
                "topic": topic,
                "partition": partition,
                "offset": first_offset + i as i64,
                "timestamp": now_ms,
                "timestampType": "CREATE_TIME",
                "key": B64.encode(e.key().svc.event_key()),
                "value": B64.encode(value),
                "headers": [],
            }))
        })
        .collect::<Result<_>>()?;
    let event = json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:local:000000000000:cluster/tm-local/0",
        "bootstrapServers": "tm-local",
        "records": { format!("{topic}-{partition}"): records },
    });
    serde_json::from_value(event).map_err(|e| Error::Internal(format!("build MSK event: {e}")))
}

#[async_trait]
impl EventPublisher for LocalTrigger {
    async fn publish(&self, events: &[RouteEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let first = self
            .next_offset
            .fetch_add(events.len() as i64, Ordering::SeqCst);
        let batch = msk_event(&self.topic, 0, first, events)?;
        let (response, _) = self.handler.handle(batch).await;
        if response.batch_item_failures.is_empty() {
            Ok(())
        } else {
            // The relay keeps the events and redelivers them; applying is idempotent.
            Err(Error::Unavailable(
                "the event consumer asked for redelivery".into(),
            ))
        }
    }
}
