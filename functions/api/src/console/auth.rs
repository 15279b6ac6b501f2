//! Signing in and out, and taking up an invitation.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::header::HeaderMap;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use holub_shared::domain::Email;
use holub_shared::services::users::{SignedIn, UserError};
use maud::html;
use serde::Deserialize;

use super::view::{self, Lang};
use super::{
    Answer, Failure, SESSION_COOKIE, SIGN_IN_COOKIE, Signed, cookie, secure_attr, set_cookie,
};
use crate::AppState;
use crate::error::ApiError;

/// How long a session cookie lives (the store's session lasts as long).
const SESSION_SECONDS: u64 = 12 * 3600;

/// A fresh random token, URL-safe.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What a user-management refusal is, as the API would answer it.
pub fn refused(e: UserError) -> Failure {
    let status = match &e {
        UserError::WeakPassword => StatusCode::UNPROCESSABLE_ENTITY,
        UserError::EmailTaken | UserError::LastOwner => StatusCode::CONFLICT,
        UserError::NotFound | UserError::TenantNotFound => StatusCode::NOT_FOUND,
        UserError::InviteInvalid => StatusCode::BAD_REQUEST,
        UserError::BadCredentials => StatusCode::UNAUTHORIZED,
        UserError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        UserError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    Failure::Api(ApiError::new(status, e.code(), e.to_string()))
}

/// A form page that has no session yet: its token is double-submitted (cookie and field).
fn pre_session_token(headers: &HeaderMap) -> String {
    cookie(headers, SIGN_IN_COOKIE)
        .filter(|t| t.len() == 43)
        .map(str::to_owned)
        .unwrap_or_else(random_token)
}

fn with_pre_session_cookie(mut response: Response, token: &str, headers: &HeaderMap) -> Response {
    set_cookie(
        &mut response,
        &format!(
            "{SIGN_IN_COOKIE}={token}; Path=/console; Max-Age=3600; HttpOnly; SameSite=Strict{}",
            secure_attr(headers)
        ),
    );
    response
}

fn check_pre_session(headers: &HeaderMap, presented: &str) -> Result<(), Failure> {
    match cookie(headers, SIGN_IN_COOKIE) {
        Some(expected) if !presented.is_empty() && expected == presented => Ok(()),
        _ => Err(Failure::Csrf),
    }
}

/// Signed in: the session cookie set, the sign-in cookie dropped, on to `to`.
pub(super) fn start_session(signed_in: &SignedIn, headers: &HeaderMap, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    let secure = secure_attr(headers);
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict{secure}",
            signed_in.token
        ),
    );
    set_cookie(
        &mut response,
        &format!("{SIGN_IN_COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict{secure}"),
    );
    response
}

fn sign_in_page(lang: Lang, token: &str, email: &str, alert: Option<&str>) -> Response {
    let title = lang.t("Вхід", "Sign in");
    view::bare(
        lang,
        title,
        html! {
            h1 { (title) }
            @if let Some(alert) = alert {
                p role="alert" { (alert) }
            }
            form id="sign-in" method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(token);
                label for="email" { (lang.t("Електронна пошта", "Email")) }
                input type="email" id="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { (lang.t("Пароль", "Password")) }
                input type="password" id="password" name="password" autocomplete="current-password" required;
                p { button type="submit" { (lang.t("Увійти", "Sign in")) } }
            }
        },
    )
}

pub async fn page(lang: Lang, headers: HeaderMap, signed: Option<Signed>) -> Response {
    if signed.is_some() {
        return Redirect::to("/console/compose").into_response();
    }
    let token = pre_session_token(&headers);
    with_pre_session_cookie(sign_in_page(lang, &token, "", None), &token, &headers)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn sign_in(
    State(state): State<AppState>,
    lang: Lang,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Answer {
    let Form(form) = form?;
    check_pre_session(&headers, &form.csrf)?;
    match state.users.sign_in(&form.email, &form.password).await {
        Ok(signed_in) => Ok(start_session(&signed_in, &headers, "/console/compose")),
        Err(UserError::BadCredentials) => {
            let alert = lang.t("Невірна пошта або пароль.", "Wrong email or password.");
            let mut response = sign_in_page(lang, &form.csrf, &form.email, Some(alert));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(response)
        }
        Err(UserError::Throttled { retry_after }) => {
            let minutes = retry_after.as_secs().div_ceil(60).max(1);
            let alert = match lang {
                Lang::Uk => format!("Забагато невдалих спроб. Спробуйте знову за {minutes} хв."),
                Lang::En => format!("Too many failed attempts. Try again in {minutes} min."),
            };
            let mut response = sign_in_page(lang, &form.csrf, &form.email, Some(&alert));
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(response)
        }
        Err(e) => Err(refused(e)),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

pub async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    let Form(form) = form?;
    signed.check_csrf(&form.csrf)?;
    state
        .users
        .sign_out(&signed.token)
        .await
        .map_err(|e| Failure::Api(e.into()))?;
    let mut response = Redirect::to("/console/sign-in").into_response();
    set_cookie(
        &mut response,
        &format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            secure_attr(&headers)
        ),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct InvitationQuery {
    #[serde(default)]
    email: String,
    #[serde(default)]
    token: String,
}

fn invitation_page(
    lang: Lang,
    csrf: &str,
    email: &str,
    token: &str,
    alert: Option<&str>,
) -> Response {
    let title = lang.t("Запрошення", "Invitation");
    view::bare(
        lang,
        title,
        html! {
            h1 { (title) }
            p { (lang.t("Оберіть пароль для ", "Choose a password for ")) strong { (email) } "." }
            @if let Some(alert) = alert {
                p role="alert" { (alert) }
            }
            form id="invitation" method="post" action="/console/invitation" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="email" value=(email);
                input type="hidden" name="token" value=(token);
                label for="password" { (lang.t("Пароль (щонайменше 10 символів)", "Password (at least 10 characters)")) }
                input type="password" id="password" name="password" autocomplete="new-password" minlength="10" maxlength="128" required;
                p { button type="submit" { (lang.t("Прийняти запрошення", "Accept the invitation")) } }
            }
        },
    )
}

pub async fn invitation(
    lang: Lang,
    headers: HeaderMap,
    query: Result<Query<InvitationQuery>, axum::extract::rejection::QueryRejection>,
) -> Answer {
    let Query(q) = query.map_err(|e| Failure::BadForm(e.body_text()))?;
    let token = pre_session_token(&headers);
    let page = invitation_page(lang, &token, &q.email, &q.token, None);
    Ok(with_pre_session_cookie(page, &token, &headers))
}

#[derive(Deserialize)]
pub struct AcceptForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

pub async fn accept(
    State(state): State<AppState>,
    lang: Lang,
    headers: HeaderMap,
    form: Result<Form<AcceptForm>, FormRejection>,
) -> Answer {
    let Form(form) = form?;
    check_pre_session(&headers, &form.csrf)?;
    let alert = |e: &UserError| {
        let mut response = invitation_page(
            lang,
            &form.csrf,
            &form.email,
            &form.token,
            Some(&e.to_string()),
        );
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        response
    };
    let Ok(email) = Email::parse(&form.email) else {
        return Ok(alert(&UserError::InviteInvalid));
    };
    match state
        .users
        .accept_invite(&email, &form.token, &form.password)
        .await
    {
        Ok(signed_in) => Ok(start_session(&signed_in, &headers, "/console/compose")),
        Err(e @ (UserError::WeakPassword | UserError::InviteInvalid)) => Ok(alert(&e)),
        Err(e) => Err(refused(e)),
    }
}

csrf_form!(CsrfOnly);
