//! The SQS trigger of the queue consumers (the dispatch, callbacks and campaigns functions):
//! an SQS batch in, only the unfinished items out (`ReportBatchItemFailures`), so one bad
//! record never sends the whole batch back. The consumers and the settle policy are the
//! ones `holub serve`'s queue loops run ([`super::consumers`]); here the event source
//! deletes what is finished.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use super::consumers::{Consumer, Finished, settle};
use crate::ports::{Delivery, Queue, ReceiptHandle};

/// One SQS batch through a consumer: each record is parsed on its own (a record that is
/// not a job is `Poison`, left to the queue's redrive); a job to retry later gets its
/// visibility set to the backoff and is reported failed, so SQS hands it out again then.
pub async fn sqs_batch(
    consumer: &dyn Consumer,
    queue: &dyn Queue,
    event: SqsEvent,
) -> SqsBatchResponse {
    let deliveries: Vec<Delivery> = event.records.iter().map(delivery).collect();
    let outcomes = consumer.consume(&deliveries).await;
    let unfinished = settle(
        queue,
        consumer.queue(),
        &deliveries,
        &outcomes,
        Finished::LeftToTrigger,
    )
    .await;
    let mut response = SqsBatchResponse::default();
    for i in unfinished {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = event.records[i].message_id.clone().unwrap_or_default();
        response.batch_item_failures.push(failure);
    }
    response
}

/// An SQS record as the queue port hands out a job. A record without a body reads as an
/// empty body, which no job parses from.
fn delivery(record: &SqsMessage) -> Delivery {
    Delivery {
        handle: ReceiptHandle(record.receipt_handle.clone().unwrap_or_default()),
        body: record.body.clone().unwrap_or_default(),
        receive_count: record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
    }
}
