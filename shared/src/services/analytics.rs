//! Reports over a tenant's statistics: delivery rate, counts per status, parts, cost and
//! latency percentiles, totalled over a time range and grouped by what the customer asks
//! (provider, operator, sender, batch, campaign, encoding, day, hour). The API's summary and
//! time series and `holub report` are all this. A campaign's messages carry its batch, so
//! grouping by campaign is grouping by batch, each batch told as the campaign it is (`null`
//! for a batch that is no campaign's: one sent through `/v1/messages/batch`).
//!
//! The statistics are kept per UTC hour of acceptance (see [`crate::domain::stats`]), so a
//! range is read in whole hours: `from` is taken back to the start of its hour and `to` on to
//! the end of its, and the report says which range it covers. A message counts in the hour
//! it was accepted, with the status it has now. A range that ends before it starts covers no
//! hour (as a list filtered so finds no message); a series over time alone has a point for
//! every day or hour, quiet ones too, up to [`MAX_GROUPS`] of them (the report then says it
//! was cut short, and where it stops).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::domain::stats::{Counters, Histogram, Hour, StatsKey};
use crate::domain::{CampaignId, MessageStatus, TenantId, kyiv};
use crate::ports::{CampaignStore, StatsStore, StoreError};

/// The most groups (rows, or points of a time series) one report has.
pub const MAX_GROUPS: usize = 10_000;

/// What a report can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Provider,
    Operator,
    Sender,
    Batch,
    Campaign,
    Encoding,
    Day,
    Hour,
}

impl Dimension {
    pub const ALL: [Dimension; 8] = [
        Dimension::Provider,
        Dimension::Operator,
        Dimension::Sender,
        Dimension::Batch,
        Dimension::Campaign,
        Dimension::Encoding,
        Dimension::Day,
        Dimension::Hour,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Provider => "provider",
            Dimension::Operator => "operator",
            Dimension::Sender => "sender",
            Dimension::Batch => "batch",
            Dimension::Campaign => "campaign",
            Dimension::Encoding => "encoding",
            Dimension::Day => "day",
            Dimension::Hour => "hour",
        }
    }

    fn is_time(self) -> bool {
        matches!(self, Dimension::Day | Dimension::Hour)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dimension {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, ReportError> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| ReportError::UnknownDimension(s.to_owned()))
    }
}

/// The clock days and hours are told in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Zone {
    #[default]
    #[serde(rename = "Europe/Kyiv")]
    Kyiv,
    #[serde(rename = "UTC")]
    Utc,
}

impl FromStr for Zone {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, ReportError> {
        match s {
            "Europe/Kyiv" => Ok(Zone::Kyiv),
            "UTC" => Ok(Zone::Utc),
            other => Err(ReportError::UnknownZone(other.to_owned())),
        }
    }
}

impl Zone {
    fn offset(self, at: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::Kyiv => kyiv::offset_at(at),
            Zone::Utc => FixedOffset::east_opt(0).expect("zero is a valid offset"),
        }
    }

    fn local(self, at: DateTime<Utc>) -> DateTime<FixedOffset> {
        at.with_timezone(&self.offset(at))
    }

    /// The instant a local day starts.
    pub fn day_start(self, day: NaiveDate) -> DateTime<Utc> {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
        match self {
            Zone::Kyiv => kyiv::from_local(midnight),
            Zone::Utc => Utc.from_utc_datetime(&midnight),
        }
    }
}

/// A report asked for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// The first hour covered.
    pub from: Hour,
    /// The hour after the last one covered.
    pub to: Hour,
    pub group_by: Vec<Dimension>,
    pub zone: Zone,
}

/// Why a report cannot be made; each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "unknown grouping {0:?}: use provider, operator, sender, batch, campaign, encoding, day or hour"
    )]
    UnknownDimension(String),
    #[error("unknown time zone {0:?}: use Europe/Kyiv or UTC")]
    UnknownZone(String),
    #[error(
        "the report would have more than {MAX_GROUPS} groups; narrow the range or the grouping"
    )]
    TooManyGroups,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReportError {
    pub fn code(&self) -> &'static str {
        match self {
            ReportError::UnknownDimension(_) => "group_by_unknown",
            ReportError::UnknownZone(_) => "timezone_unknown",
            ReportError::TooManyGroups => "too_many_groups",
            ReportError::Store(_) => "unavailable",
        }
    }

    /// The request parameter at fault.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ReportError::UnknownDimension(_) => Some("group_by"),
            ReportError::UnknownZone(_) => Some("timezone"),
            ReportError::TooManyGroups | ReportError::Store(_) => None,
        }
    }
}

impl ReportQuery {
    /// A query over `from..to` (widened to whole hours), grouped by `group_by` (a
    /// comma-separated list; empty for totals), days and hours told in `zone`.
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: &str,
        zone: Zone,
    ) -> Result<ReportQuery, ReportError> {
        let mut dims: Vec<Dimension> = Vec::new();
        for part in group_by.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            // A dimension asked for twice groups the same as once.
            let dim: Dimension = part.parse()?;
            if !dims.contains(&dim) {
                dims.push(dim);
            }
        }
        let first = Hour::of(from);
        Ok(ReportQuery {
            from: first,
            to: Hour::ceil(to).max(first),
            group_by: dims,
            zone,
        })
    }

    /// The value of `dim` for a cell.
    fn value(&self, dim: Dimension, key: &StatsKey) -> Option<String> {
        match dim {
            Dimension::Provider => key.provider.clone(),
            Dimension::Operator => key.operator.map(|o| o.as_str().to_owned()),
            Dimension::Sender => Some(key.sender.as_str().to_owned()),
            Dimension::Batch => key.batch_id.as_ref().map(|b| b.as_str().to_owned()),
            // The campaign the batch would be; [`Analytics::report`] keeps only real ones.
            Dimension::Campaign => key
                .batch_id
                .as_ref()
                .map(|b| CampaignId::of_batch(b).to_string()),
            Dimension::Encoding => Some(key.encoding.as_str().to_owned()),
            Dimension::Day | Dimension::Hour => Some(self.period(dim, key.hour.start())),
        }
    }

    /// How the day or hour that starts at (or holds) `at` is told: `2026-12-01`, or the
    /// hour's start with the zone's offset.
    fn period(&self, time: Dimension, at: DateTime<Utc>) -> String {
        match time {
            Dimension::Day => self
                .zone
                .local(at)
                .date_naive()
                .format("%Y-%m-%d")
                .to_string(),
            _ => self.zone.local(at).to_rfc3339(),
        }
    }
}

/// One group of a report: the values it is grouped by (in the order asked), and its totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub values: Vec<Option<String>>,
    pub counters: Counters,
}

/// A report: the range it covers, and its groups in order (by time first where grouped by
/// time, then by the values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub query: ReportQuery,
    pub groups: Vec<Group>,
    /// The series had more points than a report holds: `query.to` was brought forward.
    pub truncated: bool,
}

/// Totals `cells` by `query`'s grouping. With no grouping, one group, even of nothing.
pub fn report(query: &ReportQuery, cells: &[(StatsKey, Counters)]) -> Result<Report, ReportError> {
    let mut totals = Totals::new(query);
    totals.add(cells)?;
    Ok(totals.finish())
}

/// A report being totalled: cells are added a slice at a time, so a long range is never
/// held in memory whole (only its groups are, at most [`MAX_GROUPS`]).
struct Totals {
    query: ReportQuery,
    groups: BTreeMap<Vec<Option<String>>, Counters>,
    truncated: bool,
}

impl Totals {
    fn new(query: &ReportQuery) -> Totals {
        let mut query = query.clone();
        let mut groups: BTreeMap<Vec<Option<String>>, Counters> = BTreeMap::new();
        let mut truncated = false;
        // A series over time alone shows its quiet hours and days too.
        if let [time] = query.group_by[..]
            && time.is_time()
        {
            let mut starts = periods(&query, time);
            if starts.len() > MAX_GROUPS {
                query.to = Hour::of(starts[MAX_GROUPS]);
                starts.truncate(MAX_GROUPS);
                truncated = true;
            }
            for start in starts {
                groups
                    .entry(vec![Some(query.period(time, start))])
                    .or_default();
            }
        }
        if query.group_by.is_empty() {
            groups.entry(Vec::new()).or_default();
        }
        Totals {
            query,
            groups,
            truncated,
        }
    }

    fn add(&mut self, cells: &[(StatsKey, Counters)]) -> Result<(), ReportError> {
        let query = &self.query;
        for (key, counters) in cells {
            if key.hour < query.from || key.hour >= query.to {
                continue;
            }
            let values: Vec<Option<String>> = query
                .group_by
                .iter()
                .map(|d| query.value(*d, key))
                .collect();
            if !self.groups.contains_key(&values) && self.groups.len() >= MAX_GROUPS {
                return Err(ReportError::TooManyGroups);
            }
            self.groups.entry(values).or_default().add(counters, 1);
        }
        Ok(())
    }

    fn finish(self) -> Report {
        let query = self.query;
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .map(|(values, counters)| Group { values, counters })
            .collect();
        // Hours told with an offset sort by their instants, not as text.
        if let Some(i) = query.group_by.iter().position(|d| *d == Dimension::Hour) {
            groups.sort_by_key(|g| {
                g.values[i]
                    .as_deref()
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                    .map(|t| t.with_timezone(&Utc))
            });
        }
        Report {
            query,
            groups,
            truncated: self.truncated,
        }
    }
}

/// Hours of statistics read from the store at a time.
const HOURS_PER_READ: i64 = 31 * 24;

/// The starts of the days or hours a query covers, up to one more than a report holds.
fn periods(query: &ReportQuery, time: Dimension) -> Vec<DateTime<Utc>> {
    let (from, to) = (query.from.start(), query.to.start());
    let mut out = Vec::new();
    if from >= to {
        return out;
    }
    match time {
        Dimension::Hour => {
            let mut hour = query.from;
            while hour < query.to && out.len() <= MAX_GROUPS {
                out.push(hour.start());
                hour = Hour(hour.0 + 1);
            }
        }
        _ => {
            let mut day = query.zone.local(from).date_naive();
            while out.len() <= MAX_GROUPS {
                let start = query.zone.day_start(day);
                if start >= to {
                    break;
                }
                out.push(start.max(from));
                match day.succ_opt() {
                    Some(next) => day = next,
                    None => break,
                }
            }
        }
    }
    out
}

/// Reports over a store's statistics.
pub struct Analytics {
    stats: Arc<dyn StatsStore>,
    campaigns: Arc<dyn CampaignStore>,
}

impl Analytics {
    pub fn new(stats: Arc<dyn StatsStore>, campaigns: Arc<dyn CampaignStore>) -> Self {
        Analytics { stats, campaigns }
    }

    /// The totals of one batch (a campaign's) over the hours `from` to `to`: only its cells
    /// are kept, however many other batches the hours hold.
    pub async fn batch_totals(
        &self,
        tenant: &TenantId,
        batch: &crate::domain::BatchId,
        from: Hour,
        to: Hour,
    ) -> Result<Counters, StoreError> {
        let mut totals = Counters::default();
        let Some((first, last)) = self.stats.extent(tenant).await? else {
            return Ok(totals);
        };
        let (mut at, to) = (from.max(first), to.min(Hour(last.0 + 1)));
        while at < to {
            let end = Hour(at.0.saturating_add(HOURS_PER_READ)).min(to);
            for (key, counters) in self.stats.stats(tenant, at, end).await? {
                if key.batch_id.as_ref() == Some(batch) {
                    totals.add(&counters, 1);
                }
            }
            at = end;
        }
        Ok(totals)
    }

    /// Groups by campaign keep the campaigns the tenant has; any other batch is told as no
    /// campaign (`null`), its totals merged with the messages sent in no batch.
    async fn only_campaigns(
        &self,
        tenant: &TenantId,
        report: Report,
    ) -> Result<Report, ReportError> {
        let Some(at) = report
            .query
            .group_by
            .iter()
            .position(|d| *d == Dimension::Campaign)
        else {
            return Ok(report);
        };
        let mut known: BTreeMap<String, bool> = BTreeMap::new();
        for group in &report.groups {
            if let Some(value) = &group.values[at]
                && !known.contains_key(value)
            {
                let exists = match value.parse::<CampaignId>() {
                    Ok(id) => self.campaigns.get(tenant, &id).await?.is_some(),
                    Err(_) => false,
                };
                known.insert(value.clone(), exists);
            }
        }
        let mut merged: Vec<Group> = Vec::with_capacity(report.groups.len());
        for mut group in report.groups {
            if let Some(value) = &group.values[at]
                && !known.get(value).copied().unwrap_or(false)
            {
                group.values[at] = None;
            }
            match merged.iter_mut().find(|g| g.values == group.values) {
                Some(same) => same.counters.add(&group.counters, 1),
                None => merged.push(group),
            }
        }
        Ok(Report {
            groups: merged,
            ..report
        })
    }

    pub async fn report(
        &self,
        tenant: &TenantId,
        query: &ReportQuery,
    ) -> Result<Report, ReportError> {
        let mut totals = Totals::new(query);
        // Only the hours that hold statistics are read, a month at a time: a range of
        // centuries costs what its data costs.
        if let Some((first, last)) = self.stats.extent(tenant).await? {
            let (from, to) = (
                totals.query.from.max(first),
                totals.query.to.min(Hour(last.0 + 1)),
            );
            let mut at = from;
            while at < to {
                let end = Hour(at.0.saturating_add(HOURS_PER_READ)).min(to);
                let cells = self.stats.stats(tenant, at, end).await?;
                totals.add(&cells)?;
                at = end;
            }
        }
        self.only_campaigns(tenant, totals.finish()).await
    }
}

// ---- What a report looks like outside: the API's JSON and `holub report --json`. ----

/// Percentiles of one latency, in milliseconds (each within 9% of the true value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencyView {
    /// Messages measured.
    pub count: i64,
    pub p50: Option<i64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
}

impl LatencyView {
    fn of(h: &Histogram) -> Self {
        LatencyView {
            count: h.count(),
            p50: h.quantile(0.50),
            p95: h.quantile(0.95),
            p99: h.quantile(0.99),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatenciesView {
    /// From acceptance to delivery.
    pub accepted_to_delivered: LatencyView,
    /// From the provider taking the message to delivery.
    pub sent_to_delivered: LatencyView,
}

/// The totals of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotalsView {
    /// Messages accepted in the range.
    pub messages: i64,
    /// Messages per status they have now (statuses with none are left out).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, i64>))]
    pub statuses: BTreeMap<MessageStatus, i64>,
    pub delivered: i64,
    /// Delivered out of those with an outcome (delivered, undelivered, expired, failed,
    /// rejected); `null` while none has one.
    pub delivery_rate: Option<f64>,
    /// SMS parts (segments) of the messages.
    pub parts: i64,
    /// Their cost as the providers reported it, in kopiykas.
    pub cost_kopiyky: i64,
    /// The same in hryvnias, as text (`"12.34"`).
    pub cost_uah: String,
    pub latency_ms: LatenciesView,
    /// Messages with a click by a person on a tracked link (unique clicks).
    pub clicked: i64,
    /// Clicks by people.
    pub clicks: i64,
    /// Clicks by link-preview fetchers and crawlers, counted apart.
    pub bot_clicks: i64,
    /// Click-through rate: messages clicked by a person out of those delivered; `null`
    /// while none is delivered.
    pub ctr: Option<f64>,
}

impl TotalsView {
    pub fn of(c: &Counters) -> Self {
        let delivered = c.count(MessageStatus::Delivered);
        let outcomes: i64 = [
            MessageStatus::Delivered,
            MessageStatus::Undelivered,
            MessageStatus::Expired,
            MessageStatus::Failed,
            MessageStatus::Rejected,
        ]
        .into_iter()
        .map(|s| c.count(s))
        .sum();
        TotalsView {
            messages: c.messages(),
            statuses: c.statuses.clone(),
            delivered,
            delivery_rate: (outcomes > 0)
                .then(|| (delivered as f64 / outcomes as f64 * 10_000.0).round() / 10_000.0),
            parts: c.parts,
            cost_kopiyky: c.cost,
            cost_uah: format!(
                "{}{}.{:02}",
                if c.cost < 0 { "-" } else { "" },
                c.cost.unsigned_abs() / 100,
                c.cost.unsigned_abs() % 100
            ),
            latency_ms: LatenciesView {
                accepted_to_delivered: LatencyView::of(&c.accepted_to_delivered),
                sent_to_delivered: LatencyView::of(&c.sent_to_delivered),
            },
            clicked: c.clicked,
            clicks: c.clicks,
            bot_clicks: c.bot_clicks,
            ctr: (delivered > 0)
                .then(|| (c.clicked as f64 / delivered as f64 * 10_000.0).round() / 10_000.0),
        }
    }
}

/// One group: the values it is grouped by, and its totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupView {
    /// The group's value of each dimension asked for (`null`: none, e.g. no provider yet).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, Option<String>>))]
    pub group: BTreeMap<Dimension, Option<String>>,
    #[serde(flatten)]
    pub totals: TotalsView,
}

/// A report as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportView {
    /// The range covered: whole hours.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub timezone: Zone,
    pub group_by: Vec<Dimension>,
    /// The series had more points than one report holds (10,000): `to` was brought forward
    /// to where it stops; ask again from there for the rest.
    pub truncated: bool,
    /// All groups together.
    pub totals: TotalsView,
    pub groups: Vec<GroupView>,
}

impl ReportView {
    pub fn of(report: &Report) -> Self {
        let mut all = Counters::default();
        let groups = report
            .groups
            .iter()
            .map(|g| {
                all.add(&g.counters, 1);
                GroupView {
                    group: report
                        .query
                        .group_by
                        .iter()
                        .copied()
                        .zip(g.values.iter().cloned())
                        .collect(),
                    totals: TotalsView::of(&g.counters),
                }
            })
            .collect();
        ReportView {
            from: report.query.from.start(),
            to: report.query.to.start(),
            timezone: report.query.zone,
            group_by: report.query.group_by.clone(),
            truncated: report.truncated,
            totals: TotalsView::of(&all),
            groups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::stats::Snapshot;
    use crate::domain::{Encoding, Operator, SenderId};
    use chrono::Duration;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap()
    }

    fn cell(created: DateTime<Utc>, provider: &str, status: MessageStatus) -> (StatsKey, Counters) {
        let c = Snapshot {
            tenant_id: "ten_01JAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap(),
            created_at: created,
            provider: Some(provider.into()),
            operator: Some(Operator::Vodafone),
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
    fn totals_group_and_fill_quiet_days_in_kyiv_time() {
        let cells = vec![
            cell(at(22, 30), "turbosms", MessageStatus::Delivered), // Kyiv: Dec 1, 00:30
            cell(at(21, 10), "turbosms", MessageStatus::Undelivered), // Kyiv: Nov 30, 23:10
            cell(at(20, 50), "smsfly", MessageStatus::Delivered),
        ];
        let q = ReportQuery::new(at(0, 0), at(23, 59), "", Zone::Kyiv).unwrap();
        let r = report(&q, &cells).unwrap();
        assert_eq!(r.groups.len(), 1);
        let totals = TotalsView::of(&r.groups[0].counters);
        assert_eq!((totals.messages, totals.delivered), (3, 2));
        assert_eq!(totals.delivery_rate, Some(0.6667));
        assert_eq!(totals.cost_uah, "1.50");
        assert_eq!(totals.latency_ms.accepted_to_delivered.count, 2);

        let q = ReportQuery::new(at(0, 0), at(23, 59), "day,provider", Zone::Kyiv).unwrap();
        let r = report(&q, &cells).unwrap();
        let rows: Vec<_> = r.groups.iter().map(|g| g.values.clone()).collect();
        assert_eq!(
            rows,
            [
                vec![Some("2026-11-30".into()), Some("smsfly".into())],
                vec![Some("2026-11-30".into()), Some("turbosms".into())],
                vec![Some("2026-12-01".into()), Some("turbosms".into())],
            ]
        );
        let q = ReportQuery::new(at(0, 0), at(23, 59), "day", Zone::Utc).unwrap();
        let r = report(&q, &cells).unwrap();
        assert_eq!(r.groups.len(), 1, "one UTC day");
        let q = ReportQuery::new(at(0, 0), at(23, 59), "hour", Zone::Kyiv).unwrap();
        let r = report(&q, &cells).unwrap();
        assert_eq!(r.groups.len(), 24, "every hour, quiet or not");
        assert_eq!(
            r.groups[0].values[0].as_deref(),
            Some("2026-11-30T02:00:00+02:00")
        );
    }

    #[test]
    fn bad_queries_are_refused_with_their_codes() {
        let z = Zone::Kyiv;
        let code = |r: Result<ReportQuery, ReportError>| r.unwrap_err().code();
        assert_eq!(
            code(ReportQuery::new(at(1, 0), at(2, 0), "planet", z)),
            "group_by_unknown"
        );
        let q = ReportQuery::new(at(1, 0), at(2, 0), "sender,day,sender", z).unwrap();
        assert_eq!(q.group_by, [Dimension::Sender, Dimension::Day]);
        assert_eq!(
            "Mars/Base".parse::<Zone>().unwrap_err().code(),
            "timezone_unknown"
        );
        let q = ReportQuery::new(at(1, 10), at(2, 5), "", z).unwrap();
        assert_eq!((q.from.start(), q.to.start()), (at(1, 0), at(3, 0)));
        // Backwards: no hour at all.
        let q = ReportQuery::new(at(5, 10), at(2, 5), "hour", z).unwrap();
        assert_eq!((q.from, q.to), (Hour::of(at(5, 0)), Hour::of(at(5, 0))));
        assert!(report(&q, &[]).unwrap().groups.is_empty());
    }

    #[test]
    fn a_series_longer_than_a_report_holds_is_cut_short_and_says_where() {
        let q =
            ReportQuery::new(at(0, 0), at(0, 0) + Duration::days(3650), "hour", Zone::Utc).unwrap();
        let r = report(&q, &[cell(at(1, 0), "turbosms", MessageStatus::Sent)]).unwrap();
        assert!(r.truncated);
        assert_eq!(r.groups.len(), MAX_GROUPS);
        assert_eq!(r.query.to, Hour(r.query.from.0 + MAX_GROUPS as i64));
        assert_eq!(TotalsView::of(&r.groups[1].counters).messages, 1);
        let days =
            ReportQuery::new(at(0, 0), at(0, 0) + Duration::days(3650), "day", Zone::Kyiv).unwrap();
        assert!(!report(&days, &[]).unwrap().truncated);
    }
}
