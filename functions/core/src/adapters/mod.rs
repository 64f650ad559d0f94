//! Embedded adapters: real product features that back `tm-local` and the unit tests.
//! - [`embedded_store`]: routes, history, audit and outbox in one `redb` file (ACID, on disk).
//! - [`memory_cache`]: the shared cache inside the process.
//! - [`file_dead_letters`]: poison records as JSON lines in a file.
//! - [`token_buckets`]: per-tenant rate limits in the process, kept in step with a fleet
//!   through a usage ledger.
//!
//! Any adapter can be wrapped in [`guarded::Guarded`]: a deadline on every call and a
//! circuit breaker in front of the backend, behind the same ports.
//!
//! Production adapters, each behind a cargo feature:
//! - `aws_sdk` (features `dynamodb`, `secretsmanager`): the SDK configuration they share.
//! - `dynamodb`: routes, history, audit and outbox in one DynamoDB table.
//! - `redis_cache` (feature `redis`): the shared cache on Redis / ElastiCache.
//! - `redis_ratelimit` (feature `redis`): the rate limiter's fleet usage ledger on the same Redis.
//! - `kafka`: the event publisher and the dead-letter producer.
//! - `http_probe` (feature `prober`): the prober's HTTP(S) GET (hyper-util + rustls).

#[cfg(any(feature = "dynamodb", feature = "secretsmanager"))]
pub mod aws_sdk;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod embedded_store;
pub mod file_dead_letters;
pub mod guarded;
#[cfg(feature = "prober")]
pub mod http_probe;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory_cache;
#[cfg(feature = "redis")]
pub mod redis_cache;
#[cfg(feature = "redis")]
pub mod redis_ratelimit;
#[cfg(feature = "secretsmanager")]
pub mod secretsmanager;
pub mod token_buckets;
