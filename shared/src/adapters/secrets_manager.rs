//! [`SecretStore`] on AWS Secrets Manager. A secret named `name` is stored as
//! `<prefix><name>` (a prefix per deployment, such as `holub/prod/`). Values are kept in
//! memory for a while after they are read: a Lambda cold start reads each secret once, and
//! a rotated secret is picked up within the TTL. A `put` through this store updates its own
//! cache at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use crate::ports::{Secret, SecretError, SecretStore};

/// Where secrets live and how long a read value is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsConfig {
    /// Put before every name, e.g. `holub/prod/`.
    pub prefix: String,
    /// How long a value read from Secrets Manager is served from memory.
    pub ttl: Duration,
}

impl SecretsConfig {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        SecretsConfig {
            prefix: prefix.into(),
            ttl: Duration::from_secs(300),
        }
    }
}

/// The Secrets Manager store. Cheap to clone: clones share the client and the cache.
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
    config: Arc<SecretsConfig>,
    cache: Arc<Mutex<HashMap<String, (Secret, Instant)>>>,
}

fn unavailable<E>(e: E) -> SecretError
where
    E: std::error::Error + Send + Sync + 'static,
{
    SecretError::Unavailable(Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("secret {0:?} holds no text")]
struct NotText(String);

impl SecretsManagerStore {
    pub fn new(client: Client, config: SecretsConfig) -> Self {
        SecretsManagerStore {
            client,
            config: Arc::new(config),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    fn cached(&self, name: &str) -> Option<Secret> {
        let cache = self.cache.lock().ok()?;
        let (secret, read_at) = cache.get(name)?;
        (read_at.elapsed() < self.config.ttl).then(|| secret.clone())
    }

    fn remember(&self, name: &str, secret: &Secret) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_owned(), (secret.clone(), Instant::now()));
        }
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, name: &str) -> Result<Secret, SecretError> {
        if let Some(secret) = self.cached(name) {
            return Ok(secret);
        }
        self.get_fresh(name).await
    }

    async fn get_fresh(&self, name: &str) -> Result<Secret, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(self.id(name))
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    SecretError::NotFound(name.to_owned())
                } else {
                    unavailable(e)
                }
            })?;
        let value = match (out.secret_string, out.secret_binary) {
            (Some(text), _) => text,
            (None, Some(bytes)) => String::from_utf8(bytes.into_inner())
                .map_err(|_| unavailable(NotText(name.to_owned())))?,
            (None, None) => return Err(unavailable(NotText(name.to_owned()))),
        };
        let secret = Secret::new(value);
        self.remember(name, &secret);
        Ok(secret)
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretError> {
        let id = self.id(name);
        let put = self
            .client
            .put_secret_value()
            .secret_id(&id)
            .secret_string(value.expose())
            .send()
            .await;
        match put {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let created = self
                    .client
                    .create_secret()
                    .name(&id)
                    .secret_string(value.expose())
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Created by someone else meanwhile: this value is the newer one.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_exists_exception()) =>
                    {
                        self.client
                            .put_secret_value()
                            .secret_id(&id)
                            .secret_string(value.expose())
                            .send()
                            .await
                            .map_err(unavailable)?;
                    }
                    Err(e) => return Err(unavailable(e)),
                }
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.remember(name, value);
        Ok(())
    }
}
