//! Messages: the log with filters and paging, refreshing itself; a message's page with its
//! timeline, and cancelling one that has not gone yet.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use holub_shared::domain::stats::{Counters, Hour};
use holub_shared::domain::{Message, MessageId, MessageStatus, Scope, kyiv};
use holub_shared::ports::store::{ListQuery, Page};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::auth::CsrfOnly;
use super::view::{Lang, csrf, hryvnias, kyiv_time};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;
use crate::routes::{Filters, filters};

/// Rows a page of the log shows.
const PAGE: usize = 50;

/// A status in the user's language.
pub fn status_name(lang: Lang, status: MessageStatus) -> &'static str {
    use MessageStatus as S;
    match status {
        S::Accepted => lang.t("прийнято", "accepted"),
        S::Scheduled => lang.t("заплановано", "scheduled"),
        S::Queued => lang.t("у черзі", "queued"),
        S::Sending => lang.t("надсилається", "sending"),
        S::Sent => lang.t("надіслано", "sent"),
        S::Unconfirmed => lang.t("не підтверджено", "unconfirmed"),
        S::Delivered => lang.t("доставлено", "delivered"),
        S::Undelivered => lang.t("не доставлено", "undelivered"),
        S::Expired => lang.t("термін минув", "expired"),
        S::Failed => lang.t("помилка", "failed"),
        S::Rejected => lang.t("відхилено", "rejected"),
        S::Cancelled => lang.t("скасовано", "cancelled"),
    }
}

fn status_cell(lang: Lang, status: MessageStatus) -> Markup {
    html! {
        span class={ "status status-" (status.as_str()) } data-status=(status.as_str()) {
            (status_name(lang, status))
        }
    }
}

/// The log's filters, as the form sends them (every field may be empty).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct ListParams {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    from: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    to: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    batch_id: String,
    /// A Kyiv date, `YYYY-MM-DD`: from its start.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    since: String,
    /// A Kyiv date: to its end.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    until: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    after: String,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// The start of a Kyiv day (`days` later), as RFC 3339.
fn day_start(date: &str, field: &str, days: i64) -> Result<Option<String>, Failure> {
    let Some(date) = non_empty(date) else {
        return Ok(None);
    };
    let day = NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| {
        Failure::Api(crate::routes::invalid(
            "date_invalid",
            field,
            "a date is written YYYY-MM-DD",
        ))
    })?;
    // The day after the last the calendar holds has no start: no bound.
    let start = day
        .checked_add_days(chrono::Days::new(days.unsigned_abs()))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(kyiv::from_local);
    Ok(start.map(|s| s.to_rfc3339()))
}

impl ListParams {
    pub fn query(&self) -> Result<ListQuery, Failure> {
        let mut query = filters(Filters {
            status: non_empty(&self.status),
            to: non_empty(&self.to),
            from: non_empty(&self.from),
            batch_id: non_empty(&self.batch_id),
            created_after: day_start(&self.since, "since", 0)?,
            created_before: day_start(&self.until, "until", 1)?,
        })?;
        query.limit = PAGE;
        if let Some(after) = non_empty(&self.after) {
            query.after = Some(after.parse::<MessageId>().map_err(|_| {
                Failure::Api(crate::routes::invalid(
                    "cursor_invalid",
                    "after",
                    "not a message id",
                ))
            })?);
        }
        Ok(query)
    }

    fn encoded(&self) -> String {
        serde_urlencoded_like(self)
    }
}

/// The filters as a query string (`key=value&…`, values percent-encoded).
fn serde_urlencoded_like(p: &ListParams) -> String {
    let value = serde_json::to_value(p).unwrap_or_default();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            if let Some(v) = v.as_str() {
                out.append_pair(k, v);
            }
        }
    }
    out.finish()
}

fn params(query: Result<Query<ListParams>, QueryRejection>) -> Result<ListParams, Failure> {
    query
        .map(|Query(p)| p)
        .map_err(|e| Failure::BadForm(e.body_text()))
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if text.chars().count() > 60 {
        s.push('…');
    }
    s
}

fn rows_markup(lang: Lang, messages: &[Message]) -> Markup {
    html! {
        @if messages.is_empty() {
            tr { td colspan="7" { (lang.t("Повідомлень немає.", "No messages.")) } }
        }
        @for m in messages {
            tr data-id=(m.id.to_string()) {
                td { a href={ "/console/messages/" (m.id.to_string()) } { (kyiv_time(m.created_at)) } }
                td { (m.to.as_e164()) }
                td class="opt" { (m.from.as_str()) }
                td class="opt" { (short(&m.text)) }
                td class="status" data-status=(m.status.as_str()) { (status_cell(lang, m.status)) }
                td class="opt" { (m.segments) }
                td class="opt" { (m.cost.map(|c| hryvnias(lang, c.0)).unwrap_or_default()) }
            }
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Answer {
    signed.may(Scope::MessagesRead)?;
    let lang = signed.lang;
    let p = params(query)?;
    let tenant = &signed.session.tenant;
    let (query, page) = read_page(&state, &signed, &p).await?;
    // A batch's progress, from the statistics: from the hour its messages were made.
    let progress = match (&query.batch_id, page.messages.last()) {
        (Some(batch), Some(oldest)) => state
            .analytics
            .batch_totals(
                tenant,
                batch,
                Hour::of(oldest.created_at),
                Hour(Hour::of(chrono::Utc::now()).0 + 1),
            )
            .await
            .ok(),
        _ => None,
    };
    let mut first = p.clone();
    first.after.clear();
    let next = page.next.map(|n| {
        let mut next = p.clone();
        next.after = n.to_string();
        next.encoded()
    });
    let title = lang.t("Повідомлення", "Messages");
    let body = html! {
        form id="filters" class="filters" method="get" action="/console/messages" {
            div {
                label for="f-status" { (lang.t("Статус", "Status")) }
                select id="f-status" name="status" {
                    option value="" { (lang.t("усі", "all")) }
                    @for s in MessageStatus::ALL {
                        option value=(s.as_str()) selected[p.status == s.as_str()] { (status_name(lang, s)) }
                    }
                }
            }
            div {
                label for="f-to" { (lang.t("Номер", "Number")) }
                input type="search" id="f-to" name="to" value=(p.to);
            }
            div {
                label for="f-from" { (lang.t("Відправник", "Sender")) }
                input type="text" id="f-from" name="from" value=(p.from);
            }
            div {
                label for="f-batch" { (lang.t("Розсилка", "Batch")) }
                input type="text" id="f-batch" name="batch_id" value=(p.batch_id);
            }
            div {
                label for="f-since" { (lang.t("З дати", "From date")) }
                input type="date" id="f-since" name="since" value=(p.since);
            }
            div {
                label for="f-until" { (lang.t("По дату", "To date")) }
                input type="date" id="f-until" name="until" value=(p.until);
            }
            div { button type="submit" { (lang.t("Показати", "Show")) } }
        }
        @if let Some(totals) = &progress {
            (batch_progress(lang, totals))
        }
        div class="table-wrap" {
            table id="messages" {
                caption class="hint" { (lang.t("Час київський. Список оновлюється сам.", "Kyiv time. The list updates itself.")) }
                thead {
                    tr {
                        th scope="col" { (lang.t("Створено", "Created")) }
                        th scope="col" { (lang.t("Кому", "To")) }
                        th scope="col" class="opt" { (lang.t("Від", "From")) }
                        th scope="col" class="opt" { (lang.t("Текст", "Text")) }
                        th scope="col" { (lang.t("Статус", "Status")) }
                        th scope="col" class="opt" { (lang.t("Частин", "Parts")) }
                        th scope="col" class="opt" { (lang.t("Вартість", "Cost")) }
                    }
                }
                @if p.after.is_empty() {
                    tbody data-refresh={ "/console/messages/rows?" (first.encoded()) } {
                        (rows_markup(lang, &page.messages))
                    }
                } @else {
                    tbody { (rows_markup(lang, &page.messages)) }
                }
            }
        }
        p class="pager" {
            @if !p.after.is_empty() {
                a href={ "/console/messages?" (first.encoded()) } { (lang.t("← Найновіші", "← Newest")) }
                " "
            }
            @if let Some(next) = next {
                a href={ "/console/messages?" (next) } { (lang.t("Старіші →", "Older →")) }
            }
            " · "
            a href={ "/console/analytics/export.csv?" (first.encoded()) } { (lang.t("Завантажити CSV", "Download CSV")) }
        }
    };
    Ok(render(&signed, "/console/messages", title, body))
}

/// A batch's messages by where they are: delivered, failed, still on their way.
fn batch_progress(lang: Lang, totals: &Counters) -> Markup {
    use MessageStatus as S;
    let count = |s: S| totals.statuses.get(&s).copied().unwrap_or(0);
    let all: i64 = totals.statuses.values().sum();
    let delivered = count(S::Delivered);
    let failed = count(S::Undelivered) + count(S::Expired) + count(S::Failed) + count(S::Rejected);
    let cancelled = count(S::Cancelled);
    let waiting = all - delivered - failed - cancelled;
    let bar = |label: &str, n: i64, id: &str| {
        html! {
            p {
                label class="check" for=(id) { (label) ": " span class="v" { (n) } " / " (all) }
                progress id=(id) max=(all.max(1)) value=(n) {}
            }
        }
    };
    html! {
        section id="batch" class="card" aria-label=(lang.t("Хід розсилки", "Batch progress")) {
            (bar(lang.t("доставлено", "delivered"), delivered, "batch-delivered"))
            (bar(lang.t("не доставлено", "failed"), failed, "batch-failed"))
            (bar(lang.t("у дорозі", "on the way"), waiting, "batch-waiting"))
            @if cancelled > 0 { p { (lang.t("скасовано", "cancelled")) ": " (cancelled) } }
            @if totals.clicked > 0 { p { (lang.t("перейшли за посиланням", "clicked")) ": " (totals.clicked) } }
            p class="hint" { (lang.t("Зі статистики; оновлюється за кілька секунд.", "From the statistics; a few seconds behind.")) }
        }
    }
}

/// The page of the log that the filters select, and the query they made.
async fn read_page(
    state: &AppState,
    signed: &Signed,
    p: &ListParams,
) -> Result<(ListQuery, Page), Failure> {
    let query = p.query()?;
    let page = state
        .messages
        .list(&signed.session.tenant, query.clone())
        .await
        .map_err(ApiError::from)?;
    Ok((query, page))
}

/// The first page's rows, for the list to refresh itself.
pub async fn rows(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Answer {
    signed.may(Scope::MessagesRead)?;
    let p = params(query)?;
    let (_, page) = read_page(&state, &signed, &p).await?;
    Ok(Html(rows_markup(signed.lang, &page.messages).into_string()).into_response())
}

async fn message(state: &AppState, signed: &Signed, id: &str) -> Result<Message, Failure> {
    signed.may(Scope::MessagesRead)?;
    let id = id.parse::<MessageId>().map_err(|_| Failure::NotFound)?;
    state
        .messages
        .get(&signed.session.tenant, &id)
        .await
        .map_err(ApiError::from)?
        .ok_or(Failure::NotFound)
}

fn cancellable(status: MessageStatus) -> bool {
    matches!(
        status,
        MessageStatus::Accepted | MessageStatus::Scheduled | MessageStatus::Queued
    )
}

fn detail(signed: &Signed, m: &Message) -> Markup {
    let lang = signed.lang;
    html! {
        dl class="facts" {
            dt { (lang.t("Статус", "Status")) }
            dd id="status" data-status=(m.status.as_str()) { (status_cell(lang, m.status)) }
            dt { (lang.t("Кому", "To")) } dd { (m.to.as_e164()) " (" (m.to.operator().as_str()) ")" }
            dt { (lang.t("Від", "From")) } dd { (m.from.as_str()) }
            dt { (lang.t("Текст", "Text")) } dd { (m.text) }
            dt { (lang.t("Кодування й частини", "Encoding and parts")) } dd { (m.encoding.as_str()) ", " (m.segments) }
            dt { (lang.t("Вартість", "Cost")) } dd { (m.cost.map(|c| hryvnias(lang, c.0)).unwrap_or_else(|| "—".into())) }
            dt { (lang.t("Провайдер", "Provider")) } dd { (m.provider.clone().unwrap_or_else(|| "—".into())) }
            @if let Some(at) = m.send_at {
                dt { (lang.t("Заплановано на", "Scheduled for")) } dd { (kyiv_time(at)) }
            }
            @if let Some(batch) = &m.batch_id {
                dt { (lang.t("Розсилка", "Batch")) }
                dd { a href={ "/console/messages?batch_id=" (batch.as_str()) } { (batch.as_str()) } }
            }
            @if let Some(e) = &m.error {
                dt { (lang.t("Помилка", "Error")) } dd role="alert" { (e.message) " (" (e.code) ")" }
            }
            @if m.clicks > 0 {
                dt { (lang.t("Переходи", "Clicks")) } dd { (m.clicks) }
            }
        }
        h2 { (lang.t("Історія", "Timeline")) }
        ol id="timeline" class="timeline" {
            @for change in &m.history {
                li { (kyiv_time(change.at)) " — " (status_cell(lang, change.status)) }
            }
        }
        @if cancellable(m.status) && signed.may(Scope::MessagesSend).is_ok() {
            form id="cancel" method="post" action={ "/console/messages/" (m.id.to_string()) "/cancel" } {
                (csrf(signed))
                button type="submit" class="danger" { (lang.t("Скасувати", "Cancel")) }
            }
        }
    }
}

pub async fn show(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Answer {
    let m = message(&state, &signed, &id).await?;
    let title = signed.lang.t("Повідомлення", "Message");
    let refresh = format!("/console/messages/{}/part", m.id);
    let body = html! {
        p class="hint" { "ID: " code { (m.id.to_string()) } }
        @if m.status.is_terminal() {
            div id="detail" { (detail(&signed, &m)) }
        } @else {
            div id="detail" data-refresh=(refresh) aria-live="polite" { (detail(&signed, &m)) }
        }
        p { a href="/console/messages" { (signed.lang.t("← До списку", "← To the list")) } }
    };
    Ok(render(&signed, "/console/messages", title, body))
}

/// A message's details, for its page to refresh itself; `X-Holub-Final: 1` once nothing
/// more will change.
pub async fn part(State(state): State<AppState>, signed: Signed, Path(id): Path<String>) -> Answer {
    let m = message(&state, &signed, &id).await?;
    let mut response: Response = Html(detail(&signed, &m).into_string()).into_response();
    if m.status.is_terminal() {
        response
            .headers_mut()
            .insert("x-holub-final", HeaderValue::from_static("1"));
    }
    Ok(response)
}

pub async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    signed.posted(form, Scope::MessagesSend)?;
    let m = message(&state, &signed, &id).await?;
    state
        .messages
        .cancel(&signed.session.tenant, &m.id)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to(&format!("/console/messages/{}", m.id)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_filter_is_a_kyiv_day_and_the_calendars_end_is_no_panic() {
        // Kyiv is UTC+2 in winter: its 1 December starts at 22:00 UTC the day before.
        assert_eq!(
            day_start("2026-12-01", "since", 0).unwrap().as_deref(),
            Some("2026-11-30T22:00:00+00:00")
        );
        assert_eq!(
            day_start("2026-12-01", "until", 1).unwrap().as_deref(),
            Some("2026-12-01T22:00:00+00:00")
        );
        assert!(day_start("1.12.2026", "since", 0).is_err());
        let last = NaiveDate::MAX.format("%Y-%m-%d").to_string();
        if let Ok(end) = day_start(&last, "until", 1) {
            assert_eq!(end, None);
        }
    }
}
