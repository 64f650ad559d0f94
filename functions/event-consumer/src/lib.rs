//! The event consumer: the MSK trigger's handler.
//! - [`handler`]: decodes an MSK batch, applies each record through the core's `Consumer`,
//!   sends poison to the dead-letter port (once per record, however often its batch comes
//!   again: marks in Redis), and answers with the batch-failure report.
//! - `main.rs` (the Lambda binary) only wires configuration and clients.
//! - [`ENV_VARS`], [`OPTIONAL_ENV_VARS`], [`IAM_ACTIONS`]: what a deployment gives the
//!   function; the test suite checks `infra/template.yaml` against them.

pub mod handler;

pub use handler::{BatchItemFailure, BatchResponse, ConsumerHandler, ItemIdentifier};

/// Variables `main.rs` reads that a deployment must set (CONTRACT §9): the shared cache
/// and the Kafka cluster it cannot start without, the topic (its dead-letter topic is
/// `<topic>-dlq`) and the authentication that must match the cluster's.
pub const ENV_VARS: &[&str] = &[
    "TM_REDIS_URL",
    "TM_KAFKA_BROKERS",
    "TM_KAFKA_TOPIC",
    "TM_KAFKA_AUTH",
];

/// Variables it also reads that may stay unset: the log filter and the shared cache's key
/// prefix (default `tm:`).
pub const OPTIONAL_ENV_VARS: &[&str] = &["RUST_LOG", "TM_REDIS_PREFIX"];

/// The IAM actions the function's role needs: the union of these sets. Its own code only
/// produces dead letters; the MSK trigger polls with the same role (IAM auth), which needs
/// the consumer set plus the cluster's dynamic configuration, as the Lambda documentation
/// lists for an MSK event source. The Redis cache needs none.
pub const IAM_ACTIONS: &[&[&str]] = &[
    tm_core::adapters::kafka::PRODUCER_IAM_ACTIONS,
    tm_core::adapters::kafka::CONSUMER_IAM_ACTIONS,
    &["kafka-cluster:DescribeClusterDynamicConfiguration"],
];
