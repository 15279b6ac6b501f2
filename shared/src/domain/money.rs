//! Money in kopiykas (1/100 of a hryvnia), integers only: no float ever touches a price.

use std::fmt;
use std::iter::Sum;
use std::ops::Add;

use serde::{Deserialize, Serialize};

/// An amount of money in kopiykas. Negative amounts exist (refunds, balances in debt).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Kopiyky(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an amount of hryvnias with at most 2 decimals: {0:?}")]
pub struct InvalidAmount(pub String);

impl Kopiyky {
    pub const ZERO: Kopiyky = Kopiyky(0);

    /// Parses a decimal amount in hryvnias as providers send it (`"0.85"`, `"12"`, `"-3.5"`,
    /// `"1,25"`) exactly, without going through a float. More than 2 decimals is refused
    /// rather than rounded, since a silent rounding would misstate a cost.
    pub fn parse_hryvnias(s: &str) -> Result<Self, InvalidAmount> {
        let bad = || InvalidAmount(s.to_owned());
        let t = s.trim();
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = match t.find(['.', ',']) {
            Some(i) => (&t[..i], &t[i + 1..]),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty()
            || frac.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        let total = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(bad)?;
        Ok(Kopiyky(if negative { -total } else { total }))
    }

    pub fn checked_mul(self, n: i64) -> Option<Kopiyky> {
        self.0.checked_mul(n).map(Kopiyky)
    }
}

impl Add for Kopiyky {
    type Output = Kopiyky;
    fn add(self, rhs: Kopiyky) -> Kopiyky {
        Kopiyky(self.0.saturating_add(rhs.0))
    }
}

impl Sum for Kopiyky {
    fn sum<I: Iterator<Item = Kopiyky>>(iter: I) -> Kopiyky {
        iter.fold(Kopiyky::ZERO, Add::add)
    }
}

impl fmt::Display for Kopiyky {
    /// `12.34 UAH`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02} UAH", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_provider_amounts_exactly() {
        let cases = [
            ("0.85", 85),
            ("12", 1200),
            ("12.5", 1250),
            ("1,25", 125),
            (".5", 50),
            ("-3.50", -350),
            ("0", 0),
        ];
        for (s, k) in cases {
            assert_eq!(Kopiyky::parse_hryvnias(s), Ok(Kopiyky(k)), "{s}");
        }
        for s in [
            "",
            ".",
            "1.234",
            "abc",
            "1.2.3",
            "1e3",
            "--1",
            "99999999999999999999",
        ] {
            assert!(Kopiyky::parse_hryvnias(s).is_err(), "{s}");
        }
    }

    #[test]
    fn displays_in_hryvnias() {
        assert_eq!(Kopiyky(1234).to_string(), "12.34 UAH");
        assert_eq!(Kopiyky(-5).to_string(), "-0.05 UAH");
        assert_eq!(
            [Kopiyky(85), Kopiyky(15)].into_iter().sum::<Kopiyky>(),
            Kopiyky(100)
        );
    }
}
