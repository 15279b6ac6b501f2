//! SMS Fly, API v2: one JSON endpoint (`POST https://sms-fly.ua/api/v2/api.php`) whose body
//! names an `action`.
//!
//! # Sources
//!
//! The official description is the PDF <https://sms-fly.ua/public/api.v2.03.pdf>, linked from
//! <https://sms-fly.ua/integration/api/>. It could not be read from here, so this adapter
//! follows public clients that quote it:
//!
//! - github.com/sol-parts/symfony-smsfly-notifier: `SmsFlyTransport.php` (send, balance),
//!   `SmsFlyOptions.php` (`ttl` in minutes, 1 to 1440), `Tests/SmsFlyTransportTest.php` and
//!   `README.md` (a request body and a real answer);
//! - github.com/Vadim-Podlevsky/SmsFlyApi, `src/SmsFlyApi.php` (cites the PDF; every action,
//!   and a `GETMESSAGESTATUS` answer);
//! - github.com/Nekkoy/gateway-smsfly, `src/Services/SendMessageService.php` (an answer whose
//!   `cost` is a JSON number);
//! - github.com/knaus94/sms-fly, `src/index.ts` (the error answer's shape);
//! - Ubilling's `smsflyapi2` sender (`GETMESSAGESTATUS` polling and the status table), a public
//!   client's `msgCodesEn`/`msgErrorsEn` tables (the status and error vocabularies with their
//!   descriptions), and SMS Fly's own WordPress plugin (`includes/smsflyc.php`: `FORBIDDEN`,
//!   `INSUFFICIENTFUNDS`, `ERRPHONES`).
//!
//! The documented examples are the test fixtures in `fixtures/` (their `README.md` says
//! where each one comes from).
//!
//! # Wire format
//!
//! Every request is `{"auth": {"key": <API key>}, "action": <ACTION>, "data": {...}}`:
//!
//! - `SENDMESSAGE`, `data: {"recipient": "380…", "channels": ["sms"], "sms": {"source":
//!   <alpha-name>, "ttl": <minutes, 1–1440>, "text": …}}` → `data: {"messageID": "FAPI…",
//!   "sms": {"status": "ACCEPTD", "date": …, "cost": "0.979"}}`. One recipient per request:
//!   the sources show no bulk form, so `send_many` is the port's default (one request each).
//! - `GETMESSAGESTATUS`, `data: {"messageID": …}` → `data: {"messageID", "sms": {"status",
//!   "date"}}`, one message per request.
//! - `GETBALANCE` (no `data`) → `data: {"balance": …}`.
//!
//! Answers are `{"success": 1, "date": "2025-09-18 14:14:01 +0300", "data": {...}}` or
//! `{"success": 0, "date": …, "error": {"code", "date", "description"}}`. Amounts come as
//! strings or JSON numbers, in hryvnias with up to 3 decimals.
//!
//! # Settings and credentials
//!
//! Settings (unknown keys refused): `base_url` (default `https://sms-fly.ua`; the endpoint is
//! `<base_url>/api/v2/api.php`) and `timeout_ms` (optional, a whole-request timeout shorter
//! than the shared client's 10 s). Credentials: `{"key": "<API key from the SMS Fly cabinet>"}`.
//!
//! # Receipts: polled
//!
//! SMS Fly API v2 pushes nothing that the sources describe: clients poll `GETMESSAGESTATUS`.
//! So [`ReceiptMode::Poll`], no webhook, and [`SmsProvider::status`] asks once per message.
//! A status covers the whole message, not its parts, so each is reported once, as
//! [`WHOLE_MESSAGE`], and Holub applies it to every part of the message. The provider id Holub
//! records is SMS Fly's `messageID` as it is (`FAPI00134035C3000004`), the one the SMS Fly
//! cabinet shows.
//!
//! | SMS Fly status | Meaning (documented) | [`ReceiptState`] |
//! |----------------|----------------------|------------------|
//! | `ACCEPTD` | accepted by the system | `Enroute` |
//! | `PENDING` | queued to be sent | `Enroute` |
//! | `INPROGRESS` | in processing | `Enroute` |
//! | `SENT` | sent | `Enroute` |
//! | `MODERATION` | in moderation | `Enroute` |
//! | `RESERVED` | reserved by the system | `Enroute` (not said to be final: kept open) |
//! | `DELIVRD` | delivered | `Delivered` |
//! | `VIEWED` | viewed (Viber) | `Delivered` |
//! | `UNDELIV` | not delivered | `Undelivered` |
//! | `ERROR` | sending error | `Undelivered` |
//! | `REFUND` | prepared for refund (not carried) | `Undelivered` |
//! | `EXPIRED` | delivery time expired | `Expired` |
//! | `STOPED` | stopped by the system | `Rejected` |
//! | `INSUFFICIENTFUNDS` | no money for this message | `Rejected` |
//! | `UNKNOWN` | no information about the message | no receipt (no news) |
//!
//! An unlisted status gives no receipt either (logged). Channel dates with an offset are read
//! as such; dates without one (as in the documented status answer) are Kyiv local time
//! ([`kyiv`]); a missing or unreadable date is the time of the poll.
//!
//! # Errors
//!
//! | SMS Fly code (or transport) | Documented meaning | Holub code | Kind |
//! |-----------------------------|--------------------|------------|------|
//! | `FORBIDDEN` | access denied | `provider_unauthorized` | Account |
//! | `INSUFFICIENTFUNDS` | not enough money | `insufficient_balance` | Account |
//! | `INVRECIPIENT` | wrong recipient | `invalid_number` | Permanent |
//! | `ERRPHONES` | number in the stop list | `recipient_blocked` | Permanent |
//! | `INVROUTE` | message cannot be sent (no route) | `no_route` | Permanent |
//! | `INVSOURCE` | sender missing or not allowed | `sender_not_registered` | Permanent |
//! | `INVTEXT` | text missing or not acceptable | `invalid_text` | Permanent |
//! | `INVMSGID` | message id missing or not found | `message_not_found` | Permanent (a status query skips the id) |
//! | `INVREQUEST`, `INVACTION`, `INVCHANNELS`, `INVSMSMESSAGE`, `INVVIBERMESSAGE`, `INVBUTTON`, `INVIMAGEURL` | malformed request | `provider_bad_request` | Permanent |
//! | any other code | — | `provider_error` | Temporary |
//! | HTTP 429 | — | `provider_rate_limited` | Temporary |
//! | HTTP 5xx | — | `provider_unavailable` | Temporary |
//! | HTTP 401/403 without an error body | — | `provider_unauthorized` | Account |
//! | other 4xx without an error body | — | `provider_bad_request` | Permanent |
//! | no connection | — | `provider_unreachable` | Temporary |
//! | timeout or cut connection after sending | — | `provider_timeout`, `provider_unreachable` | Unknown |
//! | a 2xx answer that is not the documented JSON | — | `provider_bad_answer` | Unknown |
//!
//! *Account* errors are the account's, not the message's: the gateway takes SMS Fly out of
//! the route for a while and the message fails over.
//!
//! # What the sources do not say, and what this adapter does
//!
//! - **Client-side id**: none is documented, so [`SmsProvider::lookup`] answers `Permanent
//!   lookup_unsupported`, and an unknown outcome cannot be settled with SMS Fly.
//! - **Push receipts**: none documented; receipts are polled (above).
//! - **Rate limiting**: no rate-limit answer is documented; HTTP 429 is read as one.
//! - **HTTP statuses of error answers**: clients read `success: 0` bodies both with 200 and
//!   with 4xx statuses; both are mapped by their `error.code`.
//! - **Unknown error codes**: `success: 0` says the message was not taken, so resending is
//!   safe; they are Temporary, so another route may carry the message.
//! - **Amounts with 3 decimals** (`"0.979"`): Holub counts whole kopiykas; a cost is rounded up
//!   to the next kopiyka and a balance down, so neither is overstated in Holub's favour. JSON
//!   numbers are read through their shortest decimal text, never with float arithmetic.
//! - **The status in a send answer** (`ACCEPTD`; one client test shows `ACCEPT`) is not read:
//!   the message has an id, and what becomes of it comes from the status polls.
//! - **TTL**: `validity_seconds` is sent as whole minutes, rounded up, within 1–1440.
//! - **Phone-number senders**: sent as digits; SMS Fly documents registered alpha-names.
//!
//! No phone number or text is ever logged.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::http;
use super::kit::{self, ErrorKind, Setup};
use super::{Built, ProviderSetupError};
use crate::domain::kyiv;
use crate::domain::status::ReceiptState;
use crate::domain::{FailureCode, Kopiyky};
use crate::ports::provider::WHOLE_MESSAGE;
use crate::ports::{
    OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, Secret, SmsProvider, Submitted,
};

use wire::{
    Action, Answer, Auth, BalanceData, ErrorBody, FlyStatus, MessageData, Request, SendData,
    SmsBody, StatusQuery,
};

/// The kind string of this provider in the route table.
pub const KIND: &str = "smsfly";
/// The real API's host.
pub const DEFAULT_BASE_URL: &str = "https://sms-fly.ua";
/// The one endpoint, under the base URL.
pub const API_PATH: &str = "api/v2/api.php";
/// Message lifetime bounds, in minutes (`ttl`).
pub const TTL_MIN_MINUTES: u32 = 1;
pub const TTL_MAX_MINUTES: u32 = 1440;
/// Status queries in flight at once.
const MAX_CONCURRENT_STATUS: usize = 4;

/// Holub's codes for SMS Fly's errors (the transport ones are in [`http::codes`]).
pub mod error_codes {
    use crate::domain::FailureCode;

    pub const INSUFFICIENT_BALANCE: FailureCode = FailureCode::InsufficientBalance;
    pub const INVALID_NUMBER: FailureCode = FailureCode::InvalidNumber;
    pub const RECIPIENT_BLOCKED: FailureCode = FailureCode::RecipientBlocked;
    pub const NO_ROUTE: FailureCode = FailureCode::NoRoute;
    pub const SENDER_NOT_REGISTERED: FailureCode = FailureCode::SenderNotRegistered;
    pub const INVALID_TEXT: FailureCode = FailureCode::InvalidText;
    pub const MESSAGE_NOT_FOUND: FailureCode = FailureCode::MessageNotFound;
    pub const PROVIDER_ERROR: FailureCode = FailureCode::ProviderError;
    pub const LOOKUP_UNSUPPORTED: FailureCode = FailureCode::LookupUnsupported;
}

/// The JSON bodies of SMS Fly API v2, typed. Answers derive `Serialize` too, so the simulator
/// speaks with the same shapes the adapter reads.
pub mod wire;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    key: String,
}

/// Makes the SMS Fly provider `name` from its settings and credentials (see the module doc).
pub fn build(
    name: &str,
    settings: serde_json::Value,
    credentials: &Secret,
) -> Result<Built, ProviderSetupError> {
    SmsFly::new(name, settings, credentials).map(Built::polled)
}

/// The SMS Fly API v2 client.
#[derive(Debug)]
pub struct SmsFly {
    name: String,
    http: reqwest::Client,
    endpoint: reqwest::Url,
    key: Secret,
    timeout: Option<Duration>,
}

/// A successful answer's data.
struct Reply<D> {
    data: D,
}

impl SmsFly {
    fn new(
        name: &str,
        settings: serde_json::Value,
        credentials: &Secret,
    ) -> Result<Self, ProviderSetupError> {
        let setup = Setup::new(name);
        let settings: Settings = setup.settings(settings)?;
        let base = setup.base_url(settings.base_url.as_deref(), DEFAULT_BASE_URL)?;
        let credentials: Credentials = setup.credentials(
            credentials,
            "a JSON object {\"key\": \"<SMS Fly API key>\"}",
        )?;
        Ok(SmsFly {
            name: name.to_owned(),
            http: http::client(),
            endpoint: setup.join(&base, API_PATH)?,
            key: setup.required(&credentials.key, "the API key")?,
            timeout: setup.timeout(settings.timeout_ms, kit::MAX_TIMEOUT_MS)?,
        })
    }

    fn request<D>(&self, action: Action, data: Option<D>) -> Request<D> {
        Request {
            auth: Auth {
                key: self.key.expose().to_owned(),
            },
            action,
            data,
        }
    }

    /// One API call: the answer's data, or the provider's error mapped to the port's.
    async fn call<B: serde::Serialize, D: DeserializeOwned>(
        &self,
        body: &Request<B>,
    ) -> Result<Reply<D>, ProviderError> {
        let mut request = self.http.post(self.endpoint.clone()).json(body);
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        let action = body.action.as_str();
        if !status.is_success() {
            return Err(self.refusal(action, status, &bytes));
        }
        let answer: Answer<D> = serde_json::from_slice(&bytes).map_err(|_| {
            http::bad_answer(
                &self.name,
                &format!("the {action} answer is not SMS Fly API v2 JSON"),
            )
        })?;
        match (answer.success, answer.data, answer.error) {
            (1, Some(data), _) => Ok(Reply { data }),
            (0, _, Some(error)) => Err(map_error(&self.name, action, &error)),
            _ => Err(http::bad_answer(
                &self.name,
                &format!("the {action} answer has neither data nor an error"),
            )),
        }
    }

    /// An answer with an error status: its error body if it has the documented one, else the
    /// HTTP status.
    fn refusal(&self, action: &str, status: StatusCode, body: &[u8]) -> ProviderError {
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            return http::status_error(&self.name, status);
        }
        match serde_json::from_slice::<Answer<serde::de::IgnoredAny>>(body) {
            Ok(Answer {
                success: 0,
                error: Some(error),
                ..
            }) => map_error(&self.name, action, &error),
            _ => http::status_error(&self.name, status),
        }
    }

    /// The receipt of one message, by SMS Fly's `messageID`, if it has news.
    async fn status_of(&self, id: &str) -> Result<Option<ProviderReceipt>, ProviderError> {
        let body = self.request(
            Action::GetMessageStatus,
            Some(StatusQuery {
                message_id: id.to_owned(),
            }),
        );
        let reply: Reply<MessageData> = match self.call(&body).await {
            Ok(reply) => reply,
            Err(e) if e.code() == error_codes::MESSAGE_NOT_FOUND => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(receipt_of(&self.name, id, &reply.data, Utc::now()))
    }
}

#[async_trait]
impl SmsProvider for SmsFly {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
        let body = self.request(Action::SendMessage, Some(send_data(sms)));
        let reply: Reply<MessageData> = self.call(&body).await?;
        let data = reply.data;
        if data.message_id.trim().is_empty() {
            return Err(http::bad_answer(
                &self.name,
                "the send answer has no messageID",
            ));
        }
        let cost = data
            .sms
            .as_ref()
            .and_then(|state| state.cost.as_ref())
            .and_then(|amount| match to_kopiyky(&amount.to_text(), Rounding::Up) {
                Ok(cost) => Some(cost),
                Err(()) => {
                    tracing::warn!(provider = %self.name, id = %sms.id, "SMS Fly sent a cost that is not an amount");
                    None
                }
            });
        tracing::debug!(
            provider = %self.name, id = %sms.id, provider_id = %data.message_id,
            to = %sms.to.masked(), "SMS Fly took a message"
        );
        Ok(Submitted {
            provider_message_id: data.message_id,
            cost,
        })
    }

    fn receipt_mode(&self) -> ReceiptMode {
        ReceiptMode::Poll
    }

    async fn status(
        &self,
        provider_message_ids: &[String],
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        // One id per request: the API asks for one message at a time.
        kit::status_in_chunks(
            &self.name,
            provider_message_ids,
            1,
            MAX_CONCURRENT_STATUS,
            |chunk| async move {
                let mut receipts = Vec::new();
                for id in chunk {
                    receipts.extend(self.status_of(id).await?);
                }
                Ok(receipts)
            },
        )
        .await
    }

    async fn balance(&self) -> Result<Kopiyky, ProviderError> {
        let body = self.request::<()>(Action::GetBalance, None);
        let reply: Reply<BalanceData> = self.call(&body).await?;
        to_kopiyky(&reply.data.balance.to_text(), Rounding::Down)
            .map_err(|()| http::bad_answer(&self.name, "the balance is not an amount"))
    }
}

fn send_data(sms: &OutboundSms) -> SendData {
    let source = kit::sender(&sms.from);
    SendData {
        recipient: sms.to.digits().to_owned(),
        channels: vec!["sms".to_owned()],
        sms: SmsBody {
            source,
            ttl: ttl_minutes(sms.validity_seconds),
            text: sms.text.clone(),
        },
    }
}

/// Validity in whole minutes, rounded up, within what SMS Fly takes.
fn ttl_minutes(validity_seconds: u32) -> u32 {
    validity_seconds
        .div_ceil(60)
        .clamp(TTL_MIN_MINUTES, TTL_MAX_MINUTES)
}

/// The receipt state of a status, or `None` when it carries no news.
pub fn receipt_state(status: FlyStatus) -> Option<ReceiptState> {
    Some(match status {
        FlyStatus::Accepted
        | FlyStatus::Pending
        | FlyStatus::InProgress
        | FlyStatus::Sent
        | FlyStatus::Moderation
        | FlyStatus::Reserved => ReceiptState::Enroute,
        FlyStatus::Delivered | FlyStatus::Viewed => ReceiptState::Delivered,
        FlyStatus::Undelivered | FlyStatus::Error | FlyStatus::Refund => ReceiptState::Undelivered,
        FlyStatus::Expired => ReceiptState::Expired,
        FlyStatus::Stopped | FlyStatus::InsufficientFunds => ReceiptState::Rejected,
        FlyStatus::Unknown | FlyStatus::Unlisted => return None,
    })
}

/// The receipt (for the whole message) a status answer gives for the `messageID` `id`, or
/// `None` when it carries no news.
fn receipt_of(
    provider: &str,
    id: &str,
    data: &MessageData,
    now: DateTime<Utc>,
) -> Option<ProviderReceipt> {
    let sms = data.sms.as_ref()?;
    let Some(state) = receipt_state(sms.status) else {
        if sms.status == FlyStatus::Unlisted {
            tracing::warn!(
                provider,
                provider_id = id,
                "SMS Fly reported an unlisted status"
            );
        }
        return None;
    };
    let at = sms.date.as_deref().and_then(parse_date).unwrap_or(now);
    Some(ProviderReceipt {
        provider_message_id: id.to_owned(),
        part: WHOLE_MESSAGE,
        state,
        at,
    })
}

const DATE_WITH_OFFSET: &str = "%Y-%m-%d %H:%M:%S %z";
const DATE_WITHOUT_OFFSET: &str = "%Y-%m-%d %H:%M:%S";

/// A date as SMS Fly writes it: with an offset, or without one, then Kyiv local time (the
/// offset of the answer's own date would be wrong for a report from before a DST switch).
fn parse_date(date: &str) -> Option<DateTime<Utc>> {
    let date = date.trim();
    if let Ok(at) = DateTime::parse_from_str(date, DATE_WITH_OFFSET) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(date, DATE_WITHOUT_OFFSET)
        .ok()
        .map(kyiv::from_local)
}

/// How an amount with more than 2 decimals becomes whole kopiykas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rounding {
    /// Towards +∞ (costs).
    Up,
    /// Towards −∞ (balances).
    Down,
}

/// Hryvnias as SMS Fly writes them (`"0.979"`, `"12"`, `"-3.5"`) in kopiykas: the first two
/// decimals through [`Kopiyky::parse_hryvnias`], any further ones rounded as asked.
fn to_kopiyky(text: &str, rounding: Rounding) -> Result<Kopiyky, ()> {
    let text = text.trim();
    let Some(point) = text.find(['.', ',']) else {
        return Kopiyky::parse_hryvnias(text).map_err(|_| ());
    };
    let (head, frac) = (&text[..point], &text[point + 1..]);
    if frac.len() <= 2 {
        return Kopiyky::parse_hryvnias(text).map_err(|_| ());
    }
    let (kept, dropped) = frac.split_at(2);
    if !dropped.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let truncated = Kopiyky::parse_hryvnias(&format!("{head}.{kept}")).map_err(|_| ())?;
    if dropped.bytes().all(|b| b == b'0') {
        return Ok(truncated);
    }
    // Dropping decimals moved the amount towards zero.
    let negative = head.starts_with('-');
    let step = match (rounding, negative) {
        (Rounding::Up, false) => 1,
        (Rounding::Down, true) => -1,
        _ => 0,
    };
    truncated.0.checked_add(step).map(Kopiyky).ok_or(())
}

/// SMS Fly's error code as the port's error (the table in the module doc).
pub fn map_error(provider: &str, action: &str, error: &ErrorBody) -> ProviderError {
    let code = error.code.trim();
    let message = format!(
        "{provider}: SMS Fly refused {action} with {code}: {}",
        error.description.as_deref().unwrap_or("no description")
    );
    let (holub_code, kind) = ERRORS
        .iter()
        .find(|(fly, ..)| *fly == code)
        .map_or(UNLISTED_ERROR, |&(_, holub, kind)| (holub, kind));
    tracing::warn!(
        provider,
        action,
        code,
        holub_code = %holub_code,
        "SMS Fly answered an error"
    );
    kind.error(holub_code, message)
}

/// Every documented SMS Fly error code, as the module documentation's table.
pub const ERRORS: &[(&str, FailureCode, ErrorKind)] = {
    use ErrorKind::*;
    use FailureCode as F;
    &[
        ("FORBIDDEN", F::ProviderUnauthorized, Account),
        ("INSUFFICIENTFUNDS", F::InsufficientBalance, Account),
        ("INVRECIPIENT", F::InvalidNumber, Permanent),
        ("ERRPHONES", F::RecipientBlocked, Permanent),
        ("INVROUTE", F::NoRoute, Permanent),
        ("INVSOURCE", F::SenderNotRegistered, Permanent),
        ("INVTEXT", F::InvalidText, Permanent),
        ("INVMSGID", F::MessageNotFound, Permanent),
        ("INVREQUEST", F::ProviderBadRequest, Permanent),
        ("INVACTION", F::ProviderBadRequest, Permanent),
        ("INVCHANNELS", F::ProviderBadRequest, Permanent),
        ("INVSMSMESSAGE", F::ProviderBadRequest, Permanent),
        ("INVVIBERMESSAGE", F::ProviderBadRequest, Permanent),
        ("INVBUTTON", F::ProviderBadRequest, Permanent),
        ("INVIMAGEURL", F::ProviderBadRequest, Permanent),
    ]
};

/// Any other code: SMS Fly's trouble, maybe passing.
const UNLISTED_ERROR: (FailureCode, ErrorKind) = (FailureCode::ProviderError, ErrorKind::Temporary);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::providers::kit::testing::{minify as minified, outbound};
    use crate::domain::{Encoding, MessageId};
    use chrono::TimeZone;

    const SEND_REQUEST: &str = include_str!("fixtures/send_request.json");
    const SEND_RESPONSE: &str = include_str!("fixtures/send_response.json");
    const SEND_RESPONSE_VIBER_SMS: &str = include_str!("fixtures/send_response_viber_sms.json");
    const STATUS_REQUEST: &str = include_str!("fixtures/status_request.json");
    const STATUS_RESPONSE: &str = include_str!("fixtures/status_response.json");
    const BALANCE_REQUEST: &str = include_str!("fixtures/balance_request.json");
    const BALANCE_RESPONSE: &str = include_str!("fixtures/balance_response.json");
    const ERROR_RESPONSE: &str = include_str!("fixtures/error_response.json");

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn client(key: &str) -> SmsFly {
        SmsFly::new(
            "fly",
            serde_json::json!({}),
            &Secret::new(serde_json::json!({ "key": key }).to_string()),
        )
        .unwrap()
    }

    #[test]
    fn the_send_request_serializes_like_the_documented_one() {
        let sms = outbound("+380771234567", "sender", "Текст sms. Перевірка!", 300);
        assert_eq!(sms.encoding, Encoding::Ucs2);
        let body = client("authKey").request(Action::SendMessage, Some(send_data(&sms)));
        assert_eq!(serde_json::to_value(&body).unwrap(), json(SEND_REQUEST));
        // Byte for byte too, members in the documented order.
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            minified(SEND_REQUEST)
        );
        // And it reads back into the same typed request.
        let parsed: Request<SendData> = serde_json::from_str(SEND_REQUEST).unwrap();
        assert_eq!(parsed, body);
    }

    #[test]
    fn status_and_balance_requests_serialize_like_the_documented_ones() {
        let fly = client("PLACE_YOUR_API_KEY");
        let status = fly.request(
            Action::GetMessageStatus,
            Some(StatusQuery {
                message_id: "FAPI000B84EF7B000001".to_owned(),
            }),
        );
        assert_eq!(serde_json::to_value(&status).unwrap(), json(STATUS_REQUEST));
        let balance = fly.request::<()>(Action::GetBalance, None);
        assert_eq!(
            serde_json::to_value(&balance).unwrap(),
            json(BALANCE_REQUEST)
        );
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let fly = client("very-secret");
        assert!(!format!("{fly:?}").contains("very-secret"));
        let body = fly.request::<()>(Action::GetBalance, None);
        assert!(!format!("{body:?}").contains("very-secret"));
    }

    #[test]
    fn ttl_is_whole_minutes_within_bounds() {
        assert_eq!(ttl_minutes(0), 1);
        assert_eq!(ttl_minutes(1), 1);
        assert_eq!(ttl_minutes(60), 1);
        assert_eq!(ttl_minutes(61), 2);
        assert_eq!(ttl_minutes(3600), 60);
        assert_eq!(ttl_minutes(86_400), 1440);
        assert_eq!(ttl_minutes(u32::MAX), 1440);
    }

    #[test]
    fn phone_senders_go_as_digits() {
        let sms = outbound("0671234567", "+380 50 123 45 67", "Hi", 60);
        assert_eq!(send_data(&sms).sms.source, "380501234567");
        assert_eq!(send_data(&sms).recipient, "380671234567");
    }

    #[test]
    fn the_send_answers_parse_with_ids_and_costs() {
        let answer: Answer<MessageData> = serde_json::from_str(SEND_RESPONSE).unwrap();
        assert_eq!(answer.success, 1);
        let data = answer.data.unwrap();
        assert_eq!(data.message_id, "FAPI00134035C3000004");
        let sms = data.sms.unwrap();
        assert_eq!(sms.status, FlyStatus::Accepted);
        let cost = sms.cost.unwrap();
        assert_eq!(cost, wire::Amount::Text("0.979".to_owned()));
        // 97.9 kopiykas cost 98.
        assert_eq!(to_kopiyky(&cost.to_text(), Rounding::Up), Ok(Kopiyky(98)));

        let answer: Answer<MessageData> = serde_json::from_str(SEND_RESPONSE_VIBER_SMS).unwrap();
        let data = answer.data.unwrap();
        assert_eq!(data.message_id, "FAPI00040A3AFA000002");
        let viber = data.viber.unwrap();
        assert_eq!(viber.label.as_deref(), Some("transaction:1"));
        assert_eq!(
            to_kopiyky(&viber.cost.unwrap().to_text(), Rounding::Up),
            Ok(Kopiyky(75))
        );
        let sms = data.sms.unwrap();
        assert!(matches!(sms.cost, Some(wire::Amount::Number(_))));
        assert_eq!(
            to_kopiyky(&sms.cost.unwrap().to_text(), Rounding::Up),
            Ok(Kopiyky(48))
        );
    }

    #[test]
    fn the_status_answer_maps_to_one_receipt_for_the_whole_message() {
        let answer: Answer<MessageData> = serde_json::from_str(STATUS_RESPONSE).unwrap();
        let data = answer.data.unwrap();
        assert_eq!(data.viber.as_ref().unwrap().status, FlyStatus::Delivered);
        assert_eq!(data.sms.as_ref().unwrap().status, FlyStatus::Refund);
        let now = Utc::now();
        let receipt = receipt_of("fly", "FAPI00040A3AFA000002", &data, now);
        // The channel date has no offset: Kyiv winter time (+0200) applies.
        let at = Utc.with_ymd_and_hms(2021, 12, 17, 8, 36, 12).unwrap();
        assert_eq!(
            receipt,
            Some(ProviderReceipt {
                provider_message_id: "FAPI00040A3AFA000002".to_owned(),
                part: WHOLE_MESSAGE,
                state: ReceiptState::Undelivered,
                at,
            })
        );
        // Without a usable date, the receipt is stamped with the poll's time.
        let mut undated = data.clone();
        undated.sms.as_mut().unwrap().date = Some("yesterday".to_owned());
        let receipt = receipt_of("fly", "x", &undated, now).unwrap();
        assert_eq!(receipt.at, now);
        // No SMS channel, or a status with no news: no receipt.
        let viber_only = MessageData {
            sms: None,
            ..data.clone()
        };
        assert_eq!(receipt_of("fly", "x", &viber_only, now), None);
        let mut unknown = data;
        unknown.sms.as_mut().unwrap().status = FlyStatus::Unknown;
        assert_eq!(receipt_of("fly", "x", &unknown, now), None);
    }

    #[test]
    fn the_balance_answer_parses_to_kopiykas_rounded_down() {
        let answer: Answer<BalanceData> = serde_json::from_str(BALANCE_RESPONSE).unwrap();
        let balance = answer.data.unwrap().balance;
        assert_eq!(
            to_kopiyky(&balance.to_text(), Rounding::Down),
            Ok(Kopiyky(100_005))
        );
        let number: BalanceData = serde_json::from_str(r#"{"balance": 12.349}"#).unwrap();
        assert_eq!(
            to_kopiyky(&number.balance.to_text(), Rounding::Down),
            Ok(Kopiyky(1234))
        );
    }

    #[test]
    fn the_error_answer_parses_and_maps() {
        let answer: Answer<MessageData> = serde_json::from_str(ERROR_RESPONSE).unwrap();
        assert_eq!(answer.success, 0);
        assert!(answer.data.is_none());
        let error = answer.error.unwrap();
        assert_eq!(error.code, "INVSOURCE");
        let mapped = map_error("fly", "SENDMESSAGE", &error);
        assert_eq!(
            mapped,
            ProviderError::permanent(
                crate::domain::FailureCode::SenderNotRegistered,
                "fly: SMS Fly refused SENDMESSAGE with INVSOURCE: sender not specified or not correct"
            )
        );
    }

    #[test]
    fn every_documented_error_code_maps_as_the_table_says() {
        let map = |code: &str| {
            let error = ErrorBody {
                code: code.to_owned(),
                date: None,
                description: None,
            };
            let e = map_error("fly", "SENDMESSAGE", &error);
            (e.code(), ErrorKind::of(&e))
        };
        for &(fly, holub, kind) in ERRORS {
            assert_eq!(
                map(fly),
                (holub, ErrorKind::of(&kind.error(holub, ""))),
                "{fly}"
            );
        }
        // The documentation's rows for SMS Fly's codes are the data's.
        let mut documented = 0;
        for row in kit::doc_table(include_str!("mod.rs"), "SMS Fly code (or transport)") {
            let (codes, holub) = (&row[0], &row[2]);
            // `Permanent (a status query skips the id)` → `permanent`.
            let kind = row[3].split_whitespace().next().unwrap().to_lowercase();
            if codes.starts_with("HTTP") || codes.contains(' ') && !codes.contains(',') {
                continue; // transport rows and "any other code", checked below and in `http`
            }
            for fly in codes.split(", ") {
                assert_eq!(map(fly), (holub.parse().unwrap(), kind.as_str()), "{fly}");
                documented += 1;
            }
        }
        assert_eq!(documented, ERRORS.len());
        assert_eq!(
            map("SOMETHINGNEW"),
            (FailureCode::ProviderError, "temporary")
        );
    }

    #[test]
    fn every_documented_status_maps_as_the_table_says() {
        use ReceiptState::*;
        let table = [
            ("ACCEPTD", Some(Enroute)),
            ("PENDING", Some(Enroute)),
            ("INPROGRESS", Some(Enroute)),
            ("SENT", Some(Enroute)),
            ("MODERATION", Some(Enroute)),
            ("RESERVED", Some(Enroute)),
            ("DELIVRD", Some(Delivered)),
            ("VIEWED", Some(Delivered)),
            ("UNDELIV", Some(Undelivered)),
            ("ERROR", Some(Undelivered)),
            ("REFUND", Some(Undelivered)),
            ("EXPIRED", Some(Expired)),
            ("STOPED", Some(Rejected)),
            ("INSUFFICIENTFUNDS", Some(Rejected)),
            ("UNKNOWN", None),
        ];
        assert_eq!(table.len(), FlyStatus::DOCUMENTED.len());
        for (text, state) in table {
            let status: FlyStatus = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert!(FlyStatus::DOCUMENTED.contains(&status), "{text}");
            assert_eq!(receipt_state(status), state, "{text}");
            // Statuses write back as SMS Fly spells them.
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(text)
            );
        }
        let other: FlyStatus = serde_json::from_value(serde_json::json!("ACCEPT")).unwrap();
        assert_eq!(other, FlyStatus::Unlisted);
        assert_eq!(receipt_state(other), None);
    }

    #[test]
    fn amounts_round_to_whole_kopiykas_without_floats() {
        let cases = [
            ("0.979", Rounding::Up, 98),
            ("0.979", Rounding::Down, 97),
            ("0.750", Rounding::Up, 75),
            ("0.75", Rounding::Down, 75),
            ("12", Rounding::Up, 1200),
            ("1,2501", Rounding::Up, 126),
            ("-3.501", Rounding::Down, -351),
            ("-3.501", Rounding::Up, -350),
            ("0.0001", Rounding::Up, 1),
            ("0.0001", Rounding::Down, 0),
        ];
        for (text, rounding, kopiyky) in cases {
            assert_eq!(to_kopiyky(text, rounding), Ok(Kopiyky(kopiyky)), "{text}");
        }
        for text in ["", "abc", "1.2x3", "1.23x", "1e3", "1.2.3"] {
            assert!(to_kopiyky(text, Rounding::Up).is_err(), "{text:?}");
        }
    }

    #[test]
    fn dates_with_and_without_offsets() {
        let at = Utc.with_ymd_and_hms(2025, 9, 18, 11, 14, 1).unwrap();
        assert_eq!(parse_date("2025-09-18 14:14:01 +0300"), Some(at));
        assert_eq!(parse_date("2025-09-18 14:14:01"), Some(at));
        // Across the October switch, each date takes the offset of its own moment.
        let before = Utc.with_ymd_and_hms(2025, 10, 26, 0, 30, 0).unwrap();
        assert_eq!(parse_date("2025-10-26 03:30:00"), Some(before));
        let after = Utc.with_ymd_and_hms(2025, 10, 26, 3, 0, 0).unwrap();
        assert_eq!(parse_date("2025-10-26 05:00:00"), Some(after));
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn setup_errors_are_errors_not_panics() {
        let key = Secret::new(r#"{"key":"k"}"#);
        let settings_error = |settings: serde_json::Value| {
            matches!(
                SmsFly::new("fly", settings, &key),
                Err(ProviderSetupError::Settings { .. })
            )
        };
        assert!(settings_error(serde_json::json!({"base_url": "ftp://x"})));
        assert!(settings_error(serde_json::json!({"base_url": "not a url"})));
        assert!(settings_error(serde_json::json!({"sender": "Holub"})));
        assert!(settings_error(serde_json::json!({"timeout_ms": 0})));
        assert!(settings_error(serde_json::json!({"timeout_ms": "fast"})));
        assert!(settings_error(serde_json::json!([1, 2])));
        let credentials_error = |secret: &str| {
            matches!(
                SmsFly::new("fly", serde_json::Value::Null, &Secret::new(secret)),
                Err(ProviderSetupError::Credentials { .. })
            )
        };
        assert!(credentials_error(""));
        assert!(credentials_error("k"));
        assert!(credentials_error(r#"{"token":"k"}"#));
        assert!(credentials_error(r#"{"key":"k","extra":1}"#));
        assert!(credentials_error(r#"{"key":"  "}"#));
        // A bad secret's error never quotes it.
        let Err(e) = SmsFly::new("fly", serde_json::Value::Null, &Secret::new("hunter2-key"))
        else {
            panic!("accepted a bad secret");
        };
        assert!(!e.to_string().contains("hunter2"));
    }

    #[test]
    fn build_defaults_to_the_real_endpoint_and_polls() {
        let built = build("fly", serde_json::json!({}), &Secret::new(r#"{"key":"k"}"#)).unwrap();
        assert!(built.webhook.is_none());
        assert_eq!(built.provider.name(), "fly");
        assert_eq!(built.provider.receipt_mode(), ReceiptMode::Poll);
        let fly = client("k");
        assert_eq!(fly.endpoint.as_str(), "https://sms-fly.ua/api/v2/api.php");
        let local = SmsFly::new(
            "fly",
            serde_json::json!({"base_url": "http://127.0.0.1:9/prefix", "timeout_ms": 250}),
            &Secret::new(r#"{"key":"k"}"#),
        )
        .unwrap();
        assert_eq!(
            local.endpoint.as_str(),
            "http://127.0.0.1:9/prefix/api/v2/api.php"
        );
        assert_eq!(local.timeout, Some(Duration::from_millis(250)));
    }

    #[tokio::test]
    async fn lookup_is_unsupported() {
        let e = client("k")
            .lookup(&MessageId::generate(Utc::now()))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Permanent { .. }));
        assert_eq!(e.code(), "lookup_unsupported");
    }
}
