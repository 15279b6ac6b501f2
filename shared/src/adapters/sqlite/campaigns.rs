//! [`CampaignStore`] on SQLite: `campaigns`, a row per campaign holding it whole as JSON
//! with its version, and the opt-outs through its messages counted in a column of their own.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteBackend;
use super::codec::sql_int;
use super::error::{Failure, is_constraint};
use crate::domain::{Campaign, CampaignId, TenantId};
use crate::ports::campaigns::MAX_CAMPAIGN_PAGE;
use crate::ports::{CampaignPage, CampaignStore, StoreError};

fn read(id: &str, body: &str, opted_out: i64) -> Result<Campaign, Failure> {
    let mut campaign: Campaign =
        serde_json::from_str(body).map_err(|e| Failure::Corrupt(format!("campaign {id}: {e}")))?;
    campaign.opted_out = u64::try_from(opted_out).unwrap_or(0);
    Ok(campaign)
}

#[async_trait]
impl CampaignStore for SqliteBackend {
    async fn put(&self, campaign: &Campaign) -> Result<(), StoreError> {
        if campaign.version == 0 {
            return Err(StoreError::Corrupt(
                "a campaign's versions are numbered from 1".into(),
            ));
        }
        let body = serde_json::to_string(campaign)
            .map_err(|e| StoreError::Corrupt(format!("campaign: {e}")))?;
        let (t, i, v) = (
            campaign.tenant_id.as_str().to_owned(),
            campaign.id.to_string(),
            i64::from(campaign.version),
        );
        self.db
            .write(move |conn| {
                if v == 1 {
                    conn.prepare_cached(
                        "INSERT INTO campaigns (tenant_id, id, version, body) VALUES (?1, ?2, 1, ?3)",
                    )?
                    .execute(params![t, i, body])
                    .map_err(|e| {
                        if is_constraint(&e) {
                            Failure::AlreadyExists
                        } else {
                            e.into()
                        }
                    })?;
                    return Ok(());
                }
                let changed = conn
                    .prepare_cached(
                        "UPDATE campaigns SET version = ?3, body = ?4 \
                         WHERE tenant_id = ?1 AND id = ?2 AND version = ?3 - 1",
                    )?
                    .execute(params![t, i, v, body])?;
                if changed == 1 {
                    return Ok(());
                }
                let exists = conn
                    .prepare_cached("SELECT 1 FROM campaigns WHERE tenant_id = ?1 AND id = ?2")?
                    .query_row(params![t, i], |_| Ok(()))
                    .optional()?;
                Err(match exists {
                    Some(()) => Failure::AlreadyExists,
                    None => Failure::NotFound,
                })
            })
            .await
            .map_err(Into::into)
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<Option<Campaign>, StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.to_string());
        self.db
            .read(move |conn| {
                let row: Option<(String, i64)> = conn
                    .prepare_cached(
                        "SELECT body, opted_out FROM campaigns WHERE tenant_id = ?1 AND id = ?2",
                    )?
                    .query_row(params![t, i], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                row.map(|(body, n)| read(&i, &body, n)).transpose()
            })
            .await
            .map_err(Into::into)
    }

    async fn list(
        &self,
        tenant: &TenantId,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<CampaignPage, StoreError> {
        let limit = limit.clamp(1, MAX_CAMPAIGN_PAGE);
        let t = tenant.as_str().to_owned();
        // Every id sorts below `cmp_~`.
        let before = before.map_or_else(|| "cmp_~".to_owned(), ToString::to_string);
        let take = sql_int(limit);
        let campaigns: Vec<Campaign> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT id, body, opted_out FROM campaigns WHERE tenant_id = ?1 AND id < ?2 \
                     ORDER BY id DESC LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![t, before, take], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, body, n) = row?;
                    out.push(read(&id, &body, n)?);
                }
                Ok(out)
            })
            .await?;
        let next = (campaigns.len() == limit)
            .then(|| campaigns.last().map(|c| c.id.clone()))
            .flatten();
        Ok(CampaignPage { campaigns, next })
    }

    async fn count_opt_out(&self, tenant: &TenantId, id: &CampaignId) -> Result<(), StoreError> {
        let (t, i) = (tenant.as_str().to_owned(), id.to_string());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE campaigns SET opted_out = opted_out + 1 WHERE tenant_id = ?1 AND id = ?2",
                )?
                .execute(params![t, i])?;
                Ok(())
            })
            .await
            .map_err(Into::into)
    }
}
