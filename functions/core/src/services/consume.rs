//! Applying one event record to the shared cache. Idempotent (a redelivery changes
//! nothing), ordered by revision (an older one never overwrites a newer one), and a record
//! that can never be applied is reported as poison instead of blocking its partition.

use crate::Result;
use crate::domain::event::RouteEvent;
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
        let entry = CachedRoute {
            revision: event.revision,
            route: event.route.map(Arc::new),
        };
        if self.cache.apply(&route_key, &entry).await? {
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
