//! tm-local's transport: plays API Gateway's HTTP API in front of the same request path
//! the Lambda functions take. A hyper request goes through the admission steps every
//! transport shares ([`tm_http::call`]: route table, then the bearer token verified like
//! the JWT authorizer, then the body, read under [`BODY_READ_TIMEOUT`] and at most
//! 64 KiB + 1 byte), and the admitted call takes [`tm_http::front::serve`]: the
//! production throttle over the configured [`tm_core::ports::TenantLimiter`], then the
//! function's handler. No API Gateway event is ever made up here.
//!
//! [`BODY_READ_TIMEOUT`]: crate::server::BODY_READ_TIMEOUT

use crate::app::App;
use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tm_core::domain::route::MAX_BODY_BYTES;
use tm_core::{Error, jwt};
use tm_http::api::{self, Function, Principal};
use tm_http::call::{self, Refused};
use tm_http::front;

/// Serves until SIGINT or SIGTERM, then finishes in-flight requests (up to 10 s).
pub async fn serve(mut app: App, listen: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop_trigger, trigger_stopped) = tokio::sync::watch::channel(false);
    let trigger = app.kafka_trigger.take().map(|t| {
        let mut stopped = trigger_stopped.clone();
        tokio::spawn(t.run(async move {
            let _ = stopped.changed().await;
        }))
    });
    let app = Arc::new(app);
    let tokens = Arc::new(VerifiedTokens::default());
    let relay = tokio::spawn(app.relay.clone().run(Duration::from_millis(500)));
    let prober = tokio::spawn(app.prober.clone().run());
    // Catch up on anything committed but not delivered before the last stop.
    app.relay.wake();
    tracing::info!(%addr, "tm-local listening");
    println!("tm-local listening on http://{addr}");

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Timeouts, the connection cap and the contract's body on hyper's own errors:
    // crate::server.
    crate::server::accept_until(
        &listener,
        crate::server::Limits::default(),
        &graceful,
        || {
            let (app, tokens) = (app.clone(), tokens.clone());
            move |req| handle(app.clone(), tokens.clone(), req)
        },
        shutdown_signal(),
    )
    .await;
    tracing::info!("shutting down: finishing in-flight requests");
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within 10 s");
    }
    relay.abort();
    prober.abort();
    let _ = stop_trigger.send(true);
    if let Some(t) = trigger
        && tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .is_err()
    {
        tracing::warn!("the Kafka trigger did not stop within 10 s");
    }
    if let Err(e) = app.relay.drain().await {
        tracing::warn!(error = %e, "events left in the outbox; they go out on the next start");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

type HttpResponse = Response<Full<Bytes>>;

fn from_core(resp: Response<String>) -> HttpResponse {
    resp.map(|b| Full::new(Bytes::from(b)))
}

fn from_bytes(resp: Response<Bytes>) -> HttpResponse {
    resp.map(Full::new)
}

/// Reads the body, stopping one byte past the limit so the handler can answer 413
/// without this process ever holding more.
async fn read_limited(body: Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = MAX_BODY_BYTES + 1 - out.len();
            out.extend_from_slice(&data[..data.len().min(room)]);
            if out.len() > MAX_BODY_BYTES {
                break;
            }
        }
    }
    Ok(out)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Tokens that verified, so that a client reusing its token (every client does) costs a
/// map lookup instead of base64, HMAC-SHA256 and a JSON parse on every request (about a
/// sixth of an L1-hit resolve's CPU). Keyed by the whole token text, so only the exact
/// bytes that verified can hit; `exp` and `nbf` are checked again on every use, and
/// failures are never kept, so the cache changes the cost of an answer, never the answer.
/// One per server (one secret). Bounded: past [`VerifiedTokens::MAX`] tokens it starts over.
#[derive(Default)]
struct VerifiedTokens {
    // A std RwLock: held for one map operation, never across an await.
    map: std::sync::RwLock<HashMap<String, Arc<Verified>>>,
}

/// The caller a verified token names, and the token's time bounds.
struct Verified {
    /// What the authorizer's claims make ([`Principal::from_claims`]), made once.
    principal: Result<Arc<Principal>, Error>,
    exp: i64,
    nbf: Option<i64>,
}

impl Verified {
    /// The same time checks as [`jwt::verify`], with the same leeway.
    fn check_time(&self, now: i64) -> Result<(), Error> {
        if now > self.exp.saturating_add(jwt::LEEWAY_SECS) {
            return Err(Error::Unauthorized("token expired".into()));
        }
        if let Some(nbf) = self.nbf
            && now.saturating_add(jwt::LEEWAY_SECS) < nbf
        {
            return Err(Error::Unauthorized("token not yet valid".into()));
        }
        Ok(())
    }
}

impl VerifiedTokens {
    /// Distinct tokens kept before the cache starts over.
    const MAX: usize = 10_000;

    fn verify(&self, secret: &[u8], token: &str, now: i64) -> Result<Arc<Verified>, Error> {
        let hit = self
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(v) = hit {
            v.check_time(now)?;
            return Ok(v);
        }
        let claims = jwt::verify(secret, token, now)?;
        let strings: HashMap<String, String> =
            jwt::claims_as_strings(&claims).into_iter().collect();
        let verified = Arc::new(Verified {
            exp: claims
                .get("exp")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(i64::MIN),
            nbf: claims.get("nbf").and_then(serde_json::Value::as_i64),
            principal: Principal::from_claims(|k| strings.get(k).cloned()).map(Arc::new),
        });
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }
}

/// The JWT authorizer: `Authorization: Bearer <token>`, HS256, `exp` checked; the
/// caller its claims name.
fn caller(
    app: &App,
    tokens: &VerifiedTokens,
    headers: &HeaderMap,
) -> Result<Arc<Principal>, Error> {
    let value = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Unauthorized("missing bearer token".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Unauthorized("authorization is not a bearer token".into()))?;
    let verified = tokens.verify(app.jwt_secret.expose().as_bytes(), token, now_secs())?;
    verified.principal.clone()
}

/// The body, read within [`crate::server::BODY_READ_TIMEOUT`] (a client that announces
/// a body and trickles or never sends it is answered 400, never holds a handler).
async fn read_body(body: Incoming) -> Result<Bytes, Error> {
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(crate::server::BODY_READ_TIMEOUT, read_limited(body)).await {
        Ok(Ok(b)) => Ok(Bytes::from(b)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "client body ended early");
            Err(Error::invalid("body", "could not be read"))
        }
        Err(_) => Err(Error::invalid(
            "body",
            format!(
                "not received within {} s",
                crate::server::BODY_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn handle(
    app: Arc<App>,
    tokens: Arc<VerifiedTokens>,
    req: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    if req.uri().path() == crate::metrics::PATH {
        let cid = api::correlation_id(
            req.headers()
                .get(api::CORRELATION_HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        return Ok(from_core(crate::metrics::respond(req.method(), &cid)));
    }
    let resp = dispatch(&app, &tokens, req).await;
    tracing::debug!(status = resp.status().as_u16(), "request");
    Ok(from_bytes(resp))
}

/// The one request path: admission, then [`front::serve`] with the function's throttle
/// and handler.
async fn dispatch(app: &App, tokens: &VerifiedTokens, req: Request<Incoming>) -> Response<Bytes> {
    let (parts, body) = req.into_parts();
    let pending = match call::begin(&parts.method, parts.uri, parts.headers)
        .and_then(|p| p.authorize(|h| caller(app, tokens, h)))
    {
        Ok(p) => p,
        Err(refused) => return front::refuse(refused, std::time::Instant::now()),
    };
    let function = pending.op().function();
    // Only the management API is timed here (tm_write_latency_seconds); resolve times
    // itself, and a clock read is a visible share of an L1 hit.
    let started = (function == Function::Write).then(std::time::Instant::now);
    let admitted: Result<_, Refused> = match read_body(body).await {
        Ok(bytes) => pending.finish(bytes, None),
        Err(e) => Err(pending.refused(e)),
    };
    match function {
        Function::Write => {
            front::serve(admitted, app.write_throttle.as_ref(), started, |c| {
                app.write.serve(c)
            })
            .await
        }
        Function::Resolve | Function::Health => {
            front::serve(admitted, app.resolve_throttle.as_ref(), started, |c| {
                app.resolve.serve(c)
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(secret: &[u8], exp: i64) -> String {
        let claims = serde_json::json!({"sub": "u", "scope": "routes:resolve", "tm_tenants": "acme", "exp": exp});
        jwt::mint(secret, claims.as_object().unwrap())
    }

    #[test]
    fn a_remembered_token_is_still_checked_for_expiry_and_nothing_else_hits() {
        let tokens = VerifiedTokens::default();
        let t = token(b"s", 1_000);
        // GIVEN a token that verified once
        let sub = |v: Arc<Verified>| v.principal.as_ref().unwrap().sub.clone();
        assert_eq!(sub(tokens.verify(b"s", &t, 900).unwrap()), "u");
        // THEN it verifies again from the cache, and expires on time all the same
        assert_eq!(sub(tokens.verify(b"s", &t, 1_000).unwrap()), "u");
        assert!(matches!(
            tokens.verify(b"s", &t, 1_000 + jwt::LEEWAY_SECS + 1),
            Err(Error::Unauthorized(_))
        ));
        // AND a token differing in one byte, or signed with another secret, is checked in full
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert!(tokens.verify(b"s", &forged, 900).is_err());
        let other = token(b"other", 1_000);
        assert!(tokens.verify(b"s", &other, 900).is_err());
        // AND failures are not remembered
        assert!(tokens.verify(b"s", &other, 900).is_err());
    }
}
