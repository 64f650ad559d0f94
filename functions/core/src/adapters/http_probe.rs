//! The production [`HttpProbe`]: one HTTP/1.1 GET over hyper-util's client, TLS by rustls
//! (aws-lc-rs, the system's root certificates). Each probe opens its own connection (no
//! pooling), so a refused or dead endpoint shows as such instead of hiding behind a
//! connection opened while it was alive. The body is never read.

use crate::domain::health::ProbeResult;
use crate::domain::health_check::StatusRange;
use crate::ports::HttpProbe;
use crate::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The `User-Agent` of every probe.
pub const USER_AGENT: &str = concat!("traffic-manager-prober/", env!("CARGO_PKG_VERSION"));

/// GETs over HTTP or HTTPS.
pub struct HyperProbe {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl HyperProbe {
    /// A client trusting the system's root certificates. Fails when they cannot be read.
    pub fn new() -> Result<Self> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| Error::Internal(format!("prober TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https);
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpProbe for HyperProbe {
    async fn probe(&self, url: &str, timeout: Duration, expected: StatusRange) -> ProbeResult {
        let req = match http::Request::get(url)
            .header(http::header::USER_AGENT, USER_AGENT)
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => return ProbeResult::Down(format!("bad probe URL: {e}")),
        };
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => ProbeResult::Down(format!("timed out after {} ms", timeout.as_millis())),
            Ok(Err(e)) => ProbeResult::Down(format!("request failed: {}", chain(&e))),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                if expected.accepts(status) {
                    ProbeResult::Up
                } else {
                    ProbeResult::Down(format!("status {status}"))
                }
            }
        }
    }
}

/// The error and its sources, so "connection refused" is not hidden under "client error".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
