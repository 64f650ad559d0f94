//! Traffic Manager's HTTP face, shared by the resolve and write Lambdas and tm-local.
//!
//! - [`api`]: the HTTP contract: route table, error bodies, correlation ids, auth claims,
//!   conditional headers.
//! - [`call`]: the transport-neutral admitted request ([`call::Call`]) and the admission
//!   steps every transport runs (404/405, 401/403, 413/415).
//! - [`front`]: the one request path after admission: throttle, handler, deadline.
//! - [`throttle`]: per-tenant rate limits (429 `throttled`) on a
//!   [`tm_core::ports::TenantLimiter`].
//! - [`apigw`]: API Gateway v2 requests in, Lambda responses out.
//! - [`lambda`]: the resolve and write Lambdas' invocation loop.
//!
//! The core (`tm-core`) knows nothing of HTTP framing or Lambda; this crate is where
//! `lambda_http` enters.

pub mod api;
pub mod apigw;
pub mod call;
pub mod front;
pub mod lambda;
pub mod throttle;
