//! The consent ledger: per tenant and number, entries that are only ever added (see
//! [`crate::domain::consent`]). SQLite on one machine, DynamoDB on AWS. Numbers are kept as
//! their keyed tags under the tenant's data key and entries sealed under it, so the ledger
//! names no one in clear, and an erased tenant's ledger can no longer be read.

use async_trait::async_trait;

use crate::domain::{ConsentEntry, ConsentState, PhoneNumber, TenantId};

use super::StoreError;

/// The most numbers one [`ConsentStore::states`] call asks about.
pub const MAX_STATES: usize = 10_000;

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Adds `entry` to the ledger of `tenant` × `number`. It becomes the number's state if it
    /// supersedes the current one ([`ConsentEntry::supersedes`]); otherwise it is kept in
    /// the ledger only. Answers the number's state after the change.
    async fn record(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
        entry: &ConsentEntry,
    ) -> Result<ConsentState, StoreError>;

    /// The current state of each of `numbers` (at most [`MAX_STATES`]), in order.
    async fn states(
        &self,
        tenant: &TenantId,
        numbers: &[&PhoneNumber],
    ) -> Result<Vec<ConsentState>, StoreError>;

    /// The whole ledger of one number, in the order recorded.
    async fn ledger(
        &self,
        tenant: &TenantId,
        number: &PhoneNumber,
    ) -> Result<Vec<ConsentEntry>, StoreError>;
}
