//! Consent to marketing, as the Law of Ukraine "On Advertising" (Art. 14-3, since 2023) asks:
//! advertising by SMS only with the recipient's prior consent, written or electronic, and a
//! free opt-out at any time. The Law "On Electronic Communications" (Art. 2) calls more than
//! five unconsented messages to one subscriber spam.
//!
//! Each tenant keeps a ledger per number: entries are only ever added. A number's state is
//! its entry with the latest `at` (the later recorded of two at the same instant), so a
//! consent recorded late for an earlier date never overrides an opt-out made since.
//! Transactional messages (OTP codes, notices) need no consent; marketing ones are refused
//! at intake and again at dispatch for a number whose state is not `given`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::KeyId;

/// What a message is, for the law: marketing needs consent and keeps to quiet hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// OTP codes, notices, alerts: sent at once, without a consent check.
    #[default]
    Transactional,
    /// Advertising: only to numbers with consent, only inside the quiet-hours window, and
    /// always with an opt-out link.
    Marketing,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transactional => "transactional",
            Category::Marketing => "marketing",
        }
    }

    pub fn is_marketing(self) -> bool {
        self == Category::Marketing
    }
}

impl FromStr for Category {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transactional" => Ok(Category::Transactional),
            "marketing" => Ok(Category::Marketing),
            other => Err(UnknownName(other.chars().take(40).collect())),
        }
    }
}

/// A name outside a closed list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

/// How consent was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsentSource {
    /// A form on a website (a ticked box, not a pre-ticked one).
    WebForm,
    /// In a mobile application.
    App,
    /// A signed paper form or contract.
    Paper,
    /// The subscriber's own SMS (e.g. a keyword to a short code).
    Sms,
    /// At a till or counter, recorded by staff.
    PointOfSale,
    /// A phone call, recorded.
    Call,
    /// Brought in from an earlier system, with its evidence.
    Import,
}

/// How consent was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalChannel {
    /// The opt-out link every marketing message carries.
    OptOutLink,
    /// A reply such as СТОП or STOP.
    Reply,
    /// The tenant's own system, through the API.
    Api,
    /// Someone at the tenant, in the console.
    Console,
}

/// The longest evidence text, in characters.
pub const MAX_EVIDENCE_CHARS: usize = 1000;

/// What one ledger entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ConsentChange {
    Given {
        source: ConsentSource,
        /// What proves it: a form submission's id, a document number, a recording's name
        /// (sealed under the tenant's key, like message texts).
        evidence: Evidence,
    },
    Withdrawn {
        channel: WithdrawalChannel,
    },
}

/// Evidence of consent: 1 to [`MAX_EVIDENCE_CHARS`] printable characters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Evidence(String);

impl Evidence {
    pub fn parse(raw: &str) -> Result<Self, EvidenceError> {
        // Measured and screened as sent, so the rule is the one the OpenAPI document states.
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EvidenceError::Empty);
        }
        if raw.chars().count() > MAX_EVIDENCE_CHARS {
            return Err(EvidenceError::TooLong);
        }
        if raw.chars().any(|c| c.is_control() && c != '\n') {
            return Err(EvidenceError::Control);
        }
        Ok(Evidence(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // May name a person: never in logs.
        f.write_str("Evidence(…)")
    }
}

impl TryFrom<String> for Evidence {
    type Error = EvidenceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Evidence::parse(&s)
    }
}

impl From<Evidence> for String {
    fn from(e: Evidence) -> String {
        e.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence is empty: say what proves the consent")]
    Empty,
    #[error("evidence is longer than {MAX_EVIDENCE_CHARS} characters")]
    TooLong,
    #[error("evidence holds control characters")]
    Control,
}

impl EvidenceError {
    pub fn code(self) -> &'static str {
        match self {
            EvidenceError::Empty => "evidence_missing",
            EvidenceError::TooLong => "evidence_too_long",
            EvidenceError::Control => "evidence_invalid",
        }
    }
}

/// Who recorded an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecordedBy {
    /// An API request signed by this key.
    ApiKey {
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
        key_id: Option<KeyId>,
    },
    /// The operator of this Holub, on its command line.
    Operator { user: Option<String> },
    /// The subscriber: an opt-out link or a reply.
    Subscriber,
    /// A user of the tenant's web console.
    Console { user_id: String },
}

/// One entry of a number's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEntry {
    /// When consent was given or withdrawn (as stated; never later than `recorded_at`).
    pub at: DateTime<Utc>,
    /// When Holub recorded it.
    pub recorded_at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: ConsentChange,
    pub recorded_by: RecordedBy,
}

impl ConsentEntry {
    /// Whether this entry is newer than `other` for the number's state: the later `at`, and
    /// of two at the same instant the later recorded.
    pub fn supersedes(&self, other: &ConsentEntry) -> bool {
        (self.at, self.recorded_at) >= (other.at, other.recorded_at)
    }
}

/// Where a number stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// No entry: marketing is refused.
    None,
    Given,
    Withdrawn,
}

impl ConsentState {
    /// The state an entry leaves.
    pub fn of(entry: &ConsentEntry) -> Self {
        match entry.change {
            ConsentChange::Given { .. } => ConsentState::Given,
            ConsentChange::Withdrawn { .. } => ConsentState::Withdrawn,
        }
    }

    /// The state of a whole ledger.
    pub fn of_ledger<'a>(entries: impl IntoIterator<Item = &'a ConsentEntry>) -> Self {
        entries
            .into_iter()
            .reduce(|a, b| if b.supersedes(a) { b } else { a })
            .map_or(ConsentState::None, ConsentState::of)
    }

    /// Why a marketing message to a number in this state is refused, if it is: the stable
    /// code and a sentence.
    pub fn refusal(self) -> Option<(&'static str, &'static str)> {
        match self {
            ConsentState::Given => None,
            ConsentState::None => Some((
                "consent_missing",
                "there is no record of this number's consent to marketing messages",
            )),
            ConsentState::Withdrawn => Some((
                "consent_withdrawn",
                "this number withdrew its consent to marketing messages",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64, recorded: i64, given: bool) -> ConsentEntry {
        ConsentEntry {
            at: DateTime::from_timestamp(at, 0).unwrap(),
            recorded_at: DateTime::from_timestamp(recorded, 0).unwrap(),
            change: if given {
                ConsentChange::Given {
                    source: ConsentSource::WebForm,
                    evidence: Evidence::parse("form 17").unwrap(),
                }
            } else {
                ConsentChange::Withdrawn {
                    channel: WithdrawalChannel::OptOutLink,
                }
            },
            recorded_by: RecordedBy::Subscriber,
        }
    }

    #[test]
    fn the_latest_stated_time_decides() {
        assert_eq!(ConsentState::of_ledger([]), ConsentState::None);
        let given = entry(100, 100, true);
        let withdrawn = entry(200, 200, false);
        // A consent recorded after the opt-out, for a date before it, changes nothing.
        let late = entry(150, 300, true);
        assert_eq!(
            ConsentState::of_ledger([&given, &withdrawn, &late]),
            ConsentState::Withdrawn
        );
        let renewed = entry(400, 400, true);
        assert_eq!(
            ConsentState::of_ledger([&given, &withdrawn, &late, &renewed]),
            ConsentState::Given
        );
        // Same instant: the later recorded wins.
        let a = entry(500, 500, false);
        let b = entry(500, 501, true);
        assert_eq!(ConsentState::of_ledger([&b, &a]), ConsentState::Given);
    }

    #[test]
    fn evidence_is_checked() {
        assert_eq!(Evidence::parse("  "), Err(EvidenceError::Empty));
        assert_eq!(
            Evidence::parse(&"я".repeat(MAX_EVIDENCE_CHARS + 1)),
            Err(EvidenceError::TooLong)
        );
        assert_eq!(Evidence::parse("a\u{7}b"), Err(EvidenceError::Control));
        assert_eq!(Evidence::parse(" form 1 ").unwrap().as_str(), "form 1");
        assert_eq!(
            format!("{:?}", Evidence::parse("Іван").unwrap()),
            "Evidence(…)"
        );
    }

    #[test]
    fn entries_read_back_as_written() {
        let e = entry(100, 120, true);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["change"], "given");
        assert_eq!(json["source"], "web_form");
        assert_eq!(serde_json::from_value::<ConsentEntry>(json).unwrap(), e);
        assert_eq!(
            "marketing".parse::<Category>().unwrap(),
            Category::Marketing
        );
        assert!("advert".parse::<Category>().is_err());
    }
}
