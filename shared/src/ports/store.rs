//! Storage of tenants, API keys, messages, idempotency records and receipts. SQLite on one
//! machine, DynamoDB on AWS. Every change of a message's status is a conditional write: it
//! applies only if the message is still in one of the states the caller expects, which is
//! what makes claims, cancels and receipts safe under concurrency and redelivery.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::status::PartReceipt;
use crate::domain::{
    ApiKeyRecord, AuditEntry, BatchId, IdempotencyKey, KeyId, Kopiyky, Message, MessageError,
    MessageId, MessageStatus, PhoneNumber, SenderId, SenderRecord, ShortCode, TenantId,
    TenantLimits, Visitor,
};

use super::Retryable;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The idempotency key is already taken (by a concurrent request, or an earlier one).
    #[error("the idempotency key is already used")]
    IdempotencyKeyTaken,
    /// A request with this idempotency key is still being stored (or died storing it less
    /// than a store-defined while ago): ask again later.
    #[error("a request with this idempotency key is still in progress")]
    IdempotencyKeyInFlight,
    /// A record with this identity already exists.
    #[error("already exists")]
    AlreadyExists,
    /// What the call names (a tenant, say) does not exist.
    #[error("not found")]
    NotFound,
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The tenant's data key was erased: what it sealed cannot be read, and nothing new is
    /// sealed under it.
    #[error("the tenant's data was erased")]
    Erased,
    /// What the store holds cannot be read back into valid values.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl Retryable for StoreError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::IdempotencyKeyInFlight
        )
    }
}

/// The response stored under an idempotency key, replayed for a repeated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub tenant_id: TenantId,
    pub key: IdempotencyKey,
    /// A hash of the request; the same key with another request is a conflict.
    pub fingerprint: String,
    pub status_code: u16,
    pub body: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A conditional change of one message's status.
#[derive(Debug, Clone)]
pub struct Transition {
    pub tenant_id: TenantId,
    pub id: MessageId,
    /// Applies only if the message is in one of these states now.
    pub from: Vec<MessageStatus>,
    pub to: MessageStatus,
    pub at: DateTime<Utc>,
    pub patch: Patch,
}

impl Transition {
    /// A change of a message to `to` at `at`, if it is in one of `from` now.
    pub fn new(
        tenant_id: TenantId,
        id: MessageId,
        from: &[MessageStatus],
        to: MessageStatus,
        at: DateTime<Utc>,
    ) -> Self {
        Transition {
            tenant_id,
            id,
            from: from.to_vec(),
            to,
            at,
            patch: Patch::default(),
        }
    }

    /// The same change, with fields set along with the status.
    pub fn with(mut self, patch: Patch) -> Self {
        self.patch = patch;
        self
    }
}

/// Fields that change together with a status.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub cost: Option<Kopiyky>,
    pub error: Option<MessageError>,
    /// Count one more submission attempt.
    pub count_attempt: bool,
    /// Take back the attempt a claim counted: the claimed message was not submitted (it
    /// waits for its sending window).
    pub uncount_attempt: bool,
    /// A new `send_at` (for a message that becomes `scheduled` again).
    pub send_at: Option<DateTime<Utc>>,
    /// Part receipts recorded with the change, in the same write (a duplicate of a stored
    /// one is kept once). Recorded only if the change applies.
    pub receipts: Vec<PartReceipt>,
}

/// Filters of `GET /v1/messages`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub status: Option<MessageStatus>,
    pub to: Option<PhoneNumber>,
    pub from: Option<SenderId>,
    pub batch_id: Option<BatchId>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Newest first; continue after this id.
    pub after: Option<MessageId>,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub messages: Vec<Message>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next: Option<MessageId>,
}

/// A message reference found by a sweep (release of scheduled messages, expiry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageRef {
    pub tenant_id: TenantId,
    pub id: MessageId,
}

/// One follow of a tracked link of a message.
#[derive(Debug, Clone)]
pub struct Click {
    pub message: MessageRef,
    pub at: DateTime<Utc>,
    pub visitor: Visitor,
}

/// What a receipt needs to know of the message it reports on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptTarget {
    pub message: MessageRef,
    pub segments: u16,
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores new messages, all or none, together with the idempotency record if given.
    /// Fails with [`StoreError::IdempotencyKeyTaken`] if the key exists.
    async fn insert(
        &self,
        messages: &[Message],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError>;

    async fn idempotency(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    async fn get(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<Message>, StoreError>;

    async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page, StoreError>;

    /// Applies each transition whose condition holds; returns, in order, the message after
    /// the change, or `None` where the condition did not hold (or the message is unknown).
    async fn transition(&self, changes: &[Transition]) -> Result<Vec<Option<Message>>, StoreError>;

    /// As [`transition`](Self::transition), with an answer per change that stays exact when
    /// some fail: `Ok` as there (applied, or its condition did not hold), or `Err`: not
    /// applied, as far as the store can tell. A store whose batch is all or nothing (SQLite:
    /// one transaction) answers every change with the batch's error, as this default does;
    /// one that applies changes one by one (DynamoDB) says which landed and which did not.
    /// Dispatch claims and records with it, so a throttled batch never leaves a message
    /// claimed behind a job that was told its claim failed. (A request whose answer was lost
    /// on the way may still have applied; dispatch's orphan path settles those, never
    /// sending twice.)
    async fn transition_each(
        &self,
        changes: &[Transition],
    ) -> Vec<Result<Option<Message>, StoreError>> {
        match self.transition(changes).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) => {
                let why = e.to_string();
                changes
                    .iter()
                    .map(|_| {
                        Err(match &e {
                            StoreError::Erased => StoreError::Erased,
                            StoreError::Corrupt(c) => StoreError::Corrupt(c.clone()),
                            _ => StoreError::Unavailable(why.clone().into()),
                        })
                    })
                    .collect()
            }
        }
    }

    /// The messages that providers' ids belong to, in the order asked; `None` for ids that
    /// no message carries.
    async fn find_by_provider_ids(
        &self,
        provider: &str,
        provider_message_ids: &[String],
    ) -> Result<Vec<Option<ReceiptTarget>>, StoreError>;

    /// Records part receipts (a duplicate of a stored receipt is kept once) and returns, for
    /// each input in order, all receipts of that message so far, this batch's included.
    async fn add_receipts(
        &self,
        receipts: &[(MessageRef, PartReceipt)],
    ) -> Result<Vec<Vec<PartReceipt>>, StoreError>;

    /// The message that has a tracked link with this code; `None` for a code no message has
    /// (or whose message is gone).
    async fn follow(&self, code: &ShortCode) -> Result<Option<Message>, StoreError>;

    /// Counts a click on one of a message's tracked links, in one write with what the
    /// statistics learn of it and, for its first click by a person where the message has a
    /// `callback_url`, the `message.clicked` callback. Answers the message after the click,
    /// or `None` if there is no such message.
    async fn click(&self, click: &Click) -> Result<Option<Message>, StoreError>;

    /// Scheduled messages whose `send_at` is at or before `now`, oldest first.
    async fn due_scheduled(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError>;

    /// Messages in `queued` whose last change is at or before `cutoff`, oldest first. A
    /// message is stored before its queue job is sent, so a crash in between leaves it
    /// queued with no job; sweeping these and sending their jobs again closes that gap (a
    /// second job for a message that has one is harmless: dispatch claims before it sends).
    async fn stale_queued(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError>;

    /// The provider's ids of messages it carried that are `sent` and still await a final
    /// receipt, sent (last changed) at or before `sent_by`, earliest validity end first:
    /// what is polled at providers that do not push, and what is reconciled at those that
    /// push when a receipt is overdue.
    async fn awaiting_receipts(
        &self,
        provider: &str,
        sent_by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// Messages in `sent` whose validity ended at or before `cutoff`, oldest validity first:
    /// their final receipt is not coming. (Messages still waiting to be sent need no sweep:
    /// dispatch expires a message whose validity has ended when it takes its job, and every
    /// waiting message has a job coming — a scheduled one at release, a lost one from
    /// [`MessageStore::stale_queued`].)
    async fn sent_past_validity(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError>;

    /// Seals a batch of records stored before numbers and texts were sealed; answers how
    /// many, 0 once none are left. Stores without such records (DynamoDB, whose items from
    /// before sealing expire with their TTL) do nothing.
    async fn seal_legacy(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Deletes up to `limit` messages that are final and were created before their tenant's
    /// cutoff in `messages` (with their receipts), every message of a tenant whose data was
    /// erased, and idempotency records made before `idempotency_before`; returns how many. A
    /// store whose records expire by themselves (DynamoDB with TTL) deletes nothing here.
    async fn forget_old(
        &self,
        _messages: &Retention,
        _idempotency_before: DateTime<Utc>,
        _limit: usize,
    ) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Up to when final messages are deleted: tenants' own cutoffs, and one for all others.
#[derive(Debug, Clone)]
pub struct Retention {
    pub before: DateTime<Utc>,
    pub tenants: Vec<(TenantId, DateTime<Utc>)>,
}

/// A tenant as stored; its API keys are stored only as hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Tenants, their API keys, their senders and the audit log of administrative changes. Every
/// administrative change is written together with its [`AuditEntry`], all or nothing.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Stores a tenant with its first API key. Fails with [`StoreError::AlreadyExists`] if
    /// either exists.
    async fn create_tenant(
        &self,
        tenant: &Tenant,
        first_key: &ApiKeyRecord,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;

    /// The record of a presented key: found by `id` for current keys, by `hash` for keys from
    /// before key ids. Revoked and expired keys are returned too (the caller decides); the
    /// caller also compares the hash.
    async fn api_key(
        &self,
        id: Option<&KeyId>,
        hash: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Gives an existing tenant another API key ([`StoreError::NotFound`] if the tenant does
    /// not exist).
    async fn add_key(&self, key: &ApiKeyRecord, audit: &AuditEntry) -> Result<(), StoreError>;

    /// A tenant's keys that have ids, oldest first, revoked ones included.
    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Sets a live key's `revoked_at` (`expires_at` too, for a rotation's grace period, if
    /// given and sooner), or stores `new` alongside for a rotation: one write. Answers the key
    /// after the change, or `None` if `tenant` has no live key `id`.
    async fn end_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        end: KeyEnd,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Revokes a key from before key ids, found by hash. Answers whether a live key was
    /// revoked.
    async fn revoke_legacy_key(
        &self,
        hash: &str,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;

    /// Records that a key was used at `at` (called at most about once a minute per key and
    /// process; a lost update only makes `last_used_at` older).
    async fn touch_key(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// A tenant's audit entries, newest first, older than the entry `before` if given.
    async fn audit_log(
        &self,
        tenant: &TenantId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError>;

    /// The senders registered to a tenant.
    async fn senders(&self, tenant: &TenantId) -> Result<Vec<SenderRecord>, StoreError>;

    /// Stores a sender: a new one ([`StoreError::AlreadyExists`] if it is registered), or a
    /// change of an existing one ([`StoreError::NotFound`] if it is not).
    async fn put_sender(
        &self,
        sender: &SenderRecord,
        new: bool,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;

    /// Removes a sender; answers whether it was registered.
    async fn remove_sender(
        &self,
        tenant: &TenantId,
        sender: &SenderId,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;

    /// The tenant's own limits, if the operator set any (otherwise the defaults hold).
    async fn limits(&self, tenant: &TenantId) -> Result<Option<TenantLimits>, StoreError>;

    /// The tenants whose limits set their own retention, with it (in days).
    async fn retention_days(&self) -> Result<Vec<(TenantId, u32)>, StoreError>;

    /// Erases the tenant's data: its data key (so what was sealed under it can never be
    /// read again, nor anything new sealed), and its API keys are revoked; one write with
    /// the audit entry. Answers whether there was a live data key. `NotFound` if there is no
    /// such tenant.
    async fn erase_tenant(
        &self,
        tenant: &TenantId,
        at: DateTime<Utc>,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;

    /// Appends an entry for a change kept outside the store (a secret's rotation).
    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError>;

    /// Sets the tenant's limits, with the audit entry of the change. `NotFound` if there is
    /// no such tenant.
    async fn put_limits(
        &self,
        tenant: &TenantId,
        limits: &TenantLimits,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
}

/// How a key stops working.
#[derive(Debug, Clone)]
pub enum KeyEnd {
    /// Now.
    Revoke(DateTime<Utc>),
    /// A rotation: `new` is stored, and the old key expires at `old_until` (now, or after a
    /// grace period in which both work) unless it expires sooner already.
    Rotate {
        new: Box<ApiKeyRecord>,
        old_until: DateTime<Utc>,
    },
}
