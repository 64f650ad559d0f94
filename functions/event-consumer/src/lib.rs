//! The event consumer: the MSK trigger's handler.
//! - [`handler`]: decodes an MSK batch, applies each record through the core's `Consumer`,
//!   sends poison to the dead-letter port, and answers with the batch-failure report.
//! - `main.rs` (the Lambda binary) only wires configuration and clients.

pub mod handler;

pub use handler::{BatchItemFailure, BatchResponse, ConsumerHandler, ItemIdentifier};
