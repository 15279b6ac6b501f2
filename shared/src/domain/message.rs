//! A message as Holub keeps it: what was asked, and everything that happened to it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::consent::Category;
use super::ids::{BatchId, MessageId, TenantId};
use super::links::{ShortCode, TrackedLink};
use super::money::Kopiyky;
use super::phone::PhoneNumber;
use super::segments::Encoding;
use super::sender::SenderId;
use super::status::{MessageStatus, StatusSet};

/// One SMS (of one or more parts) to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub batch_id: Option<BatchId>,
    pub to: PhoneNumber,
    pub from: SenderId,
    /// The text as sent (after transliteration, when asked for).
    pub text: String,
    pub encoding: Encoding,
    pub segments: u16,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When a scheduled message is to be released.
    pub send_at: Option<DateTime<Utc>>,
    /// After this instant the message is no longer worth delivering: no more retries, and
    /// without a final receipt it becomes `expired`.
    pub expires_at: DateTime<Utc>,
    pub callback_url: Option<String>,
    /// The statuses `callback_url` is told about.
    #[serde(default)]
    pub callback_statuses: StatusSet,
    pub reference: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    pub cost: Option<Kopiyky>,
    pub error: Option<MessageError>,
    /// Submissions tried so far (a retryable failure hands the message back to the queue).
    pub attempts: u32,
    pub history: Vec<StatusChange>,
    /// The tracked links of the text, in order (none unless asked for).
    #[serde(default)]
    pub links: Vec<TrackedLink>,
    /// Clicks on its tracked links by people.
    #[serde(default)]
    pub clicks: u32,
    /// Clicks on its tracked links by preview fetchers and crawlers.
    #[serde(default)]
    pub bot_clicks: u32,
    /// The first click by a person.
    #[serde(default)]
    pub clicked_at: Option<DateTime<Utc>>,
    /// Transactional (the default) or marketing.
    #[serde(default)]
    pub category: Category,
    /// The code of a marketing message's opt-out link (`<short base>/<code>`, at the end of
    /// its text).
    #[serde(default)]
    pub opt_out: Option<ShortCode>,
}

impl Message {
    /// Every short code the message owns: its tracked links' and its opt-out link's.
    pub fn codes(&self) -> impl Iterator<Item = &ShortCode> {
        self.links
            .iter()
            .map(|l| &l.code)
            .chain(self.opt_out.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: MessageStatus,
    pub at: DateTime<Utc>,
}

/// Why a message failed, in words a customer can act on, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageError {
    pub code: String,
    pub message: String,
}
