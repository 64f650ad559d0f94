//! The store freezes (SIGSTOP: connections stay open, nothing answers), under load.

use super::servers::Server;
use super::{
    Load, Stack, TENANT, body_n, converge, latest_of, logged, path_of, quantile, tally,
    until_in_sync,
};
use http::StatusCode;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use tm_core::domain::names::ServiceKey;
use tm_tests::admin;

const CLIENTS: usize = 32;
/// In the shared cache and in the in-process cache.
const CACHED: &str = "cached";
/// In the in-process cache only (its shared cache entry is gone): served stale.
const STALE: &str = "stale";
/// In no cache at all.
const COLD: &str = "cold";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dynamodb_stopped_cached_routes_still_answer_uncached_ones_and_writes_are_503_nothing_is_half_written_and_it_all_comes_back()
 {
    // GIVEN tm-local on a private DynamoDB Local, with three routes: one in both caches,
    // one only in the in-process cache (its shared cache entry deleted), one in neither
    let dynamo = Server::dynamodb();
    let redis = Server::redis();
    let kafka = Server::kafka();
    let stack = Stack::new(&dynamo.url(), &redis.url(), &kafka.url()).l1(300);
    stack.init();
    let app = stack.start();
    let (http, tok) = (&app.http, admin(TENANT));
    for s in [CACHED, STALE, COLD] {
        let r = http.put(&path_of(s), &tok, &body_n(1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = http.put(&path_of(CACHED), &tok, &body_n(2)).await;
    assert_eq!(r.json["revision"], 2, "{}", r.text);
    for s in [CACHED, STALE, COLD] {
        until_in_sync(http, &tok, s, 20).await;
    }
    for s in [CACHED, STALE] {
        let r = http.get(&latest_of(s), &tok).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let cache = stack.cache().await;
    let forget = |service: &str| {
        let key = cache.key_of(&ServiceKey::parse(TENANT, service, "prod").unwrap());
        let out = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "DEL", &key])
            .output()
            .expect("redis-cli");
        assert!(out.status.success());
    };

    // WHEN DynamoDB freezes
    dynamo.freeze();
    let frozen = Instant::now();
    forget(STALE);
    forget(COLD);
    // (the in-process answers are past their freshness from here on)
    tokio::time::sleep(Duration::from_millis(400)).await;
    // ... and 32 clients resolve the three routes for 6 s
    let paths = vec![latest_of(CACHED), latest_of(STALE), latest_of(COLD)];
    let load = Load::start(http, &tok, paths, CLIENTS);
    // ... while writes and reads of the management API are tried
    let mut writes = Vec::new();
    for n in 3..=5 {
        let started = Instant::now();
        let r = http.put(&path_of(CACHED), &tok, &body_n(n)).await;
        writes.push((r.status.as_u16(), r.code().to_owned(), started.elapsed()));
    }
    let mut reads = Vec::new();
    for path in [path_of(CACHED), format!("/v1/tenants/{TENANT}/routes")] {
        let started = Instant::now();
        let r = http.get(&path, &tok).await;
        reads.push((r.status.as_u16(), r.code().to_owned(), started.elapsed()));
    }
    let ready = http.get("/readyz", &tok).await;
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(load.now())).await;
    let samples = load.stop().await;

    // THEN the cached route answered 200 from a cache every time, the one in the
    // in-process cache answered its stale answer every time, the uncached one 503
    let by_route: BTreeMap<usize, _> = (0..3)
        .map(|t| (t, tally(samples.iter().filter(|s| s.target == t))))
        .collect();
    let latency = |t: usize, q: f64| quantile(samples.iter().filter(|s| s.target == t), q);
    eprintln!(
        "dynamodb outage: {} resolves in 6 s\n  cached {:?} p50 {:?} max {:?}\n  stale {:?} p50 {:?} max {:?}\n  cold {:?} p50 {:?} max {:?}\n  writes {writes:?}\n  reads {reads:?}\n  readyz {} {}",
        samples.len(),
        by_route[&0],
        latency(0, 0.5),
        latency(0, 1.0),
        by_route[&1],
        latency(1, 0.5),
        latency(1, 1.0),
        by_route[&2],
        latency(2, 0.5),
        latency(2, 1.0),
        ready.status,
        ready.text,
    );
    let count = |t: usize| samples.iter().filter(|s| s.target == t).count();
    assert!(count(2) > 100, "too little load to judge");
    let from_cache = samples
        .iter()
        .filter(|s| {
            s.target == 0
                && s.status == 200
                && ["hit-l1", "hit-l2"].contains(&s.cache.as_str())
                && s.revision == Some(2)
        })
        .count();
    assert_eq!(from_cache, count(0), "{CACHED}: {:?}", by_route[&0]);
    assert_eq!(
        by_route[&1],
        [("200 stale".to_owned(), count(1))].into(),
        "{STALE}"
    );
    assert!(
        samples
            .iter()
            .filter(|s| s.target == 1)
            .all(|s| s.revision == Some(1))
    );
    assert_eq!(
        by_route[&2],
        [("503 unavailable".to_owned(), count(2))].into(),
        "{COLD}"
    );
    // AND an uncached resolve got its 503 within a second even before the breaker opened
    // (the resolve path's store deadline, Limits::STORE_READS, is 800 ms; writes keep 3 s)
    let slowest_cold = latency(2, 1.0);
    eprintln!(
        "FIGURE store frozen: slowest uncached resolve {slowest_cold:?} to its 503 (bound 1 s)"
    );
    assert!(
        slowest_cold < Duration::from_secs(1),
        "an uncached resolve waited {slowest_cold:?} for its 503"
    );
    // AND after the first failures the store's breaker answered for it: most of them did
    // not wait (without the breaker, each waits for the SDK's 3 s timeout)
    for t in [1, 2] {
        assert!(
            latency(t, 0.5) < Duration::from_millis(250),
            "median {:?}",
            latency(t, 0.5)
        );
    }
    // AND no resolve came near the function's 5 s timeout
    assert!(
        quantile(&samples, 1.0) < Duration::from_millis(4500),
        "slowest resolve {:?}",
        quantile(&samples, 1.0)
    );
    // AND writes and management reads were 503 `unavailable`, within the deadlines
    for (status, code, took) in writes.iter().chain(&reads) {
        assert_eq!((*status, code.as_str()), (503, "unavailable"));
        assert!(*took < Duration::from_secs(9), "took {took:?}");
    }
    // (after the first failures the breaker answers at once)
    assert!(writes[2].2 < Duration::from_millis(250), "{writes:?}");
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        logged(&app.server.log_text(), "circuit opened")
            .iter()
            .any(|f| f["backend"] == "store")
    );

    // WHEN DynamoDB thaws
    let outage = frozen.elapsed();
    dynamo.thaw();
    let thawed = Instant::now();
    // THEN the uncached route resolves again, without a restart
    let back = loop {
        let r = http.get(&latest_of(COLD), &tok).await;
        if r.status == StatusCode::OK {
            break thawed.elapsed();
        }
        assert!(
            thawed.elapsed() < Duration::from_secs(20),
            "still {} {} 20 s after the thaw",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // AND writes work, continuing from the last revision that was committed: the 503s
    // left nothing behind
    let r = http.put(&path_of(CACHED), &tok, &body_n(9)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["revision"], 3, "{}", r.text);
    let history = http
        .get(&format!("{}/history", path_of(CACHED)), &tok)
        .await;
    let revisions: Vec<u64> = history.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [3, 2, 1]);
    let audit = http.get(&format!("/v1/tenants/{TENANT}/audit"), &tok).await;
    assert_eq!(
        audit.json["items"].as_array().unwrap().len(),
        5,
        "one audit entry per committed change: {}",
        audit.text
    );
    assert_eq!(http.get("/readyz", &tok).await.status, StatusCode::OK);
    eprintln!("  outage {outage:?}; the uncached route resolved again {back:?} after the thaw");
    assert!(
        logged(&app.server.log_text(), "circuit closed")
            .iter()
            .any(|f| f["backend"] == "store")
    );
    // AND every change reached the shared cache (the two forgotten routes are filled by
    // a read): cache == store for every route
    until_in_sync(http, &tok, CACHED, 20).await;
    for s in [STALE, COLD] {
        let r = http.get(&latest_of(s), &tok).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let svcs: Vec<ServiceKey> = [CACHED, STALE, COLD]
        .iter()
        .map(|s| ServiceKey::parse(TENANT, s, "prod").unwrap())
        .collect();
    let report = converge::compare(&stack.store(), &cache, TENANT, &svcs).await;
    eprintln!("convergence: {report}");
    assert!(report.exact(), "{report}");
}
