//! The shared cache on Redis (ElastiCache in AWS), with exactly the semantics of
//! [`MemoryCache`](super::memory_cache::MemoryCache): apply-if-newer per version and a
//! "complete set" marker per `(tenant, service, env)`.
//!
//! # Layout
//! One hash per `(tenant, service, env)`, at `<prefix>{<tenant>/<service>/<env>}`. Its
//! fields are version names, each holding the JSON of a [`CachedRoute`] with a real
//! revision (`{"rev":7,"route":{...}}`, `route` null for a delete), plus the field
//! [`COMPLETE_FIELD`], which no version name can equal (names start with a letter or a
//! digit), present once the set was filled from the store. A version's health state
//! (docs/health.md) lives beside it in the field `~h:<version>`, as
//! `{"rev":<seq>,"health":{...}}`: the same apply-if-newer scripts order it by its `seq`,
//! independently of the route's revision, and reads show it on the route.
//!
//! A negative entry (revision 0: "the store has no such route") is never a hash field:
//! it is a string key of its own, `<prefix>{<tenant>/<service>/<env>}~absent~<version>`,
//! set with its own [`NEGATIVE_KEY_TTL`]. Redis expires whole keys, not fields, so a
//! negative field in a live hash would live as long as the hash (a week, refreshed by
//! every real write): lookups of made-up versions of a real service would pile up in it
//! for good. As keys of their own they cannot outlive their short TTL. (Hashes written
//! before this layout may still hold negative fields; reads skip them and the next fill
//! deletes them.)
//!
//! The `{...}` hash tag puts a service's hash and its negative keys in one cluster slot,
//! so no command or script is ever cross-slot. Names are validated and cannot hold `{`
//! or `}`; the prefix is checked too.
//!
//! # Writes
//! Both writes are Lua scripts (EVALSHA, loaded on `NOSCRIPT`), so the comparison and the
//! write are one atomic step inside Redis: concurrent consumers and a racing resolve fill
//! can never put an older revision back. A field is replaced only when it is absent, holds
//! a lower `rev` (decoded with `cjson`), or holds something that is not an entry at all
//! (which heals a corrupt field). Revisions are compared as Lua numbers (doubles): exact up
//! to 2^53, far beyond a route's lifetime of changes.
//!
//! # Expiry
//! A write that stores a real revision (> 0) sets the hash's TTL to [`KEY_TTL`] (7 days)
//! and deletes the version's negative key.
//! The TTL exists to reclaim services nobody writes any more; it must not let a
//! redelivered old event land on an expired key and put an older revision back. An old
//! event can only come back while the topic still holds it, and MSK keeps records 7 days
//! by default; every newer event of the key refreshed the TTL when it was applied, so a key
//! outlives every event that can still reach it. (Keep `KEY_TTL` at or above the topic's
//! retention.) A hash holding only the marker of an empty set holds nothing a replay could
//! undo, so it lives [`NEGATIVE_KEY_TTL`], as every negative key does: lookups of routes
//! that do not exist cannot fill Redis for a week. A marker write never shortens a longer
//! TTL. Whole keys expire, never single fields, so a set is never half complete.
//! Reads never touch the TTL (resolve's hot path stays read-only). Eviction under memory
//! pressure would drop keys like an expiry does, but at any age: size the cache so that it
//! does not evict (ElastiCache Serverless scales instead).
//!
//! # Connection
//! One connection per process, reused across invocations: a multiplexed connection (many
//! requests in flight on one socket), or for a cluster the cluster client's connection
//! set. It is opened on first use and replaced after any transport error; after a failed
//! attempt, calls fail at once for a backoff that doubles from 1 s up to 15 s, so an outage
//! costs callers at most one connect timeout per backoff window instead of one each. A
//! connection idle for [`IDLE_RESET`] is replaced before use. Every call is bounded by
//! [`OP_DEADLINE`] and a dropped connection is retried once (every operation is
//! idempotent). Any Redis failure is `Error::Unavailable` with the server's address and
//! the reason, never the URL (it may hold a password); an entry that does not decode is
//! `Error::Internal`.
//!
//! # URL
//! `redis://[user][:password@]host[:port][/db]`, or `rediss://` for TLS (rustls, with the
//! system's root certificates, as for ElastiCache's Amazon-issued certificates);
//! percent-encode the password. Append `?cluster=true` for Redis Cluster (ElastiCache
//! cluster mode, ElastiCache Serverless): the client then reads the slot map from the
//! given node and sends each key to its slot's owner, following `MOVED` and `ASK`. Without
//! it a single server (or a proxy that routes by itself) is assumed, and a cluster answers
//! `MOVED`, reported as `Unavailable`.

use crate::domain::health::RouteHealth;
use crate::domain::names::{RouteKey, ServiceKey, VersionName};
use crate::ports::{CachedRoute, Probe, SharedCache};
use crate::{Error, Result};
use async_trait::async_trait;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Client, Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    Script, Value,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The key prefix used unless the caller picks another (tests use one prefix each).
pub const DEFAULT_PREFIX: &str = "tm:";
/// The hash field that marks a set complete; a version name cannot start with `~`.
pub const COMPLETE_FIELD: &str = "~complete";
/// The prefix of a version's health field; no version name starts with `~`.
pub const HEALTH_FIELD_PREFIX: &str = "~h:";

/// A health field's value: `rev` is the state's `seq`, so the apply scripts order it.
#[derive(serde::Serialize, serde::Deserialize)]
struct HealthField {
    rev: u64,
    health: Arc<RouteHealth>,
}

fn health_field(version: &str) -> String {
    format!("{HEALTH_FIELD_PREFIX}{version}")
}

/// TTL of a key holding a real revision, refreshed by every write that stores one. At least
/// the event topic's retention (MSK's default: 7 days); see the module docs.
pub const KEY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// TTL of a negative entry's key, and of a hash holding only an empty set's marker.
pub const NEGATIVE_KEY_TTL: Duration = Duration::from_secs(10 * 60);
/// How long one connection attempt (TCP, TLS, handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its answer. A healthy cache answers in a
/// millisecond; past this the store is the faster source.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
/// The most any call takes: one connection attempt plus one command.
pub const OP_DEADLINE: Duration = Duration::from_millis(1500);
/// A connection idle this long is replaced before use: middleboxes on the way (a NAT
/// gateway: after 350 s) drop idle TCP flows without telling either end, and a frozen
/// Lambda execution environment cannot send keepalives. A new connection costs a
/// handshake; a silently dead one costs a response timeout.
pub const IDLE_RESET: Duration = Duration::from_secs(240);
/// The first wait after a failed connection attempt; it doubles per failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Shared by both writes: whether `rev` may replace the field, and the TTL rule.
const LUA_COMMON: &str = r#"
local function replaces(key, field, rev)
  local old = redis.call('HGET', key, field)
  if not old then return true end
  local ok, entry = pcall(cjson.decode, old)
  local old_rev = ok and type(entry) == 'table' and tonumber(entry.rev)
  return not old_rev or old_rev < rev
end
local function refresh_ttl(key, stored_real, ttl, negative_ttl)
  if stored_real then
    redis.call('EXPIRE', key, ttl)
  elseif redis.call('TTL', key) < negative_ttl then
    redis.call('EXPIRE', key, negative_ttl)
  end
end
"#;

/// KEYS[1] the set, KEYS[2] the version's negative key; ARGV: version, revision, entry
/// JSON, TTL, negative TTL. Returns 1 when stored, 0 when the cache holds the same or a
/// newer revision. A negative entry goes to its own key (never into the hash) and only
/// when the hash has nothing for the version; a real one replaces the negative key.
const LUA_APPLY: &str = r#"
local rev = tonumber(ARGV[2])
if rev <= 0 then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
  if redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[5]), 'NX') then return 1 end
  return 0
end
if not replaces(KEYS[1], ARGV[1], rev) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('DEL', KEYS[2])
refresh_ttl(KEYS[1], true, tonumber(ARGV[4]), tonumber(ARGV[5]))
return 1
"#;

/// KEYS[1] the set; ARGV: marker field, TTL, negative TTL, then (version, revision, entry
/// JSON) triples of real revisions. Deletes negative fields an older layout left in the
/// hash, merges each entry if newer, then marks the set complete.
const LUA_FILL: &str = r#"
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local ok, entry = pcall(cjson.decode, fields[i + 1])
  if ok and type(entry) == 'table' and tonumber(entry.rev) == 0 then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
local stored_real = false
for i = 4, #ARGV, 3 do
  local rev = tonumber(ARGV[i + 1])
  if rev > 0 and replaces(KEYS[1], ARGV[i], rev) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    stored_real = true
  end
end
redis.call('HSET', KEYS[1], ARGV[1], '1')
refresh_ttl(KEYS[1], stored_real, tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
"#;

/// The shared cache on Redis or Redis Cluster (ElastiCache).
pub struct RedisCache {
    link: Link,
    prefix: String,
    apply: Script,
    fill: Script,
}

impl fmt::Debug for RedisCache {
    // By hand: the client holds the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("addr", &self.link.addr)
            .field("cluster", &matches!(*self.link.target, Target::Cluster(_)))
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisCache {
    /// A cache on the server (or cluster, with `?cluster=true`) at `url`, with every key
    /// under `prefix` (usually [`DEFAULT_PREFIX`]). Fails only for a bad URL or prefix: the
    /// first connection is attempted here, but a server that does not answer yet is logged
    /// and retried on use, so an outage of the cache never stops a function from starting.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        if prefix.contains(['{', '}']) {
            return Err(Error::Internal(
                "redis key prefix: must not contain '{' or '}' (it would move the hash tag)".into(),
            ));
        }
        let (url, cluster) = take_cluster_flag(url)?;
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| Error::Internal(format!("redis url: {e}")))?;
        let addr = info.addr().to_string();
        // Small requests and answers: send each at once instead of waiting to coalesce.
        let info = info.set_tcp_settings(TcpSettings::default().set_nodelay(true));
        let target = if cluster {
            let client = ClusterClient::builder([info])
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map_err(|e| Error::Internal(format!("redis url: {e}")))?;
            Target::Cluster(client)
        } else {
            let client =
                Client::open(info).map_err(|e| Error::Internal(format!("redis url: {e}")))?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            Target::Single(client, config)
        };
        let cache = Self {
            link: Link::new(target, addr),
            prefix: prefix.to_owned(),
            apply: Script::new(&format!("{LUA_COMMON}{LUA_APPLY}")),
            fill: Script::new(&format!("{LUA_COMMON}{LUA_FILL}")),
        };
        if let Err(e) = cache.ping().await {
            tracing::warn!(error = %e, "redis cache not reachable yet; retrying on use");
        }
        Ok(cache)
    }

    /// The Redis key of a `(tenant, service, env)`.
    pub fn key_of(&self, svc: &ServiceKey) -> String {
        format!(
            "{}{{{}/{}/{}}}",
            self.prefix, svc.tenant, svc.service, svc.env
        )
    }

    /// The Redis key of a version's negative entry: in its service's slot, and no hash's
    /// key (those end with `}`).
    pub fn negative_key_of(&self, key: &RouteKey) -> String {
        format!("{}~absent~{}", self.key_of(&key.svc), key.version)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Runs `script` on this cache's connection, with its deadline and reconnection (for
    /// the other Redis adapters of this crate, such as the tenant rate limiter). Every
    /// key must be in one hash slot.
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<T> {
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(*k);
        }
        for a in args {
            call.arg(a);
        }
        let call = &call;
        self.link
            .run(|mut c| async move { call.invoke_async(&mut c).await })
            .await
    }

    fn decode_health(&self, key: &str, field: &str, json: &str) -> Result<Arc<RouteHealth>> {
        serde_json::from_str::<HealthField>(json)
            .map(|f| f.health)
            .map_err(|e| {
                Error::Internal(format!(
                    "redis {}: {key} field {field} is not a health entry: {e}",
                    self.link.addr
                ))
            })
    }

    /// Applies one field with the apply script (`negative`: the key a negative entry of
    /// this field would live in); whether it was stored.
    async fn apply_field(
        &self,
        svc: &ServiceKey,
        negative: String,
        field: &str,
        rev: u64,
        json: String,
    ) -> Result<bool> {
        let mut call = self.apply.key(self.key_of(svc));
        call.key(negative)
            .arg(field)
            .arg(rev)
            .arg(json)
            .arg(KEY_TTL.as_secs())
            .arg(NEGATIVE_KEY_TTL.as_secs());
        let call = &call;
        let stored: i64 = self
            .link
            .run(|mut c| async move { call.invoke_async(&mut c).await })
            .await?;
        Ok(stored == 1)
    }

    fn decode(&self, key: &str, field: &str, json: &str) -> Result<CachedRoute> {
        serde_json::from_str(json).map_err(|e| {
            Error::Internal(format!(
                "redis {}: {key} field {field} is not a cache entry: {e}",
                self.link.addr
            ))
        })
    }
}

#[async_trait]
impl SharedCache for RedisCache {
    async fn get(&self, key: &RouteKey) -> Result<Option<CachedRoute>> {
        let hash = self.key_of(&key.svc);
        let negative = self.negative_key_of(key);
        let hfield = health_field(key.version.as_str());
        // A hit is one round trip: the version's field and its health field. Only when the
        // field is absent is the negative key read (same slot): a second round trip, on
        // the path that goes on to the store anyway.
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&hash).arg(key.version.as_str()).arg(&hfield);
        let cmd = &cmd;
        let (field, health): (Option<String>, Option<String>) = self
            .link
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        if let Some(j) = field {
            let health = health
                .map(|h| self.decode_health(&hash, &hfield, &h))
                .transpose()?;
            return Ok(Some(
                self.decode(&hash, key.version.as_str(), &j)?
                    .with_health(health),
            ));
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(&negative);
        let cmd = &cmd;
        let absent: Option<String> = self
            .link
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        absent.map(|j| self.decode(&negative, "-", &j)).transpose()
    }

    async fn versions(&self, svc: &ServiceKey) -> Result<Option<Vec<CachedRoute>>> {
        let hash = self.key_of(svc);
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&hash);
        let cmd = &cmd;
        let mut fields: HashMap<String, String> = self
            .link
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        if fields.remove(COMPLETE_FIELD).is_none() {
            return Ok(None);
        }
        let mut health = HashMap::new();
        fields.retain(
            |field, json| match field.strip_prefix(HEALTH_FIELD_PREFIX) {
                Some(version) => {
                    health.insert(version.to_owned(), (field.clone(), std::mem::take(json)));
                    false
                }
                None => true,
            },
        );
        let mut entries = fields
            .iter()
            .map(|(field, json)| {
                let h = health
                    .get(field)
                    .map(|(hf, hj)| self.decode_health(&hash, hf, hj))
                    .transpose()?;
                Ok(self.decode(&hash, field, json)?.with_health(h))
            })
            .collect::<Result<Vec<_>>>()?;
        // A negative field of an older layout says nothing the complete set does not.
        entries.retain(|e| e.revision > 0);
        Ok(Some(entries))
    }

    async fn apply(&self, key: &RouteKey, entry: &CachedRoute) -> Result<bool> {
        let stored = self
            .apply_field(
                &key.svc,
                self.negative_key_of(key),
                key.version.as_str(),
                entry.revision,
                encode(entry)?,
            )
            .await?;
        if let Some(h) = &entry.health {
            self.apply_health(key, h).await?;
        }
        Ok(stored)
    }

    async fn apply_health(&self, key: &RouteKey, health: &RouteHealth) -> Result<bool> {
        let field = health_field(key.version.as_str());
        // A health state is never negative: the key is only there for the script's shape,
        // and no negative entry lives under a health field's name.
        let unused = format!("{}~absent~{field}", self.key_of(&key.svc));
        self.apply_field(&key.svc, unused, &field, health.seq, encode_health(health)?)
            .await
    }

    async fn fill(&self, svc: &ServiceKey, entries: &[(VersionName, CachedRoute)]) -> Result<()> {
        let mut call = self.fill.key(self.key_of(svc));
        call.arg(COMPLETE_FIELD)
            .arg(KEY_TTL.as_secs())
            .arg(NEGATIVE_KEY_TTL.as_secs());
        // Negative entries add nothing a complete set does not already say.
        for (version, entry) in entries.iter().filter(|(_, e)| e.revision > 0) {
            call.arg(version.as_str())
                .arg(entry.revision)
                .arg(encode(entry)?);
            if let Some(h) = &entry.health {
                call.arg(health_field(version.as_str()))
                    .arg(h.seq)
                    .arg(encode_health(h)?);
            }
        }
        let call = &call;
        let _: i64 = self
            .link
            .run(|mut c| async move { call.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Probe for RedisCache {
    fn name(&self) -> &'static str {
        "cache"
    }

    async fn ping(&self) -> Result<()> {
        let cmd = &redis::cmd("PING");
        let _: String = self
            .link
            .run(|mut c| async move { cmd.query_async(&mut c).await })
            .await?;
        Ok(())
    }
}

/// The route part of an entry (its health goes to its own field).
fn encode(entry: &CachedRoute) -> Result<String> {
    let route_part = CachedRoute {
        revision: entry.revision,
        route: entry.route.clone(),
        health: None,
    };
    serde_json::to_string(&route_part)
        .map_err(|e| Error::Internal(format!("cache entry does not encode: {e}")))
}

fn encode_health(health: &RouteHealth) -> Result<String> {
    serde_json::to_string(&HealthField {
        rev: health.seq,
        health: Arc::new(health.clone()),
    })
    .map_err(|e| Error::Internal(format!("health entry does not encode: {e}")))
}

/// Removes the adapter's own `cluster=true|false` query parameter from the URL.
fn take_cluster_flag(url: &str) -> Result<(String, bool)> {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let Some((base, query)) = rest.split_once('?') else {
        return Ok((url.to_owned(), false));
    };
    let mut cluster = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "cluster" {
            kept.push(pair);
            continue;
        }
        cluster = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(Error::Internal(
                    "redis url: cluster must be true or false".into(),
                ));
            }
        };
    }
    let mut out = base.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Ok((out, cluster))
}

/// How to open a connection.
enum Target {
    Single(Client, AsyncConnectionConfig),
    Cluster(ClusterClient),
}

impl Target {
    async fn open(&self) -> redis::RedisResult<Conn> {
        match self {
            Target::Single(client, config) => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(Conn::Single),
            Target::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }
}

/// An open connection; cheap to clone (clones share the socket or sockets).
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The current connection, or the attempt to open one.
struct Slot {
    /// Bumped on each replacement, so a stale failure cannot drop a newer connection.
    generation: u64,
    conn: Arc<OnceCell<Conn>>,
    last_used: Instant,
    /// Consecutive failed attempts, and when the last one ended.
    failures: u32,
    failed_at: Option<Instant>,
    last_error: String,
}

impl Slot {
    fn replace(&mut self) {
        self.generation += 1;
        self.conn = Arc::new(OnceCell::new());
    }

    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(8);
        (BACKOFF_MIN * 2u32.pow(doublings)).min(BACKOFF_MAX)
    }
}

/// One connection per process, reopened after failures (see the module docs).
struct Link {
    target: Arc<Target>,
    /// `host:port`, for messages: never the URL, which may hold a password.
    addr: String,
    // A std Mutex: held for a few field updates, never across an await.
    slot: Mutex<Slot>,
}

impl Link {
    fn new(target: Target, addr: String) -> Self {
        Self {
            target: Arc::new(target),
            addr,
            slot: Mutex::new(Slot {
                generation: 0,
                conn: Arc::new(OnceCell::new()),
                last_used: Instant::now(),
                failures: 0,
                failed_at: None,
                last_error: String::new(),
            }),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        match self.slot.lock() {
            Ok(g) => g,
            // The slot holds no invariant a panic could break halfway.
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn unavailable(&self, why: impl fmt::Display) -> Error {
        Error::Unavailable(format!("redis {}: {why}", self.addr))
    }

    /// Runs `op` on the connection within [`OP_DEADLINE`], retrying once on a connection
    /// that turned out to be dropped.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempts = async {
            let mut retried = false;
            loop {
                let (generation, conn) = self.connection().await?;
                match op(conn).await {
                    Ok(v) => return Ok(v),
                    Err(e) => {
                        if e.is_io_error() || e.is_unrecoverable_error() {
                            self.drop_connection(generation);
                        }
                        if e.is_connection_dropped() && !retried {
                            retried = true;
                            continue;
                        }
                        return Err(self.unavailable(describe(&e)));
                    }
                }
            }
        };
        match tokio::time::timeout(OP_DEADLINE, attempts).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(format!("no answer within {OP_DEADLINE:?}"))),
        }
    }

    /// The open connection, opening one if needed (one attempt at a time; callers arriving
    /// meanwhile wait for it).
    async fn connection(&self) -> Result<(u64, Conn)> {
        let (generation, cell) = {
            let mut slot = self.slot();
            let now = Instant::now();
            if slot.conn.initialized() && now.duration_since(slot.last_used) > IDLE_RESET {
                slot.replace();
            }
            slot.last_used = now;
            (slot.generation, slot.conn.clone())
        };
        let conn = cell.get_or_try_init(|| self.open()).await?;
        Ok((generation, conn.clone()))
    }

    async fn open(&self) -> Result<Conn> {
        {
            let slot = self.slot();
            if let Some(at) = slot.failed_at {
                let wait = slot.backoff();
                if at.elapsed() < wait {
                    return Err(self.unavailable(format!(
                        "{} (next attempt within {wait:?})",
                        slot.last_error
                    )));
                }
            }
        }
        // In a task of its own, so that a panic in the client (rustls panics when the build
        // has no crypto provider) fails this attempt instead of the whole invocation. Both
        // clients bound their own steps by CONNECT_TIMEOUT; this bounds the sum (the
        // cluster client also reads the slot map), within OP_DEADLINE.
        let target = self.target.clone();
        let attempt =
            tokio::spawn(async move { tokio::time::timeout(CONNECT_TIMEOUT, target.open()).await });
        let opened = attempt.await;
        let mut slot = self.slot();
        let why = match opened {
            Ok(Ok(Ok(conn))) => {
                slot.failures = 0;
                slot.failed_at = None;
                return Ok(conn);
            }
            Ok(Ok(Err(e))) => describe(&e),
            Ok(Err(_)) => format!("connection not established within {CONNECT_TIMEOUT:?}"),
            Err(join) => match join.try_into_panic() {
                Ok(panic) => {
                    let text = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    format!("the client panicked: {}", text.trim())
                }
                Err(_) => "the attempt was cancelled".to_owned(),
            },
        };
        slot.failures = slot.failures.saturating_add(1);
        slot.failed_at = Some(Instant::now());
        slot.last_error = format!("cannot connect: {why}");
        Err(self.unavailable(&slot.last_error))
    }

    fn drop_connection(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.generation == generation {
            slot.replace();
        }
    }
}

/// The error with a hint where the cause is a likely misconfiguration.
fn describe(e: &RedisError) -> String {
    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::Moved) {
        format!("{e} (a cluster: add ?cluster=true to the URL)")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_flag_is_taken_out_of_the_url_and_the_rest_is_kept() {
        assert_eq!(
            take_cluster_flag("redis://h:1").unwrap(),
            ("redis://h:1".to_owned(), false)
        );
        assert_eq!(
            take_cluster_flag("rediss://:p%23w@h:1/?cluster=true").unwrap(),
            ("rediss://:p%23w@h:1/".to_owned(), true)
        );
        assert_eq!(
            take_cluster_flag("rediss://cache.example:6379?cluster=true").unwrap(),
            ("rediss://cache.example:6379".to_owned(), true),
            "the form infra/template.yaml uses"
        );
        assert_eq!(
            take_cluster_flag("redis://h/?protocol=resp3&cluster=false#x").unwrap(),
            ("redis://h/?protocol=resp3#x".to_owned(), false)
        );
        for bad in [
            "redis://h/?cluster=yes",
            "redis://h/?cluster",
            "redis://h/?cluster=",
        ] {
            assert!(
                matches!(take_cluster_flag(bad), Err(Error::Internal(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_backoff_doubles_from_one_second_up_to_fifteen() {
        let mut slot = Slot {
            generation: 0,
            conn: Arc::new(OnceCell::new()),
            last_used: Instant::now(),
            failures: 1,
            failed_at: None,
            last_error: String::new(),
        };
        let waits: Vec<u64> = (1..=7)
            .map(|n| {
                slot.failures = n;
                slot.backoff().as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 15, 15, 15]);
    }

    #[tokio::test]
    async fn a_prefix_that_would_move_the_hash_tag_is_refused() {
        let err = RedisCache::connect("redis://127.0.0.1:1", "tm{x}:")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Internal(m) if m.contains("prefix")));
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_without_echoing_it() {
        let err = RedisCache::connect("redis://:hunter2@/", "tm:")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Internal(m) if m.starts_with("redis url:") && !m.contains("hunter2")),
            "{err:?}"
        );
    }
}
