//! The messages table's stream (`NEW_AND_OLD_IMAGES`), as Lambda's event source hands it to
//! the callbacks function: the AWS side of the status-event spine. A record whose status
//! differs from its old image's is one status change; those of messages with a callback URL
//! that asked for the status become callback jobs. DynamoDB writes the record with the change
//! itself, and the event source retries a batch until the function takes it, so no committed
//! change misses its callback (one may be told twice: events carry ids for that).
//!
//! The event is external input like any other: records that do not read as a message's
//! change are skipped (a retry would not make them readable), and counted.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::codec::{self, Item, msg};
use crate::services::jobs::CallbackJobs;

/// A DynamoDB stream event as Lambda delivers it.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventSource", default)]
    pub event_source: Option<String>,
    #[serde(default)]
    pub dynamodb: Option<Images>,
}

#[derive(Debug, Deserialize)]
pub struct Images {
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<HashMap<String, Value>>,
    #[serde(rename = "OldImage", default)]
    pub old_image: Option<HashMap<String, Value>>,
}

impl StreamEvent {
    /// Whether a Lambda event is a DynamoDB stream's (rather than an SQS batch).
    pub fn is_stream(event: &Value) -> bool {
        event["Records"][0]["eventSource"] == "aws:dynamodb"
    }
}

/// The callback jobs of a stream batch, and how many records were skipped as unreadable.
pub fn callback_jobs(event: &StreamEvent) -> (CallbackJobs, usize) {
    let mut jobs = CallbackJobs::default();
    let mut unreadable = 0;
    for record in &event.records {
        match change(record) {
            Ok(None) => {}
            Ok(Some((item, clicked))) => match codec::callback_event(&item, clicked) {
                Ok(Some((tenant, url, wanted, event))) => jobs.push(&tenant, &url, wanted, event),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "a stream record's message is unreadable; skipped");
                    unreadable += 1;
                }
            },
            Err(why) => {
                tracing::warn!(why, "an unreadable stream record; skipped");
                unreadable += 1;
            }
        }
    }
    (jobs, unreadable)
}

/// The new image of a record that changed a message's status, or that recorded its first
/// click by a person (then `true`); `None` for any other record (a new message, a change
/// that kept the status, a removal, an item that is no message).
fn change(record: &StreamRecord) -> Result<Option<(Item, bool)>, &'static str> {
    if record.event_source.as_deref() != Some("aws:dynamodb") {
        return Err("not a DynamoDB stream record");
    }
    let Some(images) = &record.dynamodb else {
        return Err("no images");
    };
    let (Some(new), Some(old)) = (&images.new_image, &images.old_image) else {
        return Ok(None);
    };
    fn status(image: &HashMap<String, Value>) -> Option<&str> {
        image.get(msg::STATUS)?["S"].as_str()
    }
    if new.contains_key(msg::CLICKED) && !old.contains_key(msg::CLICKED) {
        return item(new).map(|i| Some((i, true)));
    }
    match (status(new), status(old)) {
        (Some(now), Some(before)) if now != before => item(new).map(|i| Some((i, false))),
        _ => Ok(None),
    }
}

/// An image in DynamoDB's JSON as attribute values.
fn item(image: &HashMap<String, Value>) -> Result<Item, &'static str> {
    image
        .iter()
        .map(|(name, value)| Ok((name.clone(), attribute(value)?)))
        .collect()
}

fn attribute(value: &Value) -> Result<AttributeValue, &'static str> {
    let Some((kind, inner)) = value
        .as_object()
        .and_then(|o| (o.len() == 1).then(|| o.iter().next()).flatten())
    else {
        return Err("an attribute is not one typed value");
    };
    let string = || {
        inner
            .as_str()
            .map(str::to_owned)
            .ok_or("a string attribute is not a string")
    };
    let strings = || {
        inner
            .as_array()
            .ok_or("a set is not an array")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("a set member is not a string")
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let blob = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Blob::new)
            .map_err(|_| "a binary attribute is not base64")
    };
    Ok(match kind.as_str() {
        "S" => AttributeValue::S(string()?),
        "N" => AttributeValue::N(string()?),
        "B" => AttributeValue::B(blob(&string()?)?),
        "BOOL" => AttributeValue::Bool(inner.as_bool().ok_or("BOOL is not a boolean")?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(strings()?),
        "NS" => AttributeValue::Ns(strings()?),
        "BS" => AttributeValue::Bs(
            strings()?
                .iter()
                .map(|s| blob(s))
                .collect::<Result<_, _>>()?,
        ),
        "L" => AttributeValue::L(
            inner
                .as_array()
                .ok_or("L is not an array")?
                .iter()
                .map(attribute)
                .collect::<Result<_, _>>()?,
        ),
        "M" => AttributeValue::M(item(
            &inner
                .as_object()
                .ok_or("M is not an object")?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )?),
        _ => return Err("an attribute of an unknown type"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageStatus;

    /// Four records of the messages table's stream as Lambda delivers them (the record
    /// layout of the DynamoDB Streams `GetRecords` reference, with `eventSourceARN` added by
    /// the event source mapping): a delivery, a receipt that changed no status, a status the
    /// URL did not ask for, and a failure.
    const EVENT: &str = include_str!("../../../../events/dynamodb-stream-status-changes.json");

    #[test]
    fn status_changes_become_the_callbacks_asked_for() {
        let event: StreamEvent = serde_json::from_str(EVENT).unwrap();
        assert!(StreamEvent::is_stream(
            &serde_json::from_str(EVENT).unwrap()
        ));
        let (jobs, unreadable) = callback_jobs(&event);
        assert_eq!(unreadable, 0);
        let jobs = jobs.into_jobs();
        assert_eq!(jobs.len(), 1, "one URL, one job");
        assert_eq!(jobs[0].url, "https://hooks.example.com/holub");
        let told: Vec<(String, MessageStatus)> = jobs[0]
            .events
            .iter()
            .map(|e| (e.message_id.to_string(), e.status))
            .collect();
        assert_eq!(
            told,
            [
                (
                    "01JV7Q9A1B2C3D4E5F6G7H8J9K".into(),
                    MessageStatus::Delivered
                ),
                ("01JV7Q9A1B2C3D4E5F6G7H8J9M".into(), MessageStatus::Failed),
            ]
        );
        let delivered = &jobs[0].events[0];
        assert_eq!(delivered.cost_kopiyky, Some(85));
        assert_eq!(delivered.provider.as_deref(), Some("alphasms"));
        assert_eq!(delivered.reference.as_deref(), Some("order-1842"));
        let failed = &jobs[0].events[1];
        assert_eq!(failed.error.as_ref().unwrap().code, "provider_rejected");
    }

    #[test]
    fn a_first_click_by_a_person_becomes_a_clicked_callback_and_later_ones_do_not() {
        let mut event: Value = serde_json::from_str(EVENT).unwrap();
        // The record of a change that kept the status: now the first click by a person.
        let record = &mut event["Records"][1]["dynamodb"];
        record["NewImage"]["hc"] = serde_json::json!({"N": "1"});
        record["NewImage"]["fc"] = serde_json::json!({"N": "1780000000000000000"});
        // The delivery: a later click, with the first one already in the old image.
        let record = &mut event["Records"][0]["dynamodb"];
        record["OldImage"]["fc"] = serde_json::json!({"N": "1770000000000000000"});
        record["NewImage"]["fc"] = serde_json::json!({"N": "1770000000000000000"});
        let event: StreamEvent = serde_json::from_value(event).unwrap();
        let (jobs, unreadable) = callback_jobs(&event);
        assert_eq!(unreadable, 0);
        let events = &jobs.into_jobs()[0].events;
        let clicked: Vec<_> = events.iter().filter(|e| e.clicked).collect();
        assert_eq!(clicked.len(), 1, "{events:?}");
        assert_eq!(
            clicked[0].at,
            chrono::DateTime::from_timestamp_nanos(1_780_000_000_000_000_000)
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| !e.clicked && e.status == MessageStatus::Delivered)
                .count(),
            1,
            "the delivery is still told"
        );
    }

    #[test]
    fn unreadable_records_are_skipped_and_counted() {
        let mut event: Value = serde_json::from_str(EVENT).unwrap();
        event["Records"][0]["dynamodb"]["NewImage"]["sg"] = serde_json::json!({"N": "many"});
        event["Records"][3]["dynamodb"]["NewImage"]["st"] = serde_json::json!({"X": "failed"});
        let event: StreamEvent = serde_json::from_value(event).unwrap();
        let (jobs, unreadable) = callback_jobs(&event);
        assert_eq!(
            unreadable, 1,
            "the bad number; a status that is no string is no change"
        );
        assert!(jobs.is_empty());
        let sqs = serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]});
        assert!(!StreamEvent::is_stream(&sqs));
    }
}
