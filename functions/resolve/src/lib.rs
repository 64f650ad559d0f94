//! The resolve function: `GET /v1/resolve/...` plus `/healthz` and `/readyz`.
//! - [`handler`]: maps an API Gateway v2 request to the core's `Resolver` and back.
//! - `main.rs` (the Lambda binary) only wires configuration and clients.
//! - [`ENV_VARS`], [`OPTIONAL_ENV_VARS`], [`IAM_ACTIONS`]: what a deployment gives the
//!   function; the test suite checks `infra/template.yaml` against them.

pub mod handler;

pub use handler::ResolveHandler;

/// Variables `main.rs` reads that a deployment must set (CONTRACT §9): the table and the
/// shared cache it cannot start without, and the L1 lifetime the deployment tunes.
pub const ENV_VARS: &[&str] = &["TM_TABLE_NAME", "TM_REDIS_URL", "TM_L1_TTL_MS"];

/// Variables it also reads that may stay unset: the log filter, the shared cache's key
/// prefix (default `tm:`) and the SDK's endpoint overrides (emulators only).
pub const OPTIONAL_ENV_VARS: &[&str] = &[
    "RUST_LOG",
    "TM_REDIS_PREFIX",
    "TM_RATE_LIMIT_RPS",
    "TM_RATE_LIMIT_BURST",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
];

/// The IAM actions the function's role needs: the union of these adapter sets. Reads
/// only; the Redis cache needs none (access is by network).
pub const IAM_ACTIONS: &[&[&str]] = &[tm_core::adapters::dynamodb::IAM_ACTIONS_READ];
