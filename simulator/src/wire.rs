//! The "holub-sim v1" wire format: the JSON bodies the simulator and its clients exchange.
//!
//! Both sides use these types, so the format is written down once. Unknown fields are
//! ignored when reading, so either side may grow the format without breaking the other.
//! Types that hold a phone number or a text print neither in `Debug`.

use serde::{Deserialize, Serialize};

/// `POST`: submit messages.
pub const SEND_PATH: &str = "/api/v1/send";
/// `GET`: what the simulator knows of a message, by the client's id (`{client_id}`).
pub const MESSAGES_PATH: &str = "/api/v1/messages/{client_id}";
/// `GET`: the counters tests use to prove nothing was sent twice.
pub const STATS_PATH: &str = "/api/v1/stats";
/// `POST`: the final receipts of messages, by the simulator's ids.
pub const STATUS_PATH: &str = "/api/v1/status";

/// Most messages one send request may carry.
pub const MAX_MESSAGES_PER_REQUEST: usize = 1000;

/// The body of `POST /api/v1/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub messages: Vec<SendItem>,
}

/// One message to send.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendItem {
    /// The client's id of the message (a 26-character ULID): the simulator accepts each id
    /// once and answers a resubmission with the first answer.
    pub client_id: String,
    /// The recipient, E.164 digits with or without `+` (`380671234567`).
    pub to: String,
    /// An alpha-name or a phone number.
    pub from: String,
    pub text: String,
    /// Seconds the operator should keep trying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<u32>,
}

impl std::fmt::Debug for SendItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendItem")
            .field("client_id", &self.client_id)
            .field("from", &self.from)
            .field("text_chars", &self.text.chars().count())
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// The 200 answer to a send request: one result per message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    pub results: Vec<SendResult>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SendResult {
    Accepted {
        client_id: String,
        /// The simulator's id of the message, `sim-…`; receipts refer to it.
        message_id: String,
        /// The price in hryvnias, as a decimal string (`"0.85"`).
        cost: String,
        /// SMS parts billed; one receipt comes per part.
        parts: u16,
    },
    Error {
        client_id: String,
        /// A stable code: `invalid_client_id`, `invalid_number`, `invalid_sender`,
        /// `empty_text`, `text_too_long`, `rejected`.
        code: String,
        message: String,
        /// Whether sending the same message again may succeed.
        retryable: bool,
    },
}

/// The 200 answer to `GET /api/v1/messages/{client_id}`.
/// The body of a status query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    pub message_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    pub message_id: String,
    pub cost: String,
    pub parts: u16,
    /// `ENROUTE` until the message's receipt is due, then its final receipt status.
    pub status: String,
}

/// The body of every non-200 answer: `{"error": "not_found"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `bad_request`, `too_many_messages`, `not_found`,
    /// `invalid_client_id`, `rate_limited`, `unavailable`.
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer to `GET /api/v1/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct client ids accepted.
    pub accepted: u64,
    /// Every message of every send request processed, duplicates and refusals included.
    pub submissions: u64,
    /// Messages whose client id had already been accepted (answered, not sent again).
    pub duplicates: u64,
    /// Receipts produced or due but not yet taken by the receiver.
    pub receipts_pending: u64,
    /// Receipts the receiver answered 2xx for.
    pub receipts_posted: u64,
    /// Receipts dropped because the receiver refused their batch with a 4xx.
    #[serde(default)]
    pub receipts_dropped: u64,
}

/// The body the simulator POSTs to the receipts URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBatch {
    pub receipts: Vec<Receipt>,
}

/// One delivery report for one part of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The simulator's id of the message (`message_id` of the send answer).
    pub message_id: String,
    /// 1-based part number.
    pub part: u16,
    /// `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, `ENROUTE` or `ACCEPTD`.
    pub status: String,
    /// When the state was reached, RFC 3339.
    pub done_at: String,
}

/// Formats kopiykas as the wire's hryvnia string: `85` → `"0.85"`, `1200` → `"12.00"`.
pub fn format_hryvnias(kopiyky: i64) -> String {
    let sign = if kopiyky < 0 { "-" } else { "" };
    let abs = kopiyky.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use holub_shared::domain::Kopiyky;

    #[test]
    fn hryvnia_strings_round_trip() {
        for k in [0, 5, 85, 170, 1200, 123_456, -350] {
            let text = format_hryvnias(k);
            assert_eq!(Kopiyky::parse_hryvnias(&text), Ok(Kopiyky(k)), "{text}");
        }
        assert_eq!(format_hryvnias(85), "0.85");
        assert_eq!(format_hryvnias(1200), "12.00");
    }

    #[test]
    fn results_are_tagged_by_status() -> Result<(), serde_json::Error> {
        let accepted = SendResult::Accepted {
            client_id: "c".into(),
            message_id: "sim-1".into(),
            cost: "0.85".into(),
            parts: 1,
        };
        assert_eq!(
            serde_json::to_value(&accepted)?,
            serde_json::json!({"status": "accepted", "client_id": "c", "message_id": "sim-1",
                               "cost": "0.85", "parts": 1})
        );
        let error: SendResult = serde_json::from_str(
            r#"{"status":"error","client_id":"c","code":"rejected","message":"no","retryable":false,"extra":1}"#,
        )?;
        assert!(matches!(
            error,
            SendResult::Error {
                retryable: false,
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn send_item_debug_hides_number_and_text() {
        let item = SendItem {
            client_id: "01J0000000000000000000000".into(),
            to: "380671234567".into(),
            from: "Holub".into(),
            text: "secret code 4821".into(),
            validity: None,
        };
        let shown = format!("{item:?}");
        assert!(!shown.contains("380671234567") && !shown.contains("4821"));
    }
}
