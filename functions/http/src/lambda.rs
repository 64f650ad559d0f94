//! The invocation loop of the HTTP Lambdas (resolve, write): each request passes the
//! per-tenant [`Throttle`] when one is configured, then the function's handler; a hook
//! runs after every invocation (the EMF flush policy).

use crate::throttle::Throttle;
use lambda_http::{Body, Error, Request, Response, service_fn};
use std::future::Future;
use std::sync::Arc;

/// Serves Lambda invocations until the runtime stops: a throttled request gets the
/// throttle's 429, any other goes to `handle`; `after` runs once per invocation.
pub async fn run<H, F, A>(throttle: Option<Arc<Throttle>>, handle: H, after: A) -> Result<(), Error>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
    A: Fn() + Send + Sync + 'static,
{
    let (handle, after) = (Arc::new(handle), Arc::new(after));
    lambda_http::run(service_fn(move |req: Request| {
        let (throttle, handle, after) = (throttle.clone(), handle.clone(), after.clone());
        async move {
            let too_many = match &throttle {
                Some(throttle) => throttle.check(&req).await,
                None => None,
            };
            let resp = match too_many {
                Some(too_many) => too_many,
                None => handle(req).await,
            };
            after();
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
