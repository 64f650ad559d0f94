//! A write's whole duration is bounded: however many rounds it loses and however slow
//! each backend call is, it answers by the write deadline (503 `unavailable`), so the
//! function never runs into its Lambda timeout.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::cursor::CursorKey;
use tm_core::domain::names::{RouteKey, ServiceKey, VersionName};
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::ports::{
    Commit, Consistency, EventPublisher, ListQuery, RouteReader, RouteWriter, StoredRoute,
};
use tm_core::services::relay::Relay;
use tm_core::services::write::{Actor, AfterCommit, Preconditions, WriteService};
use tm_core::{Error, Result};

/// A store whose reads and commits are slow, and whose commits always lose the race.
struct SlowContended {
    read: Duration,
    commit: Duration,
}

#[async_trait]
impl RouteReader for SlowContended {
    async fn get(&self, _: &RouteKey, _: Consistency) -> Result<Option<StoredRoute>> {
        tokio::time::sleep(self.read).await;
        Ok(None)
    }
    async fn versions(
        &self,
        _: &ServiceKey,
        _: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl RouteWriter for SlowContended {
    async fn commit(&self, _: &Commit) -> Result<String> {
        tokio::time::sleep(self.commit).await;
        Err(Error::Conflict)
    }
    async fn list(&self, _: &ListQuery) -> Result<Vec<Route>> {
        Ok(Vec::new())
    }
}

struct NoPublisher;

#[async_trait]
impl EventPublisher for NoPublisher {
    async fn publish(&self, _: &[tm_core::domain::event::RouteEvent]) -> Result<()> {
        Err(Error::Unavailable("not in this test".into()))
    }
}

#[tokio::test]
async fn a_write_whose_rounds_are_slow_answers_503_by_its_deadline() {
    // GIVEN a store where each round takes 120 ms and is always lost, a retry budget of
    // 200 ms (so a round may start at 199 ms) and a whole-write deadline of 250 ms
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let slow = Arc::new(SlowContended {
        read: Duration::from_millis(40),
        commit: Duration::from_millis(80),
    });
    let service = WriteService::new(
        slow.clone(),
        slow,
        embedded.clone(),
        Arc::new(MemoryCache::new()),
        AfterCommit::Wake(Arc::new(Relay::new(embedded, Arc::new(NoPublisher)))),
        CursorKey::new(b"k"),
    )
    .with_write_budget(Duration::from_millis(200))
    .with_write_deadline(Duration::from_millis(250));
    let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
    let spec = RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a"}]}"#).unwrap();
    let actor = Actor {
        sub: "u".into(),
        correlation_id: "c".into(),
    };
    // WHEN a PUT runs
    let started = Instant::now();
    let outcome = service
        .put(&key, spec, Preconditions::default(), &actor)
        .await;
    let took = started.elapsed();
    // THEN it answers 503 by the deadline, not after its last round (which the budget
    // alone would let run to about 320 ms)
    assert!(matches!(outcome, Err(Error::Unavailable(_))), "{outcome:?}");
    assert!(took < Duration::from_millis(290), "took {took:?}");
}

#[test]
fn the_default_write_deadline_leaves_room_under_the_smallest_write_timeout() {
    // The template's WriteTimeout is at least 10 s (checked in tests/suite/template_deploy.rs).
    let deadline = tm_core::services::write::WRITE_DEADLINE;
    assert!(deadline <= Duration::from_secs(9), "{deadline:?}");
    assert!(deadline > tm_core::services::write::WRITE_BUDGET);
}
