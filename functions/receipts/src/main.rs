//! The receipts function: providers' delivery-receipt webhooks (`/v1/receipts/{provider}`),
//! the same Router as `holub serve` mounts, behind API Gateway. The providers' receipt
//! parsers and their secrets are made once per cold start.

use holub_receipts::{ReceiptsState, router};
use holub_shared::adapters::aws::providers_from_env;
use holub_shared::runtime::aws::holub_from_env;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let holub = holub_from_env().await?;
    let providers = providers_from_env(
        holub.ports.secrets.clone(),
        holub.ports.provider_limits.clone(),
    )
    .await?;
    let app = router(ReceiptsState::new(&holub, providers.webhooks)).layer(
        // A request's status changes (delivered, undelivered), as CloudWatch metrics.
        axum::middleware::map_response(|response: axum::response::Response| async {
            holub_shared::services::metrics::global().flush_emf();
            response
        }),
    );
    lambda_http::run(app).await
}
