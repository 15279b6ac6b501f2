//! `GET /{code}`: a tracked link's short link. It answers the redirect at once (the click is
//! counted first, in one write) and needs no key: whoever got the message follows it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use holub_shared::domain::ShortCode;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

pub(crate) fn no_link() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "link_not_found", "no such link")
}

/// Follow a short link: `302` to the URL it stands for. Clicks by people and by
/// link-preview fetchers (told apart by `User-Agent`) are counted apart. A marketing
/// message's opt-out link answers a page in Ukrainian with one button that opts out (`POST`
/// to the same path); opening it changes nothing.
#[utoipa::path(
    get, path = "/{code}",
    params(("code" = String, Path, description = "A short link's code: 10 of [0-9A-Za-z]",
        pattern = "^[0-9A-Za-z]{10}$")),
    responses(
        (status = 302, description = "To the link's URL",
            headers(("Location" = String, description = "The URL"))),
        (status = 200, content_type = "text/html", body = String,
            description = "An opt-out link: the page that asks"),
        (status = 404, body = ErrorBody, description = "No such link (`link_not_found`)"),
        (status = 503, body = ErrorBody),
    ),
    security(())
)]
pub async fn follow(
    State(state): State<AppState>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = ShortCode::parse(&code).ok_or_else(no_link)?;
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|a| a.to_str().ok());
    let Some(url) = state.messages.follow(&code, agent).await? else {
        return crate::consent::opt_out_page(&state, &code)
            .await?
            .ok_or_else(no_link);
    };
    // Non-ASCII hosts and paths as a `Location` may carry them: punycode, percent-encoding.
    let location = url::Url::parse(&url)
        .ok()
        .and_then(|u| HeaderValue::from_str(u.as_str()).ok())
        .ok_or_else(no_link)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response())
}
