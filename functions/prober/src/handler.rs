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
    /// Rounds still probing when the run ended (dropped; probed again next run).
    pub unfinished_rounds: usize,
}

impl ProberReport {
    fn take(&mut self, done: Result<tm_core::Result<RoundReport>, tokio::task::JoinError>) {
        match done {
            Ok(Ok(r)) => {
                self.probes += r.probes;
                self.saved += r.saved;
                self.transitions += r.transitions;
            }
            Ok(Err(e)) => {
                self.failed_rounds += 1;
                tracing::warn!(error = %e, "probe round failed; the next one retries");
            }
            Err(e) => {
                self.failed_rounds += 1;
                tracing::error!(error = %e, "a probe round task failed");
            }
        }
    }
}

/// The prober function's handler.
pub struct ProberHandler {
    prober: Arc<Prober>,
    budget: Duration,
    tick: Duration,
    grace: Duration,
}

impl ProberHandler {
    /// Starts a round of `prober` every `tick` for `budget` per invocation, then waits at
    /// most `grace` for the rounds still probing (the function timeout must cover
    /// `budget + grace`); rounds still running then are dropped, and their endpoints are
    /// probed again on the next run.
    pub fn new(prober: Arc<Prober>, budget: Duration, tick: Duration, grace: Duration) -> Self {
        Self {
            prober,
            budget,
            tick,
            grace,
        }
    }

    /// One scheduled run. The scheduled event's content is not used. Rounds start on
    /// every tick without waiting for the previous one, so slow probes of one round never
    /// delay the next.
    pub async fn handle(&self) -> ProberReport {
        let until = Instant::now() + self.budget;
        let mut report = ProberReport::default();
        let mut rounds = tokio::task::JoinSet::new();
        loop {
            let started = Instant::now();
            while let Some(done) = rounds.try_join_next() {
                report.take(done);
            }
            report.rounds += 1;
            let p = self.prober.clone();
            rounds.spawn(async move { p.round().await });
            let next = started + self.tick;
            if next >= until {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        let deadline = tokio::time::Instant::from_std(Instant::now() + self.grace);
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, rounds.join_next()).await {
            report.take(done);
        }
        report.unfinished_rounds = rounds.len();
        rounds.abort_all();
        tracing::info!(
            rounds = report.rounds,
            probes = report.probes,
            transitions = report.transitions,
            failed_rounds = report.failed_rounds,
            unfinished_rounds = report.unfinished_rounds,
            "prober run done"
        );
        report
    }
}
