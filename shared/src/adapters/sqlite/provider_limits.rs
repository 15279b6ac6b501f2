//! [`ProviderLimits`] on SQLite: a row per provider in `provider_limits`, read and changed
//! inside the writer. The writer's transaction takes SQLite's write lock before it reads
//! (`BEGIN IMMEDIATE`), so a lease is atomic across processes too: several `holub serve` on
//! one database share each provider's limit and breaker.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{from_nanos, nanos, nanos_bound, parse};
use super::error::Failure;
use crate::ports::provider_limits::{Decision, SlotState, epoch_nanos};
use crate::ports::{Leased, Outage, OutageReason, ProviderLimits, ProviderRate, StoreError};

fn slot_state(conn: &Connection, provider: &str) -> Result<Option<SlotState>, Failure> {
    let row: Option<(Option<i64>, i64)> = conn
        .prepare_cached("SELECT slot, used FROM provider_limits WHERE provider = ?1")?
        .query_row([provider], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(slot, used)| {
        slot.map(|slot| SlotState {
            slot,
            used: u32::try_from(used).unwrap_or(u32::MAX),
        })
    }))
}

fn outage(conn: &Connection, provider: &str) -> Result<Outage, Failure> {
    type Row = (Option<i64>, Option<i64>, Option<String>, Option<String>);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT open_until, trial_until, reason_code, reason_text FROM provider_limits \
             WHERE provider = ?1",
        )?
        .query_row([provider], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let Some((open_until, trial_until, code, text)) = row else {
        return Ok(Outage::default());
    };
    let reason = match code {
        Some(code) => Some(OutageReason {
            code: parse(&code, "failure code")?,
            message: text.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Outage {
        open_until: open_until.map(from_nanos),
        trial_until: trial_until.map(from_nanos),
        reason,
    })
}

fn put_outage(conn: &Connection, provider: &str, o: &Outage) -> Result<(), Failure> {
    let (code, text) = match &o.reason {
        Some(r) => (Some(r.code.as_str()), Some(r.message.as_str())),
        None => (None, None),
    };
    conn.prepare_cached(
        "INSERT INTO provider_limits (provider, open_until, trial_until, reason_code, reason_text) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (provider) DO UPDATE SET \
         open_until = excluded.open_until, trial_until = excluded.trial_until, \
         reason_code = excluded.reason_code, reason_text = excluded.reason_text",
    )?
    .execute(params![
        provider,
        o.open_until.map(nanos_bound),
        o.trial_until.map(nanos_bound),
        code,
        text
    ])?;
    Ok(())
}

#[async_trait]
impl ProviderLimits for SqliteBackend {
    async fn lease(
        &self,
        provider: &str,
        rate: ProviderRate,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<Leased, StoreError> {
        let (provider, now) = (provider.to_owned(), epoch_nanos(now));
        self.db
            .write(move |conn| {
                let state = slot_state(conn, &provider)?;
                let (take, next) = match rate.decide(state, now, want) {
                    Decision::Wait(wait) => return Ok(Leased::Wait(wait)),
                    Decision::Take { take, next, .. } => (take, next),
                };
                conn.prepare_cached(
                    "INSERT INTO provider_limits (provider, slot, used) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (provider) DO UPDATE SET slot = excluded.slot, \
                     used = excluded.used",
                )?
                .execute(params![provider, next.slot, next.used])?;
                Ok(rate.leased(take, next.slot))
            })
            .await
            .map_err(Into::into)
    }

    async fn breaker(&self, provider: &str) -> Result<Outage, StoreError> {
        let provider = provider.to_owned();
        self.db
            .read(move |conn| outage(conn, &provider))
            .await
            .map_err(Into::into)
    }

    async fn open(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: Option<OutageReason>,
    ) -> Result<(), StoreError> {
        let provider = provider.to_owned();
        nanos(until)?;
        self.db
            .write(move |conn| {
                if let Some(opened) = outage(conn, &provider)?.opened(until, reason) {
                    put_outage(conn, &provider, &opened)?;
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn take_trial(
        &self,
        provider: &str,
        now: DateTime<Utc>,
        hold: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let provider = provider.to_owned();
        self.db
            .write(move |conn| {
                let mut o = outage(conn, &provider)?;
                if !o.trial_free(now) {
                    return Ok(false);
                }
                o.trial_until = Some(hold);
                put_outage(conn, &provider, &o)?;
                Ok(true)
            })
            .await
            .map_err(Into::into)
    }

    async fn close(&self, provider: &str, opened_until: DateTime<Utc>) -> Result<(), StoreError> {
        let provider = provider.to_owned();
        self.db
            .write(move |conn| {
                if outage(conn, &provider)?.open_until == Some(opened_until) {
                    put_outage(conn, &provider, &Outage::default())?;
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }
}
