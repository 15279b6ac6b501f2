//! Statistics of a tenant's messages: what the analytics rollup folds status events into and
//! what the reports read.
//!
//! A message **contributes** to exactly one cell: its tenant, the UTC hour it was accepted in,
//! and its provider, operator, sender, batch and encoding. The contribution is one count for
//! its current status, its parts, its cost, and its delivery latencies if it was delivered.
//! A status event (old state → new state of one message) is folded in as the new state's
//! contribution minus the old one's, so the statistics are always the sum of every message's
//! current contribution: a report equals a recomputation from the messages themselves, and a
//! stored total never depends on how many events there were or in what order they came.
//!
//! Latencies are kept as mergeable histograms (logarithmic buckets, 8 per doubling, so a
//! percentile read from one is within 9% of the true value) which add and subtract exactly.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{BatchId, TenantId};
use super::phone::Operator;
use super::segments::Encoding;
use super::sender::SenderId;
use super::status::MessageStatus;

/// An hour of UTC time, as hours since the Unix epoch. Kyiv's offset is a whole number of
/// hours, so Kyiv days and UTC days are both unions of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hour(pub i64);

impl Hour {
    /// The hour `at` falls in.
    pub fn of(at: DateTime<Utc>) -> Hour {
        Hour(at.timestamp().div_euclid(3600))
    }

    /// The first hour that starts at or after `at`.
    pub fn ceil(at: DateTime<Utc>) -> Hour {
        Hour((at.timestamp() + 3599).div_euclid(3600)).max(Hour::of(at))
    }

    pub fn start(self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.0.saturating_mul(3600), 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// The cell a message counts in, within its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsKey {
    pub hour: Hour,
    /// `None` until a provider took (or was tried for) the message.
    pub provider: Option<String>,
    /// The operator of the recipient's prefix; `None` for messages stored before Holub kept it.
    pub operator: Option<Operator>,
    pub sender: SenderId,
    pub batch_id: Option<BatchId>,
    pub encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a statistics key: {0:?}")]
pub struct BadStatsKey(pub String);

const NONE: &str = "-";

impl StatsKey {
    /// The key as one string that sorts by hour first: `<hour>|<provider>|<operator>|
    /// <sender>|<batch>|<encoding>`, `-` for what is absent. None of the parts can hold `|`
    /// or be `-` (provider names are letters, digits, `-` and `_`, never only `-`).
    pub fn encode(&self) -> String {
        format!(
            "{:010}|{}|{}|{}|{}|{}",
            self.hour.0,
            self.provider.as_deref().unwrap_or(NONE),
            self.operator.map(Operator::as_str).unwrap_or(NONE),
            self.sender.as_str(),
            self.batch_id.as_ref().map(BatchId::as_str).unwrap_or(NONE),
            self.encoding.as_str(),
        )
    }

    /// The prefix of [`StatsKey::encode`] that every key of `hour` starts with.
    pub fn hour_prefix(hour: Hour) -> String {
        format!("{:010}|", hour.0)
    }

    /// The hour of an encoded key, read from its prefix alone.
    pub fn hour_of(encoded: &str) -> Result<Hour, BadStatsKey> {
        encoded
            .split('|')
            .next()
            .and_then(|h| h.parse().ok())
            .map(Hour)
            .ok_or_else(|| BadStatsKey(encoded.to_owned()))
    }

    pub fn decode(s: &str) -> Result<StatsKey, BadStatsKey> {
        let bad = || BadStatsKey(s.to_owned());
        let parts: Vec<&str> = s.split('|').collect();
        let [hour, provider, operator, sender, batch, encoding] = parts[..] else {
            return Err(bad());
        };
        let optional = |p: &str| (p != NONE).then(|| p.to_owned());
        Ok(StatsKey {
            hour: Hour(hour.parse().map_err(|_| bad())?),
            provider: optional(provider),
            operator: match operator {
                NONE => None,
                o => Some(o.parse::<Operator>().map_err(|_| bad())?),
            },
            sender: SenderId::parse(sender).map_err(|_| bad())?,
            batch_id: optional(batch)
                .map(|b| b.parse::<BatchId>())
                .transpose()
                .map_err(|_| bad())?,
            encoding: match encoding {
                "GSM-7" => Encoding::Gsm7,
                "UCS-2" => Encoding::Ucs2,
                _ => return Err(bad()),
            },
        })
    }
}

/// A latency histogram: counts per logarithmic bucket of milliseconds. Bucket 0 holds 0 ms;
/// bucket `b ≥ 1` holds `(2^((b-1)/8), 2^(b/8)]` ms. Counts may go negative inside a delta
/// (an old contribution taken away) but never in stored totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Histogram(pub BTreeMap<u16, i64>);

/// Buckets per doubling.
const PER_DOUBLING: f64 = 8.0;

impl Histogram {
    /// The bucket of a latency of `ms` milliseconds.
    pub fn bucket(ms: i64) -> u16 {
        if ms <= 1 {
            return u16::from(ms > 0);
        }
        // log2 of an i64 is below 64, so the bucket fits easily.
        ((ms as f64).log2() * PER_DOUBLING)
            .ceil()
            .clamp(1.0, 1000.0) as u16
    }

    /// The largest latency (ms) bucket `b` holds: what a percentile falling in it reads as.
    pub fn upper_ms(bucket: u16) -> i64 {
        if bucket == 0 {
            return 0;
        }
        (f64::from(bucket) / PER_DOUBLING).exp2().floor() as i64
    }

    pub fn record(&mut self, ms: i64, count: i64) {
        *self.0.entry(Histogram::bucket(ms)).or_insert(0) += count;
    }

    pub fn add(&mut self, other: &Histogram, sign: i64) {
        for (bucket, n) in &other.0 {
            let entry = self.0.entry(*bucket).or_insert(0);
            *entry += n * sign;
            if *entry == 0 {
                self.0.remove(bucket);
            }
        }
    }

    pub fn count(&self) -> i64 {
        self.0.values().sum()
    }

    /// The latency (ms) at or below which `q` (0..=1) of the samples lie; `None` without any.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        let total = self.count();
        if total <= 0 {
            return None;
        }
        // The rank of the sample, 1-based: the smallest bucket whose running count reaches it.
        let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
        let mut seen = 0;
        for (bucket, n) in &self.0 {
            seen += n;
            if seen >= rank {
                return Some(Histogram::upper_ms(*bucket));
            }
        }
        self.0.keys().next_back().map(|b| Histogram::upper_ms(*b))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the messages of one cell add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages per current status (absent: none).
    #[serde(rename = "st", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statuses: BTreeMap<MessageStatus, i64>,
    /// Parts (segments) of those messages.
    #[serde(rename = "pa", default)]
    pub parts: i64,
    /// Their cost in kopiykas, as the providers reported it.
    #[serde(rename = "co", default)]
    pub cost: i64,
    /// Accepted → delivered, of delivered messages.
    #[serde(rename = "ad", default, skip_serializing_if = "Histogram::is_empty")]
    pub accepted_to_delivered: Histogram,
    /// Sent → delivered, of delivered messages that were recorded as sent.
    #[serde(rename = "sd", default, skip_serializing_if = "Histogram::is_empty")]
    pub sent_to_delivered: Histogram,
    /// Messages with a click by a person on a tracked link (unique clicks).
    #[serde(rename = "cu", default, skip_serializing_if = "is_zero")]
    pub clicked: i64,
    /// Clicks by people.
    #[serde(rename = "cl", default, skip_serializing_if = "is_zero")]
    pub clicks: i64,
    /// Clicks by link-preview fetchers and crawlers, counted apart.
    #[serde(rename = "cb", default, skip_serializing_if = "is_zero")]
    pub bot_clicks: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Counters {
    /// Adds `other` times `sign` (1 to add, -1 to take away).
    pub fn add(&mut self, other: &Counters, sign: i64) {
        for (status, n) in &other.statuses {
            let entry = self.statuses.entry(*status).or_insert(0);
            *entry += n * sign;
            if *entry == 0 {
                self.statuses.remove(status);
            }
        }
        self.parts += other.parts * sign;
        self.cost += other.cost * sign;
        self.accepted_to_delivered
            .add(&other.accepted_to_delivered, sign);
        self.sent_to_delivered.add(&other.sent_to_delivered, sign);
        self.clicked += other.clicked * sign;
        self.clicks += other.clicks * sign;
        self.bot_clicks += other.bot_clicks * sign;
    }

    pub fn is_zero(&self) -> bool {
        *self == Counters::default()
    }

    pub fn messages(&self) -> i64 {
        self.statuses.values().sum()
    }

    pub fn count(&self, status: MessageStatus) -> i64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// The plain facts of one message that its contribution depends on: nothing sealed, so a
/// store can read them from a row, an item or a stream image without the tenant's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tenant_id: TenantId,
    pub created_at: DateTime<Utc>,
    pub provider: Option<String>,
    pub operator: Option<Operator>,
    pub sender: SenderId,
    pub batch_id: Option<BatchId>,
    pub encoding: Encoding,
    pub segments: u16,
    pub status: MessageStatus,
    pub cost: Option<i64>,
    /// When the message was last recorded `sent`, if ever.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was recorded `delivered`, if it was.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Clicks on its tracked links by people, and by preview fetchers.
    pub clicks: u32,
    pub bot_clicks: u32,
}

/// One message's share of the statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub tenant_id: TenantId,
    pub key: StatsKey,
    pub counters: Counters,
}

impl Snapshot {
    /// The snapshot of a whole message (what a recomputation from the message log reads).
    pub fn of(m: &super::Message) -> Snapshot {
        let (sent_at, delivered_at) = Snapshot::moments(m.history.iter().map(|c| (c.status, c.at)));
        Snapshot {
            tenant_id: m.tenant_id.clone(),
            created_at: m.created_at,
            provider: m.provider.clone(),
            operator: Some(m.to.operator()),
            sender: m.from.clone(),
            batch_id: m.batch_id.clone(),
            encoding: m.encoding,
            segments: m.segments,
            status: m.status,
            cost: m.cost.map(|c| c.0),
            sent_at,
            delivered_at,
            clicks: m.clicks,
            bot_clicks: m.bot_clicks,
        }
    }

    /// The moments of `history` this snapshot needs: the last `sent`, the `delivered`.
    pub fn moments<'a>(
        history: impl IntoIterator<Item = (MessageStatus, DateTime<Utc>)> + 'a,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mut sent = None;
        let mut delivered = None;
        for (status, at) in history {
            match status {
                MessageStatus::Sent => sent = Some(at),
                MessageStatus::Delivered => delivered = Some(at),
                _ => {}
            }
        }
        (sent, delivered)
    }

    pub fn contribution(&self) -> Contribution {
        let mut counters = Counters {
            parts: i64::from(self.segments),
            cost: self.cost.unwrap_or(0),
            clicked: i64::from(self.clicks > 0),
            clicks: i64::from(self.clicks),
            bot_clicks: i64::from(self.bot_clicks),
            ..Counters::default()
        };
        counters.statuses.insert(self.status, 1);
        if self.status == MessageStatus::Delivered
            && let Some(delivered) = self.delivered_at
        {
            let ms = |from: DateTime<Utc>| (delivered - from).num_milliseconds().max(0);
            counters
                .accepted_to_delivered
                .record(ms(self.created_at), 1);
            if let Some(sent) = self.sent_at {
                counters.sent_to_delivered.record(ms(sent), 1);
            }
        }
        Contribution {
            tenant_id: self.tenant_id.clone(),
            key: StatsKey {
                hour: Hour::of(self.created_at),
                provider: self.provider.clone(),
                operator: self.operator,
                sender: self.sender.clone(),
                batch_id: self.batch_id.clone(),
                encoding: self.encoding,
            },
            counters,
        }
    }
}

/// Changes to the statistics, per tenant and cell, gathered before they are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas(pub BTreeMap<(TenantId, StatsKey), Counters>);

impl Deltas {
    /// Adds `contribution` times `sign`.
    pub fn add(&mut self, contribution: &Contribution, sign: i64) {
        let cell = (contribution.tenant_id.clone(), contribution.key.clone());
        let entry = self.0.entry(cell).or_default();
        entry.add(&contribution.counters, sign);
    }

    /// One message going from `old` (absent: new to the statistics) to `new` (absent: gone).
    pub fn change(&mut self, old: Option<&Snapshot>, new: Option<&Snapshot>) {
        let old = old.map(Snapshot::contribution);
        let new = new.map(Snapshot::contribution);
        if old == new {
            return;
        }
        if let Some(old) = &old {
            self.add(old, -1);
        }
        if let Some(new) = &new {
            self.add(new, 1);
        }
    }

    /// The cells that change, without those whose changes cancelled out.
    pub fn into_cells(self) -> impl Iterator<Item = ((TenantId, StatsKey), Counters)> {
        self.0.into_iter().filter(|(_, c)| !c.is_zero())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.start().format("%Y-%m-%dT%H:00Z"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn snapshot(status: MessageStatus) -> Snapshot {
        let created = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        Snapshot {
            tenant_id: "ten_01JAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap(),
            created_at: created,
            provider: Some("turbosms".into()),
            operator: Some(Operator::Kyivstar),
            sender: SenderId::parse("Holub").unwrap(),
            batch_id: None,
            encoding: Encoding::Ucs2,
            segments: 2,
            status,
            cost: Some(170),
            sent_at: Some(created + Duration::seconds(1)),
            delivered_at: (status == MessageStatus::Delivered)
                .then(|| created + Duration::seconds(4)),
            clicks: 0,
            bot_clicks: 0,
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_hour() {
        let key = snapshot(MessageStatus::Sent).contribution().key;
        let encoded = key.encode();
        assert!(encoded.starts_with(&StatsKey::hour_prefix(key.hour)));
        assert_eq!(StatsKey::decode(&encoded).unwrap(), key);
        assert_eq!(StatsKey::hour_of(&encoded).unwrap(), key.hour);
        let bare = StatsKey {
            provider: None,
            operator: None,
            ..key.clone()
        };
        assert_eq!(StatsKey::decode(&bare.encode()).unwrap(), bare);
        for bad in ["", "1|2", "x|-|-|Holub|-|GSM-7", "1|-|mars|Holub|-|GSM-7"] {
            assert!(StatsKey::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_change_moves_one_count_and_cancels_what_stayed() {
        let mut deltas = Deltas::default();
        deltas.change(None, Some(&snapshot(MessageStatus::Sent)));
        deltas.change(
            Some(&snapshot(MessageStatus::Sent)),
            Some(&snapshot(MessageStatus::Delivered)),
        );
        let cells: Vec<_> = deltas.into_cells().collect();
        assert_eq!(cells.len(), 1);
        let counters = &cells[0].1;
        assert_eq!(counters.count(MessageStatus::Delivered), 1);
        assert_eq!(counters.count(MessageStatus::Sent), 0);
        assert_eq!((counters.parts, counters.cost), (2, 170));
        assert_eq!(counters.accepted_to_delivered.quantile(0.5), Some(4096));
        assert_eq!(counters.sent_to_delivered.count(), 1);
        // The same change again is no change.
        let mut again = Deltas::default();
        let delivered = snapshot(MessageStatus::Delivered);
        again.change(Some(&delivered), Some(&delivered));
        assert!(again.is_empty());
    }

    #[test]
    fn histogram_buckets_bound_the_error_and_quantiles_read_ranks() {
        for ms in [1_i64, 2, 3, 7, 100, 999, 1000, 65_000, 86_400_000] {
            let upper = Histogram::upper_ms(Histogram::bucket(ms));
            assert!(
                upper >= ms - 1 && (upper as f64) <= ms as f64 * 1.091 + 1.0,
                "{ms}"
            );
        }
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms * 10, 1);
        }
        let p50 = h.quantile(0.5).unwrap();
        let p99 = h.quantile(0.99).unwrap();
        assert!((500..=546).contains(&p50), "{p50}");
        assert!((990..=1080).contains(&p99), "{p99}");
        let mut gone = h.clone();
        gone.add(&h, -1);
        assert!(gone.is_empty());
        assert_eq!(gone.quantile(0.5), None);
    }
}
