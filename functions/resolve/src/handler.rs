//! Request ↔ `Resolver`, and the health endpoints.

use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tm_core::api::{self, Op};
use tm_core::apigw::{self, Admitted};
use tm_core::domain::names::ServiceKey;
use tm_core::domain::select::Selector;
use tm_core::metrics::CacheMetrics;
use tm_core::ports::Probe;
use tm_core::services::resolve::{self, Resolver};
use tm_core::{Error, Result};
use tracing::Instrument;

/// The resolve function's handler.
pub struct ResolveHandler {
    resolver: Resolver,
    probes: Vec<Arc<dyn Probe>>,
    metrics: CacheMetrics,
}

impl ResolveHandler {
    /// A handler over the resolver; `probes` are the backends `/readyz` asks.
    pub fn new(resolver: Resolver, probes: Vec<Arc<dyn Probe>>) -> Self {
        Self {
            resolver,
            probes,
            metrics: CacheMetrics::from_env(),
        }
    }

    /// Answers one request; never fails (errors are responses).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        // A debug span, not info: on the hot path an enabled span with a recorded field
        // costs 6-7 % of the CPU of an L1 hit (docs/benchmarks.md). Resolve's warnings
        // name the route instead; RUST_LOG=tm_resolve=debug brings the span back.
        let span = tracing::debug_span!("resolve", correlation_id = tracing::field::Empty);
        apigw::serve(&req, |adm| {
            span.record("correlation_id", adm.correlation_id.as_str());
            async {
                let cid = adm.correlation_id.clone();
                (self.dispatch(&req, adm).await, cid)
            }
            .instrument(span.clone())
        })
        .await
    }

    async fn dispatch(&self, req: &Request, adm: Admitted) -> Result<Response<String>> {
        let cid = adm.correlation_id.as_str();
        match &adm.op {
            Op::Resolve(p) => {
                let svc = ServiceKey::parse(&p.tenant, &p.service, &p.env)?;
                let selector = Selector::parse(&p.version)?;
                let key = apigw::query(req, "key");
                if let Some(k) = &key {
                    resolve::check_sticky_key(k)?;
                }
                let (route, source) = self.resolver.resolve(&svc, &p.version, &selector).await?;
                self.metrics.record(source);
                let answer = resolve::answer(&route, key.as_deref())?;
                let mut resp = api::json_response(StatusCode::OK, &answer, cid);
                api::set_etag(&mut resp, route.revision);
                let h = resp.headers_mut();
                if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", route.ttl_seconds)) {
                    h.insert(header::CACHE_CONTROL, v);
                }
                h.insert("x-cache", HeaderValue::from_static(source.header()));
                if answer.fail_open {
                    h.insert("x-health", HeaderValue::from_static("fail-open"));
                }
                Ok(resp)
            }
            Op::Healthz => Ok(api::json_response(
                StatusCode::OK,
                &json!({"status": "ok"}),
                cid,
            )),
            Op::Readyz => Ok(self.readiness(cid).await),
            _ => Err(Error::NotFound),
        }
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
