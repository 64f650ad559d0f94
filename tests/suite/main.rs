//! The one integration and end-to-end test binary. Each module is one area; the real
//! servers it talks to are started by `scripts/start-services.sh`.

#[cfg(feature = "dynamodb")]
mod dynamodb;
mod e2e;
#[cfg(all(feature = "dynamodb", feature = "redis", feature = "kafka"))]
mod faults;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "redis")]
mod redis_cache;
#[cfg(feature = "redis")]
mod redis_ratelimit;
#[cfg(feature = "secretsmanager")]
mod secretsmanager;
#[cfg(all(feature = "dynamodb", feature = "redis", feature = "kafka"))]
mod template;
#[cfg(feature = "kafka")]
mod template_deploy;
