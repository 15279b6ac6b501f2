//! Users: the account's console users and their roles; inviting one (the link shown once),
//! a new link for one who has not accepted yet, changing a role, removing a user. Owners
//! only.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use holub_shared::domain::{Email, Role, Scope, UserId};
use maud::html;
use serde::Deserialize;

use super::auth::{CsrfOnly, refused};
use super::view::{csrf, kyiv_time, role_name};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

pub async fn page(State(state): State<AppState>, signed: Signed) -> Answer {
    signed.may(Scope::Admin)?;
    let lang = signed.lang;
    let users = state
        .users
        .list(&signed.session.tenant)
        .await
        .map_err(ApiError::from)?;
    let title = lang.t("Користувачі", "Users");
    let body = html! {
        div class="table-wrap" {
            table id="users" {
                thead { tr {
                    th scope="col" { (lang.t("Пошта", "Email")) }
                    th scope="col" { (lang.t("Роль", "Role")) }
                    th scope="col" class="opt" { (lang.t("Додано", "Added")) }
                    th scope="col" { span class="skip" { (lang.t("Дії", "Actions")) } }
                } }
                tbody {
                    @for u in &users {
                        tr {
                            td {
                                (u.email.as_str())
                                @if u.pending { " (" (lang.t("запрошено", "invited")) ")" }
                            }
                            td {
                                form method="post" class="inline" action={ "/console/users/" (u.id.to_string()) "/role" } {
                                    (csrf(&signed))
                                    label class="skip" for={ "role-" (u.id.to_string()) } { (lang.t("Роль", "Role")) }
                                    select id={ "role-" (u.id.to_string()) } name="role" {
                                        @for r in Role::ALL {
                                            option value=(r.as_str()) selected[r == u.role] { (role_name(lang, r)) }
                                        }
                                    }
                                    " "
                                    button type="submit" class="secondary" { (lang.t("Змінити", "Change")) }
                                }
                            }
                            td class="opt" { (kyiv_time(u.created_at)) }
                            td {
                                @if u.pending {
                                    form method="post" class="inline" action={ "/console/users/" (u.id.to_string()) "/invitation" } {
                                        (csrf(&signed))
                                        button type="submit" class="secondary" { (lang.t("Нове посилання", "New invitation link")) }
                                    }
                                    " "
                                }
                                @if u.id != signed.session.user {
                                    form method="post" class="inline" action={ "/console/users/" (u.id.to_string()) "/remove" } {
                                        (csrf(&signed))
                                        button type="submit" class="danger" { (lang.t("Видалити", "Remove")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("Запросити", "Invite")) }
        form id="invite" method="post" action="/console/users" {
            (csrf(&signed))
            label for="invite-email" { (lang.t("Пошта", "Email")) }
            input type="email" id="invite-email" name="email" required;
            label for="invite-role" { (lang.t("Роль", "Role")) }
            select id="invite-role" name="role" {
                @for r in Role::ALL {
                    option value=(r.as_str()) selected[r == Role::Sender] { (role_name(lang, r)) }
                }
            }
            p { button type="submit" { (lang.t("Створити запрошення", "Create the invitation")) } }
        }
    };
    Ok(render(&signed, "/console/users", title, body))
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

fn role(raw: &str) -> Result<Role, Failure> {
    Role::parse(raw).ok_or_else(|| Failure::BadForm("role: owner, sender or viewer".into()))
}

pub async fn invite(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    form: Result<Form<InviteForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::Admin)?;
    let email = Email::parse(&form.email).map_err(|e| Failure::BadForm(e.to_string()))?;
    let (user, token) = state
        .users
        .invite(
            &signed.session.tenant,
            email,
            role(&form.role)?,
            &signed.origin(),
        )
        .await
        .map_err(refused)?;
    let title = signed.lang.t("Запрошення створено", "Invitation created");
    Ok(link_page(&signed, &headers, title, &user.email, &token))
}

/// A new invitation link for a user who has not accepted yet; the one before stops working.
pub async fn reinvite(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    signed.posted(form, Scope::Admin)?;
    let (user, token) = state
        .users
        .reinvite(&signed.session.tenant, &user_id(&id)?, &signed.origin())
        .await
        .map_err(refused)?;
    let title = signed.lang.t("Нове запрошення", "New invitation");
    Ok(link_page(&signed, &headers, title, &user.email, &token))
}

/// The page that shows an invitation's link, the only time it is shown.
fn link_page(
    signed: &Signed,
    headers: &HeaderMap,
    title: &str,
    email: &Email,
    token: &str,
) -> Response {
    let lang = signed.lang;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    // As the page was asked for: plain HTTP only where the session cookie is not Secure.
    let scheme = if super::secure_attr(headers).is_empty() {
        "http"
    } else {
        "https"
    };
    let link = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("email", email.as_str())
        .append_pair("token", token)
        .finish();
    let body = html! {
        p role="alert" {
            (lang.t(
                "Надішліть це посилання запрошеному (діє 7 днів). Його показано лише один раз.",
                "Send this link to the person invited (valid 7 days). It is shown once.",
            ))
        }
        p class="secret" id="invitation-link" { (scheme) "://" (host) "/console/invitation?" (link) }
        p { a href="/console/users" { (lang.t("← До користувачів", "← To the users")) } }
    };
    render(signed, "/console/users", title, body)
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    role: String,
}

fn user_id(raw: &str) -> Result<UserId, Failure> {
    raw.parse().map_err(|_| Failure::NotFound)
}

pub async fn set_role(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<RoleForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::Admin)?;
    state
        .users
        .set_role(
            &signed.session.tenant,
            &user_id(&id)?,
            role(&form.role)?,
            &signed.origin(),
        )
        .await
        .map_err(refused)?;
    Ok(Redirect::to("/console/users").into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    signed.posted(form, Scope::Admin)?;
    state
        .users
        .remove(&signed.session.tenant, &user_id(&id)?, &signed.origin())
        .await
        .map_err(refused)?;
    Ok(Redirect::to("/console/users").into_response())
}

csrf_form!(InviteForm, RoleForm);
