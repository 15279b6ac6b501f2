//! The job contract: a queue consumer takes a batch of deliveries and answers one
//! [`JobOutcome`] per delivery; [`settle`] then does what each outcome means to the queue.
//! The single binary's queue loops and the Lambda functions' SQS batches run the same
//! consumers and the same settle policy; they differ only in who deletes finished jobs.

use async_trait::async_trait;

use crate::ports::{Delivery, Queue, QueueName};
use crate::services::jobs::{self, CallbackJob, CampaignJob, DispatchJob};
use crate::services::{CallbackSender, Campaigns, Dispatcher, JobOutcome};

#[async_trait]
pub trait Consumer: Send + Sync {
    /// The queue it consumes.
    fn queue(&self) -> QueueName;

    /// One outcome per delivery, in order. A body that is not a job is `Poison`.
    async fn consume(&self, deliveries: &[Delivery]) -> Vec<JobOutcome>;
}

#[async_trait]
impl Consumer for Dispatcher {
    fn queue(&self) -> QueueName {
        QueueName::Dispatch
    }

    async fn consume(&self, deliveries: &[Delivery]) -> Vec<JobOutcome> {
        let parsed: Vec<Option<DispatchJob>> = deliveries
            .iter()
            .map(|d| jobs::parse::<DispatchJob>(&d.body).ok())
            .collect();
        self.handle_batch(&parsed).await
    }
}

#[async_trait]
impl Consumer for CallbackSender {
    fn queue(&self) -> QueueName {
        QueueName::Callbacks
    }

    /// Callbacks go to different customers' endpoints: all at once, the jobs of one
    /// endpoint in one POST.
    async fn consume(&self, deliveries: &[Delivery]) -> Vec<JobOutcome> {
        let parsed: Vec<Option<CallbackJob>> = deliveries
            .iter()
            .map(|d| jobs::parse::<CallbackJob>(&d.body).ok())
            .collect();
        let readable: Vec<(&CallbackJob, u32)> = parsed
            .iter()
            .zip(deliveries)
            .filter_map(|(job, d)| job.as_ref().map(|j| (j, d.receive_count)))
            .collect();
        let mut handled = self.handle(&readable).await.into_iter();
        parsed
            .iter()
            .map(|job| match job {
                Some(_) => handled.next().unwrap_or(JobOutcome::Poison),
                None => JobOutcome::Poison,
            })
            .collect()
    }
}

#[async_trait]
impl Consumer for Campaigns {
    fn queue(&self) -> QueueName {
        QueueName::Campaigns
    }

    /// Chunks one after another: each stores a few hundred messages.
    async fn consume(&self, deliveries: &[Delivery]) -> Vec<JobOutcome> {
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            outcomes.push(match jobs::parse::<CampaignJob>(&d.body) {
                Ok(job) => self.run(&job).await,
                Err(_) => JobOutcome::Poison,
            });
        }
        outcomes
    }
}

/// Who deletes a finished job from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The consumer's loop deletes them (the embedded queue).
    Delete,
    /// The trigger does, for every record not reported failed (Lambda's SQS event source
    /// with `ReportBatchItemFailures`).
    LeftToTrigger,
}

/// The settle policy. `Done`: deleted. `Retry(delay)`: hidden for its backoff, then handed
/// out again. `Poison`: left alone, so it comes back after the visibility timeout and, after
/// the queue's maximum receives, goes to the dead letters. Returns the indexes of the
/// deliveries that are not finished (a delivery without an outcome is one of them), which a
/// trigger that deletes by itself must report as failed.
pub async fn settle(
    queue: &dyn Queue,
    name: QueueName,
    deliveries: &[Delivery],
    outcomes: &[JobOutcome],
    finished: Finished,
) -> Vec<usize> {
    let mut done = Vec::new();
    let mut unfinished = Vec::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        match outcomes.get(i) {
            Some(JobOutcome::Done) => {
                done.push(delivery.handle.clone());
                continue;
            }
            Some(JobOutcome::Retry(delay)) => {
                if let Err(e) = queue
                    .change_visibility(name, &delivery.handle, *delay)
                    .await
                {
                    // It comes back after the queue's own visibility timeout instead.
                    tracing::warn!(queue = name.as_str(), error = %e, "could not delay a job");
                }
            }
            Some(JobOutcome::Poison) => {
                tracing::error!(
                    queue = name.as_str(),
                    receive_count = delivery.receive_count,
                    "unreadable job left for the dead letters"
                );
            }
            None => {}
        }
        unfinished.push(i);
    }
    if finished == Finished::Delete
        && !done.is_empty()
        && let Err(e) = queue.delete_batch(name, &done).await
    {
        // Each comes back after its visibility timeout; handling it again is a no-op.
        tracing::warn!(queue = name.as_str(), error = %e, "could not delete finished jobs");
    }
    unfinished
}

/// Receives batches from a consumer's queue until `stop` turns true, hands each to the
/// consumer and settles it (the single binary's trigger; an SQS event source mapping does
/// the same on AWS).
pub async fn consume_until_stopped(
    queue: std::sync::Arc<dyn Queue>,
    consumer: std::sync::Arc<dyn Consumer>,
    batch: usize,
    visibility: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    /// How long one receive waits for a first job.
    const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(1);
    let name = consumer.queue();
    while !*stop.borrow() {
        let received = tokio::select! {
            r = queue.receive(name, batch, visibility, LONG_POLL) => r,
            _ = stop.changed() => break,
        };
        match received {
            Ok(deliveries) if deliveries.is_empty() => {}
            Ok(deliveries) => {
                let outcomes = consumer.consume(&deliveries).await;
                settle(
                    queue.as_ref(),
                    name,
                    &deliveries,
                    &outcomes,
                    Finished::Delete,
                )
                .await;
            }
            Err(e) => {
                tracing::warn!(queue = name.as_str(), error = %e, "receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}
