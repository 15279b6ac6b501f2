//! The campaigns function: batches of the campaigns queue (SQS event source mapping with
//! `ReportBatchItemFailures`), each job one chunk of a campaign made into messages by the
//! same [`Campaigns`](holub_shared::services::Campaigns) as `holub serve` runs. A chunk is
//! a few hundred messages and queues the next chunk's job, so a campaign of any size is
//! many short runs, never one long one.

use aws_lambda_events::event::sqs::SqsEvent;
use holub_shared::runtime::aws::holub_from_env;
use holub_shared::runtime::sqs_batch;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let holub = holub_from_env().await?;
    let (campaigns, queue) = (holub.campaigns.as_ref(), holub.ports.queue.as_ref());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = sqs_batch(campaigns, queue, event.payload).await;
        // The messages this invocation made, as CloudWatch metrics.
        holub_shared::services::metrics::global().flush_emf();
        Ok::<_, lambda_runtime::Error>(response)
    }))
    .await
}
