//! The management API's use cases: revisions, preconditions, events, pagination.

use super::relay::Relay;
use crate::cursor::CursorKeys;
use crate::domain::event::{AuditEntry, ChangeType, HistoryEntry, RouteEvent, SCHEMA};
use crate::domain::health;
use crate::domain::names::{EnvName, RouteKey, ServiceName, TenantName};
use crate::domain::route::{HealthStatus, Route, RouteSpec};
use crate::domain::timefmt::Timestamp;
use crate::ports::{
    AuditQuery, Commit, Consistency, EventPublisher, HistoryReader, ListQuery, Outbox, RouteReader,
    RouteWriter, SharedCache, StoredRoute,
};
use crate::{Error, Result};
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a write re-reads and retries after losing a race with another writer. Each
/// round has one winner, so this bounds how many simultaneous writers of one route all
/// succeed; between rounds a short random pause spreads the retries out.
const MAX_ATTEMPTS: usize = 32;

/// How long a write keeps starting new rounds after lost races before it answers 503
/// `unavailable`: well under the write function's timeout (10 s by default), so a write
/// under heavy contention ends with the contract's error, not a Lambda timeout. (Each
/// backend call has its own, shorter deadline.)
pub const WRITE_BUDGET: Duration = Duration::from_secs(4);

/// The longest a whole write (PUT, DELETE, activate, deactivate) may take, every round,
/// backend call and the publish after commit included; past it the write answers 503
/// `unavailable`. [`WRITE_BUDGET`] only stops new rounds, and one round's guarded calls
/// may take 9.25 s (a 3 s read, a 6 s commit, a 0.25 s publish), so without this a round
/// started late would outlive the function. Under the write function's timeout
/// (`WriteTimeout`, at least 10 s in `infra/template.yaml`) with room to send the answer.
/// A write cut here may still have committed, as with any timeout: the route's revision
/// (`GET`, or `If-Match` on the retry) tells.
pub const WRITE_DEADLINE: Duration = Duration::from_millis(9000);

/// The retry rounds of one write: at most [`MAX_ATTEMPTS`], none started past the budget.
struct Rounds {
    started: Instant,
    budget: Duration,
    done: usize,
}

impl Rounds {
    fn new(budget: Duration) -> Self {
        Self {
            started: Instant::now(),
            budget,
            done: 0,
        }
    }

    /// Whether another round may start (the first always does).
    fn more(&self) -> bool {
        self.done == 0 || (self.done < MAX_ATTEMPTS && self.started.elapsed() < self.budget)
    }

    /// A round lost its race: a short random pause, longer as rounds go on.
    async fn lost(&mut self) {
        let ms = fastrand::u64(0..=(2 * self.done as u64 + 1));
        self.done += 1;
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// The answer when no round won.
    fn exhausted(&self, key: &RouteKey) -> Error {
        Error::Unavailable(format!(
            "{key}: too many concurrent writers ({} attempts in {} ms)",
            self.done,
            self.started.elapsed().as_millis()
        ))
    }
}

/// What one round of a write decided from the stored state it read.
struct Step<T> {
    /// The change to commit before answering; `None` when there is nothing to change (a
    /// route already in the state asked for). Another writer committing first loses the
    /// round.
    commit: Option<RouteEvent>,
    /// The write's answer once the change (if any) is committed.
    answer: T,
}

/// Who is making a change, for `updated_by`, history and the event.
#[derive(Clone, Debug)]
pub struct Actor {
    /// The token's `sub`.
    pub sub: String,
    /// The request's correlation id.
    pub correlation_id: String,
}

/// A write's precondition, from the `If-Match` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: the route must exist.
    Any,
    /// `"<revision>"`: the stored revision must be this.
    Revision(u64),
}

/// `If-Match` / `If-None-Match` of a request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Preconditions {
    /// `If-Match`.
    pub if_match: Option<IfMatch>,
    /// `If-None-Match: *`.
    pub if_none_match_any: bool,
}

/// What happens right after a commit. Either way the outbox already holds the event.
pub enum AfterCommit {
    /// Wake the relay running in this process (tm-local).
    Wake(Arc<Relay>),
    /// Publish this change now, within `deadline`, and mark it published; the relay
    /// function picks up whatever this misses (Lambda, where nothing runs after the
    /// response).
    PublishNow {
        /// Kafka.
        publisher: Arc<dyn EventPublisher>,
        /// The store's outbox.
        outbox: Arc<dyn Outbox>,
        /// The most a write waits on the publisher.
        deadline: Duration,
    },
}

impl AfterCommit {
    /// Hands a committed event on, never failing: what this misses, the relay publishes.
    pub async fn handle(&self, event: &RouteEvent, outbox_id: String) {
        match self {
            AfterCommit::Wake(relay) => relay.wake(),
            AfterCommit::PublishNow {
                publisher,
                outbox,
                deadline,
            } => {
                let sent = tokio::time::timeout(*deadline, async {
                    publisher.publish(std::slice::from_ref(event)).await?;
                    outbox.mark_published(&[outbox_id]).await
                })
                .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        crate::metrics::figures().publish_deferred();
                        tracing::warn!(error = %e, "publish after commit failed; the relay will retry")
                    }
                    Err(_) => {
                        crate::metrics::figures().publish_deferred();
                        tracing::warn!("publish after commit timed out; the relay will retry")
                    }
                }
            }
        }
    }
}

/// A page of results.
#[derive(Clone, Debug, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Present when more items follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET .../status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    /// The stored revision.
    pub revision: u64,
    /// The shared cache's revision, `null` when not cached.
    pub cached_revision: Option<u64>,
    /// `cached_revision == revision`.
    pub in_sync: bool,
    /// Each endpoint's health, when the route has a `health_check` (docs/health.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Vec<EndpointHealthStatus>>,
}

/// One endpoint's health in `GET .../status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointHealthStatus {
    /// The endpoint's id.
    pub id: String,
    /// `healthy`, `unhealthy`, or `unknown` (not probed yet; resolve treats it as healthy).
    pub status: &'static str,
    /// When the status last changed; absent while unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Why the last probe failed, while failures are being counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Audit filters as the request gave them (already validated).
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// `type=`.
    pub kind: Option<ChangeType>,
    /// `since=` (inclusive).
    pub since: Option<Timestamp>,
    /// `until=` (exclusive).
    pub until: Option<Timestamp>,
}

/// The write function's service.
pub struct WriteService {
    reader: Arc<dyn RouteReader>,
    writer: Arc<dyn RouteWriter>,
    history: Arc<dyn HistoryReader>,
    cache: Arc<dyn SharedCache>,
    after_commit: AfterCommit,
    cursors: Arc<CursorKeys>,
    budget: Duration,
    deadline: Duration,
    audit_scan: usize,
}

/// Most audit entries one `GET .../audit` request examines (matching its filters or
/// not). A page with a rare filter may come back short, or empty, with a `next_cursor`
/// that continues where the scan stopped.
pub const AUDIT_SCAN_BUDGET: usize = 1000;

fn precondition(msg: &str) -> Error {
    Error::PreconditionFailed(msg.to_owned())
}

fn check_if_match(pre: &Preconditions, live: Option<&Route>) -> Result<()> {
    match (pre.if_match, live) {
        (Some(IfMatch::Any), None) => Err(precondition("If-Match: the route does not exist")),
        (Some(IfMatch::Revision(_)), None) => {
            Err(precondition("If-Match: the route does not exist"))
        }
        (Some(IfMatch::Revision(n)), Some(r)) if r.revision != n => Err(precondition(&format!(
            "If-Match: the route is at revision {}",
            r.revision
        ))),
        _ => Ok(()),
    }
}

impl WriteService {
    /// Builds the service over its ports. `cursors` signs pagination cursors: a
    /// [`CursorKey`](crate::cursor::CursorKey) (one fixed key) or the run-time
    /// [`CursorKeys`] (a key ring refreshed from its source).
    pub fn new(
        reader: Arc<dyn RouteReader>,
        writer: Arc<dyn RouteWriter>,
        history: Arc<dyn HistoryReader>,
        cache: Arc<dyn SharedCache>,
        after_commit: AfterCommit,
        cursors: impl Into<Arc<CursorKeys>>,
    ) -> Self {
        Self {
            reader,
            writer,
            history,
            cache,
            after_commit,
            cursors: cursors.into(),
            budget: WRITE_BUDGET,
            deadline: WRITE_DEADLINE,
            audit_scan: AUDIT_SCAN_BUDGET,
        }
    }

    /// The same service examining at most `entries` audit entries per request (never
    /// fewer than a page needs unfiltered) instead of [`AUDIT_SCAN_BUDGET`].
    pub fn with_audit_scan_budget(mut self, entries: usize) -> Self {
        self.audit_scan = entries;
        self
    }

    /// The same service with another whole-write deadline than [`WRITE_DEADLINE`].
    pub fn with_write_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// `write`, or 503 `unavailable` once the write deadline has passed.
    async fn bounded<T>(&self, what: &str, write: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.deadline, write).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Unavailable(format!(
                "{what}: not done within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    /// The same service with another retry budget than [`WRITE_BUDGET`].
    pub fn with_write_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    fn event(
        kind: ChangeType,
        key: &RouteKey,
        revision: u64,
        at: Timestamp,
        route: Option<Route>,
        actor: &Actor,
    ) -> RouteEvent {
        RouteEvent {
            schema: SCHEMA,
            event_id: uuid::Uuid::new_v4().to_string(),
            kind,
            tenant: key.svc.tenant.clone(),
            service: key.svc.service.clone(),
            env: key.svc.env.clone(),
            version: key.version.clone(),
            revision,
            occurred_at: at,
            actor: actor.sub.clone(),
            correlation_id: actor.correlation_id.clone(),
            route,
            health: None,
        }
    }

    /// Commits, then hands the event on (never failing the write because of that).
    async fn commit(&self, expected: Option<&StoredRoute>, event: RouteEvent) -> Result<()> {
        let commit = Commit {
            expected_revision: expected.map(|s| s.revision),
            event,
        };
        let outbox_id = self.writer.commit(&commit).await?;
        tracing::info!(
            correlation_id = %commit.event.correlation_id,
            route = %commit.event.key(),
            revision = commit.event.revision,
            kind = commit.event.kind.as_str(),
            "change committed"
        );
        self.after_commit.handle(&commit.event, outbox_id).await;
        Ok(())
    }

    async fn stored(&self, key: &RouteKey) -> Result<Option<StoredRoute>> {
        self.reader.get(key, Consistency::Strong).await
    }

    /// One write of `key`, in rounds, within [`WRITE_DEADLINE`]: each round reads the
    /// stored state, lets `decide` answer or build the event, and commits it on condition
    /// that the state read is still the stored one. A round lost to another writer
    /// (`Conflict`) pauses and starts again from a fresh read, until the rounds run out
    /// ([`Rounds`]); any other error ends the write.
    async fn write_rounds<T>(
        &self,
        what: &str,
        key: &RouteKey,
        mut decide: impl FnMut(Option<&StoredRoute>) -> Result<Step<T>>,
    ) -> Result<T> {
        self.bounded(what, async {
            let mut rounds = Rounds::new(self.budget);
            while rounds.more() {
                let stored = self.stored(key).await?;
                let Step { commit, answer } = decide(stored.as_ref())?;
                let Some(event) = commit else {
                    return Ok(answer);
                };
                match self.commit(stored.as_ref(), event).await {
                    Ok(()) => return Ok(answer),
                    Err(Error::Conflict) => rounds.lost().await,
                    Err(e) => return Err(e),
                }
            }
            Err(rounds.exhausted(key))
        })
        .await
    }

    /// `PUT`: creates or replaces; returns the route and whether it was created. Within
    /// [`WRITE_DEADLINE`].
    pub async fn put(
        &self,
        key: &RouteKey,
        spec: RouteSpec,
        pre: Preconditions,
        actor: &Actor,
    ) -> Result<(Route, bool)> {
        self.write_rounds("put", key, |stored| {
            let live = stored.and_then(|s| s.route.as_ref());
            check_if_match(&pre, live)?;
            if pre.if_none_match_any && live.is_some() {
                return Err(precondition("If-None-Match: the route exists"));
            }
            let revision = stored.map_or(0, |s| s.revision) + 1;
            let kind = if live.is_some() {
                ChangeType::Updated
            } else {
                ChangeType::Created
            };
            let at = Timestamp::now();
            let route = Route::from_spec(key, spec.clone(), revision, at, &actor.sub);
            let event = Self::event(kind, key, revision, at, Some(route.clone()), actor);
            Ok(Step {
                commit: Some(event),
                answer: (route, kind == ChangeType::Created),
            })
        })
        .await
    }

    /// `GET`: the live route, strongly consistent, its endpoints showing their health
    /// (docs/health.md).
    pub async fn get(&self, key: &RouteKey) -> Result<Route> {
        let stored = self.stored(key).await?.ok_or(Error::NotFound)?;
        let mut route = stored.route.ok_or(Error::NotFound)?;
        health::overlay(&mut route, stored.health.as_ref());
        Ok(route)
    }

    /// `DELETE`: writes a tombstone that keeps the revision. Within [`WRITE_DEADLINE`].
    pub async fn delete(&self, key: &RouteKey, pre: Preconditions, actor: &Actor) -> Result<()> {
        self.write_rounds("delete", key, |stored| {
            let live = stored
                .and_then(|s| s.route.as_ref())
                .ok_or(Error::NotFound)?;
            check_if_match(&pre, Some(live))?;
            let event = Self::event(
                ChangeType::Deleted,
                key,
                live.revision + 1,
                Timestamp::now(),
                None,
                actor,
            );
            Ok(Step {
                commit: Some(event),
                answer: (),
            })
        })
        .await
    }

    /// `POST .../activate` and `.../deactivate`. Already in that state: unchanged, no event.
    /// Within [`WRITE_DEADLINE`].
    pub async fn set_active(
        &self,
        key: &RouteKey,
        active: bool,
        pre: Preconditions,
        actor: &Actor,
    ) -> Result<Route> {
        self.write_rounds("set_active", key, |stored| {
            let live = stored
                .and_then(|s| s.route.as_ref())
                .ok_or(Error::NotFound)?;
            check_if_match(&pre, Some(live))?;
            if live.active == active {
                return Ok(Step {
                    commit: None,
                    answer: live.clone(),
                });
            }
            let at = Timestamp::now();
            let mut route = live.clone();
            route.active = active;
            route.revision += 1;
            route.updated_at = at;
            route.updated_by = actor.sub.clone();
            let kind = if active {
                ChangeType::Activated
            } else {
                ChangeType::Deactivated
            };
            let event = Self::event(kind, key, route.revision, at, Some(route.clone()), actor);
            Ok(Step {
                commit: Some(event),
                answer: route,
            })
        })
        .await
    }

    /// One page of a paginated read. Opens `cursor` (sealed for `scope`, the read and its
    /// filters, so a cursor only continues the query it came from) and `parse`s it into
    /// the position to go on from; `fetch`es from there up to `limit + 1` items (one more
    /// than the page, to tell whether more follow), and where the read stopped short for
    /// another reason than the end, if it did; then seals the position of the page's last
    /// item (`position_of`), or else that stop, as the next cursor.
    async fn page<P, T, F>(
        &self,
        scope: &str,
        cursor: Option<&str>,
        limit: usize,
        parse: impl FnOnce(String) -> Result<P>,
        fetch: impl FnOnce(Option<P>, usize) -> F,
        position_of: impl Fn(&T) -> String,
    ) -> Result<Page<T>>
    where
        F: Future<Output = Result<(Vec<T>, Option<String>)>>,
    {
        let from = cursor
            .map(|c| self.cursors.open(scope, c).and_then(parse))
            .transpose()?;
        let (mut items, stopped_at) = fetch(from, limit + 1).await?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(position_of)
        } else {
            stopped_at
        };
        Ok(Page {
            items,
            next_cursor: next.map(|position| self.cursors.seal(scope, &position)),
        })
    }

    /// `GET /v1/tenants/{t}/routes`.
    pub async fn list(
        &self,
        tenant: &TenantName,
        service: Option<ServiceName>,
        env: Option<EnvName>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Route>> {
        let scope = format!(
            "list|{tenant}|{}|{}",
            service.as_ref().map_or("", |s| s.as_str()),
            env.as_ref().map_or("", |e| e.as_str())
        );
        let parse = |position: String| {
            let parts: Vec<&str> = position.split('\0').collect();
            let [s, e, v] = parts.as_slice() else {
                return Err(Error::invalid(
                    "cursor",
                    "is not a cursor this server issued for this query",
                ));
            };
            RouteKey::parse(tenant.as_str(), s, e, v)
        };
        let fetch = |after, up_to| async move {
            let query = ListQuery {
                tenant: tenant.clone(),
                service,
                env,
                after,
                limit: up_to,
            };
            Ok((self.writer.list(&query).await?, None))
        };
        let position_of = |r: &Route| format!("{}\0{}\0{}", r.service, r.env, r.version);
        self.page(&scope, cursor, limit, parse, fetch, position_of)
            .await
    }

    /// `GET .../history`: 404 only for a key that never existed.
    pub async fn history(
        &self,
        key: &RouteKey,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<HistoryEntry>> {
        let scope = format!("history|{key}");
        let fetch = |before, up_to| async move {
            // Only once the cursor is open: a bad cursor is 400 whether the key exists or not.
            if self.stored(key).await?.is_none() {
                return Err(Error::NotFound);
            }
            Ok((self.history.history(key, before, up_to).await?, None))
        };
        let position_of = |h: &HistoryEntry| h.revision.to_string();
        self.page(&scope, cursor, limit, sequence, fetch, position_of)
            .await
    }

    /// `GET .../status`: has the change reached the shared cache?
    pub async fn status(&self, key: &RouteKey) -> Result<SyncStatus> {
        let stored = self.stored(key).await?.ok_or(Error::NotFound)?;
        let route = stored.route.ok_or(Error::NotFound)?;
        let health = route.health_check.as_ref().map(|_| {
            route
                .endpoints
                .iter()
                .map(|e| {
                    let rec = stored.health.as_ref().and_then(|h| h.of(e));
                    EndpointHealthStatus {
                        id: e.id.to_string(),
                        status: rec.map_or("unknown", |r| match r.status {
                            HealthStatus::Healthy => "healthy",
                            HealthStatus::Unhealthy => "unhealthy",
                        }),
                        since: rec.map(|r| r.since),
                        last_error: rec.and_then(|r| r.last_error.clone()),
                    }
                })
                .collect()
        });
        let cached_revision = self
            .cache
            .get(key)
            .await?
            .map(|c| c.revision)
            .filter(|r| *r > 0);
        Ok(SyncStatus {
            revision: route.revision,
            cached_revision,
            in_sync: cached_revision == Some(route.revision),
            health,
        })
    }

    /// `GET /v1/tenants/{t}/audit`.
    pub async fn audit(
        &self,
        tenant: &TenantName,
        filter: AuditFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditEntry>> {
        let scope = format!(
            "audit|{tenant}|{}|{}|{}",
            filter.kind.map_or("", |k| k.as_str()),
            filter
                .since
                .map_or(String::new(), |t| t.millis().to_string()),
            filter
                .until
                .map_or(String::new(), |t| t.millis().to_string()),
        );
        let fetch = |before_seq, up_to: usize| async move {
            let query = AuditQuery {
                tenant: tenant.clone(),
                kind: filter.kind,
                since: filter.since,
                until: filter.until,
                before_seq,
                limit: up_to,
                max_scan: self.audit_scan.max(up_to),
            };
            let found = self.history.audit(&query).await?;
            // When the scan budget ran out, the next page goes on below the last entry
            // examined.
            Ok((found.items, found.stopped_at.map(|seq| seq.to_string())))
        };
        let position_of = |(seq, _): &(u64, AuditEntry)| seq.to_string();
        let page = self
            .page(&scope, cursor, limit, sequence, fetch, position_of)
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(|(_, e)| e).collect(),
            next_cursor: page.next_cursor,
        })
    }
}

/// A cursor's position that is a sequence number (a revision, an audit entry's `seq`).
fn sequence(position: String) -> Result<u64> {
    position
        .parse::<u64>()
        .map_err(|_| Error::invalid("cursor", "is malformed"))
}
