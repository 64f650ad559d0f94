//! The outbox relay: publishes committed events that have not been published yet, oldest
//! first, and forgets them once the publisher accepted them. A publisher outage delays
//! events; it never loses one.

use crate::Result;
use crate::ports::{EventPublisher, Outbox};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Most events published in one call.
const BATCH: usize = 100;

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

    /// Publishes everything pending; returns how many events went out.
    pub async fn drain(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let pending = self.outbox.pending(BATCH).await?;
            crate::metrics::figures().backlog(pending.len());
            if pending.is_empty() {
                return Ok(total);
            }
            let events: Vec<_> = pending.iter().map(|p| p.event.clone()).collect();
            self.publisher.publish(&events).await?;
            let ids: Vec<String> = pending.into_iter().map(|p| p.id).collect();
            self.outbox.mark_published(&ids).await?;
            crate::metrics::figures().published(ids.len());
            total += ids.len();
        }
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
