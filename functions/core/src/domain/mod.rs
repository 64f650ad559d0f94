//! The domain: names, routes, selection rules and events. Pure: no I/O.

pub mod event;
pub mod health;
pub mod health_check;
pub mod names;
pub mod pick;
pub mod route;
pub mod select;
pub mod timefmt;
