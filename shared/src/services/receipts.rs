//! Receipts: providers' delivery reports applied to messages.
//!
//! Reports for the parts of a message are stored, added up into the message's status, and
//! applied with a conditional write that only moves a message forward. Duplicates and
//! reports that arrive out of order therefore change nothing wrong.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::status::{Applied, aggregate_parts};
use crate::domain::{Message, MessageStatus, PartReceipt};
use crate::ports::provider::WHOLE_MESSAGE;
use crate::ports::store::{MessageRef, Patch, Transition};
use crate::ports::{Clock, MessageStore, ProviderReceipt, StoreError};

use super::callbacks::Notifier;

/// What a batch of receipts did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiptSummary {
    pub received: usize,
    /// Messages whose status moved.
    pub applied: usize,
    /// Receipts for provider ids no message carries yet, recent enough that the submit
    /// answer may still be on its way: the provider should send them again later.
    pub pending: usize,
    /// Receipts for unknown provider ids too old to wait for: dropped.
    pub unknown: usize,
}

pub struct Receipts {
    store: Arc<dyn MessageStore>,
    clock: Arc<dyn Clock>,
    notifier: Notifier,
    /// How long a receipt for an unknown provider id is worth asking for again.
    pending_window: Duration,
}

impl Receipts {
    pub fn new(store: Arc<dyn MessageStore>, clock: Arc<dyn Clock>, notifier: Notifier) -> Self {
        Receipts {
            store,
            clock,
            notifier,
            pending_window: Duration::from_secs(120),
        }
    }

    #[tracing::instrument(skip_all, fields(provider, count = receipts.len()))]
    pub async fn apply(
        &self,
        provider: &str,
        receipts: &[ProviderReceipt],
    ) -> Result<ReceiptSummary, StoreError> {
        let mut summary = ReceiptSummary {
            received: receipts.len(),
            ..ReceiptSummary::default()
        };
        if receipts.is_empty() {
            return Ok(summary);
        }
        let ids: Vec<String> = receipts
            .iter()
            .map(|r| r.provider_message_id.clone())
            .collect();
        let targets = self.store.find_by_provider_ids(provider, &ids).await?;
        let now = self.clock.now();
        let window = chrono::Duration::from_std(self.pending_window).unwrap_or_default();
        let mut known = Vec::with_capacity(receipts.len());
        let mut segments = Vec::with_capacity(receipts.len());
        for (receipt, target) in receipts.iter().zip(targets) {
            match target {
                Some(t) => {
                    // A report on the whole message stands for each of its parts.
                    let parts = if receipt.part == WHOLE_MESSAGE {
                        1..=t.segments.max(1)
                    } else {
                        receipt.part..=receipt.part
                    };
                    for part in parts {
                        known.push((
                            t.message.clone(),
                            PartReceipt {
                                part,
                                state: receipt.state,
                                at: receipt.at,
                            },
                        ));
                        segments.push(t.segments);
                    }
                }
                None if now - receipt.at < window => summary.pending += 1,
                None => summary.unknown += 1,
            }
        }
        if known.is_empty() {
            return Ok(summary);
        }
        let all = self.store.add_receipts(&known).await?;
        // The last entry for a message holds all of its receipts: that one decides.
        let mut decided: HashMap<MessageRef, MessageStatus> = HashMap::new();
        for (((message, _), parts), receipts) in known.iter().zip(&segments).zip(&all) {
            if let Some(status) = aggregate_parts(*parts, receipts) {
                decided.insert(message.clone(), status);
            }
        }
        let transitions: Vec<Transition> = decided
            .into_iter()
            .map(|(message, to)| Transition {
                tenant_id: message.tenant_id,
                id: message.id,
                from: moves_to(to),
                to,
                at: now,
                patch: Patch::default(),
            })
            .filter(|t| !t.from.is_empty())
            .collect();
        let changed: Vec<Message> = self
            .store
            .transition(&transitions)
            .await?
            .into_iter()
            .flatten()
            .collect();
        summary.applied = changed.len();
        self.notifier.changed(&changed).await;
        Ok(summary)
    }
}

/// The states from which a report of `to` moves a message forward.
fn moves_to(to: MessageStatus) -> Vec<MessageStatus> {
    MessageStatus::ALL
        .into_iter()
        .filter(|from| from.apply_report(to) == Applied::Moved(to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_move_forward() {
        use MessageStatus::*;
        assert_eq!(moves_to(Delivered), vec![Queued, Sending, Sent]);
        assert_eq!(moves_to(Sent), vec![Sending]);
        assert!(moves_to(Accepted).is_empty());
    }
}
