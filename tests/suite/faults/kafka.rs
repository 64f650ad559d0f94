//! The broker dies while routes change, and comes back.

use super::servers::Server;
use super::{
    SHARED_DYNAMODB, Stack, TENANT, applied, body_n, change_of, converge, logged, path_of,
    read_all, unique, until_in_sync,
};
use http::StatusCode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tm_core::adapters::kafka::GroupConsumer;
use tm_core::domain::names::ServiceKey;
use tm_tests::admin;

const SERVICES: [&str; 4] = ["checkout", "search", "billing", "cart"];
/// Changes per service while the broker is down.
const CHANGES: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_stopped_writes_still_commit_and_when_it_returns_every_change_reaches_the_cache_exactly_once_in_order()
 {
    // GIVEN tm-local on a private nisshi broker, four routes whose events reached the cache
    let mut kafka = Server::kafka();
    let redis = Server::redis();
    let stack = Stack::new(SHARED_DYNAMODB, &redis.url(), &kafka.url());
    stack.init();
    let app = stack.start();
    let (http, tok) = (&app.http, admin(TENANT));
    for s in SERVICES {
        let r = http.put(&path_of(s), &tok, &body_n(1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for s in SERVICES {
        until_in_sync(http, &tok, s, 30).await;
    }

    // WHEN the broker is killed
    kafka.kill();
    let killed = Instant::now();
    // ... and every route changes five times (the last one of `cart` is a delete)
    let mut slowest = Duration::ZERO;
    let mut committed: BTreeMap<String, u64> = BTreeMap::new();
    for n in 2..=CHANGES + 1 {
        for s in SERVICES {
            let started = Instant::now();
            let r = if s == "cart" && n == CHANGES + 1 {
                http.delete(&path_of(s), &tok).await
            } else {
                http.put(&path_of(s), &tok, &body_n(n)).await
            };
            slowest = slowest.max(started.elapsed());
            // THEN every write commits
            assert!(
                [StatusCode::OK, StatusCode::NO_CONTENT].contains(&r.status),
                "a write with the broker down: {} {}",
                r.status,
                r.text
            );
            committed.insert(s.to_owned(), u64::from(n));
        }
    }
    // ... and stays out of the cache while the broker is down
    let status = http
        .get(&format!("{}/status", path_of("checkout")), &tok)
        .await;
    assert_eq!(
        (
            status.json["revision"].as_u64(),
            status.json["cached_revision"].as_u64()
        ),
        (Some(u64::from(CHANGES) + 1), Some(1)),
        "{}",
        status.text
    );
    // ... long enough for the relay to fail a publish (the producer's message timeout is
    // 5 s, plus librdkafka's once-a-second expiry scan)
    while logged(&app.server.log_text(), "relay could not publish").is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "the relay never reported a failed publish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed_publishes = logged(&app.server.log_text(), "relay could not publish").len();

    // WHEN the broker comes back (same port, same data)
    let down_for = killed.elapsed();
    kafka.restart();
    let back = Instant::now();
    // THEN every change reaches the cache
    let mut synced = Duration::ZERO;
    for s in SERVICES.iter().filter(|s| **s != "cart") {
        synced = synced.max(until_in_sync(http, &tok, s, 45).await);
    }
    let cart = ServiceKey::parse(TENANT, "cart", "prod").unwrap();
    let cache = stack.cache().await;
    let cart_key = tm_core::domain::names::RouteKey {
        svc: cart.clone(),
        version: tm_core::domain::names::VersionName::parse("1.0.0").unwrap(),
    };
    while tm_core::ports::SharedCache::get(&cache, &cart_key)
        .await
        .unwrap()
        .map(|e| e.revision)
        != Some(u64::from(CHANGES) + 1)
    {
        assert!(
            back.elapsed() < Duration::from_secs(45),
            "cart's delete never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converged_in = back.elapsed();

    // AND each change was applied exactly once, in revision order, none lost
    let logs = app.server.log_text();
    let got = applied(&logs);
    let mut per_route: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (route, revision) in &got {
        per_route.entry(route.clone()).or_default().push(*revision);
    }
    for (s, last) in &committed {
        let route = format!("{TENANT}/{s}/prod/1.0.0");
        assert_eq!(
            per_route.get(&route).cloned().unwrap_or_default(),
            (1..=*last).collect::<Vec<_>>(),
            "{route}: revisions applied, in log order"
        );
    }
    assert_eq!(got.len(), SERVICES.len() * (CHANGES as usize + 1));
    // AND on the topic every committed change is there, in order per route (a relay
    // retry may have sent some twice; the consumer skipped those)
    let reader = GroupConsumer::subscribe(&stack.cluster(), &unique("reader"), &stack.topic)
        .expect("a reader");
    let want = SERVICES.len() * (CHANGES as usize + 1);
    let mut records: Vec<(i32, i64, String, u64)> = read_all(&reader, |rs| {
        rs.iter().map(change_of).collect::<BTreeSet<_>>().len() >= want
    })
    .await
    .iter()
    .map(|r| {
        let (route, revision) = change_of(r);
        (r.partition, r.offset, route, revision)
    })
    .collect();
    reader.close().await;
    records.sort();
    let mut firsts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut once = BTreeSet::new();
    for (_, _, route, revision) in &records {
        if once.insert((route.clone(), *revision)) {
            firsts.entry(route.clone()).or_default().push(*revision);
        }
    }
    for (route, revisions) in &firsts {
        assert_eq!(
            *revisions,
            (1..=revisions.len() as u64).collect::<Vec<_>>(),
            "{route}: first deliveries in offset order"
        );
    }
    eprintln!(
        "kafka outage: {} writes with the broker down, slowest {slowest:?}; down {down_for:?}, {failed_publishes} failed publishes; in sync {synced:?} after the restart, delete applied {converged_in:?} after; {} events applied once each; {} records on the topic for {want} changes",
        SERVICES.len() * CHANGES as usize,
        got.len(),
        records.len()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a write waited on the broker: {slowest:?}"
    );
    // (Tansu 0.6, nisshi's former self, panicked on a produce with an idempotent
    // producer's bumped epoch: the publisher must replace its producer rather than bump it)
    assert!(!kafka.log().contains("panicked"), "{}", kafka.log());
    // AND cache == store for every route
    let svcs: Vec<ServiceKey> = SERVICES
        .iter()
        .map(|s| ServiceKey::parse(TENANT, s, "prod").unwrap())
        .collect();
    let report = converge::compare(&stack.store(), &cache, TENANT, &svcs).await;
    eprintln!("convergence: {report}");
    assert!(report.exact(), "{report}");
}
