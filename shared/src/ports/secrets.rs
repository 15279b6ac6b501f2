//! Secrets: provider credentials and webhook signing keys. Secrets Manager on AWS; a local
//! file or environment variables on one machine. Never the repository.

use std::fmt;

use async_trait::async_trait;

use super::Retryable;

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that must use it (a signature, a request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0:?} does not exist")]
    NotFound(String),
    #[error("the secret store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Retryable for SecretError {
    fn is_retryable(&self) -> bool {
        matches!(self, SecretError::Unavailable(_))
    }
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get(&self, name: &str) -> Result<Secret, SecretError>;

    /// The value as the source holds it now, past any cache: for a caller that has just
    /// been told its copy is wrong (a 401 after a rotation). Stores without a cache of
    /// their own answer as [`SecretStore::get`].
    async fn get_fresh(&self, name: &str) -> Result<Secret, SecretError> {
        self.get(name).await
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretError>;
}
