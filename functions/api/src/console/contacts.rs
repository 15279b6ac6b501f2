//! Contacts: search, lists, and importing a CSV (UTF-8 or Windows-1251, `,` or `;`) with a
//! per-row report, through the same import as `holub contacts import`.

use std::io::Cursor;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Query, State};
use holub_shared::domain::csv_import::{ImportOptions, ImportReader};
use holub_shared::domain::{ListName, Scope};
use holub_shared::services::contacts::{RowResult, Search};
use maud::html;
use serde::Deserialize;

use super::view::csrf;
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

/// The largest file the console imports at once; bigger ones go through the command line
/// (`holub contacts import`), which streams any size.
const MAX_UPLOAD: usize = 5 * 1024 * 1024;
/// Failed rows listed by number; the rest are counted.
const SHOWN_FAILURES: usize = 100;

#[derive(Deserialize, Default)]
pub struct SearchParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    list: String,
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<SearchParams>, QueryRejection>,
) -> Answer {
    signed.may(Scope::ContactsRead)?;
    let lang = signed.lang;
    let p = query.map(|Query(p)| p).unwrap_or_default();
    let tenant = &signed.session.tenant;
    let list = match p.list.trim() {
        "" => None,
        l => Some(ListName::parse(l).map_err(|e| Failure::BadForm(e.to_string()))?),
    };
    let text = p.q.trim();
    let (contacts, _) = state
        .contacts
        .search(
            tenant,
            Search {
                list,
                phone: None,
                text: (!text.is_empty()).then(|| text.to_owned()),
                after: None,
                limit: 50,
            },
        )
        .await
        .map_err(ApiError::from)?;
    let lists = state.contacts.lists(tenant).await.map_err(ApiError::from)?;
    let title = lang.t("Контакти", "Contacts");
    let body = html! {
        (super::templates::section_menu(lang, "/console/contacts"))
        form class="filters" method="get" action="/console/contacts" role="search" {
            div {
                label for="q" { (lang.t("Пошук", "Search")) }
                input type="search" id="q" name="q" value=(p.q);
            }
            div {
                label for="list" { (lang.t("Список", "List")) }
                select id="list" name="list" {
                    option value="" { (lang.t("усі", "all")) }
                    @for l in &lists {
                        option value=(l.as_str()) selected[p.list == l.as_str()] { (l.as_str()) }
                    }
                }
            }
            div { button type="submit" { (lang.t("Знайти", "Find")) } }
        }
        div class="table-wrap" {
            table id="contacts" {
                thead { tr {
                    th scope="col" { (lang.t("Номер", "Number")) }
                    th scope="col" { (lang.t("Ім'я", "Name")) }
                    th scope="col" { (lang.t("Списки", "Lists")) }
                } }
                tbody {
                    @if contacts.is_empty() {
                        tr { td colspan="3" { (lang.t("Контактів не знайдено.", "No contacts found.")) } }
                    }
                    @for c in &contacts {
                        tr {
                            td { (c.phone.as_e164()) }
                            td { (c.details.name.as_deref().unwrap_or("")) }
                            td { (c.lists.iter().map(ListName::as_str).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            }
        }
        @if signed.may(Scope::ContactsWrite).is_ok() {
            h2 { (lang.t("Імпорт з CSV", "Import from CSV")) }
            form id="import" method="post" action="/console/contacts/import" enctype="multipart/form-data" {
                (csrf(&signed))
                p class="hint" {
                    (lang.t(
                        "UTF-8 або Windows-1251, роздільник «,» або «;», перший рядок — назви стовпців (Телефон, Ім'я, …). До 5 МБ; більші файли — командою holub contacts import.",
                        "UTF-8 or Windows-1251, separated by “,” or “;”, the first row names the columns (Phone, Name, …). Up to 5 MB; larger files: holub contacts import.",
                    ))
                }
                label for="import-file" { (lang.t("Файл", "File")) }
                input type="file" id="import-file" name="file" accept=".csv,text/csv" required;
                label for="import-list" { (lang.t("Додати до списку (необов'язково)", "Add to list (optional)")) }
                input type="text" id="import-list" name="list";
                p { button type="submit" { (lang.t("Імпортувати", "Import")) } }
            }
        }
    };
    Ok(render(&signed, "/console/contacts", title, body))
}

pub async fn import(
    State(state): State<AppState>,
    signed: Signed,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Answer {
    let mut multipart = multipart.map_err(|e| Failure::BadForm(e.body_text()))?;
    let bad = |e: axum::extract::multipart::MultipartError| Failure::BadForm(e.body_text());
    let (mut token, mut file, mut list) = (String::new(), Vec::new(), String::new());
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "csrf" => token = field.text().await.map_err(bad)?,
            "list" => list = field.text().await.map_err(bad)?,
            "file" => file = field.bytes().await.map_err(bad)?.to_vec(),
            _ => {}
        }
    }
    signed.check_csrf(&token)?;
    signed.may(Scope::ContactsWrite)?;
    let lang = signed.lang;
    if file.len() > MAX_UPLOAD {
        return Err(Failure::BadForm(
            lang.t(
                "Файл більший за 5 МБ: імпортуйте його командою holub contacts import.",
                "The file is larger than 5 MB: import it with holub contacts import.",
            )
            .to_owned(),
        ));
    }
    let list = match list.trim() {
        "" => None,
        l => Some(ListName::parse(l).map_err(|e| Failure::BadForm(e.to_string()))?),
    };
    let mut reader = ImportReader::new(Cursor::new(file), &ImportOptions::default())
        .map_err(|e| Failure::BadForm(format!("{e} ({})", e.code())))?;
    let mut failures: Vec<RowResult> = Vec::new();
    let mut failed = 0u64;
    let tally = state
        .contacts
        .import_csv(
            &signed.session.tenant,
            &mut reader,
            list.as_ref(),
            |rows, _, _| {
                for r in rows.iter().filter(|r| r.status == "failed") {
                    failed += 1;
                    if failures.len() < SHOWN_FAILURES {
                        failures.push(r.clone());
                    }
                }
            },
        )
        .await
        .map_err(ApiError::from)?;
    let title = lang.t("Імпорт завершено", "Import done");
    let body = html! {
        dl class="facts" id="import-report" {
            dt { (lang.t("Рядків", "Rows")) } dd { (tally.rows) }
            dt { (lang.t("Нових контактів", "New contacts")) } dd { (tally.created) }
            dt { (lang.t("Оновлено", "Updated")) } dd { (tally.updated) }
            dt { (lang.t("З помилкою", "Failed")) } dd { (tally.failed) }
            dt { (lang.t("Відновлено 0 на початку номера", "Leading 0 restored")) } dd { (tally.restored_zero) }
        }
        @if failed > 0 {
            h2 { (lang.t("Рядки з помилками", "Rows that failed")) }
            div class="table-wrap" {
                table {
                    thead { tr { th { (lang.t("Рядок", "Row")) } th { (lang.t("Код", "Code")) } th { (lang.t("Причина", "Reason")) } } }
                    tbody {
                        @for r in &failures {
                            tr {
                                td { (r.row) }
                                td { (r.error.as_ref().map(|e| e.code).unwrap_or("")) }
                                td { (r.error.as_ref().map(|e| e.message.as_str()).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/console/contacts" { (lang.t("← До контактів", "← To the contacts")) } }
    };
    Ok(render(&signed, "/console/contacts", title, body))
}
