//! One scheduled run of the prober function over the embedded store, with a scripted
//! HTTP probe: it runs rounds for its budget, probes each endpoint at its interval, and
//! records the transition of a dead endpoint.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::domain::event::{ChangeType, RouteEvent, SCHEMA};
use tm_core::domain::health::ProbeResult;
use tm_core::domain::health_check::StatusRange;
use tm_core::domain::names::RouteKey;
use tm_core::domain::route::{HealthStatus, Route, RouteSpec};
use tm_core::domain::timefmt::Timestamp;
use tm_core::ports::{Commit, EventPublisher, HealthStore, HttpProbe, RouteWriter};
use tm_core::services::prober::{Prober, ProberSettings};
use tm_core::services::relay::Relay;
use tm_core::services::write::AfterCommit;
use tm_prober::ProberHandler;

/// Every URL on host `dead.test` is down.
struct Http;

#[async_trait]
impl HttpProbe for Http {
    async fn probe(&self, url: &str, _: Duration, _: StatusRange) -> ProbeResult {
        if url.contains("dead.test") {
            ProbeResult::Down("refused".into())
        } else {
            ProbeResult::Up
        }
    }
}

struct Sink;

#[async_trait]
impl EventPublisher for Sink {
    async fn publish(&self, _: &[RouteEvent]) -> tm_core::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_run_probes_for_its_budget_and_records_the_dead_endpoint() {
    // GIVEN a checked route with a live and a dead endpoint
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
    let spec = RouteSpec::from_json(
        br#"{"endpoints":[{"id":"live","url":"http://live.test"},{"id":"dead","url":"http://dead.test"}],
            "health_check":{"path":"/","interval_seconds":10,"timeout_seconds":1,"unhealthy_threshold":3}}"#,
    )
    .unwrap();
    let route = Route::from_spec(&key, spec, 1, Timestamp::now(), "u");
    store
        .commit(&Commit {
            expected_revision: None,
            event: RouteEvent {
                schema: SCHEMA,
                event_id: "e".into(),
                kind: ChangeType::Created,
                tenant: key.svc.tenant.clone(),
                service: key.svc.service.clone(),
                env: key.svc.env.clone(),
                version: key.version.clone(),
                revision: 1,
                occurred_at: route.updated_at,
                actor: "u".into(),
                correlation_id: "c".into(),
                route: Some(route),
                health: None,
            },
        })
        .await
        .unwrap();
    // AND a prober whose "second" is 2 ms (interval 20 ms), ticking every 5 ms
    let second = Duration::from_millis(2);
    let prober = Arc::new(Prober::new(
        store.clone(),
        Arc::new(Http),
        AfterCommit::Wake(Arc::new(Relay::new(store.clone(), Arc::new(Sink)))),
        ProberSettings {
            concurrency: 8,
            second,
            refresh: Duration::from_secs(60),
        },
    ));
    let handler = ProberHandler::new(
        prober,
        Duration::from_millis(150),
        Duration::from_millis(5),
        Duration::from_millis(100),
    );
    // WHEN one run goes
    let started = Instant::now();
    let report = handler.handle().await;
    // THEN it used its budget, probed both endpoints several times (not every tick), and
    // recorded exactly one transition
    assert!(started.elapsed() >= Duration::from_millis(140));
    assert!(report.rounds > 10, "{report:?}");
    assert!(
        report.probes >= 6 && report.probes < report.rounds * 2,
        "{report:?}"
    );
    assert_eq!(
        (
            report.transitions,
            report.failed_rounds,
            report.unfinished_rounds
        ),
        (1, 0, 0),
        "{report:?}"
    );
    let h = store.health(&key).await.unwrap().unwrap();
    let dead = h
        .endpoints
        .iter()
        .find(|e| e.id.as_str() == "dead")
        .unwrap();
    assert_eq!(dead.status, HealthStatus::Unhealthy);
}
