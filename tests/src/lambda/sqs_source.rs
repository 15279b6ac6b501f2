//! An SQS event source mapping with `ReportBatchItemFailures`, as Lambda runs one: receive a
//! batch (all system and message attributes), invoke the function with the `aws:sqs` event,
//! delete the records it did not report failed. A failed invocation, or a response naming a
//! record that was not in the batch, deletes nothing: the whole batch comes back after its
//! visibility timeout.
//!
//! On AWS the mapping makes its SQS calls with the function's execution role, so here they
//! are signed with the function's own credentials (its `AWS_ACCESS_KEY_ID`), not the ones of
//! the client it is given: a recording of the emulator's requests counts them against the
//! function's role (`infra/check_iam.py`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::{InvokeError, LambdaFunction};

/// An SQS call that failed.
#[derive(Debug, thiserror::Error)]
#[error("SQS {operation}: {message}")]
pub struct SqsSourceError {
    pub operation: &'static str,
    pub message: String,
}

fn sqs_error<E: std::fmt::Debug>(operation: &'static str) -> impl FnOnce(E) -> SqsSourceError {
    move |e| SqsSourceError {
        operation,
        message: format!("{e:?}"),
    }
}

/// `sqs` signing with `function`'s credentials, when its configuration has them.
fn as_function(sqs: &aws_sdk_sqs::Client, function: &LambdaFunction) -> aws_sdk_sqs::Client {
    let var = |name: &str| {
        function
            .config()
            .env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
    else {
        return sqs.clone();
    };
    let credentials = Credentials::new(key_id, secret, None, None, "lambda-event-source");
    let config = sqs.config().to_builder().credentials_provider(credentials);
    aws_sdk_sqs::Client::from_conf(config.build())
}

/// What one batch came to.
#[derive(Debug)]
pub struct Delivery {
    /// The message ids of the batch, in order.
    pub message_ids: Vec<String>,
    /// The function's result.
    pub result: Result<Value, InvokeError>,
    /// How long the invocation took (Lambda's "Duration").
    pub duration: Duration,
    /// The records reported failed (`batchItemFailures`).
    pub failed: Vec<String>,
    /// How many records were deleted from the queue.
    pub deleted: usize,
}

/// One queue feeding one function.
pub struct SqsEventSource {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    region: String,
    function: Arc<LambdaFunction>,
    /// Records per batch, 1 to 10.
    pub batch_size: i32,
}

impl SqsEventSource {
    pub async fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: &str,
        function: Arc<LambdaFunction>,
    ) -> Result<Self, SqsSourceError> {
        let sqs = as_function(&sqs, &function);
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sqs_error("GetQueueAttributes"))?;
        let queue_arn = attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        // arn:aws:sqs:<region>:<account>:<name>
        let region = queue_arn
            .split(':')
            .nth(3)
            .unwrap_or("eu-central-1")
            .to_owned();
        Ok(SqsEventSource {
            sqs,
            queue_url: queue_url.to_owned(),
            queue_arn,
            region,
            function,
            batch_size: 10,
        })
    }

    pub fn function(&self) -> &Arc<LambdaFunction> {
        &self.function
    }

    /// One `ReceiveMessage` (long poll up to `wait`, whole seconds), with every attribute.
    pub async fn receive(&self, wait: Duration) -> Result<Vec<Message>, SqsSourceError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size.clamp(1, 10))
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(sqs_error("ReceiveMessage"))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// The `aws:sqs` event Lambda builds from a batch.
    pub fn event(&self, messages: &[Message]) -> Value {
        let records: Vec<Value> = messages.iter().map(|m| self.record(m)).collect();
        json!({ "Records": records })
    }

    fn record(&self, m: &Message) -> Value {
        let attributes: Map<String, Value> = m
            .attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
            .collect();
        let message_attributes: Map<String, Value> = m
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(name, a)| {
                let mut v = json!({
                    "stringListValues": a.string_list_values(),
                    "binaryListValues": a
                        .binary_list_values()
                        .iter()
                        .map(|b| BASE64.encode(b.as_ref()))
                        .collect::<Vec<_>>(),
                    "dataType": a.data_type(),
                });
                if let Some(s) = a.string_value() {
                    v["stringValue"] = json!(s);
                }
                if let Some(b) = a.binary_value() {
                    v["binaryValue"] = json!(BASE64.encode(b.as_ref()));
                }
                (name.clone(), v)
            })
            .collect();
        let mut record = json!({
            "messageId": m.message_id(),
            "receiptHandle": m.receipt_handle(),
            "body": m.body().unwrap_or_default(),
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": m.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        });
        if let Some(md5) = m.md5_of_message_attributes() {
            record["md5OfMessageAttributes"] = json!(md5);
        }
        record
    }

    /// Invokes the function with `messages` and deletes what it did not report failed.
    pub async fn deliver(&self, messages: &[Message]) -> Result<Delivery, SqsSourceError> {
        let message_ids: Vec<String> = messages
            .iter()
            .map(|m| m.message_id().unwrap_or_default().to_owned())
            .collect();
        let invocation = self.function.invoke_timed(&self.event(messages)).await;
        let (result, duration) = (invocation.result, invocation.duration);
        let Ok(response) = &result else {
            return Ok(Delivery {
                message_ids,
                result,
                duration,
                failed: Vec::new(),
                deleted: 0,
            });
        };
        let failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
            .collect();
        let known: HashSet<&str> = message_ids.iter().map(String::as_str).collect();
        // A failure naming no record of the batch fails the whole batch.
        let whole_batch_failed = failed.iter().any(|id| !known.contains(id.as_str()));
        let mut deleted = 0;
        if !whole_batch_failed {
            let done: Vec<&Message> = messages
                .iter()
                .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                .collect();
            for chunk in done.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                            .map_err(sqs_error("DeleteMessageBatch"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .sqs
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(sqs_error("DeleteMessageBatch"))?;
                deleted += out.successful().len();
            }
        }
        Ok(Delivery {
            message_ids,
            result,
            duration,
            failed,
            deleted,
        })
    }

    /// One poll: receive a batch and deliver it; `None` when the queue gave nothing.
    pub async fn poll_once(&self, wait: Duration) -> Result<Option<Delivery>, SqsSourceError> {
        let messages = self.receive(wait).await?;
        if messages.is_empty() {
            return Ok(None);
        }
        self.deliver(&messages).await.map(Some)
    }
}
