//! The queue consumers as Lambda handlers: an SQS batch in, only the failed items out
//! (`ReportBatchItemFailures`), so one bad record never sends the whole batch back.
//!
//! Each record is parsed on its own; a record that is not a job is reported failed and left
//! to the queue's redrive, which moves it to the dead-letter queue after the maximum number
//! of receives. A job to retry later gets its visibility set to the backoff and is reported
//! failed, so SQS hands it out again when the backoff is over.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use holub_shared::ports::{Queue, QueueName, ReceiptHandle};
use holub_shared::services::callbacks::CallbackSender;
use holub_shared::services::jobs::{self, CallbackJob, DispatchJob};
use holub_shared::services::{Dispatcher, JobOutcome};

/// Dispatch jobs: claim, route, submit, record.
pub async fn dispatch(
    dispatcher: &Dispatcher,
    queue: &dyn Queue,
    event: SqsEvent,
) -> SqsBatchResponse {
    let jobs: Vec<Option<DispatchJob>> = event
        .records
        .iter()
        .map(|r| r.body.as_deref().and_then(|b| jobs::parse(b).ok()))
        .collect();
    let outcomes = dispatcher.handle_batch(&jobs).await;
    settle(queue, QueueName::Dispatch, &event.records, &outcomes).await
}

/// Status callbacks: each delivered to the customer's URL, concurrently.
pub async fn callbacks(
    sender: &CallbackSender,
    queue: &dyn Queue,
    event: SqsEvent,
) -> SqsBatchResponse {
    let outcomes = futures::future::join_all(event.records.iter().map(|r| async move {
        match r.body.as_deref().map(jobs::parse::<CallbackJob>) {
            Some(Ok(job)) => sender.handle(&job, receive_count(r)).await,
            _ => JobOutcome::Poison,
        }
    }))
    .await;
    settle(queue, QueueName::Callbacks, &event.records, &outcomes).await
}

fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Reports every record that is not done; delays the ones to retry by their backoff.
async fn settle(
    queue: &dyn Queue,
    name: QueueName,
    records: &[SqsMessage],
    outcomes: &[JobOutcome],
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in records.iter().zip(outcomes) {
        let delay: Option<Duration> = match outcome {
            JobOutcome::Done => continue,
            JobOutcome::Retry(delay) => Some(*delay),
            JobOutcome::Poison => {
                tracing::error!(
                    queue = name.as_str(),
                    message_id = record.message_id.as_deref().unwrap_or("-"),
                    "unreadable job"
                );
                None
            }
        };
        if let (Some(delay), Some(handle)) = (delay, record.receipt_handle.as_ref())
            && let Err(e) = queue
                .change_visibility(name, &ReceiptHandle(handle.clone()), delay)
                .await
        {
            // The job comes back after the queue's own visibility timeout instead.
            tracing::warn!(queue = name.as_str(), error = %e, "could not delay a job");
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = record.message_id.clone().unwrap_or_default();
        response.batch_item_failures.push(failure);
    }
    response
}
