//! The administrative routes of API v1: API keys, senders and the audit log. Every one needs
//! a key with the `admin` scope, and every change is written to the audit log with the key
//! that made it and the client's address.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use holub_shared::domain::access::key_format;
use holub_shared::domain::{
    Actor, ApiKeyRecord, AuditAction, AuditEntry, KeyId, KeyName, MessageId, Network, Registration,
    Scope, Scopes, SenderId, SenderRecord,
};
use holub_shared::services::accounts::{AccountError, MAX_ROTATION_GRACE};
use holub_shared::services::senders::SenderError;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AdminScope, Authorized, JsonBody};
use crate::routes::{invalid, query_params};

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let invalid = |code, field: &str| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string()).field(field)
        };
        match &e {
            AccountError::BadName => invalid("name_invalid", "name"),
            AccountError::ExpiryInPast => invalid("expires_at_invalid", "expires_at"),
            AccountError::GraceTooLong => invalid("grace_invalid", "grace_seconds"),
            AccountError::NoTenant => ApiError::unauthorized(),
            AccountError::Store(_) | AccountError::Secret(_) => {
                let retryable = matches!(&e, AccountError::Store(s)
                    if holub_shared::ports::Retryable::is_retryable(s));
                ApiError::backend(&e, retryable)
            }
        }
    }
}

impl From<SenderError> for ApiError {
    fn from(e: SenderError) -> Self {
        match e {
            SenderError::AlreadyRegistered => ApiError::new(
                StatusCode::CONFLICT,
                "sender_already_registered",
                e.to_string(),
            ),
            SenderError::NotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "sender_not_found", "no such sender")
            }
            SenderError::Store(s) => s.into(),
        }
    }
}

fn key_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "key_not_found",
        "this account has no live key with this id",
    )
}

/// An API key as listed: never its secret or hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// `key_` and a ULID.
    id: String,
    name: Option<String>,
    /// What the key starts with (`holub_sk_<id>`), to recognise it; never the secret part.
    prefix: String,
    scopes: Vec<Scope>,
    /// `active`, `expired` or `revoked`.
    status: &'static str,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl KeyView {
    fn of(key: &ApiKeyRecord, now: DateTime<Utc>) -> Option<Self> {
        let id = key.id.as_ref()?;
        Some(KeyView {
            id: id.to_string(),
            name: key.name.as_ref().map(|n| n.as_str().to_owned()),
            prefix: key_format::display_prefix(id),
            scopes: key.scopes.iter().collect(),
            status: if key.revoked_at.is_some() {
                "revoked"
            } else if key.is_live(now) {
                "active"
            } else {
                "expired"
            },
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        })
    }
}

/// A new key: the secret is shown here, once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewKeyView {
    /// The API key. Store it now: Holub keeps only its hash.
    key: String,
    #[serde(flatten)]
    view: KeyView,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// 1 to 100 characters, for people.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    name: String,
    /// At least one.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// RFC 3339, in the future; the key stops working then. None: it does not expire.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// Seconds the old key keeps working along with the new one: 0 (default) to 604800.
    #[schema(minimum = 0, maximum = 604800)]
    #[serde(
        default,
        deserialize_with = "holub_shared::services::intake::whole_number"
    )]
    grace_seconds: Option<u64>,
}

fn key_id(path: Result<Path<String>, PathRejection>) -> Result<KeyId, ApiError> {
    let Path(raw) = path.map_err(|_| key_not_found())?;
    raw.parse().map_err(|_| key_not_found())
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Create an API key with the given scopes (shown once).
#[utoipa::path(
    post, path = "/v1/keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, body = NewKeyView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    body: JsonBody<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let req = body.value;
    let name = KeyName::parse(&req.name).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name_invalid",
            e.to_string(),
        )
        .field("name")
    })?;
    let scopes = Scopes::new(req.scopes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "scopes_invalid",
            e.to_string(),
        )
        .field("scopes")
    })?;
    let expires_at = req
        .expires_at
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "expires_at_invalid",
                        "expected an RFC 3339 date-time",
                    )
                    .field("expires_at")
                })
        })
        .transpose()?;
    let issued = state
        .accounts
        .create_key(&auth.tenant, name, scopes, expires_at, &auth.origin)
        .await?;
    let view = KeyView::of(&issued.record, now()).ok_or_else(key_not_found)?;
    let body = NewKeyView {
        key: issued.secret,
        view,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    keys: Vec<KeyView>,
}

/// This account's API keys, oldest first, with their scopes, status and last use.
#[utoipa::path(
    get, path = "/v1/keys",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
) -> Result<Json<KeyList>, ApiError> {
    let now = now();
    let keys = state.accounts.list_keys(&auth.tenant).await?;
    Ok(Json(KeyList {
        keys: keys.iter().filter_map(|k| KeyView::of(k, now)).collect(),
    }))
}

/// Revoke an API key: refused at once by this instance, everywhere within 30 seconds.
#[utoipa::path(
    post, path = "/v1/keys/{id}/revoke",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses((status = 200, body = KeyView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<KeyView>, ApiError> {
    let id = key_id(path)?;
    let revoked = state
        .accounts
        .revoke_key(&auth.tenant, &id, &auth.origin)
        .await?
        .ok_or_else(key_not_found)?;
    KeyView::of(&revoked, now())
        .map(Json)
        .ok_or_else(key_not_found)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedKey {
    /// The old key, with the time it stops working as `expires_at`.
    old: KeyView,
    /// The new key, with its secret (shown once).
    new: NewKeyView,
}

/// Rotate an API key: a new key with the same name, scopes and expiry; the old one keeps
/// working for `grace_seconds` (default 0: it stops now).
#[utoipa::path(
    post, path = "/v1/keys/{id}/rotate",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    request_body = RotateKeyRequest,
    responses((status = 200, body = RotatedKey), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody<RotateKeyRequest>,
) -> Result<Json<RotatedKey>, ApiError> {
    let id = key_id(path)?;
    let grace = Duration::from_secs(body.value.grace_seconds.unwrap_or(0));
    if grace > MAX_ROTATION_GRACE {
        return Err(AccountError::GraceTooLong.into());
    }
    let (old, new) = state
        .accounts
        .rotate_key(&auth.tenant, &id, grace, &auth.origin)
        .await?
        .ok_or_else(key_not_found)?;
    let now = now();
    let (Some(old), Some(view)) = (KeyView::of(&old, now), KeyView::of(&new.record, now)) else {
        return Err(key_not_found());
    };
    Ok(Json(RotatedKey {
        old,
        new: NewKeyView {
            key: new.secret,
            view,
        },
    }))
}

/// A sender registered to this account and its registration on each network.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SenderView {
    sender: String,
    /// `kyivstar`, `vodafone`, `lifecell` and `other` (smaller networks and abroad), each
    /// `pending`, `active` or `rejected`. Messages go out to a network only where `active`.
    #[schema(value_type = Object)]
    networks: std::collections::BTreeMap<Network, Registration>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&SenderRecord> for SenderView {
    fn from(r: &SenderRecord) -> Self {
        SenderView {
            sender: r.sender.as_str().to_owned(),
            networks: r.networks.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SenderList {
    senders: Vec<SenderView>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SenderRequest {
    /// An alpha-name (3–11 Latin letters and digits, at least one letter) or a Ukrainian
    /// phone number.
    #[schema(
        pattern = "^([A-Za-z][A-Za-z0-9]{2,10}|(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7})$"
    )]
    sender: String,
}

/// This account's senders.
#[utoipa::path(
    get, path = "/v1/senders",
    responses((status = 200, body = SenderList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn list_senders(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
) -> Result<Json<SenderList>, ApiError> {
    let senders = state.senders.list(&auth.tenant).await?;
    Ok(Json(SenderList {
        senders: senders.iter().map(SenderView::from).collect(),
    }))
}

fn parse_sender(raw: &str, field: &str) -> Result<SenderId, ApiError> {
    SenderId::parse(raw).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()).field(field)
    })
}

/// Ask for a sender: registered to this account, pending on every network until the
/// networks confirm it.
#[utoipa::path(
    post, path = "/v1/senders",
    request_body = SenderRequest,
    responses((status = 201, body = SenderView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn request_sender(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    body: JsonBody<SenderRequest>,
) -> Result<Response, ApiError> {
    let sender = parse_sender(&body.value.sender, "sender")?;
    let record = state
        .senders
        .request(&auth.tenant, sender, &auth.origin)
        .await?;
    Ok((StatusCode::CREATED, Json(SenderView::from(&record))).into_response())
}

/// Remove a sender from this account: messages from it are refused from then on.
#[utoipa::path(
    delete, path = "/v1/senders/{sender}",
    params(("sender" = String, Path, description = "The sender, as registered")),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn remove_sender(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "sender_not_found", "no such sender");
    let Path(raw) = path.map_err(|_| not_found())?;
    let sender = SenderId::parse(&raw).map_err(|_| not_found())?;
    state
        .senders
        .remove(&auth.tenant, &sender, &auth.origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// The `next` cursor of the previous page.
    #[param(pattern = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    cursor: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// One administrative change.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    id: String,
    at: DateTime<Utc>,
    actor: Actor,
    /// The client's address, where the change came over the network.
    source: Option<String>,
    action: AuditAction,
    /// What was changed: a key id, a sender, `tenant`, `settings`.
    target: String,
    #[schema(value_type = Option<Object>)]
    before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    after: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            source: e.source,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditView>,
    /// Pass as `cursor` for older entries; null on the last page.
    next: Option<String>,
}

/// The audit log: every administrative change of this account, newest first.
#[utoipa::path(
    get, path = "/v1/audit",
    params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn audit_log(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let p = query_params(params)?;
    let limit = match p.limit {
        None => 50,
        Some(n @ 1..=500) => n,
        Some(_) => return Err(invalid("limit_invalid", "limit", "limit is 1 to 500")),
    };
    if let Some(cursor) = &p.cursor
        && cursor.parse::<MessageId>().is_err()
    {
        return Err(invalid(
            "cursor_invalid",
            "cursor",
            "not a cursor from this API",
        ));
    }
    let entries = state
        .accounts
        .audit_log(&auth.tenant, p.cursor.as_deref(), limit + 1)
        .await?;
    let more = entries.len() > limit;
    let entries: Vec<AuditView> = entries
        .into_iter()
        .take(limit)
        .map(AuditView::from)
        .collect();
    let next = more.then(|| entries.last().map(|e| e.id.clone())).flatten();
    Ok(Json(AuditPage { entries, next }))
}

/// This account's abuse limits, and what it spent today and this month (Kyiv calendar).
/// Only Holub's operator changes them (`holub tenant limits`), so a leaked key cannot lift
/// the caps that bound its damage.
#[utoipa::path(
    get, path = "/v1/limits",
    responses((status = 200, body = holub_shared::services::limits::LimitsView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn get_limits(
    State(state): State<AppState>,
    auth: Authorized<AdminScope>,
) -> Result<Json<holub_shared::services::limits::LimitsView>, ApiError> {
    Ok(Json(state.limits.view(&auth.tenant).await?))
}
