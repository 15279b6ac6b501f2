//! A work queue with SQS semantics: at-least-once delivery, a visibility timeout, a receive
//! count, delays, and dead letters after too many receives.

use std::time::Duration;

use async_trait::async_trait;

use super::Retryable;

/// The queues Holub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// Messages ready to be submitted to a provider.
    Dispatch,
    /// Status callbacks to deliver to customers' URLs.
    Callbacks,
    /// Campaign chunks to expand into messages.
    Campaigns,
}

impl QueueName {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Dispatch => "dispatch",
            QueueName::Callbacks => "callbacks",
            QueueName::Campaigns => "campaigns",
        }
    }
}

/// An opaque token for one receive of one queue message; deleting or delaying the message
/// needs it. A later receive of the same message gets a new handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

/// A queue message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub handle: ReceiptHandle,
    pub body: String,
    /// 1 on the first receive; grows with each redelivery.
    pub receive_count: u32,
}

/// A message to put on a queue.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: String,
    /// Not visible to consumers before this delay has passed.
    pub delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the receipt handle is no longer valid")]
    StaleHandle,
    #[error("the queue message is too large ({0} bytes)")]
    TooLarge(usize),
}

impl Retryable for QueueError {
    fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send_batch(&self, queue: QueueName, messages: Vec<Outgoing>)
    -> Result<(), QueueError>;

    /// Up to `max` visible messages, each hidden for `visibility` unless deleted in time.
    /// Waits up to `wait` for the first one (long polling).
    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    async fn delete_batch(
        &self,
        queue: QueueName,
        handles: &[ReceiptHandle],
    ) -> Result<(), QueueError>;

    /// Moves up to `limit` of the messages dead-lettered from `queue` back onto it (oldest
    /// first where the store keeps an order), each with its receive count started afresh;
    /// answers how many moved. What `holub dlq redrive` does once the cause is fixed.
    async fn redrive(&self, queue: QueueName, limit: usize) -> Result<usize, QueueError>;

    /// Makes a received message visible again after `timeout` (a backoff).
    async fn change_visibility(
        &self,
        queue: QueueName,
        handle: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError>;
}
