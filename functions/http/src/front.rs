//! The one request path after admission, shared by the Lambda functions and tm-local:
//! a refused request gets its error; an admitted one passes the per-tenant throttle,
//! then its handler, cut at the call's deadline when the transport has one. Management
//! API answers are counted here (`tm_write_requests_total`), refusals included.

use crate::api::{self, Function};
use crate::call::{Call, Refused};
use crate::throttle::Throttle;
use bytes::Bytes;
use http::Response;
use std::future::Future;
use std::time::Instant;
use tm_core::Error;

/// Answers one request that went through admission (`admitted`), received at `started`
/// (`None` when the transport does not time it: tm-local reads no clock for a resolve,
/// whose handler times itself).
pub async fn serve<F, Fut>(
    admitted: Result<Call, Refused>,
    throttle: Option<&Throttle>,
    started: Option<Instant>,
    handle: F,
) -> Response<Bytes>
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Response<Bytes>>,
{
    let call = match admitted {
        Err(refused) => return refuse(refused, started.unwrap_or_else(Instant::now)),
        Ok(call) => call,
    };
    let function = call.op.function();
    let resp = answer(call, throttle, handle).await;
    if let Some(started) = started {
        count(function, &resp, started);
    }
    resp
}

/// The answer to a request refused during admission (counted like any other).
pub fn refuse(refused: Refused, started: Instant) -> Response<Bytes> {
    let resp = refused.response();
    if let Some(function) = refused.function {
        count(function, &resp, started);
    }
    resp
}

fn count(function: Function, resp: &Response<Bytes>, started: Instant) {
    if function == Function::Write {
        tm_core::metrics::figures().wrote(resp.status().as_u16(), started.elapsed());
    }
}

async fn answer<F, Fut>(call: Call, throttle: Option<&Throttle>, handle: F) -> Response<Bytes>
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Response<Bytes>>,
{
    if let Some(too_many) = throttle.and_then(|t| t.check(&call)) {
        return too_many;
    }
    let Some(deadline) = call.deadline else {
        return handle(call).await;
    };
    let cid = call.correlation_id.clone();
    match tokio::time::timeout_at(deadline, handle(call)).await {
        Ok(resp) => resp,
        Err(_) => {
            let e =
                Error::Unavailable("the request's deadline passed before it was answered".into());
            api::error_response(&e, &cid).map(Bytes::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Principal;
    use crate::call::begin;
    use http::{HeaderMap, Method};
    use std::sync::Arc;
    use std::time::Duration;

    fn call(deadline: Option<tokio::time::Instant>) -> Result<Call, Refused> {
        let caller = Arc::new(
            Principal::from_claims(|k| match k {
                "sub" => Some("u".into()),
                "scope" => Some("routes:read".into()),
                "tm_tenants" => Some("acme".into()),
                _ => None,
            })
            .unwrap(),
        );
        begin(
            &Method::GET,
            "/v1/tenants/acme/routes".parse().unwrap(),
            HeaderMap::new(),
        )
        .and_then(|p| p.authorize(|_| Ok(caller)))
        .and_then(|p| p.finish(Bytes::new(), deadline))
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_that_outlives_the_calls_deadline_is_cut_with_503() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(9);
        let started = tokio::time::Instant::now();
        let resp = serve(
            call(Some(deadline)),
            None,
            Some(Instant::now()),
            |_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Response::new(Bytes::new())
            },
        )
        .await;
        assert_eq!(resp.status(), 503);
        assert_eq!(started.elapsed(), Duration::from_secs(9));
    }

    #[tokio::test]
    async fn a_refused_request_never_reaches_its_handler() {
        let refused = begin(&Method::GET, "/nowhere".parse().unwrap(), HeaderMap::new());
        let resp = serve(refused.map(|_| unreachable!()), None, None, |_| async {
            panic!("handler called")
        })
        .await;
        assert_eq!(resp.status(), 404);
    }
}
