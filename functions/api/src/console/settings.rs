//! Settings: the account's senders and their registration per network, its limits (rate,
//! spend caps and what is spent, price, the marketing window), as the operator set them.
//! Changing them stays with the operator (`holub tenant …`), as through the API, but for
//! the window marketing messages go out in, which is the account's own choice.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use holub_shared::domain::{Network, Registration, Scope};
use holub_shared::services::limits::SetLimitsError;
use maud::html;
use serde::Deserialize;

use super::view::{csrf, hryvnias, kyiv_time};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    #[serde(default)]
    changed: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Answer {
    signed.may(Scope::MessagesRead)?;
    let changed = query.is_ok_and(|Query(q)| q.changed.is_some());
    let lang = signed.lang;
    let tenant = &signed.session.tenant;
    let senders = state.senders.list(tenant).await.map_err(ApiError::from)?;
    let limits = state.limits.view(tenant).await.map_err(ApiError::from)?;
    let l = &limits.limits;
    let registration = |r: Option<&Registration>| match r {
        Some(Registration::Active) => lang.t("діє", "active"),
        Some(Registration::Pending) => lang.t("на розгляді", "pending"),
        Some(Registration::Rejected) => lang.t("відмовлено", "rejected"),
        None => "—",
    };
    let title = lang.t("Налаштування", "Settings");
    let body = html! {
        h2 { (lang.t("Відправники", "Senders")) }
        div class="table-wrap" {
            table id="senders" {
                thead { tr {
                    th scope="col" { (lang.t("Ім'я відправника", "Sender name")) }
                    @for n in Network::ALL { th scope="col" { (n.as_str()) } }
                    th scope="col" class="opt" { (lang.t("Змінено", "Changed")) }
                } }
                tbody {
                    @if senders.is_empty() {
                        tr { td colspan="6" { (lang.t("Відправників ще немає.", "No senders yet.")) } }
                    }
                    @for s in &senders {
                        tr {
                            th scope="row" { (s.sender.as_str()) }
                            @for n in Network::ALL { td { (registration(s.networks.get(&n))) } }
                            td class="opt" { (kyiv_time(s.updated_at)) }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("Ліміти", "Limits")) }
        dl class="facts" id="limits" {
            dt { (lang.t("Повідомлень за секунду", "Messages a second")) } dd { (l.rate_per_second) }
            dt { (lang.t("Ціна частини SMS", "Price of an SMS part")) } dd { (hryvnias(lang, l.segment_price_kopiyky)) }
            dt { (lang.t("Витрачено сьогодні / ліміт дня", "Spent today / daily cap")) }
            dd { (hryvnias(lang, limits.spent_today_kopiyky)) " / " (hryvnias(lang, l.daily_spend_kopiyky)) }
            dt { (lang.t("Витрачено цього місяця / ліміт місяця", "Spent this month / monthly cap")) }
            dd { (hryvnias(lang, limits.spent_this_month_kopiyky)) " / " (hryvnias(lang, l.monthly_spend_kopiyky)) }
            dt { (lang.t("На один номер за годину", "To one number an hour")) } dd { (l.per_number_per_hour) }
            dt { (lang.t("Вікно для рекламних (київський час)", "Marketing window (Kyiv time)")) } dd { (l.marketing_window.to_string()) }
        }
        @if signed.may(Scope::Admin).is_ok() {
            h2 { (lang.t("Тихі години", "Quiet hours")) }
            form id="window" method="post" action="/console/settings/window" {
                (csrf(&signed))
                label for="marketing_window" {
                    (lang.t("Рекламні SMS надсилаються лише в цьому вікні (київський час, ГГ:ХХ-ГГ:ХХ)", "Marketing SMS go out only inside this window (Kyiv time, HH:MM-HH:MM)"))
                }
                input type="text" id="marketing_window" name="marketing_window"
                    value=(l.marketing_window.to_string()) pattern="[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]" required;
                p class="hint" { (lang.t("Сервісні повідомлення не чекають ніколи.", "Transactional messages never wait.")) }
                p { button type="submit" { (lang.t("Зберегти", "Save")) } }
            }
        }
        h2 { (lang.t("Ваш пароль", "Your password")) }
        @if changed {
            p class="notice" role="status" { (lang.t("Пароль змінено; інші сесії завершено.", "Password changed; other sessions ended.")) }
        }
        form id="password" method="post" action="/console/settings/password" {
            (csrf(&signed))
            label for="current-password" { (lang.t("Поточний пароль", "Current password")) }
            input type="password" id="current-password" name="current" autocomplete="current-password" required;
            label for="new-password" { (lang.t("Новий пароль (10–128 символів)", "New password (10 to 128 characters)")) }
            input type="password" id="new-password" name="new" autocomplete="new-password" required;
            p { button type="submit" { (lang.t("Змінити пароль", "Change the password")) } }
        }
        p class="hint" {
            (lang.t(
                "Відправників і ліміти змінює оператор Holub. Адреса для сповіщень про статуси задається в кожному повідомленні API (callback_url).",
                "The Holub operator changes senders and limits. The status callback address is set per message in the API (callback_url).",
            ))
        }
    };
    Ok(render(&signed, "/console/settings", title, body))
}

#[derive(Deserialize)]
pub struct WindowForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    marketing_window: String,
}

/// The marketing window (quiet hours outside it), set by an owner.
pub async fn window(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<WindowForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::Admin)?;
    let change = [(
        "marketing_window".to_owned(),
        form.marketing_window.trim().to_owned(),
    )];
    match state
        .limits
        .set(&signed.session.tenant, &change, &signed.origin())
        .await
    {
        Ok(_) => Ok(Redirect::to("/console/settings").into_response()),
        Err(SetLimitsError::Invalid(e)) => Err(Failure::Api(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "marketing_window_invalid",
            e.to_string(),
        ))),
        Err(SetLimitsError::Store(e)) => Err(Failure::Api(e.into())),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

/// The signed-in user's own password: every other session of theirs ends, and this browser
/// gets a new one.
pub async fn password(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::MessagesRead)?;
    let signed_in = state
        .users
        .change_password_and_sign_in(
            &signed.session.tenant,
            &signed.session.user,
            &form.current,
            &form.new,
        )
        .await
        .map_err(super::auth::refused)?;
    Ok(super::auth::start_session(
        &signed_in,
        &headers,
        "/console/settings?changed=1",
    ))
}

csrf_form!(WindowForm, PasswordForm);
