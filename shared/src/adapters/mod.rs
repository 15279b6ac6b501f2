//! Adapters: the ports implemented for each backend.

#[cfg(feature = "sqlite")]
pub mod sqlite;
