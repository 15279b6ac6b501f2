//! The address book: `/v1/contacts` (add or merge by number, search and page, change,
//! delete) and `/v1/lists`. Writes need `contacts:write`, reads `contacts:read`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holub_shared::domain::{ContactId, ListName, PhoneNumber};
use holub_shared::services::contacts::{
    ContactPageView, ContactPatch, ContactRequest, ContactView, ContactsError, Search,
};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authorized, ContactsReadScope, ContactsScope, JsonBody};
use crate::pages::page_params;
use crate::routes::{invalid, query_params};

impl From<ContactsError> for ApiError {
    fn from(e: ContactsError) -> Self {
        match e {
            ContactsError::Invalid(field) => field.into(),
            ContactsError::Full(field) => ApiError::conflict(field),
            ContactsError::NotFound => contact_not_found(),
            ContactsError::Store(s) => s.into(),
        }
    }
}

fn contact_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "contact_not_found",
        "no such contact",
    )
}

fn contact_id(path: Result<Path<String>, PathRejection>) -> Result<ContactId, ApiError> {
    let Path(raw) = path.map_err(|_| contact_not_found())?;
    raw.parse().map_err(|_| contact_not_found())
}

/// Add a contact, or merge into the tenant's contact with this number: the name replaced
/// when given, the attributes given replacing those of the same name, the lists added.
#[utoipa::path(
    post, path = "/v1/contacts",
    request_body = ContactRequest,
    responses(
        (status = 201, body = ContactView, description = "A new contact"),
        (status = 200, body = ContactView, description = "Merged into the contact with this number"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`too_many_attributes`, `too_many_lists`: merged into the stored contact, it would hold more than a contact may"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "The phone codes, `name_invalid`, `attribute_invalid`, `too_many_attributes`, `list_name_invalid`, `too_many_lists`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn upsert(
    State(state): State<AppState>,
    auth: Authorized<ContactsScope>,
    body: JsonBody<ContactRequest>,
) -> Result<Response, ApiError> {
    let (contact, created) = state.contacts.upsert(&auth.tenant, body.value).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ContactView::from(&contact))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContactParams {
    /// Only the contacts on this list.
    #[param(
        max_length = 64,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    list: Option<String>,
    /// The contact with this number, in any form `to` accepts.
    #[param(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")]
    phone: Option<String>,
    /// Text in the name, the number or an attribute's value (case-insensitive; 1 to 100
    /// characters). A request reads at most 5,000 contacts looking for it: follow `next`.
    #[param(min_length = 1, max_length = 100)]
    q: Option<String>,
    /// The `next` cursor of the previous page.
    #[param(pattern = "^con_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    cursor: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// The tenant's contacts, oldest first: all, one list's, the one with a number, or those
/// that match a text.
#[utoipa::path(
    get, path = "/v1/contacts",
    params(ContactParams),
    responses(
        (status = 200, body = ContactPageView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    auth: Authorized<ContactsReadScope>,
    params: Result<Query<ContactParams>, QueryRejection>,
) -> Result<Json<ContactPageView>, ApiError> {
    let p = query_params(params)?;
    let list = p
        .list
        .map(|l| ListName::parse(&l))
        .transpose()
        .map_err(|e| invalid(e.code(), "list", &e.to_string()))?;
    let phone = p
        .phone
        .map(|s| PhoneNumber::parse(&s))
        .transpose()
        .map_err(|e| invalid(e.code(), "phone", &e.to_string()))?;
    let text = match p.q {
        Some(q) if q.trim().is_empty() || q.chars().count() > 100 => {
            return Err(invalid("q_invalid", "q", "q is 1 to 100 characters"));
        }
        q => q.map(|q| q.trim().to_owned()),
    };
    let (after, limit) = page_params::<ContactId>(p.cursor, p.limit, 500)?;
    let search = Search {
        list,
        phone,
        text,
        after,
        limit,
    };
    let (contacts, next) = state.contacts.search(&auth.tenant, search).await?;
    Ok(Json(ContactPageView {
        contacts: contacts.iter().map(ContactView::from).collect(),
        next: next.map(|id| id.to_string()),
    }))
}

/// One contact.
#[utoipa::path(
    get, path = "/v1/contacts/{id}",
    params(("id" = String, Path, description = "The contact's id, `con_…`")),
    responses(
        (status = 200, body = ContactView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`contact_not_found`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authorized<ContactsReadScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ContactView>, ApiError> {
    let id = contact_id(path)?;
    let contact = state.contacts.get(&auth.tenant, &id).await?;
    Ok(Json(ContactView::from(&contact)))
}

/// Change a contact: the fields given replace the stored ones.
#[utoipa::path(
    patch, path = "/v1/contacts/{id}",
    params(("id" = String, Path, description = "The contact's id, `con_…`")),
    request_body = ContactPatch,
    responses(
        (status = 200, body = ContactView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`contact_not_found`"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    auth: Authorized<ContactsScope>,
    path: Result<Path<String>, PathRejection>,
    body: JsonBody<ContactPatch>,
) -> Result<Json<ContactView>, ApiError> {
    let id = contact_id(path)?;
    let contact = state.contacts.update(&auth.tenant, &id, body.value).await?;
    Ok(Json(ContactView::from(&contact)))
}

/// Delete a contact (and its place on its lists). Its consent ledger stays: it is the
/// record of what the number agreed to.
#[utoipa::path(
    delete, path = "/v1/contacts/{id}",
    params(("id" = String, Path, description = "The contact's id, `con_…`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`contact_not_found`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authorized<ContactsScope>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = contact_id(path)?;
    state.contacts.delete(&auth.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's lists: those with at least one contact, by name.
#[utoipa::path(
    get, path = "/v1/lists",
    responses(
        (status = 200, description = "`{\"lists\": [\"VIP\", …]}`", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn lists(
    State(state): State<AppState>,
    auth: Authorized<ContactsReadScope>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let lists = state.contacts.lists(&auth.tenant).await?;
    let names: Vec<&str> = lists.iter().map(ListName::as_str).collect();
    Ok(Json(serde_json::json!({ "lists": names })))
}
