//! Settings: the account's senders and their registration per network, its limits (rate,
//! spend caps and what is spent, price, the marketing window), as the operator set them.
//! Changing them stays with the operator (`holub tenant …`), as through the API, but for
//! the account's own choices, which owners make here: the window marketing messages go out
//! in, the account's status callback, and rotating the webhook signing secret.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use std::time::Duration;

use holub_shared::domain::{MessageStatus, Network, Registration, Scope, SenderId};
use holub_shared::services::limits::SetLimitsError;
use maud::html;
use serde::Deserialize;

use super::view::{csrf, hryvnias, kyiv_time, shown_once};
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
    let owner = signed.may(Scope::Admin).is_ok();
    let senders = state.senders.list(tenant).await.map_err(ApiError::from)?;
    let limits = state.limits.view(tenant).await.map_err(ApiError::from)?;
    let l = &limits.limits;
    let grace = if owner {
        state
            .accounts
            .webhook_secret_grace(tenant)
            .await
            .map_err(ApiError::from)?
    } else {
        None
    };
    let callback = l.status_callback.as_ref();
    let told = callback.map_or(holub_shared::domain::StatusSet::ALL, |c| c.status_set());
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
        @if owner {
            form id="new-sender" method="post" action="/console/settings/senders" class="filters" {
                (csrf(&signed))
                label for="sender-name" {
                    (lang.t("Нове ім'я відправника (3–11 латинських літер і цифр, або номер)", "A new sender name (3 to 11 Latin letters and digits, or a number)"))
                    input type="text" id="sender-name" name="sender" required maxlength="13"
                        pattern="[A-Za-z][A-Za-z0-9]{2,10}|[+]?[0-9]{10,12}";
                }
                button type="submit" { (lang.t("Подати на реєстрацію", "Ask for registration")) }
            }
            p class="hint" {
                (lang.t(
                    "Нове ім'я чекає на розгляд у кожній мережі; повідомлення від нього йдуть у мережу, щойно там воно діє.",
                    "A new name is pending on every network; messages from it go to a network once it is active there.",
                ))
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
        @if owner {
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
        @if owner {
            h2 { (lang.t("Сповіщення про статуси", "Status callbacks")) }
            form id="callback" method="post" action="/console/settings/callback" {
                (csrf(&signed))
                label for="callback_url" {
                    (lang.t("Адреса, куди Holub надсилає статуси повідомлень (порожня — нікуди)", "Where Holub posts message statuses (empty: nowhere)"))
                }
                input type="url" id="callback_url" name="callback_url" maxlength="2048"
                    placeholder="https://example.ua/holub" value=(callback.map_or("", |c| c.url.as_str()));
                fieldset {
                    legend { (lang.t("Про які статуси", "Which statuses")) }
                    @for status in MessageStatus::ALL.into_iter().filter(|s| *s != MessageStatus::Accepted) {
                        label class="check" {
                            input type="checkbox" name="status" value=(status.as_str()) checked[told.contains(status)];
                            " " (super::messages::status_name(lang, status))
                        }
                    }
                }
                p class="hint" {
                    (lang.t(
                        "Діє для повідомлень, прийнятих після збереження. Повідомлення зі своїм callback_url (API) сповіщають туди.",
                        "Applies to messages accepted after saving. A message with its own callback_url (API) is called back there.",
                    ))
                }
                p { button type="submit" { (lang.t("Зберегти", "Save")) } }
            }
            h2 { (lang.t("Ключ підпису вебхуків", "Webhook signing secret")) }
            p id="secret-state" {
                @match grace {
                    Some(until) => { (lang.t("Попередній ключ теж підписує сповіщення до ", "The previous secret also signs callbacks until ")) (kyiv_time(until)) "." }
                    None => { (lang.t("Сповіщення підписує один, поточний ключ.", "Callbacks are signed by the current secret alone.")) }
                }
            }
            form id="rotate" method="post" action="/console/settings/rotate-secret" {
                (csrf(&signed))
                label for="grace_hours" { (lang.t("Скільки старий ключ ще підписує", "How long the old secret still signs")) }
                select id="grace_hours" name="grace_hours" {
                    option value="0" { (lang.t("Ні хвилини (ключ витік)", "Not at all (it leaked)")) }
                    option value="1" { (lang.t("1 годину", "1 hour")) }
                    option value="24" selected { (lang.t("1 добу", "1 day")) }
                    option value="72" { (lang.t("3 доби", "3 days")) }
                    option value="168" { (lang.t("7 діб", "7 days")) }
                }
                p class="hint" {
                    (lang.t(
                        "Поки діють обидва, кожне сповіщення має два підписи v1: перевіряйте будь-який.",
                        "While both hold, each callback carries two v1 signatures: check either.",
                    ))
                }
                p { button type="submit" { (lang.t("Змінити ключ підпису", "Rotate the signing secret")) } }
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
                "Відправників і ліміти змінює оператор Holub.",
                "The Holub operator changes senders and limits.",
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

#[derive(Deserialize)]
pub struct SenderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sender: String,
}

/// A new sender name asked for by an owner: pending on every network until confirmed.
pub async fn request_sender(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<SenderForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::Admin)?;
    let sender = SenderId::parse(form.sender.trim()).map_err(|e| {
        Failure::Api(
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
                .field("sender"),
        )
    })?;
    state
        .senders
        .request(&signed.session.tenant, sender, &signed.origin())
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/console/settings").into_response())
}

#[derive(Deserialize)]
pub struct CallbackForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    callback_url: String,
}

/// The account's status callback, set by an owner: every status box ticked is every
/// status; an empty address removes it.
pub async fn callback(
    State(state): State<AppState>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Answer {
    // The statuses come as repeated `status=` fields, read apart from the form.
    let form: CallbackForm = super::keys::serde_urlencoded_form(&body)?;
    signed.check_csrf(&form.csrf)?;
    signed.may(Scope::Admin)?;
    let ticked: Vec<MessageStatus> = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "status")
        .filter_map(|(_, v)| MessageStatus::ALL.into_iter().find(|s| s.as_str() == v))
        .collect();
    let every = MessageStatus::ALL
        .into_iter()
        .filter(|s| *s != MessageStatus::Accepted)
        .all(|s| ticked.contains(&s));
    let url = Some(form.callback_url.trim()).filter(|u| !u.is_empty());
    let statuses = (url.is_some() && !every).then_some(ticked);
    state
        .intake
        .set_status_callback(&signed.session.tenant, url, statuses, &signed.origin())
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/console/settings").into_response())
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    grace_hours: String,
}

/// A new webhook signing secret, shown once; the old one signs too for the hours chosen.
pub async fn rotate_secret(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<RotateForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::Admin)?;
    let lang = signed.lang;
    let hours: u64 = form
        .grace_hours
        .trim()
        .parse()
        .map_err(|_| Failure::BadForm("grace_hours is a whole number of hours".to_owned()))?;
    let rotated = state
        .accounts
        .rotate_webhook_secret(
            &signed.session.tenant,
            Duration::from_secs(hours.saturating_mul(3600)),
            &signed.origin(),
        )
        .await
        .map_err(ApiError::from)?;
    let title = lang.t("Новий ключ підпису", "New signing secret");
    let body = shown_once(
        lang.t(
            "Скопіюйте ключ зараз: його показано лише один раз.",
            "Copy the secret now: it is shown once.",
        ),
        &rotated.secret,
        html! {
            p {
                @match rotated.previous_until {
                    Some(until) => { (lang.t("Старий ключ теж підписує сповіщення до ", "The old secret also signs callbacks until ")) (kyiv_time(until)) "." }
                    None => { (lang.t("Старий ключ більше не підписує сповіщень.", "The old secret signs no more callbacks.")) }
                }
            }
        },
        (
            "/console/settings",
            lang.t("← До налаштувань", "← To the settings"),
        ),
    );
    Ok(render(&signed, "/console/settings", title, body))
}

csrf_form!(WindowForm, PasswordForm, RotateForm, SenderForm);
