//! The rollup function: once a minute (EventBridge), the status events of the messages
//! table's stream folded into the statistics the reports read — the task `holub serve` runs
//! in its task table. It alone reads the stream (besides the callbacks' event source) and
//! writes the stats table.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use holub_shared::runtime::TaskTable;
use holub_shared::runtime::aws::holub_from_env;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let holub = holub_from_env().await?;
    let tasks = TaskTable::new(vec![holub.rollup()]);
    let tasks = &tasks;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            // A failed run is logged (`periodic task failed`) and reported; the next run,
            // a minute later, goes on from the checkpoints.
            Ok::<_, lambda_runtime::Error>(tasks.run_once().await)
        },
    ))
    .await
}
