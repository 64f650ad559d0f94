//! Traffic Manager's HTTP face, shared by the resolve and write Lambdas and tm-local.
//!
//! - [`api`]: the HTTP contract: route table, error bodies, correlation ids, auth claims,
//!   conditional headers.
//! - [`apigw`]: reading API Gateway v2 requests (claims from the authorizer context) and
//!   answering them.
//! - [`throttle`]: per-tenant rate limits in front of the resolve and write handlers
//!   (429 `throttled`), on a shared [`tm_core::ports::TenantLimiter`].
//! - [`lambda`]: the resolve and write Lambdas' invocation loop (throttle, handler,
//!   after-invocation hook).
//!
//! The core (`tm-core`) knows nothing of HTTP framing or Lambda; this crate is where
//! `lambda_http` enters.

pub mod api;
pub mod apigw;
pub mod lambda;
pub mod throttle;
