//! API Gateway (HTTP API, payload v2) on the Lambda side: turns the request a function
//! receives into an admitted [`Call`] (the caller from the JWT authorizer's claims, never
//! from the token itself; the invocation's deadline from the Lambda context), and the
//! handler's answer back into the Lambda response.

use crate::api::Principal;
use crate::call::{self, Call, Refused};
use bytes::Bytes;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tm_core::Error;

/// Room left at the end of an invocation to send the answer: a handler still running
/// this close to the function's timeout is cut and answers 503 instead of being killed
/// with no answer at all.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(300);

/// The invocation's deadline, less [`ANSWER_MARGIN`], as a tokio instant; `None` outside
/// Lambda (a request built in a test carries no Lambda context).
fn deadline(ext: &http::Extensions) -> Option<tokio::time::Instant> {
    let ctx = ext.lambda_context_ref()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let left = Duration::from_millis(ctx.deadline.saturating_sub(now_ms));
    Some(tokio::time::Instant::now() + left.saturating_sub(ANSWER_MARGIN))
}

/// The caller, from the claims the JWT authorizer put in the request context (401 when
/// there are none or they name no `sub`).
fn caller(ext: &http::Extensions) -> Result<Arc<Principal>, Error> {
    let claims = match ext.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .and_then(|a| a.jwt.as_ref())
            .map(|j| &j.claims),
        _ => None,
    };
    Principal::from_claims(|k| claims.and_then(|c| c.get(k).cloned())).map(Arc::new)
}

/// Admits a Lambda request: the same steps as every transport ([`crate::call`]).
pub fn admit(req: Request) -> Result<Call, Refused> {
    let (parts, body) = req.into_parts();
    let deadline = deadline(&parts.extensions);
    let body = match body {
        Body::Empty => Bytes::new(),
        Body::Text(s) => Bytes::from(s),
        Body::Binary(v) => Bytes::from(v),
        _ => Bytes::new(),
    };
    call::begin(&parts.method, parts.uri, parts.headers)?
        .authorize(|_| caller(&parts.extensions))?
        .finish(body, deadline)
}

/// The handler's answer as the Lambda response: JSON goes back as text, so API Gateway
/// does not have to decode base64.
pub fn into_lambda(resp: Response<Bytes>) -> Response<Body> {
    resp.map(|b| {
        if b.is_empty() {
            return Body::Empty;
        }
        match String::from_utf8(Vec::from(b)) {
            Ok(s) => Body::Text(s),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    })
}
