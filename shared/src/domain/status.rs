//! The message status machine.
//!
//! `accepted → (scheduled) → queued → sending → sent → delivered | undelivered | expired`,
//! with `failed`, `rejected` and `cancelled` from the states that allow them. Terminal states
//! never change. `unconfirmed` stands beside `sent`: the provider may have taken the message
//! (its answer was lost) and cannot be asked by our id, so Holub will not send it again; a
//! receipt that later names it still settles it. Receipts arrive late, twice or out of order (even before the submit answer is
//! recorded), so they are applied monotonically: a receipt moves a message forward or does
//! nothing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a message is on its walk; `delivered`, `undelivered`, `expired`, `failed`,
/// `rejected` and `cancelled` are final; `unconfirmed` waits only for a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    /// The submission's outcome is unknown and the provider cannot be asked: it may have
    /// gone out. Holub does not resend it (that could deliver it twice); a receipt still
    /// moves it on.
    Unconfirmed,
    Delivered,
    Undelivered,
    Expired,
    Failed,
    Rejected,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("a message cannot go from {from} to {to}")]
    NotAllowed {
        from: MessageStatus,
        to: MessageStatus,
    },
    #[error("unknown message status {0:?}")]
    Unknown(String),
}

/// What applying a status change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The message moved to the new status.
    Moved(MessageStatus),
    /// The change was a duplicate or arrived after a later one: nothing changes.
    Unchanged,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 12] = [
        MessageStatus::Accepted,
        MessageStatus::Scheduled,
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Unconfirmed,
        MessageStatus::Delivered,
        MessageStatus::Undelivered,
        MessageStatus::Expired,
        MessageStatus::Failed,
        MessageStatus::Rejected,
        MessageStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Accepted => "accepted",
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Unconfirmed => "unconfirmed",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Undelivered => "undelivered",
            MessageStatus::Expired => "expired",
            MessageStatus::Failed => "failed",
            MessageStatus::Rejected => "rejected",
            MessageStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        self.rank() == TERMINAL_RANK
    }

    /// How far along the walk a status is; terminal states share the top rank.
    fn rank(self) -> u8 {
        match self {
            MessageStatus::Accepted => 0,
            MessageStatus::Scheduled => 1,
            MessageStatus::Queued => 2,
            MessageStatus::Sending => 3,
            // Beside `sent`: only a receipt moves it on.
            MessageStatus::Sent | MessageStatus::Unconfirmed => 4,
            _ => TERMINAL_RANK,
        }
    }

    /// Whether the machine allows `self → to` as a deliberate step of Holub's own services.
    pub fn can_become(self, to: MessageStatus) -> bool {
        use MessageStatus::*;
        matches!(
            (self, to),
            (Accepted, Scheduled | Queued | Rejected | Cancelled | Failed)
                | (Scheduled, Queued | Cancelled | Expired | Failed)
                | (Queued, Sending | Cancelled | Expired | Failed | Rejected)
                // A retryable provider error hands the message back to the queue.
                | (Sending, Queued | Sent | Failed | Rejected | Expired)
                // A marketing message claimed outside its sending window waits for it.
                | (Sending, Scheduled)
                // A lost answer the provider cannot be asked about.
                | (Sending, Unconfirmed)
                | (Unconfirmed, Delivered | Undelivered | Expired | Rejected)
                // A receipt can overtake the submit answer.
                | (Sending, Delivered | Undelivered)
                | (Sent, Delivered | Undelivered | Expired | Rejected | Failed)
        )
    }

    /// A deliberate step (dispatch, cancel, release): refused if the machine forbids it.
    pub fn step(self, to: MessageStatus) -> Result<MessageStatus, StatusError> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(StatusError::NotAllowed { from: self, to })
        }
    }

    /// Applies what a provider reported (the submit answer or a receipt). It only ever moves a
    /// message forward: a duplicate, a stale intermediate status, or anything after a terminal
    /// state leaves it unchanged, so receipts can be applied in any order, any number of times.
    pub fn apply_report(self, reported: MessageStatus) -> Applied {
        if self.is_terminal() || reported.rank() <= self.rank() {
            return Applied::Unchanged;
        }
        if self.can_become(reported) {
            return Applied::Moved(reported);
        }
        // A final receipt for a message we have not yet marked as sent (say, still queued
        // after a crash between submit and record) is still the truth about the handset.
        if reported.is_terminal() && self.rank() >= MessageStatus::Queued.rank() {
            return Applied::Moved(reported);
        }
        Applied::Unchanged
    }
}

const TERMINAL_RANK: u8 = 5;

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = StatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| StatusError::Unknown(s.to_owned()))
    }
}

/// Which statuses a message's callback URL is told about: a set of [`MessageStatus`], kept
/// as the bits of their positions in [`MessageStatus::ALL`] (what the stores keep). Every
/// status unless the customer narrowed it (to the final ones, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusSet(u16);

impl StatusSet {
    /// Every status.
    pub const ALL: StatusSet = StatusSet((1 << MessageStatus::ALL.len()) - 1);

    fn bit(status: MessageStatus) -> u16 {
        let index = MessageStatus::ALL
            .iter()
            .position(|s| *s == status)
            .unwrap_or_default();
        1 << index
    }

    /// The set of these statuses (empty if there are none).
    pub fn of(statuses: impl IntoIterator<Item = MessageStatus>) -> Self {
        StatusSet(statuses.into_iter().fold(0, |bits, s| bits | Self::bit(s)))
    }

    pub fn contains(self, status: MessageStatus) -> bool {
        self.0 & Self::bit(status) != 0
    }

    pub fn is_all(self) -> bool {
        self == Self::ALL
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits, as stored.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The set stored as `bits`; `None` for bits that name no status.
    pub fn from_bits(bits: u16) -> Option<Self> {
        (bits & !Self::ALL.0 == 0).then_some(StatusSet(bits))
    }

    /// The statuses, in the order of [`MessageStatus::ALL`].
    pub fn statuses(self) -> impl Iterator<Item = MessageStatus> {
        MessageStatus::ALL
            .into_iter()
            .filter(move |s| self.contains(*s))
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        Self::ALL
    }
}

impl Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.statuses())
    }
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(StatusSet::of(Vec::<MessageStatus>::deserialize(
            deserializer,
        )?))
    }
}

/// A delivery report for one part of a (possibly concatenated) message, already mapped from
/// the provider's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartReceipt {
    /// 1-based part number.
    pub part: u16,
    pub state: ReceiptState,
    pub at: DateTime<Utc>,
}

/// The states a handset-side delivery report can report (SMPP-style, as providers echo them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptState {
    /// Accepted by the operator's SMSC, on its way (ENROUTE, ACCEPTD).
    Enroute,
    Delivered,
    Undelivered,
    Expired,
    Rejected,
}

impl ReceiptState {
    pub fn is_final(self) -> bool {
        !matches!(self, ReceiptState::Enroute)
    }

    pub fn as_status(self) -> MessageStatus {
        match self {
            ReceiptState::Enroute => MessageStatus::Sent,
            ReceiptState::Delivered => MessageStatus::Delivered,
            ReceiptState::Undelivered => MessageStatus::Undelivered,
            ReceiptState::Expired => MessageStatus::Expired,
            ReceiptState::Rejected => MessageStatus::Rejected,
        }
    }
}

/// The message-level status the part receipts add up to, if they are conclusive.
///
/// A message is delivered only when every part is; it is undelivered (or expired, or
/// rejected) as soon as one part finally fails, since it can no longer arrive whole. Per part,
/// the earliest final report wins, so a duplicate or a late contradicting report changes
/// nothing. Receipts for part numbers outside `1..=parts` are ignored.
pub fn aggregate_parts(parts: u16, receipts: &[PartReceipt]) -> Option<MessageStatus> {
    if parts == 0 {
        return None;
    }
    let mut finals: Vec<Option<PartReceipt>> = vec![None; usize::from(parts)];
    let mut any_enroute = false;
    for r in receipts {
        if r.part == 0 || r.part > parts {
            continue;
        }
        if !r.state.is_final() {
            any_enroute = true;
            continue;
        }
        let slot = &mut finals[usize::from(r.part - 1)];
        match slot {
            // Ties are broken by state, so the outcome never depends on arrival order.
            Some(existing) if (existing.at, existing.state) <= (r.at, r.state) => {}
            _ => *slot = Some(*r),
        }
    }
    // The earliest final failure decides how the message failed.
    let first_failure = finals
        .iter()
        .flatten()
        .filter(|r| r.state != ReceiptState::Delivered)
        .min_by_key(|r| (r.at, r.part));
    if let Some(failure) = first_failure {
        return Some(failure.state.as_status());
    }
    if finals.iter().all(|slot| slot.is_some()) {
        return Some(MessageStatus::Delivered);
    }
    if any_enroute || finals.iter().any(Option::is_some) {
        return Some(MessageStatus::Sent);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn status_sets_keep_what_they_are_given_and_refuse_unknown_bits() {
        let finals = StatusSet::of([Delivered, Undelivered, Expired]);
        assert!(finals.contains(Delivered) && !finals.contains(Sent));
        assert_eq!(StatusSet::from_bits(finals.bits()), Some(finals));
        assert_eq!(StatusSet::from_bits(1 << 12), None);
        assert!(StatusSet::default().is_all() && StatusSet::of([]).is_empty());
        let json = serde_json::to_string(&finals).unwrap();
        assert_eq!(json, r#"["delivered","undelivered","expired"]"#);
        assert_eq!(serde_json::from_str::<StatusSet>(&json).unwrap(), finals);
        assert!(serde_json::from_str::<StatusSet>(r#"["delivred"]"#).is_err());
        assert!(
            MessageStatus::ALL
                .iter()
                .all(|s| StatusSet::ALL.contains(*s))
        );
    }

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, second).unwrap()
    }

    fn receipt(part: u16, state: ReceiptState, second: u32) -> PartReceipt {
        PartReceipt {
            part,
            state,
            at: at(second),
        }
    }

    #[test]
    fn the_happy_walks_are_allowed() {
        for walk in [
            &[Accepted, Queued, Sending, Sent, Delivered][..],
            &[Accepted, Scheduled, Queued, Sending, Sent, Undelivered],
            &[Accepted, Queued, Sending, Queued, Sending, Sent, Expired],
            &[Accepted, Scheduled, Cancelled],
            &[Accepted, Queued, Cancelled],
            &[Accepted, Queued, Sending, Failed],
            &[Accepted, Queued, Sending, Delivered],
        ] {
            for pair in walk.windows(2) {
                assert_eq!(pair[0].step(pair[1]), Ok(pair[1]), "{walk:?}");
            }
        }
    }

    #[test]
    fn terminal_states_never_change() {
        for from in MessageStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in MessageStatus::ALL {
                assert!(from.step(to).is_err(), "{from} -> {to}");
                assert_eq!(from.apply_report(to), Applied::Unchanged);
            }
        }
    }

    #[test]
    fn cancel_only_before_dispatch() {
        assert!(Scheduled.step(Cancelled).is_ok());
        assert!(Queued.step(Cancelled).is_ok());
        assert!(Sending.step(Cancelled).is_err());
        assert!(Sent.step(Cancelled).is_err());
    }

    #[test]
    fn reports_are_monotonic_and_idempotent() {
        assert_eq!(Sending.apply_report(Sent), Applied::Moved(Sent));
        assert_eq!(Sent.apply_report(Sent), Applied::Unchanged);
        // The receipt overtook the submit answer: the late `sent` changes nothing.
        assert_eq!(Sending.apply_report(Delivered), Applied::Moved(Delivered));
        assert_eq!(Delivered.apply_report(Sent), Applied::Unchanged);
        // A final receipt for a message whose submit was never recorded.
        assert_eq!(Queued.apply_report(Delivered), Applied::Moved(Delivered));
        assert_eq!(Accepted.apply_report(Delivered), Applied::Unchanged);
    }

    #[test]
    fn an_unconfirmed_message_waits_for_a_receipt_and_nothing_else() {
        assert!(Sending.step(Unconfirmed).is_ok());
        assert!(!Unconfirmed.is_terminal());
        // Never back to the queue: sending it again could deliver it twice.
        assert!(Unconfirmed.step(Queued).is_err());
        assert!(Unconfirmed.step(Failed).is_err());
        assert_eq!(Unconfirmed.apply_report(Sent), Applied::Unchanged);
        assert_eq!(
            Unconfirmed.apply_report(Delivered),
            Applied::Moved(Delivered)
        );
        assert_eq!(
            Unconfirmed.apply_report(Undelivered),
            Applied::Moved(Undelivered)
        );
    }

    #[test]
    fn statuses_parse_and_print() {
        for s in MessageStatus::ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>(), Ok(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!("done".parse::<MessageStatus>().is_err());
    }

    #[test]
    fn multipart_receipts_add_up() {
        use ReceiptState::*;
        assert_eq!(aggregate_parts(2, &[]), None);
        assert_eq!(aggregate_parts(2, &[receipt(1, Enroute, 1)]), Some(Sent));
        assert_eq!(aggregate_parts(2, &[receipt(1, Delivered, 1)]), Some(Sent));
        assert_eq!(
            aggregate_parts(2, &[receipt(2, Delivered, 2), receipt(1, Delivered, 1)]),
            Some(MessageStatus::Delivered)
        );
        // Duplicates change nothing.
        assert_eq!(
            aggregate_parts(2, &[receipt(1, Delivered, 1), receipt(1, Delivered, 1)]),
            Some(Sent)
        );
        // One failed part sinks the message at once.
        assert_eq!(
            aggregate_parts(3, &[receipt(1, Delivered, 1), receipt(2, Undelivered, 2)]),
            Some(MessageStatus::Undelivered)
        );
        // The earliest final report of a part wins over a later, contradicting one.
        assert_eq!(
            aggregate_parts(1, &[receipt(1, Expired, 9), receipt(1, Delivered, 3)]),
            Some(MessageStatus::Delivered)
        );
        // Parts that do not exist are ignored.
        assert_eq!(aggregate_parts(1, &[receipt(5, Undelivered, 1)]), None);
    }

    fn any_status() -> impl Strategy<Value = MessageStatus> {
        proptest::sample::select(MessageStatus::ALL.to_vec())
    }

    fn any_state() -> impl Strategy<Value = ReceiptState> {
        proptest::sample::select(vec![
            ReceiptState::Enroute,
            ReceiptState::Delivered,
            ReceiptState::Undelivered,
            ReceiptState::Expired,
            ReceiptState::Rejected,
        ])
    }

    proptest! {
        /// Applying any sequence of reports never moves backwards and never leaves a terminal
        /// state, and applying the same report twice is the same as once.
        #[test]
        fn reports_never_go_backwards(start in any_status(), reports in proptest::collection::vec(any_status(), 0..12)) {
            let mut current = start;
            for r in reports {
                let before = current;
                if let Applied::Moved(next) = current.apply_report(r) {
                    prop_assert!(next.rank() > before.rank());
                    prop_assert!(!before.is_terminal());
                    current = next;
                }
                prop_assert_eq!(current.apply_report(r), Applied::Unchanged);
            }
        }

        /// The aggregate does not depend on the order receipts arrive in, nor on duplicates.
        #[test]
        fn aggregation_ignores_order_and_duplicates(
            parts in 1u16..5,
            raw in proptest::collection::vec((1u16..5, any_state(), 0u32..60), 0..16),
            seed in any::<u64>(),
        ) {
            let receipts: Vec<PartReceipt> = raw.iter().map(|&(p, s, t)| receipt(p, s, t)).collect();
            let expected = aggregate_parts(parts, &receipts);
            let mut shuffled = receipts.clone();
            shuffled.extend(receipts.iter().copied());
            // A deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(aggregate_parts(parts, &shuffled), expected);
        }
    }
}
