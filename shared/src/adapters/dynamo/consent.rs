//! [`ConsentStore`] on DynamoDB, in the tenants table (partition key `pk` only): the ledger
//! is durable, so it lives with the tenants' other records, kept until deleted, and not
//! in a table whose items expire. A number is only its keyed tag under the tenant's data
//! key (lowercase hex), each entry is sealed under that key, and no item enters an index.
//!
//! | item | `pk` | attributes |
//! |---|---|---|
//! | a number's state | `consent#<tenant>#<tag>` | `t` tenant, `ne` entries in the ledger, `st` state (`given`, `withdrawn`), `at`/`rc` the deciding entry's `at` and `recorded_at` (ns) |
//! | a ledger entry | `consent#<tenant>#<tag>#<n>` (n = 0, 1, ... in the order recorded) | `t` tenant, `sl` the entry, sealed (B) |
//!
//! Entries are numbered by the count in the state item, so a ledger is keys known in
//! advance: strongly consistent reads in the exact order recorded, where an index would
//! cost a write per entry and could only be read eventually consistently.
//!
//! `record` reads the state item (strongly consistent), then puts entry `ne` and updates the
//! state item in one `TransactWriteItems`, on condition that `ne` is still what it read:
//! `ne` + 1, and the entry's state if it supersedes the one read. A concurrent record of the
//! same number fails that condition, and the call reads and tries again. `states` reads the
//! state items with `BatchGetItem` (strongly consistent: an opt-out counts at once).

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use super::codec::{Item, corrupt, get_n, n, nanos, req_n, req_s, s, tenant};
use super::txn::{self, ROUNDS, attempt_token, cancellation_codes, kept_changing, pause};
use super::{DynamoStore, Expr, unavailable};
use crate::domain::sealing::NUMBER_TAG_BYTES;
use crate::domain::{ConsentEntry, ConsentState, PhoneNumber, TenantId};
use crate::ports::consent::MAX_STATES;
use crate::ports::{ConsentStore, StoreError};

const STATE: &str = "st";
const AT: &str = "at";
const RECORDED: &str = "rc";
const ENTRIES: &str = "ne";
const SEALED: &str = "sl";

type Tag = [u8; NUMBER_TAG_BYTES];

fn state_key(tenant: &TenantId, tag: &Tag) -> String {
    format!("consent#{tenant}#{}", hex::encode(tag))
}

fn entry_key(state_key: &str, seq: u64) -> String {
    format!("{state_key}#{seq}")
}

fn state_str(state: ConsentState) -> &'static str {
    match state {
        ConsentState::None => "none",
        ConsentState::Given => "given",
        ConsentState::Withdrawn => "withdrawn",
    }
}

fn state_from(item: &Item) -> Result<ConsentState, StoreError> {
    match req_s(item, STATE)? {
        "given" => Ok(ConsentState::Given),
        "withdrawn" => Ok(ConsentState::Withdrawn),
        other => Err(corrupt(format!("consent state {other:?}"))),
    }
}

/// A number's state item as `record` read it.
struct Current {
    entries: u64,
    /// The deciding entry's `at` and `recorded_at`, in nanoseconds.
    decided: (i64, i64),
    state: ConsentState,
}

impl Current {
    fn read(item: &Item) -> Result<Current, StoreError> {
        Ok(Current {
            entries: req_n(item, ENTRIES)?,
            decided: (req_n(item, AT)?, req_n(item, RECORDED)?),
            state: state_from(item)?,
        })
    }
}

/// Why a `record` transaction was refused, when it was refused rather than failed.
enum Refused {
    /// The state item moved since it was read (or another transaction held it): read again.
    Moved,
    /// The entry's slot is taken: by a concurrent record (read again), or, if the count
    /// read again still says it is free, by a ledger that has lost its count.
    SlotTaken,
}

/// Why `e` refused the transaction of `record` (its entry's put, then its state's update);
/// `None` if it was not refused.
fn refused<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Refused> {
    let codes = cancellation_codes(e)?;
    let code = |i: usize| codes.get(i).copied().flatten();
    match (code(0), code(1)) {
        // A concurrent record took the slot too, and moved the count.
        (_, Some("ConditionalCheckFailed" | "TransactionConflict"))
        | (Some("TransactionConflict"), _) => Some(Refused::Moved),
        (Some("ConditionalCheckFailed"), _) => Some(Refused::SlotTaken),
        _ => None,
    }
}

impl DynamoStore {
    fn consent_table(&self) -> &str {
        &self.config.tenants_table
    }

    /// The transaction that adds `sealed` to the ledger after `current` (none: the first
    /// entry), with the state `next` when the entry supersedes.
    fn consent_write(
        &self,
        tenant: &TenantId,
        key: &str,
        current: Option<&Current>,
        sealed: Vec<u8>,
        next: Option<(ConsentState, (i64, i64))>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let seq = current.map_or(0, |c| c.entries);
        let entry = txn::put_new(
            self.consent_table(),
            Item::from([
                (tenant::KEY.to_owned(), s(entry_key(key, seq))),
                (tenant::TENANT.to_owned(), s(tenant.as_str())),
                (SEALED.to_owned(), AttributeValue::B(Blob::new(sealed))),
            ]),
        )?;

        let mut e = Expr::default();
        let condition = match current {
            None => format!("attribute_not_exists({})", e.name(tenant::KEY)),
            Some(c) => format!("{} = {}", e.name(ENTRIES), e.value(n(c.entries))),
        };
        let mut sets = vec![
            format!("{} = {}", e.name(ENTRIES), e.value(n(seq + 1))),
            format!(
                "{} = {}",
                e.name(tenant::TENANT),
                e.value(s(tenant.as_str()))
            ),
        ];
        if let Some((state, (at, recorded))) = next {
            for (attr, value) in [
                (STATE, s(state_str(state))),
                (AT, n(at)),
                (RECORDED, n(recorded)),
            ] {
                sets.push(format!("{} = {}", e.name(attr), e.value(value)));
            }
        }
        let state = txn::update(
            self.consent_table(),
            key.to_owned(),
            format!("SET {}", sets.join(", ")),
            condition,
            &e,
        )?;
        Ok(vec![entry, state])
    }
}

#[async_trait]
impl ConsentStore for DynamoStore {
    async fn record(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
        entry: &ConsentEntry,
    ) -> Result<ConsentState, StoreError> {
        let data_key = self.vault.sealing_key(tenant).await?;
        let tag = data_key.number_tag(number);
        let sealed = data_key.seal_consent(tenant, &tag, entry);
        let key = state_key(tenant, &tag);
        let decided = (nanos(entry.at)?, nanos(entry.recorded_at)?);
        let mut taken = None;
        for round in 1..=ROUNDS {
            // The number's state item, strongly consistent.
            let current = self
                .tenants_item(&key, None)
                .await?
                .as_ref()
                .map(Current::read)
                .transpose()?;
            let seq = current.as_ref().map_or(0, |c| c.entries);
            if taken == Some(seq) {
                return Err(corrupt(format!(
                    "consent entry {seq} of a number of tenant {tenant} exists beyond its \
                     ledger's count"
                )));
            }
            // As `ConsentEntry::supersedes`: as late as the deciding entry or later.
            let supersedes = current.as_ref().is_none_or(|c| decided >= c.decided);
            let after = match &current {
                Some(c) if !supersedes => c.state,
                _ => ConsentState::of(entry),
            };
            let items = self.consent_write(
                tenant,
                &key,
                current.as_ref(),
                sealed.clone(),
                supersedes.then_some((after, decided)),
            )?;
            // A token per attempt: the SDK's retry of a write that did commit is answered
            // as a success instead of adding the entry twice.
            match self.send_transaction(items, attempt_token()).await {
                Ok(()) => return Ok(after),
                Err(e) => match refused(&e) {
                    Some(Refused::Moved) => {}
                    Some(Refused::SlotTaken) => taken = Some(seq),
                    None => return Err(unavailable(e)),
                },
            }
            // Jittered, so that records of one number that collided do not collide again.
            pause(round).await;
        }
        Err(kept_changing("a number's consent", "recording"))
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
        // No data key yet: nothing was recorded (and reading makes none).
        let Some(data_key) = self.vault.held_key(tenant).await? else {
            return Ok(vec![ConsentState::None; numbers.len()]);
        };
        let keys: Vec<String> = numbers
            .iter()
            .map(|number| state_key(tenant, &data_key.number_tag(number)))
            .collect();
        let found = self.tenants_items(keys.clone(), Some(&[STATE])).await?;
        keys.iter()
            .map(|key| found.get(key).map_or(Ok(ConsentState::None), state_from))
            .collect()
    }

    async fn ledger(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
    ) -> Result<Vec<ConsentEntry>, StoreError> {
        let Some(data_key) = self.vault.held_key(tenant).await? else {
            return Ok(Vec::new());
        };
        let tag = data_key.number_tag(number);
        let key = state_key(tenant, &tag);
        let Some(state) = self.tenants_item(&key, None).await? else {
            return Ok(Vec::new());
        };
        let count: u64 = get_n(&state, ENTRIES)?.unwrap_or(0);
        let keys: Vec<String> = (0..count).map(|seq| entry_key(&key, seq)).collect();
        let mut found = self.tenants_items(keys.clone(), Some(&[SEALED])).await?;
        keys.iter()
            .map(|k| {
                let item = found
                    .remove(k)
                    .ok_or_else(|| corrupt(format!("consent entry {k} is missing")))?;
                let Some(AttributeValue::B(sealed)) = item.get(SEALED) else {
                    return Err(corrupt(format!("consent entry {k} is not sealed")));
                };
                data_key
                    .open_consent(tenant, &tag, sealed.as_ref())
                    .map_err(|e| corrupt(format!("consent entry: {e}")))
            })
            .collect()
    }
}
