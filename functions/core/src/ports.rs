//! Ports: one trait per capability. Each function holds only the ones it uses; each has
//! an embedded adapter (`adapters`) and a production adapter (DynamoDB, Redis, Kafka),
//! bar [`HttpProbe`], whose only stand-ins are the tests' scripted ones. With them the
//! notions their callers share across layers: [`CacheSource`], which of the layers
//! behind [`SharedCache`] and [`RouteReader`] answered a resolve (the resolve service
//! reports it, the metrics count by it), lives here so that neither has to depend on
//! the other for it.

use crate::Result;
use crate::domain::event::{AuditEntry, ChangeType, HistoryEntry, RouteEvent};
use crate::domain::health::{self, ProbeResult, RouteHealth};
use crate::domain::health_check::StatusRange;
use crate::domain::names::{EnvName, RouteKey, ServiceKey, ServiceName, TenantName, VersionName};
use crate::domain::route::Route;
use crate::domain::timefmt::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every committed write (management API).
    Strong,
    /// May lag slightly; served by replicas (resolve).
    Eventual,
}

/// What the store holds for one route key: the live route, or a tombstone that keeps the
/// last revision so a re-created route continues from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoute {
    /// The last revision written for the key (a delete's included).
    pub revision: u64,
    /// The live route (as written: no endpoint health on it); `None` after a delete.
    pub route: Option<Route>,
    /// The key's health state, kept beside the route (docs/health.md), when it was ever
    /// probed. Stores fill it on reads; it is never part of a route commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<RouteHealth>,
}

/// One change, committed atomically with its history entry and its outbox entry.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The stored revision the writer read (`None`: the key has never existed). The
    /// commit fails with `Error::Conflict` when the store holds anything else.
    pub expected_revision: Option<u64>,
    /// The change; the new stored state is `(event.revision, event.route)`.
    pub event: RouteEvent,
}

/// `GET /v1/tenants/{t}/routes`: filters and the position after which to continue.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Tenant.
    pub tenant: TenantName,
    /// Only this service.
    pub service: Option<ServiceName>,
    /// Only this environment.
    pub env: Option<EnvName>,
    /// Continue after this key (exclusive).
    pub after: Option<RouteKey>,
    /// Most items to return.
    pub limit: usize,
}

/// `GET /v1/tenants/{t}/audit`: filters and position.
#[derive(Clone, Debug)]
pub struct AuditQuery {
    /// Tenant.
    pub tenant: TenantName,
    /// Only this change type.
    pub kind: Option<ChangeType>,
    /// Inclusive lower bound.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound.
    pub until: Option<Timestamp>,
    /// Continue with entries committed before this sequence number.
    pub before_seq: Option<u64>,
    /// Most items to return.
    pub limit: usize,
    /// Most entries to examine, matching or not: a filter that matches rarely must not
    /// make one request read a tenant's whole log. At least `limit`.
    pub max_scan: usize,
}

/// What one audit read found.
#[derive(Clone, Debug, Default)]
pub struct AuditPage {
    /// Matching entries, newest first, with their sequence numbers.
    pub items: Vec<(u64, AuditEntry)>,
    /// Set when the read examined `max_scan` entries before finding `limit` matches or
    /// reaching the end: the sequence number of the last entry examined, below which the
    /// next read continues.
    pub stopped_at: Option<u64>,
}

/// Reads routes. Held by resolve (eventual) and write (strong).
#[async_trait]
pub trait RouteReader: Send + Sync {
    /// The stored state of one key, tombstones included.
    async fn get(&self, key: &RouteKey, read: Consistency) -> Result<Option<StoredRoute>>;
    /// Every key of one `(tenant, service, env)`, tombstones included.
    async fn versions(
        &self,
        svc: &ServiceKey,
        read: Consistency,
    ) -> Result<Vec<(VersionName, StoredRoute)>>;
}

/// Writes routes and lists them. Held by write.
#[async_trait]
pub trait RouteWriter: Send + Sync {
    /// Commits the change, its history entry and its outbox entry in one transaction, or
    /// nothing (`Error::Conflict` when the expected revision no longer holds). Returns the
    /// outbox entry's id.
    async fn commit(&self, commit: &Commit) -> Result<String>;
    /// Live routes of a tenant in (service, env, version) byte order.
    async fn list(&self, query: &ListQuery) -> Result<Vec<Route>>;
}

/// Reads history and audit. Held by write.
#[async_trait]
pub trait HistoryReader: Send + Sync {
    /// A key's history, newest first, with revisions below `before`.
    async fn history(
        &self,
        key: &RouteKey,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>>;
    /// A tenant's changes, newest first (commit order), with their sequence numbers,
    /// examining at most `query.max_scan` entries.
    async fn audit(&self, query: &AuditQuery) -> Result<AuditPage>;
}

/// A committed event waiting to be published.
#[derive(Clone, Debug)]
pub struct OutboxEntry {
    /// The store's id for the entry (commit order within the store).
    pub id: String,
    /// The event.
    pub event: RouteEvent,
}

/// An outbox entry the store holds but cannot decode into an event (a corrupt item, or
/// one an incompatible build wrote). The relay parks it ([`Outbox::park`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndecodableEntry {
    /// The store's id for the entry, as an [`OutboxEntry`]'s.
    pub id: String,
    /// Why it does not decode.
    pub reason: String,
}

/// One read of the outbox ([`Outbox::pending_all`]).
#[derive(Clone, Debug, Default)]
pub struct PendingEntries {
    /// Entries that decode, oldest first, at most the limit asked for.
    pub entries: Vec<OutboxEntry>,
    /// Entries met on the way that do not decode.
    pub undecodable: Vec<UndecodableEntry>,
}

/// An entry set aside by [`Outbox::park`]: out of the outbox, kept as the store held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParkedEntry {
    /// The id it had in the outbox, under which it is parked.
    pub id: String,
    /// Why it was set aside.
    pub reason: String,
    /// When it was set aside.
    pub parked_at: Timestamp,
    /// The stored event document as it was, when it was text (UTF-8).
    pub event: Option<String>,
}

/// The outbox: events committed with their change, until published. Held by write and
/// the relay.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Unpublished entries that decode, oldest first; entries that do not decode are left
    /// out ([`Outbox::pending_all`] reports them).
    async fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        Ok(self.pending_all(limit).await?.entries)
    }
    /// Unpublished entries, oldest first, and apart from them those that do not decode:
    /// one bad entry never fails the read (it would stop every other event behind it).
    async fn pending_all(&self, limit: usize) -> Result<PendingEntries>;
    /// Forget entries that reached the publisher.
    async fn mark_published(&self, ids: &[String]) -> Result<()>;
    /// Sets entry `id` aside for `reason`: it leaves the outbox and is kept, exactly as
    /// stored, among the parked entries. Parking an entry that is gone (published, or
    /// parked already) succeeds and changes nothing.
    async fn park(&self, id: &str, reason: &str) -> Result<()>;
    /// Parked entries, by id (commit order), at most `limit`.
    async fn parked(&self, limit: usize) -> Result<Vec<ParkedEntry>>;
    /// Puts parked entry `id` back into the outbox under its id, as stored (an operator's
    /// replay once the cause is fixed); whether it was parked.
    async fn unpark(&self, id: &str) -> Result<bool>;
}

/// Sends events downstream (Kafka, or the local trigger). Held by write and the relay.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes in order; `Ok` only when every event was accepted.
    async fn publish(&self, events: &[RouteEvent]) -> Result<()>;
}

/// One version's entry in the shared cache. Revision 0 with no route means "known
/// absent" (a negative entry); any real event outranks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedRoute {
    /// The revision this entry reflects.
    #[serde(rename = "rev")]
    pub revision: u64,
    /// The live route; `None` for a delete or a negative entry. Read from a cache (or
    /// made by [`CachedRoute::from_stored`]) it shows its endpoints' health.
    pub route: Option<Arc<Route>>,
    /// The key's health state, ordered by its own `seq` (never by `revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Arc<RouteHealth>>,
}

impl CachedRoute {
    /// From the store's state of a key (`None`: never existed), with the health state
    /// shown on the route's endpoints.
    pub fn from_stored(stored: Option<StoredRoute>) -> Self {
        match stored {
            Some(s) => {
                let route = s.route.map(|mut r| {
                    health::overlay(&mut r, s.health.as_ref());
                    Arc::new(r)
                });
                CachedRoute {
                    revision: s.revision,
                    route,
                    health: s.health.map(Arc::new),
                }
            }
            None => CachedRoute {
                revision: 0,
                route: None,
                health: None,
            },
        }
    }

    /// This entry with its route showing `health` (clones the route only when that
    /// changes what it shows). Caches call it on every read.
    pub fn with_health(mut self, health: Option<Arc<RouteHealth>>) -> Self {
        if let Some(r) = &self.route
            && health::overlay_changes(r, health.as_deref())
        {
            let mut route = Route::clone(r);
            health::overlay(&mut route, health.as_deref());
            self.route = Some(Arc::new(route));
        }
        self.health = health;
        self
    }
}

/// Which layer answered a resolve (`X-Cache`, and the `layer` label of the resolve
/// metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// The in-process cache.
    HitL1,
    /// The shared cache.
    HitL2,
    /// The store.
    Miss,
    /// An expired in-process answer, served because the store could not be reached.
    Stale,
}

impl CacheSource {
    /// The `X-Cache` header value.
    pub fn header(self) -> &'static str {
        match self {
            CacheSource::HitL1 => "hit-l1",
            CacheSource::HitL2 => "hit-l2",
            CacheSource::Miss => "miss",
            CacheSource::Stale => "stale",
        }
    }
}

/// The shared cache (Redis in AWS), organised per `(tenant, service, env)`. Every write
/// is apply-if-newer per version, so an older revision never replaces a newer one.
/// Held by resolve (read and fill), the consumer (apply) and write (status).
#[async_trait]
pub trait SharedCache: Send + Sync {
    /// One version's entry, if cached.
    async fn get(&self, key: &RouteKey) -> Result<Option<CachedRoute>>;
    /// Every version's entry, only when the set is known to be complete (filled from the
    /// store at least once).
    async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>>;
    /// Stores the entry unless the cache holds the same or a newer revision. Returns
    /// whether it was stored.
    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool>;
    /// Merges a complete set read from the store (each entry if newer) and marks the set
    /// complete.
    async fn fill(&self, svc: &ServiceKey, entries: &[(VersionName, CachedRoute)]) -> Result<()>;
    /// Stores one key's health state unless the cache holds the same or a higher `seq`,
    /// whatever the key's route entry holds (reads show it on the route). Returns whether
    /// it was stored. Caches that do not hold health state refuse with `Internal`.
    async fn apply_health(&self, key: &RouteKey, health: &RouteHealth) -> Result<bool> {
        let _ = (key, health);
        Err(crate::Error::Internal(
            "this shared cache does not hold health state".into(),
        ))
    }
}

/// Health state in the store (docs/health.md). Held by the prober.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Every live route that has a `health_check`, in every tenant.
    async fn checked_routes(&self) -> Result<Vec<Route>>;
    /// One key's health state, strongly consistent.
    async fn health(&self, key: &RouteKey) -> Result<Option<RouteHealth>>;
    /// Stores `health` (whose `seq` is the stored one plus one, or 1) if the stored `seq`
    /// is still `expected` (`None`: nothing stored), else `Error::Conflict`. With `event`
    /// (a `route.health_changed` carrying this state), its audit entry and outbox entry
    /// commit in the same transaction; returns the outbox entry's id then.
    async fn save_health(
        &self,
        key: &RouteKey,
        expected: Option<u64>,
        health: &RouteHealth,
        event: Option<&RouteEvent>,
    ) -> Result<Option<String>>;
}

/// One HTTP(S) GET with a deadline: how the prober probes an endpoint (docs/health.md).
/// Held by the prober; the production one is `adapters::http_probe::HyperProbe`
/// (feature `prober`).
#[async_trait]
pub trait HttpProbe: Send + Sync {
    /// GETs `url`; `Up` when the answer's status is in `expected` within `timeout`.
    async fn probe(&self, url: &str, timeout: Duration, expected: StatusRange) -> ProbeResult;
}

/// A backend that `/readyz` can ask.
#[async_trait]
pub trait Probe: Send + Sync {
    /// Short name shown in `/readyz` (e.g. `store`, `cache`).
    fn name(&self) -> &'static str;
    /// `Ok` when the backend answers.
    async fn ping(&self) -> Result<()>;
}

/// A rate limiter's answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the tenant's rate: go on.
    Allowed,
    /// Over it: answer 429 `throttled` with this `Retry-After` (at least 1).
    Throttled {
        /// Whole seconds until a token is back.
        retry_after_secs: u64,
    },
}

/// Per-tenant admission, decided inside the process: it never waits on a backend, so a
/// request's admission costs a map lookup whatever state Redis is in. Held by the resolve
/// and write functions' throttle (`tm_http::throttle`); the embedded adapter is
/// [`crate::adapters::token_buckets::TokenBuckets`], which a [`UsageLedger`] keeps in
/// step with the other instances.
pub trait TenantLimiter: Send + Sync {
    /// Takes one token from `tenant`'s bucket of class `class` (each function keeps its
    /// own buckets). `tenant` is a valid tenant name.
    fn admit(&self, class: &'static str, tenant: &str) -> Admission;
}

/// Where the instances of a fleet add up the requests each received per tenant, so every
/// instance knows its share of the tenant's rate (Redis in AWS and in a tm-local fleet).
/// Called in the background, a few times a second, never on a request's path.
#[async_trait]
pub trait UsageLedger: Send + Sync {
    /// Adds each `(tenant, requests)` of `class` to the fleet's running totals and returns
    /// the totals after the addition, in the same order.
    async fn exchange(&self, class: &str, deltas: &[(String, u64)]) -> Result<Vec<u64>>;
}

/// A record the consumer can never apply, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i64,
    /// Source offset.
    pub offset: i64,
    /// The record's key, base64 as delivered.
    pub key: Option<String>,
    /// The record's value, base64 as delivered.
    pub value: Option<String>,
    /// Why it was rejected.
    pub reason: String,
}

impl DeadLetter {
    /// The source record's position, `<topic>/<partition>/<offset>`: what a redelivered
    /// batch repeats.
    pub fn position(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }

    /// A digest of the source record's key and value (hex, 128 bits), so that a mark
    /// left for one record never stands for another one at the same position (a topic
    /// recreated, offsets starting again).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for field in [&self.key, &self.value] {
            match field {
                None => h.update([0u8]),
                Some(text) => {
                    h.update([1u8]);
                    h.update((text.len() as u64).to_be_bytes());
                    h.update(text.as_bytes());
                }
            }
        }
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Where poison records go (the `-dlq` topic in Kafka). Held by the consumer.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Stores the letter durably; `Err` means retry.
    async fn send(&self, letter: &DeadLetter) -> Result<()>;
}

/// Which source records were dead-lettered already, so that a batch delivered again
/// (Lambda retries a whole batch after a timeout or a later record's failure) does not
/// send its poison again. Held by the consumer: checked before a send, written after it.
#[async_trait]
pub trait DeadLetterMarks: Send + Sync {
    /// Whether a letter for this record (same position, same key and value) was sent.
    async fn was_sent(&self, letter: &DeadLetter) -> Result<bool>;
    /// Records that the letter for this record was sent.
    async fn mark_sent(&self, letter: &DeadLetter) -> Result<()>;
}

/// Everything a route store provides (the embedded store and DynamoDB both do), for
/// wiring code that picks one at start-up and hands each service the parts it uses.
pub trait Store: RouteReader + RouteWriter + HistoryReader + Outbox + HealthStore + Probe {}

impl<T: RouteReader + RouteWriter + HistoryReader + Outbox + HealthStore + Probe> Store for T {}

/// Everything a shared cache provides.
pub trait Cache: SharedCache + Probe {}

impl<T: SharedCache + Probe> Cache for T {}
