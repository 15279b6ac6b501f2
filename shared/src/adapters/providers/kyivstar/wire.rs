//! Kyivstar Open Telecom's JSON bodies, as documented. Public so the simulator speaks the
//! same shapes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

/// `POST /rest/v1/sms` body, and one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRequest {
    pub from: String,
    pub to: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_segments: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_ttl_sec: Option<u32>,
}

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    #[serde(default)]
    pub req_id: Option<String>,
    pub msg_id: String,
    #[serde(default)]
    pub reserved_sms_segments: Option<u32>,
}

/// The answer to `GET /rest/v1/sms/{msgId}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResponse {
    #[serde(default)]
    pub req_id: Option<String>,
    pub msg_id: String,
    pub status: String,
    #[serde(default)]
    pub date: Option<String>,
}

/// `POST /rest/v1/sms/batch` body: items by the client's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSendRequest {
    pub data: BTreeMap<String, SendRequest>,
}

/// The answer to a batch send: one result per key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSendResponse {
    #[serde(default)]
    pub req_id: Option<String>,
    pub data: HashMap<String, BatchItemResult>,
}

/// One item's result: accepted (`msgId`) or refused (`errorCode`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemResult {
    #[serde(default)]
    pub msg_id: Option<String>,
    #[serde(default)]
    pub reserved_sms_segments: Option<u32>,
    #[serde(default)]
    pub error_code: Option<ErrorCode>,
    #[serde(default)]
    pub error_msg: Option<String>,
}

/// `POST /rest/v1/sms/status/batch` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBatchRequest {
    pub data: Vec<String>,
}

/// The answer to a status query: entries by message id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBatchResponse {
    #[serde(default)]
    pub req_id: Option<String>,
    pub data: HashMap<String, StatusItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusItem {
    #[serde(default)]
    pub msg_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub error_code: Option<ErrorCode>,
}

/// The body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub req_id: Option<String>,
    #[serde(default)]
    pub error_code: Option<ErrorCode>,
    #[serde(default)]
    pub error_msg: Option<String>,
}

/// `errorCode` is a number in error answers and a string in the Go client's batch model;
/// both are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ErrorCode {
    Number(i64),
    Text(String),
}

impl ErrorCode {
    pub fn as_number(&self) -> Option<i64> {
        match self {
            ErrorCode::Number(n) => Some(*n),
            ErrorCode::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Number(n) => write!(f, "{n}"),
            ErrorCode::Text(s) => f.write_str(s),
        }
    }
}

/// The token endpoint's answer.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<Seconds>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `expires_in`: seconds, as a number (or, leniently, a numeric string).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    pub fn get(&self) -> Option<u64> {
        match self {
            Seconds::Number(n) => Some(*n),
            Seconds::Text(s) => s.trim().parse().ok(),
        }
    }
}
