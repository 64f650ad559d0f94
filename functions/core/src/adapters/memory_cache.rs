//! The shared cache inside the process: what Redis is in AWS, with the same
//! apply-if-newer rule per version and the same "complete set" marker per service, and
//! each version's health state beside its entry (apply-if-newer by `seq`).
//!
//! Bounded like the Redis layout: entries with a real revision live in per-service
//! bundles (their number is bounded by what the store holds, which only authorised writes
//! grow); what clients can create by asking for things that do not exist (negative
//! entries, complete markers of empty sets) lives in two caches of at most
//! [`MAX_NEGATIVE_ENTRIES`] entries each, expiring after [`NEGATIVE_TTL`], as Redis
//! expires its negative keys.

use crate::Result;
use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, ServiceKey, VersionName};
use crate::ports::{CachedRoute, Probe, SharedCache};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a negative entry or an empty set's marker is kept (Redis:
/// [`NEGATIVE_KEY_TTL`](super::redis_cache) is the same 10 minutes).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most negative entries, and most empty-set markers, held at once.
pub const MAX_NEGATIVE_ENTRIES: u64 = 100_000;

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
pub struct MemoryCache {
    // A std Mutex: every critical section is a few map operations and never awaits.
    bundles: Mutex<HashMap<ServiceKey, Bundle>>,
    /// Versions known absent (revision 0), with no real entry in their bundle.
    absent: moka::sync::Cache<RouteKey, ()>,
    /// Services whose complete set is empty, with no bundle.
    empty_sets: moka::sync::Cache<ServiceKey, ()>,
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::bounded(MAX_NEGATIVE_ENTRIES, NEGATIVE_TTL)
    }
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache holding at most `max_negative` negative entries (and as many
    /// empty-set markers), each for at most `negative_ttl`.
    pub fn bounded(max_negative: u64, negative_ttl: Duration) -> Self {
        Self {
            bundles: Mutex::new(HashMap::new()),
            absent: moka::sync::Cache::builder()
                .max_capacity(max_negative)
                .time_to_live(negative_ttl)
                .build(),
            empty_sets: moka::sync::Cache::builder()
                .max_capacity(max_negative)
                .time_to_live(negative_ttl)
                .build(),
        }
    }

    /// Entries held in the bounded negative caches (pending evictions applied first).
    pub fn negative_len(&self) -> u64 {
        self.absent.run_pending_tasks();
        self.empty_sets.run_pending_tasks();
        self.absent.entry_count() + self.empty_sets.entry_count()
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
        let real = self.with(|m| {
            m.get(&key.svc).and_then(|b| {
                b.versions
                    .get(&key.version)
                    .map(|e| b.read(&key.version, e))
            })
        });
        Ok(real.or_else(|| self.absent.contains_key(key).then(negative)))
    }

    async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        let real = self.with(|m| {
            m.get(svc)
                .filter(|b| b.complete)
                .map(|b| b.versions.iter().map(|(v, e)| b.read(v, e)).collect())
        });
        Ok(real.or_else(|| self.empty_sets.contains_key(svc).then(Vec::new)))
    }

    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
        if entry.revision == 0 {
            let known = self.with(|m| {
                m.get(&key.svc)
                    .is_some_and(|b| b.versions.contains_key(&key.version))
            });
            if known || self.absent.contains_key(key) {
                return Ok(false);
            }
            self.absent.insert(key.clone(), ());
            return Ok(true);
        }
        let was_empty_set = self.empty_sets.contains_key(&key.svc);
        let stored = self.with(|m| {
            let b = m.entry(key.svc.clone()).or_default();
            b.complete |= was_empty_set;
            b.merge(&key.version, entry)
        });
        self.absent.invalidate(key);
        self.empty_sets.invalidate(&key.svc);
        Ok(stored)
    }

    async fn fill(&self, svc: &ServiceKey, entries: &[(VersionName, CachedRoute)]) -> Result<()> {
        // Negative entries add nothing a complete set does not already say.
        let real: Vec<_> = entries.iter().filter(|(_, e)| e.revision > 0).collect();
        let bundled = self.with(|m| {
            if real.is_empty() && !m.contains_key(svc) {
                return false;
            }
            let b = m.entry(svc.clone()).or_default();
            for (v, e) in &real {
                b.merge(v, e);
            }
            b.complete = true;
            true
        });
        if bundled {
            self.empty_sets.invalidate(svc);
        } else {
            self.empty_sets.insert(svc.clone(), ());
        }
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

/// The negative entry: known absent, revision 0.
fn negative() -> CachedRoute {
    CachedRoute {
        revision: 0,
        route: None,
        health: None,
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
    async fn lookups_of_things_that_do_not_exist_cannot_grow_the_cache_without_bound() {
        // GIVEN a cache bounded to 50 negative entries
        let c = MemoryCache::bounded(50, Duration::from_secs(600));
        // WHEN a client asks for 5,000 versions and 5,000 services that do not exist
        for n in 0..5_000 {
            c.apply(&key(&format!("9.{n}")), &entry(0)).await.unwrap();
            let svc = ServiceKey::parse("t", &format!("s{n}"), "e").unwrap();
            c.fill(&svc, &[]).await.unwrap();
        }
        // THEN at most 50 of each are kept, and no bundle was made for them
        assert!(c.negative_len() <= 100, "{}", c.negative_len());
        assert!(c.with(|m| m.is_empty()));
    }

    #[tokio::test]
    async fn negative_entries_expire_and_a_real_revision_replaces_them() {
        let c = MemoryCache::bounded(10, Duration::from_millis(50));
        assert!(c.apply(&key("1"), &entry(0)).await.unwrap());
        assert!(
            !c.apply(&key("1"), &entry(0)).await.unwrap(),
            "same revision"
        );
        assert_eq!(c.get(&key("1")).await.unwrap(), Some(entry(0)));
        assert!(c.apply(&key("1"), &entry(1)).await.unwrap());
        assert!(
            !c.apply(&key("1"), &entry(0)).await.unwrap(),
            "never hides a route"
        );
        assert_eq!(c.get(&key("1")).await.unwrap(), Some(entry(1)));

        c.apply(&key("2"), &entry(0)).await.unwrap();
        let empty = ServiceKey::parse("t", "none", "e").unwrap();
        c.fill(&empty, &[]).await.unwrap();
        assert_eq!(c.versions(&empty).await.unwrap(), Some(vec![]));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(c.get(&key("2")).await.unwrap(), None, "expired");
        assert_eq!(c.versions(&empty).await.unwrap(), None, "expired");
    }

    #[tokio::test]
    async fn an_empty_complete_set_stays_complete_when_its_first_route_arrives() {
        let c = MemoryCache::new();
        let svc = key("1").svc;
        c.fill(&svc, &[]).await.unwrap();
        c.apply(&key("1"), &entry(1)).await.unwrap();
        let revs: Vec<u64> = c
            .versions(&svc)
            .await
            .unwrap()
            .expect("still complete")
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(revs, [1]);
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
        use crate::domain::health::RouteHealth;
        use crate::domain::route::{HealthStatus, Route, RouteSpec};
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
