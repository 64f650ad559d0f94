//! Configuration (CONTRACT §9), parsed once per cold start. A bad value fails start-up
//! with a message naming the variable; secrets are wrapped so they never reach a log.

use std::fmt;
use std::time::Duration;

/// A value that must not be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How the Kafka client authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaAuth {
    /// Plaintext, no authentication (local brokers).
    None,
    /// SASL OAUTHBEARER signed with the function's IAM credentials (MSK).
    MskIam,
}

/// The per-tenant request rate limit of the resolve and write functions (and tm-local):
/// a token bucket per tenant and function (`adapters::token_buckets`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// `TM_RATE_LIMIT_RPS`: tokens added per second (sustained requests per second).
    pub rps: f64,
    /// `TM_RATE_LIMIT_BURST`: the bucket's size, default `max(1, ceil(rps))`.
    pub burst: u32,
}

/// Every setting, typed.
#[derive(Clone, Debug)]
pub struct Config {
    /// `TM_JWT_SECRET`: tm-local's HS256 secret.
    pub jwt_secret: Option<Secret>,
    /// `TM_CURSOR_SECRET`: signs pagination cursors in tm-local (falls back to a key
    /// derived from the JWT secret).
    pub cursor_secret: Option<Secret>,
    /// `TM_CURSOR_SECRET_ID`: the Secrets Manager secret whose versions sign cursors (the
    /// write function in AWS: read at run time and refreshed, [`crate::boot::cursor_keys`]).
    pub cursor_secret_id: Option<String>,
    /// `TM_TABLE_NAME`: use DynamoDB.
    pub table_name: Option<String>,
    /// `TM_REDIS_URL`: use Redis as the shared cache (may hold a password).
    pub redis_url: Option<Secret>,
    /// `TM_KAFKA_BROKERS`: publish events to Kafka.
    pub kafka_brokers: Option<String>,
    /// `TM_KAFKA_TOPIC`, default `route-events`.
    pub kafka_topic: String,
    /// `TM_KAFKA_AUTH`, default `none`.
    pub kafka_auth: KafkaAuth,
    /// `TM_L1_TTL_MS`, default 1000; 0 turns the in-process cache off.
    pub l1_ttl: Duration,
    /// `TM_REDIS_PREFIX`, default `tm:`: the shared cache's key prefix (lets several
    /// deployments or test runs share one Redis).
    pub redis_prefix: String,
    /// `TM_KAFKA_GROUP`, default `tm-local`: the consumer group tm-local's trigger joins.
    pub kafka_group: String,
    /// `TM_RATE_LIMIT_RPS` and `TM_RATE_LIMIT_BURST`: tm-local's per-tenant rate limit;
    /// `None` (the default, both unset) turns it off.
    pub rate_limit: Option<RateLimit>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let kafka_auth = match get("TM_KAFKA_AUTH").as_deref() {
            None | Some("none") => KafkaAuth::None,
            Some("msk-iam") => KafkaAuth::MskIam,
            Some(other) => {
                return Err(format!(
                    "TM_KAFKA_AUTH: '{other}' is not one of none, msk-iam"
                ));
            }
        };
        let l1_ttl = match get("TM_L1_TTL_MS") {
            None => Duration::from_millis(1000),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms <= 3_600_000 => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "TM_L1_TTL_MS: '{v}' is not a whole number of milliseconds (0-3600000)"
                    ));
                }
            },
        };
        let redis_url = get("TM_REDIS_URL");
        if let Some(u) = &redis_url
            && !(u.starts_with("redis://") || u.starts_with("rediss://"))
        {
            return Err("TM_REDIS_URL: must start with redis:// or rediss://".into());
        }
        let kafka_topic = get("TM_KAFKA_TOPIC").unwrap_or_else(|| "route-events".into());
        if kafka_topic.len() > 200
            || !kafka_topic
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return Err(format!(
                "TM_KAFKA_TOPIC: '{kafka_topic}' is not a valid Kafka topic name"
            ));
        }
        let rate_limit = rate_limit(get("TM_RATE_LIMIT_RPS"), get("TM_RATE_LIMIT_BURST"))?;
        Ok(Config {
            jwt_secret: get("TM_JWT_SECRET").map(Secret::new),
            cursor_secret: get("TM_CURSOR_SECRET").map(Secret::new),
            cursor_secret_id: get("TM_CURSOR_SECRET_ID"),
            table_name: get("TM_TABLE_NAME"),
            redis_url: redis_url.map(Secret::new),
            kafka_brokers: get("TM_KAFKA_BROKERS"),
            kafka_topic,
            kafka_auth,
            l1_ttl,
            redis_prefix: get("TM_REDIS_PREFIX").unwrap_or_else(|| "tm:".into()),
            kafka_group: get("TM_KAFKA_GROUP").unwrap_or_else(|| "tm-local".into()),
            rate_limit,
        })
    }

    /// The dead-letter topic: the event topic with `-dlq`.
    pub fn dlq_topic(&self) -> String {
        format!("{}-dlq", self.kafka_topic)
    }
}

/// Most requests per second or burst a limit may name: beyond it, turn the limit off.
const MAX_RATE: f64 = 1_000_000.0;

fn rate_limit(rps: Option<String>, burst: Option<String>) -> Result<Option<RateLimit>, String> {
    let Some(rps_text) = rps else {
        return match burst {
            None => Ok(None),
            Some(_) => Err("TM_RATE_LIMIT_BURST: needs TM_RATE_LIMIT_RPS to be set".into()),
        };
    };
    let rps = match rps_text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= MAX_RATE => r,
        _ => {
            return Err(format!(
                "TM_RATE_LIMIT_RPS: '{rps_text}' is not a number of requests per second above 0 (at most 1000000)"
            ));
        }
    };
    let burst = match burst {
        None => rps.ceil().max(1.0) as u32,
        Some(b) => match b.trim().parse::<u32>() {
            Ok(n) if n >= 1 && f64::from(n) <= MAX_RATE => n,
            _ => {
                return Err(format!(
                    "TM_RATE_LIMIT_BURST: '{b}' is not a whole number of requests from 1 to 1000000"
                ));
            }
        },
    };
    Ok(Some(RateLimit { rps, burst }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.kafka_topic, "route-events");
        assert_eq!(c.dlq_topic(), "route-events-dlq");
        assert_eq!(c.kafka_auth, KafkaAuth::None);
        assert_eq!(c.l1_ttl, Duration::from_millis(1000));
        assert!(c.table_name.is_none() && c.redis_url.is_none() && c.kafka_brokers.is_none());
        assert_eq!(c.rate_limit, None, "no rate limit unless asked for");
    }

    #[test]
    fn a_rate_limit_takes_a_rate_and_an_optional_burst() {
        let c = cfg(&[("TM_RATE_LIMIT_RPS", "2.5")]).unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit { rps: 2.5, burst: 3 }),
            "the burst defaults to one second's worth"
        );
        let c = cfg(&[("TM_RATE_LIMIT_RPS", "0.5")]).unwrap();
        assert_eq!(c.rate_limit.map(|r| r.burst), Some(1));
        let c = cfg(&[("TM_RATE_LIMIT_RPS", "100"), ("TM_RATE_LIMIT_BURST", "20")]).unwrap();
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                rps: 100.0,
                burst: 20
            })
        );
    }

    #[test]
    fn bad_rate_limits_name_their_variable() {
        for rps in ["0", "-1", "fast", "NaN", "inf", "1e7"] {
            let err = cfg(&[("TM_RATE_LIMIT_RPS", rps)]).unwrap_err();
            assert!(err.starts_with("TM_RATE_LIMIT_RPS"), "{rps}: {err}");
        }
        for burst in ["0", "-1", "1.5", "many", "2000000"] {
            let err =
                cfg(&[("TM_RATE_LIMIT_RPS", "10"), ("TM_RATE_LIMIT_BURST", burst)]).unwrap_err();
            assert!(err.starts_with("TM_RATE_LIMIT_BURST"), "{burst}: {err}");
        }
        let err = cfg(&[("TM_RATE_LIMIT_BURST", "5")]).unwrap_err();
        assert!(err.starts_with("TM_RATE_LIMIT_BURST"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(
            cfg(&[("TM_L1_TTL_MS", "fast")])
                .unwrap_err()
                .starts_with("TM_L1_TTL_MS")
        );
        assert!(
            cfg(&[("TM_KAFKA_AUTH", "sasl")])
                .unwrap_err()
                .starts_with("TM_KAFKA_AUTH")
        );
        assert!(
            cfg(&[("TM_REDIS_URL", "http://x")])
                .unwrap_err()
                .starts_with("TM_REDIS_URL")
        );
        assert!(
            cfg(&[("TM_KAFKA_TOPIC", "a b")])
                .unwrap_err()
                .starts_with("TM_KAFKA_TOPIC")
        );
    }

    #[test]
    fn secrets_do_not_print() {
        let c = cfg(&[
            ("TM_JWT_SECRET", "hunter2"),
            ("TM_REDIS_URL", "redis://:pw@h"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@"),
            "{shown}"
        );
    }
}
