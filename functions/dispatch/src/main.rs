//! The dispatch function: batches of the dispatch queue (SQS event source mapping with
//! `ReportBatchItemFailures`), each job claimed, routed and submitted by the same
//! [`Dispatcher`](holub_shared::services::Dispatcher) as `holub serve` runs. Providers and
//! their credentials are read once per cold start.

use aws_lambda_events::event::sqs::SqsEvent;
use holub_shared::adapters::aws::providers_from_env;
use holub_shared::runtime::aws::holub_from_env;
use holub_shared::runtime::sqs_batch;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let holub = holub_from_env().await?;
    let providers = providers_from_env(
        holub.ports.secrets.clone(),
        holub.ports.provider_limits.clone(),
    )
    .await?;
    let (dispatcher, queue) = (
        holub.dispatcher(providers.gateway),
        holub.ports.queue.clone(),
    );
    let (dispatcher, queue) = (dispatcher.as_ref(), queue.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = sqs_batch(dispatcher, queue, event.payload).await;
        // This invocation's status changes, as CloudWatch metrics.
        holub_shared::services::metrics::global().flush_emf();
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
