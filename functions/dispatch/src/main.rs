//! The dispatch function: batches of the dispatch queue (SQS event source mapping with
//! `ReportBatchItemFailures`), each job claimed, routed and submitted by the same
//! [`Dispatcher`] as `holub serve` runs. Providers and their credentials are read once per
//! cold start.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use holub_shared::adapters::aws::{backend_from_env, providers_from_env};
use holub_shared::ports::SystemClock;
use holub_shared::services::{Dispatcher, Notifier, dispatch::DispatchConfig};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = backend_from_env().await?;
    let providers = providers_from_env(&aws.secrets).await?;
    let queue = Arc::new(aws.queue);
    let dispatcher = Dispatcher::new(
        Arc::new(aws.store),
        providers.gateway,
        Arc::new(SystemClock),
        Notifier::new(queue.clone()),
        DispatchConfig::default(),
    );
    let (dispatcher, queue) = (&dispatcher, queue.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(
            holub_dispatch::dispatch(dispatcher, queue, event.payload).await,
        )
    }))
    .await
}
