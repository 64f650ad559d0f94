//! End-to-end: `tm-local` started as a user would, driven over HTTP. Every scenario takes
//! the server's extra environment, so the same scenarios run on the embedded defaults
//! (`embedded.rs`) and on the real backends.

mod embedded;
mod health;
mod isolation;
mod limits;
mod logs;
mod metrics;
#[cfg(all(feature = "dynamodb", feature = "redis", feature = "kafka"))]
mod real;
pub(crate) mod scenarios;
mod slow_clients;
mod tmctl;
