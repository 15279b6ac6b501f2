//! The one typed configuration of Holub's services, read once at start-up: from flags or
//! the environment by `holub serve`, from the environment by a Lambda function — the same
//! names (`HOLUB_*`) and the same checks on both, because both are this one parser.
//!
//! What differs between the targets is only what triggers the work (how many queue
//! consumers, how a batch is received); those knobs stay with the trigger.

use std::time::Duration;

use clap::Parser;

use crate::domain::ShortBase;

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Settings {
    /// Seconds a queued message may wait unclaimed before its job is sent again.
    #[arg(long, env = "HOLUB_REQUEUE_AFTER", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub requeue_after: u64,
    /// Seconds a message stuck in `sending` (its worker died) waits before the provider is
    /// asked whether it has it. Must exceed a provider request's timeout.
    #[arg(long, env = "HOLUB_ORPHAN_AFTER", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub orphan_after: u64,
    /// Seconds between status queries at providers that do not push receipts (where the
    /// work is triggered by a timer of its own; a scheduled function polls on each run).
    #[arg(long, env = "HOLUB_POLL_EVERY", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub poll_every: u64,
    /// Seconds between runs of the analytics rollup, where a timer of its own runs it (the
    /// rollup function runs once a minute, on its schedule): how fresh the reports are.
    #[arg(long, env = "HOLUB_ROLLUP_EVERY", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub rollup_every: u64,
    /// Seconds a message pushed to a provider that pushes receipts may stay `sent` without a
    /// final one before Holub asks the provider for it (where its API can be asked): the
    /// receipt may have been pushed while Holub was down, or lost.
    #[arg(long, env = "HOLUB_RECONCILE_AFTER", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub reconcile_after: u64,
    /// Messages asked about per polled provider and round.
    #[arg(long, env = "HOLUB_POLL_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub poll_batch: u64,
    /// Days a final message (with its receipts) is kept after it was created; then it is
    /// deleted (by DynamoDB's TTL on AWS, by a task on one machine).
    #[arg(long, env = "HOLUB_MESSAGE_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub message_retention_days: u64,
    /// Whether a sender with no record in the tenant's registry may send (as if active on
    /// every network). Default: yes on one machine (`holub serve`, where the operator is the
    /// one sending), no on AWS. A sender with a record is held to it either way.
    #[arg(long, env = "HOLUB_OPEN_SENDERS")]
    pub open_senders: Option<bool>,
    /// Refuse status callback URLs on loopback, private or link-local addresses (for a Holub
    /// that serves others; on one's own machine, callbacks to local services are normal).
    #[arg(
        long,
        env = "HOLUB_PUBLIC_CALLBACKS_ONLY",
        conflicts_with = "private_callbacks"
    )]
    pub public_callbacks_only: bool,
    /// Whether status callbacks may go to loopback, private and link-local addresses
    /// (`true` or `false`). Default: yes on one machine, no on AWS, where a callback must not
    /// reach into the deployment's own network (a metadata endpoint, say).
    #[arg(long, env = "HOLUB_PRIVATE_CALLBACKS")]
    pub private_callbacks: Option<bool>,
    /// Receipt requests a second from one source address, sustained (`/v1/receipts/…`;
    /// past it, 429 with `Retry-After`). Providers push in bursts after a large batch, so
    /// the defaults are generous.
    #[arg(long, env = "HOLUB_RECEIPT_RATE", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub receipt_rate: u32,
    /// Receipt requests one source address may make at once, above its rate.
    #[arg(long, env = "HOLUB_RECEIPT_BURST", default_value_t = 5_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub receipt_burst: u32,
    /// Receipt requests a second from all sources together, sustained.
    #[arg(long, env = "HOLUB_RECEIPT_GLOBAL_RATE", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub receipt_global_rate: u32,
    /// Receipt requests from all sources together at once, above the global rate.
    #[arg(long, env = "HOLUB_RECEIPT_GLOBAL_BURST", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub receipt_global_burst: u32,
    /// Where tracked links' short links live, `http(s)://host[:port]` (served at
    /// `/<code>` by the API). Default: `holub serve`'s own address; on AWS, the API's URL.
    #[arg(long, env = "HOLUB_SHORT_LINK_BASE", value_parser = ShortBase::parse)]
    pub short_link_base: Option<ShortBase>,
}

/// The settings alone, as a command line of their own.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Only {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// The settings from the process environment (a Lambda's `main`).
    pub fn from_env() -> Result<Settings, String> {
        Settings::from_values(std::iter::empty())
    }

    /// The settings from flags given as `--name value` pairs, the environment filling in
    /// the rest (the same parser as `holub serve`'s flags).
    pub fn from_values<'a>(flags: impl IntoIterator<Item = &'a str>) -> Result<Settings, String> {
        Only::try_parse_from(flags)
            .map(|only| only.settings)
            .map_err(|e| e.to_string())
    }

    /// Whether unregistered senders may send where Holub runs on `embedded` (one machine).
    pub fn open_senders(&self, embedded: bool) -> bool {
        self.open_senders.unwrap_or(embedded)
    }

    pub fn message_retention(&self) -> Duration {
        Duration::from_secs(self.message_retention_days * 24 * 3600)
    }

    pub fn requeue_after(&self) -> Duration {
        Duration::from_secs(self.requeue_after)
    }

    pub fn orphan_after(&self) -> Duration {
        Duration::from_secs(self.orphan_after)
    }

    pub fn reconcile_after(&self) -> Duration {
        Duration::from_secs(self.reconcile_after)
    }

    pub fn poll_every(&self) -> Duration {
        Duration::from_secs(self.poll_every)
    }

    pub fn rollup_every(&self) -> Duration {
        Duration::from_secs(self.rollup_every)
    }

    /// Whether callbacks may go to private addresses where Holub runs on `embedded` (one
    /// machine) or not (the AWS deployment).
    pub fn private_callbacks(&self, embedded: bool) -> bool {
        !self.public_callbacks_only && self.private_callbacks.unwrap_or(embedded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_flags_and_refusals() {
        let d = Settings::from_values(std::iter::empty()).unwrap();
        assert_eq!(d.requeue_after, 300);
        assert!(!d.public_callbacks_only);
        let s =
            Settings::from_values(["--requeue-after", "20", "--public-callbacks-only"]).unwrap();
        assert_eq!(s.requeue_after(), Duration::from_secs(20));
        assert!(s.public_callbacks_only);
        let err = Settings::from_values(["--orphan-after", "0"]).unwrap_err();
        assert!(err.contains("orphan-after"), "{err}");
        assert!(Settings::from_values(["--poll-batch", "many"]).is_err());
        assert!(d.private_callbacks(true) && !d.private_callbacks(false));
        let on = Settings::from_values(["--private-callbacks", "true"]).unwrap();
        assert!(on.private_callbacks(false));
        assert!(!s.private_callbacks(true), "public only wins");
        assert!(
            Settings::from_values(["--private-callbacks", "true", "--public-callbacks-only"])
                .is_err()
        );
        assert_eq!((d.receipt_rate, d.receipt_burst), (200, 5_000));
        let r = Settings::from_values(["--receipt-rate", "2", "--receipt-burst", "3"]).unwrap();
        assert_eq!((r.receipt_rate, r.receipt_burst), (2, 3));
        assert!(Settings::from_values(["--receipt-rate", "0"]).is_err());
        assert!(Settings::from_values(["--receipt-global-burst", "-1"]).is_err());
    }
}
