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
    /// How long a receipt for an unknown provider id is worth asking for again.
    pending_window: Duration,
}

impl Receipts {
    pub fn new(store: Arc<dyn MessageStore>, clock: Arc<dyn Clock>) -> Self {
        Receipts {
            store,
            clock,
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
        // A one-part message's receipts decide its status alone, so they are recorded with
        // the status change, in one write. Where the change does not apply (a duplicate, a
        // report that moves nothing) they are recorded on their own.
        let mut single: Vec<(MessageRef, Vec<PartReceipt>)> = Vec::new();
        let mut multi = Vec::with_capacity(known.len());
        let mut multi_segments = Vec::with_capacity(known.len());
        for ((message, receipt), parts) in known.into_iter().zip(segments) {
            if parts <= 1 {
                match single.iter_mut().find(|(m, _)| *m == message) {
                    Some((_, list)) => list.push(receipt),
                    None => single.push((message, vec![receipt])),
                }
            } else {
                multi.push((message, receipt));
                multi_segments.push(parts);
            }
        }
        let mut changes: Vec<Transition> = Vec::new();
        let mut record_only: Vec<(MessageRef, PartReceipt)> = Vec::new();
        for (message, list) in single {
            match aggregate_parts(1, &list).map(|to| (moves_to(to), to)) {
                Some((from, to)) if !from.is_empty() => changes.push(
                    Transition::new(message.tenant_id, message.id, &from, to, now).with(Patch {
                        receipts: list,
                        ..Patch::default()
                    }),
                ),
                _ => record_only.extend(list.into_iter().map(|r| (message.clone(), r))),
            }
        }
        let mut changed: Vec<Message> = Vec::new();
        for (change, after) in changes.iter().zip(self.store.transition(&changes).await?) {
            match after {
                Some(m) => changed.push(m),
                None => record_only.extend(change.patch.receipts.iter().map(|r| {
                    let message = MessageRef {
                        tenant_id: change.tenant_id.clone(),
                        id: change.id,
                    };
                    (message, *r)
                })),
            }
        }
        // Messages of several parts: every part's receipts so far decide.
        let recorded = multi.len();
        multi.extend(record_only);
        let all = if multi.is_empty() {
            Vec::new()
        } else {
            self.store.add_receipts(&multi).await?
        };
        // The last entry for a message holds all of its receipts: that one decides.
        let mut decided: HashMap<MessageRef, MessageStatus> = HashMap::new();
        for (((message, _), parts), receipts) in
            multi[..recorded].iter().zip(&multi_segments).zip(&all)
        {
            if let Some(status) = aggregate_parts(*parts, receipts) {
                decided.insert(message.clone(), status);
            }
        }
        let transitions: Vec<Transition> = decided
            .into_iter()
            .map(|(message, to)| {
                Transition::new(message.tenant_id, message.id, &moves_to(to), to, now)
            })
            .filter(|t| !t.from.is_empty())
            .collect();
        if !transitions.is_empty() {
            changed.extend(
                self.store
                    .transition(&transitions)
                    .await?
                    .into_iter()
                    .flatten(),
            );
        }
        summary.applied = changed.len();
        super::metrics::observe(&changed);
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
        assert_eq!(
            moves_to(Delivered),
            vec![Queued, Sending, Sent, Unconfirmed]
        );
        assert_eq!(moves_to(Sent), vec![Sending]);
        assert!(moves_to(Accepted).is_empty());
    }
}
