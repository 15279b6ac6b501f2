//! The account's status callback and its webhook signing secret: `GET` and `PUT
//! /v1/webhook`, `POST /v1/webhook/rotate-secret`. Admin scope; every change is audited.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use holub_shared::domain::{MessageStatus, StatusCallback};
use holub_shared::services::accounts::{AccountError, MAX_ROTATION_GRACE};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminScope, Authorized, JsonBody};

/// The account's status callback, and the state of its signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    /// Where messages that name no `callback_url` of their own are called back (`null`:
    /// nowhere).
    callback_url: Option<String>,
    /// The statuses it is told about (`null`: every one), unless a message names its own.
    callback_statuses: Option<Vec<MessageStatus>>,
    /// After a rotation with a grace period: until when callbacks are signed by the
    /// previous secret too (`null`: by the current one alone).
    previous_secret_valid_until: Option<DateTime<Utc>>,
}

impl WebhookView {
    fn of(callback: Option<&StatusCallback>, previous_until: Option<DateTime<Utc>>) -> Self {
        WebhookView {
            callback_url: callback.map(|c| c.url.clone()),
            callback_statuses: callback
                .and_then(|c| c.statuses.as_ref())
                .map(|s| s.iter().copied().collect()),
            previous_secret_valid_until: previous_until,
        }
    }
}

/// The account's status callback. A message that names a `callback_url` is called back
/// there instead; one that names only `callback_statuses` is called back here about those.
/// It applies to messages accepted after it is set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// As a message's `callback_url` (the same rules); `null` or absent: no account callback.
    #[serde(default)]
    /// (Its pattern is a message's, set in the served document: `crate::openapi_json`.)
    #[schema(max_length = 2048)]
    callback_url: Option<String>,
    /// The statuses it is told about (at least one; every status when absent). Without a
    /// `callback_url` there is no account callback, and these are not kept.
    #[serde(default)]
    #[schema(min_items = 1)]
    callback_statuses: Option<Vec<MessageStatus>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// Seconds the previous secret keeps signing along with the new one: 0 to 604800
    /// (default 86400, a day). 0 ends it at once, for a secret that leaked.
    #[schema(minimum = 0, maximum = 604800)]
    #[serde(
        default,
        deserialize_with = "holub_shared::services::intake::whole_number"
    )]
    grace_seconds: Option<u64>,
}

/// The new signing secret, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecretView {
    /// `whsec_…`: check `Holub-Signature` with it from now on.
    secret: String,
    /// Until when callbacks also carry a signature by the previous secret (`null`: they
    /// do not).
    previous_secret_valid_until: Option<DateTime<Utc>>,
}

/// Default grace of a signing-secret rotation: a day.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// This account's status callback and signing-secret state.
#[utoipa::path(
    get, path = "/v1/webhook",
    responses((status = 200, body = WebhookView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
) -> Result<Json<WebhookView>, ApiError> {
    let limits = state.limits.view(&auth.tenant).await?;
    let grace = state.accounts.webhook_secret_grace(&auth.tenant).await?;
    Ok(Json(WebhookView::of(
        limits.limits.status_callback.as_ref(),
        grace,
    )))
}

/// Set (or with `callback_url` null, remove) the account's status callback.
#[utoipa::path(
    put, path = "/v1/webhook",
    request_body = WebhookRequest,
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn put(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    body: JsonBody<WebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    let request = body.value;
    let callback = state
        .intake
        .set_status_callback(
            &auth.tenant,
            request.callback_url.as_deref(),
            request.callback_statuses,
            &auth.origin,
        )
        .await?;
    let grace = state.accounts.webhook_secret_grace(&auth.tenant).await?;
    Ok(Json(WebhookView::of(callback.as_ref(), grace)))
}

/// Rotate the webhook signing secret. The new one is shown once; callbacks carry a
/// signature by each (`v1=<new>,v1=<previous>`) until the grace ends.
#[utoipa::path(
    post, path = "/v1/webhook/rotate-secret",
    request_body = RotateSecretRequest,
    responses((status = 200, body = RotatedSecretView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    body: JsonBody<RotateSecretRequest>,
) -> Result<Json<RotatedSecretView>, ApiError> {
    let grace = body
        .value
        .grace_seconds
        .map_or(DEFAULT_GRACE, Duration::from_secs);
    if grace > MAX_ROTATION_GRACE {
        return Err(AccountError::GraceTooLong.into());
    }
    let rotated = state
        .accounts
        .rotate_webhook_secret(&auth.tenant, grace, &auth.origin)
        .await?;
    Ok(Json(RotatedSecretView {
        secret: rotated.secret,
        previous_secret_valid_until: rotated.previous_until,
    }))
}
