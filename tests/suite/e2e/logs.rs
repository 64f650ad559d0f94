//! What tm-local writes down and sends back under hostile input: no secret or token ever
//! reaches a log line, every log line is one JSON object, and nothing a client sends (a
//! correlation id, a query or body value, a path) can add a response header or a log line.

use http::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tm_tests::{Http, SECRET, TmLocal, admin, body, route_path, token, token_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CURSOR_SECRET: &str = "cursor-secret-for-the-log-test";

/// Sends raw bytes (so the request can carry what an HTTP library refuses to send) and
/// returns the raw response.
async fn raw(base: &str, request: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The header names and values of a raw response (`None` when there is no response).
fn response_headers(resp: &str) -> Option<Vec<(String, String)>> {
    let head = resp.split("\r\n\r\n").next()?;
    let mut lines = head.split("\r\n");
    lines.next().filter(|l| l.starts_with("HTTP/1.1 "))?;
    Some(
        lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect(),
    )
}

fn assert_no_injected_header(what: &str, resp: &str) {
    let headers = response_headers(resp).unwrap_or_else(|| {
        panic!("{what}: no HTTP response (the server must answer, 400 at worst): {resp:?}")
    });
    for (k, v) in &headers {
        assert!(
            !k.contains("evil") && !v.contains("evil") && !v.contains('\r') && !v.contains('\n'),
            "{what}: a client value reached a response header: {k}: {v}\n{resp}"
        );
        if k == "x-correlation-id" {
            assert!(
                tm_http::api::is_valid_correlation_id(v),
                "{what}: unsafe correlation id echoed: {v:?}"
            );
        }
    }
}

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs_and_every_line_is_json() {
    let (srv, _dir) = TmLocal::start(&[
        ("RUST_LOG", "debug"),
        ("TM_CURSOR_SECRET", CURSOR_SECRET),
        ("TM_L1_TTL_MS", "100"),
    ]);
    let http = Http::new(&srv.base);
    let acme = admin("acme");
    let reader = token("reader", "acme", "routes:read");
    let resolver = token("resolver", "acme", "routes:resolve");
    let other = admin("other");
    let expired = token_with("late", "acme", "routes:read", -3600);
    let tampered = {
        let mut parts: Vec<String> = acme.split('.').map(str::to_owned).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    let wrong_key = {
        let mut c = serde_json::Map::new();
        c.insert("sub".into(), "mallory".into());
        c.insert("tm_tenants".into(), "*".into());
        c.insert("scope".into(), "routes:write".into());
        c.insert("exp".into(), 9_999_999_999i64.into());
        tm_core::jwt::mint(b"guessed-secret", &c)
    };
    let tokens = [
        &acme, &reader, &resolver, &other, &expired, &tampered, &wrong_key,
    ];

    // A full session: writes, reads, resolves, pages, every kind of error.
    let path = route_path("acme", "checkout", "prod", "1.0.0");
    let r = http
        .put(&path, &acme, &body(&[("blue", 90), ("green", 10)]))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    for v in ["1.1.0", "2.0.0"] {
        http.put(
            &route_path("acme", "checkout", "prod", v),
            &acme,
            &body(&[("a", 1)]),
        )
        .await;
    }
    let r = http
        .send(
            Method::PUT,
            &path,
            Some(&acme),
            &[("if-match", "\"1\"")],
            Some(&body(&[("blue", 1)])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = http
        .send(
            Method::PUT,
            &path,
            Some(&acme),
            &[("if-match", "\"1\"")],
            Some(&body(&[("blue", 1)])),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        http.post(&format!("{path}/deactivate"), &acme).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.post(&format!("{path}/activate"), &acme).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.get(&format!("{path}/history"), &reader).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.get(&format!("{path}/status"), &reader).await.status,
        StatusCode::OK
    );
    let page = http.get("/v1/tenants/acme/routes?limit=1", &reader).await;
    let cursor = page.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let r = http
        .get(
            &format!("/v1/tenants/acme/routes?limit=1&cursor={cursor}"),
            &reader,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = http
        .get(
            &format!("/v1/tenants/acme/routes?limit=1&cursor={cursor}x"),
            &reader,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        http.get("/v1/tenants/acme/audit", &reader).await.status,
        StatusCode::OK
    );
    for sel in ["latest", "1.0.0", "%5E1", "nope", "%3E%3D"] {
        http.get(
            &format!("/v1/resolve/acme/checkout/prod/{sel}?key=user-1"),
            &resolver,
        )
        .await;
    }
    for bad in [&expired, &tampered, &wrong_key] {
        let r = http.get(&path, bad).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = http
        .send(
            Method::GET,
            &path,
            None,
            &[("authorization", &format!("Basic {acme}"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = http
        .send(
            Method::GET,
            &path,
            None,
            &[("authorization", &format!("Bearer {acme} extra"))],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(http.get(&path, &other).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        http.put(
            &path,
            &acme,
            r#"{"endpoints":[{"id":"a","url":"ftp://x"}]}"#
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        http.send(Method::PATCH, &path, Some(&acme), &[], None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        http.delete(&path, &acme).await.status,
        StatusCode::NO_CONTENT
    );
    // A token sent as a body value or a query value is data: not logged either.
    let r = http
        .put(
            &route_path("acme", "checkout", "prod", "3"),
            &acme,
            &format!(
                r#"{{"endpoints":[{{"id":"a","url":"https://a"}}],"labels":{{"k":"{acme}"}}}}"#
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = http
        .get(
            &format!("/v1/resolve/acme/checkout/prod/latest?key={resolver}"),
            &resolver,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Let the relay and the consumer log what they do with these changes.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let logs = srv.log_text();
    assert!(logs.lines().count() > 10, "the session was logged:\n{logs}");
    let mut needles: Vec<(String, String)> = vec![
        ("the JWT secret".into(), SECRET.into()),
        ("the cursor secret".into(), CURSOR_SECRET.into()),
    ];
    for (i, t) in tokens.iter().enumerate() {
        needles.push((format!("token {i}"), (*t).clone()));
        needles.push((
            format!("the signature of token {i}"),
            t.rsplit('.').next().unwrap_or_default().to_owned(),
        ));
        needles.push((
            format!("the Authorization header of token {i}"),
            format!("Bearer {t}"),
        ));
    }
    for (what, needle) in &needles {
        assert!(!needle.is_empty());
        assert!(!logs.contains(needle.as_str()), "{what} is in the logs");
    }
    // Not even the (public) header segment of any JWT: no token got in, whole or cut.
    let jwt_header = acme.split('.').next().unwrap_or_default();
    assert!(
        !logs.contains(jwt_header),
        "a token's header segment is in the logs"
    );
    assert!(
        !logs.contains("Bearer ey") && !logs.contains("Basic ey"),
        "an Authorization value is in the logs"
    );
    for (n, line) in logs.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {n} is not JSON ({e}): {line}"));
        assert!(v.is_object(), "log line {n} is not an object: {line}");
    }
}

#[tokio::test]
async fn client_values_never_become_headers_or_extra_log_lines() {
    let (srv, _dir) = TmLocal::start(&[("RUST_LOG", "debug")]);
    let http = Http::new(&srv.base);
    let acme = admin("acme");
    let path = route_path("acme", "web", "prod", "1");
    let r = http.put(&path, &acme, &body(&[("a", 1)])).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let host = srv.base.trim_start_matches("http://").to_owned();
    let auth = format!("Authorization: Bearer {acme}\r\n");

    // Raw requests: CR, LF, obs-fold and non-UTF-8 bytes in the correlation id.
    let evil_ids: [(&str, &[u8]); 5] = [
        ("bare CR", b"abc\rX-Evil: 1"),
        ("bare LF", b"abc\nX-Evil: 1"),
        ("obs-fold", b"abc\r\n X-Evil: 1"),
        ("non-UTF-8", b"caf\xe9-evil"),
        ("NUL", b"a\x00X-Evil: 1"),
    ];
    for (what, id) in evil_ids {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}").into_bytes();
        req.extend_from_slice(b"X-Correlation-ID: ");
        req.extend_from_slice(id);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let resp = raw(&srv.base, &req).await;
        assert_no_injected_header(what, &resp);
    }
    let long_id = "a".repeat(129);
    for (what, id) in [
        ("too long", long_id.as_str()),
        ("spaces", "a b"),
        ("colon", "a:b"),
    ] {
        let r = http
            .send(
                Method::GET,
                &path,
                Some(&acme),
                &[("x-correlation-id", id)],
                None,
            )
            .await;
        let echoed = r.header("x-correlation-id");
        assert!(
            echoed.starts_with("req-") && echoed != id,
            "{what}: an unsafe id is replaced, got {echoed:?}"
        );
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{what}: a bad id is replaced, not refused"
        );
    }

    // Encoded CR/LF in paths, queries and bodies: rejected or kept as data, never a header.
    let crlf = "%0D%0AX-Evil:%201";
    let requests: Vec<(Method, String, Option<String>)> = vec![
        (Method::GET, format!("/v1/resolve/acme/web/prod/1?key=a{crlf}"), None),
        (Method::GET, format!("/v1/resolve/acme/web/prod/1{crlf}"), None),
        (Method::GET, format!("/v1/tenants/acme/routes?service=web{crlf}"), None),
        (Method::GET, format!("/v1/tenants/acme/routes?limit=1{crlf}"), None),
        (Method::GET, format!("/v1/tenants/acme/routes?cursor={crlf}"), None),
        (Method::GET, format!("/v1/tenants/acme/audit?since=2026{crlf}&type=x{crlf}"), None),
        (Method::GET, format!("{path}{crlf}"), None),
        (Method::GET, format!("/v1/tenants/acme{crlf}/routes"), None),
        (Method::GET, format!("/v1/nowhere{crlf}"), None),
        (
            Method::PUT,
            path.clone(),
            Some(r#"{"endpoints":[{"id":"a\r\nX-Evil: 1","url":"https://a"}]}"#.into()),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":{"k\r\nX-Evil: 1":"v"}}"#.into()),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(r#"{"endpoints":[{"id":"a","url":"https://a"}],"labels":{"k":"v\r\nX-Evil: 1"}}"#.into()),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(r#"{"endpoints":[{"id":"a","url":"https://a/\r\nX-Evil: 1"}]}"#.into()),
        ),
        (
            Method::PUT,
            path.clone(),
            Some(r#"{"endpoints":[{"id":"a","url":"https://a"}],"x\r\nX-Evil: 1\r\n{\"level\":\"ERROR\"}":1}"#.into()),
        ),
    ];
    for (method, p, b) in &requests {
        let r = http
            .send(method.clone(), p, Some(&acme), &[], b.as_deref())
            .await;
        for (k, v) in &r.headers {
            let v = v.to_str().unwrap_or_default();
            assert!(
                !k.as_str().contains("evil") && !v.contains("evil") && !v.contains("Evil"),
                "{method} {p}: {k}: {v}"
            );
        }
        assert!(
            r.status.is_client_error() || r.status.is_success(),
            "{method} {p}: {}",
            r.status
        );
        if r.status.is_client_error() {
            assert_eq!(
                r.json["error"]["request_id"],
                r.header("x-correlation-id"),
                "{p}"
            );
        }
    }
    let stored = http.get(&path, &acme).await;
    assert_eq!(stored.json["revision"], 1, "no hostile body was accepted");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = srv.log_text();
    for (n, line) in logs.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {n} is not one JSON object ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        assert!(
            !line.starts_with("X-Evil") && !line.starts_with("{\"level\":\"ERROR\"}"),
            "an injected log line: {line}"
        );
    }
    assert!(!logs.contains(&acme), "the token is not in the logs");
}
