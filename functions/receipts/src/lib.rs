//! Delivery-receipt webhooks: `POST /v1/receipts/{provider}`.
//!
//! Each provider's receipts are authenticated the way that provider allows, parsed into
//! typed receipts (a malformed body is refused whole, nothing applied), and applied through
//! the receipts service. The answer is quick: applying is a few batched writes.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use holub_shared::ports::Secret;
use holub_shared::services::Receipts;

/// Receipt batches are small; this bounds what an unauthenticated caller can make us read.
pub const RECEIPT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The name under which the simulator's receipts are recorded (the provider of the route).
pub const SIMULATOR: &str = "simulator";

#[derive(Clone)]
pub struct ReceiptsState {
    pub receipts: Arc<Receipts>,
    /// The bearer token the built-in simulator signs its receipt posts with.
    pub simulator_token: Secret,
}

pub fn router(state: ReceiptsState) -> Router {
    Router::new()
        .route("/v1/receipts/simulator", post(simulator_receipts))
        .layer(DefaultBodyLimit::max(RECEIPT_BODY_LIMIT))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn simulator_receipts(
    State(state): State<ReceiptsState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !holub_simulator::verify_receipt_token(auth, state.simulator_token.expose()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "receipt_unauthorized",
            "receipts must carry the provider's token",
        );
    }
    let receipts = match holub_simulator::parse_receipts(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    };
    match state.receipts.apply(SIMULATOR, &receipts).await {
        // Receipts for messages whose submit answer is not yet recorded: the provider is
        // asked to send the batch again (re-applying the others changes nothing).
        Ok(summary) if summary.pending > 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            Json(serde_json::json!({
                "error": {"code": "receipts_pending", "message": "some messages are not yet recorded; send again"},
                "summary": summary,
            })),
        )
            .into_response(),
        Ok(summary) => Json(summary).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "receipts not applied");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "receipts cannot be applied right now; send again",
            )
        }
    }
}
