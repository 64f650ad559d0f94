//! Embedded adapters: real product features that back `tm-local` and the unit tests.
//! - [`embedded_store`]: routes, history, audit and outbox in one `redb` file (ACID, on disk).
//! - [`memory_cache`]: the shared cache inside the process.
//! - [`file_dead_letters`]: poison records as JSON lines in a file.

pub mod embedded_store;
pub mod memory_cache;
pub mod file_dead_letters;
