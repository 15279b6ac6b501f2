//! Delivery-receipt webhooks: `POST /v1/receipts/{provider}` (and `GET`, for providers that
//! report in the query string).
//!
//! Each provider's receipts are authenticated the way that provider allows and parsed into
//! typed receipts by its [`ReceiptWebhook`] (a forged, replayed or malformed request is
//! refused whole, nothing applied), then applied through the receipts service. The answer
//! is quick: applying is a few batched writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use holub_shared::ports::{ReceiptWebhook, WebhookError, WebhookRequest};
use holub_shared::services::Receipts;

/// Receipt batches are small; this bounds what an unauthenticated caller can make us read.
pub const RECEIPT_BODY_LIMIT: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct ReceiptsState {
    pub receipts: Arc<Receipts>,
    /// The receipt parser of each provider that pushes, by the provider's name in the route
    /// table (the name its messages are recorded under).
    pub webhooks: Arc<HashMap<String, Arc<dyn ReceiptWebhook>>>,
    pub replays: Arc<ReplayGuard>,
}

/// Refuses a receipt request identical to one already applied (same provider, query and
/// body) within a day: a captured request sent again, whatever the provider's own scheme.
/// Only applied requests are remembered, so a batch the endpoint asked to be sent again
/// (some messages not yet recorded) is taken when it comes back.
pub struct ReplayGuard {
    window: Duration,
    capacity: usize,
    seen: Mutex<Seen>,
}

/// Request digests with when they were applied, and the same in order of arrival (oldest
/// first, for expiry).
type Seen = (HashMap<Digest, Instant>, VecDeque<(Digest, Instant)>);
type Digest = [u8; 32];

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(Duration::from_secs(24 * 3600), 200_000)
    }
}

impl ReplayGuard {
    pub fn new(window: Duration, capacity: usize) -> Self {
        ReplayGuard {
            window,
            capacity: capacity.max(1),
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn key(provider: &str, query: Option<&str>, body: &[u8]) -> Digest {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in [provider.as_bytes(), query.unwrap_or("").as_bytes(), body] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn seen(&self, key: &Digest) -> bool {
        let Ok(mut guard) = self.seen.lock() else {
            return false;
        };
        let (map, order) = &mut *guard;
        let now = Instant::now();
        while let Some((k, at)) = order.front() {
            if now.duration_since(*at) < self.window && order.len() <= self.capacity {
                break;
            }
            map.remove(k);
            order.pop_front();
        }
        map.contains_key(key)
    }

    fn remember(&self, key: Digest) {
        if let Ok(mut guard) = self.seen.lock() {
            let (map, order) = &mut *guard;
            let now = Instant::now();
            map.insert(key, now);
            order.push_back((key, now));
        }
    }
}

pub fn router(state: ReceiptsState) -> Router {
    Router::new()
        .route(
            "/v1/receipts/{provider}",
            post(provider_receipts).get(provider_receipts),
        )
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
    let replay_key = ReplayGuard::key(&provider, query.as_deref(), &body);
    if state.replays.seen(&replay_key) {
        tracing::warn!(provider, "receipt replayed");
        return error(
            StatusCode::CONFLICT,
            WebhookError::Replayed.code(),
            "this receipt request was already applied",
        );
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
            state.replays.remember(replay_key);
            Json(summary).into_response()
        }
        Err(e) => {
            tracing::error!(provider, error = %e, "receipts not applied");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "receipts cannot be applied right now; send again",
            )
        }
    }
}
