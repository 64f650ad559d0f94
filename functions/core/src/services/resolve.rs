//! Resolution: L1 (in-process, `TM_L1_TTL_MS`) → shared cache → store (eventually
//! consistent), with one store read per key under a burst of misses, a stale answer when
//! the store cannot be reached, and the endpoint choice on top.

use crate::domain::names::{RouteKey, ServiceKey};
use crate::domain::route::{Endpoint, Route};
use crate::domain::select::{Selector, VersionSet};
use crate::ports::{CacheSource, CachedRoute, Consistency, RouteReader, SharedCache};
use crate::services::render::Resolved;
use crate::singleflight::SingleFlight;
use crate::{Error, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an expired L1 answer may still be served while the store is unreachable.
const STALE_FOR: Duration = Duration::from_secs(300);
/// The most memory L1 may hold, by the estimate of [`entry_bytes`]. A budget in bytes,
/// not in entries: a route may hold 64 endpoints with 2 KB URLs, so a count alone bounds
/// nothing (200,000 entries were 320 MB of 3-endpoint routes; of large routes they would
/// be gigabytes). 128 MiB keeps tm-local under 200 MB and leaves the resolve Lambda (512
/// MB) room; it holds about 90,000 entries of 3-endpoint routes. When full, the cache
/// keeps the entries used most (TinyLFU), so the hot routes stay.
const L1_BUDGET_BYTES: u64 = 128 * 1024 * 1024;
/// A "no such route" answer is kept at most this long in L1, so a create shows up fast.
const NEGATIVE_TTL: Duration = Duration::from_millis(500);

/// An L1 (and single-flight) key: `tenant/service/env/selector` in one string, so a
/// lookup builds and hashes one string instead of four. Names never hold a `/` and the
/// selector comes last, so two different pairs never make the same key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct L1Key(String);

impl L1Key {
    fn new(svc: &ServiceKey, selector: &str) -> Self {
        let (t, s, e) = (svc.tenant.as_str(), svc.service.as_str(), svc.env.as_str());
        let mut k = String::with_capacity(t.len() + s.len() + e.len() + selector.len() + 3);
        for part in [t, "/", s, "/", e, "/", selector] {
            k.push_str(part);
        }
        Self(k)
    }
}

#[derive(Clone)]
struct L1Entry {
    route: Option<Arc<Resolved>>,
    fresh_until: Instant,
    /// [`entry_bytes`], computed once.
    weight: u32,
}

/// What an L1 entry costs in memory, estimated: the cache's own bookkeeping, the key, and
/// the decoded route with its allocations (each heap block costs its length rounded up
/// to 16 bytes, plus 16). Measured against the real thing: a 3-endpoint route with short
/// names and ~40-character URLs is about 1.45 KB as an entry, and estimates to about that.
fn entry_bytes(key: &L1Key, resolved: Option<&Resolved>) -> u32 {
    /// moka's per-entry bookkeeping (entry, deque nodes, hash) and the `Arc<L1Entry>`.
    const ENTRY: usize = 420;
    fn block(len: usize) -> usize {
        if len == 0 {
            0
        } else {
            len.div_ceil(16) * 16 + 16
        }
    }
    let mut bytes = ENTRY + block(key.0.len());
    if let Some(resolved) = resolved {
        let r = resolved.route();
        // The `Resolved` (its candidate indexes included) and its encoded answers.
        bytes += block(std::mem::size_of::<Resolved>() + 16) + block(r.endpoints.len() * 8);
        bytes += resolved.bodies_bytes();
        bytes += block(std::mem::size_of::<Route>() + 16);
        for s in [
            r.tenant.as_str(),
            r.service.as_str(),
            r.env.as_str(),
            r.version.as_str(),
            r.updated_by.as_str(),
        ] {
            bytes += block(s.len());
        }
        bytes += block(r.endpoints.capacity() * std::mem::size_of::<Endpoint>());
        for e in &r.endpoints {
            bytes += block(e.id.as_str().len()) + block(e.url.len());
            bytes += e.region.as_ref().map_or(0, |g| block(g.as_str().len()));
        }
        for (k, v) in &r.labels {
            // Plus the B-tree's share of a node per pair.
            bytes += block(k.as_str().len()) + block(v.as_str().len()) + 64;
        }
    }
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

type Loaded = std::result::Result<(Option<Arc<Route>>, CacheSource), Error>;

/// The resolve function's service.
pub struct Resolver {
    store: Arc<dyn RouteReader>,
    cache: Arc<dyn SharedCache>,
    l1: Option<moka::sync::Cache<L1Key, Arc<L1Entry>>>,
    l1_ttl: Duration,
    flights: SingleFlight<L1Key, Loaded>,
}

impl Resolver {
    /// `l1_ttl` of zero turns the in-process cache off.
    pub fn new(store: Arc<dyn RouteReader>, cache: Arc<dyn SharedCache>, l1_ttl: Duration) -> Self {
        let l1 = (!l1_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(L1_BUDGET_BYTES)
                .weigher(|_: &L1Key, e: &Arc<L1Entry>| e.weight)
                .time_to_live(l1_ttl + STALE_FOR)
                .build()
        });
        Self {
            store,
            cache,
            l1,
            l1_ttl,
            flights: SingleFlight::default(),
        }
    }

    /// The active route the selector picks, and which layer answered. `NotFound` when no
    /// active route matches.
    pub async fn resolve(
        &self,
        svc: &ServiceKey,
        selector_text: &str,
        selector: &Selector,
    ) -> Result<(Arc<Route>, CacheSource)> {
        let (resolved, source) = self.resolve_rendered(svc, selector_text, selector).await?;
        Ok((resolved.route().clone(), source))
    }

    /// [`Resolver::resolve`], with the route's answers as resolve serves them: from L1,
    /// the answers already encoded for earlier requests.
    pub async fn resolve_rendered(
        &self,
        svc: &ServiceKey,
        selector_text: &str,
        selector: &Selector,
    ) -> Result<(Arc<Resolved>, CacheSource)> {
        let key = L1Key::new(svc, selector_text);
        let cached = self.l1.as_ref().and_then(|l1| l1.get(&key));
        if let Some(e) = &cached
            && Instant::now() < e.fresh_until
        {
            return found(e.route.clone(), CacheSource::HitL1);
        }
        let loaded = self.flights.run(&key, || self.load(svc, selector)).await;
        match loaded {
            Ok((route, source)) => {
                let route = route.map(|r| Arc::new(Resolved::new(r)));
                if let Some(l1) = &self.l1 {
                    let ttl = if route.is_some() {
                        self.l1_ttl
                    } else {
                        self.l1_ttl.min(NEGATIVE_TTL)
                    };
                    let weight = entry_bytes(&key, route.as_deref());
                    l1.insert(
                        key,
                        Arc::new(L1Entry {
                            weight,
                            route: route.clone(),
                            fresh_until: Instant::now() + ttl,
                        }),
                    );
                }
                found(route, source)
            }
            // Only a stale route is served: a stale "no such route" would turn an outage
            // into a 404 for a route that may have been created since.
            Err(Error::Unavailable(why)) => match cached.filter(|e| e.route.is_some()) {
                Some(e) => {
                    tracing::warn!(service = %svc.event_key(), version = selector_text, reason = %why, "store unreachable; serving a stale answer");
                    found(e.route.clone(), CacheSource::Stale)
                }
                None => Err(Error::Unavailable(why)),
            },
            Err(e) => Err(e),
        }
    }

    /// Shared cache, then store; fills the shared cache from what the store said.
    async fn load(&self, svc: &ServiceKey, selector: &Selector) -> Loaded {
        match selector {
            Selector::Exact(version) => {
                let key = RouteKey {
                    svc: svc.clone(),
                    version: version.clone(),
                };
                match self.cache.get(&key).await {
                    Ok(Some(entry)) => return Ok((active(entry.route), CacheSource::HitL2)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(route = %key, error = %e, "shared cache unavailable; reading the store")
                    }
                }
                crate::metrics::figures().store_read(false);
                let entry =
                    CachedRoute::from_stored(self.store.get(&key, Consistency::Eventual).await?);
                if let Err(e) = self.cache.apply(&key, &entry).await {
                    tracing::warn!(route = %key, error = %e, "could not fill the shared cache");
                }
                Ok((active(entry.route), CacheSource::Miss))
            }
            Selector::Latest | Selector::Range(_) => {
                match self.cache.versions(svc).await {
                    Ok(Some(entries)) => {
                        let set = VersionSet::new(entries.into_iter().filter_map(|e| e.route));
                        return Ok((set.choose(selector), CacheSource::HitL2));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(service = %svc.event_key(), error = %e, "shared cache unavailable; reading the store")
                    }
                }
                crate::metrics::figures().store_read(true);
                let stored = self.store.versions(svc, Consistency::Eventual).await?;
                let entries: Vec<_> = stored
                    .into_iter()
                    .map(|(v, s)| (v, CachedRoute::from_stored(Some(s))))
                    .collect();
                if let Err(e) = self.cache.fill(svc, &entries).await {
                    tracing::warn!(service = %svc.event_key(), error = %e, "could not fill the shared cache");
                }
                let set = VersionSet::new(entries.into_iter().filter_map(|(_, e)| e.route));
                Ok((set.choose(selector), CacheSource::Miss))
            }
        }
    }
}

fn active(route: Option<Arc<Route>>) -> Option<Arc<Route>> {
    route.filter(|r| r.active)
}

fn found(
    route: Option<Arc<Resolved>>,
    source: CacheSource,
) -> Result<(Arc<Resolved>, CacheSource)> {
    match route {
        Some(r) => Ok((r, source)),
        None => {
            crate::metrics::figures().negative(source);
            Err(Error::NotFound)
        }
    }
}

/// Checks a sticky key: 1–256 chars.
pub fn check_sticky_key(key: &str) -> Result<()> {
    let n = key.chars().count();
    if (1..=256).contains(&n) {
        Ok(())
    } else {
        Err(Error::invalid("key", "must be 1 to 256 characters"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory_cache::MemoryCache;
    use crate::domain::names::VersionName;
    use crate::domain::route::RouteSpec;
    use crate::domain::timefmt::Timestamp;
    use crate::ports::StoredRoute;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A store holding a fixed set of routes, counting reads, that can be switched off.
    #[derive(Default)]
    struct FakeStore {
        routes: Mutex<Vec<Route>>,
        reads: AtomicUsize,
        down: AtomicBool,
    }

    impl FakeStore {
        fn put(&self, version: &str, revision: u64, active: bool) {
            let key = RouteKey::parse("t", "s", "e", version).unwrap();
            let mut spec =
                RouteSpec::from_json(br#"{"endpoints":[{"id":"a","url":"https://a"}]}"#).unwrap();
            spec.active = active;
            let mut routes = self.routes.lock().unwrap();
            routes.retain(|r| r.version.as_str() != version);
            routes.push(Route::from_spec(
                &key,
                spec,
                revision,
                Timestamp::from_millis(0),
                "u",
            ));
        }

        fn check(&self) -> Result<()> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::Unavailable("store down".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl RouteReader for FakeStore {
        async fn get(&self, key: &RouteKey, _: Consistency) -> Result<Option<StoredRoute>> {
            self.check()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let routes = self.routes.lock().unwrap();
            Ok(routes
                .iter()
                .find(|r| r.key() == *key)
                .map(|r| StoredRoute {
                    revision: r.revision,
                    route: Some(r.clone()),
                    health: None,
                }))
        }

        async fn versions(
            &self,
            _: &ServiceKey,
            _: Consistency,
        ) -> Result<Vec<(VersionName, StoredRoute)>> {
            self.check()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let routes = self.routes.lock().unwrap();
            Ok(routes
                .iter()
                .map(|r| {
                    (
                        r.version.clone(),
                        StoredRoute {
                            revision: r.revision,
                            route: Some(r.clone()),
                            health: None,
                        },
                    )
                })
                .collect())
        }
    }

    fn svc() -> ServiceKey {
        ServiceKey::parse("t", "s", "e").unwrap()
    }

    fn setup(l1: Duration) -> (Arc<FakeStore>, Arc<MemoryCache>, Arc<Resolver>) {
        let store = Arc::new(FakeStore::default());
        let cache = Arc::new(MemoryCache::new());
        let r = Arc::new(Resolver::new(store.clone(), cache.clone(), l1));
        (store, cache, r)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_misses_on_one_key_read_the_store_once() {
        // GIVEN a route only the store knows
        let (store, _, r) = setup(Duration::from_secs(1));
        store.put("1.0.0", 1, true);
        // WHEN 1000 resolves arrive together
        let barrier = Arc::new(tokio::sync::Barrier::new(1000));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (r, b) = (r.clone(), barrier.clone());
                tokio::spawn(async move {
                    b.wait().await;
                    r.resolve(&svc(), "latest", &Selector::Latest)
                        .await
                        .map(|(route, _)| route.revision)
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 1);
        }
        // THEN the store was read exactly once
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn layers_answer_in_order_and_say_which_one_did() {
        let (store, cache, r) = setup(Duration::from_millis(50));
        store.put("1.0.0", 1, true);
        let sel = Selector::parse("1.0.0").unwrap();
        assert_eq!(
            r.resolve(&svc(), "1.0.0", &sel).await.unwrap().1,
            CacheSource::Miss
        );
        assert_eq!(
            r.resolve(&svc(), "1.0.0", &sel).await.unwrap().1,
            CacheSource::HitL1
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            r.resolve(&svc(), "1.0.0", &sel).await.unwrap().1,
            CacheSource::HitL2,
            "the miss filled the shared cache"
        );
        assert_eq!(
            cache
                .get(&RouteKey::parse("t", "s", "e", "1.0.0").unwrap())
                .await
                .unwrap()
                .unwrap()
                .revision,
            1
        );
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }

    /// A shared cache that can be switched off.
    #[derive(Default)]
    struct SwitchCache {
        inner: MemoryCache,
        down: AtomicBool,
    }

    impl SwitchCache {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::Unavailable("cache down".into()));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl SharedCache for SwitchCache {
        async fn get(&self, key: &RouteKey) -> Result<Option<CachedRoute>> {
            self.check()?;
            self.inner.get(key).await
        }
        async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
            self.check()?;
            self.inner.versions(svc).await
        }
        async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
            self.check()?;
            self.inner.apply(key, entry).await
        }
        async fn fill(
            &self,
            svc: &ServiceKey,
            entries: &[(VersionName, CachedRoute)],
        ) -> Result<()> {
            self.check()?;
            self.inner.fill(svc, entries).await
        }
    }

    #[tokio::test]
    async fn an_expired_negative_answer_with_both_backends_down_is_503_not_404() {
        // GIVEN "no such route" in L1, then the cache and the store both go down
        let store = Arc::new(FakeStore::default());
        let cache = Arc::new(SwitchCache::default());
        let r = Resolver::new(store.clone(), cache.clone(), Duration::from_millis(30));
        let sel = Selector::parse("1.0.0").unwrap();
        assert!(matches!(
            r.resolve(&svc(), "1.0.0", &sel).await,
            Err(Error::NotFound)
        ));
        cache.down.store(true, Ordering::SeqCst);
        store.down.store(true, Ordering::SeqCst);
        // WHEN the negative L1 entry has expired
        tokio::time::sleep(Duration::from_millis(40)).await;
        // THEN the answer is 503: nothing current says the route is absent
        assert!(matches!(
            r.resolve(&svc(), "1.0.0", &sel).await,
            Err(Error::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_stale_answer_is_served_only_when_nothing_fresher_can_be_reached() {
        // GIVEN an answer in L1, then the cache and the store both go down
        let store = Arc::new(FakeStore::default());
        store.put("1.0.0", 1, true);
        let cache = Arc::new(SwitchCache::default());
        let r = Resolver::new(store.clone(), cache.clone(), Duration::from_millis(30));
        r.resolve(&svc(), "latest", &Selector::Latest)
            .await
            .unwrap();
        cache.down.store(true, Ordering::SeqCst);
        // WHEN only the cache is down, the store answers
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            r.resolve(&svc(), "latest", &Selector::Latest)
                .await
                .unwrap()
                .1,
            CacheSource::Miss
        );
        // WHEN both are down and L1 has expired
        store.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40)).await;
        // THEN the expired answer is served as stale, and a selector never seen is 503
        let (route, source) = r
            .resolve(&svc(), "latest", &Selector::Latest)
            .await
            .unwrap();
        assert_eq!((route.revision, source), (1, CacheSource::Stale));
        let never = Selector::parse("^1").unwrap();
        assert!(matches!(
            r.resolve(&svc(), "^1", &never).await,
            Err(Error::Unavailable(_))
        ));
        // AND when they come back, fresh answers return by themselves
        store.down.store(false, Ordering::SeqCst);
        cache.down.store(false, Ordering::SeqCst);
        assert_eq!(
            r.resolve(&svc(), "latest", &Selector::Latest)
                .await
                .unwrap()
                .1,
            CacheSource::HitL2
        );
    }

    #[tokio::test]
    async fn inactive_routes_and_unknown_versions_are_not_found() {
        let (store, _, r) = setup(Duration::ZERO);
        store.put("1.0.0", 1, false);
        assert_eq!(
            r.resolve(&svc(), "latest", &Selector::Latest)
                .await
                .unwrap_err(),
            Error::NotFound
        );
        let exact = Selector::parse("1.0.0").unwrap();
        assert_eq!(
            r.resolve(&svc(), "1.0.0", &exact).await.unwrap_err(),
            Error::NotFound
        );
        let missing = Selector::parse("2.0.0").unwrap();
        assert_eq!(
            r.resolve(&svc(), "2.0.0", &missing).await.unwrap_err(),
            Error::NotFound
        );
    }

    #[test]
    fn l1_entries_weigh_what_their_routes_hold() {
        let key = L1Key::new(&svc(), "latest");
        let small = RouteSpec::from_json(
            br#"{"endpoints":[{"id":"blue","url":"https://blue-1.checkout.internal:8443","weight":90},{"id":"green","url":"https://green-1.checkout.internal:8443","weight":10},{"id":"dr","url":"https://dr.checkout.internal","priority":1}]}"#,
        )
        .unwrap();
        let rk = RouteKey::parse("bench", "svc-12345", "prod", "1.0.0").unwrap();
        let small = Route::from_spec(&rk, small, 1, Timestamp::from_millis(0), "bench");
        // Measured: about 1.45 KB per entry of this route (decoded route + moka entry),
        // plus its two candidates' encoded answers (about 330 bytes each; estimated high).
        let small = Resolved::new(Arc::new(small));
        let w = entry_bytes(&key, Some(&small));
        assert!((2_200..=3_000).contains(&w), "{w}");
        assert!(entry_bytes(&key, None) < 600);
        // The largest route the contract allows weighs what it holds.
        let url = format!("https://{}.example", "a".repeat(2000));
        let eps: Vec<String> = (0..64)
            .map(|i| format!(r#"{{"id":"e{i}","url":"{url}"}}"#))
            .collect();
        let big =
            RouteSpec::from_json(format!(r#"{{"endpoints":[{}]}}"#, eps.join(",")).as_bytes())
                .unwrap();
        let big = Route::from_spec(&rk, big, 1, Timestamp::from_millis(0), "bench");
        assert!(entry_bytes(&key, Some(&Resolved::new(Arc::new(big)))) > 128_000);
    }

    #[test]
    fn a_sticky_key_holds_1_to_256_characters() {
        assert!(check_sticky_key("").is_err());
        assert!(check_sticky_key(&"é".repeat(256)).is_ok());
        assert!(check_sticky_key(&"é".repeat(257)).is_err());
    }
}
