//! A keep-alive HTTP/1.1 client for 127.0.0.1: one [`Conn`] per connection, and [`run`],
//! which sends a fixed number of requests over many connections with paths from a
//! generator (wrk measures for a fixed time; the memory and Zipf runs need a fixed count).

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One keep-alive connection.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<Full<Bytes>>,
}

/// A response: status, headers, body.
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Answer {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The revision in `ETag: "<n>"`.
    pub fn etag_revision(&self) -> Option<u64> {
        self.header("etag")?.trim_matches('"').parse().ok()
    }
}

impl Conn {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { addr, sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> anyhow::Result<Answer> {
        self.sender.ready().await.context("connection closed")?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str, token: &str) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, token, None).await
    }
}

/// What [`run`] does.
pub struct Plan {
    /// Server.
    pub addr: SocketAddr,
    /// Connections (each sends its requests one after the other).
    pub connections: usize,
    /// Requests in all.
    pub total: u64,
    /// Bearer token.
    pub token: String,
    /// Seed for the path generator (each connection derives its own).
    pub seed: u64,
}

/// What [`run`] saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Answers with status 200.
    pub ok: u64,
    /// Other statuses, by code.
    pub other: BTreeMap<u16, u64>,
    /// `X-Cache` values of the 200s.
    pub x_cache: BTreeMap<String, u64>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Outcome {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        let n = self.ok + self.other.values().sum::<u64>();
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends `plan.total` GETs over `plan.connections` connections, paths from `path_of`
/// (called with each connection's own random generator); `done` counts answers as they
/// come (for samplers running alongside). Fails on a transport error.
pub async fn run<F>(plan: &Plan, path_of: F, done: Arc<AtomicU64>) -> anyhow::Result<Outcome>
where
    F: Fn(&mut fastrand::Rng) -> String + Send + Sync + 'static,
{
    let path_of = Arc::new(path_of);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..plan.connections {
        let mut conn = Conn::open(plan.addr).await?;
        let (issued, done, path_of) = (issued.clone(), done.clone(), path_of.clone());
        let (total, token) = (plan.total, plan.token.clone());
        let mut rng = fastrand::Rng::with_seed(plan.seed.wrapping_add(c as u64 * 7919));
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            while issued.fetch_add(1, Ordering::Relaxed) < total {
                let path = path_of(&mut rng);
                let a = conn.get(&path, &token).await?;
                if a.status == StatusCode::OK {
                    out.ok += 1;
                    if let Some(x) = a.header("x-cache") {
                        *out.x_cache.entry(x.to_owned()).or_default() += 1;
                    }
                } else {
                    *out.other.entry(a.status.as_u16()).or_default() += 1;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await??;
        all.ok += o.ok;
        for (k, v) in o.other {
            *all.other.entry(k).or_default() += v;
        }
        for (k, v) in o.x_cache {
            *all.x_cache.entry(k).or_default() += v;
        }
    }
    all.elapsed = started.elapsed();
    if all.ok == 0 {
        bail!("no request succeeded: {:?}", all.other);
    }
    Ok(all)
}
