//! The Redis shared cache against real servers: the shared Redis on 127.0.0.1:6379
//! (`scripts/start-services.sh redis`), each test under its own key prefix, plus private
//! `redis-server` processes for what needs a server of its own (a password, TLS, a restart,
//! a cluster). Raw inspection goes through `redis-cli`, which comes with `redis-server`.

use std::collections::HashMap;
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tm_core::Error;
use tm_core::adapters::redis_cache::{KEY_TTL, NEGATIVE_KEY_TTL, RedisCache};
use tm_core::domain::health::{EndpointHealth, RouteHealth};
use tm_core::domain::names::{RouteKey, ServiceKey};
use tm_core::domain::route::{HealthStatus, Route};
use tm_core::ports::{CachedRoute, Probe, SharedCache};

const SHARED_PORT: u16 = 6379;
const SHARED_URL: &str = "redis://127.0.0.1:6379";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A prefix no other test (or run) uses; its keys are deleted when it drops.
struct Scratch {
    prefix: String,
}

impl Scratch {
    fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let prefix = format!(
            "tmtest:{}:{nanos}:{}:",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Self { prefix }
    }

    async fn cache(&self) -> RedisCache {
        RedisCache::connect(SHARED_URL, &self.prefix)
            .await
            .expect("the shared Redis on 127.0.0.1:6379 (scripts/start-services.sh redis)")
    }

    fn key(&self, svc: &ServiceKey) -> String {
        format!("{}{{{}}}", self.prefix, svc.event_key())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let keys = cli(
            SHARED_PORT,
            &["--scan", "--pattern", &format!("{}*", self.prefix)],
        );
        for k in keys.lines().filter(|k| !k.is_empty()) {
            cli(SHARED_PORT, &["DEL", k]);
        }
    }
}

/// `redis-cli --raw` against 127.0.0.1:`port`; its output, trimmed.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .expect("redis-cli on PATH (it comes with redis-server)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn route_key(svc: &str, version: &str) -> RouteKey {
    RouteKey::parse("acme", svc, "prod", version).unwrap()
}

fn route(key: &RouteKey, revision: u64) -> Route {
    serde_json::from_value(serde_json::json!({
        "tenant": key.svc.tenant, "service": key.svc.service, "env": key.svc.env, "version": key.version,
        "endpoints": [{"id": "blue", "url": "https://blue.example:8443", "weight": 1, "priority": 0, "status": "active"}],
        "ttl_seconds": 30, "labels": {"team": "payments"}, "active": true,
        "revision": revision, "updated_at": "2026-11-28T12:00:00.000Z", "updated_by": "user-1"
    }))
    .unwrap()
}

/// A real entry: the live route at `revision`.
fn live(key: &RouteKey, revision: u64) -> CachedRoute {
    CachedRoute {
        revision,
        route: Some(Arc::new(route(key, revision))),
        health: None,
    }
}

/// What a delete leaves: the revision, no route.
fn tombstone(revision: u64) -> CachedRoute {
    CachedRoute {
        revision,
        route: None,
        health: None,
    }
}

fn negative() -> CachedRoute {
    CachedRoute::from_stored(None)
}

async fn rev_of(cache: &RedisCache, key: &RouteKey) -> Option<u64> {
    cache.get(key).await.unwrap().map(|e| e.revision)
}

fn ttl_secs(port: u16, key: &str) -> i64 {
    cli(port, &["TTL", key]).parse().unwrap()
}

/// A small deterministic shuffle (the suite has no rand crate).
fn shuffled(mut items: Vec<u64>, seed: u64) -> Vec<u64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
    items
}

fn assert_unavailable<T: std::fmt::Debug>(r: tm_core::Result<T>, mentions: &str) -> String {
    match r {
        Err(Error::Unavailable(m)) => {
            assert!(m.contains(mentions), "{m:?} should mention {mentions:?}");
            m
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A `redis-server` of the test's own, killed (and reaped) on drop.
struct Server {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Server {
    /// Starts on a free port; with TLS options in `extra`, that port is the TLS one.
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = Self::spawn(port, dir.path(), &extra);
        Self {
            child,
            port,
            dir,
            extra,
        }
    }

    fn spawn(port: u16, dir: &Path, extra: &[String]) -> Child {
        let port_s = port.to_string();
        let ports = if extra.iter().any(|a| a == "--tls-cert-file") {
            ["--port", "0", "--tls-port", &port_s, "--bind", "127.0.0.1"]
        } else {
            [
                "--port",
                &port_s,
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
            ]
        };
        let child = Command::new("redis-server")
            .args(ports)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/start-services.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !port_answers(port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not open port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Sends `signal` (e.g. `-STOP`) to this server's process, by its id.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, same port, same options, empty (nothing is persisted).
    fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, self.dir.path(), &self.extra);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// Apply-if-newer
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_newer_revision_replaces_an_older_one_and_a_redelivery_changes_nothing() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let key = route_key("checkout", "2.3.1");

    assert_eq!(
        cache.get(&key).await.unwrap(),
        None,
        "nothing is cached yet"
    );
    assert!(
        cache.apply(&key, &live(&key, 5)).await.unwrap(),
        "absent: stored"
    );
    assert!(
        !cache.apply(&key, &live(&key, 4)).await.unwrap(),
        "older: refused"
    );
    assert!(
        !cache.apply(&key, &live(&key, 5)).await.unwrap(),
        "redelivery: refused"
    );
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(live(&key, 5)),
        "the whole entry round-trips"
    );

    assert!(
        cache.apply(&key, &tombstone(6)).await.unwrap(),
        "a delete is a newer revision"
    );
    assert!(
        !cache.apply(&key, &live(&key, 5)).await.unwrap(),
        "the delete is not undone by an older create"
    );
    assert_eq!(cache.get(&key).await.unwrap(), Some(tombstone(6)));
    assert!(
        cache.apply(&key, &live(&key, 7)).await.unwrap(),
        "a re-create continues after the delete"
    );
    assert_eq!(rev_of(&cache, &key).await, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_consumers_applying_shuffled_revisions_end_at_the_highest() {
    const TOP: u64 = 30;
    let scratch = Scratch::new();
    // Several connections, so the applies really race inside Redis.
    let mut caches = Vec::new();
    for _ in 0..5 {
        caches.push(Arc::new(scratch.cache().await));
    }
    let key = route_key("checkout", "1.0.0");
    let mut tasks = Vec::new();
    for task in 0..50u64 {
        let cache = caches[task as usize % caches.len()].clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for rev in shuffled((1..=TOP).collect(), task + 1) {
                if cache.apply(&key, &live(&key, rev)).await.unwrap() {
                    stored.push(rev);
                }
            }
            stored
        }));
    }
    let mut times_stored: HashMap<u64, usize> = HashMap::new();
    for t in tasks {
        let stored = t.await.unwrap();
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "one consumer saw its stores go up: {stored:?}"
        );
        for rev in stored {
            *times_stored.entry(rev).or_default() += 1;
        }
    }
    assert_eq!(rev_of(&caches[0], &key).await, Some(TOP));
    assert_eq!(
        times_stored.get(&TOP),
        Some(&1),
        "the highest revision was stored exactly once"
    );
    assert!(
        times_stored.values().all(|&n| n == 1),
        "no revision was stored twice: {times_stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fill_racing_applies_never_puts_an_older_revision_back() {
    let scratch = Scratch::new();
    let filler = Arc::new(scratch.cache().await);
    let consumer = Arc::new(scratch.cache().await);
    for round in 0..60u64 {
        let key = route_key("checkout", &format!("1.0.{round}"));
        let other = route_key("checkout", &format!("0.9.{round}"));
        // Even rounds: the store read was stale (rev 1) and the event is newer (rev 2).
        // Odd rounds: the store read is newer (rev 3) than the event being applied (rev 2).
        let filled = if round % 2 == 0 { 1 } else { 3 };
        let fill = {
            let (filler, key, other) = (filler.clone(), key.clone(), other.clone());
            tokio::spawn(async move {
                let entries = [
                    (key.version.clone(), live(&key, filled)),
                    (other.version.clone(), live(&other, 1)),
                ];
                filler.fill(&key.svc, &entries).await.unwrap();
            })
        };
        let apply = {
            let (consumer, key) = (consumer.clone(), key.clone());
            tokio::spawn(async move { consumer.apply(&key, &live(&key, 2)).await.unwrap() })
        };
        let (f, applied) = tokio::join!(fill, apply);
        f.unwrap();
        let applied = applied.unwrap();
        let expected = filled.max(2);
        assert_eq!(
            rev_of(&consumer, &key).await,
            Some(expected),
            "round {round}"
        );
        if filled == 1 {
            assert!(
                applied,
                "round {round}: the event is newer than the fill, whichever ran first"
            );
        }
    }
    let any = route_key("checkout", "1.0.0");
    let revs = sorted_revs(
        filler
            .versions(&any.svc)
            .await
            .unwrap()
            .expect("filled, so complete"),
    );
    assert_eq!(revs.len(), 120, "every version of every round is there");
    assert_eq!(
        revs.iter().filter(|&&r| r == 1).count(),
        60,
        "the other versions kept their fill"
    );
}

fn sorted_revs(entries: Vec<CachedRoute>) -> Vec<u64> {
    let mut revs: Vec<u64> = entries.iter().map(|e| e.revision).collect();
    revs.sort_unstable();
    revs
}

#[tokio::test]
async fn a_negative_entry_loses_to_any_real_revision() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let key = route_key("checkout", "3.0.0");

    assert!(
        cache.apply(&key, &negative()).await.unwrap(),
        "known absent: stored"
    );
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(negative()),
        "a negative entry is a hit with no route"
    );
    assert!(
        !cache.apply(&key, &negative()).await.unwrap(),
        "a second miss changes nothing"
    );
    assert!(
        cache.apply(&key, &live(&key, 1)).await.unwrap(),
        "the create outranks the negative entry"
    );
    assert!(
        !cache.apply(&key, &negative()).await.unwrap(),
        "a late miss never hides the route"
    );
    cache
        .fill(&key.svc, &[(key.version.clone(), negative())])
        .await
        .unwrap();
    assert_eq!(
        rev_of(&cache, &key).await,
        Some(1),
        "nor does a fill from a lagging read"
    );
}

// ---------------------------------------------------------------------------------------
// Complete sets, layout, TTL
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn versions_are_answered_only_after_a_fill_marks_the_set_complete() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let v1 = route_key("checkout", "1.0.0");
    let v2 = route_key("checkout", "2.0.0");
    let gone = route_key("checkout", "0.1.0");

    cache.apply(&v2, &live(&v2, 3)).await.unwrap();
    assert_eq!(
        cache.versions(&v2.svc).await.unwrap(),
        None,
        "an event alone does not make the set complete"
    );

    let stored = [
        (v1.version.clone(), live(&v1, 1)),
        (v2.version.clone(), live(&v2, 2)),
        (gone.version.clone(), tombstone(4)),
    ];
    cache.fill(&v1.svc, &stored).await.unwrap();
    let mut got = cache
        .versions(&v1.svc)
        .await
        .unwrap()
        .expect("complete after the fill");
    got.sort_by_key(|e| e.revision);
    assert_eq!(
        got,
        [live(&v1, 1), live(&v2, 3), tombstone(4)],
        "the fill kept the newer event-applied entry"
    );

    cache.apply(&v1, &live(&v1, 5)).await.unwrap();
    let revs = sorted_revs(cache.versions(&v1.svc).await.unwrap().unwrap());
    assert_eq!(revs, [3, 4, 5], "events keep a complete set current");

    let staging = ServiceKey::parse("acme", "checkout", "staging").unwrap();
    assert_eq!(
        cache.versions(&staging).await.unwrap(),
        None,
        "another env is another set"
    );
    cache.fill(&staging, &[]).await.unwrap();
    assert_eq!(
        cache.versions(&staging).await.unwrap(),
        Some(vec![]),
        "an empty set can be complete"
    );
}

#[tokio::test]
async fn keys_hold_the_prefix_and_the_service_as_a_hash_tag() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let key = route_key("checkout", "2.3.1");
    let expected = format!("{}{{acme/checkout/prod}}", scratch.prefix);
    assert_eq!(cache.key_of(&key.svc), expected);

    cache.apply(&key, &live(&key, 7)).await.unwrap();
    cache.fill(&key.svc, &[]).await.unwrap();
    assert_eq!(cli(SHARED_PORT, &["TYPE", &expected]), "hash");
    let raw: serde_json::Value =
        serde_json::from_str(&cli(SHARED_PORT, &["HGET", &expected, "2.3.1"])).unwrap();
    assert_eq!(raw["rev"], 7);
    assert_eq!(raw["route"]["version"], "2.3.1");
    assert_eq!(cli(SHARED_PORT, &["HEXISTS", &expected, "~complete"]), "1");
    assert_eq!(
        cli(SHARED_PORT, &["HLEN", &expected]),
        "2",
        "one field per version, plus the marker"
    );
}

#[tokio::test]
async fn a_real_write_sets_a_week_long_ttl_and_a_negative_one_never_shortens_it() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let week = KEY_TTL.as_secs() as i64;
    let short = NEGATIVE_KEY_TTL.as_secs() as i64;
    let near = |ttl: i64, target: i64| ttl <= target && ttl > target - 60;

    let key = route_key("checkout", "1.0.0");
    let hash = scratch.key(&key.svc);
    cache.apply(&key, &live(&key, 1)).await.unwrap();
    assert!(
        near(ttl_secs(SHARED_PORT, &hash), week),
        "{}",
        ttl_secs(SHARED_PORT, &hash)
    );

    let other = route_key("checkout", "9.9.9");
    cache.apply(&other, &negative()).await.unwrap();
    assert!(
        near(ttl_secs(SHARED_PORT, &hash), week),
        "a negative entry does not shorten the key's life"
    );

    cli(SHARED_PORT, &["EXPIRE", &hash, "100"]);
    cache.apply(&key, &live(&key, 2)).await.unwrap();
    assert!(
        near(ttl_secs(SHARED_PORT, &hash), week),
        "every stored revision refreshes the TTL"
    );

    cli(SHARED_PORT, &["EXPIRE", &hash, "100"]);
    cache
        .fill(&key.svc, &[(key.version.clone(), live(&key, 3))])
        .await
        .unwrap();
    assert!(
        near(ttl_secs(SHARED_PORT, &hash), week),
        "so does a fill that stores one"
    );

    let unknown = route_key("nothing-here", "1.0.0");
    let unknown_hash = scratch.key(&unknown.svc);
    cache.apply(&unknown, &negative()).await.unwrap();
    assert!(
        near(
            ttl_secs(SHARED_PORT, &cache.negative_key_of(&unknown)),
            short
        ),
        "a negative entry only lives briefly"
    );
    let empty = ServiceKey::parse("acme", "no-versions", "prod").unwrap();
    cache.fill(&empty, &[]).await.unwrap();
    assert!(
        near(ttl_secs(SHARED_PORT, &scratch.key(&empty)), short),
        "so does an empty set"
    );
    cache.apply(&unknown, &live(&unknown, 1)).await.unwrap();
    assert!(
        near(ttl_secs(SHARED_PORT, &unknown_hash), week),
        "until a real revision arrives"
    );
}

#[tokio::test]
async fn no_field_in_a_live_hash_outlives_its_own_short_ttl() {
    // GIVEN a service with a real route, whose hash lives a week
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let short = NEGATIVE_KEY_TTL.as_secs() as i64;
    let real = route_key("checkout", "1.0.0");
    let hash = scratch.key(&real.svc);
    cache.apply(&real, &live(&real, 1)).await.unwrap();

    // WHEN a client looks up a hundred versions that do not exist
    let made_up: Vec<RouteKey> = (0..100)
        .map(|n| route_key("checkout", &format!("9.9.{n}")))
        .collect();
    for key in &made_up {
        assert!(cache.apply(key, &negative()).await.unwrap());
    }

    // THEN the week-long hash holds only the real route, and every negative entry is a
    // key of its own that expires within the short TTL (and still answers as a hit)
    assert_eq!(cli(SHARED_PORT, &["HLEN", &hash]), "1");
    for key in &made_up {
        let ttl = ttl_secs(SHARED_PORT, &cache.negative_key_of(key));
        assert!(ttl > 0 && ttl <= short, "{key}: ttl {ttl}");
        assert_eq!(cache.get(key).await.unwrap(), Some(negative()));
    }
    // AND a create replaces the negative key instead of leaving it to expire
    let created = &made_up[0];
    cache.apply(created, &live(created, 1)).await.unwrap();
    assert_eq!(
        ttl_secs(SHARED_PORT, &cache.negative_key_of(created)),
        -2,
        "gone"
    );
    assert_eq!(rev_of(&cache, created).await, Some(1));

    // AND a negative field an older layout left in the hash is swept by the next fill
    cli(
        SHARED_PORT,
        &["HSET", &hash, "0.0.1", r#"{"rev":0,"route":null}"#],
    );
    cache
        .fill(&real.svc, &[(real.version.clone(), live(&real, 1))])
        .await
        .unwrap();
    assert_eq!(cli(SHARED_PORT, &["HEXISTS", &hash, "0.0.1"]), "0");
}

#[tokio::test]
async fn a_corrupt_field_is_reported_as_internal_and_healed_by_the_next_write() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    let key = route_key("checkout", "1.0.0");
    let hash = scratch.key(&key.svc);
    cli(SHARED_PORT, &["HSET", &hash, "1.0.0", "not json"]);
    assert!(matches!(cache.get(&key).await, Err(Error::Internal(_))));
    assert!(
        cache.apply(&key, &live(&key, 1)).await.unwrap(),
        "an unreadable field is replaced"
    );
    assert_eq!(rev_of(&cache, &key).await, Some(1));
}

// ---------------------------------------------------------------------------------------
// Probe, failures, connection handling
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_probe_is_named_cache_and_answers_when_redis_is_up() {
    let scratch = Scratch::new();
    let cache = scratch.cache().await;
    assert_eq!(cache.name(), "cache");
    cache.ping().await.unwrap();
}

#[tokio::test]
async fn a_cache_on_a_closed_port_fails_fast_with_unavailable() {
    let started = Instant::now();
    let cache = RedisCache::connect("redis://127.0.0.1:1", "tm:")
        .await
        .expect("a down server does not stop start-up");
    let key = route_key("checkout", "1.0.0");
    assert_unavailable(cache.get(&key).await, "127.0.0.1:1");
    assert_unavailable(cache.versions(&key.svc).await, "127.0.0.1:1");
    assert_unavailable(cache.apply(&key, &live(&key, 1)).await, "127.0.0.1:1");
    assert_unavailable(cache.fill(&key.svc, &[]).await, "127.0.0.1:1");
    assert_unavailable(cache.ping().await, "127.0.0.1:1");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "connect and five calls took {took:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // Accepts connections and holds them, answering nothing: a hung or black-holed server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let cache = RedisCache::connect(&format!("redis://127.0.0.1:{port}"), "tm:")
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "connect took {:?}",
        started.elapsed()
    );
    let key = route_key("checkout", "1.0.0");
    for _ in 0..3 {
        let call = Instant::now();
        assert_unavailable(cache.get(&key).await, &format!("127.0.0.1:{port}"));
        assert!(
            call.elapsed() < Duration::from_secs(2),
            "a call took {:?}",
            call.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    holder.abort();
}

#[tokio::test]
async fn the_cache_reconnects_after_the_server_restarts() {
    let mut server = Server::start(&[]);
    let cache = RedisCache::connect(&format!("redis://127.0.0.1:{}", server.port), "tm:")
        .await
        .unwrap();
    let key = route_key("checkout", "1.0.0");
    assert!(cache.apply(&key, &live(&key, 1)).await.unwrap());

    server.kill();
    let call = Instant::now();
    assert_unavailable(cache.get(&key).await, &server.port.to_string());
    assert!(
        call.elapsed() < Duration::from_secs(1),
        "a call to a dead server took {:?}",
        call.elapsed()
    );

    server.restart();
    let back = Instant::now();
    loop {
        match cache.get(&key).await {
            Ok(got) => {
                assert_eq!(got, None, "a fresh server holds nothing");
                break;
            }
            Err(e) => assert!(
                back.elapsed() < Duration::from_secs(10),
                "still failing: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cache.apply(&key, &live(&key, 2)).await.unwrap(),
        "writes work again"
    );
}

#[tokio::test]
async fn a_frozen_server_times_out_and_the_cache_recovers_when_it_thaws() {
    let server = Server::start(&[]);
    let cache = RedisCache::connect(&format!("redis://127.0.0.1:{}", server.port), "tm:")
        .await
        .unwrap();
    let key = route_key("checkout", "1.0.0");
    assert!(cache.apply(&key, &live(&key, 1)).await.unwrap());

    // SIGSTOP: the kernel still accepts connections and data, the server answers nothing.
    server.signal("-STOP");
    for _ in 0..3 {
        let call = Instant::now();
        assert_unavailable(cache.get(&key).await, &server.port.to_string());
        assert!(
            call.elapsed() < Duration::from_secs(2),
            "a call took {:?}",
            call.elapsed()
        );
    }
    server.signal("-CONT");
    let thawed = Instant::now();
    loop {
        match cache.get(&key).await {
            Ok(got) => {
                assert_eq!(got.map(|e| e.revision), Some(1));
                break;
            }
            Err(e) => assert!(
                thawed.elapsed() < Duration::from_secs(20),
                "still failing: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_password_in_the_url_authenticates_and_never_appears_in_errors() {
    let server = Server::start(&["--requirepass", "default-pw-4711"]);
    let port = server.port;
    let created = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--no-auth-warning",
            "-a",
            "default-pw-4711",
        ])
        .args([
            "ACL",
            "SETUSER",
            "tm-user",
            "on",
            ">user-pw-0815",
            "~*",
            "+@all",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&created.stdout).trim(), "OK");
    let key = route_key("checkout", "1.0.0");

    for url in [
        format!("redis://:default-pw-4711@127.0.0.1:{port}"),
        format!("redis://tm-user:user-pw-0815@127.0.0.1:{port}"),
    ] {
        let cache = RedisCache::connect(&url, "tm:").await.unwrap();
        cache.apply(&key, &live(&key, 1)).await.unwrap();
        assert_eq!(rev_of(&cache, &key).await, Some(1), "{url}");
        assert!(
            !format!("{cache:?}").contains("pw"),
            "Debug shows no password: {cache:?}"
        );
    }

    let wrong = RedisCache::connect(
        &format!("redis://tm-user:wrong-pw-1234@127.0.0.1:{port}"),
        "tm:",
    )
    .await
    .unwrap();
    let message = assert_unavailable(wrong.get(&key).await, &format!("127.0.0.1:{port}"));
    assert!(!message.contains("wrong-pw-1234"), "{message}");
    let missing = RedisCache::connect(&format!("redis://127.0.0.1:{port}"), "tm:")
        .await
        .unwrap();
    assert_unavailable(missing.get(&key).await, &format!("127.0.0.1:{port}"));
}

// ---------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------

/// A CA and a server certificate for 127.0.0.1, made with the `openssl` command.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl on PATH");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca: Vec<&str> = [
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tm-test-ca",
        ],
    ]
    .concat();
    run(&ca);
    let csr: Vec<&str> = [
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat();
    run(&csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

fn tls_server(dir: &Path) -> Server {
    make_certificates(dir);
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    let args = [
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "tls-pw-2718",
    ];
    Server::start(&args)
}

const TLS_URL_VAR: &str = "TM_TEST_REDISS_URL";

#[tokio::test]
async fn a_rediss_url_speaks_tls_and_refuses_a_certificate_nobody_trusts() {
    let certs = tempfile::tempdir().unwrap();
    let server = tls_server(certs.path());
    let url = format!("rediss://:tls-pw-2718@127.0.0.1:{}", server.port);

    // In this process only the system's roots are trusted: the handshake must fail on the
    // certificate (so TLS is really spoken, and verified).
    let untrusted = RedisCache::connect(&url, "tm:").await.unwrap();
    let message = assert_unavailable(
        untrusted.ping().await,
        &format!("127.0.0.1:{}", server.port),
    );
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(!message.contains("tls-pw-2718"), "{message}");

    // A child process trusts the test CA (SSL_CERT_FILE, read by rustls-native-certs): the
    // same URL then authenticates and round-trips over TLS.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "redis_cache::child_process_round_trips_over_tls",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", certs.path().join("ca.pem"))
        .env(TLS_URL_VAR, &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "run by a_rediss_url_speaks_tls_and_refuses_a_certificate_nobody_trusts, in a child process"]
async fn child_process_round_trips_over_tls() {
    let url = std::env::var(TLS_URL_VAR)
        .expect("started by a_rediss_url_speaks_tls_and_refuses_a_certificate_nobody_trusts");
    let cache = RedisCache::connect(&url, "tm:").await.unwrap();
    cache.ping().await.unwrap();
    let key = route_key("checkout", "1.0.0");
    assert!(cache.apply(&key, &live(&key, 1)).await.unwrap());
    assert_eq!(cache.get(&key).await.unwrap(), Some(live(&key, 1)));
}

// ---------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && StdListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// Three masters sharing the 16384 slots, made with `redis-cli --cluster create`.
fn start_cluster() -> Vec<Server> {
    let mut nodes = Vec::new();
    while nodes.len() < 3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_cluster_port();
        let extra: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "5000",
            "--cluster-config-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.path().join("nodes.conf").to_str().unwrap().to_owned()])
        .collect();
        let child = Server::spawn(port, dir.path(), &extra);
        nodes.push(Server {
            child,
            port,
            dir,
            extra,
        });
    }
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cluster create: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the cluster did not become ok");
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_url_sends_each_service_to_the_node_that_owns_its_slot() {
    let nodes = start_cluster();
    let seed = nodes[0].port;
    let cache = RedisCache::connect(&format!("redis://127.0.0.1:{seed}/?cluster=true"), "tm:")
        .await
        .unwrap();
    // Names whose tags spread over all three nodes (CRC16 of similar short names clusters).
    let services: Vec<String> = (0..30).map(|i| format!("svc-{i}-{}", i * 7919)).collect();
    for svc in &services {
        let v1 = route_key(svc, "1.0.0");
        let v2 = route_key(svc, "2.0.0");
        assert!(cache.apply(&v2, &live(&v2, 2)).await.unwrap());
        cache
            .fill(
                &v1.svc,
                &[
                    (v1.version.clone(), live(&v1, 1)),
                    (v2.version.clone(), live(&v2, 1)),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            sorted_revs(cache.versions(&v1.svc).await.unwrap().unwrap()),
            [1, 2],
            "{svc}"
        );
        assert_eq!(rev_of(&cache, &v2).await, Some(2), "{svc}");
    }
    for svc in &services {
        let svc_key = route_key(svc, "1.0.0").svc;
        assert_eq!(
            cli(seed, &["CLUSTER", "KEYSLOT", &cache.key_of(&svc_key)]),
            cli(seed, &["CLUSTER", "KEYSLOT", &svc_key.event_key()]),
            "only the hash tag decides the slot"
        );
    }
    let per_node: Vec<u64> = nodes
        .iter()
        .map(|n| cli(n.port, &["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(
        per_node.iter().sum::<u64>(),
        30,
        "one key per service: {per_node:?}"
    );
    assert!(
        per_node.iter().all(|&n| n > 0),
        "every node owns some services: {per_node:?}"
    );

    // The same server without the flag cannot follow redirections, and says what to do.
    let plain = RedisCache::connect(&format!("redis://127.0.0.1:{seed}"), "tm:")
        .await
        .unwrap();
    let mut hinted = 0;
    for svc in &services {
        if let Err(Error::Unavailable(m)) = plain.get(&route_key(svc, "1.0.0")).await {
            assert!(m.contains("cluster=true"), "{m}");
            hinted += 1;
        }
    }
    assert_eq!(
        hinted as u64,
        30 - per_node[0],
        "exactly the services the seed does not own were redirected"
    );
}

fn checked(key: &RouteKey, revision: u64) -> CachedRoute {
    let mut r = route(key, revision);
    r.health_check = Some(
        tm_core::domain::health_check::HealthCheck::from_json(&serde_json::json!({"path": "/"}))
            .unwrap(),
    );
    CachedRoute {
        revision,
        route: Some(Arc::new(r)),
        health: None,
    }
}

fn health(key: &RouteKey, seq: u64, status: HealthStatus) -> RouteHealth {
    let r = route(key, 1);
    RouteHealth {
        seq,
        endpoints: vec![EndpointHealth {
            id: r.endpoints[0].id.clone(),
            url: r.endpoints[0].url.clone(),
            status,
            since: tm_core::domain::timefmt::Timestamp::from_millis(seq as i64),
            successes: 0,
            failures: 0,
            last_error: None,
        }],
    }
}

fn shown(entry: &CachedRoute) -> Option<HealthStatus> {
    entry.route.as_ref()?.endpoints[0].health.map(|h| h.status)
}

#[tokio::test]
async fn health_state_is_ordered_by_its_seq_survives_route_events_and_shows_on_reads() {
    // GIVEN a checked route in the cache
    let s = Scratch::new();
    let cache = s.cache().await;
    let k = route_key("health", "1.0.0");
    assert!(cache.apply(&k, &checked(&k, 1)).await.unwrap());
    // WHEN seq 2 (unhealthy) lands, then a late seq 1 (healthy)
    assert!(
        cache
            .apply_health(&k, &health(&k, 2, HealthStatus::Unhealthy))
            .await
            .unwrap()
    );
    assert!(
        !cache
            .apply_health(&k, &health(&k, 1, HealthStatus::Healthy))
            .await
            .unwrap()
    );
    // AND then a new revision of the route
    assert!(cache.apply(&k, &checked(&k, 2)).await.unwrap());
    // THEN reads show revision 2 with the newest health
    let got = cache.get(&k).await.unwrap().unwrap();
    assert_eq!(got.revision, 2);
    assert_eq!(shown(&got), Some(HealthStatus::Unhealthy));
    assert_eq!(got.health.map(|h| h.seq), Some(2));
    // AND a fill from the store with an older health state keeps the newer one, while a
    // newer one in the fill replaces it
    let mut from_store = checked(&k, 2);
    from_store.health = Some(Arc::new(health(&k, 1, HealthStatus::Healthy)));
    cache
        .fill(&k.svc, &[(k.version.clone(), from_store.clone())])
        .await
        .unwrap();
    let all = cache.versions(&k.svc).await.unwrap().unwrap();
    assert_eq!(all.len(), 1, "the health field is not a version");
    assert_eq!(shown(&all[0]), Some(HealthStatus::Unhealthy));
    from_store.health = Some(Arc::new(health(&k, 3, HealthStatus::Healthy)));
    cache
        .fill(&k.svc, &[(k.version.clone(), from_store)])
        .await
        .unwrap();
    let got = cache.get(&k).await.unwrap().unwrap();
    assert_eq!(shown(&got), Some(HealthStatus::Healthy));
}
