//! tm-local's connection handling against hostile clients, over real sockets: a
//! slowloris client (a request head trickled forever) is cut at the header timeout and
//! cannot lock others out even when it holds every connection slot; an idle keep-alive
//! connection is closed; requests hyper cannot parse get the contract's error body.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tm_local::server::{Limits, accept_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEADER_TIMEOUT: Duration = Duration::from_millis(400);

async fn hello(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
}

/// A server with these limits on a free port; its address.
async fn server(max_connections: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let limits = Limits {
            header_read_timeout: HEADER_TIMEOUT,
            max_connections,
        };
        accept_until(
            &listener,
            limits,
            &graceful,
            || hello,
            std::future::pending(),
        )
        .await;
    });
    addr
}

/// Sends `request` on a new connection and reads until the server closes it.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Opens a connection and starts a request head it never finishes, one header byte every
/// 50 ms.
async fn slowloris(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    s
}

#[tokio::test]
async fn a_slowloris_client_is_cut_at_the_header_timeout() {
    // GIVEN a client trickling a request head
    let addr = server(8).await;
    let mut slow = slowloris(addr).await;
    let started = Instant::now();
    let mut trickled = 0;
    // WHEN it keeps sending a byte every 50 ms
    let closed = loop {
        if slow.write_all(b"X").await.is_err() {
            break true;
        }
        trickled += 1;
        if closed_within(&mut slow, Duration::from_millis(50)).await {
            break true;
        }
        if started.elapsed() > Duration::from_secs(3) {
            break false;
        }
    };
    // THEN the server closes it about one header timeout after it connected
    assert!(closed, "still open after {trickled} bytes");
    let took = started.elapsed();
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(50) && took < HEADER_TIMEOUT * 3,
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn slow_clients_holding_every_slot_delay_a_real_client_by_one_header_timeout_at_most() {
    // GIVEN a server capped at 4 connections, all 4 held by slowloris clients
    let addr = server(4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(slowloris(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // WHEN a real client sends a whole request
    let started = Instant::now();
    let answer = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    // THEN it is answered once the slow ones are cut, not never
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.ends_with("hello"));
    assert!(took < HEADER_TIMEOUT * 3, "answered after {took:?}");
    println!(
        "a real client waited {took:?} behind 4 slowloris connections (header timeout {HEADER_TIMEOUT:?})"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    // GIVEN a keep-alive connection that made one request
    let addr = server(8).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // WHEN it then sends nothing
    // THEN the server closes it after the idle (header) timeout
    assert!(closed_within(&mut s, HEADER_TIMEOUT * 3).await);
}

fn error_body(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"))
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_the_contracts_error_body() {
    let addr = server(8).await;
    // A malformed request line: 400.
    let answer = exchange(addr, b"NOT HTTP AT ALL\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    let v = error_body(&answer);
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(v["error"]["request_id"].is_string());
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-correlation-id: req-")
    );

    // Too many headers: 431.
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let answer = exchange(addr, &many).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    assert_eq!(error_body(&answer)["error"]["code"], "invalid_request");

    // A request line longer than hyper takes: 414.
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let answer = exchange(addr, long.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 414 "), "{answer:?}");
    assert_eq!(error_body(&answer)["error"]["code"], "invalid_request");

    // And a normal answer is untouched.
    let ok = exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("hello"),
        "{ok:?}"
    );
}
