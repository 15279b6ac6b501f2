//! A DynamoDB stream event source mapping, as Lambda runs the callbacks function's
//! `StatusChanges` mapping of `template.yaml`: read each shard of the table's stream from
//! the start (`TRIM_HORIZON`), keep the records its filter lets through (`MODIFY` records
//! whose new image has a callback URL `cb`), and invoke the function with them as an
//! `aws:dynamodb` event. A failed invocation keeps the shard's position, so the same records
//! come again on the next poll, as the mapping retries.
//!
//! moto serves the stream API; it is called over plain HTTP in DynamoDB's JSON protocol,
//! with the function's access key id in the credential scope (moto does not check
//! signatures), so a recording counts the calls against the function's role, as the
//! mapping polls with it (`infra/check_iam.py`).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{InvokeError, LambdaFunction};

/// What one poll came to.
#[derive(Debug)]
pub struct StreamDelivery {
    /// Records read from the stream, and how many of them the filter passed on.
    pub read: usize,
    pub passed: usize,
    /// The function's result, if it was invoked.
    pub result: Option<Result<Value, InvokeError>>,
}

pub struct StreamEventSource {
    http: reqwest::Client,
    endpoint: String,
    key_id: String,
    stream_arn: String,
    region: String,
    function: Arc<LambdaFunction>,
    /// Each shard's next iterator.
    positions: Mutex<HashMap<String, String>>,
    /// Records per invocation.
    pub batch_size: usize,
}

impl StreamEventSource {
    /// The mapping of `table`'s stream (at moto's `endpoint`) to `function`.
    pub async fn new(
        endpoint: &str,
        table: &str,
        function: Arc<LambdaFunction>,
    ) -> Result<Self, String> {
        let key_id = function
            .config()
            .env
            .iter()
            .find(|(n, _)| n == "AWS_ACCESS_KEY_ID")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "testing".to_owned());
        let mut source = StreamEventSource {
            http: reqwest::Client::new(),
            endpoint: endpoint.to_owned(),
            key_id: "testing".to_owned(),
            stream_arn: String::new(),
            region: super::REGION.to_owned(),
            function,
            positions: Mutex::new(HashMap::new()),
            batch_size: 500,
        };
        // The mapping is set up by the deployment, not the function: the tests' own key.
        let table = source
            .call(
                "DynamoDB_20120810.DescribeTable",
                json!({ "TableName": table }),
            )
            .await?;
        source.stream_arn = table["Table"]["LatestStreamArn"]
            .as_str()
            .ok_or_else(|| format!("table {table} has no stream"))?
            .to_owned();
        source.key_id = key_id;
        Ok(source)
    }

    async fn call(&self, target: &str, body: Value) -> Result<Value, String> {
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/20261202/{}/dynamodb/aws4_request, \
             SignedHeaders=host;x-amz-target, Signature=0",
            self.key_id, self.region
        );
        let response = self
            .http
            .post(&self.endpoint)
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("X-Amz-Target", target)
            .header("Authorization", authorization)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{target}: {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{target}: {e}: {text}"))
    }

    /// One poll of every shard: the records read, filtered, handed to the function.
    pub async fn poll_once(&self) -> Result<StreamDelivery, String> {
        let described = self
            .call(
                "DynamoDBStreams_20120810.DescribeStream",
                json!({ "StreamArn": self.stream_arn }),
            )
            .await?;
        let shards: Vec<String> = described["StreamDescription"]["Shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ShardId"].as_str().map(str::to_owned))
            .collect();
        let mut positions = self.positions.lock().await;
        let mut records = Vec::new();
        let mut next_positions = Vec::new();
        for shard in shards {
            let iterator = match positions.get(&shard) {
                Some(i) => i.clone(),
                None => self
                    .call(
                        "DynamoDBStreams_20120810.GetShardIterator",
                        json!({
                            "StreamArn": self.stream_arn,
                            "ShardId": shard,
                            "ShardIteratorType": "TRIM_HORIZON",
                        }),
                    )
                    .await?["ShardIterator"]
                    .as_str()
                    .ok_or("no shard iterator")?
                    .to_owned(),
            };
            let got = self
                .call(
                    "DynamoDBStreams_20120810.GetRecords",
                    json!({ "ShardIterator": iterator, "Limit": self.batch_size }),
                )
                .await?;
            records.extend(got["Records"].as_array().cloned().unwrap_or_default());
            match got["NextShardIterator"].as_str() {
                Some(next) => next_positions.push((shard, next.to_owned())),
                None => next_positions.push((shard, iterator)),
            }
        }
        let read = records.len();
        let passed: Vec<Value> = records
            .into_iter()
            .filter(passes_filter)
            .map(|mut r| {
                r["eventSourceARN"] = json!(self.stream_arn);
                r
            })
            .collect();
        let count = passed.len();
        let result = if passed.is_empty() {
            None
        } else {
            Some(self.function.invoke(&json!({ "Records": passed })).await)
        };
        // A failed batch is read again next time, from where it started.
        if result.as_ref().is_none_or(Result::is_ok) {
            positions.extend(next_positions);
        }
        Ok(StreamDelivery {
            read,
            passed: count,
            result,
        })
    }
}

/// The `StatusChanges` mapping's filter in `template.yaml`:
/// `{"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"cb": {"S": [{"exists": true}]}}}}`.
fn passes_filter(record: &Value) -> bool {
    record["eventName"] == "MODIFY" && record["dynamodb"]["NewImage"]["cb"]["S"].is_string()
}
