//! The shared cache inside the process: what Redis is in AWS, with the same
//! apply-if-newer rule per version and the same "complete set" marker per service, and
//! each version's health state beside its entry (apply-if-newer by `seq`).

use crate::Result;
use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, ServiceKey, VersionName};
use crate::ports::{CachedRoute, Probe, SharedCache};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Bundle {
    complete: bool,
    versions: HashMap<VersionName, CachedRoute>,
    health: HashMap<VersionName, Arc<RouteHealth>>,
}

impl Bundle {
    fn read(&self, version: &VersionName, entry: &CachedRoute) -> CachedRoute {
        entry.clone().with_health(self.health.get(version).cloned())
    }

    /// The route part by revision, the health part by `seq`; whether the route part was
    /// stored.
    fn merge(&mut self, version: &VersionName, entry: &CachedRoute) -> bool {
        if let Some(h) = &entry.health {
            merge_health(&mut self.health, version, h);
        }
        let route_part = CachedRoute {
            health: None,
            ..entry.clone()
        };
        merge(&mut self.versions, version, &route_part)
    }
}

fn merge_health(
    health: &mut HashMap<VersionName, Arc<RouteHealth>>,
    version: &VersionName,
    h: &Arc<RouteHealth>,
) -> bool {
    match health.get(version) {
        Some(old) if old.seq >= h.seq => false,
        _ => {
            health.insert(version.clone(), h.clone());
            true
        }
    }
}

/// The in-process shared cache.
#[derive(Default)]
pub struct MemoryCache {
    // A std Mutex: every critical section is a few map operations and never awaits.
    bundles: Mutex<HashMap<ServiceKey, Bundle>>,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<ServiceKey, Bundle>) -> T) -> T {
        let mut guard = match self.bundles.lock() {
            Ok(g) => g,
            // A panic elsewhere cannot leave a map half-updated in a way that matters here.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

fn merge(
    versions: &mut HashMap<VersionName, CachedRoute>,
    version: &VersionName,
    entry: &CachedRoute,
) -> bool {
    match versions.get(version) {
        Some(old) if old.revision >= entry.revision => false,
        _ => {
            versions.insert(version.clone(), entry.clone());
            true
        }
    }
}

#[async_trait]
impl SharedCache for MemoryCache {
    async fn get(&self, key: &RouteKey) -> Result<Option<CachedRoute>> {
        Ok(self.with(|m| {
            m.get(&key.svc).and_then(|b| {
                b.versions
                    .get(&key.version)
                    .map(|e| b.read(&key.version, e))
            })
        }))
    }

    async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        Ok(self.with(|m| {
            m.get(svc)
                .filter(|b| b.complete)
                .map(|b| b.versions.iter().map(|(v, e)| b.read(v, e)).collect())
        }))
    }

    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
        Ok(self.with(|m| {
            m.entry(key.svc.clone())
                .or_default()
                .merge(&key.version, entry)
        }))
    }

    async fn fill(&self, svc: &ServiceKey, entries: &[(VersionName, CachedRoute)]) -> Result<()> {
        self.with(|m| {
            let b = m.entry(svc.clone()).or_default();
            for (v, e) in entries {
                b.merge(v, e);
            }
            b.complete = true;
        });
        Ok(())
    }

    async fn apply_health(&self, key: &RouteKey, health: &RouteHealth) -> Result<bool> {
        let h = Arc::new(health.clone());
        Ok(self.with(|m| {
            merge_health(
                &mut m.entry(key.svc.clone()).or_default().health,
                &key.version,
                &h,
            )
        }))
    }
}

#[async_trait]
impl Probe for MemoryCache {
    fn name(&self) -> &'static str {
        "cache"
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> RouteKey {
        RouteKey::parse("t", "s", "e", v).unwrap()
    }

    fn entry(rev: u64) -> CachedRoute {
        CachedRoute {
            revision: rev,
            route: None,
            health: None,
        }
    }

    #[tokio::test]
    async fn an_older_revision_never_replaces_a_newer_one() {
        let c = MemoryCache::new();
        assert!(c.apply(&key("1"), &entry(5)).await.unwrap());
        assert!(!c.apply(&key("1"), &entry(4)).await.unwrap());
        assert!(
            !c.apply(&key("1"), &entry(5)).await.unwrap(),
            "redelivery changes nothing"
        );
        assert_eq!(c.get(&key("1")).await.unwrap().unwrap().revision, 5);
    }

    #[tokio::test]
    async fn versions_are_answered_only_once_the_set_is_complete() {
        let c = MemoryCache::new();
        c.apply(&key("2"), &entry(3)).await.unwrap();
        assert!(c.versions(&key("2").svc).await.unwrap().is_none());
        c.fill(
            &key("2").svc,
            &[(key("1").version, entry(1)), (key("2").version, entry(2))],
        )
        .await
        .unwrap();
        let mut revs: Vec<u64> = c
            .versions(&key("2").svc)
            .await
            .unwrap()
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect();
        revs.sort();
        assert_eq!(revs, [1, 3], "the fill kept the newer event-applied entry");
    }

    #[tokio::test]
    async fn health_state_is_ordered_by_its_own_seq_and_survives_route_events() {
        use crate::domain::health::{HealthStatus, RouteHealth};
        use crate::domain::route::{Route, RouteSpec};
        use crate::domain::timefmt::Timestamp;
        // GIVEN a checked route in the cache
        let c = MemoryCache::new();
        let k = key("1");
        let spec = RouteSpec::from_json(
            br#"{"endpoints":[{"id":"a","url":"http://a"}],"health_check":{"path":"/"}}"#,
        )
        .unwrap();
        let route = |rev| {
            Arc::new(Route::from_spec(
                &k,
                spec.clone(),
                rev,
                Timestamp::from_millis(0),
                "u",
            ))
        };
        let mut e = entry(1);
        e.route = Some(route(1));
        c.apply(&k, &e).await.unwrap();
        let state = |seq: u64, status: HealthStatus| RouteHealth {
            seq,
            endpoints: vec![crate::domain::health::EndpointHealth {
                id: route(1).endpoints[0].id.clone(),
                url: "http://a".into(),
                status,
                since: Timestamp::from_millis(seq as i64),
                successes: 0,
                failures: 0,
                last_error: None,
            }],
        };
        // WHEN health seq 2 (unhealthy) arrives, then an older seq 1 (healthy)
        assert!(
            c.apply_health(&k, &state(2, HealthStatus::Unhealthy))
                .await
                .unwrap()
        );
        assert!(
            !c.apply_health(&k, &state(1, HealthStatus::Healthy))
                .await
                .unwrap()
        );
        // AND a new route revision lands afterwards
        let mut e2 = entry(2);
        e2.route = Some(route(2));
        c.apply(&k, &e2).await.unwrap();
        // THEN the route shows the newest health on revision 2
        let got = c.get(&k).await.unwrap().unwrap();
        assert_eq!(got.revision, 2);
        let shown = got.route.unwrap().endpoints[0].health.unwrap();
        assert_eq!(shown.status, HealthStatus::Unhealthy);
        assert_eq!(got.health.unwrap().seq, 2);
    }
}
