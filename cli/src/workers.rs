//! The queue consumers and timers of the single binary: what SQS event source mappings and
//! EventBridge schedules do on AWS, done by tokio tasks over the embedded queue.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use holub_shared::ports::{Delivery, Queue, QueueName, ReceiptHandle};
use holub_shared::services::callbacks::CallbackSender;
use holub_shared::services::jobs::{self, CallbackJob, DispatchJob};
use holub_shared::services::poller::Poller;
use holub_shared::services::{Dispatcher, JobOutcome, Sweeper};
use tokio::sync::watch;

const CALLBACK_VISIBILITY: Duration = Duration::from_secs(30);
const LONG_POLL: Duration = Duration::from_secs(1);

/// Deletes the finished jobs and hides the ones to retry for their backoff.
async fn settle(queue: &dyn Queue, name: QueueName, results: Vec<(ReceiptHandle, JobOutcome)>) {
    let mut done = Vec::new();
    for (handle, outcome) in results {
        match outcome {
            JobOutcome::Done => done.push(handle),
            JobOutcome::Retry(delay) => {
                if let Err(e) = queue.change_visibility(name, &handle, delay).await {
                    tracing::warn!(queue = name.as_str(), error = %e, "could not delay a job");
                }
            }
            // Left as it is: it comes back after the visibility timeout and, after the
            // maximum number of receives, goes to the dead letters.
            JobOutcome::Poison => {
                tracing::error!(
                    queue = name.as_str(),
                    "unreadable job left for the dead letters"
                );
            }
        }
    }
    if !done.is_empty()
        && let Err(e) = queue.delete_batch(name, &done).await
    {
        tracing::warn!(queue = name.as_str(), error = %e, "could not delete finished jobs");
    }
}

/// Receives batches from one queue until stopped, hands each batch to `handle` (which
/// answers an outcome per delivery) and settles the outcomes.
async fn consume<F, Fut>(
    queue: Arc<dyn Queue>,
    name: QueueName,
    batch: usize,
    visibility: Duration,
    mut stop: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: std::future::Future<Output = Vec<(ReceiptHandle, JobOutcome)>>,
{
    while !*stop.borrow() {
        let received = tokio::select! {
            r = queue.receive(name, batch, visibility, LONG_POLL) => r,
            _ = stop.changed() => break,
        };
        match received {
            Ok(deliveries) if deliveries.is_empty() => {}
            Ok(deliveries) => settle(queue.as_ref(), name, handle(deliveries).await).await,
            Err(e) => {
                tracing::warn!(queue = name.as_str(), error = %e, "receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// One dispatch consumer: receives a batch of jobs, hands them to the dispatcher, settles.
pub async fn dispatch_loop(
    queue: Arc<dyn Queue>,
    dispatcher: Arc<Dispatcher>,
    batch: usize,
    visibility: Duration,
    stop: watch::Receiver<bool>,
) {
    consume(
        queue,
        QueueName::Dispatch,
        batch,
        visibility,
        stop,
        |deliveries| {
            let dispatcher = dispatcher.clone();
            async move {
                let parsed: Vec<Option<DispatchJob>> = deliveries
                    .iter()
                    .map(|d| jobs::parse::<DispatchJob>(&d.body).ok())
                    .collect();
                let outcomes = dispatcher.handle_batch(&parsed).await;
                deliveries
                    .into_iter()
                    .map(|d| d.handle)
                    .zip(outcomes)
                    .collect()
            }
        },
    )
    .await;
}

/// One callback consumer: delivers a batch of callbacks concurrently.
pub async fn callback_loop(
    queue: Arc<dyn Queue>,
    sender: Arc<CallbackSender>,
    batch: usize,
    stop: watch::Receiver<bool>,
) {
    consume(
        queue,
        QueueName::Callbacks,
        batch,
        CALLBACK_VISIBILITY,
        stop,
        |deliveries| {
            let sender = sender.clone();
            join_all(deliveries.into_iter().map(move |d| {
                let sender = sender.clone();
                async move {
                    let outcome = match jobs::parse::<CallbackJob>(&d.body) {
                        Ok(job) => sender.handle(&job, d.receive_count).await,
                        Err(_) => JobOutcome::Poison,
                    };
                    (d.handle, outcome)
                }
            }))
        },
    )
    .await;
}

/// The timers: release of scheduled messages (twice a second, so a message is released
/// within a second of its time), and every few seconds the requeue and expiry sweeps.
pub async fn sweeper_loop(
    sweeper: Arc<Sweeper>,
    intake: Arc<holub_shared::services::Intake>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        n += 1;
        // sqlite-resilience: until the periodic task table runs it, every second.
        if n.is_multiple_of(2)
            && let Err(e) = intake.requeue_failed().await
        {
            tracing::warn!(error = %e, "intake: requeue of unqueued jobs failed");
        }
        if let (_, Some(e)) = sweeper.release_all(usize::MAX).await {
            tracing::warn!(error = %e, "sweeper: release failed");
        }
        if n.is_multiple_of(10) {
            if let Err(e) = sweeper.requeue_stale().await {
                tracing::warn!(error = %e, "sweeper: requeue failed");
            }
            if let Err(e) = sweeper.expire().await {
                tracing::warn!(error = %e, "sweeper: expiry failed");
            }
        }
    }
}

/// Asks providers that do not push for their receipts, every `every`.
pub async fn poller_loop(poller: Arc<Poller>, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        poller.poll().await;
    }
}
