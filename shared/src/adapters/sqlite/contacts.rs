//! [`ContactStore`] on SQLite: `contacts` (the number, name and attributes sealed, the
//! number's tag unique per tenant) and `contact_lists` (a row per membership), changed
//! together in one write.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{from_nanos, nanos, parse, sql_int};
use super::error::{Failure, is_constraint};
use crate::adapters::vault::Vault;
use crate::domain::{Contact, ContactId, ListName, PhoneNumber, TenantId};
use crate::ports::contacts::MAX_CONTACT_PAGE;
use crate::ports::{ContactPage, ContactQuery, ContactStore, StoreError};

const COLUMNS: &str = "id, sealed, lists, created_at, updated_at, version";

/// A contact's columns as read.
struct Row {
    id: String,
    sealed: Vec<u8>,
    lists: String,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            sealed: r.get(1)?,
            lists: r.get(2)?,
            created_at: r.get(3)?,
            updated_at: r.get(4)?,
            version: r.get(5)?,
        })
    }
}

async fn open(
    vault: &Vault,
    tenant: &TenantId,
    rows: Vec<Row>,
) -> Result<Vec<Contact>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let key = vault.opening_key(tenant).await?;
    rows.into_iter()
        .map(|row| {
            let id: ContactId = parse(&row.id, "contact id")?;
            let (phone, details) = key
                .open_contact(tenant, &id, &row.sealed)
                .map_err(|e| Failure::Corrupt(format!("contact {id}: {e}")))?;
            let lists = serde_json::from_str(&row.lists)
                .map_err(|e| Failure::Corrupt(format!("contact {id}: lists: {e}")))?;
            Ok(Contact {
                id,
                tenant_id: tenant.clone(),
                phone,
                details,
                lists,
                created_at: from_nanos(row.created_at),
                updated_at: from_nanos(row.updated_at),
                version: u32::try_from(row.version)
                    .map_err(|_| Failure::Corrupt("contact version".into()))?,
            })
        })
        .collect::<Result<_, Failure>>()
        .map_err(Into::into)
}

/// Moves a contact from the lists `before` to the lists `after`, row by row through the
/// primary key (a contact's rows are never looked up by contact alone: that has no index).
fn move_lists(
    conn: &Connection,
    tenant: &str,
    id: &str,
    before: &[String],
    after: &[String],
) -> Result<(), Failure> {
    let mut remove = conn.prepare_cached(
        "DELETE FROM contact_lists WHERE tenant_id = ?1 AND list = ?2 AND contact = ?3",
    )?;
    for list in before.iter().filter(|l| !after.contains(l)) {
        remove.execute(params![tenant, list, id])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO contact_lists (tenant_id, list, contact) VALUES (?1, ?2, ?3)",
    )?;
    for list in after.iter().filter(|l| !before.contains(l)) {
        insert.execute(params![tenant, list, id])?;
    }
    Ok(())
}

/// The lists a stored contact row names.
fn stored_lists(json: &str) -> Result<Vec<String>, Failure> {
    serde_json::from_str(json).map_err(|e| Failure::Corrupt(format!("contact lists: {e}")))
}

/// A contact ready to write: sealed, tagged, its lists in both forms.
struct Staged {
    tenant: String,
    id: String,
    tag: [u8; 16],
    sealed: Vec<u8>,
    lists: Vec<String>,
    lists_json: String,
    created: i64,
    updated: i64,
    version: i64,
}

impl SqliteBackend {
    async fn stage(&self, contact: &Contact) -> Result<Staged, StoreError> {
        let key = self.vault.sealing_key(&contact.tenant_id).await?;
        let lists: Vec<String> = contact
            .lists
            .iter()
            .map(|l| l.as_str().to_owned())
            .collect();
        let lists_json = serde_json::to_string(&lists)
            .map_err(|e| StoreError::Corrupt(format!("contact lists: {e}")))?;
        Ok(Staged {
            tenant: contact.tenant_id.as_str().to_owned(),
            id: contact.id.to_string(),
            tag: key.number_tag(&contact.phone),
            sealed: key.seal_contact(
                &contact.tenant_id,
                &contact.id,
                &contact.phone,
                &contact.details,
            ),
            lists,
            lists_json,
            created: nanos(contact.created_at)?,
            updated: nanos(contact.updated_at)?,
            version: i64::from(contact.version),
        })
    }
}

/// Writes a staged contact as [`ContactStore::put`] says.
fn write_staged(conn: &Connection, s: &Staged) -> Result<(), Failure> {
    let Staged {
        tenant: t,
        id,
        tag,
        sealed,
        lists,
        lists_json,
        created,
        updated,
        version,
    } = s;
    let (created, updated, version) = (*created, *updated, *version);
    if version <= 1 {
        let inserted = conn
            .prepare_cached(
                "INSERT INTO contacts (tenant_id, id, number_tag, sealed, lists, \
                 created_at, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                t,
                id,
                tag.as_slice(),
                sealed,
                lists_json,
                created,
                updated,
                version
            ]);
        match inserted {
            Ok(_) => {}
            Err(e) if is_constraint(&e) => return Err(Failure::AlreadyExists),
            Err(e) => return Err(e.into()),
        }
        move_lists(conn, t, id, &[], lists)
    } else {
        let current: Option<(i64, Vec<u8>, String)> = conn
            .prepare_cached(
                "SELECT version, number_tag, lists FROM contacts \
                 WHERE tenant_id = ?1 AND id = ?2",
            )?
            .query_row(params![t, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let before = match current {
            None => return Err(Failure::NotFound),
            Some((v, stored, _)) if v != version - 1 || stored != tag.as_slice() => {
                return Err(Failure::AlreadyExists);
            }
            Some((_, _, before)) => stored_lists(&before)?,
        };
        conn.prepare_cached(
            "UPDATE contacts SET sealed = ?3, lists = ?4, updated_at = ?5, version = ?6 \
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![t, id, sealed, lists_json, updated, version])?;
        move_lists(conn, t, id, &before, lists)
    }
}

#[async_trait]
impl ContactStore for SqliteBackend {
    async fn find(
        &self,
        tenant: &TenantId,
        phones: &[&PhoneNumber],
    ) -> Result<Vec<Option<Contact>>, StoreError> {
        if phones.is_empty() {
            return Ok(Vec::new());
        }
        let Some(key) = self.vault.held_key(tenant).await? else {
            return Ok(phones.iter().map(|_| None).collect());
        };
        let tags: Vec<[u8; 16]> = phones.iter().map(|p| key.number_tag(p)).collect();
        let t = tenant.as_str().to_owned();
        let rows: Vec<Option<Row>> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM contacts WHERE tenant_id = ?1 AND number_tag = ?2"
                ))?;
                tags.iter()
                    .map(|tag| {
                        Ok(stmt
                            .query_row(params![t, tag.as_slice()], Row::read)
                            .optional()?)
                    })
                    .collect()
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(match row {
                None => None,
                Some(row) => open(&self.vault, tenant, vec![row]).await?.pop(),
            });
        }
        Ok(out)
    }

    async fn get(&self, tenant: &TenantId, id: &ContactId) -> Result<Option<Contact>, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.to_string());
        let row = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM contacts WHERE tenant_id = ?1 AND id = ?2"
                    ))?
                    .query_row(params![t, i], Row::read)
                    .optional()?)
            })
            .await?;
        Ok(open(&self.vault, tenant, row.into_iter().collect())
            .await?
            .pop())
    }

    async fn put(&self, contact: &Contact) -> Result<(), StoreError> {
        let staged = self.stage(contact).await?;
        self.db
            .write(move |conn| write_staged(conn, &staged))
            .await
            .map_err(Into::into)
    }

    async fn put_many(&self, contacts: &[Contact]) -> Vec<Result<(), StoreError>> {
        let mut staged = Vec::with_capacity(contacts.len());
        for c in contacts {
            match self.stage(c).await {
                Ok(s) => staged.push(s),
                Err(e) => {
                    // A key that cannot be had fails them all alike.
                    let mut out = vec![Err(e)];
                    out.extend(
                        contacts[1..]
                            .iter()
                            .map(|_| Err(StoreError::Unavailable("the tenant's data key".into()))),
                    );
                    return out;
                }
            }
        }
        let n = staged.len();
        // One job, so one commit; each contact in a savepoint of its own, so one refused
        // contact leaves the others written.
        let written = self
            .db
            .write(move |conn| {
                let mut results = Vec::with_capacity(staged.len());
                for s in &staged {
                    conn.execute_batch("SAVEPOINT contact_put")?;
                    let result = write_staged(conn, s);
                    if result.is_err() {
                        conn.execute_batch("ROLLBACK TO contact_put")?;
                    }
                    conn.execute_batch("RELEASE contact_put")?;
                    results.push(result);
                }
                Ok(results)
            })
            .await;
        match written {
            Ok(results) => results.into_iter().map(|r| r.map_err(Into::into)).collect(),
            Err(e) => {
                let e: StoreError = e.into();
                let text = e.to_string();
                let mut out = vec![Err(e)];
                out.extend((1..n).map(|_| Err(StoreError::Unavailable(text.clone().into()))));
                out
            }
        }
    }

    async fn delete(&self, tenant: &TenantId, id: &ContactId) -> Result<bool, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.to_string());
        self.db
            .write(move |conn| {
                let before: Option<String> = conn
                    .prepare_cached(
                        "DELETE FROM contacts WHERE tenant_id = ?1 AND id = ?2 RETURNING lists",
                    )?
                    .query_row(params![t, i], |r| r.get(0))
                    .optional()?;
                let Some(before) = before else {
                    return Ok(false);
                };
                move_lists(conn, &t, &i, &stored_lists(&before)?, &[])?;
                Ok(true)
            })
            .await
            .map_err(Into::into)
    }

    async fn list(
        &self,
        tenant: &TenantId,
        query: &ContactQuery,
    ) -> Result<ContactPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_CONTACT_PAGE);
        let t = tenant.as_str().to_owned();
        let after = query
            .after
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let list = query.list.as_ref().map(|l| l.as_str().to_owned());
        let take = sql_int(limit);
        let rows: Vec<Row> = self
            .db
            .read(move |conn| {
                let sql = match list {
                    None => format!(
                        "SELECT {COLUMNS} FROM contacts WHERE tenant_id = ?1 AND id > ?2 \
                         ORDER BY id LIMIT ?3"
                    ),
                    Some(_) => format!(
                        "SELECT {COLUMNS} FROM contact_lists AS l JOIN contacts AS c \
                         ON c.tenant_id = l.tenant_id AND c.id = l.contact \
                         WHERE l.tenant_id = ?1 AND l.list = ?4 AND l.contact > ?2 \
                         ORDER BY l.contact LIMIT ?3"
                    ),
                };
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = match &list {
                    None => stmt.query_map(params![t, after, take], Row::read)?,
                    Some(l) => stmt.query_map(params![t, after, take, l], Row::read)?,
                };
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let contacts = open(&self.vault, tenant, rows).await?;
        let next = (contacts.len() == limit)
            .then(|| contacts.last().map(|c| c.id.clone()))
            .flatten();
        Ok(ContactPage { contacts, next })
    }

    async fn count(&self, tenant: &TenantId, list: &ListName) -> Result<u64, StoreError> {
        let (t, l) = (tenant.as_str().to_owned(), list.as_str().to_owned());
        let n: i64 = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT count(*) FROM contact_lists WHERE tenant_id = ?1 AND list = ?2",
                    )?
                    .query_row(params![t, l], |r| r.get(0))?)
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn lists(&self, tenant: &TenantId) -> Result<Vec<ListName>, StoreError> {
        let t = tenant.as_str().to_owned();
        let names: Vec<String> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT list FROM contact_lists WHERE tenant_id = ?1 ORDER BY list",
                )?;
                let rows = stmt.query_map(params![t], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        names
            .iter()
            .map(|n| ListName::parse(n).map_err(|_| StoreError::Corrupt(format!("list {n:?}"))))
            .collect()
    }
}
