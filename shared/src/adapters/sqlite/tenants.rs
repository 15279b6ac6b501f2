//! [`TenantStore`] on SQLite: tenants, API keys, senders and the audit log. Every
//! administrative change and its audit entry are one writer request, so one savepoint: both
//! or neither.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteBackend;
use super::codec::{column, from_nanos, nanos, parse, sql_int};
use super::error::{Failure, is_constraint};
use crate::domain::{
    ApiKeyRecord, AuditEntry, KeyId, KeyName, Scopes, SenderId, SenderRecord, TenantId,
    TenantLimits,
};
use crate::ports::store::KeyEnd;
use crate::ports::{StoreError, Tenant, TenantStore};

const KEY_COLUMNS: &str = "id, tenant_id, key_hash, name, scopes, created_at, expires_at, \
                           last_used_at, revoked_at";

/// A key row as stored, parsed outside the database thread.
struct RawKey {
    id: Option<String>,
    tenant: String,
    hash: String,
    name: Option<String>,
    scopes: String,
    created_at: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl RawKey {
    fn from_row(row: &Row<'_>) -> Result<Self, Failure> {
        Ok(RawKey {
            id: column(row, 0, "id")?,
            tenant: column(row, 1, "tenant_id")?,
            hash: column(row, 2, "key_hash")?,
            name: column(row, 3, "name")?,
            scopes: column(row, 4, "scopes")?,
            created_at: column(row, 5, "created_at")?,
            expires_at: column(row, 6, "expires_at")?,
            last_used_at: column(row, 7, "last_used_at")?,
            revoked_at: column(row, 8, "revoked_at")?,
        })
    }

    fn parse(self) -> Result<ApiKeyRecord, Failure> {
        let corrupt = |what: &str| Failure::Corrupt(format!("api key {what} cannot be parsed"));
        Ok(ApiKeyRecord {
            id: self
                .id
                .map(|id| parse::<KeyId>(&id, "key id"))
                .transpose()?,
            tenant_id: parse(&self.tenant, "tenant id")?,
            hash: self.hash,
            name: self
                .name
                .map(|n| KeyName::parse(&n).map_err(|_| corrupt("name")))
                .transpose()?,
            scopes: Scopes::parse(&self.scopes).map_err(|_| corrupt("scopes"))?,
            created_at: self.created_at.map(from_nanos),
            expires_at: self.expires_at.map(from_nanos),
            last_used_at: self.last_used_at.map(from_nanos),
            revoked_at: self.revoked_at.map(from_nanos),
        })
    }
}

fn optional_nanos(at: Option<DateTime<Utc>>) -> Result<Option<i64>, Failure> {
    at.map(nanos).transpose()
}

fn taken(e: rusqlite::Error) -> Failure {
    if is_constraint(&e) {
        Failure::AlreadyExists
    } else {
        e.into()
    }
}

fn insert_key(conn: &Connection, key: &ApiKeyRecord) -> Result<(), Failure> {
    conn.prepare_cached(
        "INSERT INTO api_keys (id, tenant_id, key_hash, name, scopes, created_at, expires_at, \
         last_used_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        key.id.as_ref().map(KeyId::as_str),
        key.tenant_id.as_str(),
        key.hash,
        key.name.as_ref().map(KeyName::as_str),
        key.scopes.to_list(),
        optional_nanos(key.created_at)?,
        optional_nanos(key.expires_at)?,
        optional_nanos(key.last_used_at)?,
        optional_nanos(key.revoked_at)?,
    ])
    .map_err(taken)?;
    Ok(())
}

fn insert_audit(conn: &Connection, entry: &AuditEntry) -> Result<(), Failure> {
    let json =
        serde_json::to_string(entry).map_err(|e| Failure::Corrupt(format!("audit entry: {e}")))?;
    conn.prepare_cached("INSERT INTO audit_log (tenant_id, id, entry) VALUES (?1, ?2, ?3)")?
        .execute(params![entry.tenant_id.as_str(), entry.id, json])
        .map_err(taken)?;
    Ok(())
}

fn tenant_exists(conn: &Connection, tenant: &str) -> Result<bool, Failure> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .exists([tenant])?)
}

fn key_by_id(conn: &Connection, id: &str) -> Result<Option<RawKey>, Failure> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id])?;
    rows.next()?.map(RawKey::from_row).transpose()
}

impl SqliteBackend {
    /// Runs `write` in one writer request if the tenant exists; `NotFound` if it does not.
    async fn of_tenant<F>(&self, tenant: String, write: F) -> Result<(), StoreError>
    where
        F: FnOnce(&Connection) -> Result<(), Failure> + Send + 'static,
    {
        let done = self
            .db
            .write(move |conn| {
                if !tenant_exists(conn, &tenant)? {
                    return Ok(false);
                }
                write(conn).map(|()| true)
            })
            .await?;
        if done {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }
}

#[async_trait]
impl TenantStore for SqliteBackend {
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        first_key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (tenant, key, audit) = (tenant.clone(), first_key.clone(), audit.clone());
        let created_at = nanos(tenant.created_at)?;
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![tenant.id.as_str(), tenant.name, created_at])
                .map_err(taken)?;
                insert_key(conn, &key)?;
                insert_audit(conn, &audit)
            })
            .await
            .map_err(Into::into)
    }

    async fn api_key(
        &self,
        id: Option<&KeyId>,
        hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let (id, hash) = (id.map(|i| i.as_str().to_owned()), hash.to_owned());
        let raw = self
            .db
            .read(move |conn| match id {
                Some(id) => key_by_id(conn, &id),
                None => {
                    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1");
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let mut rows = stmt.query([&hash])?;
                    rows.next()?.map(RawKey::from_row).transpose()
                }
            })
            .await?;
        Ok(raw.map(RawKey::parse).transpose()?)
    }

    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError> {
        let audit = audit.clone();
        let tenant = audit.tenant_id.as_str().to_owned();
        self.of_tenant(tenant, move |conn| insert_audit(conn, &audit))
            .await
    }

    async fn add_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> Result<(), StoreError> {
        let (key, audit) = (key.clone(), audit.clone());
        let tenant = key.tenant_id.as_str().to_owned();
        self.of_tenant(tenant, move |conn| {
            insert_key(conn, &key)?;
            insert_audit(conn, &audit)
        })
        .await
    }

    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let raw = self
            .db
            .read(move |conn| {
                let sql = format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys \
                     WHERE tenant_id = ?1 AND id IS NOT NULL ORDER BY id"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query([&tenant])?;
                let mut keys = Vec::new();
                while let Some(row) = rows.next()? {
                    keys.push(RawKey::from_row(row)?);
                }
                Ok(keys)
            })
            .await?;
        Ok(raw
            .into_iter()
            .map(RawKey::parse)
            .collect::<Result<_, _>>()?)
    }

    async fn end_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        end: KeyEnd,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let (tenant, id, audit) = (
            tenant.as_str().to_owned(),
            id.as_str().to_owned(),
            audit.clone(),
        );
        let (revoked, until, new) = match end {
            KeyEnd::Revoke(at) => (Some(nanos(at)?), None, None),
            KeyEnd::Rotate { new, old_until } => (None, Some(nanos(old_until)?), Some(new)),
        };
        let raw = self
            .db
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = coalesce(?3, revoked_at), \
                         expires_at = CASE WHEN ?4 IS NOT NULL \
                             AND (expires_at IS NULL OR expires_at > ?4) THEN ?4 \
                             ELSE expires_at END \
                         WHERE id = ?1 AND tenant_id = ?2 AND revoked_at IS NULL",
                    )?
                    .execute(params![id, tenant, revoked, until])?;
                if changed == 0 {
                    return Ok(None);
                }
                if let Some(new) = &new {
                    insert_key(conn, new)?;
                }
                insert_audit(conn, &audit)?;
                key_by_id(conn, &id)
            })
            .await?;
        Ok(raw.map(RawKey::parse).transpose()?)
    }

    async fn revoke_legacy_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (hash, audit) = (hash.to_owned(), audit.clone());
        let at = nanos(at)?;
        self.db
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = ?2 \
                         WHERE key_hash = ?1 AND revoked_at IS NULL",
                    )?
                    .execute(params![hash, at])?;
                if changed > 0 {
                    insert_audit(conn, &audit)?;
                }
                Ok(changed > 0)
            })
            .await
            .map_err(Into::into)
    }

    async fn touch_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (tenant, id) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        let at = nanos(at)?;
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE api_keys SET last_used_at = ?3 WHERE id = ?1 AND tenant_id = ?2 \
                     AND (last_used_at IS NULL OR last_used_at < ?3)",
                )?
                .execute(params![id, tenant, at])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn audit_log(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        // Ids are ULIDs: "~" sorts after every one of them.
        let before = before.unwrap_or("~").to_owned();
        let limit = sql_int(limit);
        let raw: Vec<String> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT entry FROM audit_log WHERE tenant_id = ?1 AND id < ?2 \
                     ORDER BY id DESC LIMIT ?3",
                )?;
                let mut rows = stmt.query(params![tenant, before, limit])?;
                let mut entries = Vec::new();
                while let Some(row) = rows.next()? {
                    entries.push(column(row, 0, "entry")?);
                }
                Ok(entries)
            })
            .await?;
        raw.iter()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))
            })
            .collect()
    }

    async fn senders(&self, tenant: &TenantId) -> Result<Vec<SenderRecord>, StoreError> {
        let tenant_id = tenant.clone();
        let tenant = tenant.as_str().to_owned();
        let raw: Vec<(String, String, i64, i64)> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT sender, networks, created_at, updated_at FROM senders \
                     WHERE tenant_id = ?1 ORDER BY sender",
                )?;
                let mut rows = stmt.query([&tenant])?;
                let mut senders = Vec::new();
                while let Some(row) = rows.next()? {
                    senders.push((
                        column(row, 0, "sender")?,
                        column(row, 1, "networks")?,
                        column(row, 2, "created_at")?,
                        column(row, 3, "updated_at")?,
                    ));
                }
                Ok(senders)
            })
            .await?;
        raw.into_iter()
            .map(|(sender, networks, created, updated)| {
                Ok(SenderRecord {
                    tenant_id: tenant_id.clone(),
                    sender: SenderId::parse(&sender)
                        .map_err(|_| StoreError::Corrupt(format!("sender {sender:?}")))?,
                    networks: SenderRecord::parse_networks(&networks)
                        .map_err(StoreError::Corrupt)?,
                    created_at: from_nanos(created),
                    updated_at: from_nanos(updated),
                })
            })
            .collect()
    }

    async fn put_sender(
        &self,
        sender: &SenderRecord,
        new: bool,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let (record, audit) = (sender.clone(), audit.clone());
        let (created, updated) = (nanos(record.created_at)?, nanos(record.updated_at)?);
        let stored = self
            .db
            .write(move |conn| {
                let (tenant, name) = (record.tenant_id.as_str(), record.sender.as_str().to_owned());
                let networks = record.networks_list();
                let changed = if new {
                    if !tenant_exists(conn, tenant)? {
                        return Ok(false);
                    }
                    conn.prepare_cached(
                        "INSERT INTO senders (tenant_id, sender, networks, created_at, \
                         updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![tenant, name, networks, created, updated])
                    .map_err(taken)?
                } else {
                    conn.prepare_cached(
                        "UPDATE senders SET networks = ?3, updated_at = ?4 \
                         WHERE tenant_id = ?1 AND sender = ?2",
                    )?
                    .execute(params![tenant, name, networks, updated])?
                };
                if changed == 0 {
                    return Ok(false);
                }
                insert_audit(conn, &audit)?;
                Ok(true)
            })
            .await?;
        if stored {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn remove_sender(
        &self,
        tenant: &TenantId,
        sender: &SenderId,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (tenant, name, audit) = (
            tenant.as_str().to_owned(),
            sender.as_str().to_owned(),
            audit.clone(),
        );
        self.db
            .write(move |conn| {
                let removed = conn
                    .prepare_cached("DELETE FROM senders WHERE tenant_id = ?1 AND sender = ?2")?
                    .execute(params![tenant, name])?;
                if removed > 0 {
                    insert_audit(conn, &audit)?;
                }
                Ok(removed > 0)
            })
            .await
            .map_err(Into::into)
    }

    async fn limits(&self, tenant: &TenantId) -> Result<Option<TenantLimits>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let json: Option<String> = self
            .db
            .read(move |conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT limits FROM tenant_limits WHERE tenant_id = ?1")?;
                let mut rows = stmt.query([tenant])?;
                Ok(match rows.next()? {
                    Some(row) => Some(row.get(0)?),
                    None => None,
                })
            })
            .await?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("tenant limits: {e}")))
        })
        .transpose()
    }

    async fn retention_days(&self) -> Result<Vec<(TenantId, u32)>, StoreError> {
        let rows: Vec<(String, String)> = self
            .db
            .read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT tenant_id, limits FROM tenant_limits \
                     WHERE json_extract(limits, '$.retention_days') IS NOT NULL",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (tenant, json) in rows {
            let limits: TenantLimits = serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("tenant limits: {e}")))?;
            if let Some(days) = limits.retention_days {
                out.push((parse::<TenantId>(&tenant, "tenant id")?, days));
            }
        }
        Ok(out)
    }

    async fn erase_tenant(
        &self,
        tenant: &TenantId,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let (name, audit, at) = (tenant.as_str().to_owned(), audit.clone(), nanos(at)?);
        let erased = self
            .db
            .write(move |conn| {
                if !tenant_exists(conn, &name)? {
                    return Ok(None);
                }
                let live: Option<Option<i64>> = conn
                    .prepare_cached("SELECT erased_at FROM tenant_keys WHERE tenant_id = ?1")?
                    .query_row(params![name], |r| r.get(0))
                    .optional()?;
                conn.prepare_cached(
                    "INSERT INTO tenant_keys (tenant_id, wrapped, created_at, erased_at) \
                     VALUES (?1, NULL, ?2, ?2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET wrapped = NULL, \
                     erased_at = coalesce(erased_at, excluded.erased_at)",
                )?
                .execute(params![name, at])?;
                conn.prepare_cached(
                    "UPDATE api_keys SET revoked_at = ?2 \
                     WHERE tenant_id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![name, at])?;
                insert_audit(conn, &audit)?;
                Ok(Some(matches!(live, Some(None))))
            })
            .await?;
        self.vault.forget(tenant);
        erased.ok_or(StoreError::NotFound)
    }

    async fn put_limits(
        &self,
        tenant: &TenantId,
        limits: &TenantLimits,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(limits)
            .map_err(|e| StoreError::Corrupt(format!("tenant limits: {e}")))?;
        let (tenant, audit) = (tenant.as_str().to_owned(), audit.clone());
        self.of_tenant(tenant.clone(), move |conn| {
            conn.prepare_cached(
                "INSERT INTO tenant_limits (tenant_id, limits) VALUES (?1, ?2) \
                 ON CONFLICT (tenant_id) DO UPDATE SET limits = excluded.limits",
            )?
            .execute(params![tenant, json])?;
            insert_audit(conn, &audit)
        })
        .await
    }
}
