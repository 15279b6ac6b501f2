//! Campaigns: `/v1/campaigns` (make, list), `/v1/campaigns/{id}` (read, with progress) and
//! `/v1/campaigns/{id}/start|pause|resume|cancel`. Writes need `messages:send`, reads
//! `messages:read`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holub_shared::domain::CampaignId;
use holub_shared::services::campaigns::{
    CampaignPageView, CampaignRequest, CampaignView, CampaignsError,
};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authorized, JsonBody, ReadScope, SendScope};
use crate::pages::page_params;
use crate::routes::query_params;

impl From<CampaignsError> for ApiError {
    fn from(e: CampaignsError) -> Self {
        match e {
            CampaignsError::Invalid(field) => field.into(),
            CampaignsError::Conflict(field) => ApiError::conflict(field),
            CampaignsError::NotFound => campaign_not_found(),
            CampaignsError::Store(s) => s.into(),
            CampaignsError::Queue(q) => {
                use holub_shared::ports::Retryable;
                let retryable = q.is_retryable();
                ApiError::backend(&q, retryable)
            }
        }
    }
}

fn campaign_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "campaign_not_found",
        "no such campaign",
    )
}

fn campaign_id(path: Result<Path<String>, PathRejection>) -> Result<CampaignId, ApiError> {
    let Path(raw) = path.map_err(|_| campaign_not_found())?;
    raw.parse().map_err(|_| campaign_not_found())
}

/// Make a campaign (a draft), answered with its estimate: the contacts on its lists and the
/// cost of its shortest message to each. Nothing is sent until it is started.
#[utoipa::path(
    post, path = "/v1/campaigns", operation_id = "create_campaign",
    request_body = CampaignRequest,
    responses(
        (status = 201, body = CampaignView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`campaign_name_invalid`, `template_id_invalid`, `template_not_found`, `list_name_invalid`, `campaign_lists_invalid`, `sender_*`, `pace_invalid`, `start_at_invalid`, `start_at_too_far`, `validity_out_of_range`, `track_links_unavailable`, `opt_out_unavailable`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    body: JsonBody<CampaignRequest>,
) -> Result<Response, ApiError> {
    let view = state.campaigns.create(&auth.tenant, body.value).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CampaignListParams {
    /// The `next` cursor of the previous page.
    #[param(pattern = "^cmp_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    cursor: Option<String>,
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// The account's campaigns, newest first (their progress without the message statuses:
/// read one campaign for those).
#[utoipa::path(
    get, path = "/v1/campaigns", operation_id = "list_campaigns",
    params(CampaignListParams),
    responses(
        (status = 200, body = CampaignPageView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    params: Result<Query<CampaignListParams>, QueryRejection>,
) -> Result<Json<CampaignPageView>, ApiError> {
    let p = query_params(params)?;
    let (before, limit) = page_params::<CampaignId>(p.cursor, p.limit, 100)?;
    Ok(Json(
        state
            .campaigns
            .list(&auth.tenant, before.as_ref(), limit)
            .await?,
    ))
}

/// A campaign, with its progress: messages made and contacts skipped (per code), and its
/// messages per status, clicks and opt-outs from the statistics.
#[utoipa::path(
    get, path = "/v1/campaigns/{id}", operation_id = "get_campaign",
    params(("id" = String, Path, description = "The campaign's id, `cmp_…`")),
    responses(
        (status = 200, body = CampaignView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`campaign_not_found`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id(path)?;
    Ok(Json(state.campaigns.get(&auth.tenant, &id).await?))
}

/// Start a draft: from its `start_at` (or now), at its pace.
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/start", operation_id = "start_campaign",
    params(("id" = String, Path, description = "The campaign's id, `cmp_…`")),
    responses(
        (status = 200, body = CampaignView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`campaign_not_found`"),
        (status = 409, body = ErrorBody, description = "`campaign_state_conflict`: not a draft"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn start(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id(path)?;
    Ok(Json(state.campaigns.start(&auth.tenant, &id).await?))
}

/// Pause a running campaign: nothing more is expanded into messages (those already made —
/// at most about the next minute at its pace — still go).
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/pause", operation_id = "pause_campaign",
    params(("id" = String, Path, description = "The campaign's id, `cmp_…`")),
    responses(
        (status = 200, body = CampaignView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`campaign_not_found`"),
        (status = 409, body = ErrorBody, description = "`campaign_state_conflict`: not running"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn pause(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id(path)?;
    Ok(Json(state.campaigns.pause(&auth.tenant, &id).await?))
}

/// Resume a paused campaign where it stopped.
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/resume", operation_id = "resume_campaign",
    params(("id" = String, Path, description = "The campaign's id, `cmp_…`")),
    responses(
        (status = 200, body = CampaignView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`campaign_not_found`"),
        (status = 409, body = ErrorBody, description = "`campaign_state_conflict`: not paused"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn resume(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id(path)?;
    Ok(Json(state.campaigns.resume(&auth.tenant, &id).await?))
}

/// Cancel a campaign for good: nothing more is expanded, and its messages still scheduled
/// are cancelled (those already queued for dispatch go).
#[utoipa::path(
    post, path = "/v1/campaigns/{id}/cancel", operation_id = "cancel_campaign",
    params(("id" = String, Path, description = "The campaign's id, `cmp_…`")),
    responses(
        (status = 200, body = CampaignView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`campaign_not_found`"),
        (status = 409, body = ErrorBody, description = "`campaign_state_conflict`: completed or cancelled already"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CampaignView>, ApiError> {
    let id = campaign_id(path)?;
    Ok(Json(state.campaigns.cancel(&auth.tenant, &id).await?))
}
