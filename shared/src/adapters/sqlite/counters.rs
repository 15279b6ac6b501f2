//! [`CounterStore`] on SQLite: one row per counter in `counters`, each read and changed
//! inside the writer (so atomically), and forgotten when it expires.
//!
//! | counter | `key` | `value` |
//! |---|---|---|
//! | rate bucket | `rate#<tenant>` | next arrival time, ns |
//! | spend of a month | `spend#<tenant>#<yyyy-mm>` | kopiykas |
//! | spend of a day | `spend#<tenant>#<yyyy-mm>#<dd>` | kopiykas |
//!
//! Messages to a number are counted in `number_counts`, by hour and digest (the digest names
//! the tenant too): one statement a message, the busiest counter of all.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{nanos, nanos_bound, sql_int};
use super::error::Failure;
use crate::domain::{PhoneNumber, TenantId};
use crate::ports::{
    Admission, Admitted, Bucket, CounterStore, SpendPeriod, SpendVerdict, Spent, StoreError,
};

/// How long an idle bucket's row is kept: past that it is full again anyway.
const BUCKET_KEEP: Duration = Duration::from_secs(24 * 3600);

fn spend_keys(tenant: &TenantId, period: &SpendPeriod) -> (String, String) {
    let month = format!("spend#{tenant}#{}", period.month);
    let day = format!("{month}#{:02}", period.day);
    (day, month)
}

fn value(conn: &Connection, key: &str) -> Result<Option<i64>, Failure> {
    Ok(conn
        .prepare_cached("SELECT value FROM counters WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

fn add(conn: &Connection, key: &str, amount: i64, expires_at: i64) -> Result<(), Failure> {
    conn.prepare_cached(
        "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (key) DO UPDATE SET value = value + excluded.value, \
         expires_at = max(expires_at, excluded.expires_at)",
    )?
    .execute(params![key, amount, expires_at])?;
    Ok(())
}

/// Takes `cost` tokens from the bucket at `key`, writing its new state if granted.
fn take_from_bucket(
    conn: &Connection,
    key: &str,
    bucket: Bucket,
    now: i64,
    cost: u32,
) -> Result<Result<(), Option<Duration>>, Failure> {
    let next = match bucket.take(value(conn, key)?, now, cost) {
        Ok(next) => next,
        Err(wait) => return Ok(Err(wait)),
    };
    let keep = i64::try_from(BUCKET_KEEP.as_nanos()).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
         expires_at = excluded.expires_at",
    )?
    .execute(params![key, next, next.saturating_add(keep)])?;
    Ok(Ok(()))
}

/// Whether `amount` more fits the spend counted at `day` and `month` under their caps.
fn spend_verdict(
    conn: &Connection,
    (day, month): (&str, &str),
    amount: i64,
    day_cap: i64,
    month_cap: i64,
) -> Result<SpendVerdict, Failure> {
    Ok(
        if value(conn, day)?.unwrap_or(0).saturating_add(amount) > day_cap {
            SpendVerdict::DayCapReached
        } else if value(conn, month)?.unwrap_or(0).saturating_add(amount) > month_cap {
            SpendVerdict::MonthCapReached
        } else {
            SpendVerdict::Charged
        },
    )
}

/// The hour of a window (`YYYYMMDDHH`) as stored.
fn hour(window: &str) -> Result<i64, StoreError> {
    window
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("not an hour window: {window:?}")))
}

/// Counts one message to `digest` in `hour` unless it has `limit` already: whether it did.
fn count_number(
    conn: &Connection,
    hour: i64,
    digest: &[u8; 16],
    limit: i64,
) -> Result<bool, Failure> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO number_counts (hour, digest, count) VALUES (?1, ?2, 1) \
             ON CONFLICT (hour, digest) DO UPDATE SET count = count + 1 WHERE count < ?3 \
             RETURNING count",
        )?
        .query_row(params![hour, digest.as_slice(), limit], |_| Ok(()))
        .optional()?
        .is_some())
}

/// One count of a number taken back.
const UNCOUNT_NUMBER: &str =
    "UPDATE number_counts SET count = count - 1 WHERE hour = ?1 AND digest = ?2 AND count > 0";

#[async_trait]
impl CounterStore for SqliteBackend {
    async fn number_keys(
        &self,
        tenant: &TenantId,
        numbers: &[&PhoneNumber],
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        self.vault.number_tags(tenant, numbers).await
    }

    /// One write for the whole request, decided on what the counters hold: the bucket's
    /// tokens are taken whenever the rate lets the request through; the numbers' counts and
    /// the spend only when the spend fits.
    async fn admit(
        &self,
        tenant: &TenantId,
        a: &Admission,
        now: DateTime<Utc>,
    ) -> Result<Admitted, StoreError> {
        let rate_key = format!("rate#{tenant}");
        let (day, month) = spend_keys(tenant, &a.period);
        let hour = hour(&a.window)?;
        let messages = a.messages.clone();
        let now = nanos(now)?;
        let spend_expires = nanos_bound(a.period.forget_after);
        let (bucket, per_number, day_cap, month_cap) =
            (a.bucket, i64::from(a.per_number), a.day_cap, a.month_cap);
        let cost = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        self.db
            .write(move |conn| {
                if let Err(wait) = take_from_bucket(conn, &rate_key, bucket, now, cost)? {
                    return Ok(Admitted::RateLimited(wait));
                }
                let mut counted = Vec::with_capacity(messages.len());
                let mut amount = 0i64;
                for (digest, cost) in &messages {
                    let ok = count_number(conn, hour, digest, per_number)?;
                    if ok {
                        amount = amount.saturating_add(*cost);
                    }
                    counted.push(ok);
                }
                let spend = spend_verdict(conn, (&day, &month), amount, day_cap, month_cap)?;
                if spend == SpendVerdict::Charged {
                    add(conn, &day, amount, spend_expires)?;
                    add(conn, &month, amount, spend_expires)?;
                } else {
                    // Refused whole: the numbers' counts are given back.
                    let mut undo = conn.prepare_cached(UNCOUNT_NUMBER)?;
                    for ((digest, _), ok) in messages.iter().zip(&counted) {
                        if *ok {
                            undo.execute(params![hour, digest.as_slice()])?;
                        }
                    }
                }
                Ok(Admitted::Counted {
                    counted,
                    amount,
                    spend,
                })
            })
            .await
            .map_err(Into::into)
    }

    async fn take_tokens(
        &self,
        tenant: &TenantId,
        bucket: Bucket,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<Duration>>, StoreError> {
        let key = format!("rate#{tenant}");
        let now = nanos(now)?;
        self.db
            .write(move |conn| take_from_bucket(conn, &key, bucket, now, cost))
            .await
            .map_err(Into::into)
    }

    async fn charge(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
        day_cap: i64,
        month_cap: i64,
    ) -> Result<SpendVerdict, StoreError> {
        let (day, month) = spend_keys(tenant, period);
        let expires = nanos_bound(period.forget_after);
        self.db
            .write(move |conn| {
                let verdict = spend_verdict(conn, (&day, &month), amount, day_cap, month_cap)?;
                if verdict == SpendVerdict::Charged {
                    add(conn, &day, amount, expires)?;
                    add(conn, &month, amount, expires)?;
                }
                Ok(verdict)
            })
            .await
            .map_err(Into::into)
    }

    async fn refund(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
    ) -> Result<(), StoreError> {
        let (day, month) = spend_keys(tenant, period);
        let expires = nanos_bound(period.forget_after);
        self.db
            .write(move |conn| {
                add(conn, &day, -amount, expires)?;
                add(conn, &month, -amount, expires)
            })
            .await
            .map_err(Into::into)
    }

    async fn spent(&self, tenant: &TenantId, period: &SpendPeriod) -> Result<Spent, StoreError> {
        let (day, month) = spend_keys(tenant, period);
        self.db
            .read(move |conn| {
                Ok(Spent {
                    day: value(conn, &day)?.unwrap_or(0),
                    month: value(conn, &month)?.unwrap_or(0),
                })
            })
            .await
            .map_err(Into::into)
    }

    async fn count_numbers(
        &self,
        tenant: &TenantId,
        numbers: &[[u8; 16]],
        window: &str,
        limit: u32,
        forget_after: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let (hour, numbers) = (hour(window)?, numbers.to_vec());
        let _ = (tenant, forget_after); // the digest names the tenant; the hour, the expiry
        self.db
            .write(move |conn| {
                numbers
                    .iter()
                    .map(|digest| count_number(conn, hour, digest, i64::from(limit)))
                    .collect()
            })
            .await
            .map_err(Into::into)
    }

    async fn uncount_numbers(
        &self,
        tenant: &TenantId,
        numbers: &[[u8; 16]],
        window: &str,
    ) -> Result<(), StoreError> {
        let (hour, numbers) = (hour(window)?, numbers.to_vec());
        let _ = tenant; // the digest names the tenant
        self.db
            .write(move |conn| {
                let mut undo = conn.prepare_cached(UNCOUNT_NUMBER)?;
                for digest in &numbers {
                    undo.execute(params![hour, digest.as_slice()])?;
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn forget_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError> {
        // Hours before the last two are over for every limit.
        let past = (now - chrono::Duration::hours(2))
            .format("%Y%m%d%H")
            .to_string()
            .parse::<i64>()
            .unwrap_or(0);
        let (now, limit) = (nanos(now)?, sql_int(limit));
        self.db
            .write(move |conn| {
                let counters = conn
                    .prepare_cached(
                        "DELETE FROM counters WHERE key IN \
                         (SELECT key FROM counters WHERE expires_at <= ?1 LIMIT ?2)",
                    )?
                    .execute(params![now, limit])?;
                let numbers = conn
                    .prepare_cached(
                        "DELETE FROM number_counts WHERE (hour, digest) IN \
                         (SELECT hour, digest FROM number_counts WHERE hour < ?1 LIMIT ?2)",
                    )?
                    .execute(params![past, limit])?;
                Ok(counters + numbers)
            })
            .await
            .map_err(Into::into)
    }
}
