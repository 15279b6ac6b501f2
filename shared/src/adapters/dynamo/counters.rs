//! [`CounterStore`] on DynamoDB: counters are items of the idempotency table, each under a
//! partition of its own (so one tenant's counters spread like any other keys), changed by
//! conditional `UpdateItem`s (atomic; a refused one changes nothing), and gone when
//! DynamoDB's TTL deletes them.
//!
//! | counter | `t` | attributes |
//! |---|---|---|
//! | rate bucket | `rate#<tenant>` | `v`: next arrival time, ns |
//! | spend of a month | `spend#<tenant>#<yyyy-mm>` | `m`: the month, `d<dd>`: each day, kopiykas |
//! | messages to a number | `number#<tenant>#<hour>#<digest>` | `v`: count |
//!
//! A charge is one write whatever the caps (day and month live in one item); a message to
//! one number is one write per number; the bucket is one write when it guesses right whether
//! the bucket was idle, two when not, and a read when it refuses.
//!
//! A busy instance takes the bucket's tokens and the caps' allowance in blocks and serves
//! requests from them (see `leases`), so the bucket and spend items of a tenant sending
//! thousands of single messages a second are written a few dozen times a second, not once
//! per request.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};

use super::codec::{Item, get_n, idem, n, s};
use super::leases::Step;
use super::{DynamoStore, Expr, unavailable};
use crate::domain::{PhoneNumber, TenantId};
use crate::ports::{Bucket, CounterStore, SpendPeriod, SpendVerdict, Spent, StoreError};

/// The sort key of every counter item.
const SORT: &str = "-";
const VALUE: &str = "v";
const MONTH: &str = "m";
/// Numbers counted at once.
const PARALLEL: usize = 16;
/// How long an idle bucket is kept: past that it is full again anyway.
const BUCKET_KEEP_SECS: i64 = 24 * 3600;
/// Rounds of the bucket's two guesses before giving up on a contended bucket.
const BUCKET_ROUNDS: usize = 4;

fn day_attr(period: &SpendPeriod) -> String {
    format!("d{:02}", period.day)
}

fn nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// What a conditional write came to: done, or refused with the item as it is.
pub(super) enum Written {
    Done,
    Refused(Option<Item>),
}

impl DynamoStore {
    fn counters(&self) -> &str {
        &self.config.idempotency_table
    }

    pub(super) async fn counter_item(&self, partition: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.counters())
            .key(idem::TENANT, s(partition))
            .key(idem::KEY, s(SORT))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// One conditional update of a counter item: whether its condition held.
    async fn update_counter(
        &self,
        partition: String,
        update: String,
        condition: String,
        e: Expr,
    ) -> Result<bool, StoreError> {
        let written = self.update_limit(partition, update, condition, e).await?;
        Ok(matches!(written, Written::Done))
    }

    /// One conditional update of a counter item: done, or refused with the item as it is.
    pub(super) async fn update_limit(
        &self,
        partition: String,
        update: String,
        condition: String,
        e: Expr,
    ) -> Result<Written, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.config.idempotency_table)
            .key(idem::TENANT, s(partition))
            .key(idem::KEY, s(SORT))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Written::Done),
            Err(e) => match e.as_service_error() {
                Some(service) if service.is_conditional_check_failed_exception() => {
                    let item = match service {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                        _ => None,
                    };
                    Ok(Written::Refused(item))
                }
                _ => Err(unavailable(e)),
            },
        }
    }

    /// Takes `cost` tokens from the bucket item `partition` at `now` (one or two conditional
    /// writes, and a read when it refuses).
    async fn take_from_bucket(
        &self,
        partition: &str,
        bucket: Bucket,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<Duration>>, StoreError> {
        let partition = partition.to_owned();
        let now_ns = nanos(now);

        // What an idle bucket's next arrival becomes, and the highest a busy one may have
        // for `cost` more tokens to fit.
        let idle_next = match bucket.take(None, now_ns, cost) {
            Ok(next) => next,
            Err(wait) => return Ok(Err(wait)),
        };
        let interval = i64::try_from(bucket.interval.as_nanos()).unwrap_or(i64::MAX);
        let room = i64::from(bucket.burst.saturating_sub(cost));
        let busy_limit = now_ns.saturating_add(interval.saturating_mul(room));
        let increment = idle_next - now_ns;
        let ttl = now.timestamp() + BUCKET_KEEP_SECS;
        for _ in 0..BUCKET_ROUNDS {
            // The bucket was idle (or never used): it starts from now.
            let mut e = Expr::default();
            let (v, t) = (e.name(VALUE), e.name(idem::TTL));
            let update = format!(
                "SET {v} = {}, {t} = {}",
                e.value(n(idle_next)),
                e.value(n(ttl))
            );
            let condition = format!("attribute_not_exists({v}) OR {v} <= {}", e.value(n(now_ns)));
            if self
                .update_counter(partition.clone(), update, condition, e)
                .await?
            {
                return Ok(Ok(()));
            }
            // It is busy: it goes on from its next arrival, if that leaves room.
            let mut e = Expr::default();
            let (v, t) = (e.name(VALUE), e.name(idem::TTL));
            let update = format!(
                "SET {v} = {v} + {}, {t} = {}",
                e.value(n(increment)),
                e.value(n(ttl))
            );
            let condition = format!(
                "{v} > {} AND {v} <= {}",
                e.value(n(now_ns)),
                e.value(n(busy_limit))
            );
            if self
                .update_counter(partition.clone(), update, condition, e)
                .await?
            {
                return Ok(Ok(()));
            }
            // Neither: full, or another instance changed it between the two.
            let item = self.counter_item(partition.clone()).await?;
            let tat = item
                .as_ref()
                .map(|item| get_n::<i64>(item, VALUE))
                .transpose()?
                .flatten();
            if let Err(wait) = bucket.take(tat, now_ns, cost) {
                return Ok(Err(wait));
            }
        }
        // Contended past every round: ask the client to come back at once.
        Ok(Err(Some(Duration::from_millis(100))))
    }

    /// Gives back `amount` of a spend lease (`spend_counter`) that went unused; a rate lease
    /// (`rate#…`) is only forgotten. A failure is logged: the spend reads higher until the
    /// month ends, never lower.
    async fn give_back(&self, counter: &str, amount: i64) {
        let Some((item, day)) = counter
            .strip_prefix("spend#")
            .and_then(|_| counter.rsplit_once('#'))
        else {
            return;
        };
        let mut e = Expr::default();
        let (m, d) = (e.name(MONTH), e.name(&format!("d{day}")));
        let update = format!("ADD {m} {0}, {d} {0}", e.value(n(-amount)));
        let condition = format!("attribute_exists({m})");
        if let Err(error) = self
            .update_counter(item.to_owned(), update, condition, e)
            .await
        {
            tracing::warn!(%error, "an unused spend lease was not given back");
        }
    }

    /// Adds `amount` (at most either cap: `charge` checks) to the spend of `period` in one
    /// conditional write, unless a cap would pass.
    async fn charge_exactly(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
        day_cap: i64,
        month_cap: i64,
    ) -> Result<SpendVerdict, StoreError> {
        let partition = spend_item(tenant, period);
        let mut e = Expr::default();
        let (m, d, t) = (e.name(MONTH), e.name(&day_attr(period)), e.name(idem::TTL));
        let a = e.value(n(amount));
        let update = format!(
            "ADD {m} {a}, {d} {a} SET {t} = {}",
            e.value(n(period.forget_after.timestamp()))
        );
        let condition = format!(
            "(attribute_not_exists({m}) OR {m} <= {}) AND (attribute_not_exists({d}) OR {d} <= {})",
            e.value(n(month_cap - amount)),
            e.value(n(day_cap - amount))
        );
        if self.update_counter(partition, update, condition, e).await? {
            return Ok(SpendVerdict::Charged);
        }
        let spent = self.spent(tenant, period).await?;
        Ok(if spent.day.saturating_add(amount) > day_cap {
            SpendVerdict::DayCapReached
        } else {
            SpendVerdict::MonthCapReached
        })
    }
}

/// The item of a tenant's spend in `period`'s month.
fn spend_item(tenant: &TenantId, period: &SpendPeriod) -> String {
    format!("spend#{tenant}#{}", period.month)
}

/// The name of a lease of `period`'s day's allowance: the month's item and the day.
fn spend_counter(tenant: &TenantId, period: &SpendPeriod) -> String {
    format!("{}#{:02}", spend_item(tenant, period), period.day)
}

/// The items that count messages to `numbers` in `window` (see the table above).
fn number_partitions(tenant: &TenantId, window: &str, numbers: &[[u8; 16]]) -> Vec<String> {
    numbers
        .iter()
        .map(|digest| format!("number#{tenant}#{window}#{}", hex::encode(digest)))
        .collect()
}

#[async_trait]
impl CounterStore for DynamoStore {
    async fn number_keys(
        &self,
        tenant: &TenantId,
        numbers: &[&PhoneNumber],
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        self.vault.number_tags(tenant, numbers).await
    }

    async fn take_tokens(
        &self,
        tenant: &TenantId,
        bucket: Bucket,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Option<Duration>>, StoreError> {
        let partition = format!("rate#{tenant}");
        let now_ns = nanos(now);
        let per_second = 1_000_000_000 / bucket.interval.as_nanos().max(1);
        let most = i64::try_from(per_second / 20)
            .unwrap_or(i64::MAX)
            .min(i64::from(bucket.burst / 4));
        let amount = i64::from(cost);
        let Step::Renew { block, .. } = self.leases.step(&partition, amount, most, now_ns) else {
            return Ok(Ok(()));
        };
        if let Ok(block_cost) = u32::try_from(block)
            && block > amount
            && self
                .take_from_bucket(&partition, bucket, block_cost, now)
                .await?
                .is_ok()
        {
            self.leases.took(&partition, block, amount, now_ns);
            return Ok(Ok(()));
        }
        let taken = self.take_from_bucket(&partition, bucket, cost, now).await?;
        if taken.is_ok() {
            self.leases.took_exactly(&partition, amount, now_ns);
        }
        Ok(taken)
    }

    async fn charge(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
        day_cap: i64,
        month_cap: i64,
    ) -> Result<SpendVerdict, StoreError> {
        if amount > day_cap {
            return Ok(SpendVerdict::DayCapReached);
        }
        if amount > month_cap {
            return Ok(SpendVerdict::MonthCapReached);
        }
        let now = nanos(Utc::now());
        // What leases of this process left unused when they lapsed goes back.
        for (counter, left) in self.leases.lapsed(now) {
            self.give_back(&counter, left).await;
        }
        let counter = spend_counter(tenant, period);
        let most = day_cap.min(month_cap) / 100;
        let Step::Renew { block, lapsed } = self.leases.step(&counter, amount, most, now) else {
            return Ok(SpendVerdict::Charged);
        };
        if lapsed > 0 {
            self.give_back(&counter, lapsed).await;
        }
        if block > amount
            && self
                .charge_exactly(tenant, period, block, day_cap, month_cap)
                .await?
                == SpendVerdict::Charged
        {
            self.leases.took(&counter, block, amount, now);
            return Ok(SpendVerdict::Charged);
        }
        let verdict = self
            .charge_exactly(tenant, period, amount, day_cap, month_cap)
            .await?;
        if verdict == SpendVerdict::Charged {
            self.leases.took_exactly(&counter, amount, now);
        }
        Ok(verdict)
    }

    async fn refund(
        &self,
        tenant: &TenantId,
        period: &SpendPeriod,
        amount: i64,
    ) -> Result<(), StoreError> {
        let partition = spend_item(tenant, period);
        let mut e = Expr::default();
        let (m, d) = (e.name(MONTH), e.name(&day_attr(period)));
        let update = format!("ADD {m} {0}, {d} {0}", e.value(n(-amount)));
        let condition = format!("attribute_exists({m})");
        self.update_counter(partition, update, condition, e)
            .await
            .map(|_| ())
    }

    async fn spent(&self, tenant: &TenantId, period: &SpendPeriod) -> Result<Spent, StoreError> {
        let item = self
            .counter_item(spend_item(tenant, period))
            .await?
            .unwrap_or_default();
        Ok(Spent {
            day: get_n(&item, &day_attr(period))?.unwrap_or(0),
            month: get_n(&item, MONTH)?.unwrap_or(0),
        })
    }

    async fn count_numbers(
        &self,
        tenant: &TenantId,
        numbers: &[[u8; 16]],
        window: &str,
        limit: u32,
        forget_after: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let partitions = number_partitions(tenant, window, numbers);
        stream::iter(partitions.into_iter().map(|partition| {
            let mut e = Expr::default();
            let (v, t) = (e.name(VALUE), e.name(idem::TTL));
            let update = format!(
                "ADD {v} {} SET {t} = {}",
                e.value(n(1)),
                e.value(n(forget_after.timestamp()))
            );
            let condition = format!("attribute_not_exists({v}) OR {v} < {}", e.value(n(limit)));
            self.update_counter(partition, update, condition, e)
        }))
        .buffered(PARALLEL)
        .try_collect()
        .await
    }

    async fn uncount_numbers(
        &self,
        tenant: &TenantId,
        numbers: &[[u8; 16]],
        window: &str,
    ) -> Result<(), StoreError> {
        let partitions = number_partitions(tenant, window, numbers);
        stream::iter(partitions.into_iter().map(|partition| {
            let mut e = Expr::default();
            let v = e.name(VALUE);
            let update = format!("ADD {v} {}", e.value(n(-1)));
            let condition = format!("{v} > {}", e.value(n(0)));
            self.update_counter(partition, update, condition, e)
        }))
        .buffered(PARALLEL)
        .try_collect::<Vec<bool>>()
        .await
        .map(|_| ())
    }

    async fn forget_expired(&self, _: DateTime<Utc>, _: usize) -> Result<usize, StoreError> {
        // DynamoDB's TTL deletes them.
        Ok(0)
    }
}
