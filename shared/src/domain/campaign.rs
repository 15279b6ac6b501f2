//! Campaigns: one template version to the contacts of some lists, from one sender, from a
//! start time at a pace. A campaign is expanded into messages a chunk at a time; its record
//! keeps where the expansion is (the list and the last contact done), so a chunk done twice
//! (a redelivered job, a restart after a crash) is recognised and nothing is sent twice.
//!
//! The record holds no subscriber data: list names, a template's id and version, counts.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{CampaignId, Category, ContactId, ListName, SenderId, TemplateId, TenantId};

/// The most characters of a campaign's name.
pub const MAX_CAMPAIGN_NAME_CHARS: usize = 100;
/// The most lists one campaign goes to.
pub const MAX_CAMPAIGN_LISTS: usize = 10;
/// The fastest pace a campaign may ask for: messages a minute.
pub const MAX_PACE: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    #[error(
        "a campaign's name is 1 to {MAX_CAMPAIGN_NAME_CHARS} printable characters, not only spaces"
    )]
    Name,
    #[error("a campaign goes to 1 to {MAX_CAMPAIGN_LISTS} lists")]
    Lists,
    #[error("the pace is 1 to {MAX_PACE} messages a minute")]
    Pace,
    #[error("a {0} campaign cannot be {1}")]
    State(CampaignState, &'static str),
}

impl CampaignError {
    pub fn code(&self) -> &'static str {
        match self {
            CampaignError::Name => "campaign_name_invalid",
            CampaignError::Lists => "campaign_lists_invalid",
            CampaignError::Pace => "pace_invalid",
            CampaignError::State(..) => "campaign_state_conflict",
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            CampaignError::Name => "name",
            CampaignError::Lists => "lists",
            CampaignError::Pace => "pace_per_minute",
            CampaignError::State(..) => "state",
        }
    }
}

/// A campaign's name: trimmed, up to 100 printable characters (not unique).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CampaignName(String);

impl CampaignName {
    pub fn parse(raw: &str) -> Result<Self, CampaignError> {
        let ok = !raw.trim().is_empty()
            && raw.chars().count() <= MAX_CAMPAIGN_NAME_CHARS
            && !raw.chars().any(char::is_control);
        ok.then(|| CampaignName(raw.trim().to_owned()))
            .ok_or(CampaignError::Name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CampaignName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CampaignName({})", self.0)
    }
}

impl TryFrom<String> for CampaignName {
    type Error = CampaignError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CampaignName::parse(&s)
    }
}

impl From<CampaignName> for String {
    fn from(n: CampaignName) -> String {
        n.0
    }
}

/// How fast a campaign goes out: messages a minute, evenly spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Pace(u32);

impl Pace {
    pub fn per_minute(n: u32) -> Result<Self, CampaignError> {
        (1..=MAX_PACE)
            .contains(&n)
            .then_some(Pace(n))
            .ok_or(CampaignError::Pace)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// When the `n`-th message from `start` on goes out.
    pub fn offset(self, start: DateTime<Utc>, n: u64) -> DateTime<Utc> {
        let millis =
            i64::try_from(n.saturating_mul(60_000) / u64::from(self.0)).unwrap_or(i64::MAX);
        start + chrono::Duration::milliseconds(millis.min(366 * 24 * 3_600_000))
    }
}

impl TryFrom<u32> for Pace {
    type Error = CampaignError;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Pace::per_minute(n)
    }
}

impl From<Pace> for u32 {
    fn from(p: Pace) -> u32 {
        p.0
    }
}

/// Where a campaign is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Made, with its estimate; nothing sent until it is started.
    Draft,
    /// Started: expanded into messages chunk by chunk, from its start time at its pace.
    Running,
    /// Stopped for now (by the tenant, or by a spend cap): nothing more is expanded until
    /// it is resumed. Messages already expanded (at most the next minute at its pace) go.
    Paused,
    /// Every contact of its lists has been expanded; its messages go out on their own.
    Completed,
    /// Stopped for good; its messages not yet handed to dispatch were cancelled.
    Cancelled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Draft => "draft",
            CampaignState::Running => "running",
            CampaignState::Paused => "paused",
            CampaignState::Completed => "completed",
            CampaignState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the expansion is: which chunk comes next and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expansion {
    /// Chunks done: the next chunk's number. A job names the chunk it is for, so a
    /// redelivered job for a chunk done already does nothing.
    pub chunk: u64,
    /// The list (index into the campaign's lists) the next chunk reads.
    pub list: usize,
    /// The last contact of that list done.
    pub after: Option<ContactId>,
    /// Messages made.
    pub expanded: u64,
    /// Contacts not sent to, per stable code (`consent_missing`, `consent_withdrawn`,
    /// `template_variable_missing`, `destination_not_allowed`, …).
    pub skipped: BTreeMap<String, u64>,
    /// When the next message goes out at the campaign's pace (`None` before the first).
    pub next_send_at: Option<DateTime<Utc>>,
}

/// What one chunk did, kept with the chunk's messages (under its idempotency key) so that
/// doing the chunk again finds the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOutcome {
    pub chunk: u64,
    pub list: usize,
    pub after: Option<ContactId>,
    pub expanded: u64,
    pub skipped: BTreeMap<String, u64>,
    pub next_send_at: Option<DateTime<Utc>>,
    /// Every list has been read to its end.
    pub finished: bool,
}

/// What a campaign was estimated at when made: the contacts on its lists (a contact on two
/// is counted twice; those without consent are counted too), the parts of its shortest
/// message, and the cost of one such message to each at the account's price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignEstimate {
    pub recipients: u64,
    pub segments: u32,
    pub cost_kopiyky: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub tenant_id: TenantId,
    pub name: CampaignName,
    pub template_id: TemplateId,
    /// The template's version, fixed when the campaign is made: a later change of the
    /// template does not change what the campaign sends.
    pub template_version: u32,
    pub category: Category,
    pub lists: Vec<ListName>,
    pub from: SenderId,
    /// Not before this (`None`: when started).
    pub start_at: Option<DateTime<Utc>>,
    /// `None`: as fast as the account's limits and the providers take them.
    pub pace: Option<Pace>,
    pub track_links: bool,
    /// Seconds each message stays worth delivering (`None`: the default).
    pub validity: Option<u64>,
    pub estimate: CampaignEstimate,
    pub state: CampaignState,
    /// Why it stopped by itself (a spend cap's code), while paused for it.
    pub stopped_by: Option<String>,
    pub expansion: Expansion,
    /// How many times it was started or resumed. A chunk's job carries the run that queued
    /// it: one of an earlier run (queued before a pause) does nothing, one of a later run
    /// (queued by a start or resume whose change is not stored yet) waits for it.
    #[serde(default)]
    pub run: u32,
    /// Subscribers who opted out through this campaign's messages.
    #[serde(default)]
    pub opted_out: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// 1 when made, one more with each change: a change is stored only over the version it
    /// was made from.
    pub version: u32,
}

impl Campaign {
    fn next(&mut self, state: CampaignState, now: DateTime<Utc>) {
        self.state = state;
        self.updated_at = now;
        self.version += 1;
    }

    /// Draft → running.
    pub fn start(&mut self, now: DateTime<Utc>) -> Result<(), CampaignError> {
        if self.state != CampaignState::Draft {
            return Err(CampaignError::State(self.state, "started"));
        }
        self.started_at = Some(now);
        self.run += 1;
        self.next(CampaignState::Running, now);
        Ok(())
    }

    /// Running → paused (`reason`: a limit's code when it pauses by itself).
    pub fn pause(&mut self, now: DateTime<Utc>, reason: Option<&str>) -> Result<(), CampaignError> {
        if self.state != CampaignState::Running {
            return Err(CampaignError::State(self.state, "paused"));
        }
        self.stopped_by = reason.map(str::to_owned);
        self.next(CampaignState::Paused, now);
        Ok(())
    }

    /// Paused → running.
    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<(), CampaignError> {
        if self.state != CampaignState::Paused {
            return Err(CampaignError::State(self.state, "resumed"));
        }
        self.stopped_by = None;
        self.run += 1;
        self.next(CampaignState::Running, now);
        Ok(())
    }

    /// Draft, running or paused → cancelled.
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<(), CampaignError> {
        if matches!(
            self.state,
            CampaignState::Completed | CampaignState::Cancelled
        ) {
            return Err(CampaignError::State(self.state, "cancelled"));
        }
        self.finished_at = Some(now);
        self.next(CampaignState::Cancelled, now);
        Ok(())
    }

    /// Takes in what chunk `outcome.chunk` did, if it is the chunk next due (answers whether
    /// it was): the expansion moves on, and a campaign whose lists are done completes
    /// (unless it was stopped meanwhile).
    pub fn apply(&mut self, outcome: &ChunkOutcome, now: DateTime<Utc>) -> bool {
        if outcome.chunk != self.expansion.chunk {
            return false;
        }
        let e = &mut self.expansion;
        e.chunk += 1;
        e.list = outcome.list;
        e.after = outcome.after.clone();
        e.expanded += outcome.expanded;
        for (code, n) in &outcome.skipped {
            *e.skipped.entry(code.clone()).or_default() += n;
        }
        e.next_send_at = outcome.next_send_at;
        let state = if outcome.finished && self.state == CampaignState::Running {
            self.finished_at = Some(now);
            CampaignState::Completed
        } else {
            self.state
        };
        self.next(state, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> Campaign {
        let now = Utc::now();
        Campaign {
            id: CampaignId::generate(now),
            tenant_id: TenantId::generate(now),
            name: CampaignName::parse(" Весняний розпродаж ").unwrap(),
            template_id: TemplateId::generate(now),
            template_version: 1,
            category: Category::Marketing,
            lists: vec![ListName::parse("Клієнти").unwrap()],
            from: SenderId::parse("Holub").unwrap(),
            start_at: None,
            pace: Some(Pace::per_minute(600).unwrap()),
            track_links: false,
            validity: None,
            estimate: CampaignEstimate::default(),
            state: CampaignState::Draft,
            stopped_by: None,
            expansion: Expansion::default(),
            run: 0,
            opted_out: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            version: 1,
        }
    }

    #[test]
    fn names_and_paces_are_checked() {
        assert_eq!(campaign().name.as_str(), "Весняний розпродаж");
        for bad in ["", "  ", "a\nb", &"я".repeat(101)] {
            assert_eq!(
                CampaignName::parse(bad),
                Err(CampaignError::Name),
                "{bad:?}"
            );
        }
        assert!(Pace::per_minute(0).is_err());
        assert!(Pace::per_minute(MAX_PACE + 1).is_err());
        let pace = Pace::per_minute(600).unwrap();
        let t = Utc::now();
        assert_eq!(pace.offset(t, 0), t);
        assert_eq!(pace.offset(t, 10), t + chrono::Duration::seconds(1));
        assert!(serde_json::from_str::<Pace>("0").is_err());
        let ids = CampaignId::generate(t);
        assert_eq!(CampaignId::of_batch(&ids.batch()), ids);
        assert!(ids.batch().as_str().starts_with("bat_"));
    }

    #[test]
    fn states_move_only_as_allowed() {
        let now = Utc::now();
        let mut c = campaign();
        assert!(c.pause(now, None).is_err());
        assert!(c.resume(now).is_err());
        c.start(now).unwrap();
        assert_eq!((c.state, c.version, c.run), (CampaignState::Running, 2, 1));
        assert!(c.start(now).is_err());
        c.pause(now, Some("daily_spend_cap_reached")).unwrap();
        assert_eq!(c.stopped_by.as_deref(), Some("daily_spend_cap_reached"));
        c.resume(now).unwrap();
        assert_eq!((c.stopped_by.as_deref(), c.run), (None, 2));
        c.cancel(now).unwrap();
        let e = c.cancel(now).unwrap_err();
        assert_eq!(e.code(), "campaign_state_conflict");
        assert_eq!(e.to_string(), "a cancelled campaign cannot be cancelled");
    }

    #[test]
    fn a_chunk_applies_once_and_the_last_one_completes() {
        let now = Utc::now();
        let mut c = campaign();
        c.start(now).unwrap();
        let outcome = ChunkOutcome {
            chunk: 0,
            list: 0,
            after: Some(ContactId::generate(now)),
            expanded: 3,
            skipped: BTreeMap::from([("consent_missing".to_owned(), 2)]),
            next_send_at: None,
            finished: false,
        };
        assert!(c.apply(&outcome, now));
        assert!(!c.apply(&outcome, now), "the same chunk twice");
        let last = ChunkOutcome {
            chunk: 1,
            finished: true,
            ..outcome
        };
        assert!(c.apply(&last, now));
        assert_eq!(c.state, CampaignState::Completed);
        assert_eq!(c.expansion.expanded, 6);
        assert_eq!(c.expansion.skipped["consent_missing"], 4);
        assert_eq!(c.expansion.chunk, 2);
    }

    #[test]
    fn a_paused_campaign_takes_its_last_chunk_without_completing() {
        let now = Utc::now();
        let mut c = campaign();
        c.start(now).unwrap();
        c.pause(now, None).unwrap();
        let last = ChunkOutcome {
            chunk: 0,
            list: 0,
            after: None,
            expanded: 1,
            skipped: BTreeMap::new(),
            next_send_at: None,
            finished: true,
        };
        assert!(c.apply(&last, now));
        assert_eq!(c.state, CampaignState::Paused);
    }
}
