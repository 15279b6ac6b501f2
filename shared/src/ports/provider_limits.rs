//! Each provider's messages-per-second limit and its circuit breaker, held across every
//! instance that sends (the workers of one `holub serve`, several `holub serve` on one data
//! directory, any number of dispatch Lambda instances), so a limit is not multiplied by the
//! number of instances and a provider one instance found broken is skipped by all.
//!
//! # Grants: slots on a shared clock
//!
//! Time is cut into *slots* of `(1 s + GRANT_MARGIN) / n` (`n` = [`SLOTS_PER_WINDOW`], fewer
//! for a limit under it), numbered from the Unix epoch, so every instance agrees on them
//! without asking. Slot `j` holds `⌊(j+1)L/n⌋ − ⌊jL/n⌋` grants, so any `n` consecutive slots
//! hold exactly `L`. The store keeps, per provider, the slot in use and how many of its
//! grants are taken; a lease takes up to what the caller asks of the first slot that is not
//! full (one atomic step of the store), and the caller sends them when that slot opens and no
//! later than [`LATE`] after. Then:
//!
//! - *never over*: a provider's one-second window sees grants of slots that opened within
//!   the last `1 s + GRANT_MARGIN` (a grant arrives within the margin of its slot opening):
//!   at most `n` consecutive slots, at most `L` grants;
//! - *used fully*: with a backlog every slot is used, `L` grants every `1 s + GRANT_MARGIN`
//!   (95% of the limit), whoever holds the backlog;
//! - *fair and cheap*: a lease is at most one slot's share (about `L/10`), booked at most
//!   [`HORIZON`] ahead, so no instance takes a second's grants at once; the store is written
//!   about `n` times a second per busy provider, not once per message. Slots are shared:
//!   several small batches fill one.
//!
//! A plain token bucket (GCRA) of burst `B` and rate `r` admits `B + r` in a sliding second,
//! and leases of up to `k` grants on it must keep `r` below `L − k`: 85% for `k = L/10`.
//! A sliding log of every grant is exact but needs a read and a compare-and-swap per lease,
//! and every waiting instance races for each freed grant. The fixed slots need neither.
//!
//! # The breaker
//!
//! Each instance counts its own consecutive failures; the instance that opens a breaker
//! writes until when (and, for an account error, why); every instance reads that at most
//! [`BREAKER_FRESH`] after it last did. When the time is up, one instance (a conditional
//! write) takes the single trial request; it closes the breaker if the trial goes through
//! and opens it again if not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::FailureCode;

/// The window a provider counts its limit in.
pub const WINDOW: Duration = Duration::from_secs(1);

/// How much longer than [`WINDOW`] a grant counts: a request reaches the provider somewhat
/// after its slot opened (the sender's own delay up to [`LATE`], then the network's), and a
/// one-second window at the provider's end must not see more than the limit either.
pub const GRANT_MARGIN: Duration = Duration::from_millis(50);

/// How late after its slot opened a sender may still use a grant; the rest of
/// [`GRANT_MARGIN`] is left to the network. A lease answered later is dropped unused.
pub const LATE: Duration = Duration::from_millis(30);

/// The store's answer is expected within this: a lease never books a slot that would be
/// past [`LATE`] by then.
pub const LEAD: Duration = Duration::from_millis(10);

/// Slots in one window (fewer for a limit below it: at least one grant a slot).
pub const SLOTS_PER_WINDOW: u32 = 10;

/// How far ahead a slot may be booked.
pub const HORIZON: Duration = Duration::from_secs(1);

/// How long an instance trusts what it last read of a breaker.
pub const BREAKER_FRESH: Duration = Duration::from_secs(1);

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// A provider's messages-per-second limit, as slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderRate {
    per_second: u32,
}

/// The slot in use and the grants taken of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotState {
    pub slot: i64,
    pub used: u32,
}

/// What a lease comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leased {
    /// `grants` may be sent from `from` (when their slot opens) to `until`; not after.
    Granted {
        grants: u32,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    /// Every slot up to the horizon is full: ask again after this.
    Wait(Duration),
}

/// A lease as decided on the store's state, before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Take `take` grants of `next.slot`; `fresh` if that slot was not in use (the store's
    /// slot must be below it), else the store's slot must still be it with room left.
    Take {
        take: u32,
        next: SlotState,
        fresh: bool,
    },
    Wait(Duration),
}

impl ProviderRate {
    pub fn per_second(limit: u32) -> Self {
        ProviderRate {
            per_second: limit.max(1),
        }
    }

    pub fn limit(&self) -> u32 {
        self.per_second
    }

    pub fn slots(&self) -> u32 {
        self.per_second.min(SLOTS_PER_WINDOW)
    }

    /// The length of a slot, ns: a window and its margin over the slots, rounded up.
    pub fn spacing(&self) -> i64 {
        let window = ns(WINDOW + GRANT_MARGIN);
        let n = i64::from(self.slots());
        (window + n - 1) / n
    }

    /// The grants slot `slot` holds: any `slots()` consecutive slots hold the limit.
    pub fn capacity(&self, slot: i64) -> u32 {
        let (l, n) = (i64::from(self.per_second), i64::from(self.slots()));
        let j = slot.rem_euclid(n);
        u32::try_from((j + 1) * l / n - j * l / n).unwrap_or(0)
    }

    /// When slot `slot` opens, ns since the epoch.
    pub fn opens(&self, slot: i64) -> i64 {
        slot.saturating_mul(self.spacing())
    }

    /// The first slot a lease asked at `now` can still use when the answer comes.
    pub fn first_slot(&self, now: i64) -> i64 {
        let earliest = now + ns(LEAD) - ns(LATE);
        let spacing = self.spacing();
        earliest.div_euclid(spacing) + i64::from(earliest.rem_euclid(spacing) != 0)
    }

    /// Up to `want` grants at `now` (ns) on the store's state (none: never used).
    pub fn decide(&self, state: Option<SlotState>, now: i64, want: u32) -> Decision {
        let first = self.first_slot(now);
        let (mut slot, mut used, mut fresh) = match state {
            Some(s) if s.slot >= first => (s.slot, s.used, false),
            _ => (first, 0, true),
        };
        if used >= self.capacity(slot) {
            (slot, used, fresh) = (slot + 1, 0, true);
        }
        let ahead = self.opens(slot) - now;
        if ahead > ns(HORIZON) {
            let wait = u64::try_from(ahead - ns(HORIZON)).unwrap_or(0);
            return Decision::Wait(Duration::from_nanos(wait));
        }
        let take = want.max(1).min(self.capacity(slot) - used);
        Decision::Take {
            take,
            next: SlotState {
                slot,
                used: used + take,
            },
            fresh,
        }
    }

    /// The answer for a decision that was written.
    pub fn leased(&self, take: u32, slot: i64) -> Leased {
        let from = self.opens(slot);
        Leased::Granted {
            grants: take,
            from: DateTime::from_timestamp_nanos(from),
            until: DateTime::from_timestamp_nanos(from + ns(LATE)),
        }
    }
}

/// Why an account error opened a breaker: what a message that waits for the provider says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageReason {
    pub code: FailureCode,
    pub message: String,
}

/// A provider's breaker as the store holds it. Closed: nothing set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outage {
    /// Open until then; past it, one trial request may go.
    pub open_until: Option<DateTime<Utc>>,
    /// The instance that took the trial holds it until then (if it dies, another may take
    /// the next one after).
    pub trial_until: Option<DateTime<Utc>>,
    /// Set when an account error opened it.
    pub reason: Option<OutageReason>,
}

impl Outage {
    /// Whether no request may go at `now`, not even a trial.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// Whether the trial may be taken at `now`: open, its time up, no trial running.
    pub fn trial_free(&self, now: DateTime<Utc>) -> bool {
        self.open_until.is_some_and(|until| until <= now)
            && self.trial_until.is_none_or(|held| held <= now)
    }

    /// What opening it until `until` for `reason` makes of it: the later time wins (an
    /// account error's long cooldown is not cut short by a transient failure), and a trial
    /// ends with it.
    pub fn opened(&self, until: DateTime<Utc>, reason: Option<OutageReason>) -> Option<Outage> {
        if self.open_until.is_some_and(|current| current >= until) {
            return None;
        }
        Some(Outage {
            open_until: Some(until),
            trial_until: None,
            reason,
        })
    }
}

#[async_trait]
pub trait ProviderLimits: Send + Sync {
    /// Up to `want` grants of `provider`'s limit at `now`, atomically across instances.
    async fn lease(
        &self,
        provider: &str,
        rate: ProviderRate,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<Leased, StoreError>;

    /// The provider's breaker as stored.
    async fn breaker(&self, provider: &str) -> Result<Outage, StoreError>;

    /// Opens the breaker until `until` (unless it is open longer already), ending any trial.
    async fn open(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: Option<OutageReason>,
    ) -> Result<(), StoreError>;

    /// Takes the trial request of a breaker whose time is up, holding it until `hold`:
    /// whether this caller got it (one caller does).
    async fn take_trial(
        &self,
        provider: &str,
        now: DateTime<Utc>,
        hold: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Closes the breaker after a trial went through, unless it was opened again since
    /// (`opened_until` is what the trial was taken under).
    async fn close(&self, provider: &str, opened_until: DateTime<Utc>) -> Result<(), StoreError>;
}

/// The limits of one process, for a gateway no other instance shares (tests, tools).
#[derive(Debug, Default)]
pub struct InProcessLimits {
    state: Mutex<HashMap<String, (Option<SlotState>, Outage)>>,
}

impl InProcessLimits {
    fn with<T>(&self, provider: &str, f: impl FnOnce(&mut (Option<SlotState>, Outage)) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(state.entry(provider.to_owned()).or_default())
    }
}

/// Nanoseconds since the epoch (saturating outside 1677–2262).
pub fn epoch_nanos(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[async_trait]
impl ProviderLimits for InProcessLimits {
    async fn lease(
        &self,
        provider: &str,
        rate: ProviderRate,
        want: u32,
        now: DateTime<Utc>,
    ) -> Result<Leased, StoreError> {
        Ok(self.with(provider, |(slots, _)| {
            match rate.decide(*slots, epoch_nanos(now), want) {
                Decision::Wait(wait) => Leased::Wait(wait),
                Decision::Take { take, next, .. } => {
                    *slots = Some(next);
                    rate.leased(take, next.slot)
                }
            }
        }))
    }

    async fn breaker(&self, provider: &str) -> Result<Outage, StoreError> {
        Ok(self.with(provider, |(_, outage)| outage.clone()))
    }

    async fn open(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: Option<OutageReason>,
    ) -> Result<(), StoreError> {
        self.with(provider, |(_, outage)| {
            if let Some(opened) = outage.opened(until, reason) {
                *outage = opened;
            }
        });
        Ok(())
    }

    async fn take_trial(
        &self,
        provider: &str,
        now: DateTime<Utc>,
        hold: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(provider, |(_, outage)| {
            let free = outage.trial_free(now);
            if free {
                outage.trial_until = Some(hold);
            }
            free
        }))
    }

    async fn close(&self, provider: &str, opened_until: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(provider, |(_, outage)| {
            if outage.open_until == Some(opened_until) {
                *outage = Outage::default();
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    /// Leases of `want` by one caller after another at `now`, on `state`.
    fn take_all(rate: ProviderRate, state: &mut Option<SlotState>, now: i64, want: u32) -> u32 {
        match rate.decide(*state, now, want) {
            Decision::Take { take, next, .. } => {
                *state = Some(next);
                take
            }
            Decision::Wait(_) => 0,
        }
    }

    #[test]
    fn any_window_of_slots_holds_the_limit_exactly() {
        for limit in [1, 3, 7, 10, 25, 99, 1000] {
            let rate = ProviderRate::per_second(limit);
            let n = i64::from(rate.slots());
            for start in -13..40 {
                let sum: u32 = (start..start + n).map(|j| rate.capacity(j)).sum();
                assert_eq!(sum, limit, "limit {limit} from slot {start}");
            }
            assert!((0..n).all(|j| rate.capacity(j) >= 1));
            assert!(rate.capacity(0) <= limit.div_ceil(SLOTS_PER_WINDOW).max(1));
            assert!(rate.spacing() * n >= ns(WINDOW + GRANT_MARGIN));
        }
    }

    #[test]
    fn a_lease_fills_its_slot_then_books_the_next_up_to_the_horizon() {
        let rate = ProviderRate::per_second(20);
        let now = 1_000 * rate.spacing();
        let mut state = None;
        // The slot open now is still usable when the answer comes.
        let first = rate.first_slot(now);
        assert_eq!(first, 1_000);
        assert_eq!(take_all(rate, &mut state, now, 5), 2);
        assert_eq!(
            state,
            Some(SlotState {
                slot: 1_000,
                used: 2
            })
        );
        assert_eq!(take_all(rate, &mut state, now, 1), 1);
        assert_eq!(
            state,
            Some(SlotState {
                slot: 1_001,
                used: 1
            })
        );
        // Booked ahead until the horizon; then a wait until a slot comes within it.
        let mut booked = 3;
        while take_all(rate, &mut state, now, 2) > 0 {
            booked += 2;
        }
        let last = state.unwrap().slot;
        assert!(rate.opens(last) - now <= ns(HORIZON));
        assert!(booked >= 20, "{booked}");
        assert!(matches!(rate.decide(state, now, 1), Decision::Wait(w) if w > Duration::ZERO));
    }

    #[test]
    fn an_idle_provider_starts_at_the_slot_open_now_and_a_late_one_is_skipped() {
        let rate = ProviderRate::per_second(10);
        let s = rate.spacing();
        // Just after a slot opened: that slot (the answer will come within `LATE`).
        let Decision::Take { next, fresh, .. } = rate.decide(None, 500 * s + MS, 3) else {
            panic!()
        };
        assert_eq!((next.slot, fresh), (500, true));
        // Well into it: the next one.
        let Decision::Take { next, .. } = rate.decide(None, 500 * s + 40 * MS, 3) else {
            panic!()
        };
        assert_eq!(next.slot, 501);
        // An old state counts as idle.
        let old = Some(SlotState { slot: 3, used: 1 });
        let Decision::Take { next, fresh, .. } = rate.decide(old, 500 * s + MS, 3) else {
            panic!()
        };
        assert_eq!((next.slot, next.used, fresh), (500, 1, true));
    }

    /// Many callers with batches of random sizes, at random times, on one state: every
    /// window of `1 s + GRANT_MARGIN` over the slots' opening times holds at most the limit,
    /// and a backlog uses all of it.
    #[test]
    fn grants_in_any_window_never_pass_the_limit_and_a_backlog_uses_it() {
        let rate = ProviderRate::per_second(37);
        let mut state = None;
        let mut grants: Vec<(i64, u32)> = Vec::new();
        let mut now = 77 * MS;
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        while now < 30_000 * MS {
            let want = 1 + next() % 9;
            match rate.decide(state, now, want) {
                Decision::Take { take, next: s, .. } => {
                    state = Some(s);
                    grants.push((rate.opens(s.slot), take));
                }
                Decision::Wait(w) => now += i64::try_from(w.as_nanos()).unwrap(),
            }
            now += i64::from(next() % 20) * MS;
        }
        grants.sort();
        let window = ns(WINDOW + GRANT_MARGIN);
        for (i, (t, _)) in grants.iter().enumerate() {
            let sum: u32 = grants[i..]
                .iter()
                .take_while(|(u, _)| u - t < window)
                .map(|(_, g)| g)
                .sum();
            assert!(sum <= 37, "{sum} grants within a window from {t}");
        }
        let total: u32 = grants.iter().map(|(_, g)| g).sum();
        let span = (grants.last().unwrap().0 - grants[0].0) as f64 / 1e9;
        let per_second = f64::from(total) / span;
        assert!(per_second > 37.0 * 0.93, "{per_second:.1} a second");
    }

    #[test]
    fn a_breaker_reopens_only_for_longer_and_gives_one_trial() {
        let t = |s: i64| DateTime::from_timestamp(1_000 + s, 0).unwrap();
        let broke = Some(OutageReason {
            code: FailureCode::InsufficientBalance,
            message: "no money".into(),
        });
        let closed = Outage::default();
        assert!(!closed.is_open(t(0)) && !closed.trial_free(t(0)));
        let open = closed.opened(t(60), broke.clone()).unwrap();
        assert!(open.is_open(t(10)));
        assert_eq!(
            open.opened(t(20), None),
            None,
            "a shorter opening changes nothing"
        );
        assert!(!open.trial_free(t(59)) && open.trial_free(t(60)));
        let trial = Outage {
            trial_until: Some(t(90)),
            ..open.clone()
        };
        assert!(!trial.is_open(t(61)) && !trial.trial_free(t(61)));
        assert!(
            trial.trial_free(t(90)),
            "a trial whose holder vanished is free again"
        );
        let again = trial.opened(t(70), None).unwrap();
        assert_eq!((again.trial_until, again.reason), (None, None));
    }
}
