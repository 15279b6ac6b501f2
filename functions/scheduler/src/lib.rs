//! The scheduled run (an EventBridge schedule, once a minute): the same sweeps and receipt
//! polling that `holub serve` runs on its own timers. Every step is conditional and safe to
//! repeat, so an overlapping or retried run does no harm.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use holub_shared::services::Sweeper;
use holub_shared::services::poller::Poller;
use holub_shared::services::sweeper::SweepReport;
use serde::Serialize;

/// Release batches per run: with 1,000 per batch, up to 50,000 scheduled messages a minute.
pub const RELEASE_ROUNDS: usize = 50;

/// What a run did; the function's result, visible in the invocation log.
#[derive(Debug, Serialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub sweep: SweepReport,
    /// Messages moved by polled receipts.
    pub polled: usize,
}

/// One run. A failed step is logged and reported but does not fail the invocation: the
/// next run, a minute later, does the same work again, while a failed invocation would be
/// retried by EventBridge on top of it.
pub async fn run(
    sweeper: &Sweeper,
    poller: &Poller,
    event: EventBridgeEvent<serde_json::Value>,
) -> RunReport {
    tracing::info!(
        schedule = event
            .resources
            .as_ref()
            .and_then(|r| r.first())
            .map(String::as_str)
            .unwrap_or("-"),
        "scheduled run"
    );
    let sweep = sweeper.sweep(RELEASE_ROUNDS).await;
    for error in &sweep.errors {
        tracing::warn!(error = %error, "sweep step failed");
    }
    let polled = poller.poll().await;
    RunReport { sweep, polled }
}
