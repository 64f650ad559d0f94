//! Handler tests: real API Gateway v2 event JSON (the shape AWS documents for HTTP APIs
//! with a JWT authorizer) through `lambda_http`'s own parser into the write handler.

use lambda_http::{Body, Request};
use serde_json::Value;
use std::sync::Arc;
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::adapters::memory_cache::MemoryCache;
use tm_core::cursor::CursorKey;
use tm_core::ports::{EventPublisher, Outbox, RouteReader};
use tm_core::services::relay::Relay;
use tm_core::services::write::{AfterCommit, WriteService};
use tm_write::WriteHandler;

const PUT: &str = include_str!("fixtures/put-route.json");

struct NoPublisher;

#[async_trait::async_trait]
impl EventPublisher for NoPublisher {
    async fn publish(&self, _: &[tm_core::domain::event::RouteEvent]) -> tm_core::Result<()> {
        Err(tm_core::Error::Unavailable("not in this test".into()))
    }
}

fn handler(dir: &tempfile::TempDir) -> (WriteHandler, Arc<EmbeddedStore>) {
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let cache = Arc::new(MemoryCache::new());
    let relay = Arc::new(Relay::new(store.clone(), Arc::new(NoPublisher)));
    let service = WriteService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        cache,
        AfterCommit::Wake(relay),
        CursorKey::new(b"k"),
    );
    (WriteHandler::new(service), store)
}

fn event(edit: impl FnOnce(&mut Value)) -> Request {
    let mut v: Value = serde_json::from_str(PUT).unwrap();
    edit(&mut v);
    lambda_http::request::from_str(&v.to_string()).expect("a valid API Gateway v2 event")
}

fn json_body(b: &Body) -> Value {
    serde_json::from_slice(b.as_ref()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_put_event_creates_the_route_and_queues_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let (h, store) = handler(&dir);
    let resp = h.handle(event(|_| {})).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    assert_eq!(resp.headers()["x-correlation-id"], "req-fixture-put");
    let body = json_body(resp.body());
    assert_eq!(
        body["updated_by"], "user-123",
        "the actor comes from the authorizer's claims"
    );
    assert_eq!(body["endpoints"][0]["region"], "eu-west-1");
    let key = tm_core::domain::names::RouteKey::parse("acme", "checkout", "prod", "2.3.1").unwrap();
    let stored = store
        .get(&key, tm_core::ports::Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, 1);
    let pending = store.pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].event.correlation_id, "req-fixture-put");
}

#[tokio::test]
async fn claims_are_read_from_the_authorizer_context_only() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = handler(&dir);
    let no_authorizer = h
        .handle(event(|v| v["requestContext"]["authorizer"] = Value::Null))
        .await;
    assert_eq!(
        no_authorizer.status(),
        401,
        "a bearer header alone is never trusted"
    );
    let other_tenant = h
        .handle(event(|v| {
            v["requestContext"]["authorizer"]["jwt"]["claims"]["tm_tenants"] = "other".into()
        }))
        .await;
    assert_eq!(other_tenant.status(), 403);
    let read_only = h
        .handle(event(|v| {
            v["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] = "routes:read".into()
        }))
        .await;
    assert_eq!(read_only.status(), 403);
}

#[tokio::test]
async fn a_get_event_reads_back_and_a_bad_body_is_400() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = handler(&dir);
    h.handle(event(|_| {})).await;
    let get = h
        .handle(event(|v| {
            v["requestContext"]["http"]["method"] = "GET".into();
            v["body"] = Value::Null;
        }))
        .await;
    assert_eq!(get.status(), 200);
    assert_eq!(json_body(get.body())["revision"], 1);
    let bad = h
        .handle(event(|v| v["body"] = r#"{"endpoints":[],"x":1}"#.into()))
        .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(json_body(bad.body())["error"]["code"], "invalid_request");
    let wrong_type = h
        .handle(event(|v| {
            v["headers"]["content-type"] = "text/plain".into()
        }))
        .await;
    assert_eq!(wrong_type.status(), 415);
}

#[tokio::test]
async fn list_query_parameters_come_from_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let (h, _) = handler(&dir);
    h.handle(event(|_| {})).await;
    let list = h
        .handle(event(|v| {
            v["requestContext"]["http"]["method"] = "GET".into();
            v["rawPath"] = "/v1/tenants/acme/routes".into();
            v["requestContext"]["http"]["path"] = "/v1/tenants/acme/routes".into();
            v["rawQueryString"] = "service=checkout&limit=0".into();
            v["queryStringParameters"] = serde_json::json!({"service": "checkout", "limit": "0"});
            v["body"] = Value::Null;
        }))
        .await;
    assert_eq!(list.status(), 400, "limit=0 is out of range");
    assert!(
        json_body(list.body())["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit")
    );
}

/// A writer that always loses the race, as if other writers got in first every time.
#[derive(Default)]
struct AlwaysLoses {
    attempts: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl tm_core::ports::RouteWriter for AlwaysLoses {
    async fn commit(&self, _: &tm_core::ports::Commit) -> tm_core::Result<String> {
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(tm_core::Error::Conflict)
    }
    async fn list(
        &self,
        _: &tm_core::ports::ListQuery,
    ) -> tm_core::Result<Vec<tm_core::domain::route::Route>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_write_that_keeps_losing_races_answers_503_once_its_budget_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let relay = Arc::new(Relay::new(store.clone(), Arc::new(NoPublisher)));
    let loser = Arc::new(AlwaysLoses::default());
    let service = WriteService::new(
        store.clone(),
        loser.clone(),
        store.clone(),
        Arc::new(MemoryCache::new()),
        AfterCommit::Wake(relay),
        CursorKey::new(b"k"),
    )
    .with_write_budget(std::time::Duration::from_millis(50));
    let h = WriteHandler::new(service);
    let resp = h.handle(event(|_| {})).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(json_body(resp.body())["error"]["code"], "unavailable");
    assert!(
        store.pending(10).await.unwrap().is_empty(),
        "nothing was written"
    );
    // 32 rounds of growing pauses take ~0.5 s; the 50 ms budget stops well before.
    let n = loser.attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..32).contains(&n), "{n} attempts");
}
