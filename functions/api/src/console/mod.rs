//! The web console: pages rendered on the server, for people who are not developers (the
//! office manager of a shop), in the same Router as the API, so `holub serve` and the API
//! Lambda both serve it with nothing more to deploy.
//!
//! - **Pages** are HTML written with maud (escaped by default), with one stylesheet and one
//!   script of our own, both inside the binary (`assets/`). Without JavaScript every form
//!   still works; the script adds live counters, the check of pasted numbers as you type,
//!   reading a CSV's columns, and lists that refresh themselves.
//! - **Sessions**: the `holub_session` cookie (HttpOnly, SameSite=Strict, Secure unless the
//!   page is served to a loopback address over plain HTTP) holds a random token; the store
//!   holds only its hash ([`holub_shared::services::Users`]). Every page but sign-in needs
//!   one; without it, a page answers with a redirect to sign-in.
//! - **CSRF**: every form carries the session's CSRF token (derived from the session token,
//!   which a script of another site can neither read nor send), compared in constant time;
//!   a POST without it is a 403. The sign-in form, which has no session yet, uses a
//!   double-submitted cookie. The cookies are SameSite=Strict besides.
//! - **Roles** map onto the API's scopes ([`Role::allows`]): a console user can do through
//!   the console what a key with those scopes can do through the API, through the same
//!   services and checks.
//! - **Language**: Ukrainian first, English by a switch (the `holub_lang` cookie); times in
//!   Europe/Kyiv; money in hryvnias.

/// Makes a form struct with a `csrf` field a [`CsrfForm`] (textual scope: defined before
/// the modules that use it).
macro_rules! csrf_form {
    ($($form:ty),+ $(,)?) => {
        $(impl super::CsrfForm for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}

mod analytics;
mod assets;
mod auth;
mod campaigns;
mod compose;
mod contacts;
mod keys;
mod messages;
mod settings;
mod templates;
mod users;
mod view;

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, FromRef, FromRequestParts, Path};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use holub_shared::domain::{Actor, Origin, Role, Scope};
use holub_shared::services::users::Session;
use maud::{Markup, html};

use crate::error::ApiError;
use crate::{AppState, BATCH_BODY_LIMIT};

pub use view::Lang;

/// The cookie that holds the session token.
pub const SESSION_COOKIE: &str = "holub_session";
/// The cookie that holds the sign-in form's double-submitted token.
const SIGN_IN_COOKIE: &str = "holub_sign_in";
/// The cookie that holds the language.
const LANG_COOKIE: &str = "holub_lang";

/// The console's routes (merged into the API's Router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/assets/{name}", get(assets::serve))
        .route("/console/lang/{lang}", get(set_lang))
        .route("/console/sign-in", get(auth::page).post(auth::sign_in))
        .route("/console/sign-out", post(auth::sign_out))
        .route(
            "/console/invitation",
            get(auth::invitation).post(auth::accept),
        )
        .route("/console/compose", get(compose::form))
        .route("/console/compose/estimate", post(compose::estimate))
        .route("/console/compose/recipients", post(compose::recipients))
        .route("/console/compose/review", post(compose::review))
        .route("/console/compose/send", post(compose::send))
        .route("/console/messages", get(messages::list))
        .route("/console/messages/rows", get(messages::rows))
        .route("/console/messages/{id}", get(messages::show))
        .route("/console/messages/{id}/part", get(messages::part))
        .route("/console/messages/{id}/cancel", post(messages::cancel))
        .route(
            "/console/campaigns",
            get(campaigns::list).post(campaigns::create),
        )
        .route("/console/campaigns/{id}/{action}", post(campaigns::act))
        .route("/console/analytics", get(analytics::page))
        .route("/console/analytics/export.csv", get(analytics::export))
        .route("/console/contacts", get(contacts::page))
        .route("/console/contacts/import", post(contacts::import))
        .route(
            "/console/templates",
            get(templates::page).post(templates::create),
        )
        .route(
            "/console/consent",
            get(templates::consent).post(templates::record),
        )
        .route("/console/keys", get(keys::page).post(keys::create))
        .route("/console/keys/{id}/revoke", post(keys::revoke))
        .route("/console/settings", get(settings::page))
        .route("/console/settings/window", post(settings::window))
        .route("/console/settings/password", post(settings::password))
        .route("/console/settings/callback", post(settings::callback))
        .route("/console/settings/senders", post(settings::request_sender))
        .route(
            "/console/settings/rotate-secret",
            post(settings::rotate_secret),
        )
        .route("/console/users", get(users::page).post(users::invite))
        .route("/console/users/{id}/role", post(users::set_role))
        .route("/console/users/{id}/invitation", post(users::reinvite))
        .route("/console/users/{id}/remove", post(users::remove))
        .route("/console/{*rest}", get(not_found_page))
        .layer(DefaultBodyLimit::max(BATCH_BODY_LIMIT))
        .layer(axum::middleware::from_fn(view::headers_and_lang))
}

async fn home(session: Option<Signed>) -> Redirect {
    match session {
        Some(_) => Redirect::to("/console/compose"),
        None => Redirect::to("/console/sign-in"),
    }
}

async fn not_found_page(lang: Lang) -> Response {
    Failure::NotFound.page(lang)
}

/// Sets the language and goes back to the page it was chosen on (a console path only).
async fn set_lang(
    Path(lang): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Failure> {
    let lang = Lang::parse(&lang).ok_or(Failure::NotFound)?;
    let back = uri
        .query()
        .and_then(|q| q.strip_prefix("back="))
        .map(percent_decode)
        .filter(|b| b.starts_with("/console/") && !b.starts_with("//") && !b.contains('\\'))
        .unwrap_or_else(|| "/console/".to_owned());
    let mut response = Redirect::to(&back).into_response();
    let cookie = format!(
        "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax{}",
        lang.as_str(),
        secure_attr(&headers)
    );
    set_cookie(&mut response, &cookie);
    Ok(response)
}

/// `%XX` escapes undone (the language switch's `back`); anything malformed is kept as is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        if bytes[i] == b'%'
            && let Some(v) = hex
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of one cookie of the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `; Secure`, unless the page is served over plain HTTP to a loopback name (`holub serve`
/// on a laptop), where a browser would drop a Secure cookie that did not come over TLS on
/// any other name.
fn secure_attr(headers: &HeaderMap) -> &'static str {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]") || name.starts_with("127.");
    if loopback && !forwarded_https {
        ""
    } else {
        "; Secure"
    }
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A form that carries the CSRF token of the page it came from.
pub trait CsrfForm {
    fn csrf(&self) -> &str;
}

/// A signed-in console user: the session behind the request's cookie.
pub struct Signed {
    pub session: Session,
    pub lang: Lang,
    /// The session token, for sign-out.
    token: String,
}

impl Signed {
    /// The request's CSRF token must be the session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Failure> {
        use sha2::{Digest, Sha256};
        // Compared as digests, so the time taken says nothing about the token.
        let a = Sha256::digest(presented.as_bytes());
        let b = Sha256::digest(self.session.csrf.as_bytes());
        if presented.is_empty() || a != b {
            return Err(Failure::Csrf);
        }
        Ok(())
    }

    /// A form this user posted: read, its CSRF token checked, and `scope` allowed.
    pub fn posted<T: CsrfForm>(
        &self,
        form: Result<Form<T>, FormRejection>,
        scope: Scope,
    ) -> Result<T, Failure> {
        let Form(form) = form?;
        self.check_csrf(form.csrf())?;
        self.may(scope)?;
        Ok(form)
    }

    /// What the user's role allows, as the API's scopes.
    pub fn may(&self, scope: Scope) -> Result<(), Failure> {
        if self.session.role.allows(scope) {
            Ok(())
        } else {
            Err(Failure::Forbidden)
        }
    }

    pub fn role(&self) -> Role {
        self.session.role
    }

    /// Who acts, for the audit log.
    pub fn origin(&self) -> Origin {
        Origin {
            actor: Actor::Console {
                user_id: self.session.user.to_string(),
            },
            source: None,
        }
    }
}

impl<S> FromRequestParts<S> for Signed
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let lang = Lang::of(&parts.headers);
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or(Failure::SignIn)?
            .to_owned();
        let session = state
            .users
            .session(&token)
            .await
            .map_err(|e| Failure::Api(ApiError::from(e)))?
            .ok_or(Failure::SignIn)?;
        Ok(Signed {
            session,
            lang,
            token,
        })
    }
}

impl<S> axum::extract::OptionalFromRequestParts<S> for Signed
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Signed as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(signed) => Ok(Some(signed)),
            Err(Failure::SignIn) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::of(&parts.headers))
    }
}

/// Why a console request was not answered with its page.
#[derive(Debug)]
pub enum Failure {
    /// No session: to sign-in.
    SignIn,
    /// The form's CSRF token is missing or wrong.
    Csrf,
    /// The user's role does not allow it.
    Forbidden,
    NotFound,
    /// A form that could not be read.
    BadForm(String),
    /// What a service refused, or a store that failed, as the API would answer it.
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<FormRejection> for Failure {
    fn from(e: FormRejection) -> Self {
        Failure::BadForm(e.body_text())
    }
}

impl Failure {
    fn page(self, lang: Lang) -> Response {
        let (status, title, detail): (StatusCode, &str, String) = match self {
            Failure::SignIn => return Redirect::to("/console/sign-in").into_response(),
            Failure::Csrf => (
                StatusCode::FORBIDDEN,
                lang.t("Форму відхилено", "Form refused"),
                lang.t(
                    "Форма застаріла або прийшла не з цієї сторінки. Відкрийте сторінку знову й повторіть.",
                    "The form is stale or did not come from this page. Open the page again and retry.",
                )
                .to_owned(),
            ),
            Failure::Forbidden => (
                StatusCode::FORBIDDEN,
                lang.t("Недостатньо прав", "Not allowed"),
                lang.t(
                    "Ваша роль не дозволяє цю дію. Зверніться до власника акаунта.",
                    "Your role does not allow this. Ask the account's owner.",
                )
                .to_owned(),
            ),
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                lang.t("Не знайдено", "Not found"),
                lang.t("Такої сторінки немає.", "There is no such page.")
                    .to_owned(),
            ),
            Failure::BadForm(why) => (
                StatusCode::BAD_REQUEST,
                lang.t("Форму не прочитано", "The form could not be read"),
                why,
            ),
            Failure::Api(e) => {
                let status = e.status();
                let title = if status == StatusCode::NOT_FOUND {
                    lang.t("Не знайдено", "Not found")
                } else if status.is_server_error() {
                    lang.t("Сервіс тимчасово недоступний", "Service unavailable")
                } else {
                    lang.t("Не вдалося", "Could not do that")
                };
                (status, title, format!("{} ({})", e.message(), e.code()))
            }
        };
        let body = html! {
            h1 { (title) }
            p role="alert" { (detail) }
            p { a href="/console/" { (lang.t("На головну", "Home")) } }
        };
        let mut response = view::bare(lang, title, body);
        *response.status_mut() = status;
        response
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        self.page(view::current_lang())
    }
}

/// A handler's answer: a page, or a failure shown in the user's language.
pub type Answer = Result<Response, Failure>;

/// Shortcut for a page inside the layout.
pub fn render(signed: &Signed, active: &str, title: &str, body: Markup) -> Response {
    view::layout(signed, active, title, body)
}

pub use view::{hryvnias, kyiv_time};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_is_left_off_only_for_loopback_over_plain_http() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(secure_attr(&h), "");
        h.insert(header::HOST, HeaderValue::from_static("localhost"));
        assert_eq!(secure_attr(&h), "");
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(secure_attr(&h), "; Secure");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("sms.example.ua"));
        assert_eq!(secure_attr(&h), "; Secure");
        assert_eq!(secure_attr(&HeaderMap::new()), "; Secure");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; holub_session=tok; holub_lang=en"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "holub_lang"), Some("en"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn back_paths_are_decoded() {
        assert_eq!(percent_decode("%2Fconsole%2Fmessages"), "/console/messages");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
