//! Tenants' wrapped data keys in `tenant_keys`, erasure, and the sealing of rows stored before
//! sealing existed.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{column, nanos, parse};
use super::db::Db;
use crate::adapters::vault::{KeyShelf, StoredKey};
use crate::domain::{MessageId, PhoneNumber, TenantId};
use crate::ports::StoreError;

/// The wrapped keys of one database. Holds it weakly: the backend's handles own it, so the
/// last one closing still closes it.
pub(super) struct Shelf(pub(super) Weak<Db>);

impl Shelf {
    fn db(&self) -> Result<Arc<Db>, StoreError> {
        self.0
            .upgrade()
            .ok_or_else(|| StoreError::Unavailable("the database is closed".into()))
    }
}

fn stored(row: Option<(Option<Vec<u8>>, Option<i64>)>) -> StoredKey {
    match row {
        None => StoredKey::Absent,
        Some((_, Some(_))) | Some((None, None)) => StoredKey::Erased,
        Some((Some(wrapped), None)) => StoredKey::Wrapped(wrapped),
    }
}

const SELECT_KEY: &str = "SELECT wrapped, erased_at FROM tenant_keys WHERE tenant_id = ?1";

#[async_trait]
impl KeyShelf for Shelf {
    async fn load(&self, tenant: &TenantId) -> Result<StoredKey, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let row = self
            .db()?
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(SELECT_KEY)?
                    .query_row(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            })
            .await?;
        Ok(stored(row))
    }

    async fn store_new(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<StoredKey, StoreError> {
        let (tenant, wrapped) = (tenant.as_str().to_owned(), wrapped.to_vec());
        let now = nanos(Utc::now())?;
        let row = self
            .db()?
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO tenant_keys (tenant_id, wrapped, created_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant_id) DO NOTHING",
                )?
                .execute(params![tenant, wrapped, now])?;
                Ok(conn
                    .prepare_cached(SELECT_KEY)?
                    .query_row(params![tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            })
            .await?;
        Ok(stored(row))
    }
}

/// Rows sealed per call of [`SqliteBackend::seal_legacy`].
const LEGACY_BATCH: i64 = 500;

impl SqliteBackend {
    /// Seals up to a batch of rows stored before sealing (their numbers and texts, and the
    /// answers of idempotency records), emptying the plain columns; answers how many rows
    /// it sealed, 0 when none are left. Run by `holub serve` at start until done.
    pub(super) async fn seal_legacy_batch(&self) -> Result<usize, StoreError> {
        type Legacy = (i64, String, String, String, String);
        type LegacyAnswer = (String, String, String, String);
        // Both kinds of row in one read.
        let (rows, answers) = self
            .db
            .read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, tenant_id, id, to_number, text FROM messages \
                     WHERE sealed IS NULL ORDER BY seq LIMIT ?1",
                )?;
                let mut found = stmt.query(params![LEGACY_BATCH])?;
                let mut rows: Vec<Legacy> = Vec::new();
                while let Some(row) = found.next()? {
                    rows.push((
                        column(row, 0, "seq")?,
                        column(row, 1, "tenant_id")?,
                        column(row, 2, "id")?,
                        column(row, 3, "to_number")?,
                        column(row, 4, "text")?,
                    ));
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT tenant_id, key, body, fingerprint FROM idempotency \
                     WHERE sealed IS NULL LIMIT ?1",
                )?;
                let mut found = stmt.query(params![LEGACY_BATCH])?;
                let mut answers: Vec<LegacyAnswer> = Vec::new();
                while let Some(row) = found.next()? {
                    answers.push((
                        column(row, 0, "tenant_id")?,
                        column(row, 1, "key")?,
                        column(row, 2, "body")?,
                        column(row, 3, "fingerprint")?,
                    ));
                }
                Ok((rows, answers))
            })
            .await?;
        if rows.is_empty() && answers.is_empty() {
            return Ok(0);
        }
        let mut sealed_rows = Vec::with_capacity(rows.len());
        for (seq, tenant, id, to, text) in rows {
            let tenant_id = parse::<TenantId>(&tenant, "tenant id")?;
            let id = parse::<MessageId>(&id, "message id")?;
            let to = PhoneNumber::parse(&to)
                .map_err(|e| StoreError::Corrupt(format!("message {id}: to: {e}")))?;
            let key = match self.vault.sealing_key(&tenant_id).await {
                Ok(key) => key,
                // An erased tenant's plain rows are emptied, not sealed.
                Err(StoreError::Erased) => {
                    sealed_rows.push((seq, Vec::new(), Vec::new()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let sealed = key.seal_message(&tenant_id, &id, &to, &text);
            sealed_rows.push((seq, sealed, key.number_tag(&to).to_vec()));
        }
        let mut sealed_answers = Vec::with_capacity(answers.len());
        for (tenant, idem, body, fingerprint) in answers {
            let tenant_id = parse::<TenantId>(&tenant, "tenant id")?;
            let body: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("idempotency body: {e}")))?;
            let (sealed, tag) = match self.vault.sealing_key(&tenant_id).await {
                Ok(key) => (
                    key.seal_answer(&tenant_id, &idem, &fingerprint, &body),
                    key.fingerprint_tag(&fingerprint),
                ),
                Err(StoreError::Erased) => (Vec::new(), String::new()),
                Err(e) => return Err(e),
            };
            sealed_answers.push((tenant, idem, sealed, tag));
        }
        let count = sealed_rows.len() + sealed_answers.len();
        self.db
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE messages SET sealed = ?2, to_tag = ?3, to_number = '', text = '' \
                     WHERE seq = ?1 AND sealed IS NULL",
                )?;
                for (seq, sealed, tag) in &sealed_rows {
                    let tag = (!tag.is_empty()).then_some(tag);
                    stmt.execute(params![seq, sealed, tag])?;
                }
                let mut stmt = conn.prepare_cached(
                    "UPDATE idempotency SET sealed = ?3, fingerprint = ?4, body = '' \
                     WHERE tenant_id = ?1 AND key = ?2 AND sealed IS NULL",
                )?;
                for (tenant, key, sealed, tag) in &sealed_answers {
                    stmt.execute(params![tenant, key, sealed, tag])?;
                }
                Ok(())
            })
            .await?;
        Ok(count)
    }
}
