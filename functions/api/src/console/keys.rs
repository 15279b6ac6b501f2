//! API keys: the tenant's keys with their scopes and last use; a new one (shown once);
//! revoking one. Owners only: keys act for the whole account.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use holub_shared::domain::{KeyId, KeyName, Scope, Scopes};
use maud::html;
use serde::Deserialize;

use super::auth::CsrfOnly;
use super::view::{csrf, kyiv_time, shown_once};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

pub async fn page(State(state): State<AppState>, signed: Signed) -> Answer {
    signed.may(Scope::Admin)?;
    let lang = signed.lang;
    let keys = state
        .accounts
        .list_keys(&signed.session.tenant)
        .await
        .map_err(ApiError::from)?;
    let title = lang.t("API-ключі", "API keys");
    let body = html! {
        div class="table-wrap" {
            table id="keys" {
                thead { tr {
                    th scope="col" { (lang.t("Назва", "Name")) }
                    th scope="col" { (lang.t("Права", "Scopes")) }
                    th scope="col" class="opt" { (lang.t("Створено", "Created")) }
                    th scope="col" class="opt" { (lang.t("Останнє використання", "Last used")) }
                    th scope="col" { (lang.t("Стан", "State")) }
                    th scope="col" { span class="skip" { (lang.t("Дії", "Actions")) } }
                } }
                tbody {
                    @for k in &keys {
                        tr {
                            td { (k.name.as_ref().map(KeyName::as_str).unwrap_or("—")) }
                            td { (k.scopes.iter().map(Scope::as_str).collect::<Vec<_>>().join(", ")) }
                            td class="opt" { (k.created_at.map(kyiv_time).unwrap_or_default()) }
                            td class="opt" { (k.last_used_at.map(kyiv_time).unwrap_or_else(|| "—".into())) }
                            td {
                                @if let Some(at) = k.revoked_at {
                                    (lang.t("відкликано", "revoked")) " " (kyiv_time(at))
                                } @else if let Some(at) = k.expires_at {
                                    (lang.t("діє до", "valid until")) " " (kyiv_time(at))
                                } @else {
                                    (lang.t("діє", "active"))
                                }
                            }
                            td {
                                @if let (Some(id), None) = (&k.id, k.revoked_at) {
                                    form method="post" class="inline" action={ "/console/keys/" (id.as_str()) "/revoke" } {
                                        (csrf(&signed))
                                        button type="submit" class="danger" { (lang.t("Відкликати", "Revoke")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("Новий ключ", "New key")) }
        form id="new-key" method="post" action="/console/keys" {
            (csrf(&signed))
            label for="key-name" { (lang.t("Назва", "Name")) }
            input type="text" id="key-name" name="name" maxlength="100" required;
            fieldset {
                legend { (lang.t("Права", "Scopes")) }
                @for scope in Scope::ALL {
                    label class="check" {
                        input type="checkbox" name="scope" value=(scope.as_str()) checked[scope != Scope::Admin];
                        code { (scope.as_str()) }
                    }
                }
            }
            p { button type="submit" { (lang.t("Створити", "Create")) } }
        }
    };
    Ok(render(&signed, "/console/keys", title, body))
}

#[derive(Deserialize)]
pub struct NewKey {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create(
    State(state): State<AppState>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Answer {
    // Scopes come as repeated `scope=` fields, which a struct cannot collect; read them here.
    let form: NewKey = serde_urlencoded_form(&body)?;
    signed.check_csrf(&form.csrf)?;
    signed.may(Scope::Admin)?;
    let lang = signed.lang;
    let scopes: Vec<Scope> = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "scope")
        .filter_map(|(_, v)| Scope::ALL.into_iter().find(|s| s.as_str() == v))
        .collect();
    let name = KeyName::parse(&form.name).map_err(|e| Failure::BadForm(e.to_string()))?;
    let scopes = Scopes::new(scopes).map_err(|e| Failure::BadForm(e.to_string()))?;
    let issued = state
        .accounts
        .create_key(&signed.session.tenant, name, scopes, None, &signed.origin())
        .await
        .map_err(ApiError::from)?;
    let title = lang.t("Ключ створено", "Key created");
    let body = shown_once(
        lang.t(
            "Скопіюйте ключ зараз: його показано лише один раз, Holub зберігає тільки його відбиток.",
            "Copy the key now: it is shown once; Holub keeps only its hash.",
        ),
        &issued.secret,
        html! {},
        ("/console/keys", lang.t("← До ключів", "← To the keys")),
    );
    Ok(render(&signed, "/console/keys", title, body))
}

/// A form's single fields as `T`; repeated fields (checkboxes) are read by the caller.
pub(super) fn serde_urlencoded_form<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, Failure> {
    let pairs: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    serde_json::from_value(serde_json::Value::Object(pairs))
        .map_err(|e| Failure::BadForm(e.to_string()))
}

pub async fn revoke(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    signed.posted(form, Scope::Admin)?;
    let id: KeyId = id.parse().map_err(|_| Failure::NotFound)?;
    state
        .accounts
        .revoke_key(&signed.session.tenant, &id, &signed.origin())
        .await
        .map_err(ApiError::from)?
        .ok_or(Failure::NotFound)?;
    Ok(Redirect::to("/console/keys").into_response())
}
