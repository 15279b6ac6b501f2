//! The sweeper: time-driven work. It releases scheduled messages when they are due, puts
//! back on the queue messages whose job was lost in a crash, and expires messages whose
//! validity ended. Each step is safe to run concurrently with itself and to repeat.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Message, MessageStatus};
use crate::ports::store::Transition;
use crate::ports::{Clock, MessageStore, Queue, QueueError, QueueName, StoreError};

use super::jobs::{self, DispatchJob};

#[derive(Debug, Clone)]
pub struct SweeperConfig {
    /// Messages handled per step.
    pub batch: usize,
    /// A message queued this long without being claimed gets its job sent again.
    pub requeue_after: Duration,
    /// Grace after validity for a sent message's final receipt before it is expired.
    pub receipt_grace: Duration,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            batch: 1000,
            requeue_after: Duration::from_secs(300),
            receipt_grace: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What one [`Sweeper::sweep`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub released: usize,
    pub requeued: usize,
    pub expired: usize,
    /// Steps that failed, said in words (no message content).
    pub errors: Vec<String>,
}

pub struct Sweeper {
    store: Arc<dyn MessageStore>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    config: SweeperConfig,
}

fn to_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_default()
}

impl Sweeper {
    pub fn new(
        store: Arc<dyn MessageStore>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        config: SweeperConfig,
    ) -> Self {
        Sweeper {
            store,
            queue,
            clock,
            config,
        }
    }

    /// Releases due scheduled messages: `scheduled → queued`, then their jobs. (A crash in
    /// between is mended by [`Sweeper::requeue_stale`].) Returns how many were released.
    pub async fn release_due(&self) -> Result<usize, SweepError> {
        let now = self.clock.now();
        let due = self.store.due_scheduled(now, self.config.batch).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let transitions: Vec<Transition> = due
            .into_iter()
            .map(|r| {
                Transition::new(
                    r.tenant_id,
                    r.id,
                    &[MessageStatus::Scheduled],
                    MessageStatus::Queued,
                    now,
                )
            })
            .collect();
        let released: Vec<Message> = self
            .store
            .transition(&transitions)
            .await?
            .into_iter()
            .flatten()
            .collect();
        super::metrics::observe(&released);
        self.enqueue(&released).await?;
        Ok(released.len())
    }

    /// Sends the jobs of messages that have sat in `queued` too long, in case theirs was lost.
    pub async fn requeue_stale(&self) -> Result<usize, SweepError> {
        let cutoff = self.clock.now() - to_duration(self.config.requeue_after);
        let stale = self.store.stale_queued(cutoff, self.config.batch).await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let jobs: Vec<_> = stale
            .iter()
            .map(|r| {
                jobs::outgoing(&DispatchJob {
                    tenant_id: r.tenant_id.clone(),
                    id: r.id,
                })
            })
            .collect();
        self.queue.send_batch(QueueName::Dispatch, jobs).await?;
        // Touch them so the next sweep does not send their jobs again right away.
        let now = self.clock.now();
        let touches: Vec<Transition> = stale
            .into_iter()
            .map(|r| {
                Transition::new(
                    r.tenant_id,
                    r.id,
                    &[MessageStatus::Queued],
                    MessageStatus::Queued,
                    now,
                )
            })
            .collect();
        let n = touches.len();
        self.store.transition(&touches).await?;
        Ok(n)
    }

    /// Expires sent messages whose validity ended a grace period ago with no final receipt.
    /// (Messages still waiting to be sent are expired by dispatch when their job comes up.)
    pub async fn expire(&self) -> Result<usize, SweepError> {
        let now = self.clock.now();
        let cutoff = now - to_duration(self.config.receipt_grace);
        let stale = self
            .store
            .sent_past_validity(cutoff, self.config.batch)
            .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let transitions: Vec<Transition> = stale
            .into_iter()
            .map(|r| {
                Transition::new(
                    r.tenant_id,
                    r.id,
                    &[MessageStatus::Sent],
                    MessageStatus::Expired,
                    now,
                )
            })
            .collect();
        let expired: Vec<Message> = self
            .store
            .transition(&transitions)
            .await?
            .into_iter()
            .flatten()
            .collect();
        super::metrics::observe(&expired);
        Ok(expired.len())
    }

    /// Releases batch after batch until nothing more is due (a large schedule is released in
    /// batches), at most `max_rounds` batches. Returns how many were released, and the error
    /// that stopped it early, if one did.
    pub async fn release_all(&self, max_rounds: usize) -> (usize, Option<SweepError>) {
        let mut released = 0;
        for _ in 0..max_rounds.max(1) {
            match self.release_due().await {
                Ok(0) => break,
                Ok(n) => released += n,
                Err(e) => return (released, Some(e)),
            }
        }
        (released, None)
    }

    /// Every sweep once, as a scheduled run does it: release until nothing more is due (at
    /// most `max_rounds` batches, so one run stays bounded), then requeue, then expiry. A
    /// failing step is reported and does not keep the others from running.
    pub async fn sweep(&self, max_rounds: usize) -> SweepReport {
        let mut report = SweepReport::default();
        let (released, failed) = self.release_all(max_rounds).await;
        report.released = released;
        if let Some(e) = failed {
            report.errors.push(format!("release: {e}"));
        }
        match self.requeue_stale().await {
            Ok(n) => report.requeued = n,
            Err(e) => report.errors.push(format!("requeue: {e}")),
        }
        match self.expire().await {
            Ok(n) => report.expired = n,
            Err(e) => report.errors.push(format!("expiry: {e}")),
        }
        report
    }

    async fn enqueue(&self, messages: &[Message]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let jobs = messages
            .iter()
            .map(|m| {
                jobs::outgoing(&DispatchJob {
                    tenant_id: m.tenant_id.clone(),
                    id: m.id,
                })
            })
            .collect();
        self.queue.send_batch(QueueName::Dispatch, jobs).await
    }
}
