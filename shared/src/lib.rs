//! Holub's common crate.
//!
//! The layers, kept apart:
//! - [`domain`]: pure types and rules of Ukrainian SMS (no I/O, no async);
//! - [`ports`]: the traits through which services reach the outside world;
//! - [`services`] (the use cases) and [`adapters`] (the ports per backend);
//! - [`runtime`]: the composition root that wires a backend into the services.

pub mod adapters;
pub mod domain;
pub mod ports;
pub mod runtime;
pub mod services;
