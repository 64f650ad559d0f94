//! The relay function over the embedded store: a run publishes everything pending in
//! commit order and forgets it; a failed publish keeps every event for the next run.

use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tm_core::adapters::embedded_store::EmbeddedStore;
use tm_core::domain::event::{ChangeType, RouteEvent, SCHEMA};
use tm_core::domain::names::RouteKey;
use tm_core::domain::timefmt::Timestamp;
use tm_core::ports::{Commit, EventPublisher, Outbox, RouteWriter};
use tm_core::services::relay::Relay;
use tm_core::{Error, Result};
use tm_outbox_relay::{RelayHandler, RelayReport};

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<u64>>,
    down: AtomicBool,
}

#[async_trait]
impl EventPublisher for Recorder {
    async fn publish(&self, events: &[RouteEvent]) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::Unavailable("broker down".into()));
        }
        self.seen
            .lock()
            .unwrap()
            .extend(events.iter().map(|e| e.revision));
        Ok(())
    }
}

async fn commit_deletes(store: &EmbeddedStore, n: u64) {
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
        let expected = (rev > 1).then_some(rev - 1);
        store
            .commit(&Commit {
                expected_revision: expected,
                event,
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_run_publishes_every_pending_event_in_commit_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    commit_deletes(&store, 250).await;
    let publisher = Arc::new(Recorder::default());
    let handler = RelayHandler::new(
        Arc::new(Relay::new(store.clone(), publisher.clone())),
        Duration::from_secs(10),
    );
    assert_eq!(
        handler.handle().await,
        RelayReport {
            published: 250,
            drained: true
        }
    );
    assert_eq!(
        *publisher.seen.lock().unwrap(),
        (1..=250).collect::<Vec<u64>>()
    );
    assert!(store.pending(10).await.unwrap().is_empty());
    assert_eq!(
        handler.handle().await,
        RelayReport {
            published: 0,
            drained: true
        },
        "nothing is sent twice"
    );
}

#[tokio::test]
async fn a_broker_outage_keeps_every_event_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    commit_deletes(&store, 3).await;
    let publisher = Arc::new(Recorder::default());
    publisher.down.store(true, Ordering::SeqCst);
    let handler = RelayHandler::new(
        Arc::new(Relay::new(store.clone(), publisher.clone())),
        Duration::from_secs(10),
    );
    assert!(!handler.handle().await.drained);
    assert_eq!(store.pending(10).await.unwrap().len(), 3);
    publisher.down.store(false, Ordering::SeqCst);
    assert_eq!(
        handler.handle().await,
        RelayReport {
            published: 3,
            drained: true
        }
    );
    assert_eq!(*publisher.seen.lock().unwrap(), [1, 2, 3]);
}
