//! Fault tests: the real `tm-local` on the real servers, with one backend stopped, frozen
//! or killed while clients keep calling, and what the issue promises checked with exact
//! counts. The backend under fault is always a private server ([`servers`]) on a free
//! port, so the shared servers other tests use are never stopped; only the shared
//! DynamoDB Local is used by tests that leave the store alone, under a table of their own.
//!
//! - [`redis`]: the shared cache stops under load: resolve answers from the store, then
//!   hits recover by themselves.
//! - [`dynamodb`]: the store freezes: cached answers (fresh or stale) keep coming,
//!   uncached ones and writes are 503, nothing is half-written, and it all comes back.
//! - [`kafka`]: the broker dies: writes still commit; when it returns every change reaches
//!   the cache exactly once, in order.
//! - [`consumer`]: a consumer killed between applying a batch and committing it, and
//!   poison records.
//! - [`load`]: the circuit breakers never trip on healthy backends under 64 concurrent
//!   connections.
//!
//! [`converge`] is the convergence checker all of them end with.

mod consumer;
mod converge;
mod dynamodb;
mod kafka;
mod load;
mod redis;
mod servers;

use http::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tm_core::adapters::dynamodb::DynamoStore;
use tm_core::adapters::dynamodb::aws_sdk_dynamodb::{
    self, Client,
    config::{BehaviorVersion, Credentials, Region},
};
use tm_core::adapters::kafka::{ConsumedRecord, GroupConsumer, KafkaCluster};
use tm_core::adapters::redis_cache::RedisCache;
use tm_tests::{Http, TmLocal, route_path};

/// The shared DynamoDB Local (`scripts/start-services.sh`): used by tests that do not
/// break the store (a private one costs a JVM). Redis and the broker are always private: they
/// start in well under a second.
pub(crate) const SHARED_DYNAMODB: &str = "http://127.0.0.1:8000";

/// A name no other test (or run) uses.
pub(crate) fn unique(what: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "tmfault-{what}-{}-{:x}-{}",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where one tm-local's backends are, and its own names on them.
#[derive(Clone)]
pub(crate) struct Stack {
    pub(crate) dynamodb: String,
    pub(crate) redis: String,
    pub(crate) kafka: String,
    pub(crate) table: String,
    pub(crate) prefix: String,
    pub(crate) topic: String,
    pub(crate) group: String,
    pub(crate) l1_ttl_ms: u64,
}

/// A running tm-local and a client for it.
pub(crate) struct Running {
    pub(crate) server: TmLocal,
    pub(crate) http: Http,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Fresh names on the given servers (endpoint URL, Redis URL, brokers).
    pub(crate) fn new(dynamodb: &str, redis: &str, kafka: &str) -> Self {
        let id = unique("s");
        Self {
            dynamodb: dynamodb.to_owned(),
            redis: redis.to_owned(),
            kafka: kafka.to_owned(),
            table: id.clone(),
            prefix: format!("{id}:"),
            topic: id.clone(),
            group: id,
            l1_ttl_ms: 1000,
        }
    }

    /// Sets `TM_L1_TTL_MS`.
    pub(crate) fn l1(mut self, ms: u64) -> Self {
        self.l1_ttl_ms = ms;
        self
    }

    /// tm-local's environment.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        [
            ("TM_L1_TTL_MS", self.l1_ttl_ms.to_string()),
            ("TM_TABLE_NAME", self.table.clone()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "x".into()),
            ("AWS_SECRET_ACCESS_KEY", "x".into()),
            ("TM_REDIS_URL", self.redis.clone()),
            ("TM_REDIS_PREFIX", self.prefix.clone()),
            ("TM_KAFKA_BROKERS", self.kafka.clone()),
            ("TM_KAFKA_TOPIC", self.topic.clone()),
            ("TM_KAFKA_GROUP", self.group.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `tm-local init`: the table and the topics. Returns what it printed.
    pub(crate) fn init(&self) -> String {
        let out = Command::new(tm_tests::tm_local_bin())
            .arg("init")
            .envs(self.env())
            .output()
            .expect("run tm-local init");
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "tm-local init failed: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said
    }

    /// Starts tm-local on this stack.
    pub(crate) fn start(&self) -> Running {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (server, dir) = TmLocal::start(&pairs);
        let http = Http::new(&server.base);
        Running {
            server,
            http,
            _dir: dir,
        }
    }

    /// The store, seen from the test.
    pub(crate) fn store(&self) -> DynamoStore {
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.dynamodb)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("x", "x", None, None, "tm-faults"))
            .build();
        DynamoStore::new(Client::from_conf(conf), self.table.clone())
    }

    /// The shared cache, seen from the test.
    pub(crate) async fn cache(&self) -> RedisCache {
        RedisCache::connect(&self.redis, &self.prefix)
            .await
            .expect("connect to Redis")
    }

    /// The Kafka cluster, seen from the test.
    pub(crate) fn cluster(&self) -> KafkaCluster {
        KafkaCluster::plaintext(self.kafka.clone())
    }
}

/// The one tenant of every fault test (each test has its own table and prefix).
pub(crate) const TENANT: &str = "acme";

/// The management path of `service`'s version `1.0.0` in `prod`.
pub(crate) fn path_of(service: &str) -> String {
    route_path(TENANT, service, "prod", "1.0.0")
}

/// The resolve path of `service`'s `latest`.
pub(crate) fn latest_of(service: &str) -> String {
    format!("/v1/resolve/{TENANT}/{service}/prod/latest")
}

/// Waits until the status endpoint says `service`'s change reached the shared cache;
/// returns how long that took, or fails after `secs`.
pub(crate) async fn until_in_sync(http: &Http, tok: &str, service: &str, secs: u64) -> Duration {
    let started = Instant::now();
    let path = format!("{}/status", path_of(service));
    loop {
        let r = http.get(&path, tok).await;
        if r.status == StatusCode::OK && r.json["in_sync"] == true {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{service} not in sync after {secs} s: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One request of a load run.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    /// When it was sent, from the run's start.
    pub(crate) at: Duration,
    /// How long it took.
    pub(crate) took: Duration,
    /// Index into the run's paths.
    pub(crate) target: usize,
    pub(crate) status: u16,
    /// `X-Cache`.
    pub(crate) cache: String,
    /// The error code, if any.
    pub(crate) code: String,
    /// The answer's revision, if any.
    pub(crate) revision: Option<u64>,
}

impl Sample {
    /// When the answer came, from the run's start.
    pub(crate) fn done(&self) -> Duration {
        self.at + self.took
    }

    /// `"200 hit-l2"`, `"503 unavailable"`: what a tally counts.
    pub(crate) fn outcome(&self) -> String {
        if self.status == 200 {
            format!("200 {}", self.cache)
        } else {
            format!("{} {}", self.status, self.code)
        }
    }
}

/// Clients resolving in a loop until stopped.
pub(crate) struct Load {
    pub(crate) t0: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` concurrent clients, each sending GETs to `paths` in turn (client
    /// `i` starts at path `i`), one after the other, as fast as answers come.
    pub(crate) fn start(http: &Http, tok: &str, paths: Vec<String>, clients: usize) -> Self {
        let t0 = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let paths = Arc::new(paths);
        let tasks = (0..clients)
            .map(|i| {
                let (http, tok, paths) = (http.clone(), tok.to_owned(), paths.clone());
                let (samples, stop) = (samples.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let target = n % paths.len();
                        n += 1;
                        let at = t0.elapsed();
                        let r = http.get(&paths[target], &tok).await;
                        let s = Sample {
                            at,
                            took: t0.elapsed() - at,
                            target,
                            status: r.status.as_u16(),
                            cache: r.header("x-cache").to_owned(),
                            code: r.code().to_owned(),
                            revision: r.json["revision"].as_u64(),
                        };
                        samples.lock().unwrap().push(s);
                    }
                })
            })
            .collect();
        Self {
            t0,
            samples,
            stop,
            tasks,
        }
    }

    /// Time since the run started.
    pub(crate) fn now(&self) -> Duration {
        self.t0.elapsed()
    }

    /// The samples so far.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Stops every client (each finishes its request in flight) and returns all samples,
    /// in the order they were sent.
    pub(crate) async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a load client panicked");
        }
        let mut all = self.samples.lock().unwrap().clone();
        all.sort_by_key(|s| s.at);
        all
    }
}

/// Counts samples by outcome.
pub(crate) fn tally<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in samples {
        *out.entry(s.outcome()).or_default() += 1;
    }
    out
}

/// The `q`-quantile of the samples' latencies (0 when there are none).
pub(crate) fn quantile<'a>(samples: impl IntoIterator<Item = &'a Sample>, q: f64) -> Duration {
    let mut took: Vec<Duration> = samples.into_iter().map(|s| s.took).collect();
    if took.is_empty() {
        return Duration::ZERO;
    }
    took.sort();
    let i = ((took.len() - 1) as f64 * q).round() as usize;
    took[i]
}

/// The `fields` of every JSON log line whose message is `message`.
pub(crate) fn logged(text: &str, message: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| {
            f["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

/// `(route, revision)` of every "event applied" line, in log order.
pub(crate) fn applied(text: &str) -> Vec<(String, u64)> {
    logged(text, "event applied")
        .iter()
        .map(|f| {
            (
                f["route"].as_str().unwrap_or_default().to_owned(),
                f["revision"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// A route body with one endpoint whose weight marks the change (`n`).
pub(crate) fn body_n(n: u32) -> String {
    tm_tests::body(&[("blue", n.max(1)), ("green", 1)])
}

/// Reads records of `topic` with `consumer` until `done` says the set is complete, then
/// whatever else arrives within a second; fails after 20 s.
pub(crate) async fn read_all(
    consumer: &GroupConsumer,
    done: impl Fn(&[ConsumedRecord]) -> bool,
) -> Vec<ConsumedRecord> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&out) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(e)) => eprintln!("poll error (retrying): {e}"),
            Err(_) => panic!("only {} records within 20 s", out.len()),
        }
    }
    while let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
        out.push(r);
    }
    out
}

/// `(route, revision)` of an event record.
pub(crate) fn change_of(r: &ConsumedRecord) -> (String, u64) {
    let e: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
        .expect("an event on the topic");
    (
        format!(
            "{}/{}/{}/{}",
            e["tenant"].as_str().unwrap_or_default(),
            e["service"].as_str().unwrap_or_default(),
            e["env"].as_str().unwrap_or_default(),
            e["version"].as_str().unwrap_or_default()
        ),
        e["revision"].as_u64().unwrap_or_default(),
    )
}
