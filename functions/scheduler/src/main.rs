//! The scheduler function: once a minute (EventBridge), the periodic tasks — release of due
//! scheduled messages, requeue of jobs lost in a crash, expiry, receipt polling at the
//! providers that do not push, and the forgetting of old replay digests.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use holub_shared::adapters::aws::providers_from_env;
use holub_shared::runtime::aws::holub_from_env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let holub = holub_from_env().await?;
    let providers = providers_from_env(
        holub.ports.secrets.clone(),
        holub.ports.provider_limits.clone(),
    )
    .await?;
    let tasks = holub.tasks(providers.gateway);
    let tasks = &tasks;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let response = holub_scheduler::run(tasks, event.payload).await;
            // This run's status changes (released, expired, polled), as CloudWatch metrics.
            holub_shared::services::metrics::global().flush_emf();
            Ok::<_, lambda_runtime::Error>(response)
        },
    ))
    .await
}
