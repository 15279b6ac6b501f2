//! The scheduled run (an EventBridge schedule, once a minute): every task of the periodic
//! task table once — the same table `holub serve` runs on its own timers.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use holub_shared::runtime::TaskTable;
use holub_shared::runtime::tasks::TableRun;

/// One run. A failed task is logged (`periodic task failed`, which the deployment's alarm
/// counts) and reported, but does not fail the invocation: the next run, a minute later,
/// does the same work again, while a failed invocation would be retried by EventBridge on
/// top of it.
pub async fn run(tasks: &TaskTable, event: EventBridgeEvent<serde_json::Value>) -> TableRun {
    tracing::info!(
        schedule = event
            .resources
            .as_ref()
            .and_then(|r| r.first())
            .map(String::as_str)
            .unwrap_or("-"),
        "scheduled run"
    );
    tasks.run_once().await
}
