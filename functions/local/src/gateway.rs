//! Plays API Gateway's HTTP API in front of the handlers: matches the route table (404 and
//! 405 come first), checks the bearer token like the JWT authorizer (401), applies the
//! per-tenant rate limit when configured (429, [`crate::ratelimit`]), reads at most
//! 64 KiB + 1 byte of body, and hands each function the `lambda_http` request Lambda
//! would deliver: API Gateway v2 request context with the token's claims, query map, raw
//! path. No JSON round trip on the way.
//!
//! Resolve, the hot path, skips building that request: the gateway runs the same
//! admission checks in the same order ([`admit_resolve`]) and calls the resolve handler's
//! transport-neutral [`ResolveHandler::resolve`](tm_resolve::ResolveHandler::resolve),
//! which the Lambda path also ends in; building the `lambda_http` request and reading it
//! back was a third of an L1 hit's CPU (docs/benchmarks.md).

use crate::app::App;
use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use lambda_http::aws_lambda_events::apigw::{
    ApiGatewayRequestAuthorizer, ApiGatewayRequestAuthorizerJwtDescription,
    ApiGatewayV2httpRequestContext,
};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tm_core::domain::route::MAX_BODY_BYTES;
use tm_core::{Error, jwt};
use tm_http::api::{self, Function, Op, Principal};
use tm_resolve::handler::ResolveCall;

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

fn error(err: &Error, cid: &str, path: &str) -> HttpResponse {
    from_core(api::error_response_at(err, cid, path))
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

/// A verified token's claims, as the authorizer hands them on, the caller they name, and
/// the token's time bounds.
struct Verified {
    claims: HashMap<String, String>,
    /// What the functions make of `claims` ([`Principal::from_claims`]), made once.
    principal: Result<Principal, Error>,
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
            principal: Principal::from_claims(|k| strings.get(k).cloned()),
            claims: strings,
        });
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }
}

/// The JWT authorizer: `Authorization: Bearer <token>`, HS256, `exp` checked.
fn authorize(
    app: &App,
    tokens: &VerifiedTokens,
    req: &Request<Incoming>,
) -> Result<Arc<Verified>, Error> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Unauthorized("missing bearer token".into()))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| Error::Unauthorized("authorization is not a bearer token".into()))?;
    tokens.verify(app.jwt_secret.expose().as_bytes(), token, now_secs())
}

/// Parses a query string the way API Gateway does: decoded, repeated keys joined by commas.
pub fn query_map(query: Option<&str>) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_query_part(k);
        let v = decode_query_part(v);
        map.entry(k)
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    map
}

/// One query parameter as [`query_map`] would give it (repeats joined by commas), without
/// decoding the others.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_query_part(k) != name {
            continue;
        }
        let v = decode_query_part(v);
        match &mut out {
            Some(old) => {
                old.push(',');
                old.push_str(&v);
            }
            None => out = Some(v),
        }
    }
    out
}

/// `+` as a space, then `%XX` escapes; the common plain text is copied once.
fn decode_query_part(s: &str) -> String {
    if s.contains('+') {
        api::percent_decode(&s.replace('+', " "))
    } else {
        api::percent_decode(s)
    }
}

async fn handle(
    app: Arc<App>,
    tokens: Arc<VerifiedTokens>,
    req: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let started = std::time::Instant::now();
    let cid = api::correlation_id(
        req.headers()
            .get(api::CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let path = req.uri().path().to_owned();
    let resp = dispatch(&app, &tokens, req, &cid, &path).await;
    tracing::debug!(
        correlation_id = %cid,
        path = %path,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(resp)
}

async fn dispatch(
    app: &App,
    tokens: &VerifiedTokens,
    req: Request<Incoming>,
    cid: &str,
    path: &str,
) -> HttpResponse {
    if path == crate::metrics::PATH {
        return from_core(crate::metrics::respond(req.method(), cid));
    }
    let op = match api::match_route(req.method(), path) {
        Ok(op) => op,
        Err(e) => return error(&e, cid, path),
    };
    let verified = if op.function() == Function::Health {
        None
    } else {
        match authorize(app, tokens, &req) {
            Ok(v) => Some(v),
            Err(e) => return error(&e, cid, path),
        }
    };
    if let (Some(limiter), Some(v)) = (&app.rate_limiter, &verified)
        && let Err(e) = limiter.admit(&op, &v.claims)
    {
        return error(&e, cid, path);
    }
    if let (Op::Resolve(params), Some(v)) = (&op, &verified) {
        return match admit_resolve(&op, v, req).await {
            Ok(req) => {
                let call = ResolveCall {
                    params,
                    key: req.key.as_deref(),
                    if_none_match: req.if_none_match.as_deref(),
                };
                match app.resolve.resolve(call, cid).await {
                    Ok(resp) => resp.map(Full::new),
                    Err(e) => error(&e, cid, path),
                }
            }
            Err(e) => error(&e, cid, path),
        };
    }
    let claims = verified.map(|v| v.claims.clone());
    let (mut parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(crate::server::BODY_READ_TIMEOUT, read_limited(body)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "client body ended early");
                return error(&Error::invalid("body", "could not be read"), cid, path);
            }
            Err(_) => {
                let why = format!(
                    "not received within {} s",
                    crate::server::BODY_READ_TIMEOUT.as_secs()
                );
                return error(&Error::invalid("body", why), cid, path);
            }
        };
    // The function sees the same correlation id this gateway answers with.
    if let Ok(v) = HeaderValue::from_str(cid) {
        parts.headers.insert(api::CORRELATION_HEADER, v);
    }
    let lambda_req = to_lambda_request(parts, bytes, claims, cid, path);
    let resp = match op.function() {
        Function::Write => app.write.handle(lambda_req).await,
        Function::Resolve | Function::Health => app.resolve.handle(lambda_req).await,
    };
    resp.map(|b| match b {
        Body::Text(s) => Full::new(Bytes::from(s)),
        Body::Binary(v) => Full::new(Bytes::from(v)),
        _ => Full::new(Bytes::new()),
    })
}

/// What resolve needs of an HTTP request, once admitted.
struct ResolveRequest {
    key: Option<String>,
    if_none_match: Option<String>,
}

/// The checks [`tm_http::apigw::admit`] runs for a Lambda request, in the same order, on
/// the HTTP request itself: the caller (401), scope and tenant (403), then the body (413;
/// resolve takes none, so any media type passes).
async fn admit_resolve(
    op: &Op,
    verified: &Verified,
    req: Request<Incoming>,
) -> Result<ResolveRequest, Error> {
    let principal = verified.principal.as_ref().map_err(Clone::clone)?;
    principal.authorize(op)?;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let if_none_match = header("if-none-match");
    let content_type = header("content-type");
    let key = query_param(req.uri().query(), "key");
    let body = req.into_body();
    let bytes = if hyper::body::Body::is_end_stream(&body) {
        Vec::new()
    } else {
        read_limited(body).await.map_err(|e| {
            tracing::debug!(error = %e, "client body ended early");
            Error::invalid("body", "could not be read")
        })?
    };
    api::check_body(op, content_type.as_deref(), &bytes)?;
    Ok(ResolveRequest { key, if_none_match })
}

fn to_lambda_request(
    parts: http::request::Parts,
    body: Vec<u8>,
    claims: Option<HashMap<String, String>>,
    cid: &str,
    path: &str,
) -> lambda_http::Request {
    let mut ctx = ApiGatewayV2httpRequestContext::default();
    ctx.route_key = Some("$default".into());
    ctx.stage = Some("$default".into());
    ctx.request_id = Some(cid.to_owned());
    ctx.time_epoch = tm_core::domain::timefmt::Timestamp::now().millis();
    ctx.http.method = parts.method.clone();
    ctx.http.path = Some(path.to_owned());
    ctx.http.protocol = Some("HTTP/1.1".into());
    if let Some(claims) = claims {
        let mut jwt = ApiGatewayRequestAuthorizerJwtDescription::default();
        jwt.claims = claims;
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.jwt = Some(jwt);
        ctx.authorizer = Some(authorizer);
    }
    let query = query_map(parts.uri.query());
    let body = if body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(body) {
            Ok(s) => Body::Text(s),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    let mut req = http::Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = parts.uri;
    *req.headers_mut() = parts.headers;
    req.with_request_context(RequestContext::ApiGatewayV2(ctx))
        .with_query_string_parameters(query)
        .with_raw_http_path(path)
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
        assert_eq!(tokens.verify(b"s", &t, 900).unwrap().claims["sub"], "u");
        // THEN it verifies again from the cache, and expires on time all the same
        assert_eq!(
            tokens.verify(b"s", &t, 1_000).unwrap().claims["tm_tenants"],
            "acme"
        );
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

    #[test]
    fn query_strings_decode_like_api_gateway() {
        let q = query_map(Some("key=a%20b&limit=5&x=1&x=2&plus=a+b&flag"));
        assert_eq!(q["key"], "a b");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["x"], "1,2");
        assert_eq!(q["plus"], "a b");
        assert_eq!(q["flag"], "");
        // One parameter alone reads the same as from the whole map
        let raw = Some("key=a%20b&limit=5&key=c+d&keyx=1");
        assert_eq!(query_param(raw, "key").as_deref(), Some("a b,c d"));
        assert_eq!(query_param(raw, "limit").as_deref(), Some("5"));
        assert_eq!(query_param(raw, "nope"), None);
        assert_eq!(query_param(None, "key"), None);
    }
}
