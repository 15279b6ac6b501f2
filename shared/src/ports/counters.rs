//! Counters every instance that takes requests shares (one process on one machine; any
//! number of API Lambda instances on AWS), so a tenant's rate, spend and per-number limits
//! hold however many instances serve it. Each operation is one atomic step of the store:
//! a refused one changes nothing.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::{PhoneNumber, TenantId};

/// A token bucket in its GCRA form (the "theoretical arrival time" of the next request is
/// the whole state): `cost` tokens of a bucket that refills one token every `interval`
/// and holds `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub interval: Duration,
    pub burst: u32,
}

impl Bucket {
    /// A bucket of `rate` tokens a second (at least 1) holding `burst`.
    pub fn per_second(rate: u32, burst: u32) -> Self {
        Bucket {
            interval: Duration::from_nanos(1_000_000_000 / u64::from(rate.max(1))),
            burst,
        }
    }

    /// The decision on the bucket's state `tat` (nanoseconds since the epoch, or none for a
    /// bucket never used) for `cost` tokens at `now`: the new state, or how long until the
    /// tokens would be there. `cost` above `burst` is never granted (an `Err` of `None`).
    pub fn take(&self, tat: Option<i64>, now: i64, cost: u32) -> Result<i64, Option<Duration>> {
        if cost > self.burst {
            return Err(None);
        }
        let interval = i64::try_from(self.interval.as_nanos()).unwrap_or(i64::MAX);
        let start = tat.unwrap_or(now).max(now);
        let next = start.saturating_add(interval.saturating_mul(i64::from(cost)));
        let allowed = now.saturating_add(interval.saturating_mul(i64::from(self.burst)));
        if next <= allowed {
            Ok(next)
        } else {
            let wait = u64::try_from(next - allowed).unwrap_or(0);
            Err(Some(Duration::from_nanos(wait)))
        }
    }
}

/// Spend of one Kyiv calendar month and one of its days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendPeriod {
    /// `2026-12`
    pub month: String,
    /// 1–31
    pub day: u32,
    /// When the month's counters may be forgotten (after its end).
    pub forget_after: DateTime<Utc>,
}

/// What the spend counters say to a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendVerdict {
    Charged,
    DayCapReached,
    MonthCapReached,
}

/// Spent so far, in kopiykas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub day: i64,
    pub month: i64,
}

/// Everything one request asks of the counters: a token per message from the bucket, a count
/// per message against its number, and its cost against the spend caps.
#[derive(Debug, Clone)]
pub struct Admission {
    pub bucket: Bucket,
    /// Per message: its number's digest and its cost in kopiykas.
    pub messages: Vec<([u8; 16], i64)>,
    /// The hour the numbers are counted in, and their limit in it.
    pub window: String,
    pub per_number: u32,
    pub numbers_forget_after: DateTime<Utc>,
    pub period: SpendPeriod,
    pub day_cap: i64,
    pub month_cap: i64,
}

/// What the counters said to an [`Admission`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// The bucket has not the tokens (`None`: it never will, the request is above its burst).
    RateLimited(Option<Duration>),
    /// Per message whether its number may take it; and, for those that may, whether their
    /// cost (`amount`) was charged. Unless `spend` is `Charged`, their numbers were not
    /// counted (on SQLite: nothing changed but the bucket).
    Counted {
        counted: Vec<bool>,
        amount: i64,
        spend: SpendVerdict,
    },
}

#[async_trait]
pub trait CounterStore: Send + Sync {
    /// The bucket, the numbers and the spend of one request. The default takes them one
    /// after another; a store that can do it in one atomic step (SQLite) does.
    async fn admit(
        &self,
        tenant: &TenantId,
        a: &Admission,
        now: DateTime<Utc>,
    ) -> Result<Admitted, StoreError> {
        let cost = u32::try_from(a.messages.len()).unwrap_or(u32::MAX);
        if let Err(wait) = self.take_tokens(tenant, a.bucket, cost, now).await? {
            return Ok(Admitted::RateLimited(wait));
        }
        let digests: Vec<[u8; 16]> = a.messages.iter().map(|(d, _)| *d).collect();
        let counted = self
            .count_numbers(
                tenant,
                &digests,
                &a.window,
                a.per_number,
                a.numbers_forget_after,
            )
            .await?;
        let amount = a
            .messages
            .iter()
            .zip(&counted)
            .filter(|(_, ok)| **ok)
            .map(|((_, cost), _)| *cost)
            .fold(0i64, i64::saturating_add);
        let spend = self
            .charge(tenant, &a.period, amount, a.day_cap, a.month_cap)
            .await?;
        if spend != SpendVerdict::Charged {
            // Refused whole: the numbers' counts are given back (the bucket's tokens are not:
            // a refused request was still a request).
            let taken: Vec<[u8; 16]> = digests
                .iter()
                .zip(&counted)
                .filter(|(_, ok)| **ok)
                .map(|(d, _)| *d)
                .collect();
            if let Err(e) = self.uncount_numbers(tenant, &taken, &a.window).await {
                tracing::warn!(error = %e, "refused messages' number counts stay counted");
            }
        }
        Ok(Admitted::Counted {
            counted,
            amount,
            spend,
        })
    }

    /// Takes `cost` tokens from the tenant's bucket at `now`: `Ok(Ok(()))` if granted,
    /// `Ok(Err(wait))` if not (nothing taken; `wait` until they would be there, `None` if
    /// never).
    async fn take_tokens(
        &self,
        tenant: &TenantId,
        bucket: Bucket,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<Duration>>, StoreError>;

    /// Adds `amount` kopiykas to the tenant's spend of `period`'s day and month, unless
    /// either would pass its cap; then nothing is added.
    async fn charge(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
        day_cap: i64,
        month_cap: i64,
    ) -> Result<SpendVerdict, StoreError>;

    /// Takes back a charge whose messages were not stored after all.
    async fn refund(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
    ) -> Result<(), StoreError>;

    /// What the tenant spent in `period`'s day and month.
    async fn spent(&self, tenant: &TenantId, period: &SpendPeriod) -> Result<Spent, StoreError>;

    /// Counts one message to each number (given as a keyed digest, never in clear) in
    /// `window` (an hour's name), unless the number has `limit` already: answers per number
    /// whether it was counted. Counts live until `forget_after`.
    async fn count_numbers(
        &self,
        tenant: &TenantId,
        numbers: &[[u8; 16]],
        window: &str,
        limit: u32,
        forget_after: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError>;

    /// Takes one count back from each of `numbers` in `window` (counted by
    /// [`CounterStore::count_numbers`] for messages that were not accepted after all).
    async fn uncount_numbers(
        &self,
        tenant: &TenantId,
        numbers: &[[u8; 16]],
        window: &str,
    ) -> Result<(), StoreError>;

    /// The names the counters keep `numbers` under, in order: a keyed tag of each under the
    /// tenant's own data key, so a counter says nothing of the number it counts (a plain hash
    /// of a phone number is undone by trying every number) and differs between tenants.
    async fn number_keys(
        &self,
        tenant: &TenantId,
        numbers: &[&PhoneNumber],
    ) -> Result<Vec<[u8; 16]>, StoreError>;

    /// Forgets counters whose time ran out before `now`, at most `limit`; returns how many.
    /// (A store whose records expire by themselves, such as DynamoDB with TTL, forgets
    /// nothing here.)
    async fn forget_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_bucket_grants_its_burst_then_its_rate() {
        let b = Bucket::per_second(10, 5);
        let mut tat = None;
        for _ in 0..5 {
            tat = Some(b.take(tat, 0, 1).unwrap());
        }
        let wait = b.take(tat, 0, 1).unwrap_err().unwrap();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(b.take(tat, S / 10, 1).is_ok(), "one token after 100 ms");
        assert_eq!(b.take(None, 0, 6), Err(None), "more than the burst never");
        assert!(b.take(None, 0, 5).is_ok());
        // An idle bucket refills to its burst, no further.
        let t = b.take(None, 0, 5).unwrap();
        assert!(b.take(Some(t), 100 * S, 5).is_ok());
        assert!(b.take(Some(t), 100 * S, 6).is_err());
    }
}
