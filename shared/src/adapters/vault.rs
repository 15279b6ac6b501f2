//! Tenants' data keys for the stores (see [`crate::domain::sealing`]): made on a tenant's
//! first write, wrapped by a master key, kept wrapped beside the tenant in the store, and held
//! unwrapped in memory for at most [`Vault::RECHECK`] before the store is asked again — so
//! erasing a tenant's key takes effect in every process within that time, as revoking an API
//! key does.
//!
//! The master key lives in a key service: KMS on AWS (the data key is made by
//! `GenerateDataKey` and never leaves KMS unwrapped except to this process), and the local
//! secret store on one machine ([`LocalMasterKey`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::adapters::file_secrets::FileSecretStore;
use crate::domain::sealing::{DATA_KEY_BYTES, DataKey, NUMBER_TAG_BYTES, new_data_key};
use crate::domain::{PhoneNumber, TenantId};
use crate::ports::StoreError;

/// The data keys of the tenants whose sealed records are being opened, by tenant id; `None`
/// for a tenant whose key was erased.
pub type OpeningKeys = HashMap<String, Option<Arc<DataKey>>>;

/// A tenant's data key as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// The tenant has written nothing sealed yet.
    Absent,
    /// Wrapped under the master key.
    Wrapped(Vec<u8>),
    /// Erased: what was sealed under it cannot be read again.
    Erased,
}

/// Where the master key is: wraps new data keys and unwraps stored ones.
#[async_trait]
pub trait KeyWrapper: Send + Sync {
    /// A new data key for `tenant`: its bytes, and the same wrapped under the master key.
    async fn generate(
        &self,
        tenant: &TenantId,
    ) -> Result<([u8; DATA_KEY_BYTES], Vec<u8>), StoreError>;

    /// The bytes of a wrapped data key of `tenant`.
    async fn unwrap(
        &self,
        tenant: &TenantId,
        wrapped: &[u8],
    ) -> Result<[u8; DATA_KEY_BYTES], StoreError>;
}

/// Where the wrapped data keys are: the backend's own tenant records.
#[async_trait]
pub trait KeyShelf: Send + Sync {
    async fn load(&self, tenant: &TenantId) -> Result<StoredKey, StoreError>;

    /// Stores `wrapped` as the tenant's key unless it has one (or had one erased); answers
    /// what the store holds afterwards, so of two racing writers both use the winner's.
    async fn store_new(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<StoredKey, StoreError>;
}

#[derive(Clone)]
enum Known {
    Key { wrapped: Vec<u8>, key: Arc<DataKey> },
    Erased,
}

/// The data keys of all tenants, for one backend. Cheap to share behind an `Arc`.
pub struct Vault {
    wrapper: Arc<dyn KeyWrapper>,
    shelf: Arc<dyn KeyShelf>,
    known: Mutex<HashMap<TenantId, (Known, Instant)>>,
}

impl Vault {
    /// How long an unwrapped key (or the knowledge that it was erased) is trusted before the
    /// store is asked again.
    pub const RECHECK: Duration = Duration::from_secs(60);

    pub fn new(wrapper: Arc<dyn KeyWrapper>, shelf: Arc<dyn KeyShelf>) -> Vault {
        Vault {
            wrapper,
            shelf,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, tenant: &TenantId) -> Option<Known> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(tenant)
            .filter(|(_, at)| at.elapsed() < Self::RECHECK)
            .map(|(k, _)| k.clone())
    }

    fn remember(&self, tenant: &TenantId, known: Known) {
        let mut map = self.known.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(tenant.clone(), (known, Instant::now()));
    }

    /// Forgets what this process knows of `tenant`'s key (after erasing it here).
    pub fn forget(&self, tenant: &TenantId) {
        let mut map = self.known.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(tenant);
    }

    /// What the store holds now, unwrapped (reusing the key in memory if the wrapped bytes
    /// did not change, so a recheck costs a read and no call to the key service).
    async fn refresh(
        &self,
        tenant: &TenantId,
        stored: StoredKey,
    ) -> Result<Option<Known>, StoreError> {
        let known = match stored {
            StoredKey::Absent => return Ok(None),
            StoredKey::Erased => Known::Erased,
            StoredKey::Wrapped(wrapped) => {
                let held = {
                    let map = self.known.lock().unwrap_or_else(|p| p.into_inner());
                    match map.get(tenant) {
                        Some((Known::Key { wrapped: w, key }, _)) if *w == wrapped => {
                            Some(key.clone())
                        }
                        _ => None,
                    }
                };
                let key = match held {
                    Some(key) => key,
                    None => {
                        let bytes = self.wrapper.unwrap(tenant, &wrapped).await?;
                        Arc::new(DataKey::from_bytes(&bytes))
                    }
                };
                Known::Key { wrapped, key }
            }
        };
        self.remember(tenant, known.clone());
        Ok(Some(known))
    }

    /// The key to seal `tenant`'s new records with, made if the tenant has none yet.
    /// [`StoreError::Erased`] if it was erased.
    pub async fn sealing_key(&self, tenant: &TenantId) -> Result<Arc<DataKey>, StoreError> {
        let known = match self.cached(tenant) {
            Some(known) => known,
            None => match self.refresh(tenant, self.shelf.load(tenant).await?).await? {
                Some(known) => known,
                None => {
                    let (bytes, wrapped) = self.wrapper.generate(tenant).await?;
                    let stored = self.shelf.store_new(tenant, &wrapped).await?;
                    if stored == StoredKey::Wrapped(wrapped.clone()) {
                        let key = Arc::new(DataKey::from_bytes(&bytes));
                        let known = Known::Key { wrapped, key };
                        self.remember(tenant, known.clone());
                        known
                    } else {
                        // Another writer made one first, or it was erased meanwhile.
                        self.refresh(tenant, stored).await?.ok_or_else(|| {
                            StoreError::Corrupt("a stored data key vanished".into())
                        })?
                    }
                }
            },
        };
        match known {
            Known::Key { key, .. } => Ok(key),
            Known::Erased => Err(StoreError::Erased),
        }
    }

    /// The tenant's key if it has one, without making one; [`StoreError::Erased`] if it was
    /// erased.
    pub async fn held_key(&self, tenant: &TenantId) -> Result<Option<Arc<DataKey>>, StoreError> {
        let known = match self.cached(tenant) {
            Some(known) => Some(known),
            // Not cached when absent: another process may make it any moment.
            None => self.refresh(tenant, self.shelf.load(tenant).await?).await?,
        };
        match known {
            Some(Known::Key { key, .. }) => Ok(Some(key)),
            Some(Known::Erased) => Err(StoreError::Erased),
            None => Ok(None),
        }
    }

    /// The key to open `tenant`'s sealed records with: [`StoreError::Erased`] if it was
    /// erased, and corruption if the tenant never had one (no sealed record of it can be
    /// genuine then).
    pub async fn opening_key(&self, tenant: &TenantId) -> Result<Arc<DataKey>, StoreError> {
        self.held_key(tenant).await?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a sealed record of tenant {tenant} but no data key"
            ))
        })
    }
}

impl Vault {
    /// The tags of `numbers` under `tenant`'s key (made if it has none yet).
    pub async fn number_tags(
        &self,
        tenant: &TenantId,
        numbers: &[&PhoneNumber],
    ) -> Result<Vec<[u8; NUMBER_TAG_BYTES]>, StoreError> {
        let key = self.sealing_key(tenant).await?;
        Ok(numbers.iter().map(|n| key.number_tag(n)).collect())
    }

    /// The keys that open the sealed records of `tenants` (repeats are looked up once).
    pub async fn opening_keys<'a>(
        &self,
        tenants: impl IntoIterator<Item = &'a str>,
    ) -> Result<OpeningKeys, StoreError> {
        let mut keys = OpeningKeys::new();
        for tenant in tenants {
            if keys.contains_key(tenant) {
                continue;
            }
            let id: TenantId = tenant
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("tenant id {tenant:?}")))?;
            let key = match self.opening_key(&id).await {
                Ok(key) => Some(key),
                Err(StoreError::Erased) => None,
                Err(e) => return Err(e),
            };
            keys.insert(tenant.to_owned(), key);
        }
        Ok(keys)
    }
}

/// The master key of one machine: 32 random bytes in the local secret store (made on first
/// use), wrapping each data key with XChaCha20-Poly1305 bound to its tenant.
pub struct LocalMasterKey {
    secrets: FileSecretStore,
    key: tokio::sync::OnceCell<DataKey>,
}

impl LocalMasterKey {
    /// The secret's name in the store.
    pub const SECRET: &str = "holub/master-key";

    pub fn new(secrets: FileSecretStore) -> LocalMasterKey {
        LocalMasterKey {
            secrets,
            key: tokio::sync::OnceCell::new(),
        }
    }

    async fn master(&self) -> Result<&DataKey, StoreError> {
        self.key
            .get_or_try_init(|| async {
                let secrets = self.secrets.clone();
                let value = tokio::task::spawn_blocking(move || {
                    secrets.get_or_insert_with(Self::SECRET, || hex::encode(new_data_key()))
                })
                .await
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?
                .map_err(|e| StoreError::Unavailable(Box::new(e)))?;
                let bytes = hex::decode(value.expose().trim()).map_err(|_| {
                    StoreError::Corrupt(format!("{} is not hexadecimal", Self::SECRET))
                })?;
                DataKey::from_slice(&bytes)
                    .map_err(|_| StoreError::Corrupt(format!("{} is not 32 bytes", Self::SECRET)))
            })
            .await
    }

    fn context(tenant: &TenantId) -> Vec<u8> {
        format!("holub/data-key/v1\0{}", tenant.as_str()).into_bytes()
    }
}

#[async_trait]
impl KeyWrapper for LocalMasterKey {
    async fn generate(
        &self,
        tenant: &TenantId,
    ) -> Result<([u8; DATA_KEY_BYTES], Vec<u8>), StoreError> {
        let bytes = new_data_key();
        let wrapped = self.master().await?.seal(&Self::context(tenant), &bytes);
        Ok((bytes, wrapped))
    }

    async fn unwrap(
        &self,
        tenant: &TenantId,
        wrapped: &[u8],
    ) -> Result<[u8; DATA_KEY_BYTES], StoreError> {
        let plain = self
            .master()
            .await?
            .open(&Self::context(tenant), wrapped)
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "the data key of tenant {tenant} does not unwrap under {} \
                     (was the secrets file replaced?)",
                    Self::SECRET
                ))
            })?;
        plain
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("a data key is not 32 bytes".into()))
    }
}
