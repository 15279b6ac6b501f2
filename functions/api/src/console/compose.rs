//! Compose: a text with live counters, recipients pasted, from a CSV or both, now or at a
//! Kyiv time; a confirmation with the total cost; then one batch through the same intake as
//! `POST /v1/messages/batch`.

use std::collections::BTreeMap;
use std::io::Cursor;

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use axum::{Form, Json};
use chrono::NaiveDateTime;
use holub_shared::domain::csv_import::{ImportOptions, ImportReader, Target};
use holub_shared::domain::{
    IdempotencyKey, ListName, PhoneNumber, Scope, TenantId, TenantLimits, TextEstimate, kyiv,
};
use holub_shared::ports::contacts::MAX_CONTACT_PAGE;
use holub_shared::services::contacts::Search;
use holub_shared::services::intake::{BatchRequest, Idempotency};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::view::{Lang, csrf, hryvnias, kyiv_time};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

/// Invalid entries shown by name; the rest are counted.
const SHOWN_INVALID: usize = 50;
/// The most recipients one send takes (the batch API's limit).
const MAX_RECIPIENTS: usize = 10_000;

async fn limits_of(state: &AppState, tenant: &TenantId) -> Result<TenantLimits, Failure> {
    Ok(state.limits.of(tenant).await.map_err(ApiError::from)?)
}

fn counters(lang: Lang, estimate: &TextEstimate, cost: &str) -> Markup {
    html! {
        p class="counters" aria-live="polite" {
            span { (lang.t("Символів", "Characters")) ": " output id="chars" { (estimate.estimate.characters) } }
            span { (lang.t("Кодування", "Encoding")) ": " output id="encoding" { (estimate.estimate.encoding.as_str()) } }
            span { (lang.t("Частин SMS", "SMS parts")) ": " output id="segments" { (estimate.estimate.segments) } }
            span { (lang.t("Вартість", "Cost")) ": " output id="cost" { (cost) } }
        }
    }
}

pub async fn form(State(state): State<AppState>, signed: Signed) -> Answer {
    signed.may(Scope::MessagesSend)?;
    let signed = &signed;
    let lang = signed.lang;
    let tenant = &signed.session.tenant;
    let senders = state.senders.list(tenant).await.map_err(ApiError::from)?;
    let lists = state.contacts.lists(tenant).await.map_err(ApiError::from)?;
    let empty = TextEstimate::of("", false);
    let title = lang.t("Нове повідомлення", "New message");
    let body = html! {
        @if senders.is_empty() {
            p role="alert" {
                (lang.t(
                    "У акаунта ще немає зареєстрованого відправника. Його додає оператор Holub (див. Налаштування).",
                    "The account has no registered sender yet. The Holub operator adds one (see Settings).",
                ))
            }
        }
        form id="compose" method="post" action="/console/compose/review" enctype="multipart/form-data" {
            (csrf(signed))
            fieldset {
                legend { (lang.t("Повідомлення", "Message")) }
                label for="from" { (lang.t("Відправник", "Sender")) }
                select id="from" name="from" required {
                    @for s in &senders {
                        option value=(s.sender.as_str()) { (s.sender.as_str()) }
                    }
                }
                label for="text" { (lang.t("Текст", "Text")) }
                textarea id="text" name="text" rows="5" maxlength="16384" required
                    aria-describedby="text-counters" {}
                div id="text-counters" { (counters(lang, &empty, &hryvnias(lang, 0))) }
                label class="check" {
                    input type="checkbox" name="transliterate" value="on";
                    (lang.t("Транслітерувати (латиницею — дешевше)", "Transliterate (Latin letters cost less)"))
                }
                p id="preview" class="hint" hidden {}
                label class="check" {
                    input type="checkbox" name="track_links" value="on";
                    (lang.t("Відстежувати переходи за посиланнями", "Track link clicks"))
                }
                label for="category" { (lang.t("Категорія", "Category")) }
                select id="category" name="category" {
                    option value="transactional" { (lang.t("Сервісне", "Transactional")) }
                    option value="marketing" { (lang.t("Рекламне (потрібна згода)", "Marketing (consent needed)")) }
                }
            }
            fieldset {
                legend { (lang.t("Отримувачі", "Recipients")) }
                label for="recipients" { (lang.t("Номери", "Numbers")) }
                p class="hint" id="recipients-hint" {
                    (lang.t(
                        "По одному в рядку, або через кому чи крапку з комою; у будь-якому записі: 067 123 45 67, +380671234567.",
                        "One a line, or separated by commas or semicolons; in any form: 067 123 45 67, +380671234567.",
                    ))
                }
                textarea id="recipients" name="recipients" rows="5" aria-describedby="recipients-hint" {}
                label for="csv" { (lang.t("Або файл CSV", "Or a CSV file")) }
                input type="file" id="csv" name="csv" accept=".csv,text/csv";
                label for="csv_column" { (lang.t("Стовпець з номерами", "Column with the numbers")) }
                select id="csv_column" name="csv_column" {}
                p class="hint" {
                    (lang.t(
                        "Інші стовпці файлу заповнюють {{плейсхолдери}} тексту за їхніми назвами.",
                        "The file's other columns fill the text's {{placeholders}} by their names.",
                    ))
                }
                @if !lists.is_empty() {
                    label for="list" { (lang.t("Або список контактів", "Or a contact list")) }
                    select id="list" name="list" aria-describedby="list-hint" {
                        option value="" { "—" }
                        @for l in &lists { option value=(l.as_str()) { (l.as_str()) } }
                    }
                    p class="hint" id="list-hint" {
                        (lang.t(
                            "Контакти списку додаються під час перевірки; їхні імена й атрибути заповнюють {{плейсхолдери}}.",
                            "The list's contacts are added at review; their names and attributes fill the {{placeholders}}.",
                        ))
                    }
                }
                p class="counters" aria-live="polite" {
                    span { (lang.t("Дійсних номерів", "Valid numbers")) ": " output id="recipients-count" { "0" } }
                }
                div id="recipients-invalid-wrap" hidden {
                    p { (lang.t("Невірні номери:", "Invalid numbers:")) }
                    ul id="recipients-invalid" class="invalid-list" {}
                }
            }
            fieldset {
                legend { (lang.t("Коли", "When")) }
                label for="send_at" { (lang.t("Надіслати о (час київський; порожньо — одразу)", "Send at (Kyiv time; empty: now)")) }
                input type="datetime-local" id="send_at" name="send_at";
            }
            p { button type="submit" id="review" { (lang.t("Перевірити й підтвердити", "Review and confirm")) } }
        }
    };
    Ok(render(signed, "/console/compose", title, body))
}

/// The `X-CSRF-Token` header of a script's request must be the session's.
fn check_header(signed: &Signed, headers: &HeaderMap) -> Result<(), Failure> {
    let presented = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    signed.check_csrf(presented)
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Failure> {
    body.map(|Json(v)| v)
        .map_err(|e| Failure::BadForm(e.body_text()))
}

#[derive(Deserialize)]
pub struct EstimateRequest {
    #[serde(default)]
    text: String,
    #[serde(default)]
    transliterate: bool,
    #[serde(default)]
    recipients: u64,
}

#[derive(Serialize)]
pub struct EstimateAnswer {
    characters: usize,
    encoding: &'static str,
    segments: usize,
    cost: String,
    text: String,
}

/// The counters of compose, as the text is typed: what intake would measure.
pub async fn estimate(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    body: Result<Json<EstimateRequest>, JsonRejection>,
) -> Answer {
    check_header(&signed, &headers)?;
    let req = json_body(body)?;
    let limits = limits_of(&state, &signed.session.tenant).await?;
    let e = TextEstimate::of(&req.text, req.transliterate);
    let parts = (e.estimate.segments as u64).saturating_mul(req.recipients.max(1));
    Ok(Json(EstimateAnswer {
        characters: e.estimate.characters,
        encoding: e.estimate.encoding.as_str(),
        segments: e.estimate.segments,
        cost: hryvnias(signed.lang, limits.cost(parts).0),
        text: e.text,
    })
    .into_response())
}

/// Recipients as typed and read from a file: the valid ones (each number once) and the
/// entries that are not numbers.
#[derive(Default)]
struct Recipients {
    valid: BTreeMap<String, BTreeMap<String, String>>,
    /// In the order met.
    order: Vec<String>,
    invalid: Vec<String>,
    invalid_count: usize,
}

impl Recipients {
    fn add(&mut self, entry: &str, variables: BTreeMap<String, String>) {
        let entry = entry.trim();
        if entry.is_empty() {
            return;
        }
        match PhoneNumber::parse(entry) {
            Ok(phone) => self.keep(&phone, variables),
            Err(_) => self.refuse(entry.chars().take(64).collect()),
        }
    }

    /// A valid number, once: its first values for the placeholders win.
    fn keep(&mut self, phone: &PhoneNumber, variables: BTreeMap<String, String>) {
        let e164 = phone.as_e164();
        if !self.valid.contains_key(e164) {
            self.order.push(e164.to_owned());
            self.valid.insert(e164.to_owned(), variables);
        }
    }

    fn refuse(&mut self, entry: String) {
        self.invalid_count += 1;
        if self.invalid.len() < SHOWN_INVALID {
            self.invalid.push(entry);
        }
    }

    /// Numbers pasted one a line, or with commas or semicolons between them.
    fn add_typed(&mut self, text: &str) {
        for entry in text.split(['\n', '\r', ',', ';']) {
            self.add(entry, BTreeMap::new());
        }
    }
}

#[derive(Deserialize)]
pub struct RecipientsRequest {
    #[serde(default)]
    text: String,
    #[serde(default)]
    csv: Vec<String>,
}

#[derive(Serialize)]
pub struct RecipientsAnswer {
    count: usize,
    invalid: Vec<String>,
    invalid_count: usize,
}

/// The check of pasted numbers as they are typed (and of a CSV's column, read in the
/// browser).
pub async fn recipients(
    signed: Signed,
    headers: HeaderMap,
    body: Result<Json<RecipientsRequest>, JsonRejection>,
) -> Answer {
    check_header(&signed, &headers)?;
    let req = json_body(body)?;
    let mut r = Recipients::default();
    r.add_typed(&req.text);
    for entry in &req.csv {
        r.add(entry, BTreeMap::new());
    }
    Ok(Json(RecipientsAnswer {
        count: r.valid.len(),
        invalid: r.invalid,
        invalid_count: r.invalid_count,
    })
    .into_response())
}

/// The compose form as sent.
#[derive(Default)]
struct Draft {
    csrf: String,
    from: String,
    text: String,
    transliterate: bool,
    track_links: bool,
    marketing: bool,
    recipients: String,
    csv: Option<Vec<u8>>,
    csv_column: String,
    list: String,
    send_at: String,
}

async fn read_draft(mut multipart: Multipart) -> Result<Draft, Failure> {
    let mut d = Draft::default();
    let bad = |e: axum::extract::multipart::MultipartError| Failure::BadForm(e.body_text());
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "csv" {
            let bytes = field.bytes().await.map_err(bad)?;
            if !bytes.is_empty() {
                d.csv = Some(bytes.to_vec());
            }
            continue;
        }
        let value = field.text().await.map_err(bad)?;
        match name.as_str() {
            "csrf" => d.csrf = value,
            "from" => d.from = value,
            "text" => d.text = value,
            "transliterate" => d.transliterate = value == "on",
            "track_links" => d.track_links = value == "on",
            "category" => d.marketing = value == "marketing",
            "recipients" => d.recipients = value,
            "csv_column" => d.csv_column = value,
            "list" => d.list = value,
            "send_at" => d.send_at = value,
            _ => {}
        }
    }
    Ok(d)
}

/// A CSV's rows as recipients: the chosen column (or the one its header names as phone
/// numbers), every other column a placeholder's value.
fn add_csv(r: &mut Recipients, bytes: &[u8], column: &str, lang: Lang) -> Result<(), String> {
    let mut options = ImportOptions::default();
    if !column.trim().is_empty() {
        options
            .mapping
            .push((column.trim().to_owned(), Target::Phone));
    }
    let mut reader = ImportReader::new(Cursor::new(bytes), &options)
        .map_err(|e| format!("{} ({})", e, e.code()))?;
    while let Some(row) = reader.next_row() {
        match row {
            Ok(row) => {
                let mut variables = row.attributes.clone();
                if let Some(name) = &row.name {
                    variables.insert("name".to_owned(), name.clone());
                }
                r.keep(&row.phone, variables);
            }
            Err(e) => {
                let row = match lang {
                    Lang::Uk => format!("рядок {}: {}", e.row, e.code),
                    Lang::En => format!("row {}: {}", e.row, e.code),
                };
                r.refuse(row);
            }
        }
    }
    Ok(())
}

/// The contacts of a list as recipients, their names and attributes as placeholders' values;
/// read a page at a time until the list ends or there are more than a send takes.
async fn add_list(
    state: &AppState,
    tenant: &TenantId,
    list: &ListName,
    r: &mut Recipients,
) -> Result<(), Failure> {
    let mut after = None;
    loop {
        let (contacts, next) = state
            .contacts
            .search(
                tenant,
                Search {
                    list: Some(list.clone()),
                    phone: None,
                    text: None,
                    after,
                    limit: MAX_CONTACT_PAGE,
                },
            )
            .await
            .map_err(ApiError::from)?;
        for c in contacts {
            let mut variables = c.details.attributes.clone();
            if let Some(name) = &c.details.name {
                variables.insert("name".to_owned(), name.clone());
            }
            r.keep(&c.phone, variables);
        }
        match next {
            Some(next) if r.valid.len() <= MAX_RECIPIENTS => after = Some(next),
            _ => return Ok(()),
        }
    }
}

/// `YYYY-MM-DDTHH:MM` (what a datetime-local field sends) in Kyiv time, as RFC 3339 UTC.
pub(super) fn send_at_utc(local: &str) -> Result<Option<String>, ()> {
    let local = local.trim();
    if local.is_empty() {
        return Ok(None);
    }
    let parsed = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| ())?;
    Ok(Some(kyiv::from_local(parsed).to_rfc3339()))
}

#[derive(Serialize, Deserialize)]
struct Recipient {
    to: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    variables: BTreeMap<String, String>,
}

/// The confirmation: what will be sent, to how many, when, and what it will cost.
pub async fn review(
    State(state): State<AppState>,
    signed: Signed,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Answer {
    let multipart = multipart.map_err(|e| Failure::BadForm(e.body_text()))?;
    let draft = read_draft(multipart).await?;
    signed.check_csrf(&draft.csrf)?;
    signed.may(Scope::MessagesSend)?;
    let lang = signed.lang;
    let mut problems: Vec<String> = Vec::new();
    let mut r = Recipients::default();
    r.add_typed(&draft.recipients);
    if let Some(csv) = &draft.csv
        && let Err(why) = add_csv(&mut r, csv, &draft.csv_column, lang)
    {
        problems.push(format!("CSV: {why}"));
    }
    if !draft.list.trim().is_empty() {
        match ListName::parse(&draft.list) {
            Ok(list) => add_list(&state, &signed.session.tenant, &list, &mut r).await?,
            Err(e) => problems.push(e.to_string()),
        }
    }
    if r.valid.is_empty() {
        problems.push(
            lang.t(
                "Немає жодного дійсного номера.",
                "There is no valid number.",
            )
            .to_owned(),
        );
    }
    if r.valid.len() > MAX_RECIPIENTS {
        problems.push(match lang {
            Lang::Uk => format!("Забагато отримувачів: щонайбільше {MAX_RECIPIENTS} за раз."),
            Lang::En => format!("Too many recipients: at most {MAX_RECIPIENTS} at a time."),
        });
    }
    if draft.text.trim().is_empty() {
        problems.push(lang.t("Текст порожній.", "The text is empty.").to_owned());
    }
    let send_at = match send_at_utc(&draft.send_at) {
        Ok(at) => at,
        Err(()) => {
            problems.push(
                lang.t(
                    "Час відправлення не прочитано.",
                    "The send time could not be read.",
                )
                .to_owned(),
            );
            None
        }
    };
    let limits = limits_of(&state, &signed.session.tenant).await?;
    let estimate = TextEstimate::of(&draft.text, draft.transliterate);
    let parts = (estimate.estimate.segments as u64).saturating_mul(r.valid.len() as u64);
    let total = hryvnias(lang, limits.cost(parts).0);
    let recipients: Vec<Recipient> = r
        .order
        .iter()
        .map(|to| Recipient {
            to: to.clone(),
            variables: r.valid.get(to).cloned().unwrap_or_default(),
        })
        .collect();
    let recipients_json = serde_json::to_string(&recipients).unwrap_or_else(|_| "[]".into());
    let when = match send_at
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(at) => kyiv_time(at.to_utc()),
        None => lang.t("одразу", "now").to_owned(),
    };
    let title = lang.t("Підтвердження", "Confirmation");
    let body = html! {
        @if !problems.is_empty() {
            div role="alert" {
                ul { @for p in &problems { li { (p) } } }
            }
        }
        dl class="facts" {
            dt { (lang.t("Відправник", "Sender")) } dd { (draft.from) }
            dt { (lang.t("Текст", "Text")) } dd { (estimate.text) }
            dt { (lang.t("Кодування", "Encoding")) } dd { (estimate.estimate.encoding.as_str()) }
            dt { (lang.t("Частин на повідомлення", "Parts a message")) } dd { (estimate.estimate.segments) }
            dt { (lang.t("Отримувачів", "Recipients")) } dd id="confirm-count" { (r.valid.len()) }
            dt { (lang.t("Коли", "When")) } dd { (when) }
            dt { (lang.t("Разом", "Total")) } dd id="total-cost" { (total) }
        }
        @if r.invalid_count > 0 {
            h2 { (lang.t("Пропущено як невірні", "Left out as invalid")) " (" (r.invalid_count) ")" }
            ul id="recipients-invalid" class="invalid-list" {
                @for e in &r.invalid { li { (e) } }
            }
        }
        @if problems.is_empty() {
            form id="confirm-form" method="post" action="/console/compose/send" {
                (csrf(&signed))
                input type="hidden" name="nonce" value=(super::auth::random_token());
                input type="hidden" name="from" value=(draft.from);
                input type="hidden" name="text" value=(draft.text);
                @if draft.transliterate { input type="hidden" name="transliterate" value="on"; }
                @if draft.track_links { input type="hidden" name="track_links" value="on"; }
                @if draft.marketing { input type="hidden" name="category" value="marketing"; }
                input type="hidden" name="send_at" value=(send_at.clone().unwrap_or_default());
                input type="hidden" name="recipients" value=(recipients_json);
                p {
                    button type="submit" id="confirm" { (lang.t("Надіслати", "Send")) }
                    " "
                    a href="/console/compose" { (lang.t("Змінити", "Change")) }
                }
            }
        } @else {
            p { a href="/console/compose" { (lang.t("Назад до повідомлення", "Back to the message")) } }
        }
    };
    Ok(render(&signed, "/console/compose", title, body))
}

#[derive(Deserialize)]
pub struct SendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    transliterate: Option<String>,
    #[serde(default)]
    track_links: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    send_at: String,
    #[serde(default)]
    recipients: String,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Sends what was confirmed, once: the confirmation's nonce is the idempotency key, so a
/// second press of the button (or a reload) gives the same batch, not a second one.
pub async fn send(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<SendForm>, FormRejection>,
) -> Answer {
    let form = signed.posted(form, Scope::MessagesSend)?;
    let lang = signed.lang;
    let recipients: Vec<Recipient> = serde_json::from_str(&form.recipients)
        .map_err(|_| Failure::BadForm("recipients: not a list of recipients".into()))?;
    let body = json!({
        "from": form.from,
        "text": form.text,
        "recipients": recipients,
        "send_at": (!form.send_at.is_empty()).then_some(&form.send_at),
        "transliterate": form.transliterate.is_some(),
        "track_links": form.track_links.is_some(),
        "category": if form.category.as_deref() == Some("marketing") { "marketing" } else { "transactional" },
    });
    let fingerprint = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    let request: BatchRequest =
        serde_json::from_value(body).map_err(|e| Failure::BadForm(e.to_string()))?;
    let key = IdempotencyKey::parse(&format!("console:{}", form.nonce))
        .map_err(|_| Failure::BadForm("nonce: not a valid token".into()))?;
    let reply = state
        .intake
        .send_batch(
            &signed.session.tenant,
            request,
            Some(Idempotency { key, fingerprint }),
        )
        .await
        .map_err(ApiError::from)?;
    let batch = reply.body["batch_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let rejected = reply.body["rejected"].as_u64().unwrap_or(0);
    let target = format!("/console/messages?batch_id={batch}");
    if rejected == 0 {
        return Ok(Redirect::to(&target).into_response());
    }
    // Some recipients were refused: say which, and why, before going on.
    let refusals: Vec<Refusal> = reply.body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("error").is_some_and(|e| !e.is_null()))
        .filter_map(|r| serde_json::from_value(r.clone()).ok())
        .collect();
    let accepted = reply.body["accepted"].as_u64().unwrap_or(0);
    let title = lang.t("Надіслано частково", "Partly sent");
    let body = html! {
        p class="notice" { (lang.t("Прийнято", "Accepted")) ": " (accepted) }
        p role="alert" { (lang.t("Відхилено", "Refused")) ": " (rejected) }
        div class="table-wrap" {
            table {
                thead { tr { th { (lang.t("Номер", "Number")) } th { (lang.t("Причина", "Reason")) } } }
                tbody {
                    @for r in refusals.iter().take(500) {
                        tr {
                            td { (r.to.clone().unwrap_or_default()) }
                            td {
                                (r.error.as_ref().and_then(|e| e.get("message")).and_then(|m| m.as_str()).unwrap_or(""))
                                " ("
                                (r.error.as_ref().and_then(|e| e.get("code")).and_then(|m| m.as_str()).unwrap_or(""))
                                ")"
                            }
                        }
                    }
                }
            }
        }
        @if accepted > 0 {
            p { a class="button" href=(target) { (lang.t("До повідомлень", "To the messages")) } }
        }
    };
    Ok(render(&signed, "/console/compose", title, body))
}

csrf_form!(SendForm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_numbers_are_checked_one_by_one_and_counted_once() {
        let mut r = Recipients::default();
        r.add_typed("067 123 45 67\n+380671234567, 12345; +380501234567\n\n");
        assert_eq!(r.valid.len(), 2);
        assert_eq!(r.invalid, vec!["12345".to_owned()]);
    }

    #[test]
    fn a_kyiv_time_becomes_utc() {
        // Kyiv is UTC+2 in winter.
        assert_eq!(
            send_at_utc("2026-12-24T10:00").unwrap().as_deref(),
            Some("2026-12-24T08:00:00+00:00")
        );
        assert_eq!(send_at_utc("").unwrap(), None);
        assert!(send_at_utc("tomorrow").is_err());
    }

    #[test]
    fn a_csv_fills_numbers_and_placeholders() {
        let mut r = Recipients::default();
        let csv = "phone;name;city\n0671234567;Оксана;Львів\n12;Петро;Київ\n";
        add_csv(&mut r, csv.as_bytes(), "", Lang::En).unwrap();
        assert_eq!(r.order, vec!["+380671234567".to_owned()]);
        let vars = &r.valid["+380671234567"];
        assert_eq!(vars.get("name").map(String::as_str), Some("Оксана"));
        assert_eq!(r.invalid_count, 1);
    }
}
