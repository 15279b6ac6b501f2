//! The callbacks function: batches of the callback queue, each job a signed status callback
//! to the customer's URL, delivered by the same [`CallbackSender`] as `holub serve` runs.
//! A callback to retry is put back with its backoff as the record's visibility.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use holub_shared::adapters::aws::backend_from_env;
use holub_shared::ports::SystemClock;
use holub_shared::services::callbacks::{CallbackConfig, CallbackSender};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = backend_from_env().await?;
    let sender = CallbackSender::new(
        Arc::new(aws.store),
        Arc::new(aws.secrets),
        Arc::new(SystemClock),
        CallbackConfig::default(),
    );
    let (sender, queue) = (&sender, &aws.queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(
            holub_dispatch::callbacks(sender, queue, event.payload).await,
        )
    }))
    .await
}
