//! A small HTTP(S) client for the Traffic Manager API: hyper-util's pooled client over
//! hyper-rustls (native roots), a bearer token, JSON bodies, a deadline per request, and
//! contract error bodies turned into [`CtlError`]s.

use crate::error::{CtlError, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// The revision from `ETag: "<n>"`, when present.
    pub etag: Option<u64>,
    /// `X-Cache`, when present.
    pub x_cache: Option<String>,
    /// The body as JSON (`Null` when empty).
    pub json: Value,
}

/// A precondition on a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional.
    None,
    /// `If-Match: "<revision>"`.
    Revision(u64),
    /// `If-None-Match: *`: only when the route does not exist.
    Absent,
}

/// The API client: one base URL, one token.
#[derive(Clone)]
pub struct ApiClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// A client for `base` (`http://` or `https://`), sending `token` as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CtlError::Usage(format!(
                "the URL must start with http:// or https://, not {base:?}"
            )));
        }
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| {
                CtlError::Transport(format!("loading the system's root certificates: {e}"))
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(tls),
            base,
            token,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and returns the answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        precondition: Precondition,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{}", self.base, path))
            .header("user-agent", concat!("tmctl/", env!("CARGO_PKG_VERSION")));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        match precondition {
            Precondition::None => {}
            Precondition::Revision(r) => req = req.header("if-match", format!("\"{r}\"")),
            Precondition::Absent => req = req.header("if-none-match", "*"),
        }
        let bytes = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| CtlError::Usage(format!("cannot build the request for {path}: {e}")))?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| {
                CtlError::Transport(format!("{method} {path}: no answer within {TIMEOUT:?}"))
            })?
            .map_err(|e| CtlError::Transport(format!("{method} {}{path}: {e}", self.base)))?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let etag = header("etag").and_then(|e| e.trim_matches('"').parse().ok());
        let x_cache = header("x-cache");
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CtlError::Transport(format!("{method} {path}: reading the answer: {e}")))?
            .to_bytes();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                CtlError::Transport(format!("{method} {path}: answer {status} is not JSON: {e}"))
            })?
        };
        Ok(Reply {
            status,
            etag,
            x_cache,
            json,
        })
    }

    /// Sends one request; an error status becomes the matching [`CtlError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        precondition: Precondition,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let reply = self.send(method, path, precondition, body).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(error_of(&reply))
        }
    }
}

/// The [`CtlError`] for an error answer (contract §6 body).
pub fn error_of(reply: &Reply) -> CtlError {
    let err = &reply.json["error"];
    let code = err["code"].as_str().unwrap_or("unknown");
    let message = err["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    CtlError::from_answer(reply.status.as_u16(), code, &message)
}

/// Percent-encodes one path segment or query value (everything but the unreserved set).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_keys_are_percent_encoded() {
        assert_eq!(encode("2.3.1"), "2.3.1");
        assert_eq!(encode("^2"), "%5E2");
        assert_eq!(encode(">=1.2, <2"), "%3E%3D1.2%2C%20%3C2");
        assert_eq!(encode("ü"), "%C3%BC");
    }

    #[test]
    fn a_url_without_a_scheme_is_a_usage_error() {
        let e = ApiClient::new("127.0.0.1:8080", None)
            .err()
            .expect("rejected");
        assert_eq!(e.exit_code(), crate::error::code::USAGE);
    }
}
