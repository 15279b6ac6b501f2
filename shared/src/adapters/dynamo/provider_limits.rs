//! [`ProviderLimits`] on DynamoDB: two items per provider in the idempotency table, like the
//! counters, each under a partition of its own, changed only by conditional `UpdateItem`s.
//!
//! | item | `t` | attributes |
//! |---|---|---|
//! | rate slot | `pace#<provider>` | `s`: the slot in use, `u`: grants taken of it |
//! | breaker | `breaker#<provider>` | `ou`, `tu`: open and trial until (ns); `rc`, `rm`: why |
//!
//! A lease is one write when it guesses the slot's state right (this process remembers what
//! it wrote last), else the refused write answers the item as it is
//! (`ReturnValuesOnConditionCheckFailure`) and the second write fits it: about ten writes a
//! second for a busy provider however many messages go. A breaker is read once a second per
//! instance and written when it opens, its trial is taken, and it closes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::{Item, get_n, get_s, idem, n, parse, s};
use super::counters::Written;
use super::{DynamoStore, Expr};
use crate::ports::provider_limits::{Decision, SlotState, epoch_nanos};
use crate::ports::{Leased, Outage, OutageReason, ProviderLimits, ProviderRate, StoreError};

const SLOT: &str = "s";
const USED: &str = "u";
const OPEN_UNTIL: &str = "ou";
const TRIAL_UNTIL: &str = "tu";
const REASON_CODE: &str = "rc";
const REASON_TEXT: &str = "rm";
/// How long the items outlive their last use (DynamoDB's TTL deletes them after).
const KEEP_SECS: i64 = 24 * 3600;
/// Writes one lease may take when instances contend for the same slot.
const ROUNDS: usize = 6;

/// The slot state this process last wrote, per table and provider: only a guess that saves
/// a second write when it is right (every write is conditional on the item itself).
fn guesses() -> &'static Mutex<HashMap<String, SlotState>> {
    static GUESSES: std::sync::OnceLock<Mutex<HashMap<String, SlotState>>> =
        std::sync::OnceLock::new();
    GUESSES.get_or_init(Mutex::default)
}

fn slot_state(item: &Item) -> Result<Option<SlotState>, StoreError> {
    let slot = get_n::<i64>(item, SLOT)?;
    let used = get_n::<u32>(item, USED)?.unwrap_or(0);
    Ok(slot.map(|slot| SlotState { slot, used }))
}

fn outage(item: &Item) -> Result<Outage, StoreError> {
    let reason = match get_s(item, REASON_CODE)? {
        Some(code) => Some(OutageReason {
            code: parse(code, "failure code")?,
            message: get_s(item, REASON_TEXT)?.unwrap_or_default().to_owned(),
        }),
        None => None,
    };
    Ok(Outage {
        open_until: get_n::<i64>(item, OPEN_UNTIL)?.map(DateTime::from_timestamp_nanos),
        trial_until: get_n::<i64>(item, TRIAL_UNTIL)?.map(DateTime::from_timestamp_nanos),
        reason,
    })
}

#[async_trait]
impl ProviderLimits for DynamoStore {
    async fn lease(
        &self,
        provider: &str,
        rate: ProviderRate,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<Leased, StoreError> {
        let partition = format!("pace#{provider}");
        let guess_key = format!("{}/{provider}", self.config.idempotency_table);
        let now_ns = epoch_nanos(now);
        let ttl = now.timestamp() + KEEP_SECS;
        let mut state = guesses()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&guess_key)
            .copied();
        for _ in 0..ROUNDS {
            let (take, next, fresh) = match rate.decide(state, now_ns, want) {
                Decision::Wait(wait) => return Ok(Leased::Wait(wait)),
                Decision::Take { take, next, fresh } => (take, next, fresh),
            };
            let mut e = Expr::default();
            let (slot, used, t) = (e.name(SLOT), e.name(USED), e.name(idem::TTL));
            let (update, condition) = if fresh {
                (
                    format!(
                        "SET {slot} = {}, {used} = {}, {t} = {}",
                        e.value(n(next.slot)),
                        e.value(n(take)),
                        e.value(n(ttl))
                    ),
                    format!(
                        "attribute_not_exists({slot}) OR {slot} < {}",
                        e.value(n(next.slot))
                    ),
                )
            } else {
                let room = rate.capacity(next.slot) - take;
                (
                    format!(
                        "SET {used} = {used} + {}, {t} = {}",
                        e.value(n(take)),
                        e.value(n(ttl))
                    ),
                    format!(
                        "{slot} = {} AND {used} <= {}",
                        e.value(n(next.slot)),
                        e.value(n(room))
                    ),
                )
            };
            match self
                .update_limit(partition.clone(), update, condition, e)
                .await?
            {
                Written::Done => {
                    guesses()
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(guess_key, next);
                    return Ok(rate.leased(take, next.slot));
                }
                Written::Refused(Some(item)) => state = slot_state(&item)?,
                Written::Refused(None) => {
                    state = match self.counter_item(partition.clone()).await? {
                        Some(item) => slot_state(&item)?,
                        None => None,
                    }
                }
            }
        }
        // Contended past every round: the slots are busy; come back in a moment.
        Ok(Leased::Wait(Duration::from_nanos(
            u64::try_from(rate.spacing() / 4).unwrap_or(0),
        )))
    }

    async fn breaker(&self, provider: &str) -> Result<Outage, StoreError> {
        match self.counter_item(format!("breaker#{provider}")).await? {
            Some(item) => outage(&item),
            None => Ok(Outage::default()),
        }
    }

    async fn open(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: Option<OutageReason>,
    ) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let (ou, tu, rc, rm, t) = (
            e.name(OPEN_UNTIL),
            e.name(TRIAL_UNTIL),
            e.name(REASON_CODE),
            e.name(REASON_TEXT),
            e.name(idem::TTL),
        );
        let until_v = e.value(n(epoch_nanos(until)));
        let ttl = e.value(n(until.timestamp() + KEEP_SECS));
        let update = match reason {
            Some(r) => format!(
                "SET {ou} = {until_v}, {t} = {ttl}, {rc} = {}, {rm} = {} REMOVE {tu}",
                e.value(s(r.code.as_str())),
                e.value(s(r.message))
            ),
            None => format!("SET {ou} = {until_v}, {t} = {ttl} REMOVE {tu}, {rc}, {rm}"),
        };
        let condition = format!("attribute_not_exists({ou}) OR {ou} < {until_v}");
        // Refused: it is open longer already.
        self.update_limit(format!("breaker#{provider}"), update, condition, e)
            .await
            .map(|_| ())
    }

    async fn take_trial(
        &self,
        provider: &str,
        now: DateTime<Utc>,
        hold: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let (ou, tu) = (e.name(OPEN_UNTIL), e.name(TRIAL_UNTIL));
        let now_v = e.value(n(epoch_nanos(now)));
        let update = format!("SET {tu} = {}", e.value(n(epoch_nanos(hold))));
        let condition =
            format!("{ou} <= {now_v} AND (attribute_not_exists({tu}) OR {tu} <= {now_v})");
        let written = self
            .update_limit(format!("breaker#{provider}"), update, condition, e)
            .await?;
        Ok(matches!(written, Written::Done))
    }

    async fn close(&self, provider: &str, opened_until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let (ou, tu, rc, rm) = (
            e.name(OPEN_UNTIL),
            e.name(TRIAL_UNTIL),
            e.name(REASON_CODE),
            e.name(REASON_TEXT),
        );
        let update = format!("REMOVE {ou}, {tu}, {rc}, {rm}");
        let condition = format!("{ou} = {}", e.value(n(epoch_nanos(opened_until))));
        // Refused: opened again since the trial was taken.
        self.update_limit(format!("breaker#{provider}"), update, condition, e)
            .await
            .map(|_| ())
    }
}
