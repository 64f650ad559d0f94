//! The write function: the management API (CONTRACT §3) over API Gateway's HTTP API.
//! - [`handler`]: maps an API Gateway v2 request to the core's `WriteService` and back.
//! - `main.rs` (the Lambda binary) only wires configuration and clients.
//! - [`ENV_VARS`], [`OPTIONAL_ENV_VARS`], [`IAM_ACTIONS`]: what a deployment gives the
//!   function; the test suite checks `infra/template.yaml` against them.

pub mod handler;

pub use handler::WriteHandler;

/// Variables `main.rs` reads that a deployment must set: the table, the shared cache, the
/// Secrets Manager secret that signs cursors and the Kafka cluster it cannot start without, and the
/// topic and authentication that must match the cluster's.
pub const ENV_VARS: &[&str] = &[
    "TM_TABLE_NAME",
    "TM_REDIS_URL",
    "TM_CURSOR_SECRET_ID",
    "TM_KAFKA_BROKERS",
    "TM_KAFKA_TOPIC",
    "TM_KAFKA_AUTH",
];

/// Variables it also reads that may stay unset: the log filter, the shared cache's key
/// prefix (default `tm:`) and the SDK's endpoint overrides (emulators only).
pub const OPTIONAL_ENV_VARS: &[&str] = &[
    "RUST_LOG",
    "TM_REDIS_PREFIX",
    "TM_RATE_LIMIT_RPS",
    "TM_RATE_LIMIT_BURST",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
];

/// The IAM actions the function's role needs: the union of these adapter sets (the
/// DynamoDB store's commit path and the event publisher; the Redis cache needs none).
pub const IAM_ACTIONS: &[&[&str]] = &[
    tm_core::adapters::dynamodb::IAM_ACTIONS_WRITE,
    tm_core::adapters::kafka::PRODUCER_IAM_ACTIONS,
    tm_core::adapters::secretsmanager::IAM_ACTIONS,
];
