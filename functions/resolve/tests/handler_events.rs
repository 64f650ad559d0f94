//! Handler tests: API Gateway v2 event JSON through `lambda_http`'s parser into the
//! resolve handler, over embedded backends seeded through their ports.

use lambda_http::Request;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::domain::event::{ChangeType, RouteEvent, SCHEMA};
use tm_core::domain::names::RouteKey;
use tm_core::domain::route::{Route, RouteSpec};
use tm_core::domain::timefmt::Timestamp;
use tm_core::ports::{Commit, RouteWriter};
use tm_core::services::resolve::Resolver;
use tm_resolve::ResolveHandler;

const RESOLVE: &str = include_str!("fixtures/resolve.json");

async fn seed(store: &EmbeddedStore, version: &str, body: &str) {
    let key = RouteKey::parse("acme", "checkout", "prod", version).unwrap();
    let route = Route::from_spec(
        &key,
        RouteSpec::from_json(body.as_bytes()).unwrap(),
        1,
        Timestamp::now(),
        "seed",
    );
    let event = RouteEvent {
        schema: SCHEMA,
        event_id: "e".into(),
        kind: ChangeType::Created,
        tenant: key.svc.tenant.clone(),
        service: key.svc.service.clone(),
        env: key.svc.env.clone(),
        version: key.version.clone(),
        revision: 1,
        occurred_at: route.updated_at,
        actor: "seed".into(),
        correlation_id: "seed".into(),
        route: Some(route),
        health: None,
    };
    store
        .commit(&Commit {
            expected_revision: None,
            event,
        })
        .await
        .unwrap();
}

async fn handler(dir: &tempfile::TempDir) -> ResolveHandler {
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    seed(&store, "2.3.1", r#"{"endpoints":[{"id":"blue","url":"https://b","weight":90},{"id":"green","url":"https://g","weight":10}]}"#).await;
    seed(
        &store,
        "1.0.0",
        r#"{"endpoints":[{"id":"old","url":"https://o"}]}"#,
    )
    .await;
    let resolver = Resolver::new(
        store.clone(),
        Arc::new(MemoryCache::new()),
        Duration::from_secs(1),
    );
    ResolveHandler::new(resolver, vec![store])
}

fn event(edit: impl FnOnce(&mut Value)) -> Request {
    let mut v: Value = serde_json::from_str(RESOLVE).unwrap();
    edit(&mut v);
    lambda_http::request::from_str(&v.to_string()).expect("a valid API Gateway v2 event")
}

#[tokio::test]
async fn a_resolve_event_picks_the_range_and_the_sticky_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let h = handler(&dir).await;
    let first = h.handle(event(|_| {})).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "miss");
    assert_eq!(first.headers()["cache-control"], "max-age=30");
    let body: Value = serde_json::from_slice(first.body().as_ref()).unwrap();
    assert_eq!(body["version"], "2.3.1");
    let second = h.handle(event(|_| {})).await;
    assert_eq!(second.headers()["x-cache"], "hit-l1");
    let again: Value = serde_json::from_slice(second.body().as_ref()).unwrap();
    assert_eq!(
        again["endpoint"], body["endpoint"],
        "the key pins the endpoint"
    );
}

#[tokio::test]
async fn a_resolve_scope_cannot_read_the_management_api_and_health_needs_no_claims() {
    let dir = tempfile::tempdir().unwrap();
    let h = handler(&dir).await;
    let other = h
        .handle(event(|v| {
            v["requestContext"]["authorizer"]["jwt"]["claims"]["tm_tenants"] = "beta".into()
        }))
        .await;
    assert_eq!(other.status(), 403);
    let ready = h
        .handle(event(|v| {
            v["rawPath"] = "/readyz".into();
            v["requestContext"]["authorizer"] = Value::Null;
            v["queryStringParameters"] = Value::Null;
            v["rawQueryString"] = "".into();
        }))
        .await;
    assert_eq!(ready.status(), 200);
    let body: Value = serde_json::from_slice(ready.body().as_ref()).unwrap();
    assert_eq!(body["backends"]["store"], "up");
}

#[tokio::test]
async fn a_resolve_event_with_the_routes_etag_gets_304_without_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let h = handler(&dir).await;
    // GIVEN the answer's ETag
    let first = h.handle(event(|_| {})).await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, "\"1\"");
    // WHEN the client sends it back
    let again = h
        .handle(event(|v| {
            v["headers"]["if-none-match"] = etag.clone().into()
        }))
        .await;
    // THEN 304, no body, the caching headers kept
    assert_eq!(again.status(), 304);
    assert!(again.body().is_empty());
    assert_eq!(again.headers()["etag"], "\"1\"");
    assert_eq!(again.headers()["cache-control"], "max-age=30");
    assert_eq!(again.headers()["x-cache"], "hit-l1");
    // AND a stale tag gets the whole answer
    let stale = h
        .handle(event(|v| v["headers"]["if-none-match"] = "\"0\"".into()))
        .await;
    assert_eq!(stale.status(), 200);
    let body: Value = serde_json::from_slice(stale.body().as_ref()).unwrap();
    assert_eq!(body["revision"], 1);
}
