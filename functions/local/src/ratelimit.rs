//! Per-tenant rate limits in front of the handlers: one token bucket per tenant
//! (`TM_RATE_LIMIT_RPS` tokens a second, at most `TM_RATE_LIMIT_BURST` saved up). A request
//! over the limit answers 429 `throttled` with `Retry-After`.
//!
//! The bucket charged is the tenant named in the path, and only once the name is a valid
//! tenant name and the token is known to allow that tenant and operation: a token for
//! another tenant (answered 403 by the handler) never spends a tenant's budget, so one
//! tenant cannot throttle another, and a path naming no valid tenant (answered 400) never
//! makes a bucket, so made-up names cannot grow the map. In AWS the same
//! job falls to API Gateway's throttling and usage plans; this is tm-local's stand-in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use tm_core::Error;
use tm_core::config::RateLimit;
use tm_core::domain::names::TenantName;
use tm_http::api::{Op, Principal};

/// Buckets kept before full (idle) ones are dropped: a full bucket is the same as none.
const PRUNE_AT: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The token buckets, one per tenant.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    // A std Mutex: the critical section is a map lookup and a few float operations, never
    // held across an await, and cheaper than an async lock.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter with the configured rate and burst.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            rate: limit.rps,
            burst: f64::from(limit.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Charges one request to the path's tenant when it is a valid tenant name and
    /// `claims` allow the operation; a request the handler will refuse (400, 403, or no
    /// tenant in the path) is let through uncharged. 429 when the tenant's bucket is empty.
    pub fn admit(&self, op: &Op, claims: &HashMap<String, String>) -> Result<(), Error> {
        let Some(tenant) = op.tenant() else {
            return Ok(());
        };
        if TenantName::parse(tenant).is_err() {
            return Ok(());
        }
        let allowed = Principal::from_claims(|k| claims.get(k).cloned())
            .and_then(|p| p.authorize(op))
            .is_ok();
        if !allowed {
            return Ok(());
        }
        self.take(tenant, Instant::now())
            .map_err(|retry_after_secs| Error::Throttled { retry_after_secs })
    }

    /// Takes one token from `tenant`'s bucket at `now`; `Err` holds the whole seconds
    /// until one is available again (at least 1).
    pub fn take(&self, tenant: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(tenant) {
            buckets.retain(|_, b| self.refilled(b, now) < self.burst);
        }
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = self.refilled(bucket, now);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err((wait.ceil() as u64).max(1))
        }
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.rate).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::time::Duration;
    use tm_http::api::match_route;

    fn limiter(rps: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit { rps, burst })
    }

    #[test]
    fn a_tenant_gets_its_burst_then_waits_for_the_refill() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take("acme", t0), Ok(()));
        }
        assert_eq!(l.take("acme", t0), Err(1), "empty: retry after a second");
        assert_eq!(
            l.take("acme", t0 + Duration::from_millis(499)),
            Err(1),
            "half a token is not a token"
        );
        assert_eq!(l.take("acme", t0 + Duration::from_millis(500)), Ok(()));
        for _ in 0..3 {
            assert_eq!(l.take("acme", t0 + Duration::from_secs(100)), Ok(()));
        }
        assert!(
            l.take("acme", t0 + Duration::from_secs(100)).is_err(),
            "an idle tenant saves up at most its burst"
        );
    }

    #[test]
    fn retry_after_is_the_whole_seconds_until_the_next_token() {
        let l = limiter(0.25, 1);
        let t0 = Instant::now();
        assert_eq!(l.take("acme", t0), Ok(()));
        assert_eq!(l.take("acme", t0), Err(4));
        assert_eq!(l.take("acme", t0 + Duration::from_secs(3)), Err(1));
    }

    #[test]
    fn tenants_have_their_own_buckets() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        assert_eq!(l.take("acme", t0), Ok(()));
        assert!(l.take("acme", t0).is_err());
        assert_eq!(l.take("other", t0), Ok(()), "acme's burst is not other's");
    }

    #[test]
    fn only_requests_the_token_allows_are_charged() {
        let l = limiter(1.0, 1);
        let claims = |tenants: &str, scope: &str| -> HashMap<String, String> {
            [("sub", "u"), ("tm_tenants", tenants), ("scope", scope)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let get = match_route(&Method::GET, "/v1/tenants/acme/routes").unwrap();
        let intruder = claims("other", "routes:read");
        let no_scope = claims("acme", "routes:resolve");
        for _ in 0..5 {
            assert_eq!(l.admit(&get, &intruder), Ok(()), "403 later, never charged");
            assert_eq!(l.admit(&get, &no_scope), Ok(()));
        }
        let owner = claims("acme", "routes:read");
        assert_eq!(l.admit(&get, &owner), Ok(()), "acme's bucket is still full");
        assert_eq!(
            l.admit(&get, &owner),
            Err(Error::Throttled {
                retry_after_secs: 1
            })
        );
        let health = match_route(&Method::GET, "/healthz").unwrap();
        assert_eq!(l.admit(&health, &owner), Ok(()), "health is never limited");
    }

    #[test]
    fn a_path_naming_no_valid_tenant_never_makes_a_bucket() {
        // GIVEN a token allowed every tenant
        let l = limiter(1.0, 1);
        let admin: HashMap<String, String> =
            [("sub", "u"), ("tm_tenants", "*"), ("scope", "routes:read")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        // WHEN it names a thousand made-up, invalid tenants
        for i in 0..1000 {
            let path = format!("/v1/tenants/_BAD%20{i}/routes");
            let op = match_route(&Method::GET, &path).unwrap();
            assert_eq!(l.admit(&op, &admin), Ok(()), "the handler answers 400");
        }
        // THEN no bucket was made for any of them
        assert_eq!(l.buckets.lock().unwrap().len(), 0);
        let valid = match_route(&Method::GET, "/v1/tenants/acme/routes").unwrap();
        assert_eq!(l.admit(&valid, &admin), Ok(()));
        assert_eq!(l.buckets.lock().unwrap().len(), 1);
    }

    #[test]
    fn idle_buckets_are_dropped_when_there_are_too_many() {
        let l = limiter(1000.0, 1);
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            assert_eq!(l.take(&format!("t{i}"), t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(l.take("newcomer", later), Ok(()));
        let kept = l.buckets.lock().unwrap().len();
        assert_eq!(kept, 1, "every refilled bucket was dropped");
    }
}
