//! Per-tenant rate limits for the resolve and write functions in AWS: before a request
//! reaches its handler, one token is taken from the tenant's bucket (shared by every
//! instance, [`TenantLimiter`]); an empty bucket answers the contract's 429 `throttled`
//! with `Retry-After`. API Gateway's stage throttle (`ApiThrottling*`) stays the outer
//! guard for the whole API; this one keeps one tenant from spending everyone's share.
//!
//! Only a request the handler would serve is charged, and only to a validated tenant
//! name: an unknown path, a missing or foreign token, a scope the token lacks or a name
//! that is not a tenant name is answered by the handler (404/401/403/400) uncharged, so
//! one tenant cannot spend another's budget and made-up names never make buckets.
//!
//! When the limiter cannot answer (Redis down or its breaker open), the request goes on
//! unthrottled and a warning is logged: a cache outage must not take the API down with it,
//! and API Gateway's throttle still bounds the total.
//!
//! Settings: `TM_RATE_LIMIT_RPS` (tokens per second per tenant, per function) and
//! `TM_RATE_LIMIT_BURST` (bucket size); both unset turns the limit off. (This module reads
//! API Gateway requests, so it moves with `apigw`.)

use crate::apigw;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use tm_core::Error;
use tm_core::config::RateLimit;
use tm_core::domain::names::TenantName;
use tm_core::ports::{Admission, TenantLimiter};

/// One function's throttle.
pub struct Throttle {
    limiter: Arc<dyn TenantLimiter>,
    class: &'static str,
    limit: RateLimit,
}

impl Throttle {
    /// Charges `limit` per tenant to buckets of `class` (the function's name) in `limiter`.
    pub fn new(limiter: Arc<dyn TenantLimiter>, class: &'static str, limit: RateLimit) -> Self {
        Self {
            limiter,
            class,
            limit,
        }
    }

    /// `Some(429)` when the request's tenant is over its rate; `None` to go on to the
    /// handler (which answers every request this does not charge).
    pub async fn check(&self, req: &Request) -> Option<Response<Body>> {
        let adm = apigw::admit(req).ok()?;
        let tenant = TenantName::parse(adm.op.tenant()?).ok()?;
        match self.limiter.admit(self.class, &tenant, self.limit).await {
            Ok(Admission::Allowed) => None,
            Ok(Admission::Throttled { retry_after_secs }) => Some(apigw::error_into_lambda(
                req,
                &Error::Throttled { retry_after_secs },
                &adm.correlation_id,
            )),
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "rate limiter unavailable; request not throttled");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Counts charges per tenant; refuses past `allow` per tenant.
    struct Counting {
        allow: usize,
        charged: Mutex<Vec<String>>,
        down: bool,
    }

    #[async_trait]
    impl TenantLimiter for Counting {
        async fn admit(
            &self,
            class: &str,
            tenant: &TenantName,
            _: RateLimit,
        ) -> tm_core::Result<Admission> {
            if self.down {
                return Err(Error::Unavailable("redis down".into()));
            }
            let mut c = self.charged.lock().unwrap();
            c.push(format!("{class}/{tenant}"));
            let n = c
                .iter()
                .filter(|t| t.ends_with(&format!("/{tenant}")))
                .count();
            Ok(if n <= self.allow {
                Admission::Allowed
            } else {
                Admission::Throttled {
                    retry_after_secs: 3,
                }
            })
        }
    }

    fn request(path: &str, tenants: &str, scope: &str) -> Request {
        let event = serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"x-correlation-id": "req-t"},
            "requestContext": {
                "accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d",
                "requestId": "r", "routeKey": "$default", "stage": "$default",
                "time": "05/Dec/2026:08:00:00 +0000", "timeEpoch": 0,
                "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "1.1.1.1", "userAgent": "t"},
                "authorizer": {"jwt": {"claims": {"sub": "u", "tm_tenants": tenants, "scope": scope},
                                        "scopes": null}}
            },
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    fn throttle(limiter: Arc<Counting>) -> Throttle {
        Throttle::new(limiter, "resolve", RateLimit { rps: 1.0, burst: 1 })
    }

    #[tokio::test]
    async fn a_tenant_over_its_rate_gets_the_contracts_429_with_retry_after() {
        let limiter = Arc::new(Counting {
            allow: 2,
            charged: Mutex::new(Vec::new()),
            down: false,
        });
        let t = throttle(limiter.clone());
        let req = || {
            request(
                "/v1/resolve/acme/checkout/prod/latest",
                "acme",
                "routes:resolve",
            )
        };
        assert!(t.check(&req()).await.is_none());
        assert!(t.check(&req()).await.is_none());
        let resp = t.check(&req()).await.expect("third is over");
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "3");
        let body: serde_json::Value = serde_json::from_slice(resp.body().as_ref()).unwrap();
        assert_eq!(body["error"]["code"], "throttled");
        assert_eq!(body["error"]["request_id"], "req-t");
        assert_eq!(limiter.charged.lock().unwrap()[0], "resolve/acme");
    }

    #[tokio::test]
    async fn only_requests_the_handler_would_serve_are_charged_and_only_to_valid_tenants() {
        let limiter = Arc::new(Counting {
            allow: 0,
            charged: Mutex::new(Vec::new()),
            down: false,
        });
        let t = throttle(limiter.clone());
        for req in [
            request(
                "/v1/resolve/acme/checkout/prod/latest",
                "other",
                "routes:resolve",
            ),
            request(
                "/v1/resolve/acme/checkout/prod/latest",
                "acme",
                "routes:write",
            ),
            request(
                "/v1/resolve/NOT_A_TENANT/checkout/prod/latest",
                "*",
                "routes:resolve",
            ),
            request("/healthz", "", ""),
            request("/nowhere", "acme", "routes:resolve"),
        ] {
            assert!(t.check(&req).await.is_none());
        }
        assert!(limiter.charged.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_limiter_that_cannot_answer_lets_requests_through() {
        let limiter = Arc::new(Counting {
            allow: 0,
            charged: Mutex::new(Vec::new()),
            down: true,
        });
        let t = throttle(limiter);
        let req = request(
            "/v1/resolve/acme/checkout/prod/latest",
            "acme",
            "routes:resolve",
        );
        assert!(t.check(&req).await.is_none());
    }
}
