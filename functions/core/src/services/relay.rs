//! The outbox relay: publishes committed events that have not been published yet, oldest
//! first, and forgets them once the publisher accepted them. A publisher outage delays
//! events; it never loses one.
//!
//! One bad entry never stops the others:
//! - an entry the store cannot decode is parked ([`Outbox::park`]) as soon as a read
//!   meets it;
//! - a batch the publisher rejects with a fault that is not "try later" is published again
//!   one event at a time, and an event rejected on its own that way is parked; the others
//!   go out.
//!
//! "Try later" is [`Error::Unavailable`] (the broker is down or slow), `Throttled` or
//! `Conflict`: the drain stops there and the whole rest stays for the next run. Any other
//! error of the publisher means that it refused that event for good (it cannot be encoded,
//! or the broker rejected the record). A parked entry is kept, not lost: it is logged with
//! its id and reason, counted (`tm_outbox_parked_total`, which raises an alarm), listed by
//! [`Outbox::parked`] and replayed with [`Outbox::unpark`] (docs/reliability.md).

use crate::ports::{EventPublisher, Outbox, OutboxEntry};
use crate::{Error, Result};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Most events published in one call.
const BATCH: usize = 100;

/// Whether a publish that failed with `e` may succeed later as it is.
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable(_) | Error::Throttled { .. } | Error::Conflict
    )
}

/// Moves outbox entries to the publisher.
pub struct Relay {
    outbox: Arc<dyn Outbox>,
    publisher: Arc<dyn EventPublisher>,
    wake: Notify,
}

impl Relay {
    /// A relay from `outbox` to `publisher`.
    pub fn new(outbox: Arc<dyn Outbox>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self {
            outbox,
            publisher,
            wake: Notify::new(),
        }
    }

    /// Asks the background loop to drain now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Publishes everything pending, parking what can never be published; returns how
    /// many events went out.
    pub async fn drain(&self) -> Result<usize> {
        let mut total = 0;
        // What this drain parked: an entry that comes back after it was parked (a store
        // that could not move it) stops the drain instead of spinning on it.
        let mut parked = HashSet::new();
        loop {
            let pending = self.outbox.pending_all(BATCH).await?;
            crate::metrics::figures().backlog(pending.entries.len() + pending.undecodable.len());
            if pending.entries.is_empty() && pending.undecodable.is_empty() {
                return Ok(total);
            }
            for bad in &pending.undecodable {
                let reason = format!("undecodable: {}", bad.reason);
                self.park(&bad.id, &reason, &mut parked).await?;
            }
            if !pending.entries.is_empty() {
                total += self.publish(pending.entries, &mut parked).await?;
            }
        }
    }

    /// Publishes one batch; when the publisher rejects it for good, one event at a time.
    async fn publish(
        &self,
        entries: Vec<OutboxEntry>,
        parked: &mut HashSet<String>,
    ) -> Result<usize> {
        let events: Vec<_> = entries.iter().map(|p| p.event.clone()).collect();
        match self.publisher.publish(&events).await {
            Ok(()) => {
                let ids: Vec<String> = entries.into_iter().map(|p| p.id).collect();
                self.outbox.mark_published(&ids).await?;
                crate::metrics::figures().published(ids.len());
                Ok(ids.len())
            }
            Err(e) if retryable(&e) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, events = entries.len(), "the publisher rejected a batch; publishing it one event at a time");
                self.one_by_one(entries, parked).await
            }
        }
    }

    /// Publishes each entry on its own, in order, parking those the publisher rejects for
    /// good. Stops at a retryable failure; what went out before it is marked published.
    async fn one_by_one(
        &self,
        entries: Vec<OutboxEntry>,
        parked: &mut HashSet<String>,
    ) -> Result<usize> {
        let mut sent: Vec<String> = Vec::new();
        let mut stopped = None;
        for entry in entries {
            match self
                .publisher
                .publish(std::slice::from_ref(&entry.event))
                .await
            {
                Ok(()) => sent.push(entry.id),
                Err(e) if retryable(&e) => {
                    stopped = Some(e);
                    break;
                }
                Err(e) => {
                    let reason = format!("rejected by the publisher: {e}");
                    if let Err(e) = self.park(&entry.id, &reason, parked).await {
                        stopped = Some(e);
                        break;
                    }
                }
            }
        }
        if !sent.is_empty() {
            self.outbox.mark_published(&sent).await?;
            crate::metrics::figures().published(sent.len());
        }
        match stopped {
            Some(e) => Err(e),
            None => Ok(sent.len()),
        }
    }

    /// Sets one entry aside, counted and logged.
    async fn park(&self, id: &str, reason: &str, parked: &mut HashSet<String>) -> Result<()> {
        if !parked.insert(id.to_owned()) {
            return Err(Error::Internal(format!(
                "outbox entry {id} is still pending after it was parked"
            )));
        }
        self.outbox.park(id, reason).await?;
        crate::metrics::figures().outbox_parked();
        tracing::error!(
            outbox_id = %id,
            reason = %reason,
            "outbox entry parked: it will not be published until an operator replays it"
        );
        Ok(())
    }

    /// Drains on every wake-up and at least every `every`, forever; after a failure it
    /// backs off (up to 5 s) and tries again.
    pub async fn run(self: Arc<Self>, every: Duration) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.drain().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(events = n, "relay published");
                    }
                    backoff = Duration::from_millis(50);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(every) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "relay could not publish");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::embedded_store::EmbeddedStore;
    use crate::domain::event::{ChangeType, RouteEvent, SCHEMA};
    use crate::domain::names::RouteKey;
    use crate::domain::timefmt::Timestamp;
    use crate::ports::{Commit, RouteWriter};
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Records what it accepts; refuses every batch holding a revision in `rejects` (for
    /// good), and everything while `down` (try later).
    #[derive(Default)]
    struct Picky {
        rejects: Vec<u64>,
        down_at: Option<u64>,
        seen: Mutex<Vec<u64>>,
        calls: Mutex<usize>,
    }

    #[async_trait]
    impl EventPublisher for Picky {
        async fn publish(&self, events: &[RouteEvent]) -> Result<()> {
            *self.calls.lock().unwrap() += 1;
            if let Some(e) = events.iter().find(|e| self.rejects.contains(&e.revision)) {
                return Err(Error::Internal(format!(
                    "kafka: record of revision {} rejected: message too large",
                    e.revision
                )));
            }
            if events.iter().any(|e| Some(e.revision) == self.down_at) {
                return Err(Error::Unavailable("kafka: broker down".into()));
            }
            self.seen
                .lock()
                .unwrap()
                .extend(events.iter().map(|e| e.revision));
            Ok(())
        }
    }

    async fn store_with(n: u64) -> (tempfile::TempDir, Arc<EmbeddedStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
        let key = RouteKey::parse("acme", "svc", "prod", "1").unwrap();
        for rev in 1..=n {
            let event = RouteEvent {
                schema: SCHEMA,
                event_id: format!("e{rev}"),
                kind: ChangeType::Deleted,
                tenant: key.svc.tenant.clone(),
                service: key.svc.service.clone(),
                env: key.svc.env.clone(),
                version: key.version.clone(),
                revision: rev,
                occurred_at: Timestamp::now(),
                actor: "t".into(),
                correlation_id: "c".into(),
                route: None,
                health: None,
            };
            let expected_revision = (rev > 1).then_some(rev - 1);
            store
                .commit(&Commit {
                    expected_revision,
                    event,
                })
                .await
                .unwrap();
        }
        (dir, store)
    }

    #[tokio::test]
    async fn an_event_the_publisher_rejects_on_its_own_is_parked_and_the_others_go_out() {
        // GIVEN five events, and a publisher that refuses revision 3 for good
        let (_dir, store) = store_with(5).await;
        let publisher = Arc::new(Picky {
            rejects: vec![3],
            ..Picky::default()
        });
        let relay = Relay::new(store.clone(), publisher.clone());
        // WHEN the relay drains
        let published = relay.drain().await.unwrap();
        // THEN every other event went out, in order, and the outbox is empty
        assert_eq!(published, 4);
        assert_eq!(*publisher.seen.lock().unwrap(), [1, 2, 4, 5]);
        assert!(store.pending_all(10).await.unwrap().entries.is_empty());
        // AND the rejected one is parked with the publisher's reason, not lost
        let parked = store.parked(10).await.unwrap();
        assert_eq!(parked.len(), 1, "{parked:?}");
        assert!(
            parked[0].reason.contains("revision 3 rejected"),
            "{}",
            parked[0].reason
        );
        let event: RouteEvent = serde_json::from_str(parked[0].event.as_deref().unwrap()).unwrap();
        assert_eq!(event.revision, 3);
        // AND a second drain has nothing left to do
        assert_eq!(relay.drain().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_publisher_that_is_down_parks_nothing_and_keeps_every_event() {
        // GIVEN five events; the publisher fails for good on 2 and is down from 4 on
        let (_dir, store) = store_with(5).await;
        let publisher = Arc::new(Picky {
            rejects: vec![2],
            down_at: Some(4),
            ..Picky::default()
        });
        let relay = Relay::new(store.clone(), publisher.clone());
        // WHEN the relay drains, THEN it reports the outage
        assert!(matches!(relay.drain().await, Err(Error::Unavailable(_))));
        // AND what went out before the outage is published, 2 is parked, and the rest
        // (4 and 5, behind the outage) stays in the outbox
        assert_eq!(*publisher.seen.lock().unwrap(), [1, 3]);
        let left: Vec<u64> = store
            .pending(10)
            .await
            .unwrap()
            .iter()
            .map(|p| p.event.revision)
            .collect();
        assert_eq!(left, [4, 5]);
        assert_eq!(store.parked(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_outage_alone_parks_nothing() {
        let (_dir, store) = store_with(3).await;
        let publisher = Arc::new(Picky {
            down_at: Some(1),
            ..Picky::default()
        });
        let relay = Relay::new(store.clone(), publisher.clone());
        assert!(relay.drain().await.is_err());
        assert_eq!(
            *publisher.calls.lock().unwrap(),
            1,
            "a batch that failed with a fault to retry is not split"
        );
        assert_eq!(store.pending(10).await.unwrap().len(), 3);
        assert!(store.parked(10).await.unwrap().is_empty());
    }

    /// An outbox whose `park` answers `Ok` and moves nothing.
    struct Sticky(Arc<EmbeddedStore>);

    #[async_trait]
    impl Outbox for Sticky {
        async fn pending_all(&self, limit: usize) -> Result<crate::ports::PendingEntries> {
            self.0.pending_all(limit).await
        }
        async fn mark_published(&self, ids: &[String]) -> Result<()> {
            self.0.mark_published(ids).await
        }
        async fn park(&self, _: &str, _: &str) -> Result<()> {
            Ok(())
        }
        async fn parked(&self, limit: usize) -> Result<Vec<crate::ports::ParkedEntry>> {
            self.0.parked(limit).await
        }
        async fn unpark(&self, id: &str) -> Result<bool> {
            self.0.unpark(id).await
        }
    }

    #[tokio::test]
    async fn an_entry_that_stays_pending_after_it_was_parked_stops_the_drain() {
        let (_dir, store) = store_with(3).await;
        let publisher = Arc::new(Picky {
            rejects: vec![2],
            ..Picky::default()
        });
        let relay = Relay::new(Arc::new(Sticky(store.clone())), publisher.clone());
        let e = relay.drain().await.unwrap_err();
        assert!(
            e.to_string().contains("still pending after it was parked"),
            "{e}"
        );
        assert_eq!(*publisher.seen.lock().unwrap(), [1, 3]);
    }

    #[tokio::test]
    async fn a_replayed_entry_goes_out_on_the_next_drain() {
        let (_dir, store) = store_with(2).await;
        let relay = Relay::new(
            store.clone(),
            Arc::new(Picky {
                rejects: vec![1],
                ..Picky::default()
            }),
        );
        assert_eq!(relay.drain().await.unwrap(), 1);
        let id = store.parked(10).await.unwrap()[0].id.clone();
        // WHEN an operator replays it once the publisher accepts it
        assert!(store.unpark(&id).await.unwrap());
        assert!(!store.unpark(&id).await.unwrap(), "only once");
        let fixed = Arc::new(Picky::default());
        let relay = Relay::new(store.clone(), fixed.clone());
        // THEN it is published under its old id, and nothing stays parked
        assert_eq!(relay.drain().await.unwrap(), 1);
        assert_eq!(*fixed.seen.lock().unwrap(), [1]);
        assert!(store.parked(10).await.unwrap().is_empty());
    }
}
