//! Audit pages under a rare filter: each request examines a bounded number of entries
//! and hands back a cursor that continues where the scan stopped, so a filter that
//! matches nothing cannot make one request read a tenant's whole log.

use std::sync::Arc;
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::cursor::CursorKey;
use tm_core::domain::event::ChangeType;
use tm_core::domain::names::{RouteKey, TenantName};
use tm_core::domain::route::RouteSpec;
use tm_core::ports::EventPublisher;
use tm_core::services::relay::Relay;
use tm_core::services::write::{Actor, AfterCommit, AuditFilter, Preconditions, WriteService};

struct NoPublisher;

#[async_trait::async_trait]
impl EventPublisher for NoPublisher {
    async fn publish(&self, _: &[tm_core::domain::event::RouteEvent]) -> tm_core::Result<()> {
        Err(tm_core::Error::Unavailable("not in this test".into()))
    }
}

#[tokio::test]
async fn a_rare_audit_filter_walks_the_log_in_bounded_steps_and_finds_every_match() {
    // GIVEN a tenant log of one create and 24 updates, and a scan budget of 10 entries
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let relay = Arc::new(Relay::new(store.clone(), Arc::new(NoPublisher)));
    let service = WriteService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(MemoryCache::new()),
        AfterCommit::Wake(relay),
        CursorKey::new(b"k"),
    )
    .with_audit_scan_budget(10);
    let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
    let actor = Actor {
        sub: "u".into(),
        correlation_id: "c".into(),
    };
    for _ in 0..25 {
        let spec =
            RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a"}]}"#).unwrap();
        service
            .put(&key, spec, Preconditions::default(), &actor)
            .await
            .unwrap();
    }
    let tenant = TenantName::parse("acme").unwrap();
    let creates = || AuditFilter {
        kind: Some(ChangeType::Created),
        ..AuditFilter::default()
    };

    // WHEN the client pages through `type=route.created` with limit 5
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let page = service
            .audit(&tenant, creates(), 5, cursor.as_deref())
            .await
            .unwrap();
        pages.push(page.items.iter().map(|e| e.revision).collect::<Vec<_>>());
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages.len() < 10, "the walk ends");
    }

    // THEN the first pages are empty but carry a cursor, and the create is found last
    assert_eq!(pages, vec![vec![], vec![], vec![1]]);
    // AND an unfiltered page is still full (the budget never cuts below a page)
    let all = service
        .audit(&tenant, AuditFilter::default(), 20, None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 20);
    assert!(all.next_cursor.is_some());
}
