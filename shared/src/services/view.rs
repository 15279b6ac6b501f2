//! How a message is shown to its owner: the API's responses and the status callbacks.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{Category, Encoding, Message, MessageError, MessageStatus, StatusChange};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageView {
    /// Sortable message id (ULID).
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(example = "delivered"))]
    pub status: MessageStatus,
    /// The recipient in E.164.
    pub to: String,
    pub from: String,
    /// The text as sent (after transliteration, when asked for).
    pub text: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "GSM-7"))]
    pub encoding: Encoding,
    pub segments: u16,
    /// The Ukrainian operator of the number's prefix (a routing hint; numbers can be ported).
    pub operator: &'static str,
    pub batch_id: Option<String>,
    pub reference: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
    pub send_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// What the provider charged, in kopiykas.
    pub cost_kopiyky: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub error: Option<MessageError>,
    pub attempts: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub history: Vec<StatusChange>,
    /// The tracked links of the text, in order: each short link's code and the URL it
    /// redirects to (empty unless `track_links` was asked for).
    pub links: Vec<LinkView>,
    /// Clicks on the tracked links by people.
    pub clicks: u32,
    /// Clicks on them by link-preview fetchers and crawlers (counted apart).
    pub bot_clicks: u32,
    /// The first click by a person.
    pub clicked_at: Option<DateTime<Utc>>,
    pub category: Category,
    /// A marketing message's opt-out link's code (the link ends its text).
    pub opt_out: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkView {
    pub code: String,
    pub url: String,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id.to_string(),
            status: m.status,
            to: m.to.as_e164().to_owned(),
            from: m.from.as_str().to_owned(),
            text: m.text.clone(),
            encoding: m.encoding,
            segments: m.segments,
            operator: m.to.operator().as_str(),
            batch_id: m.batch_id.as_ref().map(|b| b.as_str().to_owned()),
            reference: m.reference.clone(),
            metadata: m.metadata.clone(),
            send_at: m.send_at,
            expires_at: m.expires_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            provider: m.provider.clone(),
            provider_message_id: m.provider_message_id.clone(),
            cost_kopiyky: m.cost.map(|c| c.0),
            error: m.error.clone(),
            attempts: m.attempts,
            history: m.history.clone(),
            links: m
                .links
                .iter()
                .map(|l| LinkView {
                    code: l.code.to_string(),
                    url: l.url.clone(),
                })
                .collect(),
            clicks: m.clicks,
            bot_clicks: m.bot_clicks,
            clicked_at: m.clicked_at,
            category: m.category,
            opt_out: m.opt_out.as_ref().map(|c| c.to_string()),
        }
    }
}

impl MessageView {
    pub fn json(m: &Message) -> serde_json::Value {
        serde_json::to_value(MessageView::from(m)).unwrap_or(serde_json::Value::Null)
    }
}
