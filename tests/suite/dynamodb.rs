//! The DynamoDB store against a real DynamoDB Local on 127.0.0.1:8000
//! (`scripts/start-services.sh dynamodb`). Every test makes its own randomly named table
//! and drops it at the end; the client is built here, never from the environment.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tm_core::Error;
use tm_core::adapters::dynamodb::aws_sdk_dynamodb::{
    self, Client,
    config::{BehaviorVersion, Credentials, Region, retry::RetryConfig},
    types::AttributeValue,
};
use tm_core::adapters::dynamodb::{
    DynamoStore, IAM_ACTIONS_PROBER, IAM_ACTIONS_READ, IAM_ACTIONS_RELAY, IAM_ACTIONS_WRITE,
};
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::cursor::CursorKey;
use tm_core::domain::event::{ChangeType, RouteEvent, SCHEMA};
use tm_core::domain::health::{EndpointHealth, RouteHealth};
use tm_core::domain::health_check::HealthCheck;
use tm_core::domain::names::{EnvName, RouteKey, ServiceKey, ServiceName, TenantName};
use tm_core::domain::route::{HealthStatus, Route, RouteSpec};
use tm_core::domain::timefmt::Timestamp;
use tm_core::ports::{
    AuditQuery, Commit, Consistency, EventPublisher, HealthStore, HistoryReader, ListQuery, Outbox,
    Probe, RouteReader, RouteWriter, StoredRoute,
};
use tm_core::services::relay::Relay;
use tm_core::services::write::{Actor, AfterCommit, AuditFilter, Preconditions, WriteService};

const ENDPOINT: &str = "http://127.0.0.1:8000";

fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tm-tests"))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .build();
    Client::from_conf(conf)
}

fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{prefix}-{:016x}", h.finish())
}

/// A fresh table and a store over it.
struct Table {
    store: DynamoStore,
    client: Client,
    name: String,
}

impl Table {
    async fn new() -> Table {
        let name = unique("tm-test");
        let client = client(ENDPOINT);
        let store = DynamoStore::new(client.clone(), name.clone());
        assert!(
            store
                .create_table_if_missing()
                .await
                .expect("create the table (is DynamoDB Local running?)")
        );
        Table {
            store,
            client,
            name,
        }
    }

    async fn drop_table(self) {
        let _ = self
            .client
            .delete_table()
            .table_name(&self.name)
            .send()
            .await;
    }
}

fn key(t: &str, s: &str, e: &str, v: &str) -> RouteKey {
    RouteKey::parse(t, s, e, v).unwrap()
}

fn route(key: &RouteKey, revision: u64, at: Timestamp) -> Route {
    let spec =
        RouteSpec::from_json(br#"{"endpoints":[{"id":"blue","url":"https://blue.example:8443"}]}"#)
            .unwrap();
    Route::from_spec(key, spec, revision, at, "tester")
}

fn event_at(key: &RouteKey, kind: ChangeType, revision: u64, at: Timestamp) -> RouteEvent {
    RouteEvent {
        schema: SCHEMA,
        event_id: unique("event"),
        kind,
        tenant: key.svc.tenant.clone(),
        service: key.svc.service.clone(),
        env: key.svc.env.clone(),
        version: key.version.clone(),
        revision,
        occurred_at: at,
        actor: "tester".into(),
        correlation_id: format!("corr-{revision}"),
        route: (kind != ChangeType::Deleted).then(|| route(key, revision, at)),
        health: None,
    }
}

/// Commits `kind` at `revision` over `expected`, stamped now.
async fn write(
    store: &DynamoStore,
    key: &RouteKey,
    kind: ChangeType,
    expected: Option<u64>,
    revision: u64,
) -> tm_core::Result<String> {
    let commit = Commit {
        expected_revision: expected,
        event: event_at(key, kind, revision, Timestamp::now()),
    };
    store.commit(&commit).await
}

/// Creates `key` at revision 1.
async fn create(store: &DynamoStore, key: &RouteKey) -> String {
    write(store, key, ChangeType::Created, None, 1)
        .await
        .unwrap()
}

fn list_query(
    tenant: &str,
    service: Option<&str>,
    env: Option<&str>,
    after: Option<&RouteKey>,
    limit: usize,
) -> ListQuery {
    ListQuery {
        tenant: TenantName::parse(tenant).unwrap(),
        service: service.map(|s| ServiceName::parse(s).unwrap()),
        env: env.map(|e| EnvName::parse(e).unwrap()),
        after: after.cloned(),
        limit,
    }
}

fn keys_of(routes: &[Route]) -> Vec<RouteKey> {
    routes.iter().map(Route::key).collect()
}

fn audit_query(tenant: &str, limit: usize) -> AuditQuery {
    AuditQuery {
        tenant: TenantName::parse(tenant).unwrap(),
        kind: None,
        since: None,
        until: None,
        before_seq: None,
        limit,
        max_scan: 10_000,
    }
}

async fn history_revisions(
    store: &DynamoStore,
    key: &RouteKey,
    before: Option<u64>,
    limit: usize,
) -> Vec<u64> {
    store
        .history(key, before, limit)
        .await
        .unwrap()
        .iter()
        .map(|h| h.revision)
        .collect()
}

#[tokio::test]
async fn a_route_is_created_only_where_no_key_exists_and_replaced_only_at_the_expected_revision() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "2.3.1");

    create(&t.store, &k).await;
    assert_eq!(
        write(&t.store, &k, ChangeType::Created, None, 1).await,
        Err(Error::Conflict)
    );
    assert_eq!(
        write(&t.store, &k, ChangeType::Updated, Some(5), 6).await,
        Err(Error::Conflict)
    );
    write(&t.store, &k, ChangeType::Updated, Some(1), 2)
        .await
        .unwrap();
    assert_eq!(
        write(&t.store, &k, ChangeType::Updated, Some(1), 2).await,
        Err(Error::Conflict)
    );

    let stored = t.store.get(&k, Consistency::Strong).await.unwrap().unwrap();
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.route.unwrap().revision, 2);
    let absent = key("acme", "checkout", "prod", "9.9.9");
    assert_eq!(
        t.store.get(&absent, Consistency::Strong).await.unwrap(),
        None
    );
    assert_eq!(
        write(&t.store, &absent, ChangeType::Updated, Some(1), 2).await,
        Err(Error::Conflict)
    );
    t.drop_table().await;
}

#[tokio::test]
async fn a_conflicting_commit_writes_no_history_audit_or_outbox_entry() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;

    assert_eq!(
        write(&t.store, &k, ChangeType::Updated, Some(7), 8).await,
        Err(Error::Conflict)
    );
    assert_eq!(
        write(&t.store, &k, ChangeType::Created, None, 1).await,
        Err(Error::Conflict)
    );

    assert_eq!(history_revisions(&t.store, &k, None, 10).await, vec![1]);
    let audit = t.store.audit(&audit_query("acme", 10)).await.unwrap().items;
    assert_eq!(
        audit.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(t.store.pending(10).await.unwrap().len(), 1);

    // The failed commits did not take a sequence number either.
    write(&t.store, &k, ChangeType::Updated, Some(1), 2)
        .await
        .unwrap();
    let audit = t.store.audit(&audit_query("acme", 10)).await.unwrap().items;
    assert_eq!(
        audit
            .iter()
            .map(|(seq, e)| (*seq, e.revision))
            .collect::<Vec<_>>(),
        vec![(2, 2), (1, 1)]
    );
    t.drop_table().await;
}

#[tokio::test]
async fn a_route_created_again_after_a_delete_continues_from_the_tombstones_revision() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;
    write(&t.store, &k, ChangeType::Updated, Some(1), 2)
        .await
        .unwrap();
    write(&t.store, &k, ChangeType::Deleted, Some(2), 3)
        .await
        .unwrap();

    let tombstone = t.store.get(&k, Consistency::Strong).await.unwrap();
    assert_eq!(
        tombstone,
        Some(StoredRoute {
            revision: 3,
            route: None,
            health: None,
        })
    );
    assert_eq!(
        write(&t.store, &k, ChangeType::Created, None, 1).await,
        Err(Error::Conflict)
    );
    write(&t.store, &k, ChangeType::Created, Some(3), 4)
        .await
        .unwrap();

    let stored = t.store.get(&k, Consistency::Strong).await.unwrap().unwrap();
    assert_eq!(
        (stored.revision, stored.route.map(|r| r.revision)),
        (4, Some(4))
    );
    let history = t.store.history(&k, None, 10).await.unwrap();
    let kinds: Vec<_> = history
        .iter()
        .map(|h| (h.revision, h.kind, h.route.is_some()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (4, ChangeType::Created, true),
            (3, ChangeType::Deleted, false),
            (2, ChangeType::Updated, true),
            (1, ChangeType::Created, true),
        ]
    );
    t.drop_table().await;
}

#[tokio::test]
async fn list_orders_routes_by_service_env_and_version_byte_wise() {
    let t = Table::new().await;
    let services = ["a0", "a-b", "a"];
    let envs = ["a0", "a"];
    let versions = ["a_b", "a0", "a.b", "a-b", "a", "A", "1.10.0", "1.9.0"];
    let mut keys = Vec::new();
    for v in versions {
        for e in envs {
            for s in services {
                let k = key("acme", s, e, v);
                create(&t.store, &k).await;
                keys.push(k);
            }
        }
    }
    // Another tenant whose name extends this one's must not leak in.
    create(&t.store, &key("acme-2", "a", "a", "a")).await;

    let mut expected = keys.clone();
    expected.sort_by(|x, y| {
        let tuple = |k: &RouteKey| {
            (
                k.svc.service.to_string(),
                k.svc.env.to_string(),
                k.version.to_string(),
            )
        };
        tuple(x).cmp(&tuple(y))
    });
    assert_eq!(
        expected[..4],
        [
            key("acme", "a", "a", "1.10.0"),
            key("acme", "a", "a", "1.9.0"),
            key("acme", "a", "a", "A"),
            key("acme", "a", "a", "a")
        ]
    );
    let listed = t
        .store
        .list(&list_query("acme", None, None, None, 1000))
        .await
        .unwrap();
    assert_eq!(keys_of(&listed), expected);
    t.drop_table().await;
}

#[tokio::test]
async fn list_filters_by_service_by_service_and_env_and_by_env_alone_and_skips_tombstones() {
    let t = Table::new().await;
    let live = [
        key("acme", "checkout", "prod", "1.0.0"),
        key("acme", "checkout", "prod", "2.0.0"),
        key("acme", "checkout", "prod-eu", "1.0.0"),
        key("acme", "checkout", "staging", "1.0.0"),
        key("acme", "checkout-v2", "prod", "1.0.0"),
        key("acme", "search", "prod", "1.0.0"),
        key("acme", "search", "staging", "3.0.0"),
    ];
    for k in &live {
        create(&t.store, k).await;
    }
    let deleted = key("acme", "checkout", "prod", "0.9.0");
    create(&t.store, &deleted).await;
    write(&t.store, &deleted, ChangeType::Deleted, Some(1), 2)
        .await
        .unwrap();

    let list = |s: Option<&'static str>, e: Option<&'static str>| {
        let store = t.store.clone();
        async move {
            keys_of(
                &store
                    .list(&list_query("acme", s, e, None, 100))
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(list(None, None).await, live.to_vec());
    assert_eq!(list(Some("checkout"), None).await, live[..4].to_vec());
    assert_eq!(
        list(Some("checkout"), Some("prod")).await,
        live[..2].to_vec()
    );
    assert_eq!(
        list(None, Some("prod")).await,
        vec![
            live[0].clone(),
            live[1].clone(),
            live[4].clone(),
            live[5].clone()
        ]
    );
    assert_eq!(list(Some("nothing"), None).await, vec![]);
    assert_eq!(list(None, Some("qa")).await, vec![]);
    t.drop_table().await;
}

#[tokio::test]
async fn list_pages_continue_strictly_after_the_given_key() {
    let t = Table::new().await;
    let mut all = Vec::new();
    for s in ["billing", "checkout"] {
        for e in ["prod", "staging"] {
            for v in ["1", "1.0", "1.0.0", "2"] {
                let k = key("acme", s, e, v);
                create(&t.store, &k).await;
                all.push(k);
            }
        }
    }
    // A tombstone in the middle of a page is skipped and does not shorten the page.
    write(&t.store, &all[5], ChangeType::Deleted, Some(1), 2)
        .await
        .unwrap();
    let live: Vec<RouteKey> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, k)| k.clone())
        .collect();

    for (service, env, want) in [
        (None, None, live.clone()),
        (Some("checkout"), None, live[7..].to_vec()),
        (
            None,
            Some("staging"),
            live.iter()
                .filter(|k| k.svc.env.as_str() == "staging")
                .cloned()
                .collect(),
        ),
    ] {
        let mut after: Option<RouteKey> = None;
        let mut seen = Vec::new();
        loop {
            let page = t
                .store
                .list(&list_query("acme", service, env, after.as_ref(), 3))
                .await
                .unwrap();
            assert!(page.len() <= 3);
            if page.is_empty() {
                break;
            }
            seen.extend(keys_of(&page));
            after = page.last().map(Route::key);
        }
        assert_eq!(seen, want, "service {service:?} env {env:?}");
    }

    // After a key that is not stored (here a tombstone's), the page starts at the next one.
    let page = t
        .store
        .list(&list_query("acme", None, None, Some(&all[5]), 2))
        .await
        .unwrap();
    assert_eq!(keys_of(&page), all[6..8].to_vec());
    // After the last key there is nothing.
    let page = t
        .store
        .list(&list_query("acme", None, None, all.last(), 10))
        .await
        .unwrap();
    assert!(page.is_empty());
    t.drop_table().await;
}

#[tokio::test]
async fn history_comes_newest_first_and_continues_below_a_revision() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    let neighbour = key("acme", "checkout", "prod", "1.0.0-rc");
    create(&t.store, &k).await;
    for rev in 2..=5 {
        write(&t.store, &k, ChangeType::Updated, Some(rev - 1), rev)
            .await
            .unwrap();
    }
    create(&t.store, &neighbour).await;

    assert_eq!(
        history_revisions(&t.store, &k, None, 10).await,
        vec![5, 4, 3, 2, 1]
    );
    assert_eq!(history_revisions(&t.store, &k, None, 2).await, vec![5, 4]);
    assert_eq!(
        history_revisions(&t.store, &k, Some(4), 2).await,
        vec![3, 2]
    );
    assert_eq!(history_revisions(&t.store, &k, Some(2), 10).await, vec![1]);
    assert_eq!(
        history_revisions(&t.store, &k, Some(1), 10).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        history_revisions(&t.store, &neighbour, None, 10).await,
        vec![1]
    );
    let entry = &t.store.history(&k, Some(3), 1).await.unwrap()[0];
    assert_eq!(
        (entry.kind, entry.correlation_id.as_str(), entry.by.as_str()),
        (ChangeType::Updated, "corr-2", "tester")
    );
    t.drop_table().await;
}

#[tokio::test]
async fn audit_comes_newest_first_in_commit_order_and_pages_below_a_sequence_number() {
    let t = Table::new().await;
    let a = key("acme", "checkout", "prod", "1.0.0");
    let b = key("acme", "search", "prod", "1.0.0");
    create(&t.store, &a).await;
    create(&t.store, &b).await;
    write(&t.store, &a, ChangeType::Updated, Some(1), 2)
        .await
        .unwrap();
    write(&t.store, &b, ChangeType::Deleted, Some(1), 2)
        .await
        .unwrap();
    create(&t.store, &key("other", "checkout", "prod", "1.0.0")).await;

    let all = t.store.audit(&audit_query("acme", 10)).await.unwrap().items;
    let got: Vec<_> = all
        .iter()
        .map(|(seq, e)| (*seq, e.service.to_string(), e.revision, e.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (4, "search".to_string(), 2, ChangeType::Deleted),
            (3, "checkout".to_string(), 2, ChangeType::Updated),
            (2, "search".to_string(), 1, ChangeType::Created),
            (1, "checkout".to_string(), 1, ChangeType::Created),
        ]
    );
    let page = t
        .store
        .audit(&AuditQuery {
            before_seq: Some(3),
            limit: 1,
            ..audit_query("acme", 0)
        })
        .await
        .unwrap()
        .items;
    assert_eq!(page.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![2]);
    let page = t
        .store
        .audit(&AuditQuery {
            before_seq: Some(1),
            ..audit_query("acme", 10)
        })
        .await
        .unwrap()
        .items;
    assert!(page.is_empty());
    let other = t
        .store
        .audit(&audit_query("other", 10))
        .await
        .unwrap()
        .items;
    assert_eq!(other.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1]);
    t.drop_table().await;
}

#[tokio::test]
async fn audit_filters_by_type_since_inclusive_and_until_exclusive() {
    let t = Table::new().await;
    let t0 = 1_800_000_000_000;
    let k = key("acme", "checkout", "prod", "1.0.0");
    let kinds = [
        ChangeType::Created,
        ChangeType::Updated,
        ChangeType::Deactivated,
        ChangeType::Activated,
        ChangeType::Deleted,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let rev = i as u64 + 1;
        let commit = Commit {
            expected_revision: (rev > 1).then_some(rev - 1),
            event: event_at(&k, kind, rev, Timestamp::from_millis(t0 + 1000 * i as i64)),
        };
        t.store.commit(&commit).await.unwrap();
    }
    let at = |i: i64| Some(Timestamp::from_millis(t0 + 1000 * i));
    let revisions = |q: AuditQuery| {
        let store = t.store.clone();
        async move {
            store
                .audit(&q)
                .await
                .unwrap()
                .items
                .iter()
                .map(|(_, e)| e.revision)
                .collect::<Vec<_>>()
        }
    };
    let base = audit_query("acme", 10);
    assert_eq!(
        revisions(AuditQuery {
            since: at(1),
            until: at(3),
            ..base.clone()
        })
        .await,
        vec![3, 2]
    );
    assert_eq!(
        revisions(AuditQuery {
            since: at(4),
            ..base.clone()
        })
        .await,
        vec![5]
    );
    assert_eq!(
        revisions(AuditQuery {
            until: at(1),
            ..base.clone()
        })
        .await,
        vec![1]
    );
    assert_eq!(
        revisions(AuditQuery {
            kind: Some(ChangeType::Deleted),
            ..base.clone()
        })
        .await,
        vec![5]
    );
    assert_eq!(
        revisions(AuditQuery {
            kind: Some(ChangeType::Updated),
            since: at(2),
            ..base.clone()
        })
        .await,
        Vec::<u64>::new()
    );
    assert_eq!(
        revisions(AuditQuery {
            since: at(0),
            limit: 2,
            ..base.clone()
        })
        .await,
        vec![5, 4]
    );
    assert_eq!(
        revisions(AuditQuery {
            since: at(0),
            before_seq: Some(4),
            limit: 2,
            ..base
        })
        .await,
        vec![3, 2]
    );
    t.drop_table().await;
}

#[tokio::test]
async fn an_audit_read_examines_at_most_its_scan_budget_and_says_where_it_stopped() {
    // GIVEN 12 updates and then one delete, oldest first
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;
    for rev in 2..=12 {
        write(&t.store, &k, ChangeType::Updated, Some(rev - 1), rev)
            .await
            .unwrap();
    }
    // WHEN a rare filter (deletes) reads with a budget of 5 entries
    let rare = AuditQuery {
        kind: Some(ChangeType::Created),
        max_scan: 5,
        ..audit_query("acme", 10)
    };
    let first = t.store.audit(&rare).await.unwrap();
    // THEN it stops after 5 entries, with nothing found and the position to go on from
    assert!(first.items.is_empty());
    assert_eq!(first.stopped_at, Some(8), "examined 12, 11, 10, 9, 8");
    // AND reading on from there finds the match within the next budgets
    let second = t
        .store
        .audit(&AuditQuery {
            before_seq: first.stopped_at,
            ..rare.clone()
        })
        .await
        .unwrap();
    assert_eq!(second.stopped_at, Some(3));
    let third = t
        .store
        .audit(&AuditQuery {
            before_seq: second.stopped_at,
            ..rare
        })
        .await
        .unwrap();
    assert_eq!(
        third.items.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(third.stopped_at, None, "the end of the log");
    t.drop_table().await;
}

#[tokio::test]
async fn pending_outbox_entries_come_oldest_first_and_marking_them_published_is_idempotent() {
    let t = Table::new().await;
    let a = key("acme", "checkout", "prod", "1.0.0");
    let b = key("other", "checkout", "prod", "1.0.0");
    let id1 = create(&t.store, &a).await;
    let id2 = create(&t.store, &b).await;
    let id3 = write(&t.store, &a, ChangeType::Updated, Some(1), 2)
        .await
        .unwrap();

    let pending = t.store.pending(10).await.unwrap();
    let ids: Vec<_> = pending.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, vec![id1.clone(), id2.clone(), id3.clone()]);
    let events: Vec<_> = pending
        .iter()
        .map(|p| (p.event.tenant.to_string(), p.event.revision))
        .collect();
    assert_eq!(
        events,
        vec![
            ("acme".to_string(), 1),
            ("other".to_string(), 1),
            ("acme".to_string(), 2)
        ]
    );
    assert_eq!(t.store.pending(2).await.unwrap().len(), 2);

    t.store
        .mark_published(&[id1.clone(), id1.clone(), id2.clone()])
        .await
        .unwrap();
    let left: Vec<_> = t
        .store
        .pending(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(left, vec![id3.clone()]);
    t.store.mark_published(&[id1, id2]).await.unwrap();
    t.store.mark_published(&[]).await.unwrap();
    assert_eq!(t.store.pending(10).await.unwrap().len(), 1);
    assert!(matches!(
        t.store.mark_published(&["not-an-id".to_string()]).await,
        Err(Error::Internal(_))
    ));
    t.store.mark_published(&[id3]).await.unwrap();
    assert!(t.store.pending(10).await.unwrap().is_empty());
    t.drop_table().await;
}

/// The partition keys holding outbox items, with how many each holds.
async fn outbox_partitions(t: &Table) -> std::collections::BTreeMap<String, usize> {
    let mut by_pk = std::collections::BTreeMap::new();
    let mut start = None;
    loop {
        let out = t
            .client
            .scan()
            .table_name(&t.name)
            .filter_expression("#k = :k")
            .expression_attribute_names("#k", "kind")
            .expression_attribute_values(":k", AttributeValue::S("outbox".into()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        for item in out.items() {
            let pk = item["pk"].as_s().unwrap().clone();
            *by_pk.entry(pk).or_insert(0) += 1;
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return by_pk,
        }
    }
}

#[tokio::test]
async fn the_outbox_is_spread_over_shards_and_pending_keeps_every_keys_commit_order() {
    // GIVEN 40 services of 4 tenants, each changed three times, commits interleaved
    let t = Table::new().await;
    let keys: Vec<RouteKey> = (0..40)
        .map(|i| {
            key(
                &format!("tenant-{}", i % 4),
                &format!("svc-{i}"),
                "prod",
                "1.0.0",
            )
        })
        .collect();
    for k in &keys {
        create(&t.store, k).await;
    }
    for rev in 2..=3 {
        for k in &keys {
            write(&t.store, k, ChangeType::Updated, Some(rev - 1), rev)
                .await
                .unwrap();
        }
    }
    // THEN the entries sit in several shard partitions, none in the old single one
    let partitions = outbox_partitions(&t).await;
    assert!(partitions.len() >= 4, "{partitions:?}");
    assert!(partitions.keys().all(|pk| pk.starts_with("OUTBOX#")));
    assert_eq!(partitions.values().sum::<usize>(), 120);
    // AND pending, merging the shards, hands each key's events over in commit order
    let pending = t.store.pending(1000).await.unwrap();
    assert_eq!(pending.len(), 120);
    let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for p in &pending {
        let k = p.event.key().to_string();
        let prev = last.insert(k.clone(), p.event.revision).unwrap_or(0);
        assert_eq!(p.event.revision, prev + 1, "{k} out of order");
    }
    // AND a page of pending is the oldest entries overall, not per shard
    let first: Vec<String> = t
        .store
        .pending(10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    let all: Vec<String> = pending.iter().take(10).map(|p| p.id.clone()).collect();
    assert_eq!(first, all);
    // AND marking them published empties every shard
    let ids: Vec<String> = pending.into_iter().map(|p| p.id).collect();
    t.store.mark_published(&ids).await.unwrap();
    assert!(t.store.pending(10).await.unwrap().is_empty());
    t.drop_table().await;
}

/// A measurement, not a check (run with `--run-ignored only`): commits per second through
/// the store, 32 writers over 32 tenants, and how they spread over the outbox shards.
/// DynamoDB Local has no partition throughput limit, so this measures the commit path on
/// this machine; docs/dynamodb.md derives the AWS ceiling from the partition limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: run with --run-ignored only"]
async fn measure_commit_throughput_over_the_sharded_outbox() {
    let t = Arc::new(Table::new().await);
    let writers = 32;
    let per_writer = 40;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let t = t.clone();
            tokio::spawn(async move {
                let k = key(&format!("tenant-{w}"), "checkout", "prod", "1.0.0");
                create(&t.store, &k).await;
                for rev in 2..=per_writer {
                    write(&t.store, &k, ChangeType::Updated, Some(rev - 1), rev)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let took = started.elapsed();
    let commits = writers * per_writer as usize;
    let partitions = outbox_partitions(&t).await;
    eprintln!(
        "FIGURE {commits} commits by {writers} writers in {took:?}: {:.0} commits/s; outbox items per partition {partitions:?}",
        commits as f64 / took.as_secs_f64()
    );
    assert_eq!(partitions.values().sum::<usize>(), commits);
    if let Ok(t) = Arc::try_unwrap(t) {
        t.drop_table().await;
    }
}

#[tokio::test]
async fn entries_left_in_the_unsharded_outbox_by_an_older_release_are_still_published() {
    // GIVEN an entry moved back into the old single `OUTBOX` partition
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;
    let scan = t.client.scan().table_name(&t.name).send().await.unwrap();
    let mut item = scan
        .items()
        .iter()
        .find(|i| {
            i.get("kind")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("outbox")
        })
        .unwrap()
        .clone();
    let shard_pk = item["pk"].clone();
    let sk = item["sk"].clone();
    t.client
        .delete_item()
        .table_name(&t.name)
        .key("pk", shard_pk)
        .key("sk", sk.clone())
        .send()
        .await
        .unwrap();
    item.insert("pk".into(), AttributeValue::S("OUTBOX".into()));
    t.client
        .put_item()
        .table_name(&t.name)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    // WHEN the relay reads the outbox
    let pending = t.store.pending(10).await.unwrap();
    // THEN the entry is there, with its old id, and marking it published removes it
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, sk.as_s().unwrap().as_str());
    t.store
        .mark_published(&[pending[0].id.clone()])
        .await
        .unwrap();
    assert!(outbox_partitions(&t).await.is_empty());
    t.drop_table().await;
}

#[tokio::test]
async fn marking_more_than_one_batch_published_removes_them_all() {
    let t = Table::new().await;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            create(
                &t.store,
                &key("acme", "checkout", "prod", &format!("1.0.{i}")),
            )
            .await,
        );
    }
    let pending: Vec<_> = t
        .store
        .pending(100)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(pending, ids);
    t.store.mark_published(&ids).await.unwrap();
    assert!(t.store.pending(100).await.unwrap().is_empty());
    t.drop_table().await;
}

/// A publisher that records the route key of every event it accepts (written out by
/// hand, as [`Accept`]).
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl EventPublisher for Recorder {
    fn publish<'a, 'b, 'c>(
        &'a self,
        events: &'b [RouteEvent],
    ) -> Pin<Box<dyn Future<Output = tm_core::Result<()>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.0
            .lock()
            .unwrap()
            .extend(events.iter().map(|e| e.key().to_string()));
        Box::pin(async { Ok(()) })
    }
}

/// The items of one partition, as stored.
async fn partition(t: &Table, pk: &str) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    t.client
        .query()
        .table_name(&t.name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec()
}

#[tokio::test]
async fn a_malformed_outbox_item_is_parked_and_every_other_shard_is_published() {
    // GIVEN 16 services changed once, their events spread over several outbox shards
    let t = Table::new().await;
    let keys: Vec<RouteKey> = (0..16)
        .map(|i| key("acme", &format!("svc-{i}"), "prod", "1.0.0"))
        .collect();
    for k in &keys {
        create(&t.store, k).await;
    }
    let shards = outbox_partitions(&t).await;
    assert!(shards.len() >= 4, "{shards:?}");
    // ... and in one shard, written straight into the table, two items the store cannot
    // decode: the oldest entry of all, whose event is not JSON, and one whose sort key
    // is not an outbox key and that has no event at all
    let shard = shards.keys().next().unwrap().clone();
    let s = |v: &str| AttributeValue::S(v.to_string());
    let bad_sk = format!("{:015}#acme#{:020}", 1, 1);
    let raw = |sk: &str, event: Option<&str>| {
        let mut item = std::collections::HashMap::from([
            ("pk".to_string(), s(&shard)),
            ("sk".to_string(), s(sk)),
            ("kind".to_string(), s("outbox")),
        ]);
        if let Some(e) = event {
            item.insert("event".to_string(), s(e));
        }
        item
    };
    let bad_json = raw(&bad_sk, Some(r#"{"schema":1,"type":"route.upd"#));
    let bad_key = raw("zz-not-an-outbox-key", None);
    for item in [&bad_json, &bad_key] {
        t.client
            .put_item()
            .table_name(&t.name)
            .set_item(Some(item.clone()))
            .send()
            .await
            .unwrap();
    }
    // ... which a read reports apart, instead of failing
    let pending = t.store.pending_all(100).await.unwrap();
    assert_eq!(pending.entries.len(), 16);
    assert_eq!(pending.undecodable.len(), 2, "{:?}", pending.undecodable);

    // WHEN the relay drains
    let publisher = Arc::new(Recorder::default());
    let relay = Relay::new(Arc::new(t.store.clone()), publisher.clone());
    let published = relay.drain().await.unwrap();

    // THEN every other entry, of every shard, was published, and the outbox is empty
    assert_eq!(published, 16);
    let mut seen = publisher.0.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(seen, want);
    assert!(outbox_partitions(&t).await.is_empty());
    let left = t.store.pending_all(100).await.unwrap();
    assert!(left.entries.is_empty() && left.undecodable.is_empty());
    // AND the two bad items are parked, not lost: listed with their reasons ...
    let parked = t.store.parked(10).await.unwrap();
    let ids: Vec<&str> = parked.iter().map(|p| p.id.as_str()).collect();
    let shard_no = shard.strip_prefix("OUTBOX#").unwrap();
    let json_id = format!("{shard_no}@{bad_sk}");
    let key_id = format!("{shard_no}@zz-not-an-outbox-key");
    assert_eq!(ids, [json_id.as_str(), key_id.as_str()]);
    assert!(
        parked[0].reason.starts_with("undecodable: ")
            && parked[0].reason.contains("attribute event"),
        "{}",
        parked[0].reason
    );
    assert_eq!(
        parked[0].event.as_deref(),
        Some(r#"{"schema":1,"type":"route.upd"#)
    );
    assert!(
        parked[1].reason.contains("malformed id"),
        "{}",
        parked[1].reason
    );
    assert_eq!(parked[1].event, None);
    // ... each holding the original item, attribute for attribute
    let stored = partition(&t, "OUTBOX#PARKED").await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["item"], AttributeValue::M(bad_json.clone()));
    assert_eq!(stored[1]["item"], AttributeValue::M(bad_key.clone()));
    // AND a replay puts the original back into its shard, where a read finds it again
    assert!(t.store.unpark(&json_id).await.unwrap());
    assert!(!t.store.unpark(&json_id).await.unwrap());
    assert_eq!(partition(&t, &shard).await, vec![bad_json]);
    let back = t.store.pending_all(100).await.unwrap();
    assert_eq!(back.undecodable.len(), 1);
    assert_eq!(back.undecodable[0].id, json_id);
    assert_eq!(t.store.parked(10).await.unwrap().len(), 1);
    // AND parking it twice (two relays racing) parks it once; the second finds it gone
    t.store.park(&json_id, "again").await.unwrap();
    t.store.park(&json_id, "once more").await.unwrap();
    let parked = t.store.parked(10).await.unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].reason, "again");
    assert!(partition(&t, &shard).await.is_empty());
    t.drop_table().await;
}

#[tokio::test]
async fn versions_lists_every_version_of_one_service_env_tombstones_included() {
    let t = Table::new().await;
    let svc = ServiceKey::parse("acme", "checkout", "prod").unwrap();
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        create(&t.store, &key("acme", "checkout", "prod", v)).await;
    }
    write(
        &t.store,
        &key("acme", "checkout", "prod", "1.1.0"),
        ChangeType::Deleted,
        Some(1),
        2,
    )
    .await
    .unwrap();
    // Names that share a prefix with the service or env stay out.
    create(&t.store, &key("acme", "checkout", "prod-eu", "1.0.0")).await;
    create(&t.store, &key("acme", "checkout-v2", "prod", "1.0.0")).await;
    create(&t.store, &key("acme2", "checkout", "prod", "1.0.0")).await;

    for read in [Consistency::Strong, Consistency::Eventual] {
        let versions = t.store.versions(&svc, read).await.unwrap();
        let got: Vec<_> = versions
            .iter()
            .map(|(v, s)| (v.to_string(), s.revision, s.route.is_some()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1.0.0".to_string(), 1, true),
                ("1.1.0".to_string(), 2, false),
                ("2.0.0".to_string(), 1, true)
            ],
            "{read:?}"
        );
    }
    let none = ServiceKey::parse("acme", "nothing", "prod").unwrap();
    assert!(
        t.store
            .versions(&none, Consistency::Strong)
            .await
            .unwrap()
            .is_empty()
    );
    t.drop_table().await;
}

#[tokio::test]
async fn a_strong_read_sees_every_write_immediately() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;
    for rev in 2..=20 {
        write(&t.store, &k, ChangeType::Updated, Some(rev - 1), rev)
            .await
            .unwrap();
        let stored = t.store.get(&k, Consistency::Strong).await.unwrap().unwrap();
        assert_eq!(stored.revision, rev);
        let versions = t.store.versions(&k.svc, Consistency::Strong).await.unwrap();
        assert_eq!(versions[0].1.revision, rev);
    }
    t.drop_table().await;
}

#[tokio::test]
async fn concurrent_commits_at_the_same_revision_let_exactly_one_win() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = t.store.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            write(&store, &k, ChangeType::Updated, Some(1), 2).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(Error::Conflict) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(history_revisions(&t.store, &k, None, 10).await, vec![2, 1]);
    assert_eq!(t.store.pending(10).await.unwrap().len(), 2);
    t.drop_table().await;
}

#[tokio::test]
async fn concurrent_commits_in_one_tenant_all_land_with_distinct_audit_sequences() {
    let t = Table::new().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        // Every task its own store, as separate Lambda instances: their commits race for
        // the tenant's audit counter in DynamoDB (one store would make them take turns).
        let store = DynamoStore::new(t.client.clone(), t.name.clone());
        tasks.push(tokio::spawn(async move {
            let k = key("acme", "checkout", "prod", &format!("1.0.{i}"));
            // What the write service does on a conflict: read again and retry.
            for _ in 0..5 {
                let expected = store
                    .get(&k, Consistency::Strong)
                    .await
                    .unwrap()
                    .map(|s| s.revision);
                match write(
                    &store,
                    &k,
                    ChangeType::Created,
                    expected,
                    expected.unwrap_or(0) + 1,
                )
                .await
                {
                    Err(Error::Conflict) => continue,
                    other => return other,
                }
            }
            Err(Error::Conflict)
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let audit = t
        .store
        .audit(&audit_query("acme", 100))
        .await
        .unwrap()
        .items;
    assert_eq!(
        audit.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=8).rev().collect::<Vec<u64>>()
    );
    assert!(audit.iter().all(|(_, e)| e.revision == 1));
    // The outbox holds each tenant's commits in audit order.
    let pending = t.store.pending(100).await.unwrap();
    let by_audit: Vec<String> = audit
        .iter()
        .rev()
        .map(|(_, e)| e.version.to_string())
        .collect();
    let by_outbox: Vec<String> = pending
        .iter()
        .map(|p| p.event.version.to_string())
        .collect();
    assert_eq!(by_outbox, by_audit);
    t.drop_table().await;
}

#[tokio::test]
async fn concurrent_commits_of_one_tenant_through_one_store_take_turns_and_never_conflict() {
    let t = Table::new().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            // No retry here: within one store a commit never loses the counter race.
            create(
                &store,
                &key("acme", "checkout", "prod", &format!("2.0.{i}")),
            )
            .await
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let audit = t
        .store
        .audit(&audit_query("acme", 100))
        .await
        .unwrap()
        .items;
    assert_eq!(
        audit.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=64).rev().collect::<Vec<u64>>()
    );
    t.drop_table().await;
}

#[tokio::test]
async fn create_table_if_missing_leaves_an_existing_table_and_its_items_alone() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    create(&t.store, &k).await;
    assert!(!t.store.create_table_if_missing().await.unwrap());
    assert!(!t.store.create_table_if_missing().await.unwrap());
    assert_eq!(
        t.store
            .get(&k, Consistency::Strong)
            .await
            .unwrap()
            .unwrap()
            .revision,
        1
    );
    t.drop_table().await;
}

#[tokio::test]
async fn a_table_with_another_key_schema_is_refused() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let name = unique("tm-test-foreign");
    let c = client(ENDPOINT);
    c.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let store = DynamoStore::new(c.clone(), name.clone());
    assert!(matches!(
        store.create_table_if_missing().await,
        Err(Error::Internal(_))
    ));
    let _ = c.delete_table().table_name(&name).send().await;
}

#[tokio::test]
async fn the_probe_answers_for_a_table_and_fails_for_a_missing_one() {
    let t = Table::new().await;
    assert_eq!(t.store.name(), "store");
    t.store.ping().await.unwrap();
    let missing = DynamoStore::new(t.client.clone(), unique("tm-test-missing"));
    assert!(missing.ping().await.is_err());
    t.drop_table().await;
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_unavailable_rather_than_internal() {
    // Port 9 (discard) is closed on the test machine: the connection is refused.
    let store = DynamoStore::new(client("http://127.0.0.1:9"), "tm-test-unreachable".into());
    let k = key("acme", "checkout", "prod", "1.0.0");
    assert!(matches!(
        store.get(&k, Consistency::Strong).await,
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(store.ping().await, Err(Error::Unavailable(_))));
    let commit = Commit {
        expected_revision: None,
        event: event_at(&k, ChangeType::Created, 1, Timestamp::now()),
    };
    assert!(matches!(
        store.commit(&commit).await,
        Err(Error::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_stored_item_that_does_not_decode_is_an_internal_error() {
    let t = Table::new().await;
    let k = key("acme", "checkout", "prod", "1.0.0");
    let s = |v: &str| AttributeValue::S(v.to_string());
    t.client
        .put_item()
        .table_name(&t.name)
        .item("pk", s("TENANT#acme"))
        .item("sk", s("ROUTE#checkout#prod#1.0.0"))
        .item("kind", s("route"))
        .item("env", s("prod"))
        .item("rev", s("one"))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        t.store.get(&k, Consistency::Strong).await,
        Err(Error::Internal(_))
    ));
    assert!(matches!(
        t.store.versions(&k.svc, Consistency::Eventual).await,
        Err(Error::Internal(_))
    ));
    t.client
        .put_item()
        .table_name(&t.name)
        .item("pk", s("TENANT#acme"))
        .item("sk", s("ROUTE#checkout#prod#1.0.0"))
        .item("kind", s("route"))
        .item("env", s("prod"))
        .item("rev", AttributeValue::N("1".into()))
        .item("doc", s(r#"{"tenant":"acme","surprise":true}"#))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        t.store
            .list(&list_query("acme", None, None, None, 10))
            .await,
        Err(Error::Internal(_))
    ));
    t.drop_table().await;
}

#[tokio::test]
async fn connect_refuses_a_name_that_is_not_a_table_name() {
    assert!(matches!(
        DynamoStore::connect("x").await,
        Err(Error::Internal(_))
    ));
    assert!(matches!(
        DynamoStore::connect("bad name!").await,
        Err(Error::Internal(_))
    ));
}

#[test]
fn the_iam_action_lists_name_only_dynamodb_actions_and_nest_as_the_functions_do() {
    for list in [IAM_ACTIONS_READ, IAM_ACTIONS_WRITE, IAM_ACTIONS_RELAY] {
        assert!(list.iter().all(|a| a.starts_with("dynamodb:")));
        let mut sorted = list.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), list.len());
    }
    let within_write = |list: &[&str]| list.iter().all(|a| IAM_ACTIONS_WRITE.contains(a));
    assert!(within_write(IAM_ACTIONS_READ));
    assert!(within_write(IAM_ACTIONS_RELAY));
}

/// A publisher that accepts everything (written out by hand: this crate has no
/// `async-trait`).
struct Accept;

impl EventPublisher for Accept {
    fn publish<'a, 'b, 'c>(
        &'a self,
        _events: &'b [RouteEvent],
    ) -> Pin<Box<dyn Future<Output = tm_core::Result<()>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn the_write_service_runs_on_dynamodb_with_tombstones_cursors_and_the_outbox() {
    let t = Table::new().await;
    let store = Arc::new(t.store.clone());
    let service = WriteService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(MemoryCache::new()),
        AfterCommit::PublishNow {
            publisher: Arc::new(Accept),
            outbox: store.clone(),
            deadline: Duration::from_secs(5),
        },
        CursorKey::new(b"test secret"),
    );
    let actor = Actor {
        sub: "user-1".into(),
        correlation_id: "req-1".into(),
    };
    let spec = || {
        RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a.example"}]}"#).unwrap()
    };
    let k = key("acme", "checkout", "prod", "1.0.0");

    let (r, created) = service
        .put(&k, spec(), Preconditions::default(), &actor)
        .await
        .unwrap();
    assert!(created && r.revision == 1);
    let (r, created) = service
        .put(&k, spec(), Preconditions::default(), &actor)
        .await
        .unwrap();
    assert!(!created && r.revision == 2);
    service
        .delete(&k, Preconditions::default(), &actor)
        .await
        .unwrap();
    assert_eq!(service.get(&k).await, Err(Error::NotFound));
    let (r, created) = service
        .put(&k, spec(), Preconditions::default(), &actor)
        .await
        .unwrap();
    assert!(created && r.revision == 4);
    for v in ["1.1.0", "2.0.0"] {
        service
            .put(
                &key("acme", "checkout", "prod", v),
                spec(),
                Preconditions::default(),
                &actor,
            )
            .await
            .unwrap();
    }

    let page = service.history(&k, 2, None).await.unwrap();
    assert_eq!(
        page.items.iter().map(|h| h.revision).collect::<Vec<_>>(),
        vec![4, 3]
    );
    let page = service
        .history(&k, 2, page.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|h| h.revision).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert!(page.next_cursor.is_none());

    let tenant = TenantName::parse("acme").unwrap();
    let page = service.list(&tenant, None, None, 2, None).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = service
        .list(&tenant, None, None, 2, page.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(
        rest.items
            .iter()
            .map(|r| r.version.to_string())
            .collect::<Vec<_>>(),
        vec!["2.0.0"]
    );
    assert!(rest.next_cursor.is_none());

    let audit = service
        .audit(&tenant, AuditFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 6);
    assert_eq!(audit.items[2].kind, ChangeType::Created);
    assert_eq!(audit.items[3].kind, ChangeType::Deleted);
    // Every change was published right after its commit and marked in the outbox.
    assert!(t.store.pending(10).await.unwrap().is_empty());
    t.drop_table().await;
}

fn health_state(key: &RouteKey, seq: u64, status: HealthStatus) -> RouteHealth {
    let r = route(key, 1, Timestamp::now());
    RouteHealth {
        seq,
        endpoints: vec![EndpointHealth {
            id: r.endpoints[0].id.clone(),
            url: r.endpoints[0].url.clone(),
            status,
            since: Timestamp::now(),
            successes: 0,
            failures: 3,
            last_error: Some("refused".into()),
        }],
    }
}

#[tokio::test]
async fn health_state_lives_beside_the_route_ordered_by_its_own_seq_and_never_moves_the_revision() {
    // GIVEN a checked route and an unchecked one
    let t = Table::new().await;
    let k = key(&unique("t"), "checkout", "prod", "1.0.0");
    let plain = key(k.svc.tenant.as_str(), "other", "prod", "1.0.0");
    let mut checked = route(&k, 1, Timestamp::now());
    checked.health_check =
        Some(HealthCheck::from_json(&serde_json::json!({"path": "/healthz"})).unwrap());
    let mut ev = event_at(&k, ChangeType::Created, 1, Timestamp::now());
    ev.route = Some(checked.clone());
    t.store
        .commit(&Commit {
            expected_revision: None,
            event: ev,
        })
        .await
        .unwrap();
    create(&t.store, &plain).await;
    // THEN the prober's scan finds only the checked one
    let found = t.store.checked_routes().await.unwrap();
    assert!(found.iter().any(|r| r.key() == k));
    assert!(!found.iter().any(|r| r.key() == plain));

    // WHEN the prober stores seq 1, then a transition at seq 2 with its event
    let s1 = health_state(&k, 1, HealthStatus::Healthy);
    assert_eq!(
        t.store.save_health(&k, None, &s1, None).await.unwrap(),
        None
    );
    let s2 = health_state(&k, 2, HealthStatus::Unhealthy);
    let mut hev = event_at(&k, ChangeType::HealthChanged, 1, Timestamp::now());
    hev.route = None;
    hev.health = Some(s2.clone());
    let outbox_id = t
        .store
        .save_health(&k, Some(1), &s2, Some(&hev))
        .await
        .unwrap();
    assert!(outbox_id.is_some());
    // THEN a writer that still expects seq 1 loses, and so does one expecting nothing
    assert_eq!(
        t.store.save_health(&k, Some(1), &s2, None).await,
        Err(Error::Conflict)
    );
    assert_eq!(
        t.store.save_health(&k, None, &s1, None).await,
        Err(Error::Conflict)
    );
    // AND reads of the route carry the state, at the same revision
    assert_eq!(t.store.health(&k).await.unwrap(), Some(s2.clone()));
    let stored = t.store.get(&k, Consistency::Strong).await.unwrap().unwrap();
    assert_eq!((stored.revision, stored.health), (1, Some(s2.clone())));
    let versions = t.store.versions(&k.svc, Consistency::Strong).await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].1.health.as_ref(), Some(&s2));
    // AND the audit log and the outbox hold the transition
    let audit = t
        .store
        .audit(&AuditQuery {
            tenant: k.svc.tenant.clone(),
            kind: Some(ChangeType::HealthChanged),
            since: None,
            until: None,
            before_seq: None,
            limit: 10,
            max_scan: 100,
        })
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1);
    let pending = t.store.pending(100).await.unwrap();
    assert!(
        pending
            .iter()
            .any(|p| p.event.kind == ChangeType::HealthChanged
                && p.event.health.as_ref() == Some(&s2))
    );
    // AND a user's next write still expects revision 1
    write(&t.store, &k, ChangeType::Updated, Some(1), 2)
        .await
        .unwrap();
    t.drop_table().await;
}

#[test]
fn the_prober_needs_only_its_dynamodb_actions() {
    assert_eq!(
        IAM_ACTIONS_PROBER,
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"]
    );
}
