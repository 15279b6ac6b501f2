//! The callbacks function, on two triggers:
//! - the messages table's stream: each status change of a message with a callback URL
//!   becomes a callback job on the callback queue, the events of one URL together
//!   ([`holub_shared::adapters::dynamo::stream`]). A batch whose jobs cannot be queued fails
//!   whole, and the event source hands it out again.
//! - the callback queue: each job a signed POST of its events to the customer's URL, by the
//!   same [`CallbackSender`](holub_shared::services::CallbackSender) as `holub serve` runs. A
//!   callback to retry is put back with its backoff as the record's visibility.

use aws_lambda_events::event::sqs::SqsEvent;
use holub_shared::adapters::dynamo::stream::{self, StreamEvent};
use holub_shared::ports::{Queue, QueueName};
use holub_shared::runtime::aws::holub_from_env;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let holub = holub_from_env().await?;
    let (sender, queue) = (holub.callbacks.as_ref(), holub.ports.queue.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if StreamEvent::is_stream(&event.payload) {
            relay(queue, event.payload).await?;
            return Ok::<_, lambda_runtime::Error>(Value::Null);
        }
        let batch: SqsEvent = serde_json::from_value(event.payload)?;
        let response = holub_dispatch::sqs_batch(sender, queue, batch).await;
        Ok(serde_json::to_value(response)?)
    }))
    .await
}

/// A stream batch's callback jobs onto the callback queue.
async fn relay(queue: &dyn Queue, payload: Value) -> Result<(), lambda_runtime::Error> {
    let event: StreamEvent = serde_json::from_value(payload)?;
    let (jobs, unreadable) = stream::callback_jobs(&event);
    if unreadable > 0 {
        tracing::warn!(unreadable, "stream records skipped");
    }
    if !jobs.is_empty() {
        queue
            .send_batch(QueueName::Callbacks, jobs.into_outgoing())
            .await?;
    }
    Ok(())
}
