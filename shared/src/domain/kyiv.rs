//! Kyiv local time, the clock Ukrainian providers write their dates in.
//!
//! The rules come from the tz database's `Europe/Kyiv` (bundled, so every process reads the
//! same ones): today EET/EEST with the EU switch, UTC+3 from 01:00 UTC on the last Sunday
//! of March to 01:00 UTC on the last Sunday of October and UTC+2 otherwise. Holub does not
//! write that rule down itself, so a change in Ukrainian law is a dependency update.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use jiff::tz::TimeZone;

/// The tz database's name of the zone.
pub const ZONE: &str = "Europe/Kyiv";

static KYIV: LazyLock<TimeZone> = LazyLock::new(|| {
    // The database is compiled in; the fixed standard offset is only a guard.
    TimeZone::get(ZONE).unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(2)))
});

/// Kyiv's offset from UTC at `at`.
pub fn offset_at(at: DateTime<Utc>) -> FixedOffset {
    let seconds = jiff::Timestamp::from_second(at.timestamp())
        .map(|ts| KYIV.to_offset(ts).seconds())
        .unwrap_or(2 * 3600);
    FixedOffset::east_opt(seconds).unwrap_or_else(|| FixedOffset::east_opt(2 * 3600).unwrap())
}

/// The wall-clock time in Kyiv at `at`.
pub fn to_local(at: DateTime<Utc>) -> NaiveDateTime {
    at.with_timezone(&offset_at(at)).naive_local()
}

/// `at` with Kyiv's offset at that instant.
pub fn fixed(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&offset_at(at))
}

/// The instant of a Kyiv wall-clock time. The hour that repeats in autumn is read as summer
/// time (the earlier instant); a time skipped in spring is read with the winter offset.
pub fn from_local(local: NaiveDateTime) -> DateTime<Utc> {
    let winter = || (local - chrono::Duration::hours(2)).and_utc();
    let Ok(civil) = to_civil(local) else {
        return winter();
    };
    KYIV.to_ambiguous_timestamp(civil)
        .compatible()
        .ok()
        .and_then(|ts| DateTime::from_timestamp(ts.as_second(), 0))
        .unwrap_or_else(winter)
}

fn to_civil(local: NaiveDateTime) -> Result<jiff::civil::DateTime, jiff::Error> {
    use chrono::{Datelike, Timelike};
    let narrow = |v: u32| i8::try_from(v).unwrap_or(i8::MAX);
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).unwrap_or(i16::MAX),
        narrow(local.month()),
        narrow(local.day()),
        narrow(local.hour()),
        narrow(local.minute()),
        narrow(local.second()),
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn summer_time_starts_at_one_utc_on_the_last_sunday_of_march() {
        // 2026-03-29 is the last Sunday of March.
        assert_eq!(
            offset_at(utc(2026, 3, 29, 0, 59)).local_minus_utc(),
            2 * 3600
        );
        assert_eq!(
            offset_at(utc(2026, 3, 29, 1, 0)).local_minus_utc(),
            3 * 3600
        );
        assert_eq!(
            to_local(utc(2026, 3, 29, 0, 59)),
            local("2026-03-29 02:59:00")
        );
        assert_eq!(
            to_local(utc(2026, 3, 29, 1, 0)),
            local("2026-03-29 04:00:00")
        );
        assert_eq!(
            from_local(local("2026-03-29 04:00:00")),
            utc(2026, 3, 29, 1, 0)
        );
        // 03:30 does not exist that day: read with the winter offset.
        assert_eq!(
            from_local(local("2026-03-29 03:30:00")),
            utc(2026, 3, 29, 1, 30)
        );
    }

    #[test]
    fn summer_time_ends_at_one_utc_on_the_last_sunday_of_october() {
        // 2026-10-25 is the last Sunday of October.
        assert_eq!(
            offset_at(utc(2026, 10, 25, 0, 59)).local_minus_utc(),
            3 * 3600
        );
        assert_eq!(
            offset_at(utc(2026, 10, 25, 1, 0)).local_minus_utc(),
            2 * 3600
        );
        assert_eq!(
            to_local(utc(2026, 10, 25, 0, 59)),
            local("2026-10-25 03:59:00")
        );
        assert_eq!(
            to_local(utc(2026, 10, 25, 1, 0)),
            local("2026-10-25 03:00:00")
        );
        // 03:30 happens twice: the summer reading, the earlier instant.
        assert_eq!(
            from_local(local("2026-10-25 03:30:00")),
            utc(2026, 10, 25, 0, 30)
        );
        assert_eq!(
            from_local(local("2026-10-25 04:00:00")),
            utc(2026, 10, 25, 2, 0)
        );
    }

    #[test]
    fn conversions_agree_both_ways_through_the_year() {
        let mut at = utc(2025, 1, 1, 0, 0);
        while at < utc(2027, 1, 1, 0, 0) {
            let back = from_local(to_local(at));
            // Only the autumn hour that repeats reads back as its earlier, summer instant.
            let repeated = back == at - chrono::Duration::hours(1)
                && offset_at(back).local_minus_utc() == 3 * 3600
                && offset_at(at).local_minus_utc() == 2 * 3600;
            assert!(back == at || repeated, "{at}");
            assert_eq!(fixed(at).naive_local(), to_local(at));
            assert_eq!(fixed(at), at);
            at += chrono::Duration::minutes(97);
        }
        assert_eq!(
            fixed(utc(2026, 1, 15, 10, 0)).to_rfc3339(),
            "2026-01-15T12:00:00+02:00"
        );
        assert_eq!(
            fixed(utc(2026, 7, 15, 10, 0)).to_rfc3339(),
            "2026-07-15T13:00:00+03:00"
        );
    }
}
