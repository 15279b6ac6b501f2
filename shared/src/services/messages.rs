//! Reading and cancelling a tenant's messages.

use std::sync::Arc;

use crate::domain::{Message, MessageId, MessageStatus, ShortCode, TenantId, links};
use crate::ports::store::{Click, ListQuery, MessageRef, Page, Transition};
use crate::ports::{Clock, MessageStore, StoreError};

use super::Limits;

/// The largest page `GET /v1/messages` returns.
pub const MAX_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no such message")]
    NotFound,
    #[error("the message is already {0}; only scheduled or queued messages can be cancelled")]
    TooLate(MessageStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Messages {
    store: Arc<dyn MessageStore>,
    clock: Arc<dyn Clock>,
    limits: Arc<Limits>,
}

impl Messages {
    pub fn new(store: Arc<dyn MessageStore>, clock: Arc<dyn Clock>, limits: Arc<Limits>) -> Self {
        Messages {
            store,
            clock,
            limits,
        }
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &MessageId,
    ) -> Result<Option<Message>, StoreError> {
        self.store.get(tenant, id).await
    }

    /// Where a tracked link's short link goes (`None` for a code no message has), counting
    /// the click: by a person or a preview fetcher, as `user_agent` tells. The click is
    /// recorded before the answer, so a redirect that was answered was counted; a click that
    /// cannot be recorded is logged and the redirect answered all the same, since the person
    /// following it must not be stopped by Holub's bookkeeping.
    pub async fn follow(
        &self,
        code: &ShortCode,
        user_agent: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let Some(message) = self.store.follow(code).await? else {
            return Ok(None);
        };
        let Some(link) = message.links.iter().find(|l| l.code == *code) else {
            return Ok(None);
        };
        let click = Click {
            message: MessageRef {
                tenant_id: message.tenant_id.clone(),
                id: message.id,
            },
            at: self.clock.now(),
            visitor: links::visitor(user_agent),
        };
        if let Err(e) = self.store.click(&click).await {
            tracing::warn!(error = %e, message_id = %message.id, "a click could not be recorded");
        }
        Ok(Some(link.url.clone()))
    }

    pub async fn list(&self, tenant: &TenantId, mut query: ListQuery) -> Result<Page, StoreError> {
        query.limit = query.limit.clamp(1, MAX_PAGE);
        self.store.list(tenant, &query).await
    }

    /// Cancels a message that has not yet been handed to dispatch, and gives back what it was
    /// counted at against the spend caps. A job already on the queue finds the message
    /// cancelled and does nothing.
    pub async fn cancel(&self, tenant: &TenantId, id: &MessageId) -> Result<Message, CancelError> {
        let transition = Transition::new(
            tenant.clone(),
            *id,
            &[
                MessageStatus::Accepted,
                MessageStatus::Scheduled,
                MessageStatus::Queued,
            ],
            MessageStatus::Cancelled,
            self.clock.now(),
        );
        let changed = self
            .store
            .transition(std::slice::from_ref(&transition))
            .await?;
        if let Some(Some(message)) = changed.into_iter().next() {
            super::metrics::observe([&message]);
            self.limits.refund_cancelled(&message).await;
            return Ok(message);
        }
        match self.store.get(tenant, id).await? {
            None => Err(CancelError::NotFound),
            Some(m) => Err(CancelError::TooLate(m.status)),
        }
    }
}
