//! Handler tests: an MSK event in the shape AWS documents (base64 keys and values under
//! `topic-partition` keys) through the event-consumer handler.

use async_trait::async_trait;
use aws_lambda_events::event::kafka::KafkaEvent;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tm_core::adapters::file_dead_letters::FileDeadLetters;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::domain::names::{RouteKey, ServiceKey, VersionName};
use tm_core::ports::{CachedRoute, SharedCache};
use tm_core::services::consume::Consumer;
use tm_core::{Error, Result};
use tm_event_consumer::ConsumerHandler;

const BATCH: &str = include_str!("fixtures/msk-batch.json");

fn batch() -> KafkaEvent {
    serde_json::from_str(BATCH).expect("a valid MSK event")
}

fn key(v: &str) -> RouteKey {
    RouteKey::parse("acme", "checkout", "prod", v).unwrap()
}

#[tokio::test]
async fn a_batch_applies_newer_revisions_and_dead_letters_poison_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(MemoryCache::new());
    let dlq = dir.path().join("dlq.jsonl");
    let h = ConsumerHandler::new(
        Consumer::new(cache.clone()),
        Arc::new(FileDeadLetters::new(dlq.clone())),
    );
    let (resp, stats) = h.handle(batch()).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(
        stats.applied, 3,
        "revisions 2 and 4 of 2.3.1, and the delete of 1.0.0"
    );
    assert_eq!(
        stats.skipped, 1,
        "revision 1 arrived after 2 and changed nothing"
    );
    assert_eq!(
        stats.dead_lettered, 2,
        "bad JSON and a key that does not match its event"
    );
    assert_eq!(cache.get(&key("2.3.1")).await.unwrap().unwrap().revision, 4);
    let deleted = cache.get(&key("1.0.0")).await.unwrap().unwrap();
    assert_eq!((deleted.revision, deleted.route.is_none()), (5, true));
    let letters = std::fs::read_to_string(&dlq).unwrap();
    assert_eq!(letters.lines().count(), 2);
    assert!(letters.contains("\"offset\":11") && letters.contains("not a route event"));
    assert!(letters.contains("\"offset\":13") && letters.contains("record key does not match"));

    let (again, stats) = h.handle(batch()).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(stats.applied, 0, "a redelivered batch changes nothing");
}

struct DownCache;

#[async_trait]
impl SharedCache for DownCache {
    async fn get(&self, _: &RouteKey) -> Result<Option<CachedRoute>> {
        Err(Error::Unavailable("down".into()))
    }
    async fn versions(&self, _: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        Err(Error::Unavailable("down".into()))
    }
    async fn apply(&self, _: &RouteKey, _: &CachedRoute) -> Result<bool> {
        Err(Error::Unavailable("down".into()))
    }
    async fn fill(&self, _: &ServiceKey, _: &[(VersionName, CachedRoute)]) -> Result<()> {
        Err(Error::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn a_cache_outage_reports_the_first_record_of_each_partition_for_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let h = ConsumerHandler::new(
        Consumer::new(Arc::new(DownCache)),
        Arc::new(FileDeadLetters::new(dir.path().join("d"))),
    );
    let (resp, stats) = h.handle(batch()).await;
    assert_eq!(stats.failed_partitions, 2);
    let json = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": "route-events-0", "offset": 10}},
            {"itemIdentifier": {"partition": "route-events-1", "offset": 7}}
        ]})
    );
}

/// A route event like the fixture's first one, for `service` at `revision`.
fn event_record(partition: i64, offset: i64, service: &str, revision: u64) -> serde_json::Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let first = &batch().records["route-events-0"][0];
    let raw = b64.decode(first.value.as_ref().unwrap()).unwrap();
    let mut ev: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    ev["event_id"] = format!("e-{service}-{revision}").into();
    ev["service"] = service.into();
    ev["revision"] = revision.into();
    ev["route"]["service"] = service.into();
    ev["route"]["revision"] = revision.into();
    serde_json::json!({
        "topic": "route-events", "partition": partition, "offset": offset,
        "timestamp": 1795867200000_i64, "timestampType": "CREATE_TIME",
        "key": b64.encode(format!("acme/{service}/prod")),
        "value": b64.encode(serde_json::to_vec(&ev).unwrap()),
        "headers": []
    })
}

fn batch_of(records: Vec<serde_json::Value>) -> KafkaEvent {
    serde_json::from_value(serde_json::json!({
        "eventSource": "aws:kafka",
        "records": {"route-events-0": records}
    }))
    .unwrap()
}

/// A cache that, while `refusing`, fails one (service, revision) and works for the rest.
struct RefusesOne {
    inner: MemoryCache,
    service: &'static str,
    revision: u64,
    refusing: AtomicBool,
}

#[async_trait]
impl SharedCache for RefusesOne {
    async fn get(&self, k: &RouteKey) -> Result<Option<CachedRoute>> {
        self.inner.get(k).await
    }
    async fn versions(&self, s: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        self.inner.versions(s).await
    }
    async fn apply(&self, k: &RouteKey, e: &CachedRoute) -> Result<bool> {
        if self.refusing.load(Ordering::SeqCst)
            && k.svc.service.as_str() == self.service
            && e.revision == self.revision
        {
            return Err(Error::Unavailable("refused".into()));
        }
        self.inner.apply(k, e).await
    }
    async fn fill(&self, s: &ServiceKey, r: &[(VersionName, CachedRoute)]) -> Result<()> {
        self.inner.fill(s, r).await
    }
}

#[tokio::test]
async fn a_failure_stops_only_its_own_key_and_redelivery_completes_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let records = vec![
        event_record(0, 1, "checkout", 1),
        event_record(0, 2, "billing", 1),
        event_record(0, 3, "billing", 2),
        event_record(0, 4, "checkout", 2),
        event_record(0, 5, "billing", 3),
        event_record(0, 6, "checkout", 3),
    ];
    let flaky = Arc::new(RefusesOne {
        inner: MemoryCache::new(),
        service: "billing",
        revision: 2,
        refusing: AtomicBool::new(true),
    });
    let h = ConsumerHandler::new(
        Consumer::new(flaky.clone()),
        Arc::new(FileDeadLetters::new(dir.path().join("d"))),
    );
    let (resp, stats) = h.handle(batch_of(records.clone())).await;
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": {"partition": "route-events-0", "offset": 3}}]})
    );
    assert_eq!((stats.applied, stats.failed_partitions), (4, 1));
    let billing = RouteKey::parse("acme", "billing", "prod", "2.3.1").unwrap();
    let checkout = RouteKey::parse("acme", "checkout", "prod", "2.3.1").unwrap();
    let rev = |c: Option<CachedRoute>| c.unwrap().revision;
    assert_eq!(
        rev(flaky.get(&checkout).await.unwrap()),
        3,
        "other keys flow"
    );
    assert_eq!(
        rev(flaky.get(&billing).await.unwrap()),
        1,
        "the failed key stops: revision 3 is not applied before 2"
    );

    // The trigger redelivers the partition from offset 3, now to a healthy cache.
    flaky.refusing.store(false, Ordering::SeqCst);
    let (resp, stats) = h.handle(batch_of(records[2..].to_vec())).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!((stats.applied, stats.skipped), (2, 2));
    assert_eq!(rev(flaky.get(&billing).await.unwrap()), 3);
}
