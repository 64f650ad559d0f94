//! The resolve Lambda: reads configuration once per cold start, builds the clients
//! (DynamoDB, Redis) once, and hands requests to [`tm_resolve::ResolveHandler`].

use lambda_http::{Error, service_fn};
use std::sync::Arc;
use tm_core::config::Config;
use tm_core::metrics::emf::Emf;
use tm_core::ports::Probe;
use tm_core::services::resolve::Resolver;
use tm_resolve::ResolveHandler;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tm_core::logging::init();
    // Before anything records (tm_core::metrics): EMF lines on stdout.
    let emf = Emf::install_from_env()?.map(Arc::new);
    let config = Config::from_env()?;
    // Both guarded (tm_core::wiring): a deadline on every call and a circuit breaker per
    // backend, so a dead backend costs a request nothing after the first few failures.
    let store = tm_core::wiring::dynamodb_store(&config).await?;
    let cache = tm_core::wiring::redis_cache(&config).await?;
    let resolver = Resolver::new(store.clone(), cache.clone(), config.l1_ttl);
    let probes: Vec<Arc<dyn Probe>> = vec![store, cache];
    let handler = Arc::new(ResolveHandler::new(resolver, probes));
    lambda_http::run(service_fn(move |req| {
        let (handler, emf) = (handler.clone(), emf.clone());
        async move {
            let resp = handler.handle(req).await;
            if let Some(emf) = &emf {
                emf.after_invocation();
            }
            Ok::<_, Error>(resp)
        }
    }))
    .await
}
