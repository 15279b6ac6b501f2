//! Analytics: delivery rate, latency, cost and click-through over a range, per day, per
//! provider and per operator, from the same statistics as `GET /v1/analytics/summary`; and
//! the message log as CSV.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use chrono::{Days, Utc};
use holub_shared::domain::stats::Counters;
use holub_shared::domain::{Scope, kyiv};
use holub_shared::services::analytics::{
    self as reports, Dimension, Group, GroupView, Report, ReportError, ReportQuery, ReportView,
    TotalsView, Zone,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::messages::ListParams;
use super::view::{Lang, hryvnias};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::analytics::report_error;

#[derive(Deserialize)]
pub struct RangeParams {
    #[serde(default)]
    days: Option<u32>,
}

const RANGES: [u32; 4] = [1, 7, 30, 90];

/// The page's three tables, read at once: days × providers × operators over 90 days stay
/// well within one report's groups.
const TABLES: &str = "day,provider,operator";

/// The report over the last `days` days (today's included, in Kyiv time).
async fn read(
    state: &AppState,
    signed: &Signed,
    days: u32,
    group_by: &str,
) -> Result<Report, ReportError> {
    let now = Utc::now();
    let today = kyiv::to_local(now).date();
    let first = today
        .checked_sub_days(Days::new(u64::from(days.saturating_sub(1))))
        .unwrap_or(today);
    let from = kyiv::from_local(first.and_hms_opt(0, 0, 0).unwrap_or_default());
    let query = ReportQuery::new(from, now, group_by, Zone::default())?;
    state.analytics.report(&signed.session.tenant, &query).await
}

/// `all` grouped by `dim` alone: what a report read grouped so would be, without reading
/// the statistics again.
fn fold(all: &Report, dim: Dimension) -> Result<ReportView, ReportError> {
    let query = ReportQuery {
        group_by: vec![dim],
        ..all.query.clone()
    };
    // Over no cells, a series by day still has every day of the range, quiet ones too.
    let empty = reports::report(&query, &[])?;
    let mut groups: BTreeMap<Vec<Option<String>>, Counters> = empty
        .groups
        .into_iter()
        .map(|g| (g.values, g.counters))
        .collect();
    if let Some(at) = all.query.group_by.iter().position(|d| *d == dim) {
        for g in &all.groups {
            groups
                .entry(vec![g.values[at].clone()])
                .or_default()
                .add(&g.counters, 1);
        }
    }
    let groups = groups
        .into_iter()
        .map(|(values, counters)| Group { values, counters })
        .collect();
    Ok(ReportView::of(&Report { groups, ..empty }))
}

/// The per-day, per-provider and per-operator reports of the last `days` days.
async fn tables(
    state: &AppState,
    signed: &Signed,
    days: u32,
) -> Result<[ReportView; 3], ReportError> {
    match read(state, signed, days, TABLES).await {
        Ok(all) => Ok([
            fold(&all, Dimension::Day)?,
            fold(&all, Dimension::Provider)?,
            fold(&all, Dimension::Operator)?,
        ]),
        // A route table of many providers can make more groups than one report holds;
        // each table alone holds far fewer.
        Err(ReportError::TooManyGroups) => Ok([
            ReportView::of(&read(state, signed, days, "day").await?),
            ReportView::of(&read(state, signed, days, "provider").await?),
            ReportView::of(&read(state, signed, days, "operator").await?),
        ]),
        Err(e) => Err(e),
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn millis(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 10_000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

fn cards(lang: Lang, t: &TotalsView) -> Markup {
    let latency = &t.latency_ms.accepted_to_delivered;
    html! {
        div id="summary" class="cards" {
            div class="card" { span class="n" { (t.messages) } (lang.t("повідомлень", "messages")) }
            div class="card" { span class="n" { (t.delivered) } (lang.t("доставлено", "delivered")) }
            div class="card" { span class="n" { (percent(t.delivery_rate)) } (lang.t("частка доставлених", "delivery rate")) }
            div class="card" { span class="n" { (t.parts) } (lang.t("частин SMS", "SMS parts")) }
            div class="card" { span class="n" { (hryvnias(lang, t.cost_kopiyky)) } (lang.t("вартість", "cost")) }
            div class="card" {
                span class="n" { (millis(latency.p50)) }
                (lang.t("до доставки, медіана", "to delivery, median"))
                br;
                "p95 " (millis(latency.p95)) " · p99 " (millis(latency.p99))
            }
            div class="card" { span class="n" { (percent(t.ctr)) } (lang.t("CTR (переходи)", "CTR (clicks)")) }
        }
    }
}

/// Bars of messages per day, the delivered part of each darker: an inline SVG, with a
/// table of the same numbers for screen readers and keyboards.
fn chart(lang: Lang, days: &[GroupView]) -> Markup {
    let (width, height, pad) = (640.0_f64, 200.0_f64, 24.0_f64);
    let most = days
        .iter()
        .map(|d| d.totals.messages)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = days.len().max(1) as f64;
    let slot = (width - 2.0 * pad) / n;
    let bar = (slot * 0.7).max(1.0);
    let label = lang.t(
        "Повідомлення за днями; темніше — доставлені",
        "Messages per day; darker: delivered",
    );
    html! {
        svg class="chart" viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(label) {
            line class="axis" x1=(pad) y1=(height - pad) x2=(width - pad) y2=(height - pad) {}
            @for (i, d) in days.iter().enumerate() {
                @let x = pad + i as f64 * slot + (slot - bar) / 2.0;
                @let h = (d.totals.messages as f64 / most) * (height - 2.0 * pad);
                @let hd = (d.totals.delivered as f64 / most) * (height - 2.0 * pad);
                rect x=(format!("{x:.1}")) y=(format!("{:.1}", height - pad - h)) width=(format!("{bar:.1}")) height=(format!("{h:.1}")) fill="#9fc3e8" {}
                rect class="bar" x=(format!("{x:.1}")) y=(format!("{:.1}", height - pad - hd)) width=(format!("{bar:.1}")) height=(format!("{hd:.1}")) {}
            }
            text x=(pad) y="14" { (lang.t("макс.", "max")) " " (most as i64) }
        }
    }
}

/// The delivery rate per day as a line from 0 to 100% (days with nothing final yet have no
/// point), with the same table beside it for screen readers.
fn rate_chart(lang: Lang, days: &[GroupView]) -> Markup {
    let (width, height, pad) = (640.0_f64, 120.0_f64, 24.0_f64);
    let slot = (width - 2.0 * pad) / days.len().max(1) as f64;
    let points: Vec<(f64, f64)> = days
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let rate = d.totals.delivery_rate?;
            let x = pad + (i as f64 + 0.5) * slot;
            Some((
                x,
                height - pad - rate.clamp(0.0, 1.0) * (height - 2.0 * pad),
            ))
        })
        .collect();
    let line = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ");
    let label = lang.t(
        "Частка доставлених за днями, від 0 до 100%",
        "Delivery rate per day, from 0 to 100%",
    );
    html! {
        svg class="chart" id="rate-chart" viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(label) {
            line class="axis" x1=(pad) y1=(height - pad) x2=(width - pad) y2=(height - pad) {}
            line class="axis" x1=(pad) y1=(pad) x2=(width - pad) y2=(pad) {}
            polyline class="rate" points=(line) {}
            @for (x, y) in &points {
                circle class="bar" cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" {}
            }
            text x=(pad) y="14" { "100%" }
            text x=(pad) y=(height - 6.0) { "0%" }
        }
    }
}

/// A rate as a bar beside its figure (the figure is what assistive technology reads).
fn rate_cell(rate: Option<f64>) -> Markup {
    html! {
        @if let Some(r) = rate {
            meter min="0" max="1" value=(format!("{r:.3}")) aria-hidden="true" {}
            " "
        }
        (percent(rate))
    }
}

/// The group's one value, or `none` for a group without one (messages no provider took
/// yet).
fn value_of(g: &GroupView, none: &str) -> String {
    g.group
        .values()
        .next()
        .cloned()
        .flatten()
        .unwrap_or_else(|| none.to_owned())
}

fn group_table(lang: Lang, id: &str, heading: &str, none: &str, groups: &[GroupView]) -> Markup {
    html! {
        div class="table-wrap" {
            table id=(id) {
                thead {
                    tr {
                        th scope="col" { (heading) }
                        th scope="col" { (lang.t("Повідомлень", "Messages")) }
                        th scope="col" { (lang.t("Доставлено", "Delivered")) }
                        th scope="col" { (lang.t("Частка", "Rate")) }
                        th scope="col" class="opt" { "p95" }
                        th scope="col" class="opt" { (lang.t("Вартість", "Cost")) }
                        th scope="col" class="opt" { "CTR" }
                    }
                }
                tbody {
                    @if groups.is_empty() {
                        tr { td colspan="7" { (lang.t("Даних ще немає.", "No data yet.")) } }
                    }
                    @for g in groups {
                        tr {
                            th scope="row" { (value_of(g, none)) }
                            td { (g.totals.messages) }
                            td { (g.totals.delivered) }
                            td { (rate_cell(g.totals.delivery_rate)) }
                            td class="opt" { (millis(g.totals.latency_ms.accepted_to_delivered.p95)) }
                            td class="opt" { (hryvnias(lang, g.totals.cost_kopiyky)) }
                            td class="opt" { (percent(g.totals.ctr)) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<RangeParams>, QueryRejection>,
) -> Answer {
    signed.may(Scope::AnalyticsRead)?;
    let lang = signed.lang;
    let days = query
        .ok()
        .and_then(|Query(q)| q.days)
        .filter(|d| RANGES.contains(d))
        .unwrap_or(30);
    let [by_day, by_provider, by_operator] =
        tables(&state, &signed, days).await.map_err(report_error)?;
    let title = lang.t("Аналітика", "Analytics");
    let body = html! {
        p {
            (lang.t("Період:", "Range:")) " "
            @for d in RANGES {
                @if d == days {
                    strong aria-current="true" { (d) " " (lang.t("дн.", "days")) }
                } @else {
                    a href={ "/console/analytics?days=" (d) } { (d) " " (lang.t("дн.", "days")) }
                }
                " "
            }
        }
        p class="hint" {
            (lang.t(
                "Числа зі статистики, що оновлюється кожні кілька секунд (на AWS — щохвилини). Час київський.",
                "Numbers from the statistics, updated every few seconds (every minute on AWS). Kyiv time.",
            ))
        }
        (cards(lang, &by_day.totals))
        h2 { (lang.t("За днями", "Per day")) }
        (chart(lang, &by_day.groups))
        (rate_chart(lang, &by_day.groups))
        @let busy: Vec<GroupView> = by_day.groups.iter().rev().filter(|g| g.totals.messages > 0).cloned().collect();
        (group_table(lang, "by-day", lang.t("День", "Day"), "—", &busy))
        h2 { (lang.t("За провайдерами", "Per provider")) }
        (group_table(lang, "by-provider", lang.t("Провайдер", "Provider"), lang.t("(ще не надіслано)", "(not sent yet)"), &by_provider.groups))
        h2 { (lang.t("За операторами", "Per operator")) }
        (group_table(lang, "by-operator", lang.t("Оператор", "Operator"), "—", &by_operator.groups))
        p {
            a id="export" class="button" href="/console/analytics/export.csv" {
                (lang.t("Експорт журналу повідомлень у CSV", "Export the message log as CSV"))
            }
        }
    };
    Ok(render(&signed, "/console/analytics", title, body))
}

/// The message log as CSV, with `;` between cells (what Excel in Ukraine expects), filtered
/// as the messages page is.
pub async fn export(
    State(state): State<AppState>,
    signed: Signed,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Answer {
    signed.may(Scope::MessagesRead)?;
    let p = query
        .map(|Query(p)| p)
        .map_err(|e| Failure::BadForm(e.body_text()))?;
    let query = p.query()?;
    Ok(crate::export::csv_response(state, signed.session.tenant.clone(), query, b';').await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, TimeZone};
    use holub_shared::domain::stats::{Snapshot, StatsKey};
    use holub_shared::domain::{Encoding, MessageStatus, Operator, SenderId};

    fn cell(
        created: DateTime<Utc>,
        provider: Option<&str>,
        operator: Option<Operator>,
        status: MessageStatus,
    ) -> (StatsKey, Counters) {
        let c = Snapshot {
            tenant_id: "ten_01JAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap(),
            created_at: created,
            provider: provider.map(str::to_owned),
            operator,
            sender: SenderId::parse("Shop").unwrap(),
            batch_id: None,
            encoding: Encoding::Gsm7,
            segments: 1,
            status,
            cost: Some(50),
            sent_at: Some(created),
            delivered_at: Some(created + Duration::seconds(3)),
            clicks: 0,
            bot_clicks: 0,
        }
        .contribution();
        (c.key, c.counters)
    }

    #[test]
    fn one_read_folds_into_the_tables_three_reads_would_give() {
        let at = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        let (vodafone, kyivstar) = (Some(Operator::Vodafone), Some(Operator::Kyivstar));
        let cells = [
            cell(
                at(2, 9),
                Some("turbosms"),
                vodafone,
                MessageStatus::Delivered,
            ),
            cell(
                at(2, 22),
                Some("smsfly"),
                kyivstar,
                MessageStatus::Undelivered,
            ),
            cell(
                at(5, 10),
                Some("turbosms"),
                kyivstar,
                MessageStatus::Delivered,
            ),
            cell(at(5, 11), None, None, MessageStatus::Queued),
        ];
        let query =
            |group_by: &str| ReportQuery::new(at(1, 0), at(8, 0), group_by, Zone::Kyiv).unwrap();
        let all = reports::report(&query(TABLES), &cells).unwrap();
        for dim in [Dimension::Day, Dimension::Provider, Dimension::Operator] {
            let alone = reports::report(&query(dim.as_str()), &cells).unwrap();
            assert_eq!(fold(&all, dim).unwrap(), ReportView::of(&alone), "{dim}");
        }
        // Quiet days are kept: 1 to 8 November in Kyiv.
        assert_eq!(fold(&all, Dimension::Day).unwrap().groups.len(), 8);
    }
}
