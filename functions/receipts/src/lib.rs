//! Delivery-receipt webhooks: `POST /v1/receipts/{provider}` (and `GET`, for providers that
//! report in the query string).
//!
//! Each provider's receipts are authenticated the way that provider allows and parsed into
//! typed receipts by its [`ReceiptWebhook`] (a forged, replayed or malformed request is
//! refused whole, nothing applied), then applied through the receipts service. The answer
//! is quick: applying is a few batched writes.
//!
//! Before any of that, a request passes the [`throttle`]: per source address and overall.

pub mod throttle;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use holub_shared::ports::{ReceiptWebhook, WebhookError, WebhookRequest};
use holub_shared::runtime::Holub;
use holub_shared::services::{Receipts, ReplayGuard};
use throttle::Throttle;

/// Receipt batches are small; this bounds what an unauthenticated caller can make us read.
pub const RECEIPT_BODY_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct ReceiptsState {
    pub receipts: Arc<Receipts>,
    /// The receipt parser of each provider that pushes, by the provider's name in the route
    /// table (the name its messages are recorded under).
    pub webhooks: Arc<HashMap<String, Arc<dyn ReceiptWebhook>>>,
    pub replays: Arc<ReplayGuard>,
    pub throttle: Arc<Throttle>,
}

impl ReceiptsState {
    /// The receipt services the composition root made, and the providers' receipt parsers.
    pub fn new(holub: &Holub, webhooks: HashMap<String, Arc<dyn ReceiptWebhook>>) -> Self {
        ReceiptsState {
            receipts: holub.receipts.clone(),
            webhooks: Arc::new(webhooks),
            replays: holub.replays.clone(),
            throttle: Arc::new(Throttle::new(&holub.settings)),
        }
    }
}

fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "receipts cannot be applied right now; send again",
    )
}

pub fn router(state: ReceiptsState) -> Router {
    let throttle = state.throttle.clone();
    Router::new()
        .route(
            "/v1/receipts/{provider}",
            post(provider_receipts).get(provider_receipts),
        )
        .layer(DefaultBodyLimit::max(RECEIPT_BODY_LIMIT))
        // Outermost: a throttled request costs no body read.
        .route_layer(middleware::from_fn_with_state(throttle, throttle::limit))
        .with_state(state)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn provider_receipts(
    State(state): State<ReceiptsState>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(webhook) = state.webhooks.get(&provider) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            "no such provider webhook",
        );
    };
    let replay_key = ReplayGuard::digest(&provider, query.as_deref(), &body);
    match state.replays.seen(&replay_key).await {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!(provider, "receipt replayed");
            return error(
                StatusCode::CONFLICT,
                WebhookError::Replayed.code(),
                "this receipt request was already applied",
            );
        }
        Err(e) => {
            tracing::error!(provider, error = %e, "replay guard not readable");
            return unavailable();
        }
    }
    let request = WebhookRequest {
        headers: &headers,
        query: query.as_deref(),
        body: &body,
    };
    let receipts = match webhook.parse(&request, chrono::Utc::now()) {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                WebhookError::Unauthorized => StatusCode::UNAUTHORIZED,
                WebhookError::Replayed => StatusCode::CONFLICT,
                WebhookError::Malformed { .. } => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(provider, code = e.code(), "receipt refused");
            return error(status, e.code(), &e.to_string());
        }
    };
    match state.receipts.apply(&provider, &receipts).await {
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
        Ok(summary) => {
            // Applied: if it cannot be remembered, a replay would only apply it again, which
            // changes nothing (transitions are monotonic and receipts kept once).
            if let Err(e) = state.replays.remember(replay_key).await {
                tracing::warn!(provider, error = %e, "applied receipt request not remembered");
            }
            Json(summary).into_response()
        }
        Err(e) => {
            tracing::error!(provider, error = %e, "receipts not applied");
            unavailable()
        }
    }
}
