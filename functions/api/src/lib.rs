//! Holub's HTTPS API v1: one axum [`Router`], built once and served either by `axum::serve`
//! (the single binary) or by `lambda_http` (the API function).

mod admin;
mod analytics;
mod consent;
mod error;
mod export;
mod extract;
mod links;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use holub_shared::runtime::Holub;
use holub_shared::services::{Accounts, Analytics, Consents, Intake, Limits, Messages, Senders};

pub use error::{ApiError, ErrorBody};

/// Largest body of a single request; batches get a larger one (10,000 recipients).
pub const SINGLE_BODY_LIMIT: usize = 64 * 1024;
pub const BATCH_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub accounts: Arc<Accounts>,
    pub senders: Arc<Senders>,
    pub limits: Arc<Limits>,
    pub intake: Arc<Intake>,
    pub messages: Arc<Messages>,
    pub analytics: Arc<Analytics>,
    pub consents: Arc<Consents>,
}

impl AppState {
    /// The API's services, as the composition root made them: the same for `holub serve`
    /// and the API Lambda.
    pub fn new(holub: &Holub) -> Self {
        AppState {
            accounts: holub.accounts.clone(),
            limits: holub.limits.clone(),
            senders: holub.senders.clone(),
            intake: holub.intake.clone(),
            messages: holub.messages.clone(),
            analytics: holub.analytics.clone(),
            consents: holub.consents.clone(),
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let batch = Router::new()
        .route("/v1/messages/batch", post(routes::send_batch))
        .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/v1/openapi.json", get(routes::openapi))
        .route(
            "/v1/messages",
            post(routes::send_message).get(routes::list_messages),
        )
        .route("/v1/messages/export", get(export::export_messages))
        .route("/v1/messages/{id}", get(routes::get_message))
        .route("/v1/messages/{id}/cancel", post(routes::cancel_message))
        .route("/v1/estimate", post(routes::estimate))
        .route("/v1/keys", post(admin::create_key).get(admin::list_keys))
        .route("/v1/keys/{id}/revoke", post(admin::revoke_key))
        .route("/v1/keys/{id}/rotate", post(admin::rotate_key))
        .route(
            "/v1/senders",
            post(admin::request_sender).get(admin::list_senders),
        )
        .route("/v1/senders/{sender}", delete(admin::remove_sender))
        .route("/v1/audit", get(admin::audit_log))
        .route("/v1/limits", get(admin::get_limits))
        .route("/v1/analytics/summary", get(analytics::summary))
        .route("/v1/analytics/timeseries", get(analytics::timeseries))
        .route("/v1/consents", post(consent::record))
        .route("/v1/consents/{phone}", get(consent::ledger))
        .route("/{code}", get(links::follow).post(consent::opt_out))
        .layer(DefaultBodyLimit::max(SINGLE_BODY_LIMIT))
        .merge(batch)
        .fallback(routes::not_found)
        .with_state(state)
}

/// The OpenAPI 3.1 document, generated from the handlers and types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    routes::ApiDoc::openapi()
}

/// The OpenAPI document as served. utoipa 5 writes a link's `operationId` as
/// `operation_id` (and `operationRef`, `requestBody` likewise); they are renamed here to the
/// names the specification gives them.
pub fn openapi_json() -> serde_json::Value {
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
    let operations = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let links = operation
            .get_mut("responses")
            .and_then(serde_json::Value::as_object_mut)
            .into_iter()
            .flat_map(|responses| responses.values_mut())
            .filter_map(|response| response.get_mut("links"))
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|links| links.values_mut())
            .filter_map(serde_json::Value::as_object_mut);
        for link in links {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(from) {
                    link.insert(to.to_owned(), value);
                }
            }
        }
    }
    doc
}
