//! The API function: the same axum Router as `holub serve`, behind API Gateway's HTTP API,
//! over DynamoDB, SQS and Secrets Manager. Configuration is read once per cold start.

use std::sync::Arc;

use holub_shared::adapters::aws::backend_from_env;
use holub_shared::ports::SystemClock;
use holub_shared::services::intake::IntakeConfig;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let aws = backend_from_env().await?;
    let state = holub_api::AppState::new(
        Arc::new(aws.store.clone()),
        Arc::new(aws.store),
        Arc::new(aws.queue),
        Arc::new(aws.secrets),
        Arc::new(SystemClock),
        IntakeConfig::default(),
    );
    lambda_http::run(holub_api::router(state)).await
}
