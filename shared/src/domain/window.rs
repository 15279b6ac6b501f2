//! The hours marketing messages may go out in: a daily window on Kyiv's clock, by default
//! 09:00–21:00 as Ukrainian providers keep mass mailings to the daytime. A marketing message
//! that would go out outside it waits for the window to open; transactional ones never wait.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::kyiv;

/// `HH:MM-HH:MM` on Kyiv's clock; it opens before it closes, within one day (`24:00` is the
/// end of the day), and is open at least an hour.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SendingWindow {
    /// Minutes after midnight.
    opens: u16,
    /// Minutes after midnight; after `opens`, at most 1440.
    closes: u16,
}

impl Default for SendingWindow {
    fn default() -> Self {
        SendingWindow {
            opens: 9 * 60,
            closes: 21 * 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a sending window is HH:MM-HH:MM on Kyiv's clock, opening before it closes and open at least an hour, e.g. 09:00-21:00"
)]
pub struct WindowError;

impl SendingWindow {
    /// A window from `opens` to `closes`, minutes after midnight.
    pub fn new(opens: u16, closes: u16) -> Result<Self, WindowError> {
        if closes > 24 * 60 || opens >= closes || closes - opens < 60 {
            return Err(WindowError);
        }
        Ok(SendingWindow { opens, closes })
    }

    /// The window open all day: no quiet hours.
    pub const ALWAYS: SendingWindow = SendingWindow {
        opens: 0,
        closes: 24 * 60,
    };

    fn minute_of(at: DateTime<Utc>) -> u16 {
        let local = kyiv::to_local(at);
        u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(0)
    }

    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        (self.opens..self.closes).contains(&Self::minute_of(at))
    }

    /// `at` if the window is open then, else the instant it next opens.
    pub fn next_open(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(at) {
            return at;
        }
        let local = kyiv::to_local(at);
        let opens =
            NaiveTime::from_hms_opt(u32::from(self.opens / 60), u32::from(self.opens % 60), 0)
                .unwrap_or(NaiveTime::MIN);
        let day = if Self::minute_of(at) < self.opens {
            local.date()
        } else {
            local.date() + Duration::days(1)
        };
        let next = kyiv::from_local(day.and_time(opens));
        // A time skipped by the spring change reads with the winter offset, which may land
        // a moment before `at`: never answer the past.
        next.max(at)
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl FromStr for SendingWindow {
    type Err = WindowError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.trim().split_once('-').ok_or(WindowError)?;
        let opens = parse_hhmm(a.trim()).ok_or(WindowError)?;
        let closes = parse_hhmm(b.trim()).ok_or(WindowError)?;
        SendingWindow::new(opens, closes)
    }
}

impl fmt::Display for SendingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hhmm(self.opens), hhmm(self.closes))
    }
}

impl fmt::Debug for SendingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SendingWindow({self})")
    }
}

impl TryFrom<String> for SendingWindow {
    type Error = WindowError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<SendingWindow> for String {
    fn from(w: SendingWindow) -> String {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_parse_and_print() {
        let w: SendingWindow = "09:00-21:00".parse().unwrap();
        assert_eq!(w, SendingWindow::default());
        assert_eq!(w.to_string(), "09:00-21:00");
        assert_eq!(
            "00:00-24:00".parse::<SendingWindow>().unwrap(),
            SendingWindow::ALWAYS
        );
        for bad in [
            "21:00-09:00",
            "9:00-21:00",
            "09:00",
            "09:00-09:30",
            "25:00-26:00",
            "09:60-21:00",
            "",
            "24:00-24:00",
        ] {
            assert!(bad.parse::<SendingWindow>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_window_follows_kyivs_clock() {
        let w = SendingWindow::default();
        // Winter, UTC+2: 08:59 Kyiv is 06:59 UTC.
        assert!(!w.is_open(utc("2026-12-01T06:59:00Z")));
        assert!(w.is_open(utc("2026-12-01T07:00:00Z")));
        assert!(w.is_open(utc("2026-12-01T18:59:59Z")));
        assert!(!w.is_open(utc("2026-12-01T19:00:00Z")));
        // Open: now. Before the opening: today's. After the close: tomorrow's.
        let at = utc("2026-12-01T10:00:00Z");
        assert_eq!(w.next_open(at), at);
        assert_eq!(
            w.next_open(utc("2026-12-01T03:00:00Z")),
            utc("2026-12-01T07:00:00Z")
        );
        assert_eq!(
            w.next_open(utc("2026-12-01T19:30:00Z")),
            utc("2026-12-02T07:00:00Z")
        );
        // 23:30 UTC is 01:30 Kyiv the next day: that day's opening.
        assert_eq!(
            w.next_open(utc("2026-12-01T23:30:00Z")),
            utc("2026-12-02T07:00:00Z")
        );
        // Summer, UTC+3; and across the spring change (29 March 2026).
        assert_eq!(
            w.next_open(utc("2026-07-01T19:00:00Z")),
            utc("2026-07-02T06:00:00Z")
        );
        assert_eq!(
            w.next_open(utc("2026-03-28T20:00:00Z")),
            utc("2026-03-29T06:00:00Z")
        );
    }
}
