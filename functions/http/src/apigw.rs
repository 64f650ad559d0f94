//! API Gateway (HTTP API, payload v2) on the core's side: reading the request the way a
//! Lambda function receives it (claims from the JWT authorizer's context, never from the
//! token itself), and running the checks every function shares, in the contract's order.

use crate::api::{self, Op, Principal};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use tm_core::{Error, Result};

/// What every function needs from a request before its own work.
pub struct Admitted {
    /// The operation.
    pub op: Op,
    /// The caller; `None` for the health endpoints.
    pub principal: Option<Principal>,
    /// The correlation id to answer with and log.
    pub correlation_id: String,
}

/// The request's body as bytes.
pub fn body_bytes(req: &Request) -> &[u8] {
    req.body().as_ref()
}

/// A header as text.
pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A query parameter.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

fn claim(req: &Request, name: &str) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .and_then(|j| j.claims.get(name).cloned()),
        _ => None,
    }
}

/// 404/405, then 401, 403, then 413/415: the checks that come before the function's
/// own work. `Err` carries the correlation id to answer with.
pub fn admit(req: &Request) -> std::result::Result<Admitted, (Error, String)> {
    let correlation_id = api::correlation_id(header(req, api::CORRELATION_HEADER));
    let fail = |e: Error| (e, correlation_id.clone());
    let op = api::match_route(req.method(), req.uri().path()).map_err(fail)?;
    let principal = if op.tenant().is_some() {
        let p = Principal::from_claims(|k| claim(req, k)).map_err(fail)?;
        p.authorize(&op).map_err(fail)?;
        Some(p)
    } else {
        None
    };
    api::check_body(&op, header(req, "content-type"), body_bytes(req)).map_err(fail)?;
    Ok(Admitted {
        op,
        principal,
        correlation_id,
    })
}

/// Turns the core's response into the Lambda response type.
pub fn into_lambda(resp: Response<String>) -> Response<Body> {
    resp.map(|b| {
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Text(b)
        }
    })
}

/// The contract's error response for this request.
pub fn error_into_lambda(req: &Request, err: &Error, correlation_id: &str) -> Response<Body> {
    into_lambda(api::error_response_at(
        err,
        correlation_id,
        req.uri().path(),
    ))
}

/// Runs `work` after admission and maps every error to the contract's response.
pub async fn serve<F, Fut>(req: &Request, work: F) -> Response<Body>
where
    F: FnOnce(Admitted) -> Fut,
    Fut: std::future::Future<Output = (Result<Response<String>>, String)>,
{
    match admit(req) {
        Err((e, cid)) => error_into_lambda(req, &e, &cid),
        Ok(adm) => match work(adm).await {
            (Ok(resp), _) => into_lambda(resp),
            (Err(e), cid) => error_into_lambda(req, &e, &cid),
        },
    }
}
