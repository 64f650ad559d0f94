//! The write function: the management API (CONTRACT §3) over API Gateway's HTTP API.
//! - [`handler`]: maps an API Gateway v2 request to the core's `WriteService` and back.
//! - `main.rs` (the Lambda binary) only wires configuration and clients.

pub mod handler;

pub use handler::WriteHandler;
