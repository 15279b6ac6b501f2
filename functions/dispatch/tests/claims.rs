//! Claims that tell the truth: when the store takes a batch of claims in part (DynamoDB
//! throttling some of its updates), dispatch sends exactly the messages it claimed, hands
//! back only the jobs whose claims failed, and those messages stay `queued`, to be sent once
//! when their jobs come back: none is sent twice, none is stuck in `sending` or failed
//! unsent.
//!
//! moto does not throttle, so the partial batch is made here: the real SQLite store behind a
//! wrapper that refuses the claims of chosen messages without applying them, as DynamoDB's
//! `ProvisionedThroughputExceededException` does to single updates of a batch.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use holub_shared::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
use holub_shared::domain::status::PartReceipt;
use holub_shared::domain::{
    IdempotencyKey, Message, MessageId, MessageStatus, ShortCode, TenantId, TenantLimits,
};
use holub_shared::ports::store::IdempotencyRecord;
use holub_shared::ports::{
    Click, ListQuery, MessageRef, MessageStore, Page, ReceiptTarget, StoreError, Transition,
};
use holub_shared::services::JobOutcome;
use holub_shared::services::jobs::DispatchJob;

mod common;

use common::{queued, simulated_dispatcher};

/// The SQLite store, refusing claims (`→ sending`) of the messages in `refuse`.
struct Throttling {
    inner: SqliteBackend,
    refuse: Mutex<HashSet<MessageId>>,
}

impl Throttling {
    fn refused(&self, t: &Transition) -> bool {
        t.to == MessageStatus::Sending && self.refuse.lock().unwrap().contains(&t.id)
    }
}

#[async_trait]
impl MessageStore for Throttling {
    async fn insert(
        &self,
        messages: &[Message],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        self.inner.insert(messages, idempotency).await
    }
    async fn idempotency(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency(tenant, key).await
    }
    async fn get(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<Message>, StoreError> {
        self.inner.get(tenant, id).await
    }
    async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(tenant, query).await
    }
    async fn transition(&self, changes: &[Transition]) -> Result<Vec<Option<Message>>, StoreError> {
        self.transition_each(changes).await.into_iter().collect()
    }
    async fn transition_each(
        &self,
        changes: &[Transition],
    ) -> Vec<Result<Option<Message>, StoreError>> {
        let kept: Vec<Transition> = changes
            .iter()
            .filter(|t| !self.refused(t))
            .cloned()
            .collect();
        let mut applied = self.inner.transition_each(&kept).await.into_iter();
        changes
            .iter()
            .map(|t| {
                if self.refused(t) {
                    Err(StoreError::Unavailable("throughput exceeded".into()))
                } else {
                    applied
                        .next()
                        .unwrap_or_else(|| Err(StoreError::Unavailable("lost".into())))
                }
            })
            .collect()
    }
    async fn follow(&self, code: &ShortCode) -> Result<Option<Message>, StoreError> {
        self.inner.follow(code).await
    }
    async fn click(&self, click: &Click) -> Result<Option<Message>, StoreError> {
        self.inner.click(click).await
    }
    async fn find_by_provider_ids(
        &self,
        provider: &str,
        ids: &[String],
    ) -> Result<Vec<Option<ReceiptTarget>>, StoreError> {
        self.inner.find_by_provider_ids(provider, ids).await
    }
    async fn add_receipts(
        &self,
        receipts: &[(MessageRef, PartReceipt)],
    ) -> Result<Vec<Vec<PartReceipt>>, StoreError> {
        self.inner.add_receipts(receipts).await
    }
    async fn due_scheduled(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        self.inner.due_scheduled(now, limit).await
    }
    async fn stale_queued(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        self.inner.stale_queued(cutoff, limit).await
    }
    async fn awaiting_receipts(
        &self,
        provider: &str,
        sent_by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.awaiting_receipts(provider, sent_by, limit).await
    }
    async fn sent_past_validity(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        self.inner.sent_past_validity(cutoff, limit).await
    }
}

#[tokio::test]
async fn a_batch_of_claims_taken_in_part_sends_what_it_claimed_and_nothing_twice() {
    let dir = std::env::temp_dir().join(format!("holub-dispatch-claims-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let backend = SqliteBackend::open(
        &dir.join("holub.db"),
        SqliteConfig {
            sync: SyncMode::Normal,
            ..SqliteConfig::default()
        },
    )
    .unwrap();
    let tenant = TenantId::generate(Utc::now());
    let messages: Vec<Message> = (0..10)
        .map(|i| {
            let to = format!("067{:07}", 1_234_000 + i);
            queued(&tenant, MessageId::generate(Utc::now()), &to)
        })
        .collect();
    backend.insert(&messages, None).await.unwrap();
    let refused: HashSet<MessageId> = [1, 4, 7].iter().map(|i| messages[*i].id).collect();
    let store = Arc::new(Throttling {
        inner: backend.clone(),
        refuse: Mutex::new(refused.clone()),
    });

    let (sim, dispatcher) =
        simulated_dispatcher(store.clone(), &backend, TenantLimits::default()).await;
    let jobs: Vec<Option<DispatchJob>> = messages
        .iter()
        .map(|m| {
            Some(DispatchJob {
                tenant_id: tenant.clone(),
                id: m.id,
            })
        })
        .collect();

    // The first delivery of the batch: seven claimed and sent, three handed back.
    let outcomes = dispatcher.handle_batch(&jobs).await;
    for (m, outcome) in messages.iter().zip(&outcomes) {
        let stored = backend.get(&tenant, &m.id).await.unwrap().unwrap();
        if refused.contains(&m.id) {
            assert!(matches!(outcome, JobOutcome::Retry(_)), "{outcome:?}");
            assert_eq!(
                stored.status,
                MessageStatus::Queued,
                "not claimed, not failed"
            );
            assert_eq!(stored.attempts, 0);
        } else {
            assert_eq!(*outcome, JobOutcome::Done);
            assert_eq!(stored.status, MessageStatus::Sent);
        }
    }
    assert_eq!(sim.stats().accepted, 7);

    // The store takes every claim again; the whole batch comes back (SQS redelivers the
    // failed records, and the others may come again too): the three are sent, once each.
    store.refuse.lock().unwrap().clear();
    let outcomes = dispatcher.handle_batch(&jobs).await;
    assert!(
        outcomes.iter().all(|o| *o == JobOutcome::Done),
        "{outcomes:?}"
    );
    for m in &messages {
        let stored = backend.get(&tenant, &m.id).await.unwrap().unwrap();
        assert_eq!(stored.status, MessageStatus::Sent);
        assert_eq!(stored.attempts, 1, "one submission each");
    }
    let stats = sim.stats();
    assert_eq!((stats.accepted, stats.duplicates), (10, 0));
    let _ = std::fs::remove_dir_all(&dir);
}
