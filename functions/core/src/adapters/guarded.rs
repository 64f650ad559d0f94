//! A decorator for any backend adapter: every call gets a deadline, and a per-instance
//! circuit breaker ([`crate::breaker`]) stands in front of the backend. It implements the
//! same ports as what it wraps, so the services never know it is there.
//!
//! # Deadlines
//! The production adapters bound their own calls (Redis: 1.5 s, DynamoDB: 3 s per SDK
//! operation), but some port methods make several backend calls (a commit reads the audit
//! counter and retries a moved one; a filtered audit scan reads page after page), and the
//! SDK's own bound does not cover everything (credential and endpoint resolution). The
//! guard puts one hard deadline on each port call, chosen so that the longest chain a
//! function makes stays under its Lambda timeout (`infra/template.yaml`):
//!
//! | function (timeout) | longest chain of guarded calls |
//! |---|---|
//! | resolve (5 s) | cache read 1.5 s + store read 3 s = 4.5 s (the cache fill after a store read only follows a success; a dead cache fails it at once) |
//! | write (10 s) | one round: store read 3 s + commit 6 s + publish 0.25 s = 9.25 s, and a whole write (every round) is cut at `WRITE_DEADLINE`, 9 s; list, history and audit: one scan, 6 s |
//! | event consumer (60 s) | per record one cache write, 1.5 s; a failure stops its partition |
//! | outbox relay (50 s) | the whole run is cut at its 40 s budget |
//!
//! A deadline that passes is `Error::Unavailable` naming the backend and the call. For a
//! port method that is one backend request (a read, a cache operation) it counts as a
//! failure for the breaker: the backend did not answer. For one that is a sequence of
//! requests (a commit, a scan, the outbox) it does not: every request in it may have been
//! answered, the sequence was only long (a commit racing other writers of its tenant for
//! the audit counter, a scan of a large tenant), and a breaker must never open on a
//! backend that answers. A dead or hung backend still trips it through those methods,
//! as the adapter reports its own requests' failures (connection refused, the SDK's
//! timeouts) as `Unavailable`.
//!
//! # Breaker
//! One breaker per wrapped backend and process (a Lambda execution environment, or
//! tm-local): shared by every call to that backend, so a dead store trips it for resolve
//! and write alike. Probes (`/readyz`) get the deadline but bypass the breaker, so
//! readiness always reports the backend's own state.

use crate::breaker::{Breaker, BreakerConfig};
use crate::domain::event::{HistoryEntry, RouteEvent};
use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, ServiceKey, VersionName};
use crate::domain::route::Route;
use crate::ports::UsageLedger;
use crate::ports::{
    AuditPage, AuditQuery, CachedRoute, Commit, Consistency, HealthStore, HistoryReader, ListQuery,
    Outbox, OutboxEntry, ParkedEntry, PendingEntries, Probe, RouteReader, RouteWriter, SharedCache,
    StoredRoute,
};
use crate::{Error, Result};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The deadlines of one guarded backend, and its breaker's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Single-item reads (`get`, `versions`, cache reads).
    pub read: Duration,
    /// Writes (cache writes; `commit` and `mark_published`, which may take several
    /// requests).
    pub write: Duration,
    /// Multi-page reads (`list`, `history`, `audit`, `pending`).
    pub scan: Duration,
    /// Health probes.
    pub ping: Duration,
    /// When the breaker opens.
    pub breaker: BreakerConfig,
}

impl Limits {
    /// The route store (DynamoDB): reads as long as the SDK's operation timeout, writes
    /// and scans room for a few requests in a row.
    pub const STORE: Self = Self {
        read: Duration::from_secs(3),
        write: Duration::from_secs(6),
        scan: Duration::from_secs(6),
        ping: Duration::from_secs(3),
        breaker: BreakerConfig::DEFAULT,
    };

    /// The shared cache (Redis): one connection attempt plus one command.
    pub const CACHE: Self = Self {
        read: Duration::from_millis(1500),
        write: Duration::from_millis(1500),
        scan: Duration::from_millis(1500),
        ping: Duration::from_millis(1500),
        breaker: BreakerConfig::DEFAULT,
    };

    /// The route store on the resolve path: a resolve that misses both caches answers
    /// 503 within a second when the store does not answer (a healthy DynamoDB read takes
    /// milliseconds). Writes keep [`Limits::STORE`].
    pub const STORE_READS: Self = Self {
        read: Duration::from_millis(800),
        write: Duration::from_millis(800),
        scan: Duration::from_millis(800),
        ping: Duration::from_secs(3),
        breaker: BreakerConfig::DEFAULT,
    };

    /// The shared cache on the resolve path: a resolve's cache read and its fill after a
    /// store read each get 100 ms (a healthy Valkey answers in about a millisecond; a TLS
    /// connection inside the VPC opens in tens), so a hung cache adds at most 200 ms to
    /// a resolve until the breaker opens, and nothing after. The event consumer and the
    /// write path keep [`Limits::CACHE`].
    pub const CACHE_READS: Self = Self {
        read: Duration::from_millis(100),
        write: Duration::from_millis(100),
        scan: Duration::from_millis(100),
        ping: Duration::from_millis(1500),
        breaker: BreakerConfig::DEFAULT,
    };
}

/// A backend behind a deadline and a circuit breaker.
pub struct Guarded<T: ?Sized> {
    inner: Arc<T>,
    breaker: Arc<Breaker>,
    limits: Limits,
}

impl<T: ?Sized> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("breaker", &self.breaker)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<T: ?Sized> Guarded<T> {
    /// Wraps `inner`, called `name` in logs and errors (`store`, `cache`).
    pub fn new(name: &'static str, inner: Arc<T>, limits: Limits) -> Self {
        Self {
            inner,
            breaker: Arc::new(Breaker::new(name, limits.breaker)),
            limits,
        }
    }

    /// The same backend behind other deadlines and the same breaker: the resolve path's
    /// fail-fast view of a backend the write path also uses. Sharing the breaker keeps
    /// one breaker per backend and process: resolve traffic that finds the store dead
    /// opens it for writes too, so they fail at once instead of each waiting out its
    /// deadline. (`limits.breaker` is not used: the breaker is the original's.)
    pub fn sibling(&self, limits: Limits) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            limits,
        }
    }

    /// The breaker (for tests and diagnostics).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }

    /// One backend request: a passed deadline counts as a failure.
    async fn guard<R>(
        &self,
        op: &'static str,
        deadline: Duration,
        call: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        self.breaker
            .call(within(self.breaker.name(), op, deadline, call))
            .await
    }

    /// A sequence of backend requests: a passed deadline is reported to the caller but
    /// counts for nothing (see the module docs); the adapter's own failures count.
    async fn guard_steps<R>(
        &self,
        op: &'static str,
        deadline: Duration,
        call: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        let permit = self.breaker.try_acquire()?;
        match tokio::time::timeout(deadline, call).await {
            Ok(outcome) => {
                permit.settle(&outcome);
                outcome
            }
            // Dropped unsettled: neutral (and a trial's turn passes to the next caller).
            Err(_) => Err(Error::Unavailable(format!(
                "{} {op}: no answer within {} ms",
                self.breaker.name(),
                deadline.as_millis()
            ))),
        }
    }
}

/// `call`, or `Unavailable` once `deadline` has passed.
async fn within<R>(
    backend: &str,
    op: &str,
    deadline: Duration,
    call: impl Future<Output = Result<R>>,
) -> Result<R> {
    match tokio::time::timeout(deadline, call).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::Unavailable(format!(
            "{backend} {op}: no answer within {} ms",
            deadline.as_millis()
        ))),
    }
}

#[async_trait]
impl<T: RouteReader + ?Sized> RouteReader for Guarded<T> {
    async fn get(&self, key: &RouteKey, read: Consistency) -> Result<Option<StoredRoute>> {
        self.guard("get", self.limits.read, self.inner.get(key, read))
            .await
    }

    async fn versions(
        &self,
        svc: &ServiceKey,
        read: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>> {
        self.guard("versions", self.limits.read, self.inner.versions(svc, read))
            .await
    }
}

#[async_trait]
impl<T: RouteWriter + ?Sized> RouteWriter for Guarded<T> {
    async fn commit(&self, commit: &Commit) -> Result<String> {
        self.guard_steps("commit", self.limits.write, self.inner.commit(commit))
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<Route>> {
        self.guard_steps("list", self.limits.scan, self.inner.list(query))
            .await
    }
}

#[async_trait]
impl<T: HistoryReader + ?Sized> HistoryReader for Guarded<T> {
    async fn history(
        &self,
        key: &RouteKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>> {
        self.guard_steps(
            "history",
            self.limits.scan,
            self.inner.history(key, before, limit),
        )
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        self.guard_steps("audit", self.limits.scan, self.inner.audit(query))
            .await
    }
}

#[async_trait]
impl<T: Outbox + ?Sized> Outbox for Guarded<T> {
    async fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.guard_steps("pending", self.limits.scan, self.inner.pending(limit))
            .await
    }

    async fn pending_all(&self, limit: usize) -> Result<PendingEntries> {
        self.guard_steps("pending", self.limits.scan, self.inner.pending_all(limit))
            .await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<()> {
        self.guard_steps(
            "mark_published",
            self.limits.write,
            self.inner.mark_published(ids),
        )
        .await
    }

    async fn park(&self, id: &str, reason: &str) -> Result<()> {
        self.guard_steps("park", self.limits.write, self.inner.park(id, reason))
            .await
    }

    async fn parked(&self, limit: usize) -> Result<Vec<ParkedEntry>> {
        self.guard_steps("parked", self.limits.scan, self.inner.parked(limit))
            .await
    }

    async fn unpark(&self, id: &str) -> Result<bool> {
        self.guard_steps("unpark", self.limits.write, self.inner.unpark(id))
            .await
    }
}

#[async_trait]
impl<T: SharedCache + ?Sized> SharedCache for Guarded<T> {
    async fn get(&self, key: &RouteKey) -> Result<Option<CachedRoute>> {
        self.guard("get", self.limits.read, self.inner.get(key))
            .await
    }

    async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        self.guard("versions", self.limits.read, self.inner.versions(svc))
            .await
    }

    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
        self.guard("apply", self.limits.write, self.inner.apply(key, entry))
            .await
    }

    async fn fill(&self, svc: &ServiceKey, entries: &[(VersionName, CachedRoute)]) -> Result<()> {
        self.guard("fill", self.limits.write, self.inner.fill(svc, entries))
            .await
    }

    async fn apply_health(&self, key: &RouteKey, health: &RouteHealth) -> Result<bool> {
        self.guard(
            "apply_health",
            self.limits.write,
            self.inner.apply_health(key, health),
        )
        .await
    }
}

#[async_trait]
impl<T: HealthStore + ?Sized> HealthStore for Guarded<T> {
    async fn checked_routes(&self) -> Result<Vec<Route>> {
        self.guard_steps(
            "checked_routes",
            self.limits.scan,
            self.inner.checked_routes(),
        )
        .await
    }

    async fn health(&self, key: &RouteKey) -> Result<Option<RouteHealth>> {
        self.guard("health", self.limits.read, self.inner.health(key))
            .await
    }

    async fn save_health(
        &self,
        key: &RouteKey,
        expected: Option<u64>,
        health: &RouteHealth,
        event: Option<&RouteEvent>,
    ) -> Result<Option<String>> {
        self.guard_steps(
            "save_health",
            self.limits.write,
            self.inner.save_health(key, expected, health, event),
        )
        .await
    }
}

/// Behind the same breaker as the cache itself, with the cache's write deadline: the
/// exchange runs in the background, so its deadline bounds only how long a hung Redis
/// holds the next exchange back.
#[async_trait]
impl<T: UsageLedger + ?Sized> UsageLedger for Guarded<T> {
    async fn exchange(&self, class: &str, deltas: &[(String, u64)]) -> Result<Vec<u64>> {
        self.guard(
            "exchange",
            self.limits.write,
            self.inner.exchange(class, deltas),
        )
        .await
    }
}

/// The marks of dead letters sent: behind the cache's breaker and write deadline.
#[async_trait]
impl<T: crate::ports::DeadLetterMarks + ?Sized> crate::ports::DeadLetterMarks for Guarded<T> {
    async fn was_sent(&self, letter: &crate::ports::DeadLetter) -> Result<bool> {
        self.guard("was_sent", self.limits.read, self.inner.was_sent(letter))
            .await
    }

    async fn mark_sent(&self, letter: &crate::ports::DeadLetter) -> Result<()> {
        self.guard("mark_sent", self.limits.write, self.inner.mark_sent(letter))
            .await
    }
}

#[async_trait]
impl<T: Probe + ?Sized> Probe for Guarded<T> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// The deadline only: readiness reports the backend's own state, open circuit or not.
    async fn ping(&self) -> Result<()> {
        within(
            self.breaker.name(),
            "ping",
            self.limits.ping,
            self.inner.ping(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory_cache::MemoryCache;
    use crate::breaker::CircuitState;
    use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

    const HEALTHY: u8 = 0;
    const DEAD: u8 = 1;
    const HUNG: u8 = 2;

    /// A cache that can be healthy, refuse connections, or hang.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryCache,
        mode: AtomicU8,
        calls: AtomicU64,
    }

    impl Flaky {
        async fn check(&self) -> Result<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.mode.load(Ordering::SeqCst) {
                DEAD => Err(Error::Unavailable("connection refused".into())),
                HUNG => std::future::pending().await,
                _ => Ok(()),
            }
        }
    }

    #[async_trait]
    impl SharedCache for Flaky {
        async fn get(&self, key: &RouteKey) -> Result<Option<CachedRoute>> {
            self.check().await?;
            self.inner.get(key).await
        }
        async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
            self.check().await?;
            self.inner.versions(svc).await
        }
        async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
            self.check().await?;
            self.inner.apply(key, entry).await
        }
        async fn fill(
            &self,
            svc: &ServiceKey,
            entries: &[(VersionName, CachedRoute)],
        ) -> Result<()> {
            self.check().await?;
            self.inner.fill(svc, entries).await
        }
    }

    #[async_trait]
    impl Probe for Flaky {
        fn name(&self) -> &'static str {
            "cache"
        }
        async fn ping(&self) -> Result<()> {
            self.check().await
        }
    }

    /// 50 ms deadlines; three failures open the circuit for `open_for`.
    fn limits(open_for: Duration) -> Limits {
        Limits {
            read: Duration::from_millis(50),
            write: Duration::from_millis(50),
            scan: Duration::from_millis(50),
            ping: Duration::from_millis(50),
            breaker: BreakerConfig {
                failures_to_open: 3,
                open_for,
                max_open_for: open_for,
            },
        }
    }

    /// Long enough that no scheduling delay can end it within a test.
    const A_MINUTE: Duration = Duration::from_secs(60);

    fn key() -> RouteKey {
        RouteKey::parse("t", "s", "e", "1.0.0").unwrap()
    }

    #[tokio::test]
    async fn the_read_path_sibling_gives_up_on_a_hung_backend_at_its_own_deadline() {
        // GIVEN a hung cache behind the write path's limits and a read-path sibling
        let flaky = Arc::new(Flaky::default());
        flaky.mode.store(HUNG, Ordering::SeqCst);
        let mut slow = limits(A_MINUTE);
        slow.read = Duration::from_millis(400);
        let writes = Guarded::new("cache", flaky.clone(), slow);
        let mut fast = limits(A_MINUTE);
        fast.read = Duration::from_millis(30);
        let reads = writes.sibling(fast);
        // WHEN the resolve path reads through the sibling
        let started = std::time::Instant::now();
        assert!(matches!(
            reads.get(&key()).await,
            Err(Error::Unavailable(_))
        ));
        // THEN it answers at its own deadline, and the failures open the backend's one
        // breaker, so the write path then fails at once too
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(reads.breaker().name(), "cache");
        for _ in 0..2 {
            let _ = reads.get(&key()).await;
        }
        assert_eq!(reads.breaker().state(), CircuitState::Open);
        assert_eq!(writes.breaker().state(), CircuitState::Open);
        let started = std::time::Instant::now();
        assert!(writes.get(&key()).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_hung_backend_answers_unavailable_by_the_deadline_and_then_trips_the_breaker() {
        // GIVEN a cache that hangs
        let flaky = Arc::new(Flaky::default());
        flaky.mode.store(HUNG, Ordering::SeqCst);
        let guarded = Guarded::new("cache", flaky.clone(), limits(A_MINUTE));
        // WHEN it is called three times, each call ends at the deadline
        for _ in 0..3 {
            let started = tokio::time::Instant::now();
            let err = guarded.get(&key()).await.unwrap_err();
            assert!(
                matches!(&err, Error::Unavailable(m) if m == "cache get: no answer within 50 ms"),
                "{err:?}"
            );
            assert!(started.elapsed() < Duration::from_millis(500));
        }
        // THEN the circuit is open: the next call fails at once, without reaching it
        assert_eq!(guarded.breaker().state(), CircuitState::Open);
        let before = flaky.calls.load(Ordering::SeqCst);
        let err = guarded.get(&key()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("circuit open")),
            "{err:?}"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), before);
        // AND readiness still asks the backend itself
        assert!(guarded.ping().await.is_err());
        assert_eq!(flaky.calls.load(Ordering::SeqCst), before + 1);
    }

    #[tokio::test]
    async fn a_backend_that_comes_back_is_used_again_after_one_trial_without_a_restart() {
        let flaky = Arc::new(Flaky::default());
        flaky.mode.store(DEAD, Ordering::SeqCst);
        let guarded = Guarded::new("cache", flaky.clone(), limits(Duration::from_millis(100)));
        let entry = CachedRoute {
            revision: 0,
            route: None,
            health: None,
        };
        for _ in 0..3 {
            assert!(guarded.apply(&key(), &entry).await.is_err());
        }
        assert_eq!(guarded.breaker().stats().opened, 1);
        // WHEN it comes back and the open period passes
        flaky.mode.store(HEALTHY, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(110)).await;
        // THEN the first call is the trial, and it closes the circuit
        assert!(guarded.apply(&key(), &entry).await.unwrap());
        assert_eq!(guarded.breaker().state(), CircuitState::Closed);
        assert_eq!(guarded.get(&key()).await.unwrap(), Some(entry));
    }

    /// A store whose commits take `commit_ms` (several requests, each answered).
    struct SlowWriter {
        commit_ms: u64,
    }

    #[async_trait]
    impl RouteWriter for SlowWriter {
        async fn commit(&self, _: &Commit) -> Result<String> {
            tokio::time::sleep(Duration::from_millis(self.commit_ms)).await;
            Ok("outbox-1".into())
        }
        async fn list(&self, _: &ListQuery) -> Result<Vec<Route>> {
            Err(Error::Unavailable("connection refused".into()))
        }
    }

    fn commit() -> Commit {
        let at = crate::domain::timefmt::Timestamp::from_millis(0);
        Commit {
            expected_revision: None,
            event: serde_json::from_value(serde_json::json!({
                "schema": 1, "event_id": "00000000-0000-4000-8000-000000000001",
                "type": "route.deleted", "tenant": "t", "service": "s", "env": "e",
                "version": "1.0.0", "revision": 1, "occurred_at": at.to_string(),
                "actor": "u", "correlation_id": "c", "route": null
            }))
            .unwrap(),
        }
    }

    #[tokio::test]
    async fn a_long_sequence_of_answered_requests_is_cut_at_its_deadline_but_never_trips_the_breaker()
     {
        // GIVEN commits that take longer than their deadline (a tenant's writers racing)
        let guarded = Guarded::new(
            "store",
            Arc::new(SlowWriter { commit_ms: 80 }),
            limits(A_MINUTE),
        );
        // WHEN ten in a row pass it
        for _ in 0..10 {
            let err = guarded.commit(&commit()).await.unwrap_err();
            assert_eq!(
                err,
                Error::Unavailable("store commit: no answer within 50 ms".into())
            );
        }
        // THEN the caller was told each time, and the circuit is still closed
        assert_eq!(guarded.breaker().state(), CircuitState::Closed);
        // AND the adapter's own failures of the same kind of call do count
        for _ in 0..3 {
            assert!(guarded.list(&list_query()).await.is_err());
        }
        assert_eq!(guarded.breaker().state(), CircuitState::Open);
    }

    fn list_query() -> ListQuery {
        ListQuery {
            tenant: crate::domain::names::TenantName::parse("t").unwrap(),
            service: None,
            env: None,
            after: None,
            limit: 10,
        }
    }
}
