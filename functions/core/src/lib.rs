//! Traffic Manager core: everything the functions share, with no knowledge of Lambda or
//! HTTP framing (that is `tm-http`).
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
//! - [`config`]: `Config::from_env`, parsed once per cold start.
//! - [`cursor`]: opaque, tamper-evident pagination cursors.
//! - [`strict_json`]: JSON parsing that refuses duplicate object keys (request bodies,
//!   token headers and payloads).
//! - [`jwt`]: HS256 tokens, used by `tm-local` to play API Gateway's JWT authorizer.
//! - [`error`]: the one error enum.
//! - [`boot`]: the composition root: every process picks its backends from config here.
//! - [`logging`]: JSON log lines.
//! - [`metrics`]: the operational figures (resolve layers and latency, store reads,
//!   consumer batches, lag and dead letters, outbox backlog) through the `metrics`
//!   facade; CloudWatch EMF on Lambda (feature `emf`), Prometheus in tm-local.

pub mod adapters;
pub mod boot;
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

pub use error::{Error, Result};
