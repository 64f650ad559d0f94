//! The shared cache stops under load.

use super::servers::Server;
use super::{
    Load, SHARED_DYNAMODB, Stack, TENANT, body_n, converge, latest_of, logged, path_of, quantile,
    tally, until_in_sync,
};
use http::StatusCode;
use std::time::{Duration, Instant};
use tm_core::domain::names::ServiceKey;
use tm_tests::admin;

const ROUTES: usize = 8;
const CLIENTS: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_under_load_resolve_answers_from_the_store_without_a_5xx_and_hits_recover_by_themselves()
 {
    // GIVEN tm-local on a private Redis, with the in-process cache off so every resolve
    // asks the shared cache, and eight routes whose events reached it
    let mut redis = Server::redis();
    let kafka = Server::kafka();
    let stack = Stack::new(SHARED_DYNAMODB, &redis.url(), &kafka.url()).l1(0);
    stack.init();
    let app = stack.start();
    let (http, tok) = (&app.http, admin(TENANT));
    let services: Vec<String> = (0..ROUTES).map(|i| format!("svc{i}")).collect();
    for s in &services {
        let r = http.put(&path_of(s), &tok, &body_n(1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for s in &services {
        until_in_sync(http, &tok, s, 20).await;
    }
    // Half the clients ask for `latest` (the shared cache's version set), half for the
    // exact version (one entry).
    let paths: Vec<String> = services
        .iter()
        .flat_map(|s| [latest_of(s), format!("/v1/resolve/{TENANT}/{s}/prod/1.0.0")])
        .collect();

    // WHEN 32 clients resolve without pause: 2 s healthy, then Redis frozen (SIGSTOP: every
    // command hangs) for 3 s, then killed (connections refused) for 2 s, then started
    // again, empty
    let load = Load::start(http, &tok, paths, CLIENTS);
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.freeze();
    // (a request sent just before the signal landed may still be answered)
    let frozen_at = load.now() + Duration::from_millis(50);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Writes go on meanwhile: they need the store only.
    let mut write_times = Vec::new();
    for n in 2..=4 {
        let started = Instant::now();
        let r = http.put(&path_of("svc0"), &tok, &body_n(n)).await;
        write_times.push(started.elapsed());
        assert_eq!(
            r.status,
            StatusCode::OK,
            "write during the outage: {}",
            r.text
        );
        assert_eq!(r.json["revision"], n);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.kill();
    let killed_at = load.now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let back_at = load.now();
    redis.restart();
    // ... until every answer of a whole second comes from the shared cache again
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = load.now();
        let last: Vec<_> = load
            .samples()
            .into_iter()
            .filter(|s| s.at > back_at && s.at + Duration::from_secs(1) > now && s.done() < now)
            .collect();
        if now > back_at + Duration::from_secs(1)
            && !last.is_empty()
            && last.iter().all(|s| s.cache == "hit-l2")
        {
            break now;
        }
        assert!(
            now < back_at + Duration::from_secs(25),
            "hits did not recover within 25 s of Redis's return: {:?}",
            tally(&last)
        );
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let samples = load.stop().await;

    // THEN not one answer was anything but 200
    let all = tally(&samples);
    let ok: usize = samples.iter().filter(|s| s.status == 200).count();
    let healthy: Vec<_> = samples.iter().filter(|s| s.done() < frozen_at).collect();
    // Sent after the freeze and answered before Redis came back: the outage proper.
    let outage: Vec<_> = samples
        .iter()
        .filter(|s| s.at > frozen_at && s.done() < back_at)
        .collect();
    // Sent while Redis was frozen (answered before it came back).
    let hung: Vec<_> = outage
        .iter()
        .copied()
        .filter(|s| s.at < killed_at)
        .collect();
    let dead: Vec<_> = outage
        .iter()
        .copied()
        .filter(|s| s.at > killed_at)
        .collect();
    let after: Vec<_> = samples.iter().filter(|s| s.at > back_at).collect();
    // Resolves of the frozen phase that waited on Redis (its response timeout is 500 ms).
    let waited = hung
        .iter()
        .filter(|s| s.took > Duration::from_millis(400))
        .count();
    let first_hit = after
        .iter()
        .find(|s| s.cache == "hit-l2")
        .map(|s| s.done() - back_at);
    eprintln!(
        "redis outage: {} requests {all:?}\n  healthy {:?} p50 {:?} p99 {:?}\n  frozen {:?} p50 {:?} p99 {:?} max {:?}, {waited} waited on Redis\n  killed {:?} p50 {:?} p99 {:?} max {:?}\n  after {:?}; first hit {first_hit:?} after the restart, all hits {:?} after it\n  writes during the outage took {write_times:?}",
        samples.len(),
        tally(healthy.iter().copied()),
        quantile(healthy.iter().copied(), 0.5),
        quantile(healthy.iter().copied(), 0.99),
        tally(hung.iter().copied()),
        quantile(hung.iter().copied(), 0.5),
        quantile(hung.iter().copied(), 0.99),
        quantile(hung.iter().copied(), 1.0),
        tally(dead.iter().copied()),
        quantile(dead.iter().copied(), 0.5),
        quantile(dead.iter().copied(), 0.99),
        quantile(dead.iter().copied(), 1.0),
        tally(after.iter().copied()),
        recovered - back_at,
    );
    assert_eq!(
        ok,
        samples.len(),
        "zero non-200 answers while the store is up: {all:?}"
    );
    // AND while Redis was away every answer came from the store
    assert!(
        hung.len() > 100 && dead.len() > 100,
        "too little load to judge"
    );
    assert_eq!(
        tally(outage.iter().copied()),
        [("200 miss".to_owned(), outage.len())].into(),
        "answers sent during the outage"
    );
    // AND a hung Redis cost a resolve at most its read-path deadlines (100 ms for the read,
    // 100 ms for the fill: Limits::CACHE_READS), and only a few resolves paid it: the
    // others went to the store at once (the cache's breaker opened, and the adapter's own
    // connection backoff refuses calls too). The bound: no resolve over 250 ms.
    let worst = quantile(hung.iter().copied(), 1.0);
    eprintln!("FIGURE redis frozen under resolve load: slowest resolve {worst:?} (bound 250 ms)");
    assert!(
        worst < Duration::from_millis(250),
        "a resolve waited on the frozen Redis for {worst:?}"
    );
    assert!(
        quantile(hung.iter().copied(), 0.5) < Duration::from_millis(250),
        "most resolves waited on the frozen Redis ({waited} of {} over 400 ms)",
        hung.len()
    );
    let text = app.server.log_text();
    let opened = logged(&text, "circuit opened");
    assert!(
        opened.iter().any(|f| f["backend"] == "cache"),
        "the cache's circuit opened"
    );
    assert!(
        logged(&text, "circuit closed")
            .iter()
            .any(|f| f["backend"] == "cache"),
        "and closed again"
    );
    assert!(
        opened.iter().all(|f| f["backend"] == "cache"),
        "only the cache's circuit opened: {opened:?}"
    );

    // AND the changes made during the outage reached the cache once it was back
    until_in_sync(http, &tok, "svc0", 20).await;
    let r = http.get(&latest_of("svc0"), &tok).await;
    assert_eq!(r.json["revision"], 4);
    let svcs: Vec<ServiceKey> = services
        .iter()
        .map(|s| ServiceKey::parse(TENANT, s, "prod").unwrap())
        .collect();
    let report = converge::compare(&stack.store(), &stack.cache().await, TENANT, &svcs).await;
    eprintln!("convergence: {report}");
    assert!(report.exact(), "cache == store for every route: {report}");
}
