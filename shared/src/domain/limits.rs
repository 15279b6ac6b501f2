//! A tenant's abuse limits: what a leaked key can do at most. Where messages may go, how fast,
//! how much they may cost a day and a month, and how often one number may be written to.
//!
//! The operator sets them (`holub tenant limits`); a tenant reads its own (`GET /v1/limits`)
//! but cannot raise them, since a leaked key must not lift the caps that bound its damage.
//! The same record carries two choices that are the account's own, as they bound nothing:
//! the window marketing messages go out in, and the account's status callback.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{CountryCode, Kopiyky, MessageStatus, SendingWindow, StatusSet};

/// The account's status callback: where a message that names no `callback_url` of its own
/// is called back, and about which statuses (every one when absent). The URL was checked as
/// a message's `callback_url` is when it was set; it applies to messages accepted after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StatusCallback {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<BTreeSet<MessageStatus>>,
}

impl StatusCallback {
    /// The statuses told about.
    pub fn status_set(&self) -> StatusSet {
        match &self.statuses {
            None => StatusSet::ALL,
            Some(list) => StatusSet::of(list.iter().copied()),
        }
    }
}

/// The limits of one tenant. Every field has a range; [`TenantLimits::set`] and the
/// deserialiser hold to it, so a stored or typed value out of range is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, try_from = "RawLimits")]
pub struct TenantLimits {
    /// Countries messages may go to (ISO 3166-1 alpha-2). Default: Ukraine only.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, example = json!(["UA"])))]
    pub countries: BTreeSet<CountryCode>,
    /// Messages accepted per second, on average (the token bucket's refill).
    pub rate_per_second: u32,
    /// Messages accepted at once when the bucket is full (its size). A batch larger than
    /// this can never be accepted.
    pub burst: u32,
    /// What the messages accepted in one Kyiv calendar day may cost at most, in kopiykas.
    pub daily_spend_kopiyky: i64,
    /// What the messages accepted in one Kyiv calendar month may cost at most, in kopiykas.
    pub monthly_spend_kopiyky: i64,
    /// What one segment is counted at against the caps, in kopiykas.
    pub segment_price_kopiyky: i64,
    /// Messages to one number in one clock hour at most (against OTP pumping).
    pub per_number_per_hour: u32,
    /// Days a final message is kept (with its number and text, sealed) before it is deleted;
    /// absent: the installation's `HOLUB_MESSAGE_RETENTION_DAYS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub retention_days: Option<u32>,
    /// When marketing messages may go out, on Kyiv's clock (`HH:MM-HH:MM`); one that reaches
    /// dispatch outside waits for the window to open. Transactional messages never wait.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "09:00-21:00"))]
    pub marketing_window: SendingWindow,
    /// The account's status callback, if it set one (`PUT /v1/webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<StatusCallback>,
}

/// The ranges each limit must be in.
pub const MAX_RATE: u32 = 100_000;
pub const MAX_BURST: u32 = 10_000_000;
pub const MAX_SPEND: i64 = 1_000_000_000_000;
pub const MAX_SEGMENT_PRICE: i64 = 100_000;
pub const MAX_PER_NUMBER: u32 = 1_000_000;
pub const MAX_RETENTION_DAYS: u32 = 3650;

impl Default for TenantLimits {
    /// Ukraine only; 100 messages a second with bursts of 10,000 (one full batch);
    /// 10,000 UAH a day and 100,000 UAH a month at 1 UAH a segment; 10 messages an hour to
    /// one number.
    fn default() -> Self {
        TenantLimits {
            countries: BTreeSet::from([CountryCode::UKRAINE]),
            rate_per_second: 100,
            burst: 10_000,
            daily_spend_kopiyky: 1_000_000,
            monthly_spend_kopiyky: 10_000_000,
            segment_price_kopiyky: 100,
            per_number_per_hour: 10,
            retention_days: None,
            marketing_window: SendingWindow::default(),
            status_callback: None,
        }
    }
}

impl TenantLimits {
    /// The limits of a tenant the operator set none for. Where Holub serves others (AWS),
    /// [`TenantLimits::default`]. On one machine, where the operator is the one sending, the
    /// rate, per-number and spend limits are as wide as they go and only the destination
    /// policy holds (`holub tenant limits` narrows any of them).
    pub fn defaults_for(embedded: bool) -> Self {
        if !embedded {
            return TenantLimits::default();
        }
        TenantLimits {
            rate_per_second: MAX_RATE,
            burst: MAX_BURST,
            daily_spend_kopiyky: MAX_SPEND,
            monthly_spend_kopiyky: MAX_SPEND,
            per_number_per_hour: MAX_PER_NUMBER,
            ..TenantLimits::default()
        }
    }
}

/// A limit refused by name, for a person: `rate_per_second must be 1 to 100000`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    countries: BTreeSet<CountryCode>,
    rate_per_second: u32,
    burst: u32,
    daily_spend_kopiyky: i64,
    monthly_spend_kopiyky: i64,
    segment_price_kopiyky: i64,
    per_number_per_hour: u32,
    #[serde(default)]
    retention_days: Option<u32>,
    #[serde(default)]
    marketing_window: SendingWindow,
    #[serde(default)]
    status_callback: Option<StatusCallback>,
}

impl TryFrom<RawLimits> for TenantLimits {
    type Error = LimitError;
    fn try_from(r: RawLimits) -> Result<Self, Self::Error> {
        let limits = TenantLimits {
            countries: r.countries,
            rate_per_second: r.rate_per_second,
            burst: r.burst,
            daily_spend_kopiyky: r.daily_spend_kopiyky,
            monthly_spend_kopiyky: r.monthly_spend_kopiyky,
            segment_price_kopiyky: r.segment_price_kopiyky,
            per_number_per_hour: r.per_number_per_hour,
            retention_days: r.retention_days,
            marketing_window: r.marketing_window,
            status_callback: r.status_callback,
        };
        limits.check()?;
        Ok(limits)
    }
}

fn in_range<T: PartialOrd + fmt::Display>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), LimitError> {
    if v < lo || v > hi {
        return Err(LimitError(format!("{name} must be {lo} to {hi}")));
    }
    Ok(())
}

impl TenantLimits {
    /// The names [`TenantLimits::set`] takes.
    pub const NAMES: [&'static str; 9] = [
        "countries",
        "rate_per_second",
        "burst",
        "daily_spend_kopiyky",
        "monthly_spend_kopiyky",
        "segment_price_kopiyky",
        "per_number_per_hour",
        "retention_days",
        "marketing_window",
    ];

    fn check(&self) -> Result<(), LimitError> {
        if self.countries.is_empty() {
            return Err(LimitError(
                "countries must name at least one country".into(),
            ));
        }
        in_range("rate_per_second", self.rate_per_second, 1, MAX_RATE)?;
        in_range("burst", self.burst, 1, MAX_BURST)?;
        in_range(
            "daily_spend_kopiyky",
            self.daily_spend_kopiyky,
            0,
            MAX_SPEND,
        )?;
        in_range(
            "monthly_spend_kopiyky",
            self.monthly_spend_kopiyky,
            0,
            MAX_SPEND,
        )?;
        in_range(
            "segment_price_kopiyky",
            self.segment_price_kopiyky,
            0,
            MAX_SEGMENT_PRICE,
        )?;
        in_range(
            "per_number_per_hour",
            self.per_number_per_hour,
            1,
            MAX_PER_NUMBER,
        )?;
        match self.retention_days {
            Some(days) => in_range("retention_days", days, 1, MAX_RETENTION_DAYS),
            None => Ok(()),
        }
    }

    /// Sets one limit from text, as the command line gives it: `countries=UA,PL`,
    /// `rate_per_second=50`, … Nothing changes if the value is refused.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), LimitError> {
        let mut next = self.clone();
        let number = |v: &str| {
            v.trim()
                .replace('_', "")
                .parse::<i64>()
                .map_err(|_| LimitError(format!("{name} must be a whole number, not {v:?}")))
        };
        let small = |v: &str| {
            u32::try_from(number(v)?)
                .map_err(|_| LimitError(format!("{name} is out of range: {v:?}")))
        };
        match name {
            "countries" => {
                next.countries = value
                    .split(',')
                    .map(|c| c.trim().parse::<CountryCode>().map_err(LimitError))
                    .collect::<Result<_, _>>()?;
            }
            "rate_per_second" => next.rate_per_second = small(value)?,
            "burst" => next.burst = small(value)?,
            "daily_spend_kopiyky" => next.daily_spend_kopiyky = number(value)?,
            "monthly_spend_kopiyky" => next.monthly_spend_kopiyky = number(value)?,
            "segment_price_kopiyky" => next.segment_price_kopiyky = number(value)?,
            "per_number_per_hour" => next.per_number_per_hour = small(value)?,
            // `default`: the installation's retention again.
            "retention_days" if value.trim() == "default" => next.retention_days = None,
            "retention_days" => next.retention_days = Some(small(value)?),
            "marketing_window" => {
                next.marketing_window = value
                    .parse()
                    .map_err(|e: super::window::WindowError| LimitError(format!("{name}: {e}")))?;
            }
            _ => {
                return Err(LimitError(format!(
                    "no limit is called {name:?}; the limits are {}",
                    Self::NAMES.join(", ")
                )));
            }
        }
        next.check()?;
        *self = next;
        Ok(())
    }

    /// What `segments` segments are counted at against the spend caps.
    pub fn cost(&self, segments: u64) -> Kopiyky {
        let segments = i64::try_from(segments).unwrap_or(i64::MAX);
        Kopiyky(segments.saturating_mul(self.segment_price_kopiyky))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_set_by_name_within_their_ranges() {
        let mut l = TenantLimits::default();
        l.set("countries", "ua, pl").unwrap();
        l.set("rate_per_second", "50").unwrap();
        l.set("daily_spend_kopiyky", "1_000_00").unwrap();
        l.set("marketing_window", "08:00-20:30").unwrap();
        assert_eq!(l.marketing_window.to_string(), "08:00-20:30");
        assert_eq!(l.countries.len(), 2);
        assert_eq!((l.rate_per_second, l.daily_spend_kopiyky), (50, 100_000));
        let before = l.clone();
        for (name, value) in [
            ("countries", ""),
            ("countries", "UKR"),
            ("rate_per_second", "0"),
            ("rate_per_second", "-1"),
            ("burst", "99999999999"),
            ("daily_spend_kopiyky", "-5"),
            ("per_number_per_hour", "many"),
            ("colour", "blue"),
            ("marketing_window", "20:00-08:00"),
        ] {
            assert!(l.set(name, value).is_err(), "{name}={value}");
        }
        assert_eq!(l, before, "a refused value changes nothing");
    }

    #[test]
    fn stored_limits_out_of_range_are_refused() {
        let json = serde_json::to_value(TenantLimits::default()).unwrap();
        let back: TenantLimits = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, TenantLimits::default());
        let mut bad = json.clone();
        bad["burst"] = 0.into();
        assert!(serde_json::from_value::<TenantLimits>(bad).is_err());
        let mut extra = json;
        extra["colour"] = "blue".into();
        assert!(serde_json::from_value::<TenantLimits>(extra).is_err());
    }

    #[test]
    fn cost_saturates() {
        let l = TenantLimits::default();
        assert_eq!(l.cost(3), Kopiyky(300));
        assert_eq!(l.cost(u64::MAX), Kopiyky(i64::MAX));
    }
}
