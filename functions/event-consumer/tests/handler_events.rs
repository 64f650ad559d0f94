//! Handler tests: an MSK event in the shape AWS documents (base64 keys and values under
//! `topic-partition` keys) through the event-consumer handler.

use async_trait::async_trait;
use aws_lambda_events::event::kafka::KafkaEvent;
use std::sync::Arc;
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
            {"itemIdentifier": {"partition": 0, "offset": 10}},
            {"itemIdentifier": {"partition": 1, "offset": 7}}
        ]})
    );
}
