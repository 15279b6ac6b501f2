//! Abuse limits at intake: what bounds the damage of a leaked key. For each request, in this
//! order:
//!
//! 1. **Destination**: each number's country must be one of the tenant's (default Ukraine
//!    only); premium, shared-cost and unknown ranges never parse as numbers at all.
//! 2. **Rate**: a token bucket per tenant, shared by every instance (one token a message).
//! 3. **Velocity**: at most `per_number_per_hour` messages to one number in a clock hour
//!    (OTP pumping sends many codes to numbers the fraudster is paid for).
//! 4. **Spend**: what the accepted messages are counted at (segments × the tenant's segment
//!    price) must fit the day's and the month's caps (Kyiv calendar days and months).
//!
//! A request refused by the rate or a cap takes nothing from the other counters it passed
//! but the bucket's tokens (a client hammering past its limit is not refunded). Numbers are
//! counted as keyed digests, never stored in clear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Months, NaiveDate, Timelike, Utc};
use serde::Serialize;

use crate::domain::kyiv;
use crate::domain::{
    AuditAction, LimitError, Message, Origin, PhoneNumber, StatusCallback, TenantId, TenantLimits,
};
use crate::ports::{
    Admission, Admitted, Bucket, Clock, CounterStore, SpendPeriod, SpendVerdict, StoreError,
    TenantStore,
};

/// How long a tenant's limits are cached: a change holds everywhere within this.
pub const LIMITS_CACHE_TTL: Duration = Duration::from_secs(30);

/// Why a request was refused by a limit: a stable code, words, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    /// When trying again may succeed; `None` when it never will as it is.
    pub retry_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A charge against the spend caps, to refund if its messages are not stored after all.
#[derive(Debug, Clone)]
pub struct Charge {
    period: SpendPeriod,
    amount: i64,
}

/// A tenant's limits and what it has used of them.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitsView {
    pub limits: TenantLimits,
    /// Spent today (Kyiv calendar day), in kopiykas.
    pub spent_today_kopiyky: i64,
    /// Spent this month (Kyiv calendar month), in kopiykas.
    pub spent_this_month_kopiyky: i64,
}

pub struct Limits {
    tenants: Arc<dyn TenantStore>,
    counters: Arc<dyn CounterStore>,
    clock: Arc<dyn Clock>,
    defaults: TenantLimits,
    cache: Mutex<HashMap<TenantId, (Instant, TenantLimits)>>,
}

/// The Kyiv calendar day and month of `at`, and when each next one starts.
fn period(at: DateTime<Utc>) -> (SpendPeriod, DateTime<Utc>, DateTime<Utc>) {
    let local = kyiv::to_local(at).date();
    let next_day = kyiv::from_local(
        local
            .succ_opt()
            .unwrap_or(local)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default(),
    );
    let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap_or(local);
    let next_month = kyiv::from_local(
        first
            .checked_add_months(Months::new(1))
            .unwrap_or(first)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default(),
    );
    let period = SpendPeriod {
        month: format!("{:04}-{:02}", local.year(), local.month()),
        day: local.day(),
        // Kept a day past the month, so the month's last day can still be read.
        forget_after: next_month + chrono::Duration::days(1),
    };
    (period, next_day, next_month)
}

fn until(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

impl Limits {
    pub fn new(
        tenants: Arc<dyn TenantStore>,
        counters: Arc<dyn CounterStore>,
        clock: Arc<dyn Clock>,
        defaults: TenantLimits,
    ) -> Self {
        Limits {
            tenants,
            counters,
            clock,
            defaults,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (Instant, TenantLimits)>> {
        // Inserts and reads only: consistent whatever panicked while it was held.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tenant's limits (its own, or the defaults), cached for [`LIMITS_CACHE_TTL`].
    pub async fn of(&self, tenant: &TenantId) -> Result<TenantLimits, StoreError> {
        if let Some((at, limits)) = self.cache().get(tenant)
            && at.elapsed() < LIMITS_CACHE_TTL
        {
            return Ok(limits.clone());
        }
        let limits = self
            .tenants
            .limits(tenant)
            .await?
            .unwrap_or_else(|| self.defaults.clone());
        let mut cache = self.cache();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(tenant.clone(), (Instant::now(), limits.clone()));
        Ok(limits)
    }

    /// The tenant's limits, uncached, with what it spent today and this month.
    pub async fn view(&self, tenant: &TenantId) -> Result<LimitsView, StoreError> {
        let limits = self
            .tenants
            .limits(tenant)
            .await?
            .unwrap_or_else(|| self.defaults.clone());
        let (period, _, _) = period(self.clock.now());
        let spent = self.counters.spent(tenant, &period).await?;
        Ok(LimitsView {
            limits,
            spent_today_kopiyky: spent.day,
            spent_this_month_kopiyky: spent.month,
        })
    }

    /// Sets `changes` (name, value) on the tenant's limits, with an audit entry holding the
    /// limits before and after. A refused value changes nothing.
    pub async fn set(
        &self,
        tenant: &TenantId,
        changes: &[(String, String)],
        origin: &Origin,
    ) -> Result<TenantLimits, SetLimitsError> {
        self.change(tenant, origin, |limits| {
            changes
                .iter()
                .try_for_each(|(name, value)| limits.set(name, value))
        })
        .await
    }

    /// Sets (or with `None` removes) the account's status callback, already checked.
    pub async fn set_status_callback(
        &self,
        tenant: &TenantId,
        callback: Option<StatusCallback>,
        origin: &Origin,
    ) -> Result<TenantLimits, SetLimitsError> {
        self.change(tenant, origin, |limits| {
            limits.status_callback = callback;
            Ok(())
        })
        .await
    }

    /// Reads the tenant's limits, changes them and stores them with the audit entry.
    async fn change(
        &self,
        tenant: &TenantId,
        origin: &Origin,
        change: impl FnOnce(&mut TenantLimits) -> Result<(), LimitError>,
    ) -> Result<TenantLimits, SetLimitsError> {
        let before = self
            .tenants
            .limits(tenant)
            .await?
            .unwrap_or_else(|| self.defaults.clone());
        let mut after = before.clone();
        change(&mut after).map_err(SetLimitsError::Invalid)?;
        let entry = origin.entry(
            tenant,
            self.clock.now(),
            AuditAction::SettingsUpdate,
            "limits",
            serde_json::to_value(&before).ok(),
            serde_json::to_value(&after).ok(),
        );
        self.tenants.put_limits(tenant, &after, &entry).await?;
        self.cache().remove(tenant);
        Ok(after)
    }

    /// Whether the tenant may send to `to`'s country.
    pub fn allows_destination(limits: &TenantLimits, to: &PhoneNumber) -> Result<(), Refusal> {
        if limits.countries.contains(&to.country()) {
            return Ok(());
        }
        Err(Refusal {
            code: "destination_not_allowed",
            message: format!(
                "this account may not send to numbers of {}; it may send to {}",
                to.country(),
                limits
                    .countries
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            retry_after: None,
        })
    }

    /// Admits the messages of one request (each its number and segments) against the rate,
    /// the per-number limit and the spend caps: per message, whether its number may take it,
    /// and the charge of those that may. A refusal of the whole request (rate, spend) is an
    /// error.
    pub async fn admit(
        &self,
        tenant: &TenantId,
        limits: &TenantLimits,
        messages: &[(&PhoneNumber, u16)],
    ) -> Result<(Vec<Result<(), Refusal>>, Charge), LimitsError> {
        let now = self.clock.now();
        let (period, next_day, next_month) = period(now);
        let hour = now
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        let next_hour = hour + chrono::Duration::hours(1);
        let numbers: Vec<&PhoneNumber> = messages.iter().map(|(to, _)| *to).collect();
        let keys = self.counters.number_keys(tenant, &numbers).await?;
        let admission = Admission {
            bucket: Bucket::per_second(limits.rate_per_second, limits.burst),
            messages: keys
                .into_iter()
                .zip(messages)
                .map(|(key, (_, segments))| (key, limits.cost(u64::from(*segments)).0))
                .collect(),
            window: hour.format("%Y%m%d%H").to_string(),
            per_number: limits.per_number_per_hour,
            numbers_forget_after: next_hour + chrono::Duration::hours(1),
            period: period.clone(),
            day_cap: limits.daily_spend_kopiyky,
            month_cap: limits.monthly_spend_kopiyky,
        };
        let (counted, amount, spend) = match self.counters.admit(tenant, &admission, now).await? {
            Admitted::RateLimited(None) => {
                return Err(LimitsError::Refused(Refusal {
                    code: "batch_exceeds_burst",
                    message: format!(
                        "this account takes at most {} messages at once; send them in smaller batches",
                        limits.burst
                    ),
                    retry_after: None,
                }));
            }
            Admitted::RateLimited(Some(wait)) => {
                return Err(LimitsError::Refused(Refusal {
                    code: "rate_limited",
                    message: format!(
                        "this account takes {} messages a second (bursts of {}); try again later",
                        limits.rate_per_second, limits.burst
                    ),
                    // Whole seconds, rounded up: never earlier than the tokens are there.
                    retry_after: Some(Duration::from_secs(wait.as_secs() + 1)),
                }));
            }
            Admitted::Counted {
                counted,
                amount,
                spend,
            } => (counted, amount, spend),
        };
        let (code, what, cap, reset) = match spend {
            SpendVerdict::Charged => {
                let verdicts = counted
                    .into_iter()
                    .map(|ok| {
                        if ok {
                            Ok(())
                        } else {
                            Err(Refusal {
                                code: "velocity_limit_exceeded",
                                message: format!(
                                    "this number had {} messages from this account this hour already",
                                    limits.per_number_per_hour
                                ),
                                retry_after: Some(until(now, next_hour)),
                            })
                        }
                    })
                    .collect();
                return Ok((verdicts, Charge { period, amount }));
            }
            SpendVerdict::DayCapReached => (
                "daily_spend_cap_reached",
                "today",
                limits.daily_spend_kopiyky,
                next_day,
            ),
            SpendVerdict::MonthCapReached => (
                "monthly_spend_cap_reached",
                "this month",
                limits.monthly_spend_kopiyky,
                next_month,
            ),
        };
        Err(LimitsError::Refused(Refusal {
            code,
            message: format!(
                "these messages (counted at {amount} kopiykas) would pass this account's cap of \
                 {cap} kopiykas {what} (Kyiv time)"
            ),
            retry_after: (amount <= cap).then(|| until(now, reset)),
        }))
    }

    /// Gives back what a cancelled message was counted at against the spend caps: on the
    /// Kyiv day and month it was accepted in, at the tenant's price now, and never more than
    /// that day and month still hold (a price raised since, or counters already forgotten,
    /// refund less, never below zero).
    pub async fn refund_cancelled(&self, message: &Message) {
        let tenant = &message.tenant_id;
        let limits = match self.of(tenant).await {
            Ok(limits) => limits,
            Err(e) => {
                tracing::warn!(error = %e, "a cancelled message's spend could not be refunded");
                return;
            }
        };
        let (period, _, _) = period(message.created_at);
        let spent = match self.counters.spent(tenant, &period).await {
            Ok(spent) => spent,
            Err(e) => {
                tracing::warn!(error = %e, "a cancelled message's spend could not be refunded");
                return;
            }
        };
        let amount = limits
            .cost(u64::from(message.segments))
            .0
            .min(spent.day)
            .min(spent.month)
            .max(0);
        self.refund(tenant, &Charge { period, amount }).await;
    }

    /// Takes back a charge whose messages were not stored.
    pub async fn refund(&self, tenant: &TenantId, charge: &Charge) {
        if charge.amount == 0 {
            return;
        }
        if let Err(e) = self
            .counters
            .refund(tenant, &charge.period, charge.amount)
            .await
        {
            tracing::warn!(error = %e, "a spend charge could not be refunded; the cap counts it");
        }
    }
}

/// Why limits could not be set.
#[derive(Debug, thiserror::Error)]
pub enum SetLimitsError {
    #[error(transparent)]
    Invalid(crate::domain::LimitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn periods_follow_the_kyiv_calendar() {
        // 22:30 UTC on 30 November is 00:30 on 1 December in Kyiv (UTC+2).
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 22, 30, 0).unwrap();
        let (p, next_day, next_month) = period(at);
        assert_eq!((p.month.as_str(), p.day), ("2026-12", 1));
        assert_eq!(
            next_day,
            Utc.with_ymd_and_hms(2026, 12, 1, 22, 0, 0).unwrap()
        );
        assert_eq!(
            next_month,
            Utc.with_ymd_and_hms(2026, 12, 31, 22, 0, 0).unwrap()
        );
        // Summer time: UTC+3.
        let at = Utc.with_ymd_and_hms(2026, 7, 31, 20, 59, 0).unwrap();
        let (p, _, next_month) = period(at);
        assert_eq!((p.month.as_str(), p.day), ("2026-07", 31));
        assert_eq!(
            next_month,
            Utc.with_ymd_and_hms(2026, 7, 31, 21, 0, 0).unwrap()
        );
    }
}
