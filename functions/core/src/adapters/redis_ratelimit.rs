//! The rate limiter's fleet ledger on the shared Redis: the [`UsageLedger`] that keeps
//! every instance's [`TokenBuckets`](super::token_buckets::TokenBuckets) in step.
//!
//! One hash per function (class) at `<prefix>usage:{<class>}` holds, per tenant, the
//! number of requests the whole fleet has received. An exchange is one script call that
//! adds this instance's counts and reads the totals back, for every tenant the instance
//! served recently: one command per function and exchange period, whatever the request
//! rate, and none on a request's path. The hash expires after an hour without any
//! exchange (an idle deployment costs nothing): each instance renews that once a minute,
//! not on every exchange, so an exchange costs Redis one script and one `HINCRBY` per
//! tenant. A tenant's field stays while the hash lives, a few dozen bytes per tenant.
//! Only validated tenant names reach this module.

use super::redis_cache::RedisCache;
use crate::ports::UsageLedger;
use crate::{Error, Result};
use async_trait::async_trait;
use redis::Script;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an unused ledger hash lives.
const LEDGER_TTL: Duration = Duration::from_secs(3600);

/// How often an instance renews the ledger's time to live.
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// KEYS[1] the class's hash; ARGV[1] its time to live in ms (0: leave it), then tenant,
/// count pairs. Returns the totals after the additions, in order.
const LUA_EXCHANGE: &str = r#"
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[1] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return out
"#;

/// When this process last renewed each ledger key's time to live (a std Mutex: one map
/// operation per exchange, never held across an await).
fn renewed() -> &'static Mutex<HashMap<String, Instant>> {
    static RENEWED: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    RENEWED.get_or_init(Mutex::default)
}

/// Whether this exchange should renew `key`'s time to live (and note that it will).
fn renew_due(key: &str) -> bool {
    let now = Instant::now();
    let mut map = renewed().lock().unwrap_or_else(|p| p.into_inner());
    match map.get(key) {
        Some(at) if now.duration_since(*at) < RENEW_EVERY => false,
        _ => {
            map.insert(key.to_owned(), now);
            true
        }
    }
}

fn script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(LUA_EXCHANGE))
}

/// The class's ledger key: the class as the hash tag, so the script touches one slot.
pub fn ledger_key(prefix: &str, class: &str) -> String {
    format!("{prefix}usage:{{{class}}}")
}

#[async_trait]
impl UsageLedger for RedisCache {
    async fn exchange(&self, class: &str, deltas: &[(String, u64)]) -> Result<Vec<u64>> {
        if class.contains(['{', '}']) {
            return Err(Error::Internal(format!("rate limit class {class:?}")));
        }
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let key = ledger_key(self.prefix(), class);
        let mut args = Vec::with_capacity(1 + deltas.len() * 2);
        let renew = renew_due(&key);
        args.push(if renew {
            LEDGER_TTL.as_millis().to_string()
        } else {
            "0".to_owned()
        });
        for (tenant, n) in deltas {
            args.push(tenant.clone());
            args.push(n.to_string());
        }
        let totals: Vec<i64> = match self.invoke(script(), &[&key], &args).await {
            Ok(t) => t,
            Err(e) => {
                // Renew on the next exchange instead.
                if renew {
                    renewed()
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                }
                return Err(e);
            }
        };
        Ok(totals.into_iter().map(|t| t.max(0) as u64).collect())
    }
}
