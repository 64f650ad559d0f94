//! The outbox relay function: on a schedule (every minute), publishes every committed
//! event still in the outbox, oldest first, and reports how many went out.
//!
//! Why a schedule and not the table's stream: the write function already publishes right
//! after each commit, so the relay only mops up after a Kafka outage or a write that timed
//! out; a one-minute schedule bounds that delay without a second consumer of every change,
//! keeps the outbox the single source of truth (no stream retention window to fall out
//! of), and works the same on DynamoDB Local and the embedded store.
//! - [`handler`]: one run: drain within a time budget.
//! - [`invocation`]: what an invocation asks for (the scheduled drain, or creating the
//!   event topics during a deployment).
//! - [`ENV_VARS`], [`OPTIONAL_ENV_VARS`], [`IAM_ACTIONS`]: what a deployment gives the
//!   function; the test suite checks `infra/template.yaml` against them.

pub mod handler;
pub mod invocation;

pub use handler::{RelayHandler, RelayReport};
pub use invocation::Invocation;

/// Variables `main.rs` reads that a deployment must set (CONTRACT §9): the table and the
/// Kafka cluster it cannot start without, and the topic (and its `-dlq`, which it creates)
/// and authentication that must match the cluster's.
pub const ENV_VARS: &[&str] = &[
    "TM_TABLE_NAME",
    "TM_KAFKA_BROKERS",
    "TM_KAFKA_TOPIC",
    "TM_KAFKA_AUTH",
];

/// Variables it also reads that may stay unset: the log filter and the SDK's endpoint
/// overrides (emulators only).
pub const OPTIONAL_ENV_VARS: &[&str] =
    &["RUST_LOG", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"];

/// The IAM actions the function's role needs: the union of these adapter sets (the
/// outbox half of the DynamoDB store, the event publisher, and `ensure_topics`).
pub const IAM_ACTIONS: &[&[&str]] = &[
    tm_core::adapters::dynamodb::IAM_ACTIONS_RELAY,
    tm_core::adapters::kafka::PRODUCER_IAM_ACTIONS,
    tm_core::adapters::kafka::ADMIN_IAM_ACTIONS,
];
