//! Tenants and API keys. A key is shown once, at creation; only its SHA-256 is stored. Keys
//! carry 256 random bits, so a fast hash is enough (a slow password hash protects guessable
//! secrets, which these are not) and lets every request authenticate in microseconds.
//!
//! Keys have names, scopes, an optional expiry and a last-used time, and can be rotated
//! (a new key, the old one ending now or after a grace period) and revoked. Their form
//! (`holub_sk_…`, see [`key_format`]) is one secret scanners can recognise.
//!
//! Keys found in the store are cached in the process for [`KEY_CACHE_TTL`] only: a key
//! revoked anywhere (another Lambda instance, the CLI) stops working everywhere within it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::access::key_format::{self, Presented};
use crate::domain::{
    ApiKeyRecord, AuditAction, AuditEntry, KeyId, KeyName, Origin, Scopes, TenantId,
};
use crate::ports::store::{KeyEnd, Tenant};
use crate::ports::{Clock, Secret, SecretError, SecretStore, StoreError, TenantStore};

use super::callbacks::{SigningKeys, signing_secret_name};

/// How long a key found in the store is believed without asking again: a revoked key stops
/// working everywhere within this.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(30);

/// How stale a key's `last_used_at` may get: it is written at most this often per process.
pub const LAST_USED_PRECISION: Duration = Duration::from_secs(60);

/// The longest grace period of a rotation, in which the old key works along with the new.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// Who a request's key says it is: the tenant, which key, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    /// `None` for a key from before key ids.
    pub key_id: Option<KeyId>,
    pub scopes: Scopes,
}

/// A tenant's new webhook signing secret, shown once, and until when the one before it
/// still signs too (`None`: it stopped at once).
#[derive(Debug, Clone)]
pub struct RotatedSecret {
    pub secret: String,
    pub previous_until: Option<DateTime<Utc>>,
}

/// A key and its secret, shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub record: ApiKeyRecord,
    pub secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("tenant names are 1 to 200 characters")]
    BadName,
    #[error("the expiry must be in the future")]
    ExpiryInPast,
    #[error("a rotation's grace period is at most 7 days")]
    GraceTooLong,
    #[error("no such tenant")]
    NoTenant,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

pub struct Accounts {
    tenants: Arc<dyn TenantStore>,
    secrets: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    /// Key hash → who it is and until when that is believed.
    known: Mutex<HashMap<String, (Caller, DateTime<Utc>)>>,
    /// Key id → when this process last wrote its `last_used_at`.
    touched: Mutex<HashMap<KeyId, DateTime<Utc>>>,
}

/// The stored form of an API key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes()))
}

fn duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

/// A key's record as the audit log keeps it: never its hash.
pub fn key_json(key: &ApiKeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": key.id.as_ref().map(KeyId::as_str),
        "name": key.name.as_ref().map(KeyName::as_str),
        "scopes": key.scopes,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    })
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
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// A new key record and its secret (not stored yet).
    fn issue(
        &self,
        tenant: &TenantId,
        name: KeyName,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
    ) -> IssuedKey {
        let now = self.clock.now();
        let id = KeyId::generate(now);
        let secret = key_format::compose(&id, &random_bytes());
        IssuedKey {
            record: ApiKeyRecord {
                id: Some(id),
                tenant_id: tenant.clone(),
                hash: hash_key(&secret),
                name: Some(name),
                scopes,
                created_at: Some(now),
                expires_at,
                last_used_at: None,
                revoked_at: None,
            },
            secret,
        }
    }

    pub async fn create_tenant(
        &self,
        name: &str,
        origin: &Origin,
    ) -> Result<NewTenant, AccountError> {
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
        let first_name = KeyName::parse("first key").map_err(|_| AccountError::BadName)?;
        let key = self.issue(&tenant.id, first_name, Scopes::ADMIN, None);
        let webhook_secret = random_token("whsec_");
        // The secret first: a tenant that exists always has one.
        self.secrets
            .put(
                &signing_secret_name(&tenant.id),
                &Secret::new(webhook_secret.clone()),
            )
            .await?;
        let audit = origin.entry(
            &tenant.id,
            now,
            AuditAction::TenantCreate,
            "tenant",
            None,
            Some(serde_json::json!({"name": tenant.name, "first_key": key_json(&key.record)})),
        );
        self.tenants
            .create_tenant(&tenant, &key.record, &audit)
            .await?;
        Ok(NewTenant {
            tenant_id: tenant.id.to_string(),
            api_key: key.secret,
            webhook_secret,
        })
    }

    /// Who a bearer key is, or `None` for a key that is unknown, malformed, revoked or
    /// expired.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Caller>, StoreError> {
        let Some(presented) = key_format::inspect(key) else {
            return Ok(None);
        };
        let hash = hash_key(key);
        let now = self.clock.now();
        if let Ok(known) = self.known.lock()
            && let Some((caller, until)) = known.get(&hash)
            && *until > now
        {
            return Ok(Some(caller.clone()));
        }
        let id = match &presented {
            Presented::Current(id) => Some(id),
            Presented::Legacy => None,
        };
        let record = self
            .tenants
            .api_key(id, &hash)
            .await?
            .filter(|r| r.hash == hash && r.id.as_ref() == id && r.is_live(now));
        let Some(record) = record else {
            if let Ok(mut known) = self.known.lock() {
                known.remove(&hash);
            }
            return Ok(None);
        };
        let caller = Caller {
            tenant: record.tenant_id.clone(),
            key_id: record.id.clone(),
            scopes: record.scopes,
        };
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= KEY_CACHE_CAPACITY {
                known.clear();
            }
            let mut until = now + duration(KEY_CACHE_TTL);
            if let Some(end) = record.expires_at {
                until = until.min(end);
            }
            known.insert(hash, (caller.clone(), until));
        }
        self.touch(&record, now).await;
        Ok(Some(caller))
    }

    /// Writes a key's last use, at most once per [`LAST_USED_PRECISION`] per key and
    /// process. A failure costs only precision: it is logged, not returned.
    async fn touch(&self, record: &ApiKeyRecord, now: DateTime<Utc>) {
        let Some(id) = &record.id else { return };
        let precision = duration(LAST_USED_PRECISION);
        if record.last_used_at.is_some_and(|at| at + precision > now) {
            return;
        }
        if let Ok(mut touched) = self.touched.lock() {
            if touched.get(id).is_some_and(|at| *at + precision > now) {
                return;
            }
            if touched.len() >= KEY_CACHE_CAPACITY {
                touched.clear();
            }
            touched.insert(id.clone(), now);
        }
        if let Err(e) = self.tenants.touch_key(&record.tenant_id, id, now).await {
            tracing::warn!(key = %id, error = %e, "could not record a key's last use");
        }
    }

    /// A new key for an existing tenant, shown once.
    pub async fn create_key(
        &self,
        tenant: &TenantId,
        name: KeyName,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
        origin: &Origin,
    ) -> Result<IssuedKey, AccountError> {
        let now = self.clock.now();
        if expires_at.is_some_and(|end| end <= now) {
            return Err(AccountError::ExpiryInPast);
        }
        let key = self.issue(tenant, name, scopes, expires_at);
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::KeyCreate,
            key.record
                .id
                .as_ref()
                .map(KeyId::as_str)
                .unwrap_or_default(),
            None,
            Some(key_json(&key.record)),
        );
        match self.tenants.add_key(&key.record, &audit).await {
            Ok(()) => Ok(key),
            Err(StoreError::NotFound) => Err(AccountError::NoTenant),
            Err(e) => Err(e.into()),
        }
    }

    /// A tenant's keys (with ids), oldest first, revoked and expired ones included.
    pub async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.tenants.list_keys(tenant).await
    }

    /// Revokes a tenant's key: refused here at once, everywhere within [`KEY_CACHE_TTL`].
    /// `None` if the tenant has no live key with this id.
    pub async fn revoke_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        origin: &Origin,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let now = self.clock.now();
        let audit = origin.entry(tenant, now, AuditAction::KeyRevoke, id.as_str(), None, None);
        let ended = self
            .tenants
            .end_key(tenant, id, KeyEnd::Revoke(now), &audit)
            .await?;
        self.forget(id);
        Ok(ended)
    }

    /// A new key with the old one's name and scopes; the old one stops working after
    /// `grace` (zero: now). `None` if the tenant has no live key with this id.
    pub async fn rotate_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        grace: Duration,
        origin: &Origin,
    ) -> Result<Option<(ApiKeyRecord, IssuedKey)>, AccountError> {
        if grace > MAX_ROTATION_GRACE {
            return Err(AccountError::GraceTooLong);
        }
        let now = self.clock.now();
        let Some(old) = self
            .tenants
            .api_key(Some(id), "")
            .await?
            .filter(|k| &k.tenant_id == tenant && k.is_live(now))
        else {
            return Ok(None);
        };
        let name = old
            .name
            .clone()
            .unwrap_or_else(|| KeyName::parse("rotated key").expect("a valid name"));
        let new = self.issue(tenant, name, old.scopes, old.expires_at);
        let old_until = now + duration(grace);
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::KeyRotate,
            id.as_str(),
            Some(key_json(&old)),
            Some(serde_json::json!({
                "old_expires_at": old.expires_at.map_or(old_until, |x| x.min(old_until)),
                "new_key": key_json(&new.record),
            })),
        );
        let end = KeyEnd::Rotate {
            new: Box::new(new.record.clone()),
            old_until,
        };
        let ended = self.tenants.end_key(tenant, id, end, &audit).await?;
        if grace.is_zero() {
            self.forget(id);
        }
        Ok(ended.map(|old| (old, new)))
    }

    /// The tenant's stored signing secrets (`None` if it has none, or none that can be read).
    async fn signing_keys(&self, tenant: &TenantId) -> Result<Option<SigningKeys>, SecretError> {
        match self.secrets.get_fresh(&signing_secret_name(tenant)).await {
            Ok(stored) => Ok(SigningKeys::parse(&stored)),
            Err(SecretError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Until when the previous webhook signing secret still signs callbacks, if it does.
    pub async fn webhook_secret_grace(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<DateTime<Utc>>, AccountError> {
        let keys = self.signing_keys(tenant).await?;
        Ok(keys.and_then(|k| k.previous_until(self.clock.now())))
    }

    /// A new webhook signing secret. Callbacks are signed by both it and the current one
    /// for `grace` (zero: by the new one alone, at once), so a receiver can switch to the
    /// new secret at its own pace within it. A rotation within an earlier one's grace ends
    /// that grace: only the secret just replaced is kept.
    ///
    /// The audit entry is written first: a rotation that the secret store then refuses is
    /// recorded but did not happen (the answer says so, and the secret is as it was).
    pub async fn rotate_webhook_secret(
        &self,
        tenant: &TenantId,
        grace: Duration,
        origin: &Origin,
    ) -> Result<RotatedSecret, AccountError> {
        if grace > MAX_ROTATION_GRACE {
            return Err(AccountError::GraceTooLong);
        }
        let now = self.clock.now();
        let before = self.signing_keys(tenant).await?;
        let secret = random_token("whsec_");
        let previous_until = now + duration(grace);
        let next = SigningKeys {
            current: Secret::new(secret.clone()),
            previous: before
                .as_ref()
                .filter(|_| !grace.is_zero())
                .map(|keys| (keys.current.clone(), previous_until)),
        };
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::WebhookSecretRotate,
            "webhook_secret",
            Some(serde_json::json!({
                "previous_until": before.as_ref().and_then(|k| k.previous_until(now)),
            })),
            Some(serde_json::json!({"previous_until": next.previous_until(now)})),
        );
        match self.tenants.record_audit(&audit).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(AccountError::NoTenant),
            Err(e) => return Err(e.into()),
        }
        self.secrets
            .put(&signing_secret_name(tenant), &next.stored())
            .await?;
        Ok(RotatedSecret {
            secret,
            previous_until: next.previous_until(now),
        })
    }

    /// Erases a tenant's data (the operator's command line): its data key is destroyed, so
    /// every number and text stored for it — in the database, its copies and its backups —
    /// can never be read again, nothing more is accepted for it, and its API keys are
    /// revoked. Its messages are deleted by the next retention sweeps on one machine, by
    /// their TTL on AWS. Answers whether the tenant had data to erase.
    pub async fn erase_tenant(
        &self,
        tenant: &TenantId,
        origin: &Origin,
    ) -> Result<bool, AccountError> {
        let now = self.clock.now();
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::TenantErase,
            tenant.as_str(),
            None,
            None,
        );
        match self.tenants.erase_tenant(tenant, now, &audit).await {
            Ok(erased) => {
                self.forget_tenant(tenant);
                Ok(erased)
            }
            Err(StoreError::NotFound) => Err(AccountError::NoTenant),
            Err(e) => Err(e.into()),
        }
    }

    /// Revokes the key given (any tenant's; the operator's command line). Answers whether a
    /// live key was revoked.
    pub async fn revoke_presented(&self, key: &str, origin: &Origin) -> Result<bool, StoreError> {
        let key = key.trim();
        let Some(presented) = key_format::inspect(key) else {
            return Ok(false);
        };
        let hash = hash_key(key);
        let now = self.clock.now();
        let revoked = match presented {
            Presented::Current(id) => {
                let Some(record) = self.tenants.api_key(Some(&id), &hash).await? else {
                    return Ok(false);
                };
                if record.hash != hash {
                    return Ok(false);
                }
                self.revoke_key(&record.tenant_id, &id, origin)
                    .await?
                    .is_some()
            }
            Presented::Legacy => {
                let Some(record) = self.tenants.api_key(None, &hash).await? else {
                    return Ok(false);
                };
                let audit = origin.entry(
                    &record.tenant_id,
                    now,
                    AuditAction::KeyRevoke,
                    "key from before key ids",
                    None,
                    None,
                );
                self.tenants.revoke_legacy_key(&hash, now, &audit).await?
            }
        };
        if let Ok(mut known) = self.known.lock() {
            known.remove(&hash);
        }
        Ok(revoked)
    }

    /// Drops a key from this process's cache, whatever its hash.
    fn forget(&self, id: &KeyId) {
        if let Ok(mut known) = self.known.lock() {
            known.retain(|_, (caller, _)| caller.key_id.as_ref() != Some(id));
        }
    }

    fn forget_tenant(&self, tenant: &TenantId) {
        if let Ok(mut known) = self.known.lock() {
            known.retain(|_, (caller, _)| caller.tenant != *tenant);
        }
    }

    /// A tenant's audit entries, newest first, older than `before` if given.
    pub async fn audit_log(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.tenants.audit_log(tenant, before, limit).await
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::adapters::file_secrets::FileSecretStore;
    use crate::adapters::sqlite::{SqliteBackend, SqliteConfig};
    use crate::domain::Scope;

    use crate::ports::clock::ManualClock as Manual;

    /// Two services on one SQLite database, as two processes (or Lambda instances) would
    /// be, with one clock.
    struct Two {
        here: Accounts,
        elsewhere: Accounts,
        store: Arc<SqliteBackend>,
        clock: Arc<Manual>,
        dir: std::path::PathBuf,
    }

    impl Drop for Two {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Two {
        /// A new tenant "Acme", made here, and its id.
        async fn acme(&self) -> (NewTenant, TenantId) {
            let created = self
                .here
                .create_tenant("Acme", &Origin::operator())
                .await
                .unwrap();
            let tenant = created.tenant_id.parse().unwrap();
            (created, tenant)
        }
    }

    fn two(name: &str) -> Two {
        let dir = std::env::temp_dir().join(format!(
            "holub-accounts-{name}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store =
            Arc::new(SqliteBackend::open(&dir.join("holub.db"), SqliteConfig::default()).unwrap());
        let secrets = Arc::new(FileSecretStore::in_dir(&dir));
        let clock = Arc::new(Manual::default());
        let make = || Accounts::new(store.clone(), secrets.clone(), clock.clone());
        Two {
            here: make(),
            elsewhere: make(),
            store: store.clone(),
            clock,
            dir,
        }
    }

    fn scopes(list: &str) -> Scopes {
        Scopes::parse(list).unwrap()
    }

    fn name(n: &str) -> KeyName {
        KeyName::parse(n).unwrap()
    }

    #[tokio::test]
    async fn a_key_revoked_elsewhere_stops_working_within_the_cache_ttl() {
        let t = two("revoke");
        let (created, tenant) = t.acme().await;
        let key = created.api_key;
        assert!(key.starts_with("holub_sk_"));
        let caller = t.here.authenticate(&key).await.unwrap().unwrap();
        assert_eq!(caller.tenant, tenant);
        assert_eq!(caller.scopes, Scopes::ADMIN);
        let id = caller.key_id.clone().unwrap();

        // Another instance revokes it: believed here until the cache entry runs out.
        let origin = Origin::operator();
        let revoked = t.elsewhere.revoke_key(&tenant, &id, &origin);
        assert!(revoked.await.unwrap().is_some());
        assert!(t.elsewhere.authenticate(&key).await.unwrap().is_none());
        t.clock.advance(KEY_CACHE_TTL.as_secs() as i64 - 1);
        assert!(t.here.authenticate(&key).await.unwrap().is_some());
        t.clock.advance(1);
        assert!(t.here.authenticate(&key).await.unwrap().is_none());
        // Revoking twice finds no live key.
        let again = t.here.revoke_key(&tenant, &id, &origin);
        assert!(again.await.unwrap().is_none());
    }

    #[tokio::test]
    async fn keys_carry_their_scopes_expire_and_record_their_last_use() {
        let t = two("scopes");
        let (created, tenant) = t.acme().await;
        let end = t.clock.now() + chrono::Duration::seconds(600);
        let issued = t
            .here
            .create_key(
                &tenant,
                name("sender"),
                scopes("messages:send"),
                Some(end),
                &Origin::operator(),
            )
            .await
            .unwrap();
        let caller = t.here.authenticate(&issued.secret).await.unwrap().unwrap();
        assert!(caller.scopes.allow(Scope::MessagesSend));
        assert!(!caller.scopes.allow(Scope::MessagesRead));
        assert!(!caller.scopes.allow(Scope::Admin));

        let listed = t.here.list_keys(&tenant).await.unwrap();
        assert_eq!(listed.len(), 2);
        let stored = listed.iter().find(|k| k.id == issued.record.id).unwrap();
        assert_eq!(stored.last_used_at, Some(t.clock.now()));
        assert_eq!(stored.expires_at, Some(end));
        assert_ne!(stored.hash, issued.secret, "only the hash is stored");

        // Expired: refused, cached or not.
        t.clock.advance(600);
        assert!(t.here.authenticate(&issued.secret).await.unwrap().is_none());
        assert!(
            t.elsewhere
                .authenticate(&issued.secret)
                .await
                .unwrap()
                .is_none()
        );

        // An expiry in the past is refused; so are a made-up key and a typo of a real one.
        let past = t.clock.now() - chrono::Duration::seconds(1);
        let refused = t
            .here
            .create_key(
                &tenant,
                name("x"),
                Scopes::ADMIN,
                Some(past),
                &Origin::operator(),
            )
            .await;
        assert!(matches!(refused, Err(AccountError::ExpiryInPast)));
        // The last character changed (to another one: the key may end in `0`).
        let mut typo = created.api_key.clone();
        let last = typo.pop();
        typo.push(if last == Some('0') { '1' } else { '0' });
        assert!(t.here.authenticate(&typo).await.unwrap().is_none());
        assert!(
            t.here
                .authenticate("holub_sk_nonsense")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_webhook_secret_rotation_signs_with_both_through_the_grace_only() {
        let t = two("whsec");
        let (created, tenant) = t.acme().await;
        let secrets = FileSecretStore::in_dir(&t.dir);
        let keys = || async {
            SigningKeys::parse(
                &secrets
                    .get_fresh(&signing_secret_name(&tenant))
                    .await
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(keys().await.current.expose(), created.webhook_secret);
        assert_eq!(t.here.webhook_secret_grace(&tenant).await.unwrap(), None);

        let rotated = t
            .here
            .rotate_webhook_secret(&tenant, Duration::from_secs(3600), &Origin::operator())
            .await
            .unwrap();
        assert!(rotated.secret.starts_with("whsec_"));
        assert_ne!(rotated.secret, created.webhook_secret);
        let until = t.clock.now() + chrono::Duration::hours(1);
        assert_eq!(rotated.previous_until, Some(until));
        assert_eq!(
            t.elsewhere.webhook_secret_grace(&tenant).await.unwrap(),
            Some(until)
        );
        let now = t.clock.now();
        let stored = keys().await;
        assert_eq!(
            stored.signing(now),
            vec![rotated.secret.as_bytes(), created.webhook_secret.as_bytes()]
        );
        t.clock.advance(3600);
        assert_eq!(
            keys().await.signing(t.clock.now()),
            vec![rotated.secret.as_bytes()]
        );
        assert_eq!(t.here.webhook_secret_grace(&tenant).await.unwrap(), None);

        // No grace: the new one alone, at once; the earlier grace is not carried on.
        let again = t
            .here
            .rotate_webhook_secret(&tenant, Duration::ZERO, &Origin::operator())
            .await
            .unwrap();
        assert_eq!(again.previous_until, None);
        let stored = keys().await;
        assert!(stored.previous.is_none());
        assert_eq!(stored.current.expose(), again.secret);

        let too_long = t
            .here
            .rotate_webhook_secret(&tenant, MAX_ROTATION_GRACE * 2, &Origin::operator())
            .await;
        assert!(matches!(too_long, Err(AccountError::GraceTooLong)));
        let stranger: TenantId = "ten_01HZZZZZZZZZZZZZZZZZZZZZZZ".parse().unwrap();
        let unknown = t
            .here
            .rotate_webhook_secret(&stranger, Duration::ZERO, &Origin::operator())
            .await;
        assert!(matches!(unknown, Err(AccountError::NoTenant)));

        // Both rotations are audited, without a secret.
        let log = t.here.audit_log(&tenant, None, 10).await.unwrap();
        let rotations: Vec<_> = log
            .iter()
            .filter(|e| e.action == AuditAction::WebhookSecretRotate)
            .collect();
        assert_eq!(rotations.len(), 2);
        let text = serde_json::to_string(&log).unwrap();
        assert!(!text.contains(&rotated.secret) && !text.contains(&again.secret));
    }

    #[tokio::test]
    async fn a_rotation_keeps_both_keys_through_the_grace_period_only() {
        let t = two("rotate");
        let (created, tenant) = t.acme().await;
        let old = t
            .here
            .authenticate(&created.api_key)
            .await
            .unwrap()
            .unwrap();
        let old_id = old.key_id.unwrap();
        let (ended, new) = t
            .here
            .rotate_key(
                &tenant,
                &old_id,
                Duration::from_secs(300),
                &Origin::operator(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ended.expires_at,
            Some(t.clock.now() + chrono::Duration::seconds(300))
        );
        let caller = t
            .elsewhere
            .authenticate(&new.secret)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(caller.scopes, Scopes::ADMIN);
        assert!(
            t.elsewhere
                .authenticate(&created.api_key)
                .await
                .unwrap()
                .is_some()
        );
        t.clock.advance(300);
        assert!(
            t.here
                .authenticate(&created.api_key)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            t.elsewhere
                .authenticate(&created.api_key)
                .await
                .unwrap()
                .is_none()
        );
        assert!(t.here.authenticate(&new.secret).await.unwrap().is_some());

        // Another tenant's key cannot be rotated or revoked.
        let other = t
            .here
            .create_tenant("Other", &Origin::operator())
            .await
            .unwrap();
        let other: TenantId = other.tenant_id.parse().unwrap();
        let new_id = new.record.id.unwrap();
        let origin = Origin::operator();
        let foreign = t.here.rotate_key(&other, &new_id, Duration::ZERO, &origin);
        assert!(foreign.await.unwrap().is_none());
        let foreign = t.here.revoke_key(&other, &new_id, &origin);
        assert!(foreign.await.unwrap().is_none());
        assert!(t.here.authenticate(&new.secret).await.unwrap().is_some());

        // Every change is in the audit log, newest first, without a secret or a hash.
        let log = t.here.audit_log(&tenant, None, 10).await.unwrap();
        let actions: Vec<_> = log.iter().map(|e| e.action).collect();
        assert_eq!(actions, [AuditAction::KeyRotate, AuditAction::TenantCreate]);
        let text = serde_json::to_string(&log).unwrap();
        assert!(!text.contains(&new.secret) && !text.contains(&new.record.hash));
        let older = t
            .here
            .audit_log(&tenant, Some(&log[0].id), 10)
            .await
            .unwrap();
        assert_eq!(older.len(), 1);
    }

    #[tokio::test]
    async fn keys_from_before_key_ids_still_work_and_can_be_revoked() {
        let t = two("legacy");
        let (created, tenant) = t.acme().await;
        // A key as the previous version made it: `hk_`, no id, no scopes stored.
        let legacy = random_token(key_format::LEGACY_PREFIX);
        let record = ApiKeyRecord {
            id: None,
            tenant_id: tenant.clone(),
            hash: hash_key(&legacy),
            name: None,
            scopes: Scopes::ADMIN,
            created_at: None,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        let audit = Origin::operator().entry(
            &tenant,
            t.clock.now(),
            AuditAction::KeyCreate,
            "legacy",
            None,
            None,
        );
        t.store.add_key(&record, &audit).await.unwrap();
        let caller = t.here.authenticate(&legacy).await.unwrap().unwrap();
        assert_eq!((caller.key_id, caller.scopes), (None, Scopes::ADMIN));
        assert!(
            t.here
                .revoke_presented(&legacy, &Origin::operator())
                .await
                .unwrap()
        );
        assert!(t.here.authenticate(&legacy).await.unwrap().is_none());
        assert!(
            !t.here
                .revoke_presented(&legacy, &Origin::operator())
                .await
                .unwrap()
        );
        // A current key presented to the command line is revoked the same way.
        assert!(
            t.here
                .revoke_presented(&created.api_key, &Origin::operator())
                .await
                .unwrap()
        );
        assert!(
            t.elsewhere
                .authenticate(&created.api_key)
                .await
                .unwrap()
                .is_none()
        );
    }
}
