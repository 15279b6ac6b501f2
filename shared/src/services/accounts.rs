//! Tenants and API keys. A key is shown once, at creation; only its SHA-256 is stored. Keys
//! carry 256 random bits, so a fast hash is enough (a slow password hash protects guessable
//! secrets, which these are not) and lets every request authenticate in microseconds.
//!
//! Keys found in the store are cached in the process for [`KEY_CACHE_TTL`] only: a key
//! revoked anywhere (another Lambda instance, the CLI) stops working everywhere within it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::ports::store::Tenant;
use crate::ports::{Clock, Secret, SecretError, SecretStore, StoreError, TenantStore};

use super::callbacks::signing_secret_name;

pub const API_KEY_PREFIX: &str = "hk_";

/// How long a key found in the store is believed without asking again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// Cached keys at most; the cache is emptied when full (a flood of distinct valid keys is
/// not a thing one tenant can make).
const KEY_CACHE_CAPACITY: usize = 10_000;

/// A new tenant's credentials, shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewTenant {
    pub tenant_id: String,
    pub api_key: String,
    /// The secret that signs this tenant's status callbacks.
    pub webhook_secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("tenant names are 1 to 200 characters")]
    BadName,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

pub struct Accounts {
    tenants: Arc<dyn TenantStore>,
    secrets: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    /// Key hash → tenant and until when that is believed.
    known: Mutex<HashMap<String, (TenantId, DateTime<Utc>)>>,
}

/// The stored form of an API key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

impl Accounts {
    pub fn new(
        tenants: Arc<dyn TenantStore>,
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Accounts {
            tenants,
            secrets,
            clock,
            known: Mutex::new(HashMap::new()),
        }
    }

    pub async fn create_tenant(&self, name: &str) -> Result<NewTenant, AccountError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(AccountError::BadName);
        }
        let now = self.clock.now();
        let tenant = Tenant {
            id: TenantId::generate(now),
            name: name.to_owned(),
            created_at: now,
        };
        let api_key = random_token(API_KEY_PREFIX);
        let webhook_secret = random_token("whsec_");
        // The secret first: a tenant that exists always has one.
        self.secrets
            .put(
                &signing_secret_name(&tenant.id),
                &Secret::new(webhook_secret.clone()),
            )
            .await?;
        self.tenants
            .create_tenant(&tenant, &hash_key(&api_key))
            .await?;
        Ok(NewTenant {
            tenant_id: tenant.id.to_string(),
            api_key,
            webhook_secret,
        })
    }

    /// The tenant of a bearer key, or `None` for an unknown key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<TenantId>, StoreError> {
        if !key.starts_with(API_KEY_PREFIX) || key.len() > 128 {
            return Ok(None);
        }
        let hash = hash_key(key);
        let now = self.clock.now();
        if let Ok(known) = self.known.lock()
            && let Some((t, until)) = known.get(&hash)
            && *until > now
        {
            return Ok(Some(t.clone()));
        }
        let tenant = self.tenants.tenant_by_key_hash(&hash).await?;
        if let Ok(mut known) = self.known.lock() {
            match &tenant {
                Some(t) => {
                    if known.len() >= KEY_CACHE_CAPACITY {
                        known.clear();
                    }
                    let ttl = chrono::Duration::from_std(KEY_CACHE_TTL).unwrap_or_default();
                    known.insert(hash, (t.clone(), now + ttl));
                }
                None => {
                    known.remove(&hash);
                }
            }
        }
        Ok(tenant)
    }

    /// A new API key for an existing tenant, shown once.
    pub async fn add_key(&self, tenant: &TenantId) -> Result<String, AccountError> {
        let api_key = random_token(API_KEY_PREFIX);
        self.tenants.add_key(tenant, &hash_key(&api_key)).await?;
        Ok(api_key)
    }

    /// Revokes an API key: refused here at once, and everywhere within [`KEY_CACHE_TTL`].
    /// Answers whether a live key was revoked.
    pub async fn revoke_key(&self, key: &str) -> Result<bool, AccountError> {
        let hash = hash_key(key.trim());
        let revoked = self.tenants.revoke_key(&hash, self.clock.now()).await?;
        if let Ok(mut known) = self.known.lock() {
            known.remove(&hash);
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SecretError;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    /// Keys in memory, revocable behind the service's back (as another instance would), and
    /// a count of lookups.
    #[derive(Default)]
    struct Keys {
        live: Mutex<HashMap<String, TenantId>>,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl TenantStore for Keys {
        async fn create_tenant(&self, t: &Tenant, hash: &str) -> Result<(), StoreError> {
            self.live.lock().unwrap().insert(hash.into(), t.id.clone());
            Ok(())
        }
        async fn tenant_by_key_hash(&self, hash: &str) -> Result<Option<TenantId>, StoreError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            Ok(self.live.lock().unwrap().get(hash).cloned())
        }
        async fn add_key(&self, t: &TenantId, hash: &str) -> Result<(), StoreError> {
            self.live.lock().unwrap().insert(hash.into(), t.clone());
            Ok(())
        }
        async fn revoke_key(&self, hash: &str, _: DateTime<Utc>) -> Result<bool, StoreError> {
            Ok(self.live.lock().unwrap().remove(hash).is_some())
        }
    }

    struct NoSecrets;

    #[async_trait]
    impl SecretStore for NoSecrets {
        async fn get(&self, name: &str) -> Result<Secret, SecretError> {
            Err(SecretError::NotFound(name.into()))
        }
        async fn put(&self, _: &str, _: &Secret) -> Result<(), SecretError> {
            Ok(())
        }
    }

    /// A clock moved by hand, in seconds.
    #[derive(Default)]
    struct Manual(AtomicI64);

    impl Clock for Manual {
        fn now(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(1_800_000_000 + self.0.load(Ordering::SeqCst), 0)
                .unwrap_or_default()
        }
    }

    #[tokio::test]
    async fn a_key_revoked_elsewhere_stops_working_within_the_cache_ttl() {
        let keys = Arc::new(Keys::default());
        let clock = Arc::new(Manual::default());
        let accounts = Accounts::new(keys.clone(), Arc::new(NoSecrets), clock.clone());
        let created = accounts.create_tenant("Acme").await.unwrap();
        let key = created.api_key;
        let tenant = Some(created.tenant_id.parse::<TenantId>().unwrap());

        assert_eq!(accounts.authenticate(&key).await.unwrap(), tenant);
        assert_eq!(accounts.authenticate(&key).await.unwrap(), tenant);
        assert_eq!(keys.lookups.load(Ordering::SeqCst), 1, "cached");

        // Another instance revokes it: believed until the cache entry runs out, no longer.
        keys.revoke_key(&hash_key(&key), clock.now()).await.unwrap();
        clock
            .0
            .store(KEY_CACHE_TTL.as_secs() as i64 - 1, Ordering::SeqCst);
        assert_eq!(accounts.authenticate(&key).await.unwrap(), tenant);
        clock
            .0
            .store(KEY_CACHE_TTL.as_secs() as i64, Ordering::SeqCst);
        assert_eq!(accounts.authenticate(&key).await.unwrap(), None);

        // Revoked here: refused at once, cache or not.
        let second = accounts.add_key(tenant.as_ref().unwrap()).await.unwrap();
        assert_eq!(accounts.authenticate(&second).await.unwrap(), tenant);
        assert!(accounts.revoke_key(&second).await.unwrap());
        assert_eq!(accounts.authenticate(&second).await.unwrap(), None);
        assert!(!accounts.revoke_key(&second).await.unwrap());
    }
}
