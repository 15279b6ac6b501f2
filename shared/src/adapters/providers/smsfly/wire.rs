use serde::{Deserialize, Serialize};

/// Every request: the key, the action, and the action's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request<D> {
    pub auth: Auth,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub key: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { key: *** }")
    }
}

/// The actions this adapter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "SENDMESSAGE")]
    SendMessage,
    #[serde(rename = "GETMESSAGESTATUS")]
    GetMessageStatus,
    #[serde(rename = "GETBALANCE")]
    GetBalance,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SendMessage => "SENDMESSAGE",
            Action::GetMessageStatus => "GETMESSAGESTATUS",
            Action::GetBalance => "GETBALANCE",
        }
    }
}

/// `SENDMESSAGE` data for one recipient over SMS only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendData {
    /// Digits with the country code: `380671234567`.
    pub recipient: String,
    pub channels: Vec<String>,
    pub sms: SmsBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsBody {
    /// The sender (alpha-name).
    pub source: String,
    /// Minutes the operator keeps trying, 1 to 1440.
    pub ttl: u32,
    pub text: String,
}

/// `GETMESSAGESTATUS` data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusQuery {
    #[serde(rename = "messageID")]
    pub message_id: String,
}

/// Every answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer<D> {
    /// 1 on success, 0 on error.
    pub success: u8,
    /// `2025-09-18 14:14:01 +0300`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The data of `SENDMESSAGE` and `GETMESSAGESTATUS` answers: the message and its state
/// per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageData {
    #[serde(rename = "messageID")]
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<ChannelState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viber: Option<ChannelState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelState {
    pub status: FlyStatus,
    /// With an offset in send answers, without one in status answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Amount>,
    /// Viber only (`transaction:1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `GETBALANCE` data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalanceData {
    pub balance: Amount,
}

/// An amount in hryvnias, as a string (`"0.979"`) or a JSON number (`0.475`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Amount {
    Text(String),
    Number(serde_json::Number),
}

impl Amount {
    /// The amount as decimal text. A JSON number prints as the shortest text that reads
    /// back as the same number, which is the text the provider sent for any amount of
    /// money.
    pub fn to_text(&self) -> String {
        match self {
            Amount::Text(text) => text.trim().to_owned(),
            Amount::Number(number) => number.to_string(),
        }
    }
}

/// The documented message statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlyStatus {
    #[serde(rename = "ACCEPTD")]
    Accepted,
    #[serde(rename = "PENDING")]
    Pending,
    #[serde(rename = "INPROGRESS")]
    InProgress,
    #[serde(rename = "SENT")]
    Sent,
    #[serde(rename = "DELIVRD")]
    Delivered,
    #[serde(rename = "VIEWED")]
    Viewed,
    #[serde(rename = "EXPIRED")]
    Expired,
    #[serde(rename = "UNDELIV")]
    Undelivered,
    #[serde(rename = "STOPED")]
    Stopped,
    #[serde(rename = "ERROR")]
    Error,
    #[serde(rename = "INSUFFICIENTFUNDS")]
    InsufficientFunds,
    #[serde(rename = "MODERATION")]
    Moderation,
    #[serde(rename = "RESERVED")]
    Reserved,
    #[serde(rename = "REFUND")]
    Refund,
    #[serde(rename = "UNKNOWN")]
    Unknown,
    /// Anything the sources do not list.
    #[serde(other)]
    Unlisted,
}

impl FlyStatus {
    /// Every documented status.
    pub const DOCUMENTED: [FlyStatus; 15] = [
        FlyStatus::Accepted,
        FlyStatus::Pending,
        FlyStatus::InProgress,
        FlyStatus::Sent,
        FlyStatus::Delivered,
        FlyStatus::Viewed,
        FlyStatus::Expired,
        FlyStatus::Undelivered,
        FlyStatus::Stopped,
        FlyStatus::Error,
        FlyStatus::InsufficientFunds,
        FlyStatus::Moderation,
        FlyStatus::Reserved,
        FlyStatus::Refund,
        FlyStatus::Unknown,
    ];
}
