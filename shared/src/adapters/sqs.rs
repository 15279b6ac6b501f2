//! [`Queue`] on SQS: one standard queue per [`QueueName`], each with a dead-letter queue
//! that SQS's redrive policy fills (`maxReceiveCount`), so nothing here counts receives
//! beyond reporting `ApproximateReceiveCount`.
//!
//! SQS counts time in whole seconds: delays, visibility timeouts and long-poll waits are
//! rounded *up* (a message is never visible earlier than asked) and capped at SQS's
//! limits (delay 15 minutes, visibility 12 hours, wait 20 seconds).
//!
//! Requests: `send_batch` is one `SendMessageBatch` per 10 messages (and at most 256 KiB);
//! `receive` one `ReceiveMessage` per 10 messages asked for (only the first waits);
//! `delete_batch` one `DeleteMessageBatch` per 10 handles; `change_visibility` one
//! `ChangeMessageVisibility`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use futures::{StreamExt, TryStreamExt, stream};

use crate::ports::{Delivery, Outgoing, Queue, QueueError, QueueName, ReceiptHandle};

/// The largest body SQS takes in one message, and in one batch.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Messages per `SendMessageBatch`, `DeleteMessageBatch` and `ReceiveMessage`.
const BATCH: usize = 10;

/// Batch requests of one call in flight at once.
const CONCURRENCY: usize = 8;

/// Rounds of resending the entries of a batch that SQS failed on its side.
const ROUNDS: u32 = 4;

const MAX_DELAY_SECONDS: u64 = 900;
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
const MAX_WAIT_SECONDS: u64 = 20;

/// The URL of each queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrls {
    pub dispatch: String,
    pub callbacks: String,
    pub campaigns: String,
}

impl QueueUrls {
    pub fn of(&self, queue: QueueName) -> &str {
        match queue {
            QueueName::Dispatch => &self.dispatch,
            QueueName::Callbacks => &self.callbacks,
            QueueName::Campaigns => &self.campaigns,
        }
    }
}

/// The SQS queue. Cheap to clone: clones share the client.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    urls: QueueUrls,
}

fn unavailable<E>(e: E) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
{
    QueueError::Unavailable(Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Whole seconds, rounded up, at most `max`.
fn seconds(d: Duration, max: u64) -> i32 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(whole.min(max)).unwrap_or(i32::MAX)
}

impl SqsQueue {
    pub fn new(client: Client, urls: QueueUrls) -> Self {
        SqsQueue { client, urls }
    }

    pub fn urls(&self) -> &QueueUrls {
        &self.urls
    }

    async fn send_chunk(&self, url: &str, chunk: Vec<Outgoing>) -> Result<(), QueueError> {
        let mut pending: HashMap<String, Outgoing> = chunk
            .into_iter()
            .enumerate()
            .map(|(i, m)| (i.to_string(), m))
            .collect();
        for round in 1..=ROUNDS {
            let entries = pending
                .iter()
                .map(|(id, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(&m.body)
                        .delay_seconds(seconds(m.delay, MAX_DELAY_SECONDS))
                        .build()
                        .map_err(unavailable)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
            for ok in out.successful() {
                pending.remove(ok.id());
            }
            if let Some(refused) = out.failed().iter().find(|f| f.sender_fault()) {
                return Err(unavailable(Refused(format!(
                    "SQS refused a message: {} {}",
                    refused.code(),
                    refused.message().unwrap_or_default()
                ))));
            }
            if pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50 << round)).await;
        }
        Err(unavailable(Refused(format!(
            "{} messages were not accepted after {ROUNDS} rounds",
            pending.len()
        ))))
    }

    async fn delete_chunk(&self, url: &str, chunk: Vec<ReceiptHandle>) -> Result<(), QueueError> {
        let mut pending: HashMap<String, ReceiptHandle> = chunk
            .into_iter()
            .enumerate()
            .map(|(i, h)| (i.to_string(), h))
            .collect();
        for round in 1..=ROUNDS {
            let entries = pending
                .iter()
                .map(|(id, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(id)
                        .receipt_handle(&h.0)
                        .build()
                        .map_err(unavailable)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(unavailable)?;
            for ok in out.successful() {
                pending.remove(ok.id());
            }
            for failed in out.failed() {
                // A handle that is no longer valid deletes nothing, as on the other backend:
                // the message was deleted already or will come back.
                if failed.sender_fault() {
                    if failed.code() != "ReceiptHandleIsInvalid" {
                        tracing::warn!(code = failed.code(), "a queue message was not deleted");
                    }
                    pending.remove(failed.id());
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50 << round)).await;
        }
        Err(unavailable(Refused(format!(
            "{} deletes failed after {ROUNDS} rounds",
            pending.len()
        ))))
    }
}

impl SqsQueue {
    /// The URL of the dead-letter queue of `url`, from its redrive policy.
    async fn dead_letter_url(&self, url: &str) -> Result<String, QueueError> {
        let policy = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(unavailable)?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
            .ok_or_else(|| unavailable(Refused(format!("{url} has no dead-letter queue"))))?;
        let arn = serde_json::from_str::<serde_json::Value>(&policy)
            .ok()
            .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_owned))
            .ok_or_else(|| unavailable(Refused(format!("{url}: unreadable redrive policy"))))?;
        let name = arn.rsplit(':').next().unwrap_or_default().to_owned();
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(unavailable)?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| unavailable(Refused("SQS gave no dead-letter queue URL".into())))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn redrive(&self, queue: QueueName, limit: usize) -> Result<usize, QueueError> {
        let url = self.urls.of(queue).to_owned();
        let dead = self.dead_letter_url(&url).await?;
        let mut moved = 0;
        while moved < limit {
            let out = self
                .client
                .receive_message()
                .queue_url(&dead)
                .max_number_of_messages(i32::try_from((limit - moved).min(10)).unwrap_or(10))
                .visibility_timeout(60)
                .wait_time_seconds(0)
                .send()
                .await
                .map_err(unavailable)?;
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            let (bodies, handles): (Vec<_>, Vec<_>) = messages
                .iter()
                .filter_map(|m| Some((m.body()?.to_owned(), m.receipt_handle()?.to_owned())))
                .map(|(body, handle)| {
                    (
                        Outgoing {
                            body,
                            delay: Duration::ZERO,
                        },
                        ReceiptHandle(handle),
                    )
                })
                .unzip();
            // Sent before deleted: a failure in between leaves a copy in both, never none
            // (and a dispatch job handled twice is harmless: dispatch claims first).
            let count = bodies.len();
            self.send_chunk(&url, bodies).await?;
            self.delete_chunk(&dead, handles).await?;
            moved += count;
        }
        Ok(moved)
    }

    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<Outgoing>,
    ) -> Result<(), QueueError> {
        if let Some(big) = messages.iter().find(|m| m.body.len() > MAX_BODY_BYTES) {
            return Err(QueueError::TooLarge(big.body.len()));
        }
        // Batches of at most 10 messages and 256 KiB.
        let mut chunks: Vec<Vec<Outgoing>> = Vec::new();
        let mut bytes = 0;
        for m in messages {
            match chunks.last_mut() {
                Some(chunk) if chunk.len() < BATCH && bytes + m.body.len() <= MAX_BODY_BYTES => {
                    bytes += m.body.len();
                    chunk.push(m);
                }
                _ => {
                    bytes = m.body.len();
                    chunks.push(vec![m]);
                }
            }
        }
        let url = self.urls.of(queue);
        stream::iter(chunks)
            .map(|chunk| self.send_chunk(url, chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let url = self.urls.of(queue);
        let mut deliveries = Vec::new();
        let mut wait = seconds(wait, MAX_WAIT_SECONDS);
        while deliveries.len() < max {
            let want = (max - deliveries.len()).min(BATCH);
            let out = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECONDS))
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .map_err(unavailable)?;
            let got = out.messages.unwrap_or_default();
            let full = got.len() == want;
            for m in got {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let (Some(handle), Some(body)) = (m.receipt_handle, m.body) else {
                    continue;
                };
                deliveries.push(Delivery {
                    handle: ReceiptHandle(handle),
                    body,
                    receive_count,
                });
            }
            // Only the first request waits; the rest take what is there.
            wait = 0;
            if !full {
                break;
            }
        }
        Ok(deliveries)
    }

    async fn delete_batch(
        &self,
        queue: QueueName,
        handles: &[ReceiptHandle],
    ) -> Result<(), QueueError> {
        let url = self.urls.of(queue);
        stream::iter(handles.chunks(BATCH).map(<[ReceiptHandle]>::to_vec))
            .map(|chunk| self.delete_chunk(url, chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        handle: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let result = self
            .client
            .change_message_visibility()
            .queue_url(self.urls.of(queue))
            .receipt_handle(&handle.0)
            .visibility_timeout(seconds(timeout, MAX_VISIBILITY_SECONDS))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error().is_some_and(|e| {
                    e.is_receipt_handle_is_invalid() || e.is_message_not_inflight()
                }) =>
            {
                Err(QueueError::StaleHandle)
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Creates the queues named `<prefix>-dispatch`, `<prefix>-callbacks` and
/// `<prefix>-campaigns`, each with a
/// dead-letter queue (`<name>-dlq`, kept 14 days) that takes a message after
/// `max_receives` receives, and returns their URLs. Creating a queue that exists with the
/// same attributes is a no-op. For tests and a local bootstrap; real deployments get the
/// queues from the SAM template.
pub async fn create_queues(
    client: &Client,
    prefix: &str,
    max_receives: u32,
) -> Result<QueueUrls, QueueError> {
    let mut urls = Vec::new();
    for name in [
        QueueName::Dispatch,
        QueueName::Callbacks,
        QueueName::Campaigns,
    ] {
        let name = format!("{prefix}-{}", name.as_str());
        let dead = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(unavailable)?;
        let dead_url = dead.queue_url().unwrap_or_default();
        let dead_arn = client
            .get_queue_attributes()
            .queue_url(dead_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(unavailable)?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap_or_default();
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_arn,
            "maxReceiveCount": max_receives.max(1),
        });
        let queue = client
            .create_queue()
            .queue_name(&name)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(unavailable)?;
        urls.push(queue.queue_url().unwrap_or_default().to_owned());
    }
    let campaigns = urls.pop().unwrap_or_default();
    let callbacks = urls.pop().unwrap_or_default();
    let dispatch = urls.pop().unwrap_or_default();
    Ok(QueueUrls {
        dispatch,
        callbacks,
        campaigns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_up_to_whole_number_within_limits() {
        assert_eq!(seconds(Duration::ZERO, 20), 0);
        assert_eq!(seconds(Duration::from_millis(1), 20), 1);
        assert_eq!(seconds(Duration::from_millis(1000), 20), 1);
        assert_eq!(seconds(Duration::from_millis(1001), 20), 2);
        assert_eq!(seconds(Duration::from_secs(3600), 900), 900);
    }
}
