//! Per-tenant token buckets in Redis: the [`TenantLimiter`] of the resolve and write
//! functions in AWS, shared by every instance, on the shared cache's connection.
//!
//! One hash per (class, tenant) at `<prefix>ratelimit:<class>:{<tenant>}` holding the
//! bucket's `tokens` and the time it was last refilled (`at`, milliseconds, Redis's own
//! clock: instances' clocks never meet). One Lua script refills the bucket for the time
//! since `at`, takes a token if there is one, and stores the result, as one atomic step,
//! so concurrent instances can never both spend the last token. The key expires once a
//! bucket would be full again (an idle tenant costs nothing), so a bucket never outlives
//! `burst / rate` seconds of silence. Only validated tenant names reach this module.

use super::redis_cache::RedisCache;
use crate::config::RateLimit;
use crate::domain::names::TenantName;
use crate::ports::{Admission, TenantLimiter};
use crate::{Error, Result};
use async_trait::async_trait;
use redis::Script;
use std::sync::OnceLock;

/// KEYS[1] the bucket; ARGV: rate (tokens per second), burst. Returns {allowed (0|1),
/// milliseconds until a token is back}.
const LUA_TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if not tokens or not at then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000)
  at = now
end
local allowed = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', at)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {allowed, wait_ms}
"#;

fn script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(LUA_TAKE))
}

/// The bucket's key: the tenant as the hash tag, so the script touches one slot.
pub fn bucket_key(prefix: &str, class: &str, tenant: &TenantName) -> String {
    format!("{prefix}ratelimit:{class}:{{{tenant}}}")
}

#[async_trait]
impl TenantLimiter for RedisCache {
    async fn admit(&self, class: &str, tenant: &TenantName, limit: RateLimit) -> Result<Admission> {
        if class.contains(['{', '}']) {
            return Err(Error::Internal(format!("rate limit class {class:?}")));
        }
        let key = bucket_key(self.prefix(), class, tenant);
        let (allowed, wait_ms): (i64, i64) = self
            .invoke(
                script(),
                &[&key],
                &[limit.rps.to_string(), limit.burst.max(1).to_string()],
            )
            .await?;
        Ok(if allowed == 1 {
            Admission::Allowed
        } else {
            Admission::Throttled {
                retry_after_secs: (wait_ms.max(1) as u64).div_ceil(1000),
            }
        })
    }
}
