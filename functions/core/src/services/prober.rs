//! The prober (docs/health.md): probes every active endpoint of every route that has a
//! `health_check`, each at its route's interval, many at once (bounded), applies the
//! threshold rule, and stores what changed: the health state beside the route, and for a
//! transition a `route.health_changed` event (audit and outbox entries in the same
//! transaction), handed on like a write's event. The prober Lambda and tm-local's
//! background task both run this code.

use super::write::AfterCommit;
use crate::Result;
use crate::domain::event::{ChangeType, RouteEvent, SCHEMA};
use crate::domain::health::{self, EndpointHealth, ProbeResult, RouteHealth};
use crate::domain::health_check::StatusRange;
use crate::domain::names::{EndpointId, RouteKey};
use crate::domain::route::{EndpointStatus, Route};
use crate::domain::timefmt::Timestamp;
use crate::ports::{HealthStore, HttpProbe};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `actor` of health events and audit entries.
pub const ACTOR: &str = "prober";

/// How the prober paces itself.
#[derive(Clone, Copy, Debug)]
pub struct ProberSettings {
    /// Most probes in flight at once.
    pub concurrency: usize,
    /// How long one second of a `health_check` (interval, timeout) lasts: one second, bar
    /// tm-local's test-only `TM_HEALTH_MS_PER_SECOND`.
    pub second: Duration,
    /// How often the list of checked routes is read again from the store.
    pub refresh: Duration,
}

impl Default for ProberSettings {
    fn default() -> Self {
        Self {
            concurrency: 64,
            second: Duration::from_secs(1),
            refresh: Duration::from_secs(10),
        }
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Probes made.
    pub probes: usize,
    /// Health states stored.
    pub saved: usize,
    /// Transitions recorded (events).
    pub transitions: usize,
    /// Routes skipped this round because another prober stored first, or the store
    /// failed (they are probed again next time).
    pub skipped: usize,
}

type ProbeKey = (RouteKey, EndpointId, String);

#[derive(Default)]
struct State {
    routes: Arc<Vec<Route>>,
    read_at: Option<Instant>,
    next_due: HashMap<ProbeKey, Instant>,
}

/// The prober.
pub struct Prober {
    store: Arc<dyn HealthStore>,
    http: Arc<dyn HttpProbe>,
    after_commit: AfterCommit,
    settings: ProberSettings,
    state: Mutex<State>,
    permits: tokio::sync::Semaphore,
}

impl Prober {
    /// A prober over `store`, probing with `http`; events go on through `after_commit`.
    pub fn new(
        store: Arc<dyn HealthStore>,
        http: Arc<dyn HttpProbe>,
        after_commit: AfterCommit,
        settings: ProberSettings,
    ) -> Self {
        Self {
            store,
            http,
            after_commit,
            permits: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            // Only schedule bookkeeping lives here; a panic elsewhere leaves it usable.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// The checked routes, read again from the store when the last read is older than
    /// the refresh period.
    async fn routes(&self) -> Result<Arc<Vec<Route>>> {
        let fresh = self.with_state(|s| {
            s.read_at
                .filter(|at| at.elapsed() < self.settings.refresh)
                .map(|_| s.routes.clone())
        });
        if let Some(r) = fresh {
            return Ok(r);
        }
        let routes = Arc::new(self.store.checked_routes().await?);
        self.with_state(|s| {
            // Forget the schedule of endpoints that are no longer checked.
            let live: std::collections::HashSet<ProbeKey> = routes
                .iter()
                .flat_map(|r| {
                    let key = r.key();
                    r.endpoints
                        .iter()
                        .map(move |e| (key.clone(), e.id.clone(), e.url.clone()))
                })
                .collect();
            s.next_due.retain(|k, _| live.contains(k));
            s.routes = routes.clone();
            s.read_at = Some(Instant::now());
        });
        Ok(routes)
    }

    /// Probes every endpoint that is due, and stores what changed.
    pub async fn round(&self) -> Result<RoundReport> {
        let routes = self.routes().await?;
        let now = Instant::now();
        // (route index, endpoint index, url, timeout, expected) of every due probe.
        let mut due = Vec::new();
        self.with_state(|s| {
            for (ri, r) in routes.iter().enumerate() {
                let Some(check) = &r.health_check else {
                    continue;
                };
                let interval = self.settings.second * check.interval_seconds;
                let key = r.key();
                for (ei, e) in r.endpoints.iter().enumerate() {
                    if e.status != EndpointStatus::Active {
                        continue;
                    }
                    let k = (key.clone(), e.id.clone(), e.url.clone());
                    if s.next_due.get(&k).is_some_and(|at| *at > now) {
                        continue;
                    }
                    s.next_due.insert(k, now + interval);
                    due.push((
                        ri,
                        ei,
                        check.probe_url(&e.url),
                        self.settings.second * check.timeout_seconds,
                        check.expected_status,
                    ));
                }
            }
        });
        let mut report = RoundReport {
            probes: due.len(),
            ..RoundReport::default()
        };
        let mut by_route: HashMap<usize, Vec<(usize, String, Duration, StatusRange)>> =
            HashMap::new();
        for (ri, ei, url, timeout, expected) in due {
            by_route
                .entry(ri)
                .or_default()
                .push((ei, url, timeout, expected));
        }
        // Each route records as soon as its own probes are done: a hanging endpoint of
        // one route never delays another route's transition.
        let outcomes = futures_util::future::join_all(by_route.into_iter().map(|(ri, probes)| {
            let route = &routes[ri];
            async move {
                let results = self.probe_route(probes).await;
                (route, self.record(route, &results).await)
            }
        }))
        .await;
        for (route, outcome) in outcomes {
            match outcome {
                Ok(Recorded::Unchanged) => {}
                Ok(Recorded::Saved { transitions }) => {
                    report.saved += 1;
                    report.transitions += transitions;
                }
                Err(e) => {
                    report.skipped += 1;
                    tracing::warn!(route = %route.key(), error = %e, "health state not stored this round");
                }
            }
        }
        crate::metrics::figures().probed(report.probes, report.transitions);
        Ok(report)
    }

    /// Runs one route's probes at once, each holding one of the prober's `concurrency`
    /// permits (shared by every round in flight).
    async fn probe_route(
        &self,
        probes: Vec<(usize, String, Duration, StatusRange)>,
    ) -> Vec<(usize, ProbeResult)> {
        futures_util::future::join_all(probes.into_iter().map(
            |(ei, url, timeout, expected)| async move {
                let _permit = self.permits.acquire().await;
                (ei, self.http.probe(&url, timeout, expected).await)
            },
        ))
        .await
    }

    /// Applies one route's results to its stored state and stores the change, if any.
    async fn record(&self, route: &Route, results: &[(usize, ProbeResult)]) -> Result<Recorded> {
        let Some(check) = &route.health_check else {
            return Ok(Recorded::Unchanged);
        };
        let key = route.key();
        let stored = self.store.health(&key).await?;
        let at = Timestamp::now();
        let mut transitions = Vec::new();
        let mut next: Vec<EndpointHealth> = Vec::with_capacity(route.endpoints.len());
        for (ei, e) in route.endpoints.iter().enumerate() {
            let prev = stored.as_ref().and_then(|h| h.of(e));
            match results.iter().find(|(i, _)| *i == ei) {
                Some((_, res)) => {
                    let o = health::observe(prev, e, check, res, at);
                    if o.transition {
                        transitions.push(o.record.clone());
                    }
                    next.push(o.record);
                }
                None => next.extend(prev.cloned()),
            }
        }
        if stored.as_ref().is_some_and(|h| h.endpoints == next) {
            return Ok(Recorded::Unchanged);
        }
        let expected = stored.as_ref().map(|h| h.seq);
        let state = RouteHealth {
            seq: expected.unwrap_or(0) + 1,
            endpoints: next,
        };
        let event = (!transitions.is_empty()).then(|| RouteEvent {
            schema: SCHEMA,
            event_id: uuid::Uuid::new_v4().to_string(),
            kind: ChangeType::HealthChanged,
            tenant: key.svc.tenant.clone(),
            service: key.svc.service.clone(),
            env: key.svc.env.clone(),
            version: key.version.clone(),
            revision: route.revision,
            occurred_at: at,
            actor: ACTOR.to_owned(),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            route: None,
            health: Some(state.clone()),
        });
        let outbox_id = self
            .store
            .save_health(&key, expected, &state, event.as_ref())
            .await?;
        if let (Some(event), Some(id)) = (&event, outbox_id) {
            for t in &transitions {
                tracing::info!(
                    route = %key,
                    endpoint = %t.id,
                    status = t.status.as_str(),
                    seq = state.seq,
                    reason = t.last_error.as_deref().unwrap_or(""),
                    "endpoint health changed"
                );
            }
            self.after_commit.handle(event, id).await;
        }
        Ok(Recorded::Saved {
            transitions: transitions.len(),
        })
    }

    /// Starts a round every tick (one health-check second), forever (tm-local's
    /// background task), without waiting for the previous one: a round held up by slow
    /// probes never delays the next tick's. A failed round (the store is down) is logged.
    pub async fn run(self: Arc<Self>) {
        let mut rounds = tokio::task::JoinSet::new();
        loop {
            let started = Instant::now();
            while rounds.try_join_next().is_some() {}
            let p = self.clone();
            rounds.spawn(async move {
                match p.round().await {
                    Ok(r) if r.probes > 0 => tracing::debug!(
                        probes = r.probes,
                        saved = r.saved,
                        transitions = r.transitions,
                        skipped = r.skipped,
                        "probe round"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "probe round failed"),
                }
            });
            tokio::time::sleep_until((started + self.settings.second).into()).await;
        }
    }
}

enum Recorded {
    Unchanged,
    Saved { transitions: usize },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::embedded_store::EmbeddedStore;
    use crate::domain::route::{HealthStatus, RouteSpec};
    use crate::ports::{
        AuditQuery, Commit, EventPublisher, HistoryReader, Outbox, RouteReader, RouteWriter,
    };
    use crate::services::relay::Relay;
    use async_trait::async_trait;

    /// Answers each URL as told: up unless its host is in `down`.
    #[derive(Default)]
    struct ScriptedHttp {
        down: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl HttpProbe for ScriptedHttp {
        async fn probe(&self, url: &str, timeout: Duration, _: StatusRange) -> ProbeResult {
            if url.contains("hang.test") {
                tokio::time::sleep(timeout).await;
                return ProbeResult::Down("timed out".into());
            }
            let down = self.down.lock().unwrap();
            if down.iter().any(|d| url.contains(d.as_str())) {
                ProbeResult::Down("refused".into())
            } else {
                ProbeResult::Up
            }
        }
    }

    /// Accepts every event.
    struct Sink;

    #[async_trait]
    impl EventPublisher for Sink {
        async fn publish(&self, _: &[RouteEvent]) -> Result<()> {
            Ok(())
        }
    }

    async fn setup(
        second: Duration,
    ) -> (
        tempfile::TempDir,
        Arc<EmbeddedStore>,
        Arc<ScriptedHttp>,
        Prober,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
        let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
        let spec = RouteSpec::from_json(
            br#"{"endpoints":[{"id":"a","url":"http://a.test"},{"id":"b","url":"http://b.test"}],
                "health_check":{"path":"/healthz","interval_seconds":10,"timeout_seconds":1,"healthy_threshold":2,"unhealthy_threshold":2}}"#,
        )
        .unwrap();
        let route = Route::from_spec(&key, spec, 1, Timestamp::now(), "u");
        let event = RouteEvent {
            schema: SCHEMA,
            event_id: "e1".into(),
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
        };
        store
            .commit(&Commit {
                expected_revision: None,
                event,
            })
            .await
            .unwrap();
        let http = Arc::new(ScriptedHttp::default());
        let relay = Arc::new(Relay::new(store.clone(), Arc::new(Sink)));
        let prober = Prober::new(
            store.clone(),
            http.clone(),
            AfterCommit::Wake(relay),
            ProberSettings {
                concurrency: 4,
                second,
                refresh: Duration::from_secs(60),
            },
        );
        (dir, store, http, prober)
    }

    async fn rounds(p: &Prober, n: usize) -> RoundReport {
        let mut total = RoundReport::default();
        for _ in 0..n {
            let r = p.round().await.unwrap();
            total.probes += r.probes;
            total.saved += r.saved;
            total.transitions += r.transitions;
            tokio::time::sleep(Duration::from_millis(12)).await;
        }
        total
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_recorded_unhealthy_with_an_audit_entry_and_an_event_and_the_revision_stays()
     {
        // GIVEN a checked route whose endpoints both answer
        let (_dir, store, http, prober) = setup(Duration::from_millis(1)).await;
        let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
        let steady = rounds(&prober, 3).await;
        assert_eq!(steady.transitions, 0);
        let before = store.health(&key).await.unwrap().unwrap();
        assert!(
            before
                .endpoints
                .iter()
                .all(|e| e.status == HealthStatus::Healthy)
        );
        let writes_when_steady = steady.saved;
        // WHEN b stops answering for two probes (the unhealthy threshold)
        http.down.lock().unwrap().push("b.test".into());
        let r = rounds(&prober, 2).await;
        // THEN exactly one transition is recorded, b is unhealthy, a is untouched
        assert_eq!(r.transitions, 1);
        let h = store.health(&key).await.unwrap().unwrap();
        assert!(h.seq > before.seq);
        let b = h.endpoints.iter().find(|e| e.id.as_str() == "b").unwrap();
        assert_eq!(b.status, HealthStatus::Unhealthy);
        assert_eq!(b.last_error.as_deref(), Some("refused"));
        // AND the audit log says route.health_changed, the outbox holds the event
        let audit = store
            .audit(&AuditQuery {
                tenant: key.svc.tenant.clone(),
                kind: Some(ChangeType::HealthChanged),
                since: None,
                until: None,
                before_seq: None,
                limit: 10,
                max_scan: 100,
            })
            .await
            .unwrap()
            .items;
        assert_eq!(audit.len(), 1);
        assert_eq!((audit[0].1.revision, audit[0].1.by.as_str()), (1, ACTOR));
        let pending = store.pending(10).await.unwrap();
        let ev = pending
            .iter()
            .find(|p| p.event.kind == ChangeType::HealthChanged)
            .unwrap();
        assert!(ev.event.check().is_ok());
        assert_eq!(ev.event.health.as_ref().unwrap().seq, h.seq);
        // AND the route's revision did not move; its read shows the health
        let stored = store
            .get(&key, crate::ports::Consistency::Strong)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.revision, 1);
        assert_eq!(stored.health.unwrap().seq, h.seq);
        // AND a steady state costs no writes beyond the first record
        assert!(writes_when_steady <= 2, "{writes_when_steady}");
        // WHEN b answers again for two probes, THEN it is healthy again
        http.down.lock().unwrap().clear();
        let r = rounds(&prober, 2).await;
        assert_eq!(r.transitions, 1);
        let h = store.health(&key).await.unwrap().unwrap();
        assert!(
            h.endpoints
                .iter()
                .all(|e| e.status == HealthStatus::Healthy)
        );
    }

    #[tokio::test]
    async fn an_endpoint_is_probed_once_per_interval_not_once_per_round() {
        let (_dir, _store, _http, prober) = setup(Duration::from_millis(100)).await;
        // Two rounds in a row: the 1 s interval allows one probe per endpoint.
        let first = prober.round().await.unwrap();
        let second = prober.round().await.unwrap();
        assert_eq!((first.probes, second.probes), (2, 0));
    }

    #[tokio::test]
    async fn a_lost_race_with_another_prober_is_skipped_not_overwritten() {
        // GIVEN two probers on one store that both read seq n
        let (_dir, store, _http, prober) = setup(Duration::from_millis(1)).await;
        let key = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
        prober.round().await.unwrap();
        let h = store.health(&key).await.unwrap().unwrap();
        // WHEN one stores seq n+1, the other's write expecting n fails
        let mut next = h.clone();
        next.seq += 1;
        store
            .save_health(&key, Some(h.seq), &next, None)
            .await
            .unwrap();
        assert_eq!(
            store.save_health(&key, Some(h.seq), &next, None).await,
            Err(crate::Error::Conflict)
        );
    }

    #[tokio::test]
    async fn a_hanging_endpoint_of_one_route_does_not_delay_another_routes_record() {
        // GIVEN the checked route, and another whose endpoint hangs for its whole
        // timeout (1 s here)
        let (_dir, store, _http, prober) = setup(Duration::from_secs(1)).await;
        let slow = RouteKey::parse("acme", "slow", "prod", "1.0.0").unwrap();
        let spec = RouteSpec::from_json(
            br#"{"endpoints":[{"id":"h","url":"http://hang.test"}],
                "health_check":{"path":"/","interval_seconds":10,"timeout_seconds":1}}"#,
        )
        .unwrap();
        let route = Route::from_spec(&slow, spec, 1, Timestamp::now(), "u");
        let event = RouteEvent {
            schema: SCHEMA,
            event_id: "e2".into(),
            kind: ChangeType::Created,
            tenant: slow.svc.tenant.clone(),
            service: slow.svc.service.clone(),
            env: slow.svc.env.clone(),
            version: slow.version.clone(),
            revision: 1,
            occurred_at: route.updated_at,
            actor: "u".into(),
            correlation_id: "c".into(),
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
        // WHEN a round runs
        let prober = Arc::new(prober);
        let p = prober.clone();
        let round = tokio::spawn(async move { p.round().await });
        // THEN the fast route's state is stored long before the hanging probe ends
        let fast = RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
        let started = Instant::now();
        while store.health(&fast).await.unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_millis(700),
                "fast route waited"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(store.health(&slow).await.unwrap().is_none());
        let r = round.await.unwrap().unwrap();
        assert_eq!((r.probes, r.saved), (3, 2));
    }
}
