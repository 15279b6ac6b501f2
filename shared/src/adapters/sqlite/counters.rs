//! [`CounterStore`] on SQLite: one row per counter in `counters`, each read and changed
//! inside the writer (so atomically), and forgotten when it expires.
//!
//! | counter | `key` | `value` |
//! |---|---|---|
//! | rate bucket | `rate#<tenant>` | next arrival time, ns |
//! | spend of a month | `spend#<tenant>#<yyyy-mm>` | kopiykas |
//! | spend of a day | `spend#<tenant>#<yyyy-mm>#<dd>` | kopiykas |
//! | messages to a number | `number#<tenant>#<hour>#<digest>` | count |

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{nanos, nanos_bound, sql_int};
use super::error::Failure;
use crate::domain::TenantId;
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

#[async_trait]
impl CounterStore for SqliteBackend {
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
        let number_keys: Vec<(String, i64)> = a
            .messages
            .iter()
            .map(|(d, cost)| {
                (
                    format!("number#{tenant}#{}#{}", a.window, hex::encode(d)),
                    *cost,
                )
            })
            .collect();
        let now = nanos(now)?;
        let keep = i64::try_from(BUCKET_KEEP.as_nanos()).unwrap_or(i64::MAX);
        let spend_expires = nanos_bound(a.period.forget_after);
        let number_expires = nanos_bound(a.numbers_forget_after);
        let (bucket, per_number, day_cap, month_cap) =
            (a.bucket, i64::from(a.per_number), a.day_cap, a.month_cap);
        let cost = u32::try_from(number_keys.len()).unwrap_or(u32::MAX);
        self.db
            .write(move |conn| {
                let next = match bucket.take(value(conn, &rate_key)?, now, cost) {
                    Ok(next) => next,
                    Err(wait) => return Ok(Admitted::RateLimited(wait)),
                };
                // Counts as they would be after each message, repeats of a number included.
                let mut counts: std::collections::HashMap<&str, i64> =
                    std::collections::HashMap::new();
                let mut counted = Vec::with_capacity(number_keys.len());
                let mut amount = 0i64;
                for (key, cost) in &number_keys {
                    let count = match counts.get(key.as_str()) {
                        Some(c) => *c,
                        None => value(conn, key)?.unwrap_or(0),
                    };
                    let ok = count < per_number;
                    if ok {
                        counts.insert(key, count + 1);
                        amount = amount.saturating_add(*cost);
                    } else {
                        counts.insert(key, count);
                    }
                    counted.push(ok);
                }
                let spent_day = value(conn, &day)?.unwrap_or(0);
                let spent_month = value(conn, &month)?.unwrap_or(0);
                let spend = if spent_day.saturating_add(amount) > day_cap {
                    SpendVerdict::DayCapReached
                } else if spent_month.saturating_add(amount) > month_cap {
                    SpendVerdict::MonthCapReached
                } else {
                    SpendVerdict::Charged
                };
                conn.prepare_cached(
                    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                     expires_at = excluded.expires_at",
                )?
                .execute(params![rate_key, next, next.saturating_add(keep)])?;
                if spend == SpendVerdict::Charged {
                    for (key, ok) in number_keys.iter().map(|(k, _)| k).zip(&counted) {
                        if *ok {
                            add(conn, key, 1, number_expires)?;
                        }
                    }
                    add(conn, &day, amount, spend_expires)?;
                    add(conn, &month, amount, spend_expires)?;
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
        let keep = i64::try_from(BUCKET_KEEP.as_nanos()).unwrap_or(i64::MAX);
        self.db
            .write(move |conn| {
                let tat = value(conn, &key)?;
                match bucket.take(tat, now, cost) {
                    Ok(next) => {
                        conn.prepare_cached(
                            "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3) \
                             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                             expires_at = excluded.expires_at",
                        )?
                        .execute(params![
                            key,
                            next,
                            next.saturating_add(keep)
                        ])?;
                        Ok(Ok(()))
                    }
                    Err(wait) => Ok(Err(wait)),
                }
            })
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
                let spent_day = value(conn, &day)?.unwrap_or(0);
                let spent_month = value(conn, &month)?.unwrap_or(0);
                if spent_day.saturating_add(amount) > day_cap {
                    return Ok(SpendVerdict::DayCapReached);
                }
                if spent_month.saturating_add(amount) > month_cap {
                    return Ok(SpendVerdict::MonthCapReached);
                }
                add(conn, &day, amount, expires)?;
                add(conn, &month, amount, expires)?;
                Ok(SpendVerdict::Charged)
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
        let keys: Vec<String> = numbers
            .iter()
            .map(|d| format!("number#{tenant}#{window}#{}", hex::encode(d)))
            .collect();
        let expires = nanos_bound(forget_after);
        self.db
            .write(move |conn| {
                let mut counted = Vec::with_capacity(keys.len());
                for key in &keys {
                    let ok = value(conn, key)?.unwrap_or(0) < i64::from(limit);
                    if ok {
                        add(conn, key, 1, expires)?;
                    }
                    counted.push(ok);
                }
                Ok(counted)
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
                        "DELETE FROM counters WHERE key IN \
                         (SELECT key FROM counters WHERE expires_at <= ?1 LIMIT ?2)",
                    )?
                    .execute(params![now, limit])?)
            })
            .await
            .map_err(Into::into)
    }
}
