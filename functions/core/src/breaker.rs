//! A per-instance circuit breaker: it stops a process from hammering a backend that is
//! down, and never trips on one that is merely busy.
//!
//! # Rules
//! - **Closed** (normal): every call goes through. A call that fails with
//!   [`Error::Unavailable`] (the backend did not answer, timed out, or said it is
//!   overloaded) counts as a failure; any other outcome, errors included (`NotFound`,
//!   `Conflict`, `Internal`), proves the backend answered and resets the count. After
//!   [`BreakerConfig::failures_to_open`] failures in a row the circuit opens.
//! - **Open**: calls fail at once with `Unavailable`, without touching the backend, for
//!   the open period ([`BreakerConfig::open_for`] at first).
//! - **Half-open**: once the period is over, exactly one call (the trial) goes through;
//!   the others keep failing at once. The trial's success closes the circuit; its failure
//!   opens it again for twice as long, up to [`BreakerConfig::max_open_for`]. A trial
//!   that is cancelled (its caller gave up) proves nothing: the next caller gets to try.
//!
//! # Why it cannot trip on a healthy backend under load
//! Nothing here looks at concurrency or latency: no in-flight limit, no slow-call rate.
//! Only failures count, and a single answer resets them, so 64 (or 6 400) concurrent
//! callers of a healthy backend see exactly what they would see without the breaker.
//! Latency matters only through the caller's deadline (see
//! [`adapters::guarded`](crate::adapters::guarded)), which is set well above what a
//! healthy backend needs.
//!
//! # Epochs
//! Each change of state starts a new epoch, and a call's outcome counts only in the
//! epoch it was admitted in. So the 63 other calls that were in flight when a dead
//! backend opened the circuit do not stretch the open period when they fail in turn, and
//! a slow success admitted before the outage cannot close a circuit that opened since.

use crate::{Error, Result};
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// When a circuit opens, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row (with no answer between them) that open the circuit.
    pub failures_to_open: u32,
    /// The first open period.
    pub open_for: Duration,
    /// The longest open period (it doubles per failed trial).
    pub max_open_for: Duration,
}

impl BreakerConfig {
    /// Five failures in a row open the circuit for 500 ms, then 1 s, 2 s, 4 s, 5 s. A dead
    /// backend then costs each instance one call per period instead of one per request,
    /// and a backend that comes back is used again within 5 s, without a restart.
    pub const DEFAULT: Self = Self {
        failures_to_open: 5,
        open_for: Duration::from_millis(500),
        max_open_for: Duration::from_secs(5),
    };
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Where a circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail at once.
    Open,
    /// One trial call is (or may be) on its way; the others fail at once.
    HalfOpen,
}

/// Counters since the breaker was made, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerStats {
    /// How often the circuit opened (first opening and failed trials alike).
    pub opened: u64,
    /// Calls refused without touching the backend.
    pub rejected: u64,
}

struct Inner {
    state: CircuitState,
    epoch: u64,
    /// Consecutive failures while closed.
    failures: u32,
    /// The current open period.
    open_for: Duration,
    open_until: Instant,
    trial_out: bool,
    stats: BreakerStats,
}

/// One circuit breaker, shared by every call to one backend in this process.
pub struct Breaker {
    name: &'static str,
    config: BreakerConfig,
    // A std Mutex: held for a few field updates, never across an await, and uncontended
    // next to a network call.
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

/// Leave to make one call; report its outcome with [`Permit::settle`]. Dropping it
/// unsettled (the call was cancelled) counts as nothing.
#[must_use = "a permit must be settled with the call's outcome"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    epoch: u64,
    trial: bool,
    settled: bool,
}

impl Permit<'_> {
    /// Records the call's outcome.
    pub fn settle<T>(self, outcome: &Result<T>) {
        let failed = matches!(outcome, Err(e) if counts_as_failure(e));
        self.finish(failed, Instant::now());
    }

    fn finish(mut self, failed: bool, now: Instant) {
        self.settled = true;
        self.breaker.settle_at(self.epoch, failed, now);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.trial {
            let mut inner = self.breaker.lock();
            if inner.epoch == self.epoch && inner.state == CircuitState::HalfOpen {
                inner.trial_out = false;
            }
        }
    }
}

/// Whether an error means "the backend did not answer" (the only thing that trips a
/// circuit).
pub fn counts_as_failure(e: &Error) -> bool {
    matches!(e, Error::Unavailable(_))
}

impl Breaker {
    /// A closed breaker for the backend called `name` (used in logs and errors).
    pub fn new(name: &'static str, config: BreakerConfig) -> Self {
        Self {
            name,
            config,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                epoch: 0,
                failures: 0,
                open_for: config.open_for,
                open_until: Instant::now(),
                trial_out: false,
                stats: BreakerStats::default(),
            }),
        }
    }

    /// The backend's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The fields hold no invariant a panic could break halfway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the circuit stands now (an open circuit whose period is over reads as
    /// half-open).
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.state {
            CircuitState::Open if Instant::now() >= inner.open_until => CircuitState::HalfOpen,
            s => s,
        }
    }

    /// Counters since the breaker was made.
    pub fn stats(&self) -> BreakerStats {
        self.lock().stats
    }

    /// Leave to call the backend, or `Unavailable` at once while the circuit is open.
    pub fn try_acquire(&self) -> Result<Permit<'_>> {
        self.acquire_at(Instant::now())
    }

    /// Runs `call` if the circuit lets it, and records its outcome.
    pub async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let permit = self.try_acquire()?;
        let outcome = call.await;
        permit.settle(&outcome);
        outcome
    }

    fn acquire_at(&self, now: Instant) -> Result<Permit<'_>> {
        let mut inner = self.lock();
        let trial = match inner.state {
            CircuitState::Closed => false,
            CircuitState::Open if now >= inner.open_until => {
                inner.state = CircuitState::HalfOpen;
                inner.epoch += 1;
                inner.trial_out = true;
                true
            }
            CircuitState::HalfOpen if !inner.trial_out => {
                inner.trial_out = true;
                true
            }
            CircuitState::Open | CircuitState::HalfOpen => {
                inner.stats.rejected += 1;
                let wait = inner.open_until.saturating_duration_since(now);
                return Err(Error::Unavailable(format!(
                    "{}: circuit open after repeated failures; next trial in {} ms",
                    self.name,
                    wait.as_millis()
                )));
            }
        };
        Ok(Permit {
            breaker: self,
            epoch: inner.epoch,
            trial,
            settled: false,
        })
    }

    fn settle_at(&self, epoch: u64, failed: bool, now: Instant) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        match (inner.state, failed) {
            (CircuitState::Closed, false) => inner.failures = 0,
            (CircuitState::Closed, true) => {
                inner.failures += 1;
                if inner.failures >= self.config.failures_to_open {
                    let open_for = self.config.open_for;
                    self.open(&mut inner, open_for, now);
                }
            }
            (CircuitState::HalfOpen, false) => {
                inner.state = CircuitState::Closed;
                inner.epoch += 1;
                inner.failures = 0;
                inner.trial_out = false;
                inner.open_for = self.config.open_for;
                tracing::info!(
                    backend = self.name,
                    "circuit closed: the backend answers again"
                );
            }
            (CircuitState::HalfOpen, true) => {
                let open_for = (inner.open_for * 2).min(self.config.max_open_for);
                self.open(&mut inner, open_for, now);
            }
            // An open circuit admits nothing in its own epoch.
            (CircuitState::Open, _) => {}
        }
    }

    fn open(&self, inner: &mut Inner, open_for: Duration, now: Instant) {
        inner.state = CircuitState::Open;
        inner.epoch += 1;
        inner.failures = 0;
        inner.trial_out = false;
        inner.open_for = open_for;
        inner.open_until = now + open_for;
        inner.stats.opened += 1;
        tracing::warn!(
            backend = self.name,
            open_for_ms = open_for.as_millis() as u64,
            "circuit opened: calls fail at once until a trial call succeeds"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const CONFIG: BreakerConfig = BreakerConfig {
        failures_to_open: 3,
        open_for: Duration::from_millis(100),
        max_open_for: Duration::from_millis(350),
    };

    fn down() -> Result<()> {
        Err(Error::Unavailable("down".into()))
    }

    /// Admits one call at `now` and settles it with `outcome`.
    fn call_at(b: &Breaker, now: Instant, outcome: Result<()>) -> Result<()> {
        let permit = b.acquire_at(now)?;
        permit.finish(matches!(&outcome, Err(e) if counts_as_failure(e)), now);
        outcome
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_and_an_answer_in_between_resets_the_count() {
        let b = Breaker::new("test", CONFIG);
        let t = Instant::now();
        // GIVEN two failures, then an answer (even an error that is not an outage)
        let _ = call_at(&b, t, down());
        let _ = call_at(&b, t, down());
        let _ = call_at(&b, t, Err(Error::NotFound));
        let _ = call_at(&b, t, down());
        let _ = call_at(&b, t, down());
        // THEN the circuit is still closed
        assert_eq!(b.lock().state, CircuitState::Closed);
        // WHEN a third failure in a row comes
        let _ = call_at(&b, t, down());
        // THEN it opens, and calls fail without reaching the backend
        assert_eq!(b.lock().state, CircuitState::Open);
        assert!(
            matches!(b.acquire_at(t), Err(Error::Unavailable(m)) if m.contains("circuit open"))
        );
        assert_eq!(
            b.stats(),
            BreakerStats {
                opened: 1,
                rejected: 1
            }
        );
    }

    #[test]
    fn after_the_open_period_exactly_one_trial_goes_through_and_its_success_closes_the_circuit() {
        let b = Breaker::new("test", CONFIG);
        let t = Instant::now();
        for _ in 0..3 {
            let _ = call_at(&b, t, down());
        }
        // WHEN the period is not over: refused
        assert!(b.acquire_at(t + Duration::from_millis(99)).is_err());
        // WHEN it is: one trial, and only one
        let later = t + Duration::from_millis(100);
        let trial = b.acquire_at(later).expect("the trial");
        assert!(trial.trial);
        assert!(b.acquire_at(later).is_err(), "a second caller waits");
        // THEN its success closes the circuit for everyone
        trial.finish(false, later);
        assert_eq!(b.lock().state, CircuitState::Closed);
        assert!(call_at(&b, later, Ok(())).is_ok());
    }

    #[test]
    fn a_failed_trial_doubles_the_open_period_up_to_the_maximum() {
        let b = Breaker::new("test", CONFIG);
        let mut t = Instant::now();
        for _ in 0..3 {
            let _ = call_at(&b, t, down());
        }
        let mut periods = Vec::new();
        for _ in 0..4 {
            let inner = b.lock();
            periods.push(inner.open_until - t);
            t = inner.open_until;
            drop(inner);
            assert!(call_at(&b, t, down()).is_err());
        }
        assert_eq!(
            periods,
            [100, 200, 350, 350].map(Duration::from_millis).to_vec()
        );
        // AND a success resets the period to the first one
        t = b.lock().open_until;
        assert!(call_at(&b, t, Ok(())).is_ok());
        for _ in 0..3 {
            let _ = call_at(&b, t, down());
        }
        assert_eq!(b.lock().open_until - t, Duration::from_millis(100));
    }

    #[test]
    fn a_cancelled_trial_lets_the_next_caller_try() {
        let b = Breaker::new("test", CONFIG);
        let t = Instant::now();
        for _ in 0..3 {
            let _ = call_at(&b, t, down());
        }
        let later = t + Duration::from_millis(100);
        let trial = b.acquire_at(later).unwrap();
        drop(trial);
        assert!(b.acquire_at(later).is_ok_and(|p| p.trial));
    }

    #[test]
    fn outcomes_of_calls_admitted_before_the_circuit_changed_are_ignored() {
        let b = Breaker::new("test", CONFIG);
        let t = Instant::now();
        // GIVEN ten calls in flight when the backend dies
        let mut in_flight: Vec<_> = (0..10).map(|_| b.acquire_at(t).unwrap()).collect();
        let late = in_flight.pop().unwrap();
        // WHEN nine fail, the first three open the circuit, the rest change nothing
        for p in in_flight {
            p.finish(true, t);
        }
        assert_eq!(b.stats().opened, 1);
        assert_eq!(b.lock().open_until - t, CONFIG.open_for);
        // AND a late success from before the outage cannot close it
        late.finish(false, t);
        assert_eq!(b.lock().state, CircuitState::Open);
    }

    /// A backend with a fixed number of connections: calls queue for one, so latency grows
    /// with concurrency, but every call is answered.
    struct Backend {
        slots: tokio::sync::Semaphore,
        dead: AtomicBool,
        calls: AtomicU64,
    }

    impl Backend {
        async fn call(&self, i: u64) -> Result<u64> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.dead.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                return Err(Error::Unavailable("connection refused".into()));
            }
            let _slot = self.slots.acquire().await.expect("open semaphore");
            tokio::time::sleep(Duration::from_micros(200 + fastrand::u64(0..800))).await;
            // A healthy backend also answers "no such item" and "lost a race".
            match i % 10 {
                0 => Err(Error::NotFound),
                1 => Err(Error::Conflict),
                _ => Ok(i),
            }
        }
    }

    async fn hammer(b: &Arc<Breaker>, backend: &Arc<Backend>, tasks: u64, calls: u64) -> u64 {
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (b, backend) = (b.clone(), backend.clone());
                tokio::spawn(async move {
                    let mut refused = 0;
                    for i in 0..calls {
                        let outcome = b.call(backend.call(t * calls + i)).await;
                        if matches!(outcome, Err(Error::Unavailable(_))) {
                            refused += 1;
                        }
                        // Callers pace themselves, so the run spans several open periods.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for h in handles {
            refused += h.await.unwrap();
        }
        refused
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_backend_under_64_concurrent_callers_never_trips_the_circuit() {
        // GIVEN a healthy backend with 8 connections, and 64 callers (so most calls queue)
        let backend = Arc::new(Backend {
            slots: tokio::sync::Semaphore::new(8),
            dead: AtomicBool::new(false),
            calls: AtomicU64::new(0),
        });
        let b = Arc::new(Breaker::new("test", BreakerConfig::DEFAULT));
        // WHEN each makes 50 calls
        let refused = hammer(&b, &backend, 64, 50).await;
        // THEN every call reached the backend and the circuit never opened
        assert_eq!(refused, 0);
        assert_eq!(backend.calls.load(Ordering::Relaxed), 64 * 50);
        assert_eq!(b.stats(), BreakerStats::default());
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_backend_under_64_concurrent_callers_sees_one_wave_and_then_only_trials() {
        // GIVEN a dead backend and 64 callers making 200 calls each
        let backend = Arc::new(Backend {
            slots: tokio::sync::Semaphore::new(8),
            dead: AtomicBool::new(true),
            calls: AtomicU64::new(0),
        });
        let config = BreakerConfig {
            failures_to_open: 5,
            open_for: Duration::from_millis(20),
            max_open_for: Duration::from_millis(40),
        };
        let b = Arc::new(Breaker::new("test", config));
        let started = std::time::Instant::now();
        let failed = hammer(&b, &backend, 64, 200).await;
        let took = started.elapsed();
        // THEN every call failed, nearly all without reaching the backend: the first wave
        // of 64, then about one trial per open period
        assert_eq!(failed, 64 * 200);
        let reached = backend.calls.load(Ordering::Relaxed);
        assert_eq!(reached + b.stats().rejected, 64 * 200);
        let periods = took.as_millis() as u64 / 20 + 1;
        assert!(
            reached <= 64 + periods,
            "{reached} calls reached the dead backend in {took:?}"
        );
        assert!(b.stats().opened >= 1);
        // AND when it comes back, one trial closes the circuit
        backend.dead.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(b.call(backend.call(2)).await.is_ok());
        assert_eq!(b.state(), CircuitState::Closed);
    }
}
