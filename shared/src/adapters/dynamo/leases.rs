//! Leases of a tenant's shared counters, so that a busy tenant's rate bucket and spend item
//! are not written once per request.
//!
//! A counter item is one partition key, and a partition key takes at most 1,000 writes a
//! second: under one write per request, a tenant sending single messages would top out near
//! 500 a second (the bucket and the spend item are each written once or twice a request),
//! whatever the write shards of its messages. So an instance takes a *block* from the shared
//! counter in one conditional write (tokens from the bucket, kopiykas of allowance from the
//! spend caps) and serves the requests that follow from it until it runs out or lapses:
//!
//! - A block starts at what one request asks and doubles each time a lease runs out within
//!   [`QUICK`] of being taken (this instance is busy), up to a ceiling (a twentieth of the
//!   rate a second, or a hundredth of the smaller spend cap); it halves when a lease lapses
//!   with something left. So an idle or quiet instance holds nothing back from others, and a
//!   busy one writes the counter about 1/[`QUICK`] times a second at most.
//! - Caps hold exactly: a block is taken only if it fits under the cap; when it does not, the
//!   request asks for exactly what it needs, as without leases.
//! - What a lease leaves unused when it lapses is given back (spend) or forgotten (tokens,
//!   which refill anyway). Until then the spend counter reads up to one block per busy
//!   instance above what was used, and the rate may run ahead of the bucket by what is leased
//!   (at most a twentieth of a second's rate per instance) for at most [`LIFE`].

use std::collections::HashMap;
use std::sync::Mutex;

/// How long a lease serves requests.
pub(super) const LIFE: i64 = 1_000_000_000;
/// A lease that runs out sooner than this after it was taken doubles the next block.
pub(super) const QUICK: i64 = 100_000_000;

/// What an instance holds of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lease {
    /// Left to hand out.
    pub(super) left: i64,
    /// Taken at (nanoseconds).
    pub(super) taken: i64,
    /// The size of the block it was taken as.
    pub(super) block: i64,
}

impl Lease {
    fn live(&self, now: i64) -> bool {
        now < self.taken.saturating_add(LIFE)
    }
}

/// What to do for a request of `amount` at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Served from the lease.
    Served,
    /// Take `block` (at least `amount`) from the counter; `lapsed` is what a lapsed lease
    /// left unused (to give back, for spend).
    Renew { block: i64, lapsed: i64 },
}

/// The leases of one process, by counter.
#[derive(Debug, Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<String, Lease>>,
}

impl Leases {
    /// Serves `amount` from the lease of `counter`, or says how large a block to take (at
    /// most `most`, at least `amount`).
    pub(super) fn step(&self, counter: &str, amount: i64, most: i64, now: i64) -> Step {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let Some(lease) = held.get_mut(counter) else {
            return Step::Renew {
                block: amount,
                lapsed: 0,
            };
        };
        if lease.live(now) && lease.left >= amount {
            lease.left -= amount;
            return Step::Served;
        }
        let (block, lapsed) = if !lease.live(now) && lease.left > 0 {
            (lease.block / 2, lease.left)
        } else if now.saturating_sub(lease.taken) < QUICK {
            (lease.block.saturating_mul(2), 0)
        } else {
            (lease.block, 0)
        };
        if lapsed > 0 {
            lease.left = 0;
        }
        Step::Renew {
            block: block.min(most).max(amount).max(1),
            lapsed,
        }
    }

    /// A block of `block` was taken for a request of `amount` at `now`: the rest is leased
    /// (added to what a live lease still has).
    pub(super) fn took(&self, counter: &str, block: i64, amount: i64, now: i64) {
        self.hold(counter, block - amount, block, now);
    }

    /// Only `amount` could be taken (the block did not fit): nothing more is leased, and the
    /// next block starts small again.
    pub(super) fn took_exactly(&self, counter: &str, amount: i64, now: i64) {
        self.hold(counter, 0, amount, now);
    }

    /// Leases `extra` more of `counter` (beside what a live lease still has), taken at `now`
    /// as a block of `block`.
    fn hold(&self, counter: &str, extra: i64, block: i64, now: i64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let carried = held
            .get(counter)
            .filter(|l| l.live(now))
            .map_or(0, |l| l.left);
        held.insert(
            counter.to_owned(),
            Lease {
                left: carried + extra,
                taken: now,
                block,
            },
        );
    }

    /// Takes back what every lapsed lease left unused, by counter (for spend: to give back).
    pub(super) fn lapsed(&self, now: i64) -> Vec<(String, i64)> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        held.retain(|counter, lease| {
            if lease.live(now) {
                return true;
            }
            if lease.left > 0 {
                out.push((counter.clone(), lease.left));
            }
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn a_quiet_counter_takes_what_each_request_asks() {
        let leases = Leases::default();
        // First request: exactly its amount.
        let step = leases.step("c", 3, 100, 0);
        assert_eq!(
            step,
            Step::Renew {
                block: 3,
                lapsed: 0
            }
        );
        leases.took("c", 3, 3, 0);
        // Half a second later: nothing left, not quick: the same block size.
        assert_eq!(
            leases.step("c", 3, 100, 500 * MS),
            Step::Renew {
                block: 3,
                lapsed: 0
            }
        );
    }

    #[test]
    fn a_busy_counter_doubles_its_block_up_to_the_ceiling_and_serves_from_it() {
        let leases = Leases::default();
        let mut now = 0;
        let mut writes = 0;
        let mut served = 0;
        // 2,000 requests of 1, one every millisecond (1,000 a second).
        for _ in 0..2000 {
            match leases.step("c", 1, 50, now) {
                Step::Served => served += 1,
                Step::Renew { block, lapsed } => {
                    assert_eq!(lapsed, 0);
                    assert!((1..=50).contains(&block), "{block}");
                    leases.took("c", block, 1, now);
                    writes += 1;
                }
            }
            now += MS;
        }
        assert_eq!(served + writes, 2000);
        // Blocks grow 1, 2, 4, ..., 32, then 50 each: about 2000 / 50 writes.
        assert!(writes <= 2000 / 50 + 8, "{writes} writes");
    }

    #[test]
    fn a_lease_that_lapses_unused_gives_back_and_halves() {
        let leases = Leases::default();
        leases.took("c", 40, 1, 0);
        assert_eq!(leases.step("c", 1, 100, 10 * MS), Step::Served);
        // Lapsed with 38 left.
        assert_eq!(
            leases.step("c", 1, 100, 2 * LIFE),
            Step::Renew {
                block: 20,
                lapsed: 38
            }
        );
        // What lapsed is told once.
        leases.took("c", 20, 1, 2 * LIFE);
        assert!(leases.lapsed(2 * LIFE + 1).is_empty());
        assert_eq!(leases.lapsed(4 * LIFE), vec![("c".to_owned(), 19)]);
        assert!(leases.lapsed(4 * LIFE).is_empty());
    }

    #[test]
    fn a_block_that_did_not_fit_leaves_nothing_leased() {
        let leases = Leases::default();
        leases.took("c", 8, 1, 0);
        for _ in 0..7 {
            assert_eq!(leases.step("c", 1, 100, MS), Step::Served);
        }
        // Quick: it would double, but only the request's own amount fitted.
        assert_eq!(
            leases.step("c", 1, 100, 2 * MS),
            Step::Renew {
                block: 16,
                lapsed: 0
            }
        );
        leases.took_exactly("c", 1, 2 * MS);
        assert_eq!(
            leases.step("c", 5, 100, 3 * MS),
            Step::Renew {
                block: 5,
                lapsed: 0
            }
        );
    }
}
