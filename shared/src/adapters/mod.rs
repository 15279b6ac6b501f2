//! Adapters: the ports implemented for each backend.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod dynamo;
pub mod file_secrets;
#[cfg(feature = "aws")]
pub mod kms;
pub mod providers;
#[cfg(feature = "aws")]
pub mod request_counter;
pub mod safe_http;
#[cfg(feature = "aws")]
pub mod secrets_manager;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;
pub mod vault;
