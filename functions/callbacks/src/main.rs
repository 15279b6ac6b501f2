//! The callbacks function: batches of the callback queue, each job a signed status callback
//! to the customer's URL, delivered by the same
//! [`CallbackSender`](holub_shared::services::CallbackSender) as `holub serve` runs. A
//! callback to retry is put back with its backoff as the record's visibility.

use aws_lambda_events::event::sqs::SqsEvent;
use holub_shared::runtime::aws::holub_from_env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let holub = holub_from_env().await?;
    let (sender, queue) = (holub.callbacks.as_ref(), holub.ports.queue.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(
            holub_dispatch::sqs_batch(sender, queue, event.payload).await,
        )
    }))
    .await
}
