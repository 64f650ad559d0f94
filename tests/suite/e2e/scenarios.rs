//! The scenarios, each a user's session against a fresh `tm-local`.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tm_tests::{Http, Reply, TmLocal, admin, body, route_path, token, token_with};

fn start(env: &[(&str, &str)]) -> (TmLocal, tempfile::TempDir, Http) {
    let (server, dir) = TmLocal::start(env);
    let http = Http::new(&server.base);
    (server, dir, http)
}

async fn resolve(
    http: &Http,
    tok: &str,
    t: &str,
    s: &str,
    e: &str,
    sel: &str,
    key: Option<&str>,
) -> Reply {
    let q = key.map(|k| format!("?key={k}")).unwrap_or_default();
    http.get(&format!("/v1/resolve/{t}/{s}/{e}/{sel}{q}"), tok)
        .await
}

/// Waits until resolve answers with this revision (or status), returning how long it took.
async fn until_resolved(
    http: &Http,
    tok: &str,
    path: &str,
    want: impl Fn(&Reply) -> bool,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let r = http.get(path, tok).await;
        if want(&r) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} never converged; last answer: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn canary_route_resolves(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let r = http
        .put(
            &route_path("acme", "checkout", "prod", "2.3.1"),
            &tok,
            &body(&[("blue", 90), ("green", 10)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.header("etag"), "\"1\"");
    assert_eq!(r.json["revision"], 1);
    assert_eq!(r.json["updated_by"], "tester");
    assert_eq!(r.json["ttl_seconds"], 30);
    assert_eq!(r.json["active"], true);

    let first = resolve(
        &http,
        &tok,
        "acme",
        "checkout",
        "prod",
        "latest",
        Some("user-42"),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.json["version"], "2.3.1");
    assert_eq!(first.json["revision"], 1);
    assert_eq!(first.json["candidates"].as_array().map(Vec::len), Some(2));
    assert_eq!(first.header("cache-control"), "max-age=30");
    assert_eq!(first.header("etag"), "\"1\"");
    assert!(
        ["miss", "hit-l2", "hit-l1"].contains(&first.header("x-cache")),
        "{}",
        first.header("x-cache")
    );
    let again = resolve(
        &http,
        &tok,
        "acme",
        "checkout",
        "prod",
        "latest",
        Some("user-42"),
    )
    .await;
    assert_eq!(again.header("x-cache"), "hit-l1");
    let sticky = first.json["endpoint"]["id"].clone();
    for _ in 0..20 {
        let r = resolve(
            &http,
            &tok,
            "acme",
            "checkout",
            "prod",
            "2.3.1",
            Some("user-42"),
        )
        .await;
        assert_eq!(
            r.json["endpoint"]["id"], sticky,
            "a key always lands on the same endpoint"
        );
    }
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        let r = resolve(&http, &tok, "acme", "checkout", "prod", "latest", None).await;
        *counts
            .entry(r.json["endpoint"]["id"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let blue = counts.get("blue").copied().unwrap_or(0);
    assert!(
        (320..=395).contains(&blue),
        "about 90% blue without a key: {counts:?}"
    );
}

pub(crate) async fn changes_propagate(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "web", "prod", "1.0.0");
    let rpath = "/v1/resolve/acme/web/prod/latest";
    // The first changes also wait for the event pipeline to start (a Kafka consumer group
    // joining and settling its assignment); the timed ones show the steady state.
    for rev in 1..=3u64 {
        http.put(&path, &tok, &body(&[("a", 1), ("b", rev as u32)]))
            .await;
        until_resolved(&http, &tok, rpath, |r| r.json["revision"] == rev).await;
    }
    let mut worst = Duration::ZERO;
    for rev in 4..=8u64 {
        let r = http
            .put(&path, &tok, &body(&[("a", 1), ("b", rev as u32)]))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let took = until_resolved(&http, &tok, rpath, |r| r.json["revision"] == rev).await;
        worst = worst.max(took);
    }
    let l1: u64 = env
        .iter()
        .find(|(k, _)| *k == "TM_L1_TTL_MS")
        .map_or(1000, |(_, v)| v.parse().unwrap_or(1000));
    assert!(
        worst <= Duration::from_millis(l1 + 1000),
        "slowest propagation {worst:?}"
    );
}

pub(crate) async fn revisions_survive_delete_and_recreate(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "pay", "prod", "1.0.0");
    assert_eq!(
        http.put(&path, &tok, &body(&[("a", 1)])).await.json["revision"],
        1
    );
    let same = http.put(&path, &tok, &body(&[("a", 1)])).await;
    assert_eq!(
        (same.status, same.json["revision"].clone()),
        (StatusCode::OK, json!(2)),
        "an unchanged PUT is still a change"
    );
    let del = http.delete(&path, &tok).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert!(del.text.is_empty());
    assert_eq!(http.get(&path, &tok).await.status, StatusCode::NOT_FOUND);
    assert_eq!(http.delete(&path, &tok).await.status, StatusCode::NOT_FOUND);
    let again = http.put(&path, &tok, &body(&[("b", 1)])).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(
        again.json["revision"], 4,
        "re-created routes continue from the delete's revision"
    );
    let h = http.get(&format!("{path}/history"), &tok).await;
    let types: Vec<&str> = h.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "route.created",
            "route.deleted",
            "route.updated",
            "route.created"
        ]
    );
    let revs: Vec<u64> = h.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, [4, 3, 2, 1]);
    assert!(
        h.json["items"][1]["route"].is_null(),
        "a delete's history entry has no route"
    );
}

pub(crate) async fn preconditions(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "cart", "prod", "1");
    let b = body(&[("a", 1)]);
    let put = |h: &'static [(&'static str, &'static str)]| {
        let http = http.clone();
        let (tok, path, b) = (tok.clone(), path.clone(), b.clone());
        async move { http.send(Method::PUT, &path, Some(&tok), h, Some(&b)).await }
    };
    assert_eq!(
        put(&[("if-match", "\"1\"")]).await.status,
        StatusCode::PRECONDITION_FAILED,
        "If-Match on an absent route"
    );
    assert_eq!(
        put(&[("if-none-match", "*")]).await.status,
        StatusCode::CREATED
    );
    let r = put(&[("if-none-match", "*")]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PRECONDITION_FAILED, "precondition_failed")
    );
    assert_eq!(
        put(&[("if-match", "\"7\"")]).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    let ok = put(&[("if-match", "\"1\"")]).await;
    assert_eq!((ok.status, ok.header("etag")), (StatusCode::OK, "\"2\""));
    let stale_delete = http
        .send(
            Method::DELETE,
            &path,
            Some(&tok),
            &[("if-match", "\"1\"")],
            None,
        )
        .await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
    let stale_deactivate = http
        .send(
            Method::POST,
            &format!("{path}/deactivate"),
            Some(&tok),
            &[("if-match", "\"1\"")],
            None,
        )
        .await;
    assert_eq!(stale_deactivate.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        http.get(&path, &tok).await.json["revision"],
        2,
        "failed preconditions changed nothing"
    );
    let absent = route_path("acme", "cart", "prod", "9");
    assert_eq!(
        http.send(
            Method::DELETE,
            &absent,
            Some(&tok),
            &[("if-match", "\"1\"")],
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        http.post(&format!("{absent}/activate"), &tok).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = put(&[("if-match", "seven")]).await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let del = http
        .send(
            Method::DELETE,
            &path,
            Some(&tok),
            &[("if-match", "\"2\"")],
            None,
        )
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
}

pub(crate) async fn activate_and_deactivate(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "search", "prod", "1.0.0");
    http.put(&path, &tok, &body(&[("a", 1)])).await;
    let rpath = "/v1/resolve/acme/search/prod/1.0.0";
    until_resolved(&http, &tok, rpath, |r| r.status == StatusCode::OK).await;
    let d = http.post(&format!("{path}/deactivate"), &tok).await;
    assert_eq!(
        (
            d.status,
            d.json["active"].clone(),
            d.json["revision"].clone()
        ),
        (StatusCode::OK, json!(false), json!(2))
    );
    let d2 = http.post(&format!("{path}/deactivate"), &tok).await;
    assert_eq!(
        (d2.status, d2.json["revision"].clone()),
        (StatusCode::OK, json!(2)),
        "already inactive: unchanged"
    );
    until_resolved(&http, &tok, rpath, |r| {
        r.status == StatusCode::NOT_FOUND && r.code() == "not_found"
    })
    .await;
    assert_eq!(
        http.get(&path, &tok).await.json["active"],
        false,
        "an inactive route is kept"
    );
    let latest = resolve(&http, &tok, "acme", "search", "prod", "latest", None).await;
    assert_eq!(latest.status, StatusCode::NOT_FOUND);
    let a = http.post(&format!("{path}/activate"), &tok).await;
    assert_eq!(
        (a.status, a.json["revision"].clone()),
        (StatusCode::OK, json!(3))
    );
    until_resolved(&http, &tok, rpath, |r| r.json["revision"] == 3).await;
    let audit = http.get("/v1/tenants/acme/audit", &tok).await;
    let types: Vec<&str> = audit.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["route.activated", "route.deactivated", "route.created"]
    );
}

pub(crate) async fn list_and_cursors(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme other");
    let keys = [
        ("b", "prod", "1"),
        ("a", "prod", "2"),
        ("a", "dev", "1"),
        ("a-b", "prod", "1"),
        ("a", "prod", "10"),
    ];
    for (s, e, v) in keys {
        assert_eq!(
            http.put(&route_path("acme", s, e, v), &tok, &body(&[("x", 1)]))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    http.put(
        &route_path("other", "a", "prod", "1"),
        &tok,
        &body(&[("x", 1)]),
    )
    .await;
    http.delete(&route_path("acme", "b", "prod", "1"), &tok)
        .await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let r = http
            .get(&format!("/v1/tenants/acme/routes?limit=2{q}"), &tok)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        pages += 1;
        for i in r.json["items"].as_array().unwrap() {
            seen.push(format!(
                "{}/{}/{}",
                i["service"].as_str().unwrap(),
                i["env"].as_str().unwrap(),
                i["version"].as_str().unwrap()
            ));
        }
        match r.json.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["a/dev/1", "a/prod/10", "a/prod/2", "a-b/prod/1"],
        "byte order, deleted routes left out"
    );
    assert_eq!(pages, 2);
    let only = http
        .get("/v1/tenants/acme/routes?service=a&env=prod", &tok)
        .await;
    assert_eq!(only.json["items"].as_array().map(Vec::len), Some(2));
    let env_only = http.get("/v1/tenants/acme/routes?env=dev", &tok).await;
    assert_eq!(env_only.json["items"].as_array().map(Vec::len), Some(1));
    let first = http.get("/v1/tenants/acme/routes?limit=1", &tok).await;
    let c = first.json["next_cursor"].as_str().unwrap().to_owned();
    let other = http
        .get(
            &format!("/v1/tenants/other/routes?limit=1&cursor={c}"),
            &tok,
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::BAD_REQUEST, "invalid_request"),
        "another tenant's cursor"
    );
    let refiltered = http
        .get(
            &format!("/v1/tenants/acme/routes?limit=1&service=a&cursor={c}"),
            &tok,
        )
        .await;
    assert_eq!(
        refiltered.status,
        StatusCode::BAD_REQUEST,
        "a cursor from another query"
    );
    let mut forged = c.clone();
    forged.replace_range(0..1, if c.starts_with('A') { "B" } else { "A" });
    assert_eq!(
        http.get(&format!("/v1/tenants/acme/routes?cursor={forged}"), &tok)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    for bad in ["0", "501", "x", "-1"] {
        let r = http
            .get(&format!("/v1/tenants/acme/routes?limit={bad}"), &tok)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "limit={bad}");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limit")
        );
    }
    assert_eq!(
        http.get("/v1/tenants/acme/routes?service=Bad", &tok)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

pub(crate) async fn history_and_audit(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let p1 = route_path("acme", "s1", "prod", "1");
    let p2 = route_path("acme", "s2", "prod", "1");
    for _ in 0..3 {
        http.put(&p1, &tok, &body(&[("a", 1)])).await;
    }
    let before_s2 = tm_core::domain::timefmt::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    http.send(
        Method::PUT,
        &p2,
        Some(&tok),
        &[("x-correlation-id", "corr-s2")],
        Some(&body(&[("a", 1)])),
    )
    .await;
    http.delete(&p1, &tok).await;
    let h = http.get(&format!("{p1}/history?limit=2"), &tok).await;
    assert_eq!(h.json["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(h.json["items"][0]["revision"], 4);
    let c = h.json["next_cursor"]
        .as_str()
        .expect("more history")
        .to_owned();
    let h2 = http
        .get(&format!("{p1}/history?limit=2&cursor={c}"), &tok)
        .await;
    let revs: Vec<u64> = h2.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revs, [2, 1]);
    assert!(h2.json.get("next_cursor").is_none());
    assert_eq!(
        http.get(&format!("{p1}/history"), &tok).await.status,
        StatusCode::OK,
        "history outlives a delete"
    );
    let never = http
        .get(
            &format!("{}/history", route_path("acme", "s9", "prod", "1")),
            &tok,
        )
        .await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    let other_cursor = http.get(&format!("{p2}/history?cursor={c}"), &tok).await;
    assert_eq!(other_cursor.status, StatusCode::BAD_REQUEST);

    let a = http.get("/v1/tenants/acme/audit", &tok).await;
    let items = a.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["type"], "route.deleted");
    assert_eq!(items[1]["service"], "s2");
    assert_eq!(items[1]["correlation_id"], "corr-s2");
    let created = http
        .get("/v1/tenants/acme/audit?type=route.created", &tok)
        .await;
    assert_eq!(created.json["items"].as_array().map(Vec::len), Some(2));
    let since = http
        .get(&format!("/v1/tenants/acme/audit?since={before_s2}"), &tok)
        .await;
    assert_eq!(
        since.json["items"].as_array().map(Vec::len),
        Some(2),
        "{}",
        since.text
    );
    let until = http
        .get(&format!("/v1/tenants/acme/audit?until={before_s2}"), &tok)
        .await;
    assert_eq!(until.json["items"].as_array().map(Vec::len), Some(3));
    let paged = http.get("/v1/tenants/acme/audit?limit=4", &tok).await;
    let c = paged.json["next_cursor"].as_str().unwrap().to_owned();
    let rest = http
        .get(&format!("/v1/tenants/acme/audit?limit=4&cursor={c}"), &tok)
        .await;
    assert_eq!(rest.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest.json["items"][0]["revision"], 1);
    for bad in [
        "type=route.exploded",
        "since=yesterday",
        "until=2026-13-01T00:00:00Z",
    ] {
        let r = http
            .get(&format!("/v1/tenants/acme/audit?{bad}"), &tok)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

pub(crate) async fn status_in_sync(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "inv", "prod", "1");
    let spath = format!("{path}/status");
    http.put(&path, &tok, &body(&[("a", 1)])).await;
    // The first change also waits for the event pipeline to start (a Kafka consumer group
    // joining); the second one shows the steady state.
    until_resolved(&http, &tok, &spath, |r| r.json["in_sync"] == true).await;
    http.put(&path, &tok, &body(&[("a", 2)])).await;
    let took = until_resolved(&http, &tok, &spath, |r| r.json["in_sync"] == true).await;
    let s = http.get(&spath, &tok).await;
    assert_eq!(
        s.json,
        json!({"revision": 2, "cached_revision": 2, "in_sync": true})
    );
    assert!(
        took < Duration::from_secs(1),
        "the cache caught up in {took:?}"
    );
    http.delete(&path, &tok).await;
    assert_eq!(http.get(&spath, &tok).await.status, StatusCode::NOT_FOUND);
    let unknown = http
        .get(
            &format!("{}/status", route_path("acme", "inv", "prod", "2")),
            &tok,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

pub(crate) async fn restart_loses_nothing(env: &[(&str, &str)]) {
    let (mut srv, _dir, _) = start(env);
    let tok = admin("acme");
    let http = Http::new(&srv.base);
    for v in ["1.0.0", "1.1.0", "2.0.0"] {
        http.put(
            &route_path("acme", "api", "prod", v),
            &tok,
            &body(&[("a", 1)]),
        )
        .await;
    }
    http.post(
        &format!("{}/deactivate", route_path("acme", "api", "prod", "2.0.0")),
        &tok,
    )
    .await;
    srv.restart();
    let http = Http::new(&srv.base);
    let got = http
        .get(&route_path("acme", "api", "prod", "2.0.0"), &tok)
        .await;
    assert_eq!(
        (
            got.status,
            got.json["revision"].clone(),
            got.json["active"].clone()
        ),
        (StatusCode::OK, json!(2), json!(false))
    );
    let latest = resolve(&http, &tok, "acme", "api", "prod", "latest", None).await;
    assert_eq!(latest.json["version"], "1.1.0");
    let next = http
        .put(
            &route_path("acme", "api", "prod", "1.0.0"),
            &tok,
            &body(&[("b", 1)]),
        )
        .await;
    assert_eq!(next.json["revision"], 2);
    let audit = http.get("/v1/tenants/acme/audit", &tok).await;
    assert_eq!(audit.json["items"].as_array().map(Vec::len), Some(5));
    let list = http.get("/v1/tenants/acme/routes", &tok).await;
    let c = list.json["items"].as_array().map(Vec::len);
    assert_eq!(c, Some(3));
    let page = http.get("/v1/tenants/acme/routes?limit=1", &tok).await;
    let cursor = page.json["next_cursor"].as_str().unwrap().to_owned();
    srv.restart();
    let http = Http::new(&srv.base);
    let next_page = http
        .get(
            &format!("/v1/tenants/acme/routes?limit=1&cursor={cursor}"),
            &tok,
        )
        .await;
    assert_eq!(
        next_page.status,
        StatusCode::OK,
        "cursors survive a restart"
    );
}

pub(crate) async fn tenant_isolation(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let acme = admin("acme");
    let other = admin("other");
    let star = token("root", "*", "routes:read routes:write routes:resolve");
    http.put(
        &route_path("acme", "web", "prod", "1"),
        &acme,
        &body(&[("a", 1)]),
    )
    .await;
    let existing = route_path("acme", "web", "prod", "1");
    let missing = route_path("acme", "web", "prod", "2");
    let b = body(&[("a", 1)]);
    let cases: Vec<(Method, String, Option<&str>)> = vec![
        (Method::PUT, existing.clone(), Some(b.as_str())),
        (Method::GET, existing.clone(), None),
        (Method::DELETE, existing.clone(), None),
        (Method::POST, format!("{existing}/activate"), None),
        (Method::POST, format!("{existing}/deactivate"), None),
        (Method::GET, format!("{existing}/history"), None),
        (Method::GET, format!("{existing}/status"), None),
        (Method::GET, missing.clone(), None),
        (Method::GET, format!("{missing}/history"), None),
        (Method::GET, "/v1/tenants/acme/routes".into(), None),
        (Method::GET, "/v1/tenants/acme/audit".into(), None),
        (Method::GET, "/v1/resolve/acme/web/prod/1".into(), None),
        (Method::GET, "/v1/resolve/acme/web/prod/2".into(), None),
    ];
    for (m, p, b) in &cases {
        let r = http.send(m.clone(), p, Some(&other), &[], *b).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{m} {p}: same answer whether or not it exists"
        );
    }
    let read_only = token("ro", "acme", "routes:read");
    let resolve_only = token("rs", "acme", "routes:resolve");
    assert_eq!(
        http.send(Method::PUT, &existing, Some(&read_only), &[], Some(&b))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        http.delete(&existing, &read_only).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        http.post(&format!("{existing}/deactivate"), &read_only)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(http.get(&existing, &read_only).await.status, StatusCode::OK);
    assert_eq!(
        http.get("/v1/resolve/acme/web/prod/1", &read_only)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        http.get("/v1/resolve/acme/web/prod/1", &resolve_only)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        http.get(&existing, &resolve_only).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(http.get(&existing, &star).await.status, StatusCode::OK);
    assert_eq!(
        http.get("/v1/tenants/other/routes", &star).await.status,
        StatusCode::OK
    );
    let bad_name = http.get("/v1/tenants/Acme/routes", &acme).await;
    assert_eq!(
        bad_name.status,
        StatusCode::FORBIDDEN,
        "authorisation comes before validation"
    );
    let star_bad = http.get("/v1/tenants/Acme/routes", &star).await;
    assert_eq!(
        (star_bad.status, star_bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let listed = http.get("/v1/tenants/other/routes", &other).await;
    assert_eq!(
        listed.json["items"].as_array().map(Vec::len),
        Some(0),
        "another tenant sees nothing of acme"
    );
}

pub(crate) async fn authentication(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let path = route_path("acme", "web", "prod", "1");
    let none = http.send(Method::GET, &path, None, &[], None).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    for bad in [
        "garbage",
        "a.b.c",
        &token_with("u", "acme", "routes:read", -120),
    ] {
        let r = http.send(Method::GET, &path, Some(bad), &[], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let within_leeway = token_with("u", "acme", "routes:read", -30);
    assert_eq!(
        http.get(&path, &within_leeway).await.status,
        StatusCode::NOT_FOUND,
        "60 s of leeway"
    );
    let other_key = {
        let mut c = serde_json::Map::new();
        c.insert("sub".into(), json!("u"));
        c.insert("tm_tenants".into(), json!("acme"));
        c.insert("scope".into(), json!("routes:read"));
        c.insert("exp".into(), json!(9_999_999_999i64));
        tm_core::jwt::mint(b"not-the-secret", &c)
    };
    assert_eq!(
        http.get(&path, &other_key).await.status,
        StatusCode::UNAUTHORIZED
    );
    let alg_none = {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b.encode(r#"{"alg":"none"}"#),
            b.encode(r#"{"sub":"u","tm_tenants":"*","scope":"routes:read","exp":9999999999}"#)
        )
    };
    assert_eq!(
        http.get(&path, &alg_none).await.status,
        StatusCode::UNAUTHORIZED
    );
    let unknown = http.send(Method::GET, "/v1/nowhere", None, &[], None).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found"),
        "404 before 401"
    );
    let wrong = http.send(Method::PATCH, &path, None, &[], None).await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        "405 before 401"
    );
    assert_eq!(wrong.header("allow"), "GET, PUT, DELETE");
}

pub(crate) async fn bad_input(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "web", "prod", "1");
    let cases = [
        ("{", "body"),
        ("[]", "body"),
        ("{}", "endpoints"),
        (r#"{"endpoints":[]}"#, "endpoints"),
        (
            r#"{"endpoints":[{"id":"a","url":"ftp://x"}]}"#,
            "endpoints[0].url",
        ),
        (
            r#"{"endpoints":[{"id":"a","url":"https://x","weight":1001}]}"#,
            "endpoints[0].weight",
        ),
        (
            r#"{"endpoints":[{"id":"a","url":"https://x"}],"revision":5}"#,
            "revision",
        ),
        (
            r#"{"endpoints":[{"id":"a","url":"https://x"}],"ttl_seconds":null}"#,
            "ttl_seconds",
        ),
        (
            r#"{"endpoints":[{"id":"a","url":"https://x"}],"ttl":30}"#,
            "ttl",
        ),
        (
            r#"{"endpoints":[{"id":"a","url":"https://x"}],"version":"2"}"#,
            "version",
        ),
    ];
    for (b, field) in cases {
        let r = http.put(&path, &tok, b).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{b}"
        );
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{b}: {}",
            r.text
        );
        assert_eq!(r.json["error"]["request_id"], r.header("x-correlation-id"));
    }
    for bad_path in [
        route_path("acme", "Web", "prod", "1"),
        route_path("acme", "web", "prod_1", "1"),
        route_path("acme", "web", "prod", "latest"),
        route_path("acme", "web", "prod", "a%2Fb"),
        route_path("acme", "web", "prod", &"v".repeat(65)),
    ] {
        let r = http.put(&bad_path, &tok, &body(&[("a", 1)])).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad_path}");
    }
    let big = format!(
        r#"{{"endpoints":[{{"id":"a","url":"https://x"}}],"labels":{{"k":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    let r = http.put(&path, &tok, &big).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let r = http
        .send(
            Method::PUT,
            &path,
            Some(&tok),
            &[("content-type", "text/plain")],
            Some(&body(&[("a", 1)])),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let forbidden_big = http
        .put(&route_path("other", "web", "prod", "1"), &tok, &big)
        .await;
    assert_eq!(
        forbidden_big.status,
        StatusCode::FORBIDDEN,
        "403 comes before 413"
    );
    assert_eq!(
        http.get("/v1/tenants/acme/routes", &tok).await.json["items"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "nothing changed"
    );
    assert_eq!(
        http.get("/v1/tenants/acme/audit", &tok).await.json["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let own = http
        .send(
            Method::GET,
            "/v1/tenants/acme/routes",
            Some(&tok),
            &[("x-correlation-id", "my-req.1")],
            None,
        )
        .await;
    assert_eq!(own.header("x-correlation-id"), "my-req.1");
    let injected = http
        .send(
            Method::GET,
            "/v1/nowhere",
            None,
            &[("x-correlation-id", "a b")],
            None,
        )
        .await;
    assert!(
        injected.header("x-correlation-id").starts_with("req-"),
        "an unsafe id is replaced"
    );
}

pub(crate) async fn resolve_rules(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    for v in ["1.2.0", "1.10.0", "2.0.0-rc.1", "v2.1.0", "canary"] {
        http.put(
            &route_path("acme", "api", "prod", v),
            &tok,
            &body(&[("a", 1)]),
        )
        .await;
    }
    let failover = r#"{"endpoints":[{"id":"main","url":"https://m","priority":0,"status":"disabled"},
        {"id":"backup","url":"https://b","priority":1,"weight":5},{"id":"dr","url":"https://d","priority":2}]}"#;
    http.put(&route_path("acme", "api", "prod", "3.0.0"), &tok, failover)
        .await;
    let none_left = r#"{"endpoints":[{"id":"main","url":"https://m","status":"draining"},{"id":"z","url":"https://z","weight":0}]}"#;
    http.put(&route_path("acme", "api", "prod", "4.0.0"), &tok, none_left)
        .await;
    let pick = |sel: &'static str| {
        let http = http.clone();
        let tok = tok.clone();
        async move { resolve(&http, &tok, "acme", "api", "prod", sel, None).await }
    };
    assert_eq!(
        pick("latest").await.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "latest is 4.0.0 which has no candidate"
    );
    assert_eq!(pick("latest").await.code(), "no_available_endpoint");
    http.post(
        &format!("{}/deactivate", route_path("acme", "api", "prod", "4.0.0")),
        &tok,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let f = pick("latest").await;
    assert_eq!(f.json["version"], "3.0.0");
    assert_eq!(
        f.json["endpoint"]["id"], "backup",
        "failover to the lowest priority with a candidate"
    );
    assert_eq!(
        f.json["candidates"],
        json!([{"id": "backup", "url": "https://b", "weight": 5}])
    );
    assert_eq!(pick("%5E1").await.json["version"], "1.10.0");
    assert_eq!(pick("%5E2").await.json["version"], "v2.1.0");
    assert_eq!(
        pick("%3E%3D2.0.0-rc.1%2C%20%3C2.1.0").await.json["version"],
        "2.0.0-rc.1"
    );
    assert_eq!(pick("canary").await.json["version"], "canary");
    assert_eq!(pick("1.2.0").await.json["version"], "1.2.0");
    assert_eq!(
        pick("1.2.1").await.status,
        StatusCode::NOT_FOUND,
        "exact never falls back"
    );
    assert_eq!(pick("%5E9").await.status, StatusCode::NOT_FOUND);
    let bad = pick("%5Ex").await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let empty_key = http
        .get("/v1/resolve/acme/api/prod/latest?key=", &tok)
        .await;
    assert_eq!(empty_key.status, StatusCode::BAD_REQUEST);
    let long_key = http
        .get(
            &format!("/v1/resolve/acme/api/prod/latest?key={}", "k".repeat(257)),
            &tok,
        )
        .await;
    assert_eq!(long_key.status, StatusCode::BAD_REQUEST);
    let ok_key = http
        .get(
            &format!("/v1/resolve/acme/api/prod/latest?key={}", "k".repeat(256)),
            &tok,
        )
        .await;
    assert_eq!(ok_key.status, StatusCode::OK);
    let unknown = resolve(&http, &tok, "acme", "nothing", "prod", "latest", None).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let bad_name = resolve(&http, &tok, "acme", "API", "prod", "latest", None).await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
}

pub(crate) async fn health(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let h = http.send(Method::GET, "/healthz", None, &[], None).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = http.send(Method::GET, "/readyz", None, &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["status"], "ready");
    assert_eq!(r.json["backends"]["store"], "up");
    assert_eq!(r.json["backends"]["cache"], "up");
    assert_eq!(
        http.send(Method::POST, "/healthz", None, &[], None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

pub(crate) async fn concurrent_writes(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "hot", "prod", "1");
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let (http, tok, path) = (http.clone(), tok.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            http.put(&path, &tok, &body(&[("a", i + 1)])).await
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::CREATED,
            "{}",
            r.text
        );
        revs.push(r.json["revision"].as_u64().unwrap());
    }
    revs.sort();
    assert_eq!(
        revs,
        (1..=16).collect::<Vec<u64>>(),
        "every writer got its own revision"
    );
    let h = http.get(&format!("{path}/history?limit=500"), &tok).await;
    assert_eq!(h.json["items"].as_array().map(Vec::len), Some(16));
    let created = h.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "route.created")
        .count();
    assert_eq!(created, 1);
}

/// `If-None-Match` on resolve: the route's ETag (strong or weak, alone or in a list)
/// answers 304 with no body and the caching headers; another revision answers 200; a route
/// without candidates answers 503 whatever the client holds. The checks before it keep
/// the contract's order.
pub(crate) async fn conditional_resolve(env: &[(&str, &str)]) {
    let (_srv, _dir, http) = start(env);
    let tok = admin("acme");
    let path = route_path("acme", "pay", "prod", "1.0.0");
    let r = http.put(&path, &tok, &body(&[("a", 1), ("b", 1)])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let rpath = "/v1/resolve/acme/pay/prod/latest?key=user-7";
    let get_if = |tag: &'static str| {
        let http = http.clone();
        let tok = tok.clone();
        async move {
            http.send(
                Method::GET,
                rpath,
                Some(&tok),
                &[("if-none-match", tag), ("x-correlation-id", "poll-1")],
                None,
            )
            .await
        }
    };
    // GIVEN a client holding revision 1
    let first = http.get(rpath, &tok).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("etag"), "\"1\"");
    // WHEN it polls with that ETag, THEN 304, no body, the caching headers
    for tag in ["\"1\"", "W/\"1\"", "\"0\", \"1\"", "*"] {
        let r = get_if(tag).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{tag}: {}", r.text);
        assert_eq!(r.text, "", "a 304 has no body");
        assert_eq!(r.header("etag"), "\"1\"");
        assert_eq!(r.header("cache-control"), "max-age=30");
        assert_eq!(r.header("x-correlation-id"), "poll-1");
        assert!(!r.header("x-cache").is_empty());
    }
    // AND another revision's tag gets the answer
    let r = get_if("\"2\"").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["endpoint"], first.json["endpoint"]);
    // WHEN the route changes, THEN the old tag gets the new answer once it is visible
    http.put(&path, &tok, &body(&[("a", 1), ("b", 3)])).await;
    until_resolved(&http, &tok, rpath, |r| r.json["revision"] == 2).await;
    let r = get_if("\"1\"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.header("etag"), "\"2\"");
    // AND a route without candidates is 503 even for a client holding its ETag
    let none = route_path("acme", "off", "prod", "1.0.0");
    http.put(&none, &tok, &body(&[("a", 0)])).await;
    let r = http
        .send(
            Method::GET,
            "/v1/resolve/acme/off/prod/1.0.0",
            Some(&tok),
            &[("if-none-match", "*")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.code(), "no_available_endpoint");
    // AND the checks before it come first: 401, 403, 413, 400, 404 — never 304
    let cases: [(Option<&str>, &str, Option<String>, StatusCode); 5] = [
        (None, rpath, None, StatusCode::UNAUTHORIZED),
        (
            Some("acme"),
            "/v1/resolve/other/pay/prod/latest",
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            Some("acme"),
            rpath,
            Some("x".repeat(70_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Some("acme"),
            "/v1/resolve/acme/pay/prod/latest?key=",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("acme"),
            "/v1/resolve/acme/nope/prod/latest",
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (tenant, p, big, want) in cases {
        let t = tenant.map(admin);
        let r = http
            .send(
                Method::GET,
                p,
                t.as_deref(),
                &[("if-none-match", "*")],
                big.as_deref(),
            )
            .await;
        assert_eq!(r.status, want, "{p}: {}", r.text);
        assert!(
            !r.code().is_empty(),
            "the contract's error body: {}",
            r.text
        );
    }
}
