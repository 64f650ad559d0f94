//! Use cases, each over the ports it needs:
//! - [`write`](mod@write): the management API (validation is done by the caller; this owns the
//!   revision rules, preconditions, pagination and the commit).
//! - [`resolve`]: L1 → shared cache → store, single flight, endpoint choice.
//! - [`render`]: the resolve answer, and its bodies encoded once per route revision and
//!   kept with L1.
//! - [`consume`]: applies one event record to the shared cache, or rejects it as poison.
//! - [`relay`]: moves committed outbox entries to the publisher.
//! - [`prober`]: probes checked endpoints and records their health (docs/health.md).

pub mod consume;
pub mod prober;
pub mod relay;
pub mod render;
pub mod resolve;
pub mod write;
