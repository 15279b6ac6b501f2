//! Message templates: `/v1/templates` (make, list) and `/v1/templates/{id}` (read a version,
//! change into a new version, delete). Writes need `messages:send`, reads `messages:read`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holub_shared::domain::TemplateId;
use holub_shared::services::templates::{
    TemplateChange, TemplatePageView, TemplateRequest, TemplateView, TemplatesError,
};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authorized, JsonBody, ReadScope, SendScope};
use crate::pages::page_params;
use crate::routes::{invalid, query_params};

impl From<TemplatesError> for ApiError {
    fn from(e: TemplatesError) -> Self {
        match e {
            TemplatesError::Invalid(field) => field.into(),
            TemplatesError::Taken(field) => ApiError::conflict(field),
            TemplatesError::NotFound => template_not_found(),
            TemplatesError::Store(s) => s.into(),
        }
    }
}

fn template_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "template_not_found",
        "no such template",
    )
}

fn template_id(path: Result<Path<String>, PathRejection>) -> Result<TemplateId, ApiError> {
    let Path(raw) = path.map_err(|_| template_not_found())?;
    raw.parse().map_err(|_| template_not_found())
}

/// Make a template (version 1), answered with the estimate of its shortest message.
#[utoipa::path(
    post, path = "/v1/templates",
    request_body = TemplateRequest,
    responses(
        (status = 201, body = TemplateView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`template_name_taken`"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`template_name_invalid`, `text_empty`, `text_control_character`, `text_too_long`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    body: JsonBody<TemplateRequest>,
) -> Result<Response, ApiError> {
    let view = state.templates.create(&auth.tenant, body.value).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TemplateListParams {
    /// The `next` cursor of the previous page.
    #[param(pattern = "^tpl_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    cursor: Option<String>,
    /// 1 to 100; default 50.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// The account's templates (each its latest version), oldest first.
#[utoipa::path(
    get, path = "/v1/templates",
    params(TemplateListParams),
    responses(
        (status = 200, body = TemplatePageView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    params: Result<Query<TemplateListParams>, QueryRejection>,
) -> Result<Json<TemplatePageView>, ApiError> {
    let p = query_params(params)?;
    let (after, limit) = page_params::<TemplateId>(p.cursor, p.limit, 100)?;
    Ok(Json(
        state
            .templates
            .list(&auth.tenant, after.as_ref(), limit)
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TemplateVersionParams {
    /// A version other than the latest (1, 2, …), also of a deleted template.
    #[param(minimum = 1, maximum = 4294967295_u64)]
    version: Option<u32>,
}

/// A template: its latest version, or `version`.
#[utoipa::path(
    get, path = "/v1/templates/{id}",
    params(("id" = String, Path, description = "The template's id, `tpl_…`"), TemplateVersionParams),
    responses(
        (status = 200, body = TemplateView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`template_not_found`"),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<TemplateVersionParams>, QueryRejection>,
) -> Result<Json<TemplateView>, ApiError> {
    let id = template_id(path)?;
    let p = query_params(params)?;
    if p.version == Some(0) {
        return Err(invalid("version_invalid", "version", "versions start at 1"));
    }
    Ok(Json(
        state.templates.get(&auth.tenant, &id, p.version).await?,
    ))
}

/// Change a template: a new version with the fields given (the others as they were); older
/// versions stay as they are.
#[utoipa::path(
    put, path = "/v1/templates/{id}",
    params(("id" = String, Path, description = "The template's id, `tpl_…`")),
    request_body = TemplateChange,
    responses(
        (status = 200, body = TemplateView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`template_not_found`"),
        (status = 409, body = ErrorBody, description = "`template_name_taken`"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn change(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody<TemplateChange>,
) -> Result<Json<TemplateView>, ApiError> {
    let id = template_id(path)?;
    Ok(Json(
        state
            .templates
            .change(&auth.tenant, &id, body.value)
            .await?,
    ))
}

/// Delete a template: it leaves the list and its name is free; its versions stay readable
/// by number (campaigns that sent it keep showing what they sent).
#[utoipa::path(
    delete, path = "/v1/templates/{id}",
    params(("id" = String, Path, description = "The template's id, `tpl_…`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`template_not_found`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = template_id(path)?;
    state.templates.delete(&auth.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
