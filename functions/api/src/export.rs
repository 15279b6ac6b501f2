//! `GET /v1/messages/export`: the message log as CSV, with the filters of the list, streamed
//! a page at a time (the whole log never sits in memory).
//!
//! Made to open right in Excel as Ukrainian offices use it: UTF-8 with a byte-order mark (so
//! Cyrillic is read as UTF-8, not as Windows-1251), `delimiter=semicolon` for a Ukrainian
//! locale's list separator, times also as Kyiv wall-clock time in a form Excel reads as a date.
//! A cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a
//! leading `'`, so a spreadsheet shows it as text instead of running it as a formula (CSV
//! injection; a phone number `+380…` reads `'+380…`).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use holub_shared::domain::{Message, kyiv};
use holub_shared::ports::store::ListQuery;
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authorized, ReadScope};
use crate::routes::{Filters, filters, invalid, query_params};

/// Messages read from the store per step of the stream.
const PAGE: usize = 500;

const COLUMNS: [&str; 21] = [
    "id",
    "created_at",
    "created_at_kyiv",
    "to",
    "from",
    "text",
    "status",
    "encoding",
    "segments",
    "provider",
    "provider_message_id",
    "cost_kopiyky",
    "error_code",
    "error_message",
    "batch_id",
    "reference",
    "updated_at",
    "updated_at_kyiv",
    "clicks",
    "bot_clicks",
    "clicked_at",
];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// As for the list.
    #[param(value_type = Option<holub_shared::domain::MessageStatus>)]
    status: Option<String>,
    /// As for the list.
    #[param(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")]
    to: Option<String>,
    /// As for the list.
    #[param(
        pattern = "^([A-Za-z][A-Za-z0-9]{2,10}|(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7})$"
    )]
    from: Option<String>,
    #[param(pattern = "^bat_[0-7][0-9A-HJKMNP-TV-Z]{25}$")]
    batch_id: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    created_after: Option<String>,
    /// RFC 3339.
    #[param(format = DateTime)]
    created_before: Option<String>,
    /// `comma` (default) or `semicolon` (what Excel with a Ukrainian locale splits on).
    #[param(pattern = "^(comma|semicolon)$")]
    delimiter: Option<String>,
}

/// The message log as CSV (UTF-8 with a BOM), newest first, with the list's filters.
#[utoipa::path(
    get, path = "/v1/messages/export",
    params(ExportParams),
    responses((status = 200, description = "CSV, one row per message, newest first",
        content_type = "text/csv", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn export_messages(
    State(state): State<AppState>,
    auth: Authorized<ReadScope>,
    params: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query_params(params)?;
    let delimiter = match p.delimiter.as_deref() {
        None | Some("comma") => b',',
        Some("semicolon") => b';',
        Some(_) => {
            return Err(invalid(
                "delimiter_invalid",
                "delimiter",
                "delimiter is comma or semicolon",
            ));
        }
    };
    let query = filters(Filters {
        status: p.status,
        to: p.to,
        from: p.from,
        batch_id: p.batch_id,
        created_after: p.created_after,
        created_before: p.created_before,
    })?;
    csv_response(state, auth.tenant, query, delimiter).await
}

/// The message log that `query` selects, newest first, as a CSV download: the API's export
/// and the console's.
pub(crate) async fn csv_response(
    state: AppState,
    tenant: holub_shared::domain::TenantId,
    mut query: ListQuery,
    delimiter: u8,
) -> Result<Response, ApiError> {
    query.limit = PAGE;
    // The first page is read before answering, so a store that is down is a 503 rather
    // than a 200 with a broken body.
    let first = state.messages.list(&tenant, query.clone()).await?;
    let mut head = String::from("\u{feff}");
    row(&mut head, COLUMNS.iter().copied(), delimiter);
    let first_chunk = chunk(head, &first.messages, delimiter);
    let rest = futures::stream::unfold(
        (first.next, query),
        move |(next, mut query): (Option<holub_shared::domain::MessageId>, ListQuery)| {
            let (state, tenant) = (state.clone(), tenant.clone());
            async move {
                let after = next?;
                query.after = Some(after);
                match state.messages.list(&tenant, query.clone()).await {
                    Ok(page) => Some((
                        Ok(chunk(String::new(), &page.messages, delimiter)),
                        (page.next, query),
                    )),
                    Err(e) => {
                        // The answer has started: the body is cut short, which a client
                        // sees as a failed download, never as a complete file.
                        tracing::warn!(error = %e, "export: a page could not be read");
                        Some((
                            Err(std::io::Error::other("the store is unavailable")),
                            (None, query),
                        ))
                    }
                }
            }
        },
    );
    let body =
        futures::stream::once(async move { Ok::<_, std::io::Error>(first_chunk) }).chain(rest);
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"holub-messages.csv\""),
    );
    Ok(response)
}

fn chunk(mut out: String, messages: &[Message], delimiter: u8) -> String {
    for m in messages {
        let (created, updated) = (utc(m.created_at), utc(m.updated_at));
        let (created_kyiv, updated_kyiv) = (local(m.created_at), local(m.updated_at));
        let segments = m.segments.to_string();
        let cost = m.cost.map(|c| c.0.to_string()).unwrap_or_default();
        let id = m.id.to_string();
        let error = m.error.as_ref();
        let (clicks, bot_clicks) = (m.clicks.to_string(), m.bot_clicks.to_string());
        let clicked = m.clicked_at.map(utc).unwrap_or_default();
        row(
            &mut out,
            [
                id.as_str(),
                &created,
                &created_kyiv,
                m.to.as_e164(),
                m.from.as_str(),
                &m.text,
                m.status.as_str(),
                m.encoding.as_str(),
                &segments,
                m.provider.as_deref().unwrap_or_default(),
                m.provider_message_id.as_deref().unwrap_or_default(),
                &cost,
                error.map(|e| e.code.as_str()).unwrap_or_default(),
                error.map(|e| e.message.as_str()).unwrap_or_default(),
                m.batch_id.as_ref().map(|b| b.as_str()).unwrap_or_default(),
                m.reference.as_deref().unwrap_or_default(),
                &updated,
                &updated_kyiv,
                &clicks,
                &bot_clicks,
                &clicked,
            ],
            delimiter,
        );
    }
    out
}

fn utc(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Kyiv wall-clock time as `YYYY-MM-DD HH:MM:SS`, which Excel reads as a date and time.
fn local(at: DateTime<Utc>) -> String {
    kyiv::to_local(at).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// One CSV record (RFC 4180: a field with the delimiter, a quote or a line break is quoted,
/// quotes doubled), lines ended with CRLF, every cell neutralised for spreadsheets.
fn row<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>, delimiter: u8) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(char::from(delimiter));
        }
        let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
        let quote = formula
            || cell
                .bytes()
                .any(|b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
        if quote {
            out.push('"');
        }
        if formula {
            out.push('\'');
        }
        for c in cell.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        if quote {
            out.push('"');
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cells: &[&str], delimiter: u8) -> String {
        let mut out = String::new();
        row(&mut out, cells.iter().copied(), delimiter);
        out
    }

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(line(&["a", "b"], b','), "a,b\r\n");
        assert_eq!(line(&["a,b", "c\"d"], b','), "\"a,b\",\"c\"\"d\"\r\n");
        assert_eq!(line(&["a,b", "x;y"], b';'), "a,b;\"x;y\"\r\n");
        assert_eq!(line(&["рядок\nдва"], b','), "\"рядок\nдва\"\r\n");
        for formula in ["=1+1", "+380671234567", "-2", "@SUM(A1)", "\tx", "\rx"] {
            let out = line(&[formula], b',');
            assert!(out.starts_with("\"'"), "{formula:?} -> {out:?}");
        }
        assert_eq!(
            line(&["=HYPERLINK(\"x\")"], b','),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
    }
}
