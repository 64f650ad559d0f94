//! Port implementations for measuring: a store wrapper that counts reads, a read-only
//! in-memory store, a cache that never holds anything, and a dead-letter sink.

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tm_core::Result;
use tm_core::domain::names::{RouteKey, ServiceKey, VersionName};
use tm_core::domain::route::Route;
use tm_core::ports::{
    CachedRoute, Consistency, DeadLetter, DeadLetters, RouteReader, SharedCache, StoredRoute,
};

/// Counts the reads that reach the store behind it.
pub struct CountingReader {
    inner: Arc<dyn RouteReader>,
    reads: AtomicU64,
}

impl CountingReader {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn RouteReader>) -> Self {
        Self {
            inner,
            reads: AtomicU64::new(0),
        }
    }

    /// Reads so far (`get` and `versions` alike).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl RouteReader for CountingReader {
    async fn get(&self, key: &RouteKey, read: Consistency) -> Result<Option<StoredRoute>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key, read).await
    }

    async fn versions(
        &self,
        svc: &ServiceKey,
        read: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.versions(svc, read).await
    }
}

/// A read-only store held in memory: for measurements where what matters is how often the
/// store is asked, not how fast it answers (100k routes in DynamoDB Local would take
/// minutes to write).
#[derive(Default)]
pub struct MemoryStore {
    by_svc: HashMap<ServiceKey, Vec<(VersionName, StoredRoute)>>,
}

impl MemoryStore {
    /// A store holding `routes`.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Self {
        let mut by_svc: HashMap<ServiceKey, Vec<(VersionName, StoredRoute)>> = HashMap::new();
        for r in routes {
            let key = r.key();
            by_svc.entry(key.svc).or_default().push((
                key.version,
                StoredRoute {
                    revision: r.revision,
                    route: Some(r),
                    health: None,
                },
            ));
        }
        Self { by_svc }
    }
}

#[async_trait]
impl RouteReader for MemoryStore {
    async fn get(&self, key: &RouteKey, _: Consistency) -> Result<Option<StoredRoute>> {
        Ok(self
            .by_svc
            .get(&key.svc)
            .and_then(|v| v.iter().find(|(name, _)| *name == key.version))
            .map(|(_, s)| s.clone()))
    }

    async fn versions(
        &self,
        svc: &ServiceKey,
        _: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        Ok(self.by_svc.get(svc).cloned().unwrap_or_default())
    }
}

/// A shared cache that never holds anything: every resolve goes to the store.
pub struct NullCache;

#[async_trait]
impl SharedCache for NullCache {
    async fn get(&self, _: &RouteKey) -> Result<Option<CachedRoute>> {
        Ok(None)
    }
    async fn versions(&self, _: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        Ok(None)
    }
    async fn apply(&self, _: &RouteKey, _: &CachedRoute) -> Result<bool> {
        Ok(true)
    }
    async fn fill(&self, _: &ServiceKey, _: &[(VersionName, CachedRoute)]) -> Result<()> {
        Ok(())
    }
}

/// Counts dead letters and keeps nothing.
#[derive(Default)]
pub struct CountingDeadLetters {
    /// Letters received.
    pub count: AtomicU64,
}

#[async_trait]
impl DeadLetters for CountingDeadLetters {
    async fn send(&self, _: &DeadLetter) -> Result<()> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[tokio::test]
    async fn the_memory_store_answers_and_the_wrapper_counts() {
        let k = fixtures::key(1, "1.0.0");
        let store = Arc::new(MemoryStore::new([fixtures::route(&k, 3, 3)]));
        let counting = CountingReader::new(store);
        let got = counting.get(&k, Consistency::Eventual).await.unwrap();
        assert_eq!(got.unwrap().revision, 3);
        let all = counting
            .versions(&k.svc, Consistency::Eventual)
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        let other = fixtures::key(2, "1.0.0");
        assert!(
            counting
                .get(&other, Consistency::Eventual)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(counting.reads(), 3);
    }
}
