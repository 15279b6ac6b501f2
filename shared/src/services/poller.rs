//! Receipts Holub has to ask for, through the same receipts service as pushed ones (so
//! duplicates and stale states change nothing):
//!
//! - at providers that do not push, every message still awaiting a final state is asked
//!   about on each round;
//! - at providers that push and can also be asked ([`SmsProvider::answers_status`]), a
//!   message still `sent` [`PollConfig::reconcile_after`] after it was sent is asked about:
//!   its receipt was pushed while Holub was down, or lost on the way. A process that runs
//!   for long ([`PollConfig::started`]) also asks at once about every message sent before it
//!   started: those are the ones whose receipts may have come while nobody listened. This
//!   is what settles every message after a crash, without waiting for its validity to end.

use std::sync::Arc;
use std::time::Duration;

use crate::ports::{Clock, MessageStore, ReceiptMode, SmsProvider};

use super::gateway::Gateway;
use super::receipts::Receipts;

#[derive(Debug, Clone, Copy)]
pub struct PollConfig {
    /// Messages asked about per provider per round.
    pub batch: usize,
    /// How long a pushed receipt may be overdue before the provider is asked.
    pub reconcile_after: Duration,
    /// When this process started, if it is one that keeps running (`holub serve`, not a
    /// scheduled function): messages sent before are overdue at once.
    pub started: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct Poller {
    store: Arc<dyn MessageStore>,
    gateway: Arc<Gateway>,
    receipts: Arc<Receipts>,
    clock: Arc<dyn Clock>,
    config: PollConfig,
}

impl Poller {
    pub fn new(
        store: Arc<dyn MessageStore>,
        gateway: Arc<Gateway>,
        receipts: Arc<Receipts>,
        clock: Arc<dyn Clock>,
        config: PollConfig,
    ) -> Self {
        Poller {
            store,
            gateway,
            receipts,
            clock,
            config,
        }
    }

    /// One round over every provider that is asked; returns how many messages moved.
    pub async fn poll(&self) -> usize {
        let now = self.clock.now();
        let mut overdue = now
            - chrono::Duration::from_std(self.config.reconcile_after)
                .unwrap_or(chrono::Duration::days(1));
        if let Some(started) = self.config.started {
            overdue = overdue.max(started);
        }
        let mut moved = 0;
        for (name, provider) in self.gateway.providers() {
            let sent_by = match (provider.receipt_mode(), provider.answers_status()) {
                (ReceiptMode::Poll, _) => now,
                (ReceiptMode::Push, true) => overdue,
                (ReceiptMode::Push, false) => continue,
            };
            moved += self.ask(name, provider.as_ref(), sent_by).await;
        }
        moved
    }

    async fn ask(
        &self,
        name: &str,
        provider: &dyn SmsProvider,
        sent_by: chrono::DateTime<chrono::Utc>,
    ) -> usize {
        let ids = match self
            .store
            .awaiting_receipts(name, sent_by, self.config.batch)
            .await
        {
            Ok(ids) if ids.is_empty() => return 0,
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "poll: store not readable");
                return 0;
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
                return 0;
            }
        };
        match self.receipts.apply(name, &receipts).await {
            Ok(summary) => {
                if provider.receipt_mode() == ReceiptMode::Push && summary.applied > 0 {
                    tracing::info!(
                        provider = name,
                        asked = ids.len(),
                        moved = summary.applied,
                        "reconcile: overdue receipts settled by asking the provider"
                    );
                }
                summary.applied
            }
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "poll: receipts not applied");
                0
            }
        }
    }
}
