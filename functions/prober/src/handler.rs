//! One prober run: probe rounds until the time budget is spent, then a report.

use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tm_core::services::prober::{Prober, RoundReport};

/// What one run did (the sum of its rounds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProberReport {
    /// Rounds run.
    pub rounds: usize,
    /// Probes made.
    pub probes: usize,
    /// Health states stored.
    pub saved: usize,
    /// Transitions recorded.
    pub transitions: usize,
    /// Rounds that failed as a whole (the store could not list the checked routes).
    pub failed_rounds: usize,
}

impl ProberReport {
    fn add(&mut self, r: &RoundReport) {
        self.probes += r.probes;
        self.saved += r.saved;
        self.transitions += r.transitions;
    }
}

/// The prober function's handler.
pub struct ProberHandler {
    prober: Arc<Prober>,
    budget: Duration,
    tick: Duration,
}

impl ProberHandler {
    /// Runs `prober` for `budget` per invocation, one round per `tick`.
    pub fn new(prober: Arc<Prober>, budget: Duration, tick: Duration) -> Self {
        Self {
            prober,
            budget,
            tick,
        }
    }

    /// One scheduled run. The scheduled event's content is not used.
    pub async fn handle(&self) -> ProberReport {
        let until = Instant::now() + self.budget;
        let mut report = ProberReport::default();
        loop {
            let started = Instant::now();
            report.rounds += 1;
            match self.prober.round().await {
                Ok(r) => report.add(&r),
                Err(e) => {
                    report.failed_rounds += 1;
                    tracing::warn!(error = %e, "probe round failed; the next one retries");
                }
            }
            let next = started + self.tick;
            if next >= until {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        tracing::info!(
            rounds = report.rounds,
            probes = report.probes,
            transitions = report.transitions,
            failed_rounds = report.failed_rounds,
            "prober run done"
        );
        report
    }
}
