//! [`ConsentStore`] on SQLite: `consent_entries` (the ledger, each entry sealed) and
//! `consent_state` (each number's current state), both under the number's tag, changed in
//! one write.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteBackend;
use super::codec::nanos;
use super::error::Failure;
use crate::domain::{ConsentEntry, ConsentState, PhoneNumber, TenantId};
use crate::ports::consent::MAX_STATES;
use crate::ports::{ConsentStore, StoreError};

fn state_str(state: ConsentState) -> &'static str {
    match state {
        ConsentState::None => "none",
        ConsentState::Given => "given",
        ConsentState::Withdrawn => "withdrawn",
    }
}

fn state_from(s: &str) -> Result<ConsentState, Failure> {
    match s {
        "given" => Ok(ConsentState::Given),
        "withdrawn" => Ok(ConsentState::Withdrawn),
        other => Err(Failure::Corrupt(format!("consent state {other:?}"))),
    }
}

#[async_trait]
impl ConsentStore for SqliteBackend {
    async fn record(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
        entry: &ConsentEntry,
    ) -> Result<ConsentState, StoreError> {
        let key = self.vault.sealing_key(tenant).await?;
        let tag = key.number_tag(number);
        let sealed = key.seal_consent(tenant, &tag, entry);
        let (at, recorded_at) = (nanos(entry.at)?, nanos(entry.recorded_at)?);
        let state = state_str(ConsentState::of(entry));
        let tenant = tenant.as_str().to_owned();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO consent_entries (tenant_id, number_tag, sealed) \
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![tenant, tag.as_slice(), sealed])?;
                // The entry becomes the state if it is as late as the current one or later.
                conn.prepare_cached(
                    "INSERT INTO consent_state (tenant_id, number_tag, at, recorded_at, state) \
                     VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (tenant_id, number_tag) DO UPDATE SET \
                     at = excluded.at, recorded_at = excluded.recorded_at, state = excluded.state \
                     WHERE (excluded.at, excluded.recorded_at) >= (at, recorded_at)",
                )?
                .execute(params![
                    tenant,
                    tag.as_slice(),
                    at,
                    recorded_at,
                    state
                ])?;
                let now: String = conn
                    .prepare_cached(
                        "SELECT state FROM consent_state WHERE tenant_id = ?1 AND number_tag = ?2",
                    )?
                    .query_row(params![tenant, tag.as_slice()], |r| r.get(0))?;
                state_from(&now)
            })
            .await
            .map_err(Into::into)
    }

    async fn states(
        &self,
        tenant: &TenantId,
        numbers: &[&PhoneNumber],
    ) -> Result<Vec<ConsentState>, StoreError> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        if numbers.len() > MAX_STATES {
            return Err(StoreError::Corrupt(format!(
                "at most {MAX_STATES} numbers are asked about at once"
            )));
        }
        let tags = self.vault.number_tags(tenant, numbers).await?;
        let tenant = tenant.as_str().to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT state FROM consent_state WHERE tenant_id = ?1 AND number_tag = ?2",
                )?;
                tags.iter()
                    .map(|tag| {
                        let state: Option<String> = stmt
                            .query_row(params![tenant, tag.as_slice()], |r| r.get(0))
                            .optional()?;
                        state.map_or(Ok(ConsentState::None), |s| state_from(&s))
                    })
                    .collect()
            })
            .await
            .map_err(Into::into)
    }

    async fn ledger(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
    ) -> Result<Vec<ConsentEntry>, StoreError> {
        let Some(key) = self.vault.held_key(tenant).await? else {
            return Ok(Vec::new());
        };
        let tag = key.number_tag(number);
        let id = tenant.as_str().to_owned();
        let sealed: Vec<Vec<u8>> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT sealed FROM consent_entries WHERE tenant_id = ?1 AND number_tag = ?2 \
                     ORDER BY seq",
                )?;
                let rows = stmt.query_map(params![id, tag.as_slice()], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        sealed
            .iter()
            .map(|s| {
                key.open_consent(tenant, &tag, s)
                    .map_err(|e| StoreError::Corrupt(format!("consent entry: {e}")))
            })
            .collect()
    }
}
