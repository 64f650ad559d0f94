//! The transport-neutral request: what both transports hand the handlers once a request
//! is admitted. The Lambda adapter ([`crate::apigw`]) builds it from an API Gateway v2
//! event, tm-local's server from a hyper request; both run the same admission steps, in
//! the contract's order:
//!
//! 1. [`begin`]: the route table (404, 405) and the correlation id;
//! 2. [`Pending::authorize`]: the caller (401), then scope and tenant (403); the
//!    transport only says where the caller comes from (the authorizer's claims in
//!    Lambda, the verified bearer token in tm-local);
//! 3. [`Pending::finish`]: the body (413, then 415).
//!
//! Each request is admitted once: the throttle and the handlers read the [`Call`] and
//! never check any of this again.

use crate::api::{self, Function, Op, Principal};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri};
use std::sync::Arc;
use tm_core::Error;

/// An admitted request.
#[derive(Debug)]
pub struct Call {
    /// The operation.
    pub op: Op,
    /// The caller; `None` for the health endpoints.
    pub principal: Option<Arc<Principal>>,
    /// The correlation id to answer with and log.
    pub correlation_id: String,
    /// The request's path and raw query.
    pub uri: Uri,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The body (at most `MAX_BODY_BYTES`).
    pub body: Bytes,
    /// When the transport gives up on the request (the Lambda invocation's deadline):
    /// the handler is cut there and the caller gets 503.
    pub deadline: Option<tokio::time::Instant>,
}

impl Call {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, decoded the way API Gateway decodes them (repeats joined by
    /// commas).
    pub fn query(&self, name: &str) -> Option<String> {
        query_param(self.uri.query(), name)
    }
}

/// A request refused before its handler, with what its answer needs.
#[derive(Debug)]
pub struct Refused {
    /// Why.
    pub error: Error,
    /// The correlation id to answer with.
    pub correlation_id: String,
    /// The request's path (a 405 names the methods it allows).
    pub path: String,
    /// The function the path belongs to, when the path matched one.
    pub function: Option<Function>,
}

impl Refused {
    /// The contract's error response.
    pub fn response(&self) -> Response<Bytes> {
        api::error_response_at(&self.error, &self.correlation_id, &self.path).map(Bytes::from)
    }
}

/// A request whose route matched, on its way through admission.
#[derive(Debug)]
pub struct Pending {
    op: Op,
    principal: Option<Arc<Principal>>,
    correlation_id: String,
    uri: Uri,
    headers: HeaderMap,
}

/// Step 1: matches the route table (404, 405) and settles the correlation id.
pub fn begin(method: &Method, uri: Uri, headers: HeaderMap) -> Result<Pending, Refused> {
    let correlation_id = api::correlation_id(
        headers
            .get(api::CORRELATION_HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    match api::match_route(method, uri.path()) {
        Ok(op) => Ok(Pending {
            op,
            principal: None,
            correlation_id,
            uri,
            headers,
        }),
        Err(error) => Err(Refused {
            error,
            correlation_id,
            path: uri.path().to_owned(),
            function: None,
        }),
    }
}

impl Pending {
    /// The matched operation.
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// The correlation id the request will be answered with.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn refuse(self, error: Error) -> Refused {
        Refused {
            error,
            function: Some(self.op.function()),
            correlation_id: self.correlation_id,
            path: self.uri.path().to_owned(),
        }
    }

    /// Step 2: who is calling (401) and whether they may (403). `caller` is asked only
    /// for operations that need a token (not the health endpoints).
    pub fn authorize(
        mut self,
        caller: impl FnOnce(&HeaderMap) -> Result<Arc<Principal>, Error>,
    ) -> Result<Self, Refused> {
        if self.op.function() == Function::Health {
            return Ok(self);
        }
        let principal = match caller(&self.headers) {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(e)),
        };
        if let Err(e) = principal.authorize(&self.op) {
            return Err(self.refuse(e));
        }
        self.principal = Some(principal);
        Ok(self)
    }

    /// Step 3: the body's size (413) and media type (415); the admitted call.
    pub fn finish(
        self,
        body: Bytes,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Call, Refused> {
        let content_type = self
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = api::check_body(&self.op, content_type, &body) {
            return Err(self.refuse(e));
        }
        Ok(Call {
            op: self.op,
            principal: self.principal,
            correlation_id: self.correlation_id,
            uri: self.uri,
            headers: self.headers,
            body,
            deadline,
        })
    }

    /// Refuses the request with `error` (a body that could not be read).
    pub fn refused(self, error: Error) -> Refused {
        self.refuse(error)
    }
}

/// One query parameter as API Gateway gives it: `+` and `%XX` decoded, repeated keys
/// joined by commas. Only the parameter asked for is decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scope: &'static str, tenants: &'static str) -> Arc<Principal> {
        Arc::new(
            Principal::from_claims(move |k| match k {
                "sub" => Some("u".into()),
                "scope" => Some(scope.into()),
                "tm_tenants" => Some(tenants.into()),
                _ => None,
            })
            .unwrap(),
        )
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn code(r: Result<Call, Refused>) -> u16 {
        match r {
            Ok(_) => 200,
            Err(r) => r.response().status().as_u16(),
        }
    }

    #[test]
    fn admission_runs_in_the_contracts_order() {
        let put = |path: &str, scope, ct, body: &[u8]| {
            begin(
                &Method::PUT,
                path.parse().unwrap(),
                headers(&[("content-type", ct)]),
            )
            .and_then(|p| p.authorize(|_| Ok(principal(scope, "acme"))))
            .and_then(|p| p.finish(Bytes::copy_from_slice(body), None))
        };
        let path = "/v1/tenants/acme/services/s/envs/e/versions/1";
        let big = vec![b' '; tm_core::domain::route::MAX_BODY_BYTES + 1];
        // 404 before 401 before 403 before 413 before 415
        assert_eq!(
            code(put("/nowhere", "routes:write", "text/plain", &big)),
            404
        );
        let no_caller = begin(&Method::PUT, path.parse().unwrap(), HeaderMap::new())
            .and_then(|p| p.authorize(|_| Err(Error::Unauthorized("missing".into()))));
        assert_eq!(
            code(no_caller.and_then(|p| p.finish(Bytes::new(), None))),
            401
        );
        assert_eq!(code(put(path, "routes:read", "text/plain", &big)), 403);
        assert_eq!(code(put(path, "routes:write", "text/plain", &big)), 413);
        assert_eq!(code(put(path, "routes:write", "text/plain", b"{}")), 415);
        assert_eq!(
            code(put(path, "routes:write", "application/json", b"{}")),
            200
        );
    }

    #[test]
    fn the_health_endpoints_never_ask_for_a_caller() {
        let call = begin(&Method::GET, "/healthz".parse().unwrap(), HeaderMap::new())
            .and_then(|p| p.authorize(|_| panic!("no token needed")))
            .and_then(|p| p.finish(Bytes::new(), None))
            .unwrap();
        assert_eq!(call.op, Op::Healthz);
        assert!(call.principal.is_none());
    }

    #[test]
    fn a_405_names_the_allowed_methods_and_keeps_the_correlation_id() {
        let r = begin(
            &Method::POST,
            "/v1/tenants/acme/routes".parse().unwrap(),
            headers(&[("x-correlation-id", "c-1")]),
        )
        .unwrap_err()
        .response();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET");
        assert_eq!(r.headers()["x-correlation-id"], "c-1");
    }

    #[test]
    fn query_strings_decode_like_api_gateway() {
        let raw = Some("key=a%20b&limit=5&key=c+d&keyx=1&flag");
        assert_eq!(query_param(raw, "key").as_deref(), Some("a b,c d"));
        assert_eq!(query_param(raw, "limit").as_deref(), Some("5"));
        assert_eq!(query_param(raw, "flag").as_deref(), Some(""));
        assert_eq!(query_param(raw, "nope"), None);
        assert_eq!(query_param(None, "key"), None);
    }
}
