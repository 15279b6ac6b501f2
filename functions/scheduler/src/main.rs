//! The scheduler function: once a minute (EventBridge), the scheduled sweeps — release of due
//! scheduled messages, requeue of jobs lost in a crash, expiry — and receipt polling at the
//! providers that do not push.

use std::sync::Arc;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use holub_shared::adapters::aws::{backend_from_env, providers_from_env};
use holub_shared::ports::SystemClock;
use holub_shared::services::poller::Poller;
use holub_shared::services::sweeper::SweeperConfig;
use holub_shared::services::{Notifier, Receipts, Sweeper};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let aws = backend_from_env().await?;
    let providers = providers_from_env(&aws.secrets).await?;
    let (store, queue, clock) = (
        Arc::new(aws.store),
        Arc::new(aws.queue),
        Arc::new(SystemClock),
    );
    let notifier = Notifier::new(queue.clone());
    let sweeper = Sweeper::new(
        store.clone(),
        queue,
        clock.clone(),
        notifier.clone(),
        SweeperConfig::default(),
    );
    let receipts = Arc::new(Receipts::new(store.clone(), clock, notifier));
    let poller = Poller::new(store, providers.gateway, receipts, 500);
    let (sweeper, poller) = (&sweeper, &poller);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            Ok::<_, lambda_runtime::Error>(holub_scheduler::run(sweeper, poller, event.payload).await)
        },
    ))
    .await
}
