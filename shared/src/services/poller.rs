//! Receipts from providers that do not push them: their messages still awaiting a final
//! state are asked about, and the answers go through the same receipts service as pushed
//! ones (so duplicates and stale states change nothing).

use std::sync::Arc;

use crate::ports::{MessageStore, ReceiptMode};

use super::gateway::Gateway;
use super::receipts::Receipts;

pub struct Poller {
    store: Arc<dyn MessageStore>,
    gateway: Arc<Gateway>,
    receipts: Arc<Receipts>,
    /// Messages asked about per provider per round.
    batch: usize,
}

impl Poller {
    pub fn new(
        store: Arc<dyn MessageStore>,
        gateway: Arc<Gateway>,
        receipts: Arc<Receipts>,
        batch: usize,
    ) -> Self {
        Poller {
            store,
            gateway,
            receipts,
            batch,
        }
    }

    /// One round over every polled provider; returns how many messages moved.
    pub async fn poll(&self) -> usize {
        let mut moved = 0;
        for (name, provider) in self.gateway.providers() {
            if provider.receipt_mode() != ReceiptMode::Poll {
                continue;
            }
            let ids = match self.store.awaiting_receipts(name, self.batch).await {
                Ok(ids) if ids.is_empty() => continue,
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(provider = name, error = %e, "poll: store not readable");
                    continue;
                }
            };
            let receipts = match provider.status(&ids).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(
                        provider = name,
                        code = %e.code(),
                        "poll: status query failed"
                    );
                    continue;
                }
            };
            match self.receipts.apply(name, &receipts).await {
                Ok(summary) => moved += summary.applied,
                Err(e) => tracing::warn!(provider = name, error = %e, "poll: receipts not applied"),
            }
        }
        moved
    }
}
