//! tm-local's `GET /metrics`: the figures of [`tm_core::metrics`] in Prometheus text
//! format, rendered by `metrics-exporter-prometheus` from the same recording calls that
//! become EMF lines on Lambda. No token, like `/healthz`: it holds counts, never names.

use http::{HeaderValue, Method, Response, StatusCode, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tm_core::metrics as m;
use tm_http::api;

/// The path.
pub const PATH: &str = "/metrics";
/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often histograms are folded and idle series aged out.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's metrics recorder (once; later
/// calls change nothing) and starts its upkeep. Must run before the first recording,
/// inside the runtime.
pub fn install() -> anyhow::Result<()> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        (m::RESOLVE_LATENCY, m::LATENCY_BUCKETS),
        (m::WRITE_LATENCY, m::LATENCY_BUCKETS),
        (m::CONSUMER_LAG, m::LAG_BUCKETS),
        (m::CONSUMER_BATCH, m::BATCH_BUCKETS),
    ] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)?;
    }
    let handle = builder.install_recorder()?;
    m::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let _ = HANDLE.set(handle);
    // Register every figure now, so a scrape lists them all from the start (at zero).
    m::figures();
    Ok(())
}

/// The answer to a request on [`PATH`]: 200 with the text for GET, 405 otherwise, 503
/// when no recorder was installed.
pub fn respond(method: &Method, cid: &str) -> Response<String> {
    if method != Method::GET {
        let mut resp = api::error_response(&tm_core::Error::MethodNotAllowed, cid);
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let Some(handle) = HANDLE.get() else {
        return api::error_response(
            &tm_core::Error::Unavailable("metrics are not being recorded".into()),
            cid,
        );
    };
    let mut resp = api::base_response(StatusCode::OK, handle.render(), cid);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}
