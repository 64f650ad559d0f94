//! Health-aware routing end to end (docs/health.md): tm-local probes real HTTP servers
//! this test starts (healthy, answering 500, hanging, refusing connections, and one that
//! is killed and restored), and resolve routes around the dead ones. tm-local runs with
//! the test-only `TM_HEALTH_MS_PER_SECOND=100`, so a route's `interval_seconds: 10`
//! probes every second.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tm_tests::{Http, TmLocal, admin, eventually, route_path};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One "second" of a health check in these tests.
const SECOND_MS: u64 = 100;
/// `interval_seconds` of the test routes (1 s here).
const INTERVAL: u64 = 10;
/// `unhealthy_threshold` and `healthy_threshold`.
const THRESHOLD: u64 = 2;
/// `timeout_seconds` (200 ms here).
const TIMEOUT: u64 = 2;

const OK: u8 = 0;
const FAIL_500: u8 = 1;
const HANG: u8 = 2;

/// A tiny HTTP server answering every request by its mode; `stop` closes the listener
/// (connections are then refused) and `start` opens it again on the same port.
struct Server {
    port: u16,
    mode: Arc<AtomicU8>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    async fn new(mode: u8) -> Self {
        let mut s = Server {
            port: 0,
            mode: Arc::new(AtomicU8::new(mode)),
            task: None,
        };
        s.start().await;
        s
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind test server");
        self.port = listener.local_addr().expect("addr").port();
        let mode = self.mode.clone();
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let mode = mode.clone();
                conns.spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = sock.read(&mut buf).await;
                    let reply: &[u8] = match mode.load(Ordering::SeqCst) {
                        OK => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        FAIL_500 => b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        _ => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let _ = sock.write_all(reply).await;
                });
            }
        }));
    }

    /// Closes the listener and every open connection: new connections are refused.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A port nothing listens on.
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn check() -> Value {
    json!({
        "path": "/healthz",
        "interval_seconds": INTERVAL,
        "timeout_seconds": TIMEOUT,
        "healthy_threshold": THRESHOLD,
        "unhealthy_threshold": THRESHOLD,
    })
}

fn ep(id: &str, url: &str, priority: u8) -> Value {
    json!({"id": id, "url": url, "weight": 10, "priority": priority})
}

fn resolve_path(service: &str) -> String {
    format!("/v1/resolve/acme/{service}/prod/1.0.0")
}

fn candidate_ids(r: &Value) -> Vec<String> {
    let mut ids: Vec<String> = r["candidates"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn candidates(http: &Http, token: &str, service: &str) -> Vec<String> {
    candidate_ids(&http.get(&resolve_path(service), token).await.json)
}

/// The contract bound: one interval for the first failing probe after the change, the
/// rest of the threshold's probes, each probe's timeout, then propagation (relay, event,
/// shared cache, L1 TTL 200 ms) within a second, and a second of slack for a loaded
/// machine.
fn bound() -> Duration {
    Duration::from_millis(SECOND_MS * (INTERVAL * THRESHOLD + TIMEOUT * THRESHOLD) + 2_000)
}

/// The scenario, on whatever backends `env` selects.
pub(crate) async fn routes_around_dead_endpoints(env: &[(&str, &str)]) {
    // GIVEN servers that answer, answer 500, hang, refuse, and one we will kill
    let good = Server::new(OK).await;
    let dr = Server::new(OK).await;
    let bad = Server::new(FAIL_500).await;
    let hang = Server::new(HANG).await;
    let mut victim = Server::new(OK).await;
    let refused = refused_url();
    let second = SECOND_MS.to_string();
    let mut env = env.to_vec();
    env.push(("TM_HEALTH_MS_PER_SECOND", second.as_str()));
    let (tm, _dir) = TmLocal::start(&env);
    let http = Http::new(&tm.base);
    let token = admin("acme");

    // AND routes with health checks: a mixed group with a backup, a group that is all
    // dead with a healthy backup, and a route whose every endpoint is dead
    let mixed = json!({
        "endpoints": [
            ep("good", &good.url(), 0), ep("victim", &victim.url(), 0), ep("bad", &bad.url(), 0),
            ep("hang", &hang.url(), 0), ep("refused", &refused, 0), ep("dr", &dr.url(), 1)
        ],
        "health_check": check(),
    });
    let failover = json!({
        "endpoints": [ep("bad", &bad.url(), 0), ep("refused", &refused, 0), ep("dr", &dr.url(), 1)],
        "health_check": check(),
    });
    let all_dead = json!({
        "endpoints": [ep("bad", &bad.url(), 0), ep("refused", &refused, 0), ep("hang", &hang.url(), 1)],
        "health_check": check(),
    });
    for (service, body) in [
        ("mixed", &mixed),
        ("failover", &failover),
        ("dead", &all_dead),
    ] {
        let r = http
            .put(
                &route_path("acme", service, "prod", "1.0.0"),
                &token,
                &body.to_string(),
            )
            .await;
        assert_eq!(r.status, 201, "{service}: {}", r.text);
    }
    let written = Instant::now();

    // WHEN the prober has seen the dead ones fail the threshold
    // THEN resolve skips them within the group, keeping the healthy ones
    let took = eventually(bound() + Duration::from_secs(2), || async {
        candidates(&http, &token, "mixed").await == ["good", "victim"]
    })
    .await;
    let Some(took) = took else {
        let doc = http
            .get(&route_path("acme", "mixed", "prod", "1.0.0"), &token)
            .await;
        panic!("the dead endpoints were never skipped: {}", doc.text);
    };
    println!(
        "health: 500/hanging/refusing endpoints skipped {} ms after the route was written",
        took.as_millis()
    );
    // AND a group with no healthy endpoint fails over to the next priority
    assert!(
        eventually(bound(), || async {
            candidates(&http, &token, "failover").await == ["dr"]
        })
        .await
        .is_some(),
        "failover"
    );
    // AND when every endpoint is dead, the best group fails open and says so
    assert!(
        eventually(bound(), || async {
            let r = http.get(&resolve_path("dead"), &token).await;
            r.header("x-health") == "fail-open" && candidate_ids(&r.json) == ["bad", "refused"]
        })
        .await
        .is_some(),
        "fail-open"
    );
    let healthy = http.get(&resolve_path("mixed"), &token).await;
    assert_eq!(
        healthy.header("x-health"),
        "",
        "no header when not failing open"
    );

    // AND the route document and the status show each endpoint's health, the revision
    // did not move, and the user's If-Match still holds
    let doc = http
        .get(&route_path("acme", "mixed", "prod", "1.0.0"), &token)
        .await;
    assert_eq!(doc.json["revision"], 1);
    assert_eq!(doc.header("etag"), "\"1\"");
    let shown: BTreeMap<String, String> = doc.json["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or("").to_owned(),
                e["health"]["status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(shown["bad"], "unhealthy");
    assert_eq!(shown["hang"], "unhealthy");
    assert_eq!(shown["refused"], "unhealthy");
    assert_eq!(shown["good"], "healthy");
    assert!(doc.json["endpoints"][2]["health"]["since"].is_string());
    let status = http
        .get(
            &format!("{}/status", route_path("acme", "mixed", "prod", "1.0.0")),
            &token,
        )
        .await;
    let hang_status = status.json["health"]
        .as_array()
        .expect("status lists health")
        .iter()
        .find(|e| e["id"] == "hang")
        .cloned()
        .unwrap_or_default();
    assert_eq!(hang_status["status"], "unhealthy");
    assert!(
        hang_status["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{hang_status}"
    );

    // AND sticky keys: record where 300 keys go before the kill
    let keys: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut before = BTreeMap::new();
    for k in &keys {
        let r = http
            .get(&format!("{}?key={k}", resolve_path("mixed")), &token)
            .await;
        before.insert(
            k.clone(),
            r.json["endpoint"]["id"].as_str().unwrap_or("").to_owned(),
        );
    }

    // WHEN the victim is killed
    victim.stop().await;
    let killed = Instant::now();
    // THEN resolve stops returning it within interval × threshold + propagation
    let detect = eventually(bound() + Duration::from_secs(3), || async {
        candidates(&http, &token, "mixed").await == ["good"]
    })
    .await;
    let detect = detect.unwrap_or_else(|| {
        panic!(
            "the killed endpoint was still returned after {:?}",
            killed.elapsed()
        )
    });
    println!(
        "health: killed endpoint gone from resolve after {} ms (bound {} ms: interval {} ms × {} + timeouts + propagation)",
        detect.as_millis(),
        bound().as_millis(),
        SECOND_MS * INTERVAL,
        THRESHOLD
    );
    assert!(detect <= bound() + Duration::from_secs(3));
    // AND only the keys that were on the victim moved
    let mut moved = 0;
    for k in &keys {
        let r = http
            .get(&format!("{}?key={k}", resolve_path("mixed")), &token)
            .await;
        let now = r.json["endpoint"]["id"].as_str().unwrap_or("").to_owned();
        if before[k] == "victim" {
            assert_ne!(now, "victim");
            moved += 1;
        } else {
            assert_eq!(now, before[k], "key {k} moved off a live endpoint");
        }
    }
    assert!(moved > 0, "some keys were on the victim");

    // WHEN it is restored, THEN it is returned again
    victim.start().await;
    let back = eventually(bound() + Duration::from_secs(3), || async {
        candidates(&http, &token, "mixed").await == ["good", "victim"]
    })
    .await
    .unwrap_or_else(|| panic!("the restored endpoint never came back"));
    println!(
        "health: restored endpoint back in resolve after {} ms",
        back.as_millis()
    );

    // AND the audit log holds the transitions as route.health_changed, by the prober
    let audit = http
        .get("/v1/tenants/acme/audit?type=route.health_changed", &token)
        .await;
    let items = audit.json["items"].as_array().cloned().unwrap_or_default();
    assert!(items.len() >= 3, "{}", audit.text);
    assert!(
        items
            .iter()
            .all(|i| i["by"] == "prober" && i["type"] == "route.health_changed")
    );
    // AND a user's write with the revision they read still succeeds (health never
    // bumped it)
    let r = http
        .send(
            http::Method::PUT,
            &route_path("acme", "mixed", "prod", "1.0.0"),
            Some(&token),
            &[("if-match", "\"1\"")],
            Some(&mixed.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    println!(
        "health: scenario done {} ms after the first write",
        written.elapsed().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_routes_around_dead_endpoints_and_back_on_the_embedded_backends() {
    routes_around_dead_endpoints(&[("TM_L1_TTL_MS", "200")]).await;
}

#[tokio::test]
async fn a_health_check_that_breaks_the_rules_is_400_naming_the_field() {
    let (tm, _dir) = TmLocal::start(&[]);
    let http = Http::new(&tm.base);
    let token = admin("acme");
    let path = route_path("acme", "svc", "prod", "1");
    for (hc, field) in [
        (
            json!({"path": "/", "interval_seconds": 5}),
            "health_check.interval_seconds",
        ),
        (json!({"interval_seconds": 10}), "health_check.path"),
        (
            json!({"path": "/", "interval_seconds": 10, "timeout_seconds": 10}),
            "health_check.timeout_seconds",
        ),
        (json!({"path": "/", "colour": 1}), "health_check.colour"),
        (Value::Null, "health_check"),
    ] {
        let body = json!({"endpoints": [{"id": "a", "url": "http://a"}], "health_check": hc});
        let r = http.put(&path, &token, &body.to_string()).await;
        assert_eq!(r.status, 400, "{hc}");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with(field),
            "{hc}: {}",
            r.text
        );
    }
    let r = http
        .put(
            &path,
            &token,
            r#"{"endpoints":[{"id":"a","url":"http://a","health":{"status":"healthy"}}]}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        http.get(&path, &token).await.status,
        404,
        "nothing was written"
    );
}

/// The scenario on DynamoDB Local and Redis with events in process (no Kafka needed):
/// health items in the table, health fields in the Redis hashes.
#[cfg(all(feature = "dynamodb", feature = "redis"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_routes_around_dead_endpoints_on_dynamodb_and_redis() {
    let id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let table = format!("tm-e2e-health-{id}");
    let prefix = format!("tm-e2e-health-{id}:");
    let env = [
        ("TM_L1_TTL_MS", "200"),
        ("TM_TABLE_NAME", table.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("TM_REDIS_URL", "redis://127.0.0.1:6379"),
        ("TM_REDIS_PREFIX", prefix.as_str()),
    ];
    let out = std::process::Command::new(tm_tests::tm_local_bin())
        .arg("init")
        .env_remove("TM_KAFKA_BROKERS")
        .envs(env)
        .output()
        .expect("run tm-local init");
    assert!(
        out.status.success(),
        "tm-local init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    routes_around_dead_endpoints(&env).await;
}
