//! The outbox relay function: on a schedule (every minute), publishes every committed
//! event still in the outbox, oldest first, and reports how many went out.
//!
//! Why a schedule and not the table's stream: the write function already publishes right
//! after each commit, so the relay only mops up after a Kafka outage or a write that timed
//! out; a one-minute schedule bounds that delay without a second consumer of every change,
//! keeps the outbox the single source of truth (no stream retention window to fall out
//! of), and works the same on DynamoDB Local and the embedded store.
//! - [`handler`]: one run: drain within a time budget.

pub mod handler;

pub use handler::{RelayHandler, RelayReport};
