//! The resolve Lambda: wires the backends ([`tm_core::boot`]) to
//! [`tm_resolve::ResolveHandler`] behind the per-tenant throttle.

use lambda_http::Error;
use std::sync::Arc;
use tm_core::boot::{self, Lambda, Place};
use tm_core::services::resolve::Resolver;
use tm_http::throttle::Throttle;
use tm_resolve::ResolveHandler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lambda = Lambda::start()?;
    let config = &lambda.config;
    let store = boot::store(config, Place::Lambda).await?;
    let cache = boot::cache(config, Place::Lambda).await?;
    let throttle = boot::limiter(config, cache.ledger.clone()).map(|l| Throttle::new(l, "resolve"));
    let resolver = Resolver::new(store.reads, cache.reads, config.l1_ttl);
    let handler = Arc::new(ResolveHandler::new(
        resolver,
        vec![store.store, cache.cache],
    ));
    let serve = move |call| {
        let handler = handler.clone();
        async move { handler.serve(call).await }
    };
    tm_http::lambda::run(throttle, serve, lambda.after_invocation()).await
}
