//! The HTTP Lambdas' transport (resolve, write): each invocation is admitted by
//! [`apigw::admit`], then takes the one request path every transport shares
//! ([`front::serve`]: throttle, handler, deadline); a hook runs after every invocation
//! (the EMF flush policy).

use crate::apigw;
use crate::call::Call;
use crate::front;
use crate::throttle::Throttle;
use bytes::Bytes;
use lambda_http::{Body, Error, Request, Response, service_fn};
use std::future::Future;
use std::sync::Arc;

/// Answers one Lambda request through admission, `throttle` and `handle`.
pub async fn invoke<H, F>(req: Request, throttle: Option<&Throttle>, handle: H) -> Response<Body>
where
    H: FnOnce(Call) -> F,
    F: Future<Output = Response<Bytes>>,
{
    let started = std::time::Instant::now();
    let resp = front::serve(apigw::admit(req), throttle, Some(started), handle).await;
    apigw::into_lambda(resp)
}

/// Serves Lambda invocations until the runtime stops; `after` runs once per invocation.
pub async fn run<H, F, A>(throttle: Option<Throttle>, handle: H, after: A) -> Result<(), Error>
where
    H: Fn(Call) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Bytes>> + Send + 'static,
    A: Fn() + Send + Sync + 'static,
{
    let (throttle, handle, after) = (Arc::new(throttle), Arc::new(handle), Arc::new(after));
    lambda_http::run(service_fn(move |req: Request| {
        let (throttle, handle, after) = (throttle.clone(), handle.clone(), after.clone());
        async move {
            let resp = invoke(req, throttle.as_ref().as_ref(), |call| handle(call)).await;
            after();
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
