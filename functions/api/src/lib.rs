//! Holub's HTTPS API v1: one axum [`Router`], built once and served either by `axum::serve`
//! (the single binary) or by `lambda_http` (the API function).

mod admin;
mod analytics;
mod campaigns;
mod consent;
pub mod console;
mod contacts;
mod error;
mod export;
mod extract;
mod links;
mod pages;
mod routes;
mod templates;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use holub_shared::runtime::Holub;
use holub_shared::services::{
    Accounts, Analytics, Campaigns, Consents, Contacts, Intake, Limits, Messages, Senders,
    Templates, Users,
};

pub use error::{ApiError, ErrorBody};

/// Largest body of a single request; batches get a larger one (10,000 recipients). Above
/// the largest body the OpenAPI document allows (a 16,384-character text of emoji, each
/// written `\uD83D\uDE00`, is 196,608 bytes; with the other fields well under 224 KiB), so a
/// body the document allows is never turned away as too large, and one it does not is
/// answered by what is wrong with it.
pub const SINGLE_BODY_LIMIT: usize = 256 * 1024;
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
    pub contacts: Arc<Contacts>,
    pub templates: Arc<Templates>,
    pub campaigns: Arc<Campaigns>,
    pub users: Arc<Users>,
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
            contacts: holub.contacts.clone(),
            templates: holub.templates.clone(),
            campaigns: holub.campaigns.clone(),
            users: holub.users.clone(),
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
        .route("/v1/webhook", get(webhook::get).put(webhook::put))
        .route("/v1/webhook/rotate-secret", post(webhook::rotate_secret))
        .route("/v1/analytics/summary", get(analytics::summary))
        .route("/v1/analytics/timeseries", get(analytics::timeseries))
        .route("/v1/contacts", post(contacts::upsert).get(contacts::search))
        .route(
            "/v1/contacts/{id}",
            get(contacts::get)
                .patch(contacts::update)
                .delete(contacts::delete),
        )
        .route("/v1/lists", get(contacts::lists))
        .route(
            "/v1/templates",
            post(templates::create).get(templates::list),
        )
        .route(
            "/v1/templates/{id}",
            get(templates::get)
                .put(templates::change)
                .delete(templates::delete),
        )
        .route(
            "/v1/campaigns",
            post(campaigns::create).get(campaigns::list),
        )
        .route("/v1/campaigns/{id}", get(campaigns::get))
        .route("/v1/campaigns/{id}/start", post(campaigns::start))
        .route("/v1/campaigns/{id}/pause", post(campaigns::pause))
        .route("/v1/campaigns/{id}/resume", post(campaigns::resume))
        .route("/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route("/v1/consents", post(consent::record))
        .route("/v1/consents/{phone}", get(consent::ledger))
        .route("/{code}", get(links::follow).post(consent::opt_out))
        .layer(DefaultBodyLimit::max(SINGLE_BODY_LIMIT))
        .merge(batch)
        .merge(console::router())
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
    refine_contact_schemas(&mut doc);
    refine_consent_request(&mut doc);
    refine_webhook_request(&mut doc);
    doc
}

/// The account's `callback_url` follows a message's rules, so its schema states the same
/// pattern (utoipa takes a pattern only as a literal, which would be a second copy).
fn refine_webhook_request(doc: &mut serde_json::Value) {
    let pattern = doc
        .pointer("/components/schemas/SendMessageRequest/properties/callback_url/pattern")
        .cloned();
    if let (Some(pattern), Some(field)) = (
        pattern,
        doc.pointer_mut("/components/schemas/WebhookRequest/properties/callback_url")
            .and_then(serde_json::Value::as_object_mut),
    ) {
        field.insert("pattern".to_owned(), pattern);
    }
}

/// `POST /v1/consents` takes two shapes, told apart by `state`: consent `given` needs its
/// `source` and `evidence`, a withdrawal may name its `channel` and neither of those. The
/// derived schema has one object with every field optional; this states the two.
fn refine_consent_request(doc: &mut serde_json::Value) {
    use serde_json::json;
    let Some(schema) = doc.pointer_mut("/components/schemas/ConsentRequest") else {
        return;
    };
    let props = schema["properties"].clone();
    let field = |name: &str| props.get(name).cloned().unwrap_or(json!({}));
    let only_null = json!({"type": "null"});
    let mut evidence = field("evidence");
    evidence["type"] = json!("string");
    let given = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["phone", "state", "source", "evidence"],
        "properties": {
            "phone": field("phone"),
            "state": {"type": "string", "enum": ["given"]},
            "source": {"$ref": "#/components/schemas/ConsentSource"},
            "evidence": evidence,
            "channel": only_null,
            "at": field("at"),
        },
    });
    let withdrawn = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["phone", "state"],
        "properties": {
            "phone": field("phone"),
            "state": {"type": "string", "enum": ["withdrawn"]},
            "source": only_null,
            "evidence": only_null,
            // `opt_out_link` is recorded by the link itself.
            "channel": {"type": ["string", "null"], "enum": ["reply", "api", "console", null]},
            "at": field("at"),
        },
    });
    let description = schema.get("description").cloned();
    *schema = json!({"oneOf": [given, withdrawn]});
    if let Some(d) = description {
        schema["description"] = d;
    }
}

/// What utoipa's attributes cannot say of a contact (and of a campaign's lists): the names
/// its attributes may have (`propertyNames`), how many, and what a list's name and an
/// attribute's value may hold.
/// Each is the rule `domain::contact` holds to, so a schema-valid contact is one the server
/// takes.
fn refine_contact_schemas(doc: &mut serde_json::Value) {
    use serde_json::json;
    const PRINTABLE: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";
    const NOT_BLANK: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";
    let list = json!({"type": "string", "maxLength": 64, "pattern": NOT_BLANK});
    let attributes = json!({
        "type": "object",
        "maxProperties": 50,
        "propertyNames": {"pattern": "^[A-Za-z0-9_]{1,64}$"},
        "additionalProperties": {"type": "string", "maxLength": 500, "pattern": PRINTABLE},
    });
    for name in ["ContactRequest", "ContactPatch", "CampaignRequest"] {
        let Some(props) = doc
            .pointer_mut(&format!("/components/schemas/{name}/properties"))
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        // A contact's name may be blank (it is then left out); a campaign's may not, which
        // its own attribute says.
        if let Some(field) = props
            .get_mut("name")
            .and_then(|v| v.as_object_mut())
            .filter(|_| name != "CampaignRequest")
        {
            field.insert("pattern".into(), json!(PRINTABLE));
        }
        if let Some(field) = props.get_mut("lists").and_then(|v| v.as_object_mut()) {
            field.insert("items".into(), list.clone());
        }
        if let Some(field) = props.get_mut("attributes") {
            let nullable = field.get("type").is_some_and(|t| t.is_array());
            let mut refined = attributes.clone();
            if nullable {
                refined["type"] = json!(["object", "null"]);
            }
            *field = refined;
        }
    }
}
