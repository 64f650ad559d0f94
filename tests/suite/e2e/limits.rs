//! Per-tenant rate limits (`TM_RATE_LIMIT_RPS`, `TM_RATE_LIMIT_BURST`) on a real tm-local.

use http::{Method, StatusCode};
use tm_tests::{Http, TmLocal, admin, body, route_path, token};

// One token every 5 s: the refill cannot land inside the test, so the counts are exact.
const ENV: &[(&str, &str)] = &[("TM_RATE_LIMIT_RPS", "0.2"), ("TM_RATE_LIMIT_BURST", "4")];

#[tokio::test]
async fn a_tenant_over_its_limit_gets_429_with_retry_after_and_others_are_unaffected() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let acme = admin("acme");
    let other = admin("other");

    let path = route_path("acme", "web", "prod", "1");
    let put = http.put(&path, &acme, &body(&[("a", 1)])).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    // The management API's endpoints draw on the write function's bucket, as in AWS...
    for p in [
        "/v1/tenants/acme/routes".to_owned(),
        format!("{path}/history"),
        format!("{path}/status"),
    ] {
        let r = http.get(&p, &acme).await;
        assert_eq!(r.status, StatusCode::OK, "{p}: {}", r.text);
    }
    assert_eq!(
        http.put(&path, &acme, &body(&[("a", 2)])).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the write function's burst of 4 is spent"
    );
    // ...and resolve has a bucket of its own
    for i in 0..4 {
        let r = http.get("/v1/resolve/acme/web/prod/1", &acme).await;
        assert_eq!(r.status, StatusCode::OK, "resolve {i}: {}", r.text);
    }

    let over = http
        .send(
            Method::GET,
            "/v1/resolve/acme/web/prod/1",
            Some(&acme),
            &[("x-correlation-id", "over-the-limit")],
            None,
        )
        .await;
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::TOO_MANY_REQUESTS, "throttled"),
        "{}",
        over.text
    );
    let retry: u64 = over
        .header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is whole seconds: {:?}", over.headers));
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(over.header("x-correlation-id"), "over-the-limit");
    assert_eq!(over.json["error"]["request_id"], "over-the-limit");

    let r = http.get("/v1/tenants/other/routes", &other).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "another tenant has its own bucket"
    );
    let r = http
        .put(
            &route_path("other", "web", "prod", "1"),
            &other,
            &body(&[("a", 1)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let health = http.send(Method::GET, "/healthz", None, &[], None).await;
    assert_eq!(health.status, StatusCode::OK, "health is never limited");
    let ready = http.send(Method::GET, "/readyz", None, &[], None).await;
    assert_eq!(ready.status, StatusCode::OK);

    let bad = http.get("/v1/tenants/acme/routes", "not-a-token").await;
    assert_eq!(
        bad.status,
        StatusCode::UNAUTHORIZED,
        "authentication comes before the limit"
    );
}

#[tokio::test]
async fn a_token_for_another_tenant_cannot_spend_a_tenants_budget() {
    let (srv, _dir) = TmLocal::start(ENV);
    let http = Http::new(&srv.base);
    let intruder = admin("other");
    let read_only = token("ro", "acme", "routes:read");
    for _ in 0..10 {
        let r = http.get("/v1/tenants/acme/routes", &intruder).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "403, never 429: the intruder's requests are not charged to acme"
        );
        let r = http
            .send(
                Method::DELETE,
                &route_path("acme", "web", "prod", "1"),
                Some(&read_only),
                &[],
                None,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "a missing scope is not charged"
        );
    }
    let acme = admin("acme");
    for i in 0..4 {
        let r = http.get("/v1/tenants/acme/routes", &acme).await;
        assert_eq!(r.status, StatusCode::OK, "request {i} of acme's burst");
    }
    assert_eq!(
        http.get("/v1/tenants/acme/routes", &acme).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn without_configuration_there_is_no_limit() {
    let (srv, _dir) = TmLocal::start(&[]);
    let http = Http::new(&srv.base);
    let acme = admin("acme");
    for _ in 0..50 {
        assert_eq!(
            http.get("/v1/tenants/acme/routes", &acme).await.status,
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_bad_rate_limit_stops_start_up_naming_the_variable() {
    let out = std::process::Command::new(tm_tests::tm_local_bin())
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().expect("temp dir").path())
        .env("TM_JWT_SECRET", tm_tests::SECRET)
        .env("TM_RATE_LIMIT_RPS", "fast")
        .env_remove("TM_TABLE_NAME")
        .env_remove("TM_REDIS_URL")
        .env_remove("TM_KAFKA_BROKERS")
        .output()
        .expect("run tm-local");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TM_RATE_LIMIT_RPS"), "{stderr}");
}
