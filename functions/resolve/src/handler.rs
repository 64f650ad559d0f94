//! An admitted [`Call`] ↔ `Resolver`, and the health endpoints. Both transports end
//! here: the Lambda through [`tm_http::lambda`], tm-local through its server; neither
//! checks anything this handler relies on twice.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tm_core::domain::names::ServiceKey;
use tm_core::domain::select::Selector;
use tm_core::ports::Probe;
use tm_core::services::resolve::{self, Resolver};
use tm_core::{Error, Result};
use tm_http::api::{self, Op, RouteParams};
use tm_http::call::Call;
use tracing::Instrument;

/// What resolve reads of a request: the path's names and selector, the sticky key and
/// the client's ETag.
#[derive(Clone, Copy, Debug)]
pub struct ResolveCall<'a> {
    /// The path's names and selector.
    pub params: &'a RouteParams,
    /// The `key` query parameter.
    pub key: Option<&'a str>,
    /// The `If-None-Match` header.
    pub if_none_match: Option<&'a str>,
}

/// The resolve function's handler.
pub struct ResolveHandler {
    resolver: Resolver,
    probes: Vec<Arc<dyn Probe>>,
}

impl ResolveHandler {
    /// A handler over the resolver; `probes` are the backends `/readyz` asks.
    pub fn new(resolver: Resolver, probes: Vec<Arc<dyn Probe>>) -> Self {
        Self { resolver, probes }
    }

    /// Answers one admitted call; never fails (errors are responses).
    pub async fn serve(&self, call: Call) -> http::Response<Bytes> {
        // A debug span, not info: on the hot path an enabled span with a recorded field
        // costs 6-7 % of the CPU of an L1 hit (docs/benchmarks.md). Resolve's warnings
        // name the route instead; RUST_LOG=tm_resolve=debug brings the span back.
        let span = tracing::debug_span!("resolve", correlation_id = %call.correlation_id);
        let cid = call.correlation_id.as_str();
        let answered = async {
            match &call.op {
                Op::Resolve(p) => {
                    let key = call.query("key");
                    let req = ResolveCall {
                        params: p,
                        key: key.as_deref(),
                        if_none_match: call.header("if-none-match"),
                    };
                    self.resolve(req, cid).await
                }
                Op::Healthz => {
                    Ok(
                        api::json_response(StatusCode::OK, &json!({"status": "ok"}), cid)
                            .map(Bytes::from),
                    )
                }
                Op::Readyz => Ok(self.readiness(cid).await.map(Bytes::from)),
                _ => Err(Error::NotFound),
            }
        }
        .instrument(span)
        .await;
        answered.unwrap_or_else(|e| api::error_response(&e, cid).map(Bytes::from))
    }

    /// The Lambda transport without a throttle: an API Gateway v2 request in, the Lambda
    /// response out (handler tests and benches feed it real event JSON).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        tm_http::lambda::invoke(req, None, |call| self.serve(call)).await
    }

    /// Resolves an admitted request (authorised, body checked): 200 with the answer,
    /// 304 with no body when `If-None-Match` names the route's revision, or the error.
    pub async fn resolve(&self, call: ResolveCall<'_>, cid: &str) -> Result<http::Response<Bytes>> {
        let started = std::time::Instant::now();
        let p = call.params;
        let svc = ServiceKey::parse(&p.tenant, &p.service, &p.env)?;
        let selector = Selector::parse(&p.version)?;
        if let Some(k) = call.key {
            resolve::check_sticky_key(k)?;
        }
        let (resolved, source) = self
            .resolver
            .resolve_rendered(&svc, &p.version, &selector)
            .await?;
        let figures = tm_core::metrics::figures();
        // No candidate is 503 whatever the client holds: its copy names an endpoint that
        // is no longer available.
        if !resolved.has_candidate() {
            figures.resolved(source, started.elapsed());
            return Err(Error::NoAvailableEndpoint);
        }
        let not_modified = call
            .if_none_match
            .is_some_and(|tags| resolved.etag_matches(tags));
        let mut resp = if not_modified {
            let mut r = http::Response::new(Bytes::new());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let mut r = http::Response::new(resolved.body(call.key)?);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        };
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(cid) {
            h.insert(api::CORRELATION_HEADER, v);
        }
        h.insert(header::ETAG, resolved.etag().clone());
        h.insert(header::CACHE_CONTROL, resolved.cache_control().clone());
        h.insert("x-cache", HeaderValue::from_static(source.header()));
        if resolved.fail_open() {
            h.insert("x-health", HeaderValue::from_static("fail-open"));
        }
        figures.resolved(source, started.elapsed());
        Ok(resp)
    }

    async fn readiness(&self, cid: &str) -> Response<String> {
        let mut backends = Map::new();
        let mut ready = true;
        for p in &self.probes {
            let state =
                match tokio::time::timeout(std::time::Duration::from_secs(2), p.ping()).await {
                    Ok(Ok(())) => "up",
                    Ok(Err(e)) => {
                        tracing::warn!(backend = p.name(), error = %e, "readiness check failed");
                        "down"
                    }
                    Err(_) => "timeout",
                };
            ready &= state == "up";
            backends.insert(p.name().to_owned(), Value::from(state));
        }
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let body =
            json!({"status": if ready { "ready" } else { "not_ready" }, "backends": backends});
        api::json_response(status, &body, cid)
    }
}
