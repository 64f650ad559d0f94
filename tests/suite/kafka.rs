//! The Kafka adapter and tm-local's Kafka trigger against a real Kafka-protocol broker:
//! nisshi on 127.0.0.1:9092 (`scripts/start-services.sh kafka`). Every test creates its own
//! topics (random names) with `ensure_topics`, and uses its own consumer groups.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tm_core::adapters::kafka::dead_letters::{
    FAILED_AT_HEADER, REASON_HEADER, SOURCE_OFFSET_HEADER, SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
};
use tm_core::adapters::kafka::publisher::CORRELATION_HEADER;
use tm_core::adapters::kafka::{
    ConsumedRecord, GroupConsumer, KafkaCluster, KafkaDeadLetters, KafkaPublisher, ensure_topics,
};
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::domain::event::RouteEvent;
use tm_core::domain::names::{RouteKey, ServiceKey, VersionName};
use tm_core::ports::{CachedRoute, DeadLetter, DeadLetters, EventPublisher, Probe, SharedCache};
use tm_core::services::consume::Consumer;
use tm_event_consumer::ConsumerHandler;
use tm_local::kafka_trigger::KafkaTrigger;
use tokio::sync::watch;

const BROKERS: &str = "127.0.0.1:9092";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn cluster() -> KafkaCluster {
    KafkaCluster::plaintext(BROKERS)
}

/// A name no other test (or run) uses.
fn unique(what: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "tmtest-{what}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fresh event and DLQ topics with `partitions` partitions each.
async fn topics(partitions: i32) -> (String, String) {
    let topic = unique("events");
    let dlq = format!("{topic}-dlq");
    ensure_topics(&cluster(), &topic, &dlq, partitions)
        .await
        .expect("nisshi on 127.0.0.1:9092 (scripts/start-services.sh kafka)");
    (topic, dlq)
}

/// A valid event: `service` version 1.0.0 of tenant `acme`, env `prod`, at `revision`.
fn event(service: &str, revision: u64) -> RouteEvent {
    let at = "2026-11-28T12:00:00.000Z";
    serde_json::from_value(serde_json::json!({
        "schema": 1, "event_id": format!("00000000-0000-4000-8000-{revision:012}"), "type": "route.updated",
        "tenant": "acme", "service": service, "env": "prod", "version": "1.0.0", "revision": revision,
        "occurred_at": at, "actor": "user-1", "correlation_id": format!("req-{service}-{revision}"),
        "route": {
            "tenant": "acme", "service": service, "env": "prod", "version": "1.0.0",
            "endpoints": [{"id": "blue", "url": "https://blue.example.internal", "weight": 1, "priority": 0, "status": "active"}],
            "ttl_seconds": 30, "labels": {}, "active": true, "revision": revision,
            "updated_at": at, "updated_by": "user-1"
        }
    }))
    .unwrap()
}

fn route_key(service: &str) -> RouteKey {
    RouteKey::parse("acme", service, "prod", "1.0.0").unwrap()
}

/// Reads `count` records of `topic` from the start with a new group, or fails after 20 s.
async fn read(topic: &str, count: usize) -> Vec<ConsumedRecord> {
    let consumer = GroupConsumer::subscribe(&cluster(), &unique("reader"), topic).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(e)) => eprintln!("poll error (retrying): {e}"),
            Err(_) => panic!(
                "only {} of {count} records arrived on {topic} within 20 s",
                out.len()
            ),
        }
    }
    consumer.close().await;
    out
}

/// Waits until `check` holds, or fails after `secs` seconds with `what`.
async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cached_revision(cache: &dyn SharedCache, service: &str) -> Option<u64> {
    cache
        .get(&route_key(service))
        .await
        .unwrap()
        .map(|c| c.revision)
}

fn header<'a>(r: &'a ConsumedRecord, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition the Java client's default partitioner picks for `key`.
fn java_partition(key: &str, partitions: u32) -> i32 {
    ((murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions) as i32
}

/// A cache that records every apply and can refuse applies for one service, as a cache
/// that is down would.
struct WatchedCache {
    inner: MemoryCache,
    applied: Mutex<Vec<(String, u64)>>,
    refuse: Mutex<Option<String>>,
    refused: AtomicU64,
}

impl WatchedCache {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryCache::new(),
            applied: Mutex::new(Vec::new()),
            refuse: Mutex::new(None),
            refused: AtomicU64::new(0),
        })
    }

    fn applied(&self) -> Vec<(String, u64)> {
        self.applied.lock().unwrap().clone()
    }
}

#[async_trait]
impl SharedCache for WatchedCache {
    async fn get(&self, key: &RouteKey) -> tm_core::Result<Option<CachedRoute>> {
        self.inner.get(key).await
    }

    async fn versions(&self, svc: &ServiceKey) -> tm_core::Result<Option<Vec<CachedRoute>>> {
        self.inner.versions(svc).await
    }

    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> tm_core::Result<bool> {
        if self.refuse.lock().unwrap().as_deref() == Some(key.svc.service.as_str()) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(tm_core::Error::Unavailable(
                "the test refuses this service".into(),
            ));
        }
        self.applied
            .lock()
            .unwrap()
            .push((key.svc.service.to_string(), entry.revision));
        self.inner.apply(key, entry).await
    }

    async fn fill(
        &self,
        svc: &ServiceKey,
        entries: &[(VersionName, CachedRoute)],
    ) -> tm_core::Result<()> {
        self.inner.fill(svc, entries).await
    }
}

/// A trigger on `topic` with group `group`, applying to `cache` and dead-lettering to
/// `dlq`, running in the background until the returned sender says stop.
fn start_trigger(
    topic: &str,
    dlq: &str,
    group: &str,
    cache: Arc<dyn SharedCache>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let dead_letters = Arc::new(KafkaDeadLetters::new(&cluster(), dlq).unwrap());
    let handler = Arc::new(ConsumerHandler::new(Consumer::new(cache), dead_letters));
    let trigger = KafkaTrigger::new(&cluster(), group, topic, handler)
        .unwrap()
        .with_retry_backoff(Duration::from_millis(200));
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(trigger.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (stop, task)
}

async fn stop_trigger(stop: watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the trigger stops within 15 s")
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn the_test_murmur2_matches_the_java_clients_reference_values() {
    // From Kafka's UtilsTest.testMurmur2.
    for (input, want) in [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("abc", 479_470_107),
    ] {
        assert_eq!(murmur2(input.as_bytes()) as i32, want, "{input}");
    }
    assert_eq!(
        murmur2(b"a-little-bit-long-string") as i32,
        -985_981_536,
        "a four-byte multiple plus a remainder"
    );
}

#[tokio::test]
async fn ensure_topics_creates_what_is_missing_and_leaves_existing_topics_alone() {
    let topic = unique("ensure");
    let dlq = format!("{topic}-dlq");
    let first = ensure_topics(&cluster(), &topic, &dlq, 3).await.unwrap();
    assert_eq!(
        (first.created, first.existing.len()),
        (vec![topic.clone(), dlq.clone()], 0)
    );
    let again = ensure_topics(&cluster(), &topic, &dlq, 3).await.unwrap();
    assert_eq!(
        (again.created.len(), again.existing),
        (0, vec![topic.clone(), dlq])
    );
    let publisher = KafkaPublisher::new(&cluster(), topic).unwrap();
    publisher
        .ping()
        .await
        .expect("the probe sees the created topic");
}

#[tokio::test]
async fn the_publisher_probe_fails_for_a_topic_that_does_not_exist() {
    let publisher = KafkaPublisher::new(&cluster(), unique("missing")).unwrap();
    assert!(publisher.ping().await.is_err());
}

#[tokio::test]
async fn published_events_arrive_keyed_and_in_order_per_key_on_the_java_clients_partition() {
    let partitions = 4;
    let (topic, _) = topics(partitions).await;
    let publisher = KafkaPublisher::new(&cluster(), &topic).unwrap();
    let services = ["checkout", "search", "billing", "auth", "cart"];
    // Interleaved across keys, in two publish calls.
    let events: Vec<RouteEvent> = (1..=6)
        .flat_map(|rev| services.map(|s| event(s, rev)))
        .collect();
    publisher.publish(&events[..15]).await.unwrap();
    publisher.publish(&events[15..]).await.unwrap();

    let records = read(&topic, events.len()).await;
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &records {
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        let e: RouteEvent = serde_json::from_slice(r.value.as_ref().unwrap()).unwrap();
        assert_eq!(
            key,
            e.key().svc.event_key(),
            "key is {{tenant}}/{{service}}/{{env}}"
        );
        assert_eq!(
            header(r, CORRELATION_HEADER),
            Some(e.correlation_id.as_str())
        );
        assert_eq!(
            r.partition,
            java_partition(&key, partitions as u32),
            "partition of {key}"
        );
        assert_eq!(r.topic, topic);
        per_key.entry(key).or_default().push(e.revision);
    }
    // Records of one partition arrive in offset order, so per key in revision order.
    for s in services {
        assert_eq!(
            per_key[&format!("acme/{s}/prod")],
            vec![1, 2, 3, 4, 5, 6],
            "{s}"
        );
    }
}

#[tokio::test]
async fn a_dead_letter_lands_in_the_dlq_with_the_original_bytes_its_reason_and_its_source() {
    let (topic, dlq) = topics(2).await;
    let letters = KafkaDeadLetters::new(&cluster(), &dlq).unwrap();
    let letter = DeadLetter {
        topic: topic.clone(),
        partition: 1,
        offset: 17,
        key: Some("YWNtZS9jaGVja291dC9wcm9k".into()), // acme/checkout/prod
        value: Some("eyJub3QiOiJhbiBldmVudCJ9".into()), // {"not":"an event"}
        reason: "value is not a route event: missing field `schema`".into(),
    };
    letters.send(&letter).await.unwrap();

    let got = read(&dlq, 1).await.remove(0);
    assert_eq!(got.key.as_deref(), Some(&b"acme/checkout/prod"[..]));
    assert_eq!(got.value.as_deref(), Some(&br#"{"not":"an event"}"#[..]));
    assert_eq!(header(&got, REASON_HEADER), Some(letter.reason.as_str()));
    assert_eq!(header(&got, SOURCE_TOPIC_HEADER), Some(topic.as_str()));
    assert_eq!(header(&got, SOURCE_PARTITION_HEADER), Some("1"));
    assert_eq!(header(&got, SOURCE_OFFSET_HEADER), Some("17"));
    assert!(header(&got, FAILED_AT_HEADER).is_some_and(|t| t.ends_with('Z')));
}

#[tokio::test]
async fn publishing_to_a_broker_that_is_down_fails_within_the_message_timeout() {
    let down = KafkaCluster::plaintext("127.0.0.1:1").with_message_timeout(Duration::from_secs(1));
    let publisher = KafkaPublisher::new(&down, "route-events").unwrap();
    let started = Instant::now();
    let result = publisher.publish(&[event("checkout", 1)]).await;
    let took = started.elapsed();
    assert!(result.is_err(), "a publish to a dead broker must fail");
    // The message timeout, plus librdkafka's once-a-second expiry scan, plus slack.
    assert!(took < Duration::from_secs(4), "failed only after {took:?}");
}

#[tokio::test]
async fn the_trigger_applies_events_and_dead_letters_a_poison_record_while_later_records_still_apply()
 {
    let (topic, dlq) = topics(3).await;
    let cache = WatchedCache::new();
    let (stop, task) = start_trigger(&topic, &dlq, &unique("group"), cache.clone());
    let publisher = KafkaPublisher::new(&cluster(), &topic).unwrap();

    publisher
        .publish(&[event("checkout", 1), event("search", 1)])
        .await
        .unwrap();
    // The real publisher, a record no consumer can apply: a schema this build does not know.
    let mut poison = event("checkout", 2);
    poison.schema = 99;
    publisher.publish(&[poison]).await.unwrap();
    publisher
        .publish(&[event("checkout", 3), event("search", 2)])
        .await
        .unwrap();

    eventually(
        20,
        "checkout at revision 3 and search at 2 in the cache",
        || async {
            cached_revision(cache.as_ref(), "checkout").await == Some(3)
                && cached_revision(cache.as_ref(), "search").await == Some(2)
        },
    )
    .await;
    let letter = read(&dlq, 1).await.remove(0);
    assert_eq!(header(&letter, REASON_HEADER), Some("unknown schema 99"));
    assert_eq!(header(&letter, SOURCE_TOPIC_HEADER), Some(topic.as_str()));
    assert_eq!(letter.key.as_deref(), Some(&b"acme/checkout/prod"[..]));
    let original: serde_json::Value =
        serde_json::from_slice(letter.value.as_ref().unwrap()).unwrap();
    assert_eq!(
        (original["schema"].as_u64(), original["revision"].as_u64()),
        (Some(99), Some(2))
    );
    // Revision 2 never reached the cache.
    assert!(!cache.applied().contains(&("checkout".into(), 2)));
    stop_trigger(stop, task).await;
}

#[tokio::test]
async fn a_restarted_trigger_resumes_after_its_last_commit_without_reapplying_or_losing_events() {
    let (topic, dlq) = topics(3).await;
    let group = unique("group");
    let publisher = KafkaPublisher::new(&cluster(), &topic).unwrap();
    let services = ["checkout", "search", "billing"];

    let first = WatchedCache::new();
    let (stop, task) = start_trigger(&topic, &dlq, &group, first.clone());
    publisher
        .publish(&services.map(|s| event(s, 1)))
        .await
        .unwrap();
    publisher
        .publish(&services.map(|s| event(s, 2)))
        .await
        .unwrap();
    eventually(20, "revision 2 of every service applied", || async {
        first.applied().len() == 6
    })
    .await;
    stop_trigger(stop, task).await;

    // Published while no trigger runs: must not be lost.
    publisher
        .publish(&services.map(|s| event(s, 3)))
        .await
        .unwrap();

    // A fresh cache sees exactly what the group has not committed yet.
    let second = WatchedCache::new();
    let (stop, task) = start_trigger(&topic, &dlq, &group, second.clone());
    eventually(
        20,
        "revision 3 of every service applied after the restart",
        || async {
            for s in services {
                if cached_revision(second.as_ref(), s).await != Some(3) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    publisher.publish(&[event("checkout", 4)]).await.unwrap();
    eventually(20, "a later event applied too", || async {
        cached_revision(second.as_ref(), "checkout").await == Some(4)
    })
    .await;
    stop_trigger(stop, task).await;

    let mut applied = second.applied();
    applied.sort();
    let mut expected: Vec<(String, u64)> = services.iter().map(|s| (s.to_string(), 3)).collect();
    expected.push(("checkout".into(), 4));
    expected.sort();
    assert_eq!(
        applied, expected,
        "only the events after the last commit, each once"
    );
}

#[tokio::test]
async fn a_partition_the_cache_refused_is_redelivered_after_a_backoff_while_other_partitions_go_on()
{
    let partitions = 4;
    let (topic, dlq) = topics(partitions).await;
    let stuck = "checkout";
    let stuck_partition = java_partition(&format!("acme/{stuck}/prod"), partitions as u32);
    let flowing = ["search", "billing", "auth", "cart", "orders", "profile"]
        .into_iter()
        .find(|s| java_partition(&format!("acme/{s}/prod"), partitions as u32) != stuck_partition)
        .expect("a service on another partition");

    let cache = WatchedCache::new();
    *cache.refuse.lock().unwrap() = Some(stuck.into());
    let (stop, task) = start_trigger(&topic, &dlq, &unique("group"), cache.clone());
    let publisher = KafkaPublisher::new(&cluster(), &topic).unwrap();
    publisher
        .publish(&[event(stuck, 1), event(stuck, 2), event(flowing, 1)])
        .await
        .unwrap();

    eventually(
        20,
        "the other partition applied while the refused one retries",
        || async {
            cached_revision(cache.as_ref(), flowing).await == Some(1)
                && cache.refused.load(Ordering::SeqCst) >= 2
        },
    )
    .await;
    assert_eq!(cached_revision(cache.as_ref(), stuck).await, None);
    publisher.publish(&[event(flowing, 2)]).await.unwrap();
    eventually(20, "the other partition keeps flowing", || async {
        cached_revision(cache.as_ref(), flowing).await == Some(2)
    })
    .await;

    *cache.refuse.lock().unwrap() = None;
    eventually(
        20,
        "the refused records redelivered and applied in order",
        || async { cached_revision(cache.as_ref(), stuck).await == Some(2) },
    )
    .await;
    let stuck_applies: Vec<u64> = cache
        .applied()
        .into_iter()
        .filter(|(s, _)| s == stuck)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        stuck_applies,
        vec![1, 2],
        "redelivered from the failed record, in offset order"
    );
    stop_trigger(stop, task).await;
}

#[tokio::test]
async fn a_trigger_without_its_topic_keeps_retrying_and_stops_when_asked() {
    let cache = WatchedCache::new();
    let topic = unique("absent");
    let (stop, task) = start_trigger(&topic, &format!("{topic}-dlq"), &unique("group"), cache);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished());
    stop_trigger(stop, task).await;
}
