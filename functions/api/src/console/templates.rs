//! Templates: the account's message templates with their estimate, and a new one; and the
//! consent ledger of a number: looking it up, recording consent given or withdrawn. Both
//! through the same services as `/v1/templates` and `/v1/consents`.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use holub_shared::domain::Scope;
use holub_shared::domain::consent::RecordedBy;
use holub_shared::services::consent::ConsentRequest;
use holub_shared::services::templates::TemplateRequest;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::view::{Lang, csrf, hryvnias, kyiv_time};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

/// The contacts section's own menu: contacts, templates, consent.
pub fn section_menu(lang: Lang, here: &str) -> Markup {
    let items = [
        (
            "/console/contacts",
            lang.t("Контакти й списки", "Contacts and lists"),
        ),
        ("/console/templates", lang.t("Шаблони", "Templates")),
        ("/console/consent", lang.t("Згоди", "Consent")),
    ];
    html! {
        nav aria-label=(lang.t("Підрозділи", "Subsections")) {
            ul {
                @for (path, label) in items {
                    li {
                        @if path == here {
                            a href=(path) aria-current="page" { (label) }
                        } @else {
                            a href=(path) { (label) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn page(State(state): State<AppState>, signed: Signed) -> Answer {
    signed.may(Scope::ContactsRead)?;
    let lang = signed.lang;
    let page = state
        .templates
        .list(&signed.session.tenant, None, 100)
        .await
        .map_err(ApiError::from)?;
    let title = lang.t("Шаблони", "Templates");
    let body = html! {
        (section_menu(lang, "/console/templates"))
        div class="table-wrap" {
            table id="templates" {
                thead { tr {
                    th scope="col" { (lang.t("Назва", "Name")) }
                    th scope="col" { (lang.t("Текст", "Text")) }
                    th scope="col" { (lang.t("Категорія", "Category")) }
                    th scope="col" class="opt" { (lang.t("Версія", "Version")) }
                    th scope="col" class="opt" { (lang.t("Частин / вартість", "Parts / cost")) }
                } }
                tbody {
                    @if page.templates.is_empty() {
                        tr { td colspan="5" { (lang.t("Шаблонів ще немає.", "No templates yet.")) } }
                    }
                    @for t in &page.templates {
                        tr {
                            th scope="row" { (t.name) }
                            td { (t.text) }
                            td { (t.category.as_str()) }
                            td class="opt" { (t.version) " · " (kyiv_time(t.created_at)) }
                            td class="opt" {
                                (t.estimate.encoding.as_str()) ", " (t.estimate.segments) " · "
                                (hryvnias(lang, t.estimate.cost_kopiyky))
                            }
                        }
                    }
                }
            }
        }
        @if signed.may(Scope::ContactsWrite).is_ok() {
            h2 { (lang.t("Новий шаблон", "New template")) }
            form id="new-template" method="post" action="/console/templates" {
                (csrf(&signed))
                label for="t-name" { (lang.t("Назва", "Name")) }
                input type="text" id="t-name" name="name" maxlength="100" required;
                label for="t-text" { (lang.t("Текст із {{плейсхолдерами}}", "Text with {{placeholders}}")) }
                textarea id="t-text" name="text" maxlength="2000" required {}
                label for="t-category" { (lang.t("Категорія", "Category")) }
                select id="t-category" name="category" {
                    option value="transactional" { (lang.t("Сервісне", "Transactional")) }
                    option value="marketing" { (lang.t("Рекламне", "Marketing")) }
                }
                p { button type="submit" { (lang.t("Створити", "Create")) } }
            }
        }
    };
    Ok(render(&signed, "/console/contacts", title, body))
}

#[derive(Deserialize)]
pub struct NewTemplate {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    category: String,
}

pub async fn create(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<NewTemplate>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::ContactsWrite)?;
    let request: TemplateRequest = serde_json::from_value(json!({
        "name": form.name,
        "text": form.text,
        "category": if form.category == "marketing" { "marketing" } else { "transactional" },
    }))
    .map_err(|e| Failure::BadForm(e.to_string()))?;
    state
        .templates
        .create(&signed.session.tenant, request)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/console/templates").into_response())
}

#[derive(Deserialize, Default)]
pub struct PhoneQuery {
    #[serde(default)]
    phone: String,
}

pub async fn consent(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<PhoneQuery>, QueryRejection>,
) -> Answer {
    signed.may(Scope::ContactsRead)?;
    let lang = signed.lang;
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let ledger = match q.phone.trim() {
        "" => None,
        phone => Some(
            state
                .consents
                .ledger(&signed.session.tenant, phone)
                .await
                .map_err(ApiError::from)?,
        ),
    };
    let title = lang.t("Згоди на рекламні SMS", "Consent to marketing SMS");
    let body = html! {
        (section_menu(lang, "/console/consent"))
        p class="hint" {
            (lang.t(
                "Закон «Про рекламу» (ст. 14-3): рекламне SMS — лише за попередньою згодою абонента; відмова — будь-коли й безкоштовно.",
                "Ukraine's Law on Advertising (Art. 14-3): marketing SMS only with the subscriber's prior consent; opting out any time, free.",
            ))
        }
        form class="filters" method="get" action="/console/consent" role="search" {
            div {
                label for="c-phone" { (lang.t("Номер", "Number")) }
                input type="search" id="c-phone" name="phone" value=(q.phone);
            }
            div { button type="submit" { (lang.t("Показати журнал", "Show the ledger")) } }
        }
        @if let Some(ledger) = &ledger {
            h2 { (ledger.phone) ": " span id="consent-state" { (wire_name(&ledger.state)) } }
            ol id="ledger" class="timeline" {
                @for e in &ledger.entries {
                    li {
                        (kyiv_time(e.at)) " — " (wire_name(&e.change))
                        @if let Some(source) = e.source { " · " (wire_name(&source)) }
                        @if let Some(channel) = e.channel { " · " (wire_name(&channel)) }
                        @if let Some(evidence) = &e.evidence { " · " (evidence) }
                        " · " (recorded_by(lang, &e.recorded_by))
                    }
                }
            }
        }
        @if signed.may(Scope::ContactsWrite).is_ok() {
            h2 { (lang.t("Записати", "Record")) }
            form id="record-consent" method="post" action="/console/consent" {
                (csrf(&signed))
                label for="r-phone" { (lang.t("Номер", "Number")) }
                input type="text" id="r-phone" name="phone" value=(q.phone) required;
                label for="r-state" { (lang.t("Що сталося", "What happened")) }
                select id="r-state" name="state" {
                    option value="given" { (lang.t("згоду надано", "consent given")) }
                    option value="withdrawn" { (lang.t("згоду відкликано", "consent withdrawn")) }
                }
                label for="r-source" { (lang.t("Як надано (для згоди)", "How given (for consent)")) }
                select id="r-source" name="source" {
                    @for (value, uk, en) in [
                        ("web_form", "форма на сайті", "web form"), ("app", "застосунок", "app"),
                        ("paper", "паперова форма", "paper form"), ("sms", "SMS абонента", "subscriber's SMS"),
                        ("point_of_sale", "на касі", "point of sale"), ("call", "дзвінок", "call"),
                        ("import", "з попередньої системи", "imported"),
                    ] {
                        option value=(value) { (lang.t(uk, en)) }
                    }
                }
                label for="r-evidence" { (lang.t("Доказ (для згоди): № форми, документа, запису", "Evidence (for consent): form, document or recording id")) }
                input type="text" id="r-evidence" name="evidence" maxlength="1000";
                p { button type="submit" { (lang.t("Записати", "Record")) } }
            }
        }
    };
    Ok(render(&signed, "/console/contacts", title, body))
}

/// A value as the API writes it (`given`, `web_form`, `opt_out_link`).
fn wire_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn recorded_by(lang: Lang, by: &RecordedBy) -> String {
    match by {
        RecordedBy::ApiKey { .. } => lang.t("через API", "through the API").to_owned(),
        RecordedBy::Operator { .. } => lang.t("оператор", "operator").to_owned(),
        RecordedBy::Subscriber => lang.t("абонент", "the subscriber").to_owned(),
        RecordedBy::Console { .. } => lang.t("у консолі", "in the console").to_owned(),
    }
}

#[derive(Deserialize)]
pub struct RecordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    evidence: String,
}

pub async fn record(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<RecordForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::ContactsWrite)?;
    let body = if form.state == "withdrawn" {
        json!({"phone": form.phone, "state": "withdrawn", "channel": "console"})
    } else {
        json!({"phone": form.phone, "state": "given", "source": form.source,
               "evidence": form.evidence})
    };
    let request: ConsentRequest =
        serde_json::from_value(body).map_err(|e| Failure::BadForm(e.to_string()))?;
    let by = RecordedBy::Console {
        user_id: signed.session.user.to_string(),
    };
    let view = state
        .consents
        .record(&signed.session.tenant, request, by)
        .await
        .map_err(ApiError::from)?;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("phone", &view.phone)
        .finish();
    Ok(Redirect::to(&format!("/console/consent?{query}")).into_response())
}

csrf_form!(NewTemplate, RecordForm);
