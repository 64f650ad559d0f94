//! Traffic Manager core: everything the functions share, with no knowledge of Lambda.
//!
//! Where things live:
//! - [`domain`]: validated names, the route document, version selection and endpoint
//!   choice (pure functions), events, timestamps.
//! - [`ports`]: one trait per capability (route store, history, outbox, shared cache,
//!   event publisher, health probe).
//! - [`services`]: the use cases: [`services::write`] (management API), [`services::resolve`]
//!   (L1 → shared cache → store), [`services::consume`] (apply events), [`services::relay`]
//!   (outbox → publisher).
//! - [`adapters`]: embedded, disk-backed implementations of the ports (they back `tm-local`),
//!   the production ones behind features, and [`adapters::guarded`] (deadline and circuit
//!   breaker around any of them).
//! - [`breaker`]: the per-instance circuit breaker.
//! - [`api`]: the HTTP contract: route table, error bodies, correlation ids, auth claims.
//! - [`apigw`]: reading API Gateway v2 requests (claims from the authorizer context).
//! - [`throttle`]: per-tenant rate limits in front of the resolve and write handlers
//!   (429 `throttled`), on a shared [`ports::TenantLimiter`].
//! - [`config`]: `Config::from_env`, parsed once per cold start.
//! - [`cursor`]: opaque, tamper-evident pagination cursors.
//! - [`strict_json`]: JSON parsing that refuses duplicate object keys (request bodies,
//!   token headers and payloads).
//! - [`jwt`]: HS256 tokens, used by `tm-local` to play API Gateway's JWT authorizer.
//! - [`error`]: the one error enum.
//! - [`wiring`]: the guarded production store and cache, built from config at start-up.
//! - [`logging`]: JSON log lines.
//! - [`metrics`]: the operational figures (resolve layers and latency, store reads,
//!   consumer batches, lag and dead letters, outbox backlog) through the `metrics`
//!   facade; CloudWatch EMF on Lambda (feature `emf`), Prometheus in tm-local.

pub mod adapters;
pub mod api;
pub mod apigw;
pub mod breaker;
pub mod config;
pub mod cursor;
pub mod domain;
pub mod error;
pub mod jwt;
pub mod logging;
pub mod metrics;
pub mod ports;
pub mod services;
pub mod singleflight;
pub mod strict_json;
pub mod throttle;
pub mod wiring;

pub use error::{Error, Result};
