//! Per-tenant token buckets on the real shared Redis (127.0.0.1:6379), each test under
//! its own key prefix: a tenant gets its burst and then 429s with `Retry-After`; many
//! instances spending one bucket at once never spend more than it holds (one atomic
//! script); tenants and functions have buckets of their own; an idle bucket expires.

use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tm_core::adapters::redis_cache::RedisCache;
use tm_core::adapters::redis_ratelimit::bucket_key;
use tm_core::config::RateLimit;
use tm_core::domain::names::TenantName;
use tm_core::ports::{Admission, TenantLimiter};

/// A prefix of its own; its keys are deleted when it drops.
struct Prefix(String);

impl Prefix {
    fn new(test: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Self(format!("tmrl:{test}:{}:{nanos}:", std::process::id()))
    }

    async fn cache(&self) -> RedisCache {
        RedisCache::connect("redis://127.0.0.1:6379", &self.0)
            .await
            .expect("the shared Redis on 127.0.0.1:6379")
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = cli(&["--scan", "--pattern", &format!("{}*", self.0)]);
        for k in keys.lines().filter(|k| !k.is_empty()) {
            cli(&["DEL", k]);
        }
    }
}

fn cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", "6379", "--raw"])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

#[tokio::test]
async fn a_tenant_gets_its_burst_then_429_with_the_seconds_until_the_next_token() {
    let prefix = Prefix::new("burst");
    let cache = prefix.cache().await;
    let limit = RateLimit {
        rps: 0.25,
        burst: 3,
    };
    for _ in 0..3 {
        assert_eq!(
            cache
                .admit("resolve", &tenant("acme"), limit)
                .await
                .unwrap(),
            Admission::Allowed
        );
    }
    assert_eq!(
        cache
            .admit("resolve", &tenant("acme"), limit)
            .await
            .unwrap(),
        Admission::Throttled {
            retry_after_secs: 4
        },
        "a token every 4 s"
    );
}

#[tokio::test]
async fn concurrent_instances_never_spend_more_than_the_bucket_holds() {
    // GIVEN a bucket of 10 that refills one token a minute
    let prefix = Prefix::new("race");
    let caches: Vec<Arc<RedisCache>> = futures_join(4, || prefix.cache()).await;
    let limit = RateLimit {
        rps: 1.0 / 60.0,
        burst: 10,
    };
    // WHEN 4 connections (instances) take 100 tokens at once
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let c = caches[i % 4].clone();
            tokio::spawn(async move { c.admit("write", &tenant("acme"), limit).await.unwrap() })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        if t.await.unwrap() == Admission::Allowed {
            allowed += 1;
        }
    }
    // THEN exactly the 10 in the bucket were allowed
    assert_eq!(allowed, 10);
}

async fn futures_join<F, Fut>(n: usize, make: F) -> Vec<Arc<RedisCache>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = RedisCache>,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(make().await));
    }
    out
}

#[tokio::test]
async fn tenants_and_functions_have_buckets_of_their_own_which_expire_when_idle() {
    let prefix = Prefix::new("own");
    let cache = prefix.cache().await;
    let limit = RateLimit { rps: 1.0, burst: 1 };
    assert_eq!(
        cache
            .admit("resolve", &tenant("acme"), limit)
            .await
            .unwrap(),
        Admission::Allowed
    );
    assert!(matches!(
        cache
            .admit("resolve", &tenant("acme"), limit)
            .await
            .unwrap(),
        Admission::Throttled { .. }
    ));
    assert_eq!(
        cache
            .admit("resolve", &tenant("other"), limit)
            .await
            .unwrap(),
        Admission::Allowed,
        "acme's bucket is not other's"
    );
    assert_eq!(
        cache.admit("write", &tenant("acme"), limit).await.unwrap(),
        Admission::Allowed,
        "resolve's bucket is not write's"
    );
    // The key lives about as long as the bucket takes to fill again, plus a second.
    let key = bucket_key(&prefix.0, "resolve", &tenant("acme"));
    let pttl: i64 = cli(&["PTTL", &key]).parse().unwrap();
    assert!(pttl > 0 && pttl <= 2_000, "pttl {pttl}");
}
