//! [`ReplayStore`] on SQLite: one row per applied receipt request, until it expires.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::SqliteBackend;
use super::codec::{nanos, sql_int};
use crate::ports::{ReplayStore, RequestDigest, StoreError};

#[async_trait]
impl ReplayStore for SqliteBackend {
    async fn seen(&self, digest: &RequestDigest, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (digest, now) = (digest.to_vec(), nanos(now)?);
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT 1 FROM receipt_replays WHERE digest = ?1 AND expires_at > ?2",
                    )?
                    .exists(params![digest, now])?)
            })
            .await
            .map_err(Into::into)
    }

    async fn remember(
        &self,
        digest: &RequestDigest,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (digest, until) = (digest.to_vec(), nanos(until)?);
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO receipt_replays (digest, expires_at) VALUES (?1, ?2) \
                     ON CONFLICT (digest) DO UPDATE SET \
                     expires_at = max(expires_at, excluded.expires_at)",
                )?
                .execute(params![digest, until])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn forget_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        let (now, limit) = (nanos(now)?, sql_int(limit));
        self.db
            .write(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "DELETE FROM receipt_replays WHERE digest IN \
                         (SELECT digest FROM receipt_replays WHERE expires_at <= ?1 LIMIT ?2)",
                    )?
                    .execute(params![now, limit])?)
            })
            .await
            .map_err(Into::into)
    }
}
