//! The event publisher (CONTRACT §7) and the producer it shares with the dead-letter
//! adapter.
//!
//! Producer settings, and why:
//! - `enable.idempotence=true`, `acks=all`: a retried send never duplicates or reorders a
//!   record within its partition, and a record counts as sent only once every in-sync
//!   replica has it.
//! - `compression.type=lz4`: events are repetitive JSON; lz4 is cheap and every broker
//!   supports it (snappy is avoided: it breaks Tansu's sqlite engine).
//! - `partitioner=murmur2_random`: the Java client's key hashing, so a key lands on the
//!   same partition whichever client (or tool) produced it.
//! - `message.timeout.ms` short (5 s by default): with a broker down a publish fails within
//!   seconds; the outbox keeps the events and the relay retries.
//!
//! A producer whose delivery failed is replaced by a fresh one ([`HealingProducer`]). An
//! idempotent producer whose records timed out bumps its epoch before it sends again
//! (KIP-360); a broker that does not support that (Tansu 0.6 fails every produce of the
//! bumped epoch) would wedge it for good, and every later event would stay in the outbox.
//! A fresh producer gets a fresh producer id from the broker, which every broker accepts.
//! The retry resends the whole batch, in order, so nothing is lost or reordered by the
//! swap.

use super::{ClientCtx, KafkaCluster, unavailable};
use crate::domain::event::RouteEvent;
use crate::ports::{EventPublisher, Probe};
use crate::{Error, Result};
use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::sync::Mutex;
use std::time::Duration;

/// The header carrying the change's correlation id (CONTRACT §5), so a consumer can log it
/// without parsing the value.
pub const CORRELATION_HEADER: &str = "correlation_id";

/// Extra time given to librdkafka beyond `message.timeout.ms`: it scans for expired
/// records about once a second.
const TIMEOUT_SLACK: Duration = Duration::from_secs(2);

/// A record to produce.
pub(super) struct Outgoing {
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Vec<u8>,
    pub(super) headers: OwnedHeaders,
}

/// A producer configured as the module docs say.
fn producer(cluster: &KafkaCluster) -> Result<FutureProducer<ClientCtx>> {
    let timeout_ms = cluster.message_timeout.as_millis().max(1).to_string();
    cluster
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", &timeout_ms)
        .create_with_context(cluster.context())
        .map_err(|e| unavailable("create the producer", e))
}

/// A producer (configured as the module docs say) that is replaced after a failed
/// delivery. Cheap to share: a delivery holds a clone of the current producer.
pub(super) struct HealingProducer {
    cluster: KafkaCluster,
    // A std Mutex: held to clone or swap a handle, never across an await.
    current: Mutex<(u64, FutureProducer<ClientCtx>)>,
}

impl HealingProducer {
    /// A producer on `cluster`.
    pub(super) fn new(cluster: &KafkaCluster) -> Result<Self> {
        Ok(Self {
            cluster: cluster.clone(),
            current: Mutex::new((0, producer(cluster)?)),
        })
    }

    /// The current producer and its generation.
    pub(super) fn current(&self) -> (u64, FutureProducer<ClientCtx>) {
        let guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (guard.0, guard.1.clone())
    }

    /// [`deliver_all`] on the current producer; after a failure the producer is replaced
    /// (once, however many deliveries failed on it at the same time).
    pub(super) async fn deliver(
        &self,
        topic: &str,
        records: Vec<Outgoing>,
        timeout: Duration,
    ) -> Result<()> {
        let (generation, producer) = self.current();
        let outcome = deliver_all(&producer, topic, records, timeout).await;
        if outcome.is_err() {
            self.replace(generation);
        }
        if self.current().0 != generation {
            retire(producer);
        }
        outcome
    }

    fn replace(&self, failed: u64) {
        let fresh = match producer(&self.cluster) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "kafka: could not replace the producer; keeping it");
                return;
            }
        };
        let old = {
            let mut guard = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if guard.0 != failed {
                // Another delivery replaced it already.
                drop(guard);
                retire(fresh);
                return;
            }
            let old = std::mem::replace(&mut guard.1, fresh);
            guard.0 += 1;
            old
        };
        tracing::info!("kafka: replaced the producer after a failed delivery");
        retire(old);
    }
}

/// Drops a producer off the async threads: dropping the last handle purges, flushes for
/// up to 500 ms and joins librdkafka's threads.
fn retire(producer: FutureProducer<ClientCtx>) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn_blocking(move || drop(producer));
        }
        Err(_) => drop(producer),
    }
}

/// Enqueues every record, then waits for each acknowledgement in order. `Ok` only when all
/// were acknowledged; the first failure is returned (the caller resends the whole batch,
/// which the consumers' idempotence makes harmless).
async fn deliver_all(
    producer: &FutureProducer<ClientCtx>,
    topic: &str,
    records: Vec<Outgoing>,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout + TIMEOUT_SLACK;
    let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
    for r in &records {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(r.value.as_slice())
            .headers(r.headers.clone());
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        match producer.send_result(record) {
            Ok(delivery) => pending.push(delivery),
            // Only a full local queue or a bad record gets here; what was enqueued still
            // goes out, and the retry resends it (at least once).
            Err((e, _)) => return Err(unavailable("enqueue a record", e)),
        }
    }
    for delivery in pending {
        match tokio::time::timeout_at(deadline, delivery).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((e, _)))) => return Err(delivery_error(e)),
            Ok(Err(_)) => return Err(Error::Unavailable("kafka: the producer shut down".into())),
            Err(_) => {
                return Err(Error::Unavailable(format!(
                    "kafka: no acknowledgement within {:?}",
                    timeout + TIMEOUT_SLACK
                )));
            }
        }
    }
    Ok(())
}

/// A failed delivery: `Internal` when the broker refused the record itself (too large,
/// invalid, corrupt: sending it again can never succeed, so the relay sets it aside and
/// publishes the rest), else `Unavailable` (the broker or the network: try later).
/// Authorisation failures stay "try later": one misconfiguration must not set the whole
/// outbox aside.
fn delivery_error(e: KafkaError) -> Error {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match e.rdkafka_error_code() {
        Some(
            code @ (Code::InvalidMessage
            | Code::InvalidMessageSize
            | Code::MessageSizeTooLarge
            | Code::InvalidRecord
            | Code::MessageBatchTooLarge),
        ) => Error::Internal(format!("kafka: the broker refused a record: {code}")),
        _ => unavailable("deliver a record", e),
    }
}

/// Publishes route events to the event topic: key `{tenant}/{service}/{env}` (so every
/// change that can alter one `latest` answer stays in one partition, in order), value the
/// event's JSON, header [`CORRELATION_HEADER`].
pub struct KafkaPublisher {
    producer: HealingProducer,
    topic: String,
    timeout: Duration,
}

impl KafkaPublisher {
    /// A publisher to `topic` on `cluster`. Connects lazily: a broker that is down shows
    /// on the first publish (or ping), not here.
    pub fn new(cluster: &KafkaCluster, topic: impl Into<String>) -> Result<Self> {
        Ok(Self {
            producer: HealingProducer::new(cluster)?,
            topic: topic.into(),
            timeout: cluster.message_timeout,
        })
    }

    /// The topic events go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// The Kafka record for one event: key, JSON value, correlation header.
fn record(event: &RouteEvent) -> Result<Outgoing> {
    let value =
        serde_json::to_vec(event).map_err(|e| Error::Internal(format!("encode event: {e}")))?;
    let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
        key: CORRELATION_HEADER,
        value: Some(event.correlation_id.as_bytes()),
    });
    Ok(Outgoing {
        key: Some(event.key().svc.event_key().into_bytes()),
        value,
        headers,
    })
}

#[async_trait]
impl EventPublisher for KafkaPublisher {
    async fn publish(&self, events: &[RouteEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let records = events.iter().map(record).collect::<Result<Vec<_>>>()?;
        self.producer
            .deliver(&self.topic, records, self.timeout)
            .await
    }
}

#[async_trait]
impl Probe for KafkaPublisher {
    fn name(&self) -> &'static str {
        "events"
    }

    /// Asks the brokers for the event topic's metadata: `Ok` when the topic exists.
    async fn ping(&self) -> Result<()> {
        let (_, producer) = self.producer.current();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .map_err(|e| unavailable("fetch metadata", e))?;
            match md.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                _ => Err(Error::Unavailable(format!(
                    "kafka: topic {topic} is missing"
                ))),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("kafka ping task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_the_broker_refuses_is_no_outage_but_a_down_broker_is() {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let refused = delivery_error(KafkaError::MessageProduction(Code::MessageSizeTooLarge));
        assert!(matches!(refused, Error::Internal(_)), "{refused:?}");
        for later in [
            Code::BrokerTransportFailure,
            Code::MessageTimedOut,
            Code::TopicAuthorizationFailed,
        ] {
            let e = delivery_error(KafkaError::MessageProduction(later));
            assert!(matches!(e, Error::Unavailable(_)), "{later:?}: {e:?}");
        }
    }
    use rdkafka::message::Headers;

    fn event() -> RouteEvent {
        serde_json::from_value(serde_json::json!({
            "schema": 1, "event_id": "6f1c2d9e-0000-4000-8000-000000000001", "type": "route.deleted",
            "tenant": "acme", "service": "checkout", "env": "prod", "version": "2.3.1", "revision": 8,
            "occurred_at": "2026-11-28T12:00:00.000Z", "actor": "user-123",
            "correlation_id": "req-5f0c9a1b2c3d4e5f", "route": null
        }))
        .unwrap()
    }

    #[test]
    fn a_record_is_keyed_by_tenant_service_and_env_and_carries_the_correlation_id() {
        let e = event();
        let r = record(&e).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"acme/checkout/prod"[..]));
        assert_eq!(serde_json::from_slice::<RouteEvent>(&r.value).unwrap(), e);
        let h = r.headers.get(0);
        assert_eq!(
            (h.key, h.value),
            (CORRELATION_HEADER, Some(&b"req-5f0c9a1b2c3d4e5f"[..]))
        );
        assert_eq!(r.headers.count(), 1);
    }

    #[tokio::test]
    async fn publishing_nothing_touches_no_broker() {
        let p = KafkaPublisher::new(&KafkaCluster::plaintext("127.0.0.1:1"), "t").unwrap();
        p.publish(&[]).await.unwrap();
    }
}
