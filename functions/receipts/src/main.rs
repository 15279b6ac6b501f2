//! The receipts function: providers' delivery-receipt webhooks (`/v1/receipts/{provider}`),
//! the same Router as `holub serve` mounts, behind API Gateway. The providers' receipt
//! parsers and their secrets are made once per cold start.

use std::sync::Arc;

use holub_receipts::{ReceiptsState, ReplayGuard, router};
use holub_shared::adapters::aws::{backend_from_env, providers_from_env};
use holub_shared::ports::SystemClock;
use holub_shared::services::{Notifier, Receipts};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let aws = backend_from_env().await?;
    let providers = providers_from_env(&aws.secrets).await?;
    let receipts = Receipts::new(
        Arc::new(aws.store),
        Arc::new(SystemClock),
        Notifier::new(Arc::new(aws.queue)),
    );
    lambda_http::run(router(ReceiptsState {
        receipts: Arc::new(receipts),
        webhooks: Arc::new(providers.webhooks),
        replays: Arc::new(ReplayGuard::default()),
    }))
    .await
}
