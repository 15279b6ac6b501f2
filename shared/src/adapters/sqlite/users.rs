//! [`UserStore`] on SQLite: `console_users` (a unique index keeps an address to one user),
//! `console_sessions` and `sign_in_failures` (see migration 14). A change that must keep a
//! tenant's last active owner reads and writes inside the writer, so two such changes never
//! both pass the check.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{from_nanos, nanos, nanos_bound, parse, sql_int};
use super::error::{Failure, is_constraint};
use crate::domain::{ConsoleUser, Email, Invitation, PasswordHash, Role, TenantId, UserId};
use crate::ports::users::MAX_USERS;
use crate::ports::{FailureWindow, SessionRecord, StoreError, UserRecord, UserStore, UserWrite};

/// The columns of `console_users` that make a [`UserRecord`], in the order [`Row::read`]
/// reads them.
const COLUMNS: &str = "tenant_id, id, email, role, password, invite_hash, invite_expires, \
                       sessions_since, created_at, version";

/// A user's columns as read.
struct Row {
    tenant: String,
    id: String,
    email: String,
    role: String,
    password: Option<String>,
    invite_hash: Option<String>,
    invite_expires: Option<i64>,
    sessions_since: i64,
    created_at: i64,
    version: i64,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            tenant: r.get(0)?,
            id: r.get(1)?,
            email: r.get(2)?,
            role: r.get(3)?,
            password: r.get(4)?,
            invite_hash: r.get(5)?,
            invite_expires: r.get(6)?,
            sessions_since: r.get(7)?,
            created_at: r.get(8)?,
            version: r.get(9)?,
        })
    }

    fn into_record(self) -> Result<UserRecord, Failure> {
        let id: UserId = parse(&self.id, "user id")?;
        let corrupt = |what: &str| Failure::Corrupt(format!("user {id}: {what}"));
        let invitation = match (self.invite_hash, self.invite_expires) {
            (Some(token_hash), Some(expires)) => Some(Invitation {
                token_hash,
                expires_at: from_nanos(expires),
            }),
            (None, None) => None,
            _ => return Err(corrupt("invitation")),
        };
        let version = u64::try_from(self.version).map_err(|_| corrupt("version"))?;
        Ok(UserRecord {
            user: ConsoleUser {
                tenant: parse(&self.tenant, "tenant id")?,
                email: Email::parse(&self.email).map_err(|_| corrupt("email"))?,
                role: Role::parse(&self.role).ok_or_else(|| corrupt("role"))?,
                created_at: from_nanos(self.created_at),
                pending: self.password.is_none(),
                id,
            },
            password: self.password.map(PasswordHash::from_phc),
            invitation,
            sessions_since: from_nanos(self.sessions_since),
            version,
        })
    }
}

/// A user as bound to the statements that write one.
struct Write {
    tenant: String,
    id: String,
    email: String,
    role: &'static str,
    password: Option<String>,
    invite_hash: Option<String>,
    invite_expires: Option<i64>,
    sessions_since: i64,
    created_at: i64,
    version: i64,
    active_owner: bool,
}

impl Write {
    fn new(r: &UserRecord) -> Result<Write, Failure> {
        let u = &r.user;
        Ok(Write {
            tenant: u.tenant.as_str().to_owned(),
            id: u.id.as_str().to_owned(),
            email: u.email.as_str().to_owned(),
            role: u.role.as_str(),
            password: r.password.as_ref().map(|p| p.as_str().to_owned()),
            invite_hash: r.invitation.as_ref().map(|i| i.token_hash.clone()),
            invite_expires: r
                .invitation
                .as_ref()
                .map(|i| nanos(i.expires_at))
                .transpose()?,
            sessions_since: nanos(r.sessions_since)?,
            created_at: nanos(u.created_at)?,
            version: i64::try_from(r.version)
                .map_err(|_| Failure::Corrupt("a user's version is out of range".into()))?,
            active_owner: r.active_owner(),
        })
    }
}

/// The stored version of the tenant's user `id` and whether they are an active owner.
fn stored(conn: &Connection, tenant: &str, id: &str) -> Result<Option<(i64, bool)>, Failure> {
    Ok(conn
        .prepare_cached(
            "SELECT version, role = 'owner' AND password IS NOT NULL FROM console_users \
             WHERE tenant_id = ?1 AND id = ?2",
        )?
        .query_row(params![tenant, id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Whether the tenant has an active owner other than `id`.
fn another_owner(conn: &Connection, tenant: &str, id: &str) -> Result<bool, Failure> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM console_users WHERE tenant_id = ?1 AND id != ?2 \
             AND role = 'owner' AND password IS NOT NULL LIMIT 1",
        )?
        .query_row(params![tenant, id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn user(row: Option<Row>) -> Result<Option<UserRecord>, StoreError> {
    Ok(row.map(Row::into_record).transpose()?)
}

impl SqliteBackend {
    /// Runs `sql`, one DELETE keyed by `?1`, on the writer.
    async fn delete_by(&self, sql: &'static str, key: String) -> Result<(), StoreError> {
        self.db
            .write(move |conn| {
                conn.prepare_cached(sql)?.execute(params![key])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl UserStore for SqliteBackend {
    async fn create(&self, user: &UserRecord) -> Result<(), StoreError> {
        if user.version != 1 {
            return Err(StoreError::Corrupt(
                "a new user is stored at version 1".into(),
            ));
        }
        let w = Write::new(user)?;
        self.db
            .write(move |conn| {
                let tenant = conn
                    .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
                    .query_row(params![w.tenant], |_| Ok(()))
                    .optional()?;
                if tenant.is_none() {
                    return Err(Failure::NotFound);
                }
                conn.prepare_cached(&format!(
                    "INSERT INTO console_users ({COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?
                .execute(params![
                    w.tenant,
                    w.id,
                    w.email,
                    w.role,
                    w.password,
                    w.invite_hash,
                    w.invite_expires,
                    w.sessions_since,
                    w.created_at,
                    w.version
                ])
                .map_err(|e| {
                    if is_constraint(&e) {
                        Failure::AlreadyExists
                    } else {
                        e.into()
                    }
                })?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn get_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let email = email.as_str().to_owned();
        let row = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM console_users WHERE email = ?1"
                    ))?
                    .query_row(params![email], Row::read)
                    .optional()?)
            })
            .await?;
        user(row)
    }

    async fn get(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        let row = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM console_users WHERE tenant_id = ?1 AND id = ?2"
                    ))?
                    .query_row(params![t, i], Row::read)
                    .optional()?)
            })
            .await?;
        user(row)
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let t = tenant.as_str().to_owned();
        let rows: Vec<Row> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM console_users WHERE tenant_id = ?1 ORDER BY id LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![t, sql_int(MAX_USERS)], Row::read)?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        rows.into_iter()
            .map(|row| row.into_record().map_err(Into::into))
            .collect()
    }

    async fn update(&self, user: &UserRecord) -> Result<UserWrite, StoreError> {
        let w = Write::new(user)?;
        self.db
            .write(move |conn| {
                let Some((version, was_owner)) = stored(conn, &w.tenant, &w.id)? else {
                    return Ok(UserWrite::NotFound);
                };
                if version != w.version - 1 {
                    return Ok(UserWrite::Stale);
                }
                if was_owner && !w.active_owner && !another_owner(conn, &w.tenant, &w.id)? {
                    return Ok(UserWrite::LastOwner);
                }
                conn.prepare_cached(
                    "UPDATE console_users SET role = ?3, password = ?4, invite_hash = ?5, \
                     invite_expires = ?6, sessions_since = ?7, version = ?8 \
                     WHERE tenant_id = ?1 AND id = ?2",
                )?
                .execute(params![
                    w.tenant,
                    w.id,
                    w.role,
                    w.password,
                    w.invite_hash,
                    w.invite_expires,
                    w.sessions_since,
                    w.version
                ])?;
                Ok(UserWrite::Done)
            })
            .await
            .map_err(Into::into)
    }

    async fn delete(&self, tenant: &TenantId, id: &UserId) -> Result<UserWrite, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.as_str().to_owned());
        self.db
            .write(move |conn| {
                let Some((_, owner)) = stored(conn, &t, &i)? else {
                    return Ok(UserWrite::NotFound);
                };
                if owner && !another_owner(conn, &t, &i)? {
                    return Ok(UserWrite::LastOwner);
                }
                conn.prepare_cached("DELETE FROM console_users WHERE tenant_id = ?1 AND id = ?2")?
                    .execute(params![t, i])?;
                Ok(UserWrite::Done)
            })
            .await
            .map_err(Into::into)
    }

    async fn erase_tenant(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let t = tenant.as_str().to_owned();
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM console_sessions WHERE tenant_id = ?1")?
                    .execute(params![t])?;
                Ok(conn
                    .prepare_cached("DELETE FROM console_users WHERE tenant_id = ?1")?
                    .execute(params![t])?)
            })
            .await
            .map_err(Into::into)
    }

    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        let (hash, user, tenant) = (
            session.token_hash.clone(),
            session.user.as_str().to_owned(),
            session.tenant.as_str().to_owned(),
        );
        let (created, expires) = (nanos(session.created_at)?, nanos(session.expires_at)?);
        self.db
            .write(move |conn| {
                // Sessions that had expired when this one began (on the service's clock).
                conn.prepare_cached("DELETE FROM console_sessions WHERE expires_at <= ?1")?
                    .execute(params![created])?;
                conn.prepare_cached(
                    "INSERT INTO console_sessions \
                     (token_hash, user_id, tenant_id, created_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![hash, user, tenant, created, expires])
                .map_err(|e| {
                    if is_constraint(&e) {
                        Failure::AlreadyExists
                    } else {
                        e.into()
                    }
                })?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let (hash, now) = (token_hash.to_owned(), nanos_bound(now));
        let row: Option<(String, String, String, i64, i64)> = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT token_hash, user_id, tenant_id, created_at, expires_at \
                         FROM console_sessions WHERE token_hash = ?1 AND expires_at > ?2",
                    )?
                    .query_row(params![hash, now], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .optional()?)
            })
            .await?;
        let Some((token_hash, user, tenant, created, expires)) = row else {
            return Ok(None);
        };
        Ok(Some(SessionRecord {
            token_hash,
            user: parse(&user, "user id")?,
            tenant: parse(&tenant, "tenant id")?,
            created_at: from_nanos(created),
            expires_at: from_nanos(expires),
        }))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.delete_by(
            "DELETE FROM console_sessions WHERE token_hash = ?1",
            token_hash.to_owned(),
        )
        .await
    }

    async fn record_failure(
        &self,
        email: &Email,
        at: DateTime<Utc>,
        window: Duration,
    ) -> Result<FailureWindow, StoreError> {
        let digest = email.digest();
        let window = chrono::Duration::from_std(window)
            .map_err(|_| StoreError::Corrupt("a sign-in window out of range".into()))?;
        let (at, ends) = (nanos(at)?, nanos(at + window)?);
        let (count, ends): (i64, i64) = self
            .db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM sign_in_failures WHERE window_ends <= ?1")?
                    .execute(params![at])?;
                Ok(conn
                    .prepare_cached(
                        "INSERT INTO sign_in_failures (email_digest, count, window_ends) \
                         VALUES (?1, 1, ?3) \
                         ON CONFLICT (email_digest) DO UPDATE SET \
                         count = CASE WHEN window_ends > ?2 THEN count + 1 ELSE 1 END, \
                         window_ends = CASE WHEN window_ends > ?2 THEN window_ends ELSE ?3 END \
                         RETURNING count, window_ends",
                    )?
                    .query_row(params![digest, at, ends], |r| Ok((r.get(0)?, r.get(1)?)))?)
            })
            .await?;
        Ok(FailureWindow {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            ends_at: from_nanos(ends),
        })
    }

    async fn failures(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureWindow>, StoreError> {
        let (digest, now) = (email.digest(), nanos_bound(now));
        let row: Option<(i64, i64)> = self
            .db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT count, window_ends FROM sign_in_failures \
                         WHERE email_digest = ?1 AND window_ends > ?2",
                    )?
                    .query_row(params![digest, now], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            })
            .await?;
        Ok(row.map(|(count, ends)| FailureWindow {
            count: u32::try_from(count).unwrap_or(u32::MAX),
            ends_at: from_nanos(ends),
        }))
    }

    async fn clear_failures(&self, email: &Email) -> Result<(), StoreError> {
        self.delete_by(
            "DELETE FROM sign_in_failures WHERE email_digest = ?1",
            email.digest(),
        )
        .await
    }
}
