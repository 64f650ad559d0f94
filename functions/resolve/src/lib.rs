//! The resolve function: `GET /v1/resolve/...` plus `/healthz` and `/readyz`.
//! - [`handler`]: maps an API Gateway v2 request to the core's `Resolver` and back.
//! - `main.rs` (the Lambda binary) only wires configuration and clients.

pub mod handler;

pub use handler::ResolveHandler;
