//! `GET /v1/analytics/summary` and `GET /v1/analytics/timeseries`: a tenant's delivery rate,
//! counts per status, parts, cost and latency percentiles over a range, grouped as asked.
//! The numbers come from the statistics the rollup keeps, so they trail the messages by one
//! rollup interval (seconds in `holub serve`, a minute on AWS).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use holub_shared::services::analytics::{ReportError, ReportQuery, ReportView, Zone};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{AnalyticsScope, Authorized};
use crate::routes::{instant, invalid, query_params};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryParams {
    /// Start of the range (RFC 3339), taken back to the start of its hour.
    #[param(format = DateTime)]
    from: String,
    /// End of the range (RFC 3339), taken on to the end of its hour. At most 400 days after
    /// `from`.
    #[param(format = DateTime)]
    to: String,
    /// Comma-separated: `provider`, `operator`, `sender`, `batch`, `campaign` (`null` for
    /// messages of no campaign), `encoding`, `day`, `hour` (one asked twice groups as once).
    /// Empty or absent: one group, the totals.
    #[param(
        pattern = "^((provider|operator|sender|batch|campaign|encoding|day|hour)(,(provider|operator|sender|batch|campaign|encoding|day|hour))*)?$"
    )]
    group_by: Option<String>,
    /// The clock days and hours are told in: `Europe/Kyiv` (default) or `UTC`.
    #[param(pattern = "^(Europe/Kyiv|UTC)$")]
    timezone: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimeseriesParams {
    /// Start of the range (RFC 3339), taken back to the start of its hour.
    #[param(format = DateTime)]
    from: String,
    /// End of the range (RFC 3339), taken on to the end of its hour.
    #[param(format = DateTime)]
    to: String,
    /// One point per `day` (default) or `hour`; quiet ones are there too, with zeros, when
    /// the series is not grouped further.
    #[param(pattern = "^(day|hour)$")]
    interval: Option<String>,
    /// Further grouping within each point: `provider`, `operator`, `sender`, `batch`,
    /// `campaign`, `encoding`, comma-separated.
    #[param(
        pattern = "^((provider|operator|sender|batch|campaign|encoding)(,(provider|operator|sender|batch|campaign|encoding))*)?$"
    )]
    group_by: Option<String>,
    /// The clock days and hours are told in: `Europe/Kyiv` (default) or `UTC`.
    #[param(pattern = "^(Europe/Kyiv|UTC)$")]
    timezone: Option<String>,
}

pub(crate) fn report_error(e: ReportError) -> ApiError {
    match e {
        ReportError::Store(e) => e.into(),
        e => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let error = ApiError::new(status, e.code(), e.to_string());
            match e.field() {
                Some(field) => error.field(field),
                None => error,
            }
        }
    }
}

/// The report a query asks for, as the API answers it.
async fn answer(
    state: &AppState,
    tenant: &holub_shared::domain::TenantId,
    (from, to): (&str, &str),
    group_by: &str,
    timezone: Option<&str>,
) -> Result<Json<ReportView>, ApiError> {
    let zone = timezone
        .map(str::parse::<Zone>)
        .transpose()
        .map_err(report_error)?
        .unwrap_or_default();
    let query = ReportQuery::new(instant(from, "from")?, instant(to, "to")?, group_by, zone)
        .map_err(report_error)?;
    let report = state
        .analytics
        .report(tenant, &query)
        .await
        .map_err(report_error)?;
    Ok(Json(ReportView::of(&report)))
}

/// Totals over a range, grouped as asked.
#[utoipa::path(
    get, path = "/v1/analytics/summary",
    params(SummaryParams),
    responses((status = 200, body = ReportView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn summary(
    State(state): State<AppState>,
    auth: Authorized<AnalyticsScope>,
    params: Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Json<ReportView>, ApiError> {
    let p = query_params(params)?;
    answer(
        &state,
        &auth.tenant,
        (&p.from, &p.to),
        p.group_by.as_deref().unwrap_or(""),
        p.timezone.as_deref(),
    )
    .await
}

/// The same numbers per day or hour, for charts.
#[utoipa::path(
    get, path = "/v1/analytics/timeseries",
    params(TimeseriesParams),
    responses((status = 200, description = "Groups in time order, each with its `day` or `hour`",
        body = ReportView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []))
)]
pub async fn timeseries(
    State(state): State<AppState>,
    auth: Authorized<AnalyticsScope>,
    params: Result<Query<TimeseriesParams>, QueryRejection>,
) -> Result<Json<ReportView>, ApiError> {
    let p = query_params(params)?;
    let interval = match p.interval.as_deref() {
        None | Some("day") => "day",
        Some("hour") => "hour",
        Some(_) => {
            return Err(invalid(
                "interval_invalid",
                "interval",
                "interval is day or hour",
            ));
        }
    };
    let group_by = match p.group_by.as_deref() {
        Some(g) if !g.is_empty() => format!("{interval},{g}"),
        _ => interval.to_owned(),
    };
    answer(
        &state,
        &auth.tenant,
        (&p.from, &p.to),
        &group_by,
        p.timezone.as_deref(),
    )
    .await
}
