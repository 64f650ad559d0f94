//! One relay run: drains the outbox within a time budget, so a long backlog is spread
//! over several runs instead of hitting the function timeout.

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tm_core::services::relay::Relay;

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelayReport {
    /// Events published.
    pub published: usize,
    /// Whether the outbox was empty at the end (false: the budget ran out or the
    /// publisher failed; the next run goes on).
    pub drained: bool,
}

/// The relay function's handler.
pub struct RelayHandler {
    relay: Arc<Relay>,
    budget: Duration,
}

impl RelayHandler {
    /// Drains through `relay`, spending at most `budget` per run.
    pub fn new(relay: Arc<Relay>, budget: Duration) -> Self {
        Self { relay, budget }
    }

    /// One scheduled run. The scheduled event's content is not used.
    pub async fn handle(&self) -> RelayReport {
        match tokio::time::timeout(self.budget, self.relay.drain()).await {
            Ok(Ok(n)) => {
                tracing::info!(published = n, "outbox drained");
                RelayReport {
                    published: n,
                    drained: true,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "outbox relay could not publish; the next run retries");
                RelayReport {
                    published: 0,
                    drained: false,
                }
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = self.budget.as_millis() as u64,
                    "outbox relay ran out of time; the next run goes on"
                );
                RelayReport {
                    published: 0,
                    drained: false,
                }
            }
        }
    }
}
