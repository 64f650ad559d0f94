//! The shared cache inside the process: what Redis is in AWS, with the same
//! apply-if-newer rule per version and the same "complete set" marker per service.

use crate::Result;
use crate::domain::names::{RouteKey, ServiceKey, VersionName};
use crate::ports::{CachedRoute, Probe, SharedCache};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct Bundle {
    complete: bool,
    versions: HashMap<VersionName, CachedRoute>,
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
            m.get(&key.svc)
                .and_then(|b| b.versions.get(&key.version).cloned())
        }))
    }

    async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        Ok(self.with(|m| {
            m.get(svc)
                .filter(|b| b.complete)
                .map(|b| b.versions.values().cloned().collect())
        }))
    }

    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
        Ok(self.with(|m| {
            merge(
                &mut m.entry(key.svc.clone()).or_default().versions,
                &key.version,
                entry,
            )
        }))
    }

    async fn fill(&self, svc: &ServiceKey, entries: &[(VersionName, CachedRoute)]) -> Result<()> {
        self.with(|m| {
            let b = m.entry(svc.clone()).or_default();
            for (v, e) in entries {
                merge(&mut b.versions, v, e);
            }
            b.complete = true;
        });
        Ok(())
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
}
