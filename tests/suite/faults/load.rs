//! Healthy backends under 64 concurrent connections: the circuit breakers must stay shut.

use super::servers::Server;
use super::{Load, Stack, TENANT, body_n, logged, path_of, quantile, tally, until_in_sync};
use http::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tm_tests::{admin, route_path, token};

const READERS: usize = 56;
const WRITERS: usize = 8;
const ROUTES: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breakers_never_trip_on_healthy_backends_under_64_concurrent_connections() {
    // GIVEN tm-local on healthy private servers, the in-process cache off (every resolve
    // goes to Redis, every write to DynamoDB), and 16 routes
    let dynamo = Server::dynamodb();
    let redis = Server::redis();
    let kafka = Server::kafka();
    let stack = Stack::new(&dynamo.url(), &redis.url(), &kafka.url()).l1(0);
    stack.init();
    let app = stack.start();
    let (http, tok) = (&app.http, admin(TENANT));
    let services: Vec<String> = (0..ROUTES).map(|i| format!("svc{i}")).collect();
    for s in &services {
        let r = http.put(&path_of(s), &tok, &body_n(1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for s in &services {
        until_in_sync(http, &tok, s, 30).await;
    }

    // WHEN 64 clients, each on its own connection, call it for 5 s: 56 resolve without
    // pause (`latest` and exact versions; a version that does not exist too), 8 write,
    // each its own route in its own tenant, 250 ms apart (a write is five DynamoDB
    // requests, and DynamoDB Local on two shared cores does a few hundred a second: more
    // would test the machine, not the breakers)
    let mut paths: Vec<String> = services
        .iter()
        .flat_map(|s| {
            [
                format!("/v1/resolve/{TENANT}/{s}/prod/latest"),
                format!("/v1/resolve/{TENANT}/{s}/prod/1.0.0"),
            ]
        })
        .collect();
    paths.push(format!("/v1/resolve/{TENANT}/svc0/prod/9.9.9"));
    let missing = paths.len() - 1;
    let readers = Load::start(http, &tok, paths, READERS);
    let stop = Arc::new(AtomicBool::new(false));
    let writer_tok = token("writer", "*", "routes:read routes:write");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, tok, stop) = (http.clone(), writer_tok.clone(), stop.clone());
            tokio::spawn(async move {
                let path = route_path(&format!("tenant{w}"), "writer", "prod", "1.0.0");
                let mut out = Vec::new();
                let mut n = 1;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = http.put(&path, &tok, &body_n(n)).await;
                    out.push((r.status.as_u16(), r.code().to_owned(), started.elapsed()));
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                out
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = readers.stop().await;
    let mut writes = Vec::new();
    for w in writers {
        writes.extend(w.await.expect("a writer panicked"));
    }

    // THEN every resolve and every write succeeded
    let mut write_tally: BTreeMap<String, usize> = BTreeMap::new();
    for (status, code, _) in &writes {
        *write_tally.entry(format!("{status} {code}")).or_default() += 1;
    }
    let mut write_times: Vec<Duration> = writes.iter().map(|w| w.2).collect();
    write_times.sort();
    let text = app.server.log_text();
    eprintln!(
        "64 connections for 5 s: {} resolves {:?}, p50 {:?} p99 {:?} max {:?}; {} writes {write_tally:?}, p50 {:?} max {:?}; circuits opened: {}",
        samples.len(),
        tally(&samples),
        quantile(&samples, 0.5),
        quantile(&samples, 0.99),
        quantile(&samples, 1.0),
        writes.len(),
        write_times.get(write_times.len() / 2),
        write_times.last(),
        logged(&text, "circuit opened").len(),
    );
    let found = samples
        .iter()
        .filter(|s| s.target != missing && s.status == 200)
        .count();
    let not_found = samples
        .iter()
        .filter(|s| s.target == missing && s.status == 404 && s.code == "not_found")
        .count();
    assert_eq!(found + not_found, samples.len(), "{:?}", tally(&samples));
    assert!(samples.len() > 1000, "too little load to judge");
    let created_or_replaced = writes
        .iter()
        .filter(|(s, _, _)| *s == 200 || *s == 201)
        .count();
    // A 503 here can only be DynamoDB Local itself missing the SDK's 3 s timeout on a
    // starved machine (logged by the adapter); never a breaker's refusal.
    let unavailable = logged(&text, "backend unavailable");
    let sdk_timeouts = unavailable
        .iter()
        .filter(|f| {
            f["error"]
                .as_str()
                .is_some_and(|e| e.contains("dynamodb") && e.contains("timed out"))
        })
        .count();
    assert_eq!(
        created_or_replaced + sdk_timeouts,
        writes.len(),
        "{write_tally:?}: {unavailable:?}"
    );
    assert!(
        created_or_replaced >= WRITERS * 4,
        "too few writes to judge"
    );
    // AND no breaker ever opened or refused a call, and the backends report ready
    assert!(
        logged(&text, "circuit opened").is_empty(),
        "a breaker tripped on a healthy backend"
    );
    assert!(
        !text.contains("circuit open after"),
        "a breaker refused a call"
    );
    let ready = http.get("/readyz", &tok).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
}
