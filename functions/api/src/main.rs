//! The API function: the same axum Router as `holub serve`, behind API Gateway's HTTP API,
//! over DynamoDB, SQS and Secrets Manager. Configuration is read once per cold start.

use holub_shared::runtime::aws::holub_from_env;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let holub = holub_from_env().await?;
    lambda_http::run(holub_api::router(holub_api::AppState::new(&holub))).await
}
