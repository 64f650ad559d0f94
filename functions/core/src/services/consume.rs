//! Applying one event record to the shared cache. Idempotent (a redelivery changes
//! nothing), ordered by revision (an older one never overwrites a newer one; health
//! changes by their own `seq`), and a record that can never be applied is reported as
//! poison instead of blocking its partition.

use crate::Result;
use crate::domain::event::{ChangeType, RouteEvent};
use crate::ports::{CachedRoute, SharedCache};
use std::sync::Arc;

/// What became of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The cache now reflects the event.
    Applied,
    /// The cache already held this or a newer revision.
    Skipped,
    /// The record can never be applied; the reason goes to the dead-letter topic.
    Poison(String),
}

/// The consumer's service.
pub struct Consumer {
    cache: Arc<dyn SharedCache>,
}

impl Consumer {
    /// A consumer writing to `cache`.
    pub fn new(cache: Arc<dyn SharedCache>) -> Self {
        Self { cache }
    }

    /// Checks and applies one record (decoded key and value). `Err` means a retryable fault
    /// (the cache is down); poison is `Ok(Outcome::Poison)`.
    pub async fn apply(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Outcome> {
        let Some(value) = value else {
            return Ok(Outcome::Poison("record has no value".into()));
        };
        let event: RouteEvent = match serde_json::from_slice(value) {
            Ok(e) => e,
            Err(e) => return Ok(Outcome::Poison(format!("value is not a route event: {e}"))),
        };
        if let Err(why) = event.check() {
            return Ok(Outcome::Poison(why));
        }
        let route_key = event.key();
        let expected = route_key.svc.event_key();
        if key != Some(expected.as_bytes()) {
            return Ok(Outcome::Poison(format!(
                "record key does not match the event (expected {expected})"
            )));
        }
        let applied = match (event.kind, &event.health) {
            (ChangeType::HealthChanged, Some(health)) => {
                self.cache.apply_health(&route_key, health).await?
            }
            _ => {
                let entry = CachedRoute {
                    revision: event.revision,
                    route: event.route.clone().map(Arc::new),
                    health: None,
                };
                self.cache.apply(&route_key, &entry).await?
            }
        };
        if applied {
            tracing::info!(
                correlation_id = %event.correlation_id,
                route = %route_key,
                revision = event.revision,
                kind = event.kind.as_str(),
                "event applied"
            );
            Ok(Outcome::Applied)
        } else {
            Ok(Outcome::Skipped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory_cache::MemoryCache;

    fn health_event(seq: u64, status: &str) -> Vec<u8> {
        format!(
            r#"{{"schema":1,"event_id":"e{seq}","type":"route.health_changed","tenant":"acme","service":"checkout","env":"prod",
            "version":"1.0.0","revision":1,"occurred_at":"2026-12-05T08:00:00.000Z","actor":"prober","correlation_id":"c",
            "route":null,"health":{{"seq":{seq},"endpoints":[{{"id":"a","url":"http://a","status":"{status}",
            "since":"2026-12-05T08:00:00.000Z","successes":0,"failures":3}}]}}}}"#
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn health_events_apply_by_seq_and_an_older_one_is_skipped() {
        // GIVEN a consumer over an empty cache
        let cache = Arc::new(MemoryCache::new());
        let c = Consumer::new(cache.clone());
        let key = Some(&b"acme/checkout/prod"[..]);
        // WHEN seq 2 arrives, then seq 1 (reordered), then seq 2 again (redelivered)
        let two = health_event(2, "unhealthy");
        assert_eq!(c.apply(key, Some(&two)).await.unwrap(), Outcome::Applied);
        let one = health_event(1, "healthy");
        assert_eq!(c.apply(key, Some(&one)).await.unwrap(), Outcome::Skipped);
        assert_eq!(c.apply(key, Some(&two)).await.unwrap(), Outcome::Skipped);
        // THEN the cache holds seq 2: another seq 2 is refused, a seq 3 accepted
        let rk =
            crate::domain::names::RouteKey::parse("acme", "checkout", "prod", "1.0.0").unwrap();
        let state = |seq: u64| crate::domain::health::RouteHealth {
            seq,
            endpoints: Vec::new(),
        };
        assert!(!cache.apply_health(&rk, &state(2)).await.unwrap());
        assert!(cache.apply_health(&rk, &state(3)).await.unwrap());
        assert!(
            cache.versions(&rk.svc).await.unwrap().is_none(),
            "health alone does not complete a set"
        );
    }

    #[tokio::test]
    async fn a_health_event_without_health_is_poison() {
        let c = Consumer::new(Arc::new(MemoryCache::new()));
        let bad = String::from_utf8(health_event(1, "healthy"))
            .unwrap()
            .replace(r#""route":null,"health""#, r#""route":null,"x""#);
        let out = c
            .apply(Some(&b"acme/checkout/prod"[..]), Some(bad.as_bytes()))
            .await
            .unwrap();
        assert!(matches!(out, Outcome::Poison(_)), "{out:?}");
    }
}
