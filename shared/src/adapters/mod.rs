//! Adapters: the ports implemented for each backend.

pub mod providers;
#[cfg(feature = "sqlite")]
pub mod sqlite;
