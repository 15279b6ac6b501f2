//! The API function: the same axum Router as `holub serve`, behind API Gateway's HTTP API,
//! over DynamoDB, SQS and Secrets Manager. Configuration is read once per cold start.

use holub_shared::runtime::aws::holub_from_env;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let holub = holub_from_env().await?;
    let app = holub_api::router(holub_api::AppState::new(&holub)).layer(
        // A request's status changes (a cancel), as CloudWatch metrics.
        axum::middleware::map_response(|response: axum::response::Response| async {
            holub_shared::services::metrics::global().flush_emf();
            response
        }),
    );
    lambda_http::run(app).await
}
