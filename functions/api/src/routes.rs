//! The handlers of API v1.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use holub_shared::domain::ids::IDEMPOTENCY_KEY_MAX_LEN;
use holub_shared::domain::{
    BatchId, MessageId, MessageStatus, PhoneNumber, SenderId, TextEstimate,
};
use holub_shared::ports::store::ListQuery;
use holub_shared::services::intake::{BatchRequest, Reply, SendMessageRequest};
use holub_shared::services::view::MessageView;
use serde::Deserialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AnyKey, Authorized, IdempotencyHeader, JsonBody, ReadScope, SendScope};
use crate::pages::page_params;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Holub API",
        description = "Send SMS to Ukrainian phones and follow their delivery. Every /v1 route \
                       needs `Authorization: Bearer <api key>`; errors answer \
                       `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        version = "1"
    ),
    paths(
        send_message,
        send_batch,
        get_message,
        list_messages,
        crate::export::export_messages,
        cancel_message,
        estimate,
        crate::admin::create_key,
        crate::admin::list_keys,
        crate::admin::revoke_key,
        crate::admin::rotate_key,
        crate::admin::list_senders,
        crate::admin::request_sender,
        crate::admin::remove_sender,
        crate::admin::audit_log,
        crate::admin::get_limits,
        crate::webhook::get,
        crate::webhook::put,
        crate::webhook::rotate_secret,
        crate::analytics::summary,
        crate::analytics::timeseries,
        crate::links::follow,
        crate::consent::opt_out,
        crate::consent::record,
        crate::consent::ledger,
        crate::contacts::upsert,
        crate::contacts::search,
        crate::contacts::get,
        crate::contacts::update,
        crate::contacts::delete,
        crate::templates::create,
        crate::templates::list,
        crate::templates::get,
        crate::templates::change,
        crate::templates::delete,
        crate::contacts::lists,
        crate::campaigns::create,
        crate::campaigns::list,
        crate::campaigns::get,
        crate::campaigns::start,
        crate::campaigns::pause,
        crate::campaigns::resume,
        crate::campaigns::cancel
    ),
    components(schemas(
        SendMessageRequest,
        BatchRequest,
        MessageView,
        holub_shared::services::view::LinkView,
        MessageStatus,
        ErrorBody,
        EstimateRequest,
        TextEstimate,
        holub_shared::domain::Scope,
        holub_shared::domain::Network,
        holub_shared::domain::Registration,
        holub_shared::domain::Actor,
        holub_shared::domain::AuditAction,
        crate::admin::KeyView,
        crate::admin::NewKeyView,
        crate::admin::KeyList,
        crate::admin::CreateKeyRequest,
        crate::admin::RotateKeyRequest,
        crate::admin::RotatedKey,
        crate::admin::SenderView,
        crate::admin::SenderList,
        crate::admin::SenderRequest,
        crate::admin::AuditView,
        crate::admin::AuditPage,
        holub_shared::services::limits::LimitsView,
        holub_shared::domain::TenantLimits,
        holub_shared::domain::StatusCallback,
        crate::webhook::WebhookView,
        crate::webhook::WebhookRequest,
        crate::webhook::RotateSecretRequest,
        crate::webhook::RotatedSecretView,
        holub_shared::services::analytics::ReportView,
        holub_shared::services::analytics::GroupView,
        holub_shared::services::analytics::TotalsView,
        holub_shared::services::analytics::LatenciesView,
        holub_shared::services::analytics::LatencyView,
        holub_shared::services::analytics::Dimension,
        holub_shared::services::analytics::Zone,
        holub_shared::services::consent::ConsentRequest,
        holub_shared::services::consent::RecordedState,
        holub_shared::services::consent::ConsentView,
        holub_shared::services::consent::EntryView,
        holub_shared::domain::Category,
        holub_shared::domain::ConsentSource,
        holub_shared::domain::ConsentState,
        holub_shared::domain::WithdrawalChannel,
        holub_shared::domain::RecordedBy,
        holub_shared::services::contacts::ContactRequest,
        holub_shared::services::contacts::ContactPatch,
        holub_shared::services::contacts::ContactView,
        holub_shared::services::contacts::ContactPageView,
        holub_shared::services::templates::TemplateRequest,
        holub_shared::services::templates::TemplateChange,
        holub_shared::services::templates::TemplateView,
        holub_shared::services::templates::TemplateEstimate,
        holub_shared::services::templates::TemplatePageView,
        holub_shared::services::campaigns::CampaignRequest,
        holub_shared::services::campaigns::CampaignView,
        holub_shared::services::campaigns::CampaignEstimateView,
        holub_shared::services::campaigns::CampaignProgress,
        holub_shared::services::campaigns::CampaignPageView,
        holub_shared::domain::CampaignState
    )),
    modifiers(&BearerAuth, &Refinements)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// What the path macros cannot say: the `Idempotency-Key` header's limits, and links from
/// an answer that names a message or a campaign to the operations that take its id.
struct Refinements;

impl Modify for Refinements {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::link::LinkBuilder;
        use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
        let key = Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(IDEMPOTENCY_KEY_MAX_LEN))
                .pattern(Some("^[\\x20-\\x7E]+$"))
                .build(),
        );
        let message_links = [
            ("get_message", "GetMessage"),
            ("cancel_message", "CancelMessage"),
        ];
        let campaign_links = [
            ("get_campaign", "GetCampaign"),
            ("start_campaign", "StartCampaign"),
            ("pause_campaign", "PauseCampaign"),
            ("resume_campaign", "ResumeCampaign"),
            ("cancel_campaign", "CancelCampaign"),
        ];
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    if p.name == "Idempotency-Key" {
                        p.schema = Some(RefOr::T(key.clone()));
                    }
                }
                let names_a_message = matches!(
                    (path.as_str(), op.operation_id.as_deref()),
                    ("/v1/messages", Some("send_message"))
                        | ("/v1/messages/{id}", _)
                        | ("/v1/messages/{id}/cancel", _)
                );
                let names_a_campaign = matches!(
                    (path.as_str(), op.operation_id.as_deref()),
                    ("/v1/campaigns", Some("create_campaign"))
                ) || path.starts_with("/v1/campaigns/{id}");
                let links: &[(&str, &str)] = if names_a_message {
                    &message_links
                } else if names_a_campaign {
                    &campaign_links
                } else {
                    continue;
                };
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if !status.starts_with('2') {
                        continue;
                    }
                    for (operation, name) in links {
                        let link = LinkBuilder::new()
                            .operation_id(*operation)
                            .parameter("id", "$response.body#/id")
                            .build();
                        response.links.insert((*name).to_owned(), RefOr::T(link));
                    }
                }
            }
        }
    }
}

fn reply(r: Reply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::ACCEPTED);
    (status, Json(r.body)).into_response()
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi_json())
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
}

/// Send one message.
#[utoipa::path(
    post, path = "/v1/messages",
    request_body = SendMessageRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Same key and body: the same answer; same key, other body: 409")),
    responses(
        (status = 202, description = "Accepted (queued or scheduled)", body = MessageView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`idempotency_key_reused`, `idempotency_key_in_use`; for a marketing message, `consent_missing` or `consent_withdrawn`: the number's consent is not on record or was withdrawn"),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "A limit of this account (rate, per-number, daily or monthly spend); try again after `Retry-After` seconds",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("api_key" = []))
)]
pub async fn send_message(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    idempotency: IdempotencyHeader,
    body: JsonBody<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let tenant = auth.tenant;
    let idem = idempotency.with(body.fingerprint);
    Ok(reply(state.intake.send(&tenant, body.value, idem).await?))
}

/// Send one text to up to 10,000 recipients, with `{{name}}` placeholders filled per
/// recipient. A refused recipient does not sink the others.
#[utoipa::path(
    post, path = "/v1/messages/batch",
    request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "As for single messages")),
    responses(
        (status = 202, description = "Per-recipient results", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "A limit of this account (rate, per-number, daily or monthly spend); try again after `Retry-After` seconds",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("api_key" = []))
)]
pub async fn send_batch(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    idempotency: IdempotencyHeader,
    body: JsonBody<BatchRequest>,
) -> Result<Response, ApiError> {
    let tenant = auth.tenant;
    let idem = idempotency.with(body.fingerprint);
    Ok(reply(
        state.intake.send_batch(&tenant, body.value, idem).await?,
    ))
}

fn message_id(path: Result<Path<String>, PathRejection>) -> Result<MessageId, ApiError> {
    let Path(raw) = path.map_err(|_| ApiError::not_found())?;
    // An id that cannot exist is simply not found: no hint about the id format is needed.
    raw.parse().map_err(|_| ApiError::not_found())
}

/// One message: status, every transition with its time, provider, cost and error.
#[utoipa::path(
    get, path = "/v1/messages/{id}",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = MessageView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MessageView>, ApiError> {
    let tenant = auth.tenant;
    let id = message_id(path)?;
    match state.messages.get(&tenant, &id).await? {
        Some(m) => Ok(Json(MessageView::from(&m))),
        None => Err(ApiError::not_found()),
    }
}

/// Cancel a scheduled or queued message.
#[utoipa::path(
    post, path = "/v1/messages/{id}/cancel",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = MessageView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn cancel_message(
    State(state): State<AppState>,
    auth: Authorized<SendScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<MessageView>, ApiError> {
    let tenant = auth.tenant;
    let id = message_id(path)?;
    let message = state.messages.cancel(&tenant, &id).await?;
    Ok(Json(MessageView::from(&message)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// One status, e.g. `delivered`.
    #[param(value_type = Option<MessageStatus>)]
    status: Option<String>,
    /// Recipient, in any form `to` accepts.
    #[param(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")]
    to: Option<String>,
    /// Sender, as sent.
    #[param(
        pattern = "^([A-Za-z][A-Za-z0-9]{2,10}|(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7})$"
    )]
    from: Option<String>,
    #[param(pattern = "^bat_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    batch_id: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    created_after: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    created_before: Option<String>,
    /// The `next` cursor of the previous page.
    #[param(pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    cursor: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// A route's query string, or 422 `invalid_query` with what was wrong with it.
pub(crate) fn query_params<T>(params: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    params.map(|Query(p)| p).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_query",
            e.body_text(),
        )
    })
}

pub(crate) fn invalid(code: &str, field: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field(field)
}

/// An RFC 3339 instant of query parameter `field`, or 422 `time_invalid`.
pub(crate) fn instant(raw: &str, field: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid("time_invalid", field, "expected an RFC 3339 date-time"))
}

fn parse_time(raw: Option<String>, field: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|s| instant(&s, field)).transpose()
}

/// A tenant's messages, newest first, with filters and cursor pagination.
#[utoipa::path(
    get, path = "/v1/messages",
    params(ListParams),
    responses((status = 200, description = "`{\"messages\": [...], \"next\": cursor|null}`",
        body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = auth.tenant;
    let p = query_params(params)?;
    let mut query = filters(Filters {
        status: p.status,
        to: p.to,
        from: p.from,
        batch_id: p.batch_id,
        created_after: p.created_after,
        created_before: p.created_before,
    })?;
    (query.after, query.limit) = page_params::<MessageId>(p.cursor, p.limit, 500)?;
    let page = state.messages.list(&tenant, query).await?;
    let messages: Vec<MessageView> = page.messages.iter().map(MessageView::from).collect();
    Ok(Json(serde_json::json!({
        "messages": messages,
        "next": page.next.map(|id| id.to_string()),
    })))
}

/// The filters `GET /v1/messages` and its export share, as given.
pub(crate) struct Filters {
    pub status: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub batch_id: Option<String>,
    pub created_after: Option<String>,
    pub created_before: Option<String>,
}

/// The filters parsed into a query (first page, default size).
pub(crate) fn filters(p: Filters) -> Result<ListQuery, ApiError> {
    Ok(ListQuery {
        status: p
            .status
            .map(|s| s.parse::<MessageStatus>())
            .transpose()
            .map_err(|_| invalid("status_invalid", "status", "not a message status"))?,
        to: p
            .to
            .map(|s| PhoneNumber::parse(&s))
            .transpose()
            .map_err(|e| invalid(e.code(), "to", &e.to_string()))?,
        from: p
            .from
            .map(|s| SenderId::parse(&s))
            .transpose()
            .map_err(|e| invalid(e.code(), "from", &e.to_string()))?,
        batch_id: p
            .batch_id
            .map(|s| s.parse::<BatchId>())
            .transpose()
            .map_err(|_| invalid("batch_id_invalid", "batch_id", "not a batch id"))?,
        created_after: parse_time(p.created_after, "created_after")?,
        created_before: parse_time(p.created_before, "created_before")?,
        after: None,
        limit: 50,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    text: String,
    #[serde(default)]
    transliterate: bool,
}

/// How a text travels: encoding, characters, units, segments and parts.
#[utoipa::path(
    post, path = "/v1/estimate",
    request_body = EstimateRequest,
    responses((status = 200, body = TextEstimate), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn estimate(_key: AnyKey, body: JsonBody<EstimateRequest>) -> Json<TextEstimate> {
    Json(TextEstimate::of(&body.value.text, body.value.transliterate))
}
