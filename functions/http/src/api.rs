//! The HTTP contract shared by every function and by `tm-local`'s gateway: the route
//! table (404/405), claims and scopes (401/403), request checks (413/415), headers and
//! the error body (CONTRACT §3–§6).

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde::Serialize;
use serde_json::json;
use tm_core::Error;
use tm_core::domain::route::MAX_BODY_BYTES;
pub use tm_core::services::write::IfMatch;

/// Header carrying the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Path parameters of a route-level operation (`version` holds the selector for resolve).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteParams {
    /// Tenant as sent.
    pub tenant: String,
    /// Service as sent.
    pub service: String,
    /// Environment as sent.
    pub env: String,
    /// Version (or selector) as sent, percent-decoded.
    pub version: String,
}

/// Every operation of the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /v1/resolve/{t}/{s}/{e}/{selector}`.
    Resolve(RouteParams),
    /// `GET /v1/tenants/{t}/routes`.
    ListRoutes(String),
    /// `GET /v1/tenants/{t}/audit`.
    Audit(String),
    /// `PUT .../versions/{v}`.
    PutRoute(RouteParams),
    /// `GET .../versions/{v}`.
    GetRoute(RouteParams),
    /// `DELETE .../versions/{v}`.
    DeleteRoute(RouteParams),
    /// `POST .../versions/{v}/activate`.
    Activate(RouteParams),
    /// `POST .../versions/{v}/deactivate`.
    Deactivate(RouteParams),
    /// `GET .../versions/{v}/history`.
    History(RouteParams),
    /// `GET .../versions/{v}/status`.
    Status(RouteParams),
}

/// Which function serves an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// Health endpoints: no token.
    Health,
    /// The resolve function.
    Resolve,
    /// The write (management) function.
    Write,
}

/// A scope of CONTRACT §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `routes:read`.
    Read,
    /// `routes:write`.
    Write,
    /// `routes:resolve`.
    Resolve,
}

impl Scope {
    /// The claim text.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "routes:read",
            Scope::Write => "routes:write",
            Scope::Resolve => "routes:resolve",
        }
    }
}

impl Op {
    /// The function that serves it.
    pub fn function(&self) -> Function {
        match self {
            Op::Healthz | Op::Readyz => Function::Health,
            Op::Resolve(_) => Function::Resolve,
            _ => Function::Write,
        }
    }

    /// The tenant named in the path, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Op::Healthz | Op::Readyz => None,
            Op::ListRoutes(t) | Op::Audit(t) => Some(t),
            Op::Resolve(p)
            | Op::PutRoute(p)
            | Op::GetRoute(p)
            | Op::DeleteRoute(p)
            | Op::Activate(p)
            | Op::Deactivate(p)
            | Op::History(p)
            | Op::Status(p) => Some(&p.tenant),
        }
    }

    /// Scopes any one of which allows the operation.
    pub fn scopes(&self) -> &'static [Scope] {
        match self {
            Op::Healthz | Op::Readyz => &[],
            Op::Resolve(_) => &[Scope::Resolve, Scope::Read],
            Op::PutRoute(_) | Op::DeleteRoute(_) | Op::Activate(_) | Op::Deactivate(_) => {
                &[Scope::Write]
            }
            _ => &[Scope::Read],
        }
    }

    /// Whether the operation reads a JSON body.
    pub fn takes_body(&self) -> bool {
        matches!(self, Op::PutRoute(_))
    }
}

/// Decodes `%XX` escapes; anything that is not a valid escape is kept as it is (and then
/// fails name validation). Bytes that are not UTF-8 become U+FFFD, which no name allows.
pub fn percent_decode(s: &str) -> String {
    percent_decoded(s).into_owned()
}

/// [`percent_decode`], borrowing `s` when it holds no escape (the common case: no copy).
pub fn percent_decoded(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Matches a method and raw path against the contract's route table: 404 for an unknown
/// path, 405 for a known path with another method.
pub fn match_route(method: &Method, path: &str) -> Result<Op, Error> {
    // At most 10 segments are ever matched; a longer path is 404 without decoding it.
    let mut segs: [std::borrow::Cow<'_, str>; 11] = Default::default();
    let mut n = 0;
    for part in path.split('/').skip(1) {
        if n == segs.len() {
            return Err(Error::NotFound);
        }
        segs[n] = percent_decoded(part);
        n += 1;
    }
    let mut refs: [&str; 11] = [""; 11];
    for (r, seg) in refs.iter_mut().zip(&segs[..n]) {
        *r = seg;
    }
    let s = &refs[..n];
    if !path.starts_with('/') || s.iter().any(|x| x.is_empty()) {
        return Err(Error::NotFound);
    }
    let p = |t: &str, sv: &str, e: &str, v: &str| RouteParams {
        tenant: t.to_owned(),
        service: sv.to_owned(),
        env: e.to_owned(),
        version: v.to_owned(),
    };
    let only = |m: Method, op: Op| {
        if *method == m {
            Ok(op)
        } else {
            Err(Error::MethodNotAllowed)
        }
    };
    match s {
        ["healthz"] => only(Method::GET, Op::Healthz),
        ["readyz"] => only(Method::GET, Op::Readyz),
        ["v1", "resolve", t, sv, e, sel] => only(Method::GET, Op::Resolve(p(t, sv, e, sel))),
        ["v1", "tenants", t, "routes"] => only(Method::GET, Op::ListRoutes((*t).to_owned())),
        ["v1", "tenants", t, "audit"] => only(Method::GET, Op::Audit((*t).to_owned())),
        ["v1", "tenants", t, "services", sv, "envs", e, "versions", v] => {
            let params = p(t, sv, e, v);
            match *method {
                Method::PUT => Ok(Op::PutRoute(params)),
                Method::GET => Ok(Op::GetRoute(params)),
                Method::DELETE => Ok(Op::DeleteRoute(params)),
                _ => Err(Error::MethodNotAllowed),
            }
        }
        [
            "v1",
            "tenants",
            t,
            "services",
            sv,
            "envs",
            e,
            "versions",
            v,
            action,
        ] => {
            let params = p(t, sv, e, v);
            match *action {
                "activate" => only(Method::POST, Op::Activate(params)),
                "deactivate" => only(Method::POST, Op::Deactivate(params)),
                "history" => only(Method::GET, Op::History(params)),
                "status" => only(Method::GET, Op::Status(params)),
                _ => Err(Error::NotFound),
            }
        }
        _ => Err(Error::NotFound),
    }
}

/// The `Allow` header value for a path that answered 405.
pub fn allowed_methods(path: &str) -> &'static str {
    for m in [Method::PUT, Method::POST, Method::DELETE] {
        if match_route(&m, path).is_ok() {
            return if m == Method::POST {
                "POST"
            } else {
                "GET, PUT, DELETE"
            };
        }
    }
    "GET"
}

/// Who is calling, from the authorizer's claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// `sub`.
    pub sub: String,
    scopes: Vec<String>,
    tenants: Vec<String>,
}

impl Principal {
    /// Builds the principal from claims (`get` looks one up by name). 401 when the claims
    /// are missing or have no `sub`.
    pub fn from_claims(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let sub = get("sub")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Unauthorized("token has no sub".into()))?;
        let words = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Ok(Principal {
            sub,
            scopes: words("scope"),
            tenants: words("tm_tenants"),
        })
    }

    /// 403 unless a required scope is held and the tenant is among the token's tenants.
    /// Runs before any lookup, so a 403 says nothing about what exists.
    pub fn authorize(&self, op: &Op) -> Result<(), Error> {
        let needed = op.scopes();
        if !needed.is_empty()
            && !needed
                .iter()
                .any(|s| self.scopes.iter().any(|h| h == s.as_str()))
        {
            return Err(Error::Forbidden);
        }
        match op.tenant() {
            Some(t) if !self.tenants.iter().any(|x| x == "*" || x == t) => Err(Error::Forbidden),
            _ => Ok(()),
        }
    }
}

/// 1–128 chars of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_correlation_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// The request's own correlation id when valid, else a new one.
pub fn correlation_id(sent: Option<&str>) -> String {
    match sent {
        Some(s) if is_valid_correlation_id(s) => s.to_owned(),
        _ => format!("req-{:016x}", fastrand::u64(..)),
    }
}

/// Checks size and media type, in the contract's order (413, then 415).
pub fn check_body(op: &Op, content_type: Option<&str>, body: &[u8]) -> Result<(), Error> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    if op.takes_body() {
        let essence = content_type.map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        if essence.as_deref() != Some("application/json") {
            return Err(Error::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// `limit`: 1–500, default 100.
pub fn parse_limit(v: Option<&str>) -> Result<usize, Error> {
    match v {
        None => Ok(100),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=500).contains(&n) && !s.starts_with('+') => Ok(n),
            _ => Err(Error::invalid("limit", "must be an integer from 1 to 500")),
        },
    }
}

/// Parses `If-Match`: `"7"` or `*`.
pub fn parse_if_match(v: Option<&str>) -> Result<Option<IfMatch>, Error> {
    let Some(v) = v else { return Ok(None) };
    let v = v.trim();
    if v == "*" {
        return Ok(Some(IfMatch::Any));
    }
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .and_then(|x| {
            x.parse::<u64>()
                .ok()
                .filter(|_| x.bytes().all(|c| c.is_ascii_digit()))
        })
        .map(|n| Some(IfMatch::Revision(n)))
        .ok_or_else(|| Error::invalid("If-Match", "must be a quoted revision such as \"7\", or *"))
}

/// Parses `If-None-Match`: only `*` is meaningful for a route.
pub fn parse_if_none_match(v: Option<&str>) -> Result<bool, Error> {
    match v.map(str::trim) {
        None => Ok(false),
        Some("*") => Ok(true),
        Some(_) => Err(Error::invalid("If-None-Match", "only * is supported")),
    }
}

/// The `(status, code)` of an error.
pub fn status_and_code(err: &Error) -> (StatusCode, &'static str) {
    match err {
        Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Error::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        Error::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        Error::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
        Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::UnsupportedMediaType => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        Error::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "throttled"),
        Error::NoAvailableEndpoint => (StatusCode::SERVICE_UNAVAILABLE, "no_available_endpoint"),
        Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::Conflict | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn public_message(err: &Error) -> String {
    match err {
        Error::InvalidRequest(m) => m.clone(),
        Error::Unauthorized(m) => format!("authentication failed: {m}"),
        Error::Forbidden => "the token does not allow this request".into(),
        Error::NotFound => "no such resource".into(),
        Error::MethodNotAllowed => "method not allowed on this path".into(),
        Error::PreconditionFailed(m) => m.clone(),
        Error::PayloadTooLarge => format!("the body is over {} bytes", MAX_BODY_BYTES),
        Error::UnsupportedMediaType => "the body must be application/json".into(),
        Error::Throttled { .. } => "too many requests; retry later".into(),
        Error::NoAvailableEndpoint => "the route has no available endpoint".into(),
        // Never internal detail: that goes to the log.
        Error::Unavailable(_) => "a backend is unavailable; retry later".into(),
        Error::Conflict | Error::Internal(_) => "internal error".into(),
    }
}

/// The contract's error response, logging faults with their detail.
pub fn error_response(err: &Error, request_id: &str) -> Response<String> {
    let (status, code) = status_and_code(err);
    match err {
        Error::Internal(_) | Error::Conflict => {
            tracing::error!(correlation_id = request_id, error = %err, "request failed")
        }
        Error::Unavailable(_) => {
            tracing::warn!(correlation_id = request_id, error = %err, "backend unavailable")
        }
        _ => tracing::debug!(correlation_id = request_id, error = %err, "request rejected"),
    }
    let body =
        json!({"error": {"code": code, "message": public_message(err), "request_id": request_id}});
    let mut resp = base_response(status, body.to_string(), request_id);
    if let Error::Throttled { retry_after_secs } = err {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
    }
    resp
}

/// The error response for a request to `path`: adds `Allow` to a 405 and
/// `WWW-Authenticate` to a 401.
pub fn error_response_at(err: &Error, request_id: &str, path: &str) -> Response<String> {
    let mut resp = error_response(err, request_id);
    match err {
        Error::MethodNotAllowed => {
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static(allowed_methods(path)),
            );
        }
        Error::Unauthorized(_) => {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    resp
}

/// A JSON response with the correlation id.
pub fn json_response(
    status: StatusCode,
    body: &impl Serialize,
    request_id: &str,
) -> Response<String> {
    match serde_json::to_string(body) {
        Ok(s) => base_response(status, s, request_id),
        Err(e) => error_response(
            &Error::Internal(format!("encode response: {e}")),
            request_id,
        ),
    }
}

/// A response with a body, content type and `X-Correlation-ID` (the id is valid header
/// text by construction).
pub fn base_response(status: StatusCode, body: String, request_id: &str) -> Response<String> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if status != StatusCode::NO_CONTENT {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(CORRELATION_HEADER, v);
    }
    resp
}

/// Sets `ETag: "<revision>"`.
pub fn set_etag(resp: &mut Response<String>, revision: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(m: Method, p: &str) -> Result<Op, Error> {
        match_route(&m, p)
    }

    #[test]
    fn every_contract_path_matches() {
        let base = "/v1/tenants/acme/services/checkout/envs/prod/versions/2.3.1";
        assert!(matches!(route(Method::PUT, base), Ok(Op::PutRoute(_))));
        assert!(matches!(route(Method::GET, base), Ok(Op::GetRoute(_))));
        assert!(matches!(
            route(Method::DELETE, base),
            Ok(Op::DeleteRoute(_))
        ));
        assert!(matches!(
            route(Method::POST, &format!("{base}/activate")),
            Ok(Op::Activate(_))
        ));
        assert!(matches!(
            route(Method::POST, &format!("{base}/deactivate")),
            Ok(Op::Deactivate(_))
        ));
        assert!(matches!(
            route(Method::GET, &format!("{base}/history")),
            Ok(Op::History(_))
        ));
        assert!(matches!(
            route(Method::GET, &format!("{base}/status")),
            Ok(Op::Status(_))
        ));
        assert!(matches!(
            route(Method::GET, "/v1/tenants/acme/routes"),
            Ok(Op::ListRoutes(_))
        ));
        assert!(matches!(
            route(Method::GET, "/v1/tenants/acme/audit"),
            Ok(Op::Audit(_))
        ));
        assert!(matches!(
            route(Method::GET, "/v1/resolve/acme/checkout/prod/latest"),
            Ok(Op::Resolve(_))
        ));
        assert!(matches!(route(Method::GET, "/healthz"), Ok(Op::Healthz)));
        assert!(matches!(route(Method::GET, "/readyz"), Ok(Op::Readyz)));
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        assert_eq!(route(Method::GET, "/v1/nothing"), Err(Error::NotFound));
        assert_eq!(
            route(Method::GET, "/v1/tenants/acme/routes/"),
            Err(Error::NotFound)
        );
        assert_eq!(
            route(Method::GET, "/v1/tenants//routes"),
            Err(Error::NotFound)
        );
        assert_eq!(
            route(Method::POST, "/v1/tenants/acme/routes"),
            Err(Error::MethodNotAllowed)
        );
        assert_eq!(
            route(Method::PATCH, "/v1/tenants/a/services/b/envs/c/versions/d"),
            Err(Error::MethodNotAllowed)
        );
        assert_eq!(
            route(
                Method::GET,
                "/v1/tenants/a/services/b/envs/c/versions/d/activate"
            ),
            Err(Error::MethodNotAllowed)
        );
        assert_eq!(
            route(Method::POST, "/healthz"),
            Err(Error::MethodNotAllowed)
        );
        assert_eq!(
            allowed_methods("/v1/tenants/a/services/b/envs/c/versions/d"),
            "GET, PUT, DELETE"
        );
        assert_eq!(
            allowed_methods("/v1/tenants/a/services/b/envs/c/versions/d/activate"),
            "POST"
        );
    }

    #[test]
    fn selectors_are_percent_decoded() {
        let Ok(Op::Resolve(p)) = route(Method::GET, "/v1/resolve/a/b/c/%3E%3D1.2%2C%20%3C2") else {
            panic!()
        };
        assert_eq!(p.version, ">=1.2, <2");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn scopes_and_tenants_are_enforced() {
        let claims = |scope: &'static str, tenants: &'static str| {
            Principal::from_claims(move |k| match k {
                "sub" => Some("u".into()),
                "scope" => Some(scope.into()),
                "tm_tenants" => Some(tenants.into()),
                _ => None,
            })
            .unwrap()
        };
        let get = route(Method::GET, "/v1/tenants/acme/routes").unwrap();
        let put = route(Method::PUT, "/v1/tenants/acme/services/s/envs/e/versions/1").unwrap();
        let res = route(Method::GET, "/v1/resolve/acme/s/e/latest").unwrap();
        assert!(claims("routes:read", "acme").authorize(&get).is_ok());
        assert_eq!(
            claims("routes:read", "acme").authorize(&put),
            Err(Error::Forbidden)
        );
        assert!(claims("routes:write", "*").authorize(&put).is_ok());
        assert_eq!(
            claims("routes:write routes:read", "other").authorize(&put),
            Err(Error::Forbidden)
        );
        assert!(claims("routes:read", "acme").authorize(&res).is_ok());
        assert!(claims("routes:resolve", "acme").authorize(&res).is_ok());
        assert_eq!(
            claims("routes:resolve", "acme").authorize(&get),
            Err(Error::Forbidden)
        );
        assert_eq!(
            claims("routes:read", "acme-x acm").authorize(&get),
            Err(Error::Forbidden)
        );
        assert!(Principal::from_claims(|_| None).is_err());
    }

    #[test]
    fn body_checks_run_in_contract_order() {
        let put = route(Method::PUT, "/v1/tenants/a/services/b/envs/c/versions/d").unwrap();
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            check_body(&put, Some("text/plain"), &big),
            Err(Error::PayloadTooLarge)
        );
        assert_eq!(
            check_body(&put, Some("text/plain"), b"{}"),
            Err(Error::UnsupportedMediaType)
        );
        assert_eq!(
            check_body(&put, None, b"{}"),
            Err(Error::UnsupportedMediaType)
        );
        assert!(check_body(&put, Some("application/json; charset=utf-8"), b"{}").is_ok());
        assert!(check_body(&put, Some("Application/JSON"), b"{}").is_ok());
    }

    #[test]
    fn headers_and_limits_parse_strictly() {
        assert_eq!(parse_limit(None).unwrap(), 100);
        assert_eq!(parse_limit(Some("500")).unwrap(), 500);
        for bad in ["0", "501", "-1", "x", "", "+5", "1.0"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            parse_if_match(Some("\"7\"")).unwrap(),
            Some(IfMatch::Revision(7))
        );
        assert_eq!(parse_if_match(Some("*")).unwrap(), Some(IfMatch::Any));
        for bad in ["7", "\"x\"", "\"-1\"", "\"+1\"", "W/\"1\""] {
            assert!(parse_if_match(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_if_none_match(Some("*")).unwrap());
        assert!(parse_if_none_match(Some("\"1\"")).is_err());
    }

    #[test]
    fn correlation_ids_are_kept_only_when_safe() {
        assert_eq!(correlation_id(Some("req-1.a_B")), "req-1.a_B");
        let fresh = correlation_id(Some("bad id\r\nX-Evil: 1"));
        assert!(fresh.starts_with("req-") && is_valid_correlation_id(&fresh));
        assert!(!is_valid_correlation_id(&"a".repeat(129)));
    }

    #[test]
    fn errors_have_the_contract_body_and_no_internal_detail() {
        let r = error_response(&Error::Internal("db password=x".into()), "rid");
        assert_eq!(r.status(), 500);
        let v: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(v["error"]["request_id"], "rid");
        assert!(!r.body().contains("password"));
        assert_eq!(r.headers()[CORRELATION_HEADER], "rid");
        let r = error_response(
            &Error::Throttled {
                retry_after_secs: 3,
            },
            "rid",
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
