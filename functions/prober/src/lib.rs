//! The prober function (docs/health.md): on a schedule (every minute), probes the
//! endpoints of every route that has a `health_check` for most of a minute, each at its
//! route's interval, and records transitions (health state, audit entry and a
//! `route.health_changed` event in one transaction; the event is published right after,
//! or by the outbox relay).
//!
//! Why a minute-long run and not one probe per invocation: EventBridge schedules fire at
//! most once a minute, and intervals go down to 10 s; a warm execution environment also
//! keeps each endpoint's probe schedule in memory between runs.
//! - [`handler`]: one run: probe rounds within a time budget.
//! - [`ENV_VARS`], [`OPTIONAL_ENV_VARS`], [`IAM_ACTIONS`]: what a deployment gives the
//!   function; the test suite checks `infra/template.yaml` against them.

pub mod handler;

pub use handler::{ProberHandler, ProberReport};

/// Variables `main.rs` reads that a deployment must set (CONTRACT §9): the table, and the
/// Kafka cluster, topic and authentication it publishes health events to.
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
/// health half of the DynamoDB store, and the event publisher).
pub const IAM_ACTIONS: &[&[&str]] = &[
    tm_core::adapters::dynamodb::IAM_ACTIONS_PROBER,
    tm_core::adapters::kafka::PRODUCER_IAM_ACTIONS,
];
