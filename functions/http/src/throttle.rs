//! Per-tenant rate limits in front of the resolve and write handlers, on both
//! transports: an admitted request takes one token from its tenant's bucket in the
//! function's [`TenantLimiter`]; an empty bucket answers the contract's 429 `throttled`
//! with `Retry-After`. The limiter decides in memory and keeps in step with the other
//! instances in the background ([`tm_core::adapters::token_buckets`]), so the throttle
//! costs a request no backend call, and a Redis outage never delays one. API Gateway's
//! stage throttle (`ApiThrottling*`) stays the outer guard for the whole API; this one
//! keeps one tenant from spending everyone's share.
//!
//! Only an admitted request is charged (the route matched, the token allows the tenant
//! and the operation, the body passed its checks), and only to a valid tenant name: one
//! tenant cannot spend another's budget and made-up names never make buckets.
//!
//! Settings: `TM_RATE_LIMIT_RPS` (tokens per second per tenant, per function) and
//! `TM_RATE_LIMIT_BURST` (bucket size); both unset turns the limit off.

use crate::api;
use crate::call::Call;
use bytes::Bytes;
use http::Response;
use std::sync::Arc;
use tm_core::Error;
use tm_core::domain::names::is_dns_label;
use tm_core::ports::{Admission, TenantLimiter};

/// One function's throttle.
pub struct Throttle {
    limiter: Arc<dyn TenantLimiter>,
    class: &'static str,
}

impl Throttle {
    /// Charges each tenant's requests to its buckets of `class` (the function's name) in
    /// `limiter`.
    pub fn new(limiter: Arc<dyn TenantLimiter>, class: &'static str) -> Self {
        Self { limiter, class }
    }

    /// `Some(429)` when the call's tenant is over its rate; `None` to go on.
    pub fn check(&self, call: &Call) -> Option<Response<Bytes>> {
        call.principal.as_ref()?;
        let tenant = call.op.tenant().filter(|t| is_dns_label(t))?;
        match self.limiter.admit(self.class, tenant) {
            Admission::Allowed => None,
            Admission::Throttled { retry_after_secs } => Some(
                api::error_response(&Error::Throttled { retry_after_secs }, &call.correlation_id)
                    .map(Bytes::from),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Principal;
    use crate::call::begin;
    use http::{HeaderMap, Method};
    use std::sync::Mutex;

    /// Counts charges; refuses past `allow`.
    struct Counting {
        allow: usize,
        charged: Mutex<Vec<String>>,
    }

    impl TenantLimiter for Counting {
        fn admit(&self, class: &'static str, tenant: &str) -> Admission {
            let mut c = self.charged.lock().unwrap();
            c.push(format!("{class}/{tenant}"));
            if c.len() <= self.allow {
                Admission::Allowed
            } else {
                Admission::Throttled {
                    retry_after_secs: 3,
                }
            }
        }
    }

    fn call(path: &str, tenants: &'static str) -> Call {
        let caller = Arc::new(
            Principal::from_claims(move |k| match k {
                "sub" => Some("u".into()),
                "scope" => Some("routes:resolve".into()),
                "tm_tenants" => Some(tenants.into()),
                _ => None,
            })
            .unwrap(),
        );
        let mut h = HeaderMap::new();
        h.insert("x-correlation-id", "req-t".parse().unwrap());
        begin(&Method::GET, path.parse().unwrap(), h)
            .and_then(|p| p.authorize(|_| Ok(caller)))
            .and_then(|p| p.finish(Bytes::new(), None))
            .unwrap()
    }

    #[test]
    fn a_tenant_over_its_rate_gets_the_contracts_429_with_retry_after() {
        let limiter = Arc::new(Counting {
            allow: 2,
            charged: Mutex::new(Vec::new()),
        });
        let t = Throttle::new(limiter.clone(), "resolve");
        let c = call("/v1/resolve/acme/checkout/prod/latest", "acme");
        assert!(t.check(&c).is_none());
        assert!(t.check(&c).is_none());
        let resp = t.check(&c).expect("third is over");
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"]["code"], "throttled");
        assert_eq!(body["error"]["request_id"], "req-t");
        assert_eq!(limiter.charged.lock().unwrap()[0], "resolve/acme");
    }

    #[test]
    fn a_name_that_is_not_a_tenant_name_makes_no_bucket() {
        let limiter = Arc::new(Counting {
            allow: 0,
            charged: Mutex::new(Vec::new()),
        });
        let t = Throttle::new(limiter.clone(), "resolve");
        let c = call("/v1/resolve/NOT_A_TENANT/checkout/prod/latest", "*");
        assert!(t.check(&c).is_none(), "the handler answers 400");
        let health = begin(&Method::GET, "/healthz".parse().unwrap(), HeaderMap::new())
            .and_then(|p| p.finish(Bytes::new(), None))
            .unwrap();
        assert!(t.check(&health).is_none(), "health is never limited");
        assert!(limiter.charged.lock().unwrap().is_empty());
    }
}
