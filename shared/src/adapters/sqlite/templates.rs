//! [`TemplateStore`] on SQLite: `templates`, a row per template (its latest version, its
//! name in lower case, and `deleted_at` once deleted: a partial unique index keeps a name to
//! one live template of a tenant), and `template_versions`, a row per version, never changed
//! once written. A version is stored with its template's row in one write. The text is the
//! tenant's own copy, stored plain.

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{from_nanos, nanos, parse, sql_int};
use super::error::{Failure, is_constraint};
use crate::domain::{TemplateId, TemplateName, TemplateText, TemplateVersion, TenantId};
use crate::ports::templates::MAX_TEMPLATE_PAGE;
use crate::ports::{StoreError, TemplatePage, TemplateStore};

/// The columns of `template_versions` that make a version (the tenant aside), in the order
/// [`Row::read`] reads them, each named with the table's alias `v`.
const COLUMNS: &str = "v.id, v.version, v.name, v.text, v.category, v.created_at";

/// A version's columns as read.
struct Row {
    id: String,
    version: i64,
    name: String,
    text: String,
    category: String,
    created_at: i64,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            version: r.get(1)?,
            name: r.get(2)?,
            text: r.get(3)?,
            category: r.get(4)?,
            created_at: r.get(5)?,
        })
    }

    fn into_version(self, tenant: &TenantId) -> Result<TemplateVersion, Failure> {
        let id: TemplateId = parse(&self.id, "template id")?;
        let corrupt = |what: &str| Failure::Corrupt(format!("template {id}: {what}"));
        Ok(TemplateVersion {
            tenant_id: tenant.clone(),
            version: u32::try_from(self.version).map_err(|_| corrupt("version"))?,
            name: TemplateName::parse(&self.name).map_err(|_| corrupt("name"))?,
            text: TemplateText::parse(&self.text).map_err(|_| corrupt("text"))?,
            category: parse(&self.category, "template category")?,
            created_at: from_nanos(self.created_at),
            id,
        })
    }
}

fn versions(tenant: &TenantId, rows: Vec<Row>) -> Result<Vec<TemplateVersion>, StoreError> {
    rows.into_iter()
        .map(|row| row.into_version(tenant))
        .collect::<Result<_, Failure>>()
        .map_err(Into::into)
}

/// A constraint refused is [`Failure::AlreadyExists`]: an id, a version or a live name taken.
fn taken(e: rusqlite::Error) -> Failure {
    if is_constraint(&e) {
        Failure::AlreadyExists
    } else {
        e.into()
    }
}

/// A version as bound to the statements of [`put_version`].
struct Write {
    tenant: String,
    id: String,
    version: i64,
    name: String,
    name_key: String,
    text: String,
    category: &'static str,
    created_at: i64,
}

/// Stores `w` inside the writer's savepoint: its template's row and its own.
fn put_version(conn: &Connection, w: &Write) -> Result<(), Failure> {
    if w.version == 1 {
        conn.prepare_cached(
            "INSERT INTO templates (tenant_id, id, name_key, latest) VALUES (?1, ?2, ?3, 1)",
        )?
        .execute(params![w.tenant, w.id, w.name_key])
        .map_err(taken)?;
    } else {
        let head: Option<(i64, Option<i64>)> = conn
            .prepare_cached(
                "SELECT latest, deleted_at FROM templates WHERE tenant_id = ?1 AND id = ?2",
            )?
            .query_row(params![w.tenant, w.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match head {
            None | Some((_, Some(_))) => return Err(Failure::NotFound),
            Some((latest, None)) if latest != w.version - 1 => {
                return Err(Failure::AlreadyExists);
            }
            Some(_) => {}
        }
        conn.prepare_cached(
            "UPDATE templates SET name_key = ?3, latest = ?4 WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![w.tenant, w.id, w.name_key, w.version])
        .map_err(taken)?;
    }
    conn.prepare_cached(
        "INSERT INTO template_versions (tenant_id, id, version, name, text, category, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        w.tenant,
        w.id,
        w.version,
        w.name,
        w.text,
        w.category,
        w.created_at
    ])
    .map_err(taken)?;
    Ok(())
}

#[async_trait]
impl TemplateStore for SqliteBackend {
    async fn put(&self, version: &TemplateVersion) -> Result<(), StoreError> {
        if version.version == 0 {
            return Err(StoreError::Corrupt(
                "a template's versions are numbered from 1".into(),
            ));
        }
        let w = Write {
            tenant: version.tenant_id.as_str().to_owned(),
            id: version.id.to_string(),
            version: i64::from(version.version),
            name: version.name.as_str().to_owned(),
            name_key: version.name.key(),
            text: version.text.as_str().to_owned(),
            category: version.category.as_str(),
            created_at: nanos(version.created_at)?,
        };
        self.db
            .write(move |conn| put_version(conn, &w))
            .await
            .map_err(Into::into)
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &TemplateId,
        version: Option<u32>,
    ) -> Result<Option<TemplateVersion>, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.to_string());
        let row = self
            .db
            .read(move |conn| {
                let row = match version {
                    // Any version the tenant ever stored, its template deleted or not.
                    Some(v) => conn
                        .prepare_cached(&format!(
                            "SELECT {COLUMNS} FROM template_versions AS v \
                             WHERE v.tenant_id = ?1 AND v.id = ?2 AND v.version = ?3"
                        ))?
                        .query_row(params![t, i, i64::from(v)], Row::read),
                    // The latest of a live template.
                    None => conn
                        .prepare_cached(&format!(
                            "SELECT {COLUMNS} FROM templates AS t JOIN template_versions AS v \
                             ON v.tenant_id = t.tenant_id AND v.id = t.id AND v.version = t.latest \
                             WHERE t.tenant_id = ?1 AND t.id = ?2 AND t.deleted_at IS NULL"
                        ))?
                        .query_row(params![t, i], Row::read),
                };
                Ok(row.optional()?)
            })
            .await?;
        Ok(versions(tenant, row.into_iter().collect())?.pop())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&TemplateId>,
        limit: usize,
    ) -> Result<TemplatePage, StoreError> {
        let limit = limit.clamp(1, MAX_TEMPLATE_PAGE);
        let t = tenant.as_str().to_owned();
        let after = after.map(ToString::to_string).unwrap_or_default();
        let take = sql_int(limit);
        let rows: Vec<Row> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM templates AS t JOIN template_versions AS v \
                     ON v.tenant_id = t.tenant_id AND v.id = t.id AND v.version = t.latest \
                     WHERE t.tenant_id = ?1 AND t.id > ?2 AND t.deleted_at IS NULL \
                     ORDER BY t.id LIMIT ?3"
                ))?;
                let rows = stmt.query_map(params![t, after, take], Row::read)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        let templates = versions(tenant, rows)?;
        let next = (templates.len() == limit)
            .then(|| templates.last().map(|v| v.id.clone()))
            .flatten();
        Ok(TemplatePage { templates, next })
    }

    async fn delete(&self, tenant: &TenantId, id: &TemplateId) -> Result<bool, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.to_string());
        let now = nanos(Utc::now())?;
        self.db
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE templates SET deleted_at = ?3 \
                         WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
                    )?
                    .execute(params![t, i, now])?;
                Ok(changed > 0)
            })
            .await
            .map_err(Into::into)
    }
}
