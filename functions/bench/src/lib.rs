//! The benchmark drivers behind `scripts/bench.sh`, and the report it writes
//! (`docs/benchmarks.md`, `docs/benchmarks.json`). Every driver prints its measurements as
//! JSON lines ([`record::Record`]) on stdout and talks on stderr; the script collects the
//! lines and [`report`] turns them into the report.
//!
//! - [`record`]: one measurement line, and the machine description.
//! - [`stats`]: min / median / max, percentiles.
//! - [`zipf`]: a Zipf(s) sampler over ranks, and the expected number of distinct ranks.
//! - [`fixtures`]: routes, events and API Gateway v2 requests the drivers feed in.
//! - [`bare`]: the bare tokio + hyper server of the HTTP rows' baseline (fixed bytes).
//! - [`load`]: a keep-alive HTTP/1.1 load client (fixed request count, many connections).
//! - [`counting`]: a store wrapper that counts reads, an in-memory store, a null cache.
//! - [`drivers`]: one module per measurement (miss, burst, Zipf, consumer, propagation,
//!   cold start, memory).
//! - [`runtime_api`]: a local Lambda Runtime API for the cold-start measurement.
//! - [`report`]: the targets of the issue and the Markdown / JSON report.

pub mod bare;
pub mod counting;
pub mod drivers;
pub mod fixtures;
pub mod load;
pub mod record;
pub mod report;
pub mod runtime_api;
pub mod stats;
pub mod zipf;
