//! The use cases, written once against the ports: the single binary and the Lambda functions
//! run exactly this code.

pub mod accounts;
pub mod analytics;
pub mod callbacks;
pub mod campaigns;
pub mod consent;
pub mod contacts;
pub mod dispatch;
pub mod gateway;
pub mod intake;
pub mod jobs;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod poller;
pub mod receipts;
pub mod replays;
pub mod senders;
pub mod sweeper;
pub mod template;
pub mod templates;
pub mod users;
pub mod view;

pub use accounts::Accounts;
pub use analytics::Analytics;
pub use callbacks::CallbackSender;
pub use campaigns::Campaigns;
pub use consent::Consents;
pub use contacts::Contacts;
pub use dispatch::Dispatcher;
pub use intake::Intake;
pub use limits::Limits;
pub use messages::Messages;
pub use receipts::Receipts;
pub use replays::ReplayGuard;
pub use senders::Senders;
pub use sweeper::Sweeper;
pub use templates::Templates;
pub use users::Users;

use std::time::Duration;

use rand::Rng;

/// What a queue consumer does with a job once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Finished (or nothing left to do): delete it from the queue.
    Done,
    /// Try again after this delay (the queue message becomes visible again then).
    Retry(Duration),
    /// The job cannot be read: leave it to the queue's redrive, which dead-letters it after
    /// the maximum number of receives.
    Poison,
}

/// Exponential backoff with full jitter: a random delay in `[base/2, min(cap, base·2ⁿ)]`, so
/// retries of many messages spread out instead of hitting a provider in waves.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20));
    let ceiling = exp.min(cap).max(base);
    let floor = base / 2;
    let span = ceiling.saturating_sub(floor).as_millis() as u64;
    floor + Duration::from_millis(rand::rng().random_range(0..=span))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for attempt in 0..30 {
            let d = backoff(attempt, base, cap);
            assert!(d >= base / 2, "{attempt}: {d:?}");
            assert!(d <= cap, "{attempt}: {d:?}");
        }
        let late: Vec<_> = (0..50).map(|_| backoff(10, base, cap)).collect();
        assert!(late.iter().any(|d| *d > Duration::from_secs(10)));
        assert!(
            late.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the delay"
        );
    }
}
