//! Holub's common crate.
//!
//! Three layers, kept apart:
//! - [`domain`]: pure types and rules of Ukrainian SMS (no I/O, no async);
//! - [`ports`]: the traits through which services reach the outside world;
//! - services and adapters (added by the crates that run Holub) are written against the ports.

pub mod adapters;
pub mod domain;
pub mod ports;
pub mod services;
