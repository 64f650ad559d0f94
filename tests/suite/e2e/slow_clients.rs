//! Slow clients against the real tm-local binary: a body that never arrives is answered
//! 400 within the body read timeout, and the server keeps serving others meanwhile.

use std::time::{Duration, Instant};
use tm_tests::{TmLocal, admin, route_path};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` (a request whose body stops short) on a new connection to `srv`, then
/// nothing more; the first answer and how long it took to come.
async fn answer_to_a_stalled_body(srv: &TmLocal, head: &str) -> (String, Duration) {
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut answer))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    (
        String::from_utf8_lossy(&answer[..n]).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_body_that_never_arrives_is_answered_400_within_the_body_timeout() {
    // GIVEN tm-local, and a PUT whose headers promise 100 bytes of body
    let (srv, _dir) = TmLocal::start(&[]);
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"endp",
        route_path("acme", "web", "prod", "1"),
        admin("acme")
    );
    // WHEN the rest never comes
    let (text, took) = answer_to_a_stalled_body(&srv, &head).await;
    // THEN it is the contract's 400, after the body timeout (5 s) and not much later
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("\"invalid_request\""), "{text}");
    assert!(text.contains("not received within"), "{text}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_resolve_whose_announced_body_never_arrives_is_answered_within_the_body_timeout() {
    // GIVEN tm-local, and a resolve whose headers promise a body it never sends
    let (srv, _dir) = TmLocal::start(&[]);
    let head = format!(
        "GET /v1/resolve/acme/web/prod/latest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 10\r\n\r\n",
        admin("acme")
    );
    // WHEN nothing more comes
    let (text, took) = answer_to_a_stalled_body(&srv, &head).await;
    // THEN it is answered like any other request: the contract's 400 within 8 s
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("not received within"), "{text}");
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
}
