//! Consent to marketing: the tenant records it (`POST /v1/consents`) and reads a number's
//! ledger (`GET /v1/consents/{phone}`); the subscriber opts out through the link at the end
//! of every marketing message (`GET /{code}` shows a page in Ukrainian with one button,
//! `POST /{code}` records it, no login).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holub_shared::domain::{Actor, ConsentState, RecordedBy, ShortCode};
use holub_shared::services::consent::{ConsentError, ConsentRequest, ConsentView, OptOutTarget};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authorized, ContactsReadScope, ContactsScope, JsonBody};

impl From<ConsentError> for ApiError {
    fn from(e: ConsentError) -> Self {
        match e {
            ConsentError::Invalid(field) => field.into(),
            ConsentError::Conflict(field) => ApiError::conflict(field),
            ConsentError::Store(s) => s.into(),
        }
    }
}

/// Record consent given or withdrawn for a number. Entries are only ever added; the one
/// with the latest `at` decides the number's state, so a consent recorded late for an
/// earlier date never overrides a withdrawal made since.
#[utoipa::path(
    post, path = "/v1/consents",
    request_body = ConsentRequest,
    responses(
        (status = 201, body = ConsentView, description = "The number's ledger after the entry"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`time_in_future`: `at` is later than the server's clock"),
        (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "`phone_invalid` and the other phone codes, `time_invalid`, `source_missing`, `evidence_missing`, `evidence_too_long`, `evidence_invalid`, `field_not_allowed`"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn record(
    State(state): State<AppState>,
    auth: Authorized<ContactsScope>,
    body: JsonBody<ConsentRequest>,
) -> Result<Response, ApiError> {
    let by = match auth.origin.actor {
        Actor::ApiKey { key_id } => RecordedBy::ApiKey { key_id },
        Actor::Operator { user } => RecordedBy::Operator { user },
        Actor::Console { user_id } => RecordedBy::Console { user_id },
    };
    let view = state.consents.record(&auth.tenant, body.value, by).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PhonePath {
    /// The number, as typed (URL-encoded).
    #[param(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")]
    phone: String,
}

/// A number's consent ledger: its state and every entry, oldest recorded first (the export
/// to show a regulator or the subscriber).
#[utoipa::path(
    get, path = "/v1/consents/{phone}",
    params(PhonePath),
    responses(
        (status = 200, body = ConsentView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Not a valid number"),
        (status = 503, body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn ledger(
    State(state): State<AppState>,
    auth: Authorized<ContactsReadScope>,
    Path(PhonePath { phone }): Path<PhonePath>,
) -> Result<Json<ConsentView>, ApiError> {
    Ok(Json(state.consents.ledger(&auth.tenant, &phone).await?))
}

/// The opt-out page of `code`, if it is an opt-out code.
pub(crate) async fn opt_out_page(
    state: &AppState,
    code: &ShortCode,
) -> Result<Option<Response>, ApiError> {
    Ok(state
        .consents
        .opt_out_target(code)
        .await?
        .map(|target| page(StatusCode::OK, &ask(code, &target))))
}

/// Opt out through a marketing message's link: the page that confirms it.
#[utoipa::path(
    post, path = "/{code}",
    params(("code" = String, Path, description = "An opt-out link's code: 10 of [0-9A-Za-z]",
        pattern = "^[0-9A-Za-z]{10}$")),
    responses(
        (status = 200, content_type = "text/html", body = String,
            description = "Consent withdrawn; a page in Ukrainian says so"),
        (status = 404, body = ErrorBody, description = "No such opt-out link (`link_not_found`)"),
        (status = 503, body = ErrorBody),
    ),
    security(())
)]
pub async fn opt_out(
    State(state): State<AppState>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = ShortCode::parse(&code).ok_or_else(crate::links::no_link)?;
    let target = state
        .consents
        .opt_out(&code)
        .await?
        .ok_or_else(crate::links::no_link)?;
    Ok(page(StatusCode::OK, &done(&target)))
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"uk\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Відписка від розсилки</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;\
         line-height:1.5;color:#1a1a1a}}button{{font-size:1.1rem;padding:.8rem 1.4rem;\
         border:0;border-radius:.4rem;background:#0b5cad;color:#fff;cursor:pointer}}\
         button:focus{{outline:3px solid #f5a623;outline-offset:2px}}</style></head>\
         <body><main>{body}</main></body></html>"
    );
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                ),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        html,
    )
        .into_response()
}

/// HTML-escapes `s` (a sender's name is letters, digits and `+`, but never trusted).
fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The page a link opens: one button (a link preview fetching the page changes nothing).
fn ask(code: &ShortCode, target: &OptOutTarget) -> String {
    let sender = escape(target.sender.as_str());
    let already = if target.state == ConsentState::Withdrawn {
        "<p>Ви вже відписалися від цієї розсилки.</p>"
    } else {
        ""
    };
    format!(
        "<h1>Відписатися від рекламних SMS</h1>\
         <p>Ви більше не отримуватимете рекламних повідомлень від <strong>{sender}</strong>. \
         Службові повідомлення (коди, сповіщення) надходитимуть і далі. Це безкоштовно.</p>\
         {already}\
         <form method=\"post\" action=\"/{code}\"><button type=\"submit\">Відписатися</button></form>"
    )
}

/// The page after opting out.
fn done(target: &OptOutTarget) -> String {
    let sender = escape(target.sender.as_str());
    format!(
        "<h1>Готово</h1><p role=\"status\">Ви відписалися від рекламних SMS від \
         <strong>{sender}</strong>. Нових рекламних повідомлень від цього відправника не буде.</p>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
