//! Tenants and API keys. A key is shown once, at creation; only its SHA-256 is stored. Keys
//! carry 256 random bits, so a fast hash is enough (a slow password hash protects guessable
//! secrets, which these are not) and lets every request authenticate in microseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::ports::store::Tenant;
use crate::ports::{Clock, Secret, SecretError, SecretStore, StoreError, TenantStore};

use super::callbacks::signing_secret_name;

pub const API_KEY_PREFIX: &str = "hk_";

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
    /// Key hash → tenant, for keys already seen: tenants and keys are never deleted here.
    known: Mutex<HashMap<String, TenantId>>,
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
        if let Ok(known) = self.known.lock()
            && let Some(t) = known.get(&hash)
        {
            return Ok(Some(t.clone()));
        }
        let tenant = self.tenants.tenant_by_key_hash(&hash).await?;
        if let Some(t) = &tenant
            && let Ok(mut known) = self.known.lock()
        {
            known.insert(hash, t.clone());
        }
        Ok(tenant)
    }
}
