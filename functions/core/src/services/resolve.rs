//! Resolution: L1 (in-process, `TM_L1_TTL_MS`) → shared cache → store (eventually
//! consistent), with one store read per key under a burst of misses, a stale answer when
//! the store cannot be reached, and the endpoint choice on top.

use crate::domain::names::{RouteKey, ServiceKey};
use crate::domain::pick;
use crate::domain::route::{Endpoint, Route};
use crate::domain::select::{Selector, VersionSet};
use crate::ports::{CachedRoute, Consistency, RouteReader, SharedCache};
use crate::singleflight::SingleFlight;
use crate::{Error, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which layer answered (`X-Cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// The in-process cache.
    HitL1,
    /// The shared cache.
    HitL2,
    /// The store.
    Miss,
    /// An expired in-process answer, served because the store could not be reached.
    Stale,
}

impl CacheSource {
    /// The `X-Cache` header value.
    pub fn header(self) -> &'static str {
        match self {
            CacheSource::HitL1 => "hit-l1",
            CacheSource::HitL2 => "hit-l2",
            CacheSource::Miss => "miss",
            CacheSource::Stale => "stale",
        }
    }
}

/// How long an expired L1 answer may still be served while the store is unreachable.
const STALE_FOR: Duration = Duration::from_secs(300);
/// Most L1 entries (selector answers) kept per process.
const L1_CAPACITY: u64 = 200_000;
/// A "no such route" answer is kept at most this long in L1, so a create shows up fast.
const NEGATIVE_TTL: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct L1Key {
    svc: ServiceKey,
    selector: String,
}

#[derive(Clone)]
struct L1Entry {
    route: Option<Arc<Route>>,
    fresh_until: Instant,
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
                .max_capacity(L1_CAPACITY)
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
    pub async fn resolve(&self, svc: &ServiceKey, selector_text: &str, selector: &Selector) -> Result<(Arc<Route>, CacheSource)> {
        let key = L1Key {
            svc: svc.clone(),
            selector: selector_text.to_owned(),
        };
        let cached = self.l1.as_ref().and_then(|l1| l1.get(&key));
        if let Some(e) = &cached
            && Instant::now() < e.fresh_until
        {
            return found(e.route.clone(), CacheSource::HitL1);
        }
        let loaded = self.flights.run(&key, || self.load(svc, selector)).await;
        match loaded {
            Ok((route, source)) => {
                if let Some(l1) = &self.l1 {
                    let ttl = if route.is_some() { self.l1_ttl } else { self.l1_ttl.min(NEGATIVE_TTL) };
                    l1.insert(
                        key,
                        Arc::new(L1Entry {
                            route: route.clone(),
                            fresh_until: Instant::now() + ttl,
                        }),
                    );
                }
                found(route, source)
            }
            Err(Error::Unavailable(why)) => match cached {
                Some(e) => {
                    tracing::warn!(reason = %why, "store unreachable; serving a stale answer");
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
                    Err(e) => tracing::warn!(error = %e, "shared cache unavailable; reading the store"),
                }
                let entry = CachedRoute::from_stored(self.store.get(&key, Consistency::Eventual).await?);
                if let Err(e) = self.cache.apply(&key, &entry).await {
                    tracing::warn!(error = %e, "could not fill the shared cache");
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
                    Err(e) => tracing::warn!(error = %e, "shared cache unavailable; reading the store"),
                }
                let stored = self.store.versions(svc, Consistency::Eventual).await?;
                let entries: Vec<_> = stored
                    .into_iter()
                    .map(|(v, s)| (v, CachedRoute::from_stored(Some(s))))
                    .collect();
                if let Err(e) = self.cache.fill(svc, &entries).await {
                    tracing::warn!(error = %e, "could not fill the shared cache");
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

fn found(route: Option<Arc<Route>>, source: CacheSource) -> Result<(Arc<Route>, CacheSource)> {
    route.map(|r| (r, source)).ok_or(Error::NotFound)
}

/// One endpoint in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chosen {
    /// Id.
    pub id: String,
    /// URL.
    pub url: String,
    /// Region, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One candidate in an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Id.
    pub id: String,
    /// URL.
    pub url: String,
    /// Weight.
    pub weight: u32,
    /// Region, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The resolve response body (CONTRACT §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// Tenant.
    pub tenant: String,
    /// Service.
    pub service: String,
    /// Environment.
    pub env: String,
    /// The version chosen.
    pub version: String,
    /// The endpoint to call.
    pub endpoint: Chosen,
    /// The winning priority group.
    pub candidates: Vec<Candidate>,
    /// The route's revision.
    pub revision: u64,
    /// How long the client may cache this answer.
    pub ttl_seconds: u32,
}

/// Chooses the endpoint; 503 `no_available_endpoint` when the route has no candidate.
pub fn answer(route: &Route, key: Option<&str>) -> Result<Answer> {
    let cands = pick::candidates(route);
    let chosen: &Endpoint = pick::choose(&cands, key).ok_or(Error::NoAvailableEndpoint)?;
    Ok(Answer {
        tenant: route.tenant.to_string(),
        service: route.service.to_string(),
        env: route.env.to_string(),
        version: route.version.to_string(),
        endpoint: Chosen {
            id: chosen.id.to_string(),
            url: chosen.url.clone(),
            region: chosen.region.as_ref().map(|r| r.to_string()),
        },
        candidates: cands
            .iter()
            .map(|e| Candidate {
                id: e.id.to_string(),
                url: e.url.clone(),
                weight: e.weight,
                region: e.region.as_ref().map(|r| r.to_string()),
            })
            .collect(),
        revision: route.revision,
        ttl_seconds: route.ttl_seconds,
    })
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
