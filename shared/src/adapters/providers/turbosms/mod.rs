//! TurboSMS (`api.turbosms.ua`), kind `"turbosms"`.
//!
//! # Sources
//!
//! - TurboSMS's HTTP API description, <https://turbosms.ua/en/api.html> (also `/ua/api.html`
//!   and the Russian `/api.html`). The stored copy that could be read ends in the middle of
//!   the `sequence_id` paragraph; it gives the URL form `https://api.turbosms.ua/module/method.format`,
//!   the token (`Authorization: Bearer`, or a `token` parameter), "for any valid HTTP request
//!   the API will always return an HTTP 200 status code", the envelope
//!   `{"response_code","response_status","response_result"}`, the `ping` method, and
//!   `sequence_id` ("if you need a request to be executed only once ... your unique request
//!   identifier").
//! - The daaner/turbosms PHP client: `src/TurboSMS.php` (`message/send.json`,
//!   `message/status.json` with `{"messages":[...]}`, `user/balance.json`, bearer token, the
//!   `{"recipients":[...],"sms":{"sender","text"}}` body), `resources/lang/en/turbosms.php`
//!   (the `response_status` vocabulary with its codes) and `README.md` (status result items).
//! - eduard-romaniuk/turbosms-spring-boot-starter: `model/response/TsResponseStatus.java`
//!   (the same codes plus 307, 308 and 416–420), `TsMessageStatusResponse.java` (status item
//!   fields) and `TsUserBalanceResponse.java` (`balance`, a number).
//! - Jhayphal/TurboSMS (C#): `TurboSMS/Messages/StatusType.cs`, the delivery-status
//!   vocabulary with its meanings.
//! - The documented request/response examples as public client code quotes them: see
//!   `fixtures/SOURCES.md`.
//!
//! # Wire format
//!
//! JSON `POST`s to `{base_url}/message/send.json`, `{base_url}/message/status.json` and
//! `{base_url}/user/balance.json`, with `Authorization: Bearer <token>`. Every answer is HTTP
//! 200 with the envelope; `response_code`/`response_status` say how it went (the table below).
//!
//! - **Send**: `{"recipients":["380671234567"],"sms":{"sender":"Holub","text":"..."},
//!   "sequence_id":"<our MessageId>"}`. The answer's `response_result` holds one item per
//!   recipient: `{"phone","response_code","message_id","response_status"}`; `message_id` (a
//!   UUID) is the provider's id. The answer carries no price, so [`Submitted::cost`] is
//!   `None`.
//! - **Status**: `{"messages":["<message_id>",...]}`; one item per id:
//!   `{"message_id","response_code","response_status","recipient","sent","updated","status",
//!   "type",...}`, or only the first three with an error code (414 for an id the account does
//!   not have).
//! - **Balance**: `response_result: {"balance": 100500.22}`, hryvnias. The number is read
//!   exactly: decimal literals in the answer are turned into strings before parsing, so no
//!   float ever holds the amount.
//!
//! # Client id, lookup, bulk
//!
//! The API takes no per-message client id. It takes a per-*request* `sequence_id` ("executed
//! only once"); each Holub message goes in a request of its own with its [`MessageId`] (26
//! characters) as `sequence_id`, so a resubmission of the same message is recognised. There
//! is no query by `sequence_id`, so [`SmsProvider::lookup`] answers `lookup_unsupported`.
//! `send.json` takes many recipients for *one* text and one `sequence_id`, so a bulk request
//! would lose the per-message id: `send_many` keeps the default (one request per message,
//! concurrently).
//!
//! # Receipts: poll
//!
//! The readable documentation describes no receipt push, only `message/status.json`, so
//! TurboSMS is a [`ReceiptMode::Poll`] provider and [`build`] returns no webhook. (Public
//! client code mentions a delivery callback configured in TurboSMS's web panel, signed with a
//! SHA1 of a secret and an id in an order that code could not pin down; with no readable
//! description of it, Holub does not accept unauthenticable pushes and polls instead.)
//!
//! Status vocabulary (every documented value), mapped to [`ReceiptState`]; the report is for
//! the whole message, given as a whole-message receipt (`WHOLE_MESSAGE`):
//!
//! | TurboSMS `status` | meaning | Holub |
//! | --- | --- | --- |
//! | `Queued` | taken, will be sent | `enroute` |
//! | `Accepted` | sent to the network, operator has not answered | `enroute` |
//! | `Sent` | sent, delivery awaited | `enroute` |
//! | `Delivered` | delivered | `delivered` |
//! | `Read` | read (Viber) | `delivered` |
//! | `Expired` | validity ran out | `expired` |
//! | `Undelivered` | not delivered | `undelivered` |
//! | `Rejected` | rejected | `rejected` |
//! | `Unknown` | unknown status | `enroute` (no final word: keep polling) |
//! | `Failed` | could not be sent | `undelivered` |
//! | `Cancelled` | sending cancelled, credits refunded | `rejected` |
//!
//! Matching is case-insensitive; a status outside this list is logged and skipped. The time
//! of a report is the item's `updated` (else `sent`), read as Kyiv local time ([`kyiv`]; the
//! zone is not stated in what could be read), else the poll time.
//!
//! # Answer codes
//!
//! Both whole-request codes and per-recipient/per-id codes use this table. Success: `0 OK`,
//! `1 PONG`, `800 SUCCESS_MESSAGE_ACCEPTED`, `801 SUCCESS_MESSAGE_SENT`,
//! `802 SUCCESS_MESSAGE_PARTIAL_ACCEPTED`, `803 SUCCESS_MESSAGE_PARTIAL_SENT` (for 802/803 the
//! recipient's own item decides). The rest (matched by `response_status`, else by code):
//!
//! | code | `response_status` | kind | Holub code |
//! | --- | --- | --- | --- |
//! | 103 | `REQUIRED_TOKEN` | account | `provider_unauthorized` |
//! | 104 | `REQUIRED_CONTENT` | permanent | `provider_bad_request` |
//! | 105 | `REQUIRED_AUTH` | account | `provider_unauthorized` |
//! | 106 | `REQUIRED_ACTIVE_USER` | account | `account_blocked` |
//! | 200 | `REQUIRED_MESSAGE_SENDER` | permanent | `invalid_sender` |
//! | 201 | `REQUIRED_MESSAGE_TEXT` | permanent | `invalid_text` |
//! | 202 | `REQUIRED_MESSAGE_RECIPIENT` | permanent | `invalid_number` |
//! | 203 | `REQUIRED_BALANCE` | account | `insufficient_balance` |
//! | 204–206 | `REQUIRED_MESSAGE_BUTTON[_CAPTION\|_ACTION]` | permanent | `provider_bad_request` |
//! | 300 | `INVALID_REQUEST` | permanent | `provider_bad_request` |
//! | 301 | `INVALID_TOKEN` | account | `provider_unauthorized` |
//! | 302 | `INVALID_MESSAGE_SENDER` | permanent | `invalid_sender` |
//! | 303 | `INVALID_START_TIME` | permanent | `provider_bad_request` |
//! | 304 | `INVALID_MESSAGE_TEXT` | permanent | `invalid_text` |
//! | 305 | `INVALID_PHONE` | permanent | `invalid_number` |
//! | 306 | `INVALID_TTL` | permanent | `provider_bad_request` |
//! | 307 | `INVALID_MESSAGE_ID` | permanent | `invalid_message_id` |
//! | 308 | `INVALID_FILE_ID` | permanent | `provider_bad_request` |
//! | 400 | `NOT_ALLOWED_MESSAGE_SENDER` | permanent | `sender_not_registered` |
//! | 401 | `NOT_ALLOWED_MESSAGE_SENDER_NOT_ACTIVE` | permanent | `sender_not_active` |
//! | 402 | `NOT_ALLOWED_MESSAGE_IMAGE` | permanent | `provider_bad_request` |
//! | 403 | `NOT_ALLOWED_START_TIME` | permanent | `provider_bad_request` |
//! | 404 | `NOT_ALLOWED_NUMBER_STOPLIST` | permanent | `recipient_blocked` |
//! | 405 | `NOT_ALLOWED_RECIPIENTS_LIMIT` | permanent | `too_many_recipients` |
//! | 406 | `NOT_ALLOWED_RECIPIENT_COUNTRY` | permanent | `country_not_allowed` |
//! | 407 | `NOT_ALLOWED_RECIPIENT_DUPLICATE` | permanent | `duplicate_recipient` |
//! | 408–411 | `NOT_ALLOWED_MESSAGE_BUTTON_TEXT_LENGTH`, `_TTL`, `_TRANSACTION_CONTENT`, `_DATA` | permanent | `provider_bad_request` |
//! | 412 | `NOT_ALLOWED_MESSAGE_TEXT` | permanent | `text_not_allowed` |
//! | 413 | `NOT_ALLOWED_MESSAGE_TEXT_LENGTH` | permanent | `text_too_long` |
//! | 414 | `NOT_ALLOWED_MESSAGE_ID` | permanent | `message_not_found` |
//! | 415 | `NOT_ALLOWED_MESSAGE_TRANSACTION_SENDER` | permanent | `sender_not_allowed` |
//! | 416 | `NOT_ALLOWED_MESSAGE_TRANSACTION_PATTERN` | permanent | `template_not_matched` |
//! | 417–420 | `NOT_ALLOWED_FILE_ID`, `_FILE_EMPTY`, `_FILE_TYPE`, `_FILE_SIZE` | permanent | `provider_bad_request` |
//! | 500 | `FAILED_CONVERT_RESULT2JSON` | unknown | `provider_bad_answer` |
//! | 501 | `FAILED_CONVERT_RESULT2XML` | unknown | `provider_bad_answer` |
//! | 502 | `FAILED_PARSE_BODY` | permanent | `provider_bad_request` |
//! | 503 | `FAILED_SMS_SEND` | temporary | `provider_send_failed` |
//! | 504 | `FAILED_VIBER_SEND` | temporary | `provider_send_failed` |
//! | 505 | `FAILED_SAVE_IMAGE`, `FAILED_SAVE_FILE` | temporary | `provider_unavailable` |
//! | 999 | `FATAL_ERROR` | unknown | `provider_fatal_error` |
//! | other | anything else | unknown | `provider_error` |
//!
//! *Account* codes say the account cannot send at all (no or refused token, blocked
//! account, no money): the gateway takes TurboSMS out of the route for a while and the
//! message fails over; they are never the message's fault.
//!
//! 500/501 mean the request ran but its result could not be written, and 999 is an execution
//! error of unknown extent, so a send answered with them may have been taken: unknown. Any
//! code not in the table is treated the same way. HTTP statuses other than 200 and transport
//! failures go through [`http::status_error`] and [`http::transport_error`]; an answer that
//! is not the documented JSON is [`http::bad_answer`] (unknown).
//!
//! # What the readable documentation did not say, and the choice made
//!
//! - Rate limiting: no documented answer. An HTTP 429 (temporary, `provider_rate_limited`) is
//!   what Holub expects and what the simulator plays.
//! - `sequence_id`: its length limit and the answer to a repeated id (the sentence is cut).
//!   The simulator answers a repeat with the original answer; any other answer this adapter
//!   cannot read as a success is unknown or an error per the table, never a resend.
//! - Validity: only the Viber part documents a `ttl`; nothing is sent for SMS, so
//!   [`OutboundSms::validity_seconds`] is not passed (the operator default applies).
//! - Multi-part messages: statuses are per message, not per part; receipts cover the whole
//!   message (`WHOLE_MESSAGE`), and Holub applies them to every part.
//! - How many ids one status request may carry: Holub asks for at most
//!   [`STATUS_BATCH`] at a time.
//!
//! # Settings and credentials
//!
//! Settings (unknown keys refused): `base_url` (default `https://api.turbosms.ua`),
//! `timeout_ms` (optional request timeout, default that of [`http::client`]). Credentials: the
//! secret holds `{"token": "<HTTP API token from the TurboSMS panel>"}`.
//!
//! Logs carry the route name, codes and masked numbers only, never texts or whole numbers.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use super::http::{self, codes};
use super::kit::{self, Setup};
use super::{Built, ProviderSetupError};
use crate::domain::FailureCode;
use crate::domain::Kopiyky;
use crate::domain::kyiv;
use crate::domain::status::ReceiptState;
use crate::ports::provider::WHOLE_MESSAGE;
use crate::ports::{
    OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, Secret, SmsProvider, Submitted,
};

/// The kind string in the route table.
pub const KIND: &str = "turbosms";
/// The real public API.
pub const DEFAULT_BASE_URL: &str = "https://api.turbosms.ua";
pub const SEND_PATH: &str = "message/send.json";
pub const STATUS_PATH: &str = "message/status.json";
pub const BALANCE_PATH: &str = "user/balance.json";
/// Most provider ids asked for in one status request.
pub const STATUS_BATCH: usize = 100;
/// How TurboSMS writes times (`2020-01-01 00:00:02`), in Kyiv local time.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Makes a TurboSMS route from its settings and credentials.
pub fn build(
    name: &str,
    settings: serde_json::Value,
    credentials: &Secret,
) -> Result<Built, ProviderSetupError> {
    TurboSms::new(name, settings, credentials).map(Built::polled)
}

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
    token: String,
}

/// The TurboSMS client of one route.
#[derive(Debug)]
pub struct TurboSms {
    name: String,
    token: Secret,
    timeout: Option<Duration>,
    send_url: Url,
    status_url: Url,
    balance_url: Url,
    http: reqwest::Client,
}

impl TurboSms {
    pub fn new(
        name: &str,
        settings: serde_json::Value,
        credentials: &Secret,
    ) -> Result<Self, ProviderSetupError> {
        let setup = Setup::new(name);
        let settings: Settings = setup.settings(settings)?;
        let base = setup.base_url(settings.base_url.as_deref(), DEFAULT_BASE_URL)?;
        let credentials: Credentials = setup.credentials(
            credentials,
            "a JSON object {\"token\": \"...\"} and nothing else",
        )?;
        let token = setup.required(&credentials.token, "the token")?;
        if reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose())).is_err()
            || token.expose().chars().any(char::is_whitespace)
        {
            return Err(setup.credentials_error("the token has characters a token cannot have"));
        }
        Ok(TurboSms {
            name: name.to_owned(),
            token,
            timeout: setup.timeout(settings.timeout_ms, kit::MAX_TIMEOUT_MS)?,
            send_url: setup.join(&base, SEND_PATH)?,
            status_url: setup.join(&base, STATUS_PATH)?,
            balance_url: setup.join(&base, BALANCE_PATH)?,
            http: http::client(),
        })
    }

    /// POSTs `body` as JSON and returns the raw answer of an HTTP 200.
    async fn post<T: Serialize + ?Sized>(
        &self,
        url: &Url,
        body: &T,
    ) -> Result<Vec<u8>, ProviderError> {
        let mut request = self
            .http
            .post(url.clone())
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(body);
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        let status = response.status();
        // The API answers every valid request with 200; anything else is not its answer.
        if status != StatusCode::OK {
            return Err(http::status_error(&self.name, status));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        Ok(body.to_vec())
    }
}

#[async_trait]
impl SmsProvider for TurboSms {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
        let request = send_request(sms);
        let body = self.post(&self.send_url, &request).await?;
        let answer = parse_send(&self.name, &body, sms.to.digits());
        match &answer {
            Ok(_) => tracing::debug!(provider = %self.name, "turbosms: message accepted"),
            Err(e) => tracing::warn!(
                provider = %self.name,
                code = %e.code(),
                to = %sms.to.masked(),
                "turbosms: message not accepted"
            ),
        }
        answer
    }

    fn receipt_mode(&self) -> ReceiptMode {
        ReceiptMode::Poll
    }

    async fn status(
        &self,
        provider_message_ids: &[String],
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        kit::status_in_chunks(
            &self.name,
            provider_message_ids,
            STATUS_BATCH,
            1,
            |chunk| async move {
                let request = StatusRequest {
                    messages: chunk.to_vec(),
                };
                let body = self.post(&self.status_url, &request).await?;
                parse_status(&self.name, &body, Utc::now())
            },
        )
        .await
    }

    async fn balance(&self) -> Result<Kopiyky, ProviderError> {
        let body = self.post(&self.balance_url, &NoParams {}).await?;
        parse_balance(&self.name, &body)
    }
}

pub mod wire;
pub use wire::*;

// ---------------------------------------------------------------------------------------
// Requests and answers.

/// The send request for one message: its number's digits, the sender, the text, and our id
/// as `sequence_id`.
pub fn send_request(sms: &OutboundSms) -> SendRequest {
    let sender = kit::sender(&sms.from);
    SendRequest {
        recipients: vec![sms.to.digits().to_owned()],
        sms: SmsPart {
            sender,
            text: sms.text.clone(),
        },
        sequence_id: Some(sms.id.to_string()),
    }
}

/// Reads a send answer for the recipient `phone` (digits, as sent).
pub fn parse_send(provider: &str, body: &[u8], phone: &str) -> Result<Submitted, ProviderError> {
    let head: Head = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(provider, "the send answer is not the documented JSON"))?;
    check(provider, head.response_code, &head.response_status)?;
    let answer: Envelope<Vec<SendResult>> = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(provider, "the send result is not the documented JSON"))?;
    let results = answer.response_result.unwrap_or_default();
    let item = results
        .iter()
        .find(|r| r.phone.as_deref() == Some(phone))
        .or(match results.as_slice() {
            [only] => Some(only),
            _ => None,
        })
        .ok_or_else(|| {
            http::bad_answer(provider, "the send answer has no result for the number")
        })?;
    check(provider, item.response_code, &item.response_status)?;
    let id = item
        .message_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| http::bad_answer(provider, "an accepted message has no message_id"))?;
    Ok(Submitted {
        provider_message_id: id.to_owned(),
        cost: None,
    })
}

/// Reads a status answer into receipts, for the items that carry a known status.
pub fn parse_status(
    provider: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<ProviderReceipt>, ProviderError> {
    let head: Head = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(provider, "the status answer is not the documented JSON"))?;
    check(provider, head.response_code, &head.response_status)?;
    let answer: Envelope<Vec<StatusResult>> = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(provider, "the status result is not the documented JSON"))?;
    let mut receipts = Vec::new();
    for item in answer.response_result.unwrap_or_default() {
        if let Err(e) = check(provider, item.response_code, &item.response_status) {
            tracing::debug!(
                provider,
                code = %e.code(),
                "turbosms: no status for a message"
            );
            continue;
        }
        let Some(status) = item.status.as_deref() else {
            continue;
        };
        let Some(state) = receipt_state(status) else {
            tracing::warn!(provider, status, "turbosms: undocumented status skipped");
            continue;
        };
        let at = item
            .updated
            .as_deref()
            .or(item.sent.as_deref())
            .and_then(parse_time)
            .unwrap_or(now);
        receipts.push(ProviderReceipt {
            provider_message_id: item.message_id,
            // Statuses are per message, not per part.
            part: WHOLE_MESSAGE,
            state,
            at,
        });
    }
    Ok(receipts)
}

/// Reads a balance answer, exactly.
pub fn parse_balance(provider: &str, body: &[u8]) -> Result<Kopiyky, ProviderError> {
    let body = quote_decimals(body);
    let head: Head = serde_json::from_slice(&body)
        .map_err(|_| http::bad_answer(provider, "the balance answer is not the documented JSON"))?;
    check(provider, head.response_code, &head.response_status)?;
    let answer: Envelope<BalanceResult> = serde_json::from_slice(&body)
        .map_err(|_| http::bad_answer(provider, "the balance is not an amount of hryvnias"))?;
    answer
        .response_result
        .map(|r| r.balance.0)
        .ok_or_else(|| http::bad_answer(provider, "the balance answer has no balance"))
}

// ---------------------------------------------------------------------------------------
// Codes and statuses.

/// How an answer code is to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    Success,
    Temporary,
    Permanent,
    /// The account cannot send (see [`ProviderError::Account`]).
    Account,
    Unknown,
}

/// One documented answer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerCode {
    pub code: i64,
    pub status: &'static str,
    pub kind: CodeKind,
    /// Holub's code for it (`None` for successes).
    pub holub: Option<FailureCode>,
}

const fn c(code: i64, status: &'static str, kind: CodeKind, holub: FailureCode) -> AnswerCode {
    AnswerCode {
        code,
        status,
        kind,
        holub: Some(holub),
    }
}

const fn ok(code: i64, status: &'static str) -> AnswerCode {
    AnswerCode {
        code,
        status,
        kind: CodeKind::Success,
        holub: None,
    }
}

const BAD_REQUEST: FailureCode = codes::BAD_REQUEST;
const UNAUTHORIZED: FailureCode = codes::UNAUTHORIZED;

/// Every documented `response_code`/`response_status`, as the module documentation's table.
#[rustfmt::skip]
pub const ANSWER_CODES: &[AnswerCode] = {
    use CodeKind::*;
    &[
        ok(0, "OK"),
        ok(1, "PONG"),
        c(103, "REQUIRED_TOKEN", Account, UNAUTHORIZED),
        c(104, "REQUIRED_CONTENT", Permanent, BAD_REQUEST),
        c(105, "REQUIRED_AUTH", Account, UNAUTHORIZED),
        c(106, "REQUIRED_ACTIVE_USER", Account, codes::ACCOUNT_BLOCKED),
        c(200, "REQUIRED_MESSAGE_SENDER", Permanent, FailureCode::InvalidSender),
        c(201, "REQUIRED_MESSAGE_TEXT", Permanent, FailureCode::InvalidText),
        c(202, "REQUIRED_MESSAGE_RECIPIENT", Permanent, FailureCode::InvalidNumber),
        c(203, "REQUIRED_BALANCE", Account, codes::INSUFFICIENT_BALANCE),
        c(204, "REQUIRED_MESSAGE_BUTTON", Permanent, BAD_REQUEST),
        c(205, "REQUIRED_MESSAGE_BUTTON_CAPTION", Permanent, BAD_REQUEST),
        c(206, "REQUIRED_MESSAGE_BUTTON_ACTION", Permanent, BAD_REQUEST),
        c(300, "INVALID_REQUEST", Permanent, BAD_REQUEST),
        c(301, "INVALID_TOKEN", Account, UNAUTHORIZED),
        c(302, "INVALID_MESSAGE_SENDER", Permanent, FailureCode::InvalidSender),
        c(303, "INVALID_START_TIME", Permanent, BAD_REQUEST),
        c(304, "INVALID_MESSAGE_TEXT", Permanent, FailureCode::InvalidText),
        c(305, "INVALID_PHONE", Permanent, FailureCode::InvalidNumber),
        c(306, "INVALID_TTL", Permanent, BAD_REQUEST),
        c(307, "INVALID_MESSAGE_ID", Permanent, FailureCode::InvalidMessageId),
        c(308, "INVALID_FILE_ID", Permanent, BAD_REQUEST),
        c(400, "NOT_ALLOWED_MESSAGE_SENDER", Permanent, FailureCode::SenderNotRegistered),
        c(401, "NOT_ALLOWED_MESSAGE_SENDER_NOT_ACTIVE", Permanent, FailureCode::SenderNotActive),
        c(402, "NOT_ALLOWED_MESSAGE_IMAGE", Permanent, BAD_REQUEST),
        c(403, "NOT_ALLOWED_START_TIME", Permanent, BAD_REQUEST),
        c(404, "NOT_ALLOWED_NUMBER_STOPLIST", Permanent, FailureCode::RecipientBlocked),
        c(405, "NOT_ALLOWED_RECIPIENTS_LIMIT", Permanent, FailureCode::TooManyRecipients),
        c(406, "NOT_ALLOWED_RECIPIENT_COUNTRY", Permanent, FailureCode::CountryNotAllowed),
        c(407, "NOT_ALLOWED_RECIPIENT_DUPLICATE", Permanent, FailureCode::DuplicateRecipient),
        c(408, "NOT_ALLOWED_MESSAGE_BUTTON_TEXT_LENGTH", Permanent, BAD_REQUEST),
        c(409, "NOT_ALLOWED_MESSAGE_TTL", Permanent, BAD_REQUEST),
        c(410, "NOT_ALLOWED_MESSAGE_TRANSACTION_CONTENT", Permanent, BAD_REQUEST),
        c(411, "NOT_ALLOWED_MESSAGE_DATA", Permanent, BAD_REQUEST),
        c(412, "NOT_ALLOWED_MESSAGE_TEXT", Permanent, FailureCode::TextNotAllowed),
        c(413, "NOT_ALLOWED_MESSAGE_TEXT_LENGTH", Permanent, FailureCode::TextTooLong),
        c(414, "NOT_ALLOWED_MESSAGE_ID", Permanent, FailureCode::MessageNotFound),
        c(415, "NOT_ALLOWED_MESSAGE_TRANSACTION_SENDER", Permanent, FailureCode::SenderNotAllowed),
        c(416, "NOT_ALLOWED_MESSAGE_TRANSACTION_PATTERN", Permanent, FailureCode::TemplateNotMatched),
        c(417, "NOT_ALLOWED_FILE_ID", Permanent, BAD_REQUEST),
        c(418, "NOT_ALLOWED_FILE_EMPTY", Permanent, BAD_REQUEST),
        c(419, "NOT_ALLOWED_FILE_TYPE", Permanent, BAD_REQUEST),
        c(420, "NOT_ALLOWED_FILE_SIZE", Permanent, BAD_REQUEST),
        c(500, "FAILED_CONVERT_RESULT2JSON", Unknown, codes::BAD_ANSWER),
        c(501, "FAILED_CONVERT_RESULT2XML", Unknown, codes::BAD_ANSWER),
        c(502, "FAILED_PARSE_BODY", Permanent, BAD_REQUEST),
        c(503, "FAILED_SMS_SEND", Temporary, FailureCode::ProviderSendFailed),
        c(504, "FAILED_VIBER_SEND", Temporary, FailureCode::ProviderSendFailed),
        c(505, "FAILED_SAVE_IMAGE", Temporary, codes::UNAVAILABLE),
        c(505, "FAILED_SAVE_FILE", Temporary, codes::UNAVAILABLE),
        ok(800, "SUCCESS_MESSAGE_ACCEPTED"),
        ok(801, "SUCCESS_MESSAGE_SENT"),
        ok(802, "SUCCESS_MESSAGE_PARTIAL_ACCEPTED"),
        ok(803, "SUCCESS_MESSAGE_PARTIAL_SENT"),
        c(999, "FATAL_ERROR", Unknown, FailureCode::ProviderFatalError),
    ]
};

/// The Holub code of an answer code TurboSMS does not document.
pub const UNKNOWN_CODE: FailureCode = FailureCode::ProviderError;

/// The documented code an answer names: by `response_status`, else by `response_code`.
pub fn answer_code(code: i64, status: &str) -> Option<&'static AnswerCode> {
    let status = status.trim();
    ANSWER_CODES
        .iter()
        .find(|a| a.status.eq_ignore_ascii_case(status))
        .or_else(|| ANSWER_CODES.iter().find(|a| a.code == code))
}

/// `Ok` for a success code, else the error it means.
pub fn check(provider: &str, code: i64, status: &str) -> Result<(), ProviderError> {
    // The status echoes provider input only as one of its own words; keep it short anyway.
    let shown: String = status.chars().take(64).collect();
    let message = || format!("{provider}: TurboSMS answered {code} {shown}");
    let Some(known) = answer_code(code, status) else {
        tracing::warn!(provider, code, "turbosms: undocumented answer code");
        return Err(ProviderError::unknown(UNKNOWN_CODE, message()));
    };
    let holub = known.holub.unwrap_or(UNKNOWN_CODE);
    match known.kind {
        CodeKind::Success => Ok(()),
        CodeKind::Temporary => Err(ProviderError::temporary(holub, message())),
        CodeKind::Permanent => Err(ProviderError::permanent(holub, message())),
        CodeKind::Account => Err(ProviderError::account(holub, message())),
        CodeKind::Unknown => Err(ProviderError::unknown(holub, message())),
    }
}

/// Every documented delivery status and what it means for Holub, as the module
/// documentation's table.
pub const STATUSES: &[(&str, ReceiptState)] = &[
    ("Queued", ReceiptState::Enroute),
    ("Accepted", ReceiptState::Enroute),
    ("Sent", ReceiptState::Enroute),
    ("Delivered", ReceiptState::Delivered),
    ("Read", ReceiptState::Delivered),
    ("Expired", ReceiptState::Expired),
    ("Undelivered", ReceiptState::Undelivered),
    ("Rejected", ReceiptState::Rejected),
    ("Unknown", ReceiptState::Enroute),
    ("Failed", ReceiptState::Undelivered),
    ("Cancelled", ReceiptState::Rejected),
];

/// The receipt state of a TurboSMS status word, if it is a documented one.
pub fn receipt_state(status: &str) -> Option<ReceiptState> {
    let status = status.trim();
    STATUSES
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(status))
        .map(|&(_, state)| state)
}

// ---------------------------------------------------------------------------------------
// Kyiv time.

/// Reads a TurboSMS time (`2020-01-01 00:00:02`, Kyiv local time).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), TIME_FORMAT)
        .ok()
        .map(kyiv::from_local)
}

/// Writes a time as TurboSMS does.
pub fn format_time(at: DateTime<Utc>) -> String {
    kyiv::to_local(at).format(TIME_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::providers::kit::testing::{minify, outbound};
    use crate::domain::MessageId;
    use crate::domain::SenderId;
    use crate::ports::Retryable;
    use chrono::TimeZone;

    const ENVELOPE_OK: &str = include_str!("fixtures/envelope_ok.json");
    const PING: &str = include_str!("fixtures/ping_response.json");
    const SEND_REQUEST: &str = include_str!("fixtures/send_request.json");
    const SEND_PARTIAL: &str = include_str!("fixtures/send_response_partial.json");
    const REQUIRED_TOKEN: &str = include_str!("fixtures/error_required_token.json");
    const STATUS: &str = include_str!("fixtures/status_response.json");
    const BALANCE: &str = include_str!("fixtures/balance_response.json");

    fn secret(token: &str) -> Secret {
        Secret::new(serde_json::json!({ "token": token }).to_string())
    }

    fn sms(text: &str) -> OutboundSms {
        outbound("067 123 45 67", "Holub", text, 3600)
    }

    /// The JSON text without the whitespace outside strings.

    #[test]
    fn the_documented_envelopes_parse() {
        let ok: Envelope<Vec<SendResult>> = serde_json::from_str(ENVELOPE_OK).unwrap();
        assert_eq!(
            (
                ok.response_code,
                ok.response_status.as_str(),
                ok.response_result
            ),
            (0, "OK", None)
        );
        assert!(check("t", ok.response_code, &ok.response_status).is_ok());
        let pong: Head = serde_json::from_str(PING).unwrap();
        assert_eq!(
            (pong.response_code, pong.response_status.as_str()),
            (1, "PONG")
        );
        assert!(check("t", pong.response_code, &pong.response_status).is_ok());
    }

    #[test]
    fn the_send_request_serializes_like_the_documented_example() {
        let request = SendRequest {
            recipients: vec![
                "380678998668".to_owned(),
                "380503288668".to_owned(),
                "380638998668".to_owned(),
            ],
            sms: SmsPart {
                sender: "TurboSMS".to_owned(),
                text: "TurboSMS приветствует Вас!".to_owned(),
            },
            sequence_id: None,
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            minify(SEND_REQUEST)
        );
        let parsed: SendRequest = serde_json::from_str(SEND_REQUEST).unwrap();
        assert_eq!(parsed, request);
    }

    #[test]
    fn a_message_becomes_one_recipient_with_our_id_as_sequence_id() {
        let m = sms("Ваш код: 4821");
        let request = send_request(&m);
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({
                "recipients": ["380671234567"],
                "sms": {"sender": "Holub", "text": "Ваш код: 4821"},
                "sequence_id": m.id.to_string(),
            })
        );
        let mut from_number = m.clone();
        from_number.from = SenderId::parse("+380 50 111 22 33").unwrap();
        assert_eq!(send_request(&from_number).sms.sender, "380501112233");
    }

    #[test]
    fn the_documented_send_answer_maps_per_recipient() {
        let answer: Envelope<Vec<SendResult>> = serde_json::from_str(SEND_PARTIAL).unwrap();
        assert_eq!(answer.response_code, 802);
        let items = answer.response_result.unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].message_id, None);
        let ok = parse_send("t", SEND_PARTIAL.as_bytes(), "отримувач_2").unwrap();
        assert_eq!(
            ok,
            Submitted {
                provider_message_id: "f83f8868-5e46-c6cf-e4fb-615e5a293754".to_owned(),
                cost: None,
            }
        );
        let refused = parse_send("t", SEND_PARTIAL.as_bytes(), "отримувач_1").unwrap_err();
        assert_eq!(
            refused,
            ProviderError::permanent(FailureCode::CountryNotAllowed, refused.message())
        );
        // Two items and neither is ours: the answer does not say what became of the message.
        let lost = parse_send("t", SEND_PARTIAL.as_bytes(), "380671234567").unwrap_err();
        assert!(lost.is_unknown());
    }

    #[test]
    fn the_documented_error_answer_is_unauthorized() {
        let e = parse_send("t", REQUIRED_TOKEN.as_bytes(), "380671234567").unwrap_err();
        assert!(e.is_account(), "{e:?}");
        assert_eq!(e.code(), codes::UNAUTHORIZED);
        assert_eq!(
            parse_balance("t", REQUIRED_TOKEN.as_bytes())
                .unwrap_err()
                .code(),
            codes::UNAUTHORIZED
        );
        assert_eq!(
            parse_status("t", REQUIRED_TOKEN.as_bytes(), Utc::now())
                .unwrap_err()
                .code(),
            codes::UNAUTHORIZED
        );
    }

    /// An empty balance is the account's trouble: the message fails over, never fails.
    #[test]
    fn an_empty_balance_is_an_account_error_and_a_bad_number_is_not() {
        let empty =
            r#"{"response_code":203,"response_status":"REQUIRED_BALANCE","response_result":null}"#;
        let e = parse_send("t", empty.as_bytes(), "380671234567").unwrap_err();
        assert_eq!(
            e,
            ProviderError::account(
                FailureCode::InsufficientBalance,
                "t: TurboSMS answered 203 REQUIRED_BALANCE"
            )
        );
        let bad =
            r#"{"response_code":305,"response_status":"INVALID_PHONE","response_result":null}"#;
        let e = parse_send("t", bad.as_bytes(), "380671234567").unwrap_err();
        assert!(matches!(e, ProviderError::Permanent { .. }), "{e:?}");
    }

    #[test]
    fn a_single_accepted_item_is_ours_and_needs_an_id() {
        let body = br#"{"response_code":800,"response_status":"SUCCESS_MESSAGE_ACCEPTED","response_result":[{"phone":"380671234567","response_code":0,"message_id":"a-b","response_status":"OK"}]}"#;
        assert_eq!(
            parse_send("t", body, "380671234567")
                .unwrap()
                .provider_message_id,
            "a-b"
        );
        let no_id = br#"{"response_code":800,"response_status":"SUCCESS_MESSAGE_ACCEPTED","response_result":[{"phone":"380671234567","response_code":0,"message_id":null,"response_status":"OK"}]}"#;
        assert!(
            parse_send("t", no_id, "380671234567")
                .unwrap_err()
                .is_unknown()
        );
        let no_items = br#"{"response_code":800,"response_status":"SUCCESS_MESSAGE_ACCEPTED","response_result":null}"#;
        assert!(
            parse_send("t", no_items, "380671234567")
                .unwrap_err()
                .is_unknown()
        );
    }

    #[test]
    fn unreadable_answers_are_unknown() {
        for body in [
            &b""[..],
            b"<html>502 Bad Gateway</html>",
            b"{\"response_code\":\"zero\"}",
            b"{\"response_code\":800,\"response_status\":\"SUCCESS_MESSAGE_ACCEPTED\",\"response_result\":{\"x\":1}}",
        ] {
            let e = parse_send("t", body, "380671234567").unwrap_err();
            assert!(e.is_unknown(), "{}", String::from_utf8_lossy(body));
            assert_eq!(e.code(), codes::BAD_ANSWER);
            assert!(parse_balance("t", body).unwrap_err().is_unknown());
        }
        let odd =
            br#"{"response_code":777,"response_status":"SOMETHING_NEW","response_result":null}"#;
        let e = parse_send("t", odd, "380671234567").unwrap_err();
        assert!(e.is_unknown());
        assert_eq!(e.code(), UNKNOWN_CODE);
    }

    #[test]
    fn the_documented_status_answer_maps_to_receipts() {
        let answer: Envelope<Vec<StatusResult>> = serde_json::from_str(STATUS).unwrap();
        let items = answer.response_result.unwrap();
        assert_eq!(items[0].kind.as_deref(), Some("sms"));
        assert_eq!(items[1].status, None);
        let now = Utc::now();
        let receipts = parse_status("t", STATUS.as_bytes(), now).unwrap();
        assert_eq!(
            receipts,
            vec![ProviderReceipt {
                provider_message_id: "c91a1593-****-0cd0-****-a41c8a9a22c1".to_owned(),
                part: WHOLE_MESSAGE,
                state: ReceiptState::Delivered,
                // 2020-01-01 00:00:02 in Kyiv (winter, UTC+2).
                at: Utc.with_ymd_and_hms(2019, 12, 31, 22, 0, 2).unwrap(),
            }]
        );
    }

    #[test]
    fn status_items_without_a_usable_time_or_status() {
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let body = br#"{"response_code":0,"response_status":"OK","response_result":[
            {"message_id":"a","response_code":0,"response_status":"OK","status":"Sent","updated":"garbage"},
            {"message_id":"b","response_code":0,"response_status":"OK","status":"Teleported"},
            {"message_id":"c","response_code":0,"response_status":"OK"},
            {"message_id":"d","response_code":307,"response_status":"INVALID_MESSAGE_ID"},
            {"message_id":"e","response_code":0,"response_status":"OK","status":"undelivered","sent":"2026-05-01 14:59:00"}]}"#;
        let receipts = parse_status("t", body, now).unwrap();
        assert_eq!(receipts.len(), 2);
        assert_eq!(
            (
                receipts[0].provider_message_id.as_str(),
                receipts[0].state,
                receipts[0].at
            ),
            ("a", ReceiptState::Enroute, now)
        );
        assert_eq!(
            (receipts[1].provider_message_id.as_str(), receipts[1].state),
            ("e", ReceiptState::Undelivered)
        );
        // Summer time: UTC+3.
        assert_eq!(
            receipts[1].at,
            Utc.with_ymd_and_hms(2026, 5, 1, 11, 59, 0).unwrap()
        );
    }

    #[test]
    fn the_balance_is_read_exactly() {
        let answer: Envelope<BalanceResult> =
            serde_json::from_slice(&quote_decimals(BALANCE.as_bytes())).unwrap();
        assert_eq!(
            answer.response_result.unwrap().balance,
            Amount(Kopiyky(10_050_022))
        );
        assert_eq!(
            parse_balance("t", BALANCE.as_bytes()),
            Ok(Kopiyky(10_050_022))
        );
        for (body, kopiyky) in [
            (
                r#"{"response_code":0,"response_status":"OK","response_result":{"balance":12}}"#,
                1200,
            ),
            (
                r#"{"response_code":0,"response_status":"OK","response_result":{"balance":0.1}}"#,
                10,
            ),
            (
                r#"{"response_code":0,"response_status":"OK","response_result":{"balance":-3.5}}"#,
                -350,
            ),
            (
                r#"{"response_code":0,"response_status":"OK","response_result":{"balance":"7.05"}}"#,
                705,
            ),
        ] {
            assert_eq!(
                parse_balance("t", body.as_bytes()),
                Ok(Kopiyky(kopiyky)),
                "{body}"
            );
        }
        for body in [
            r#"{"response_code":0,"response_status":"OK","response_result":{"balance":1.005}}"#,
            r#"{"response_code":0,"response_status":"OK","response_result":{"balance":1e3}}"#,
            r#"{"response_code":0,"response_status":"OK","response_result":{}}"#,
            r#"{"response_code":0,"response_status":"OK","response_result":null}"#,
        ] {
            assert!(
                parse_balance("t", body.as_bytes())
                    .unwrap_err()
                    .is_unknown(),
                "{body}"
            );
        }
    }

    #[test]
    fn only_decimal_literals_outside_strings_are_quoted() {
        let body = br#"{"a":1.50,"b":"2.5 \"3.5\"","c":[-0.25,7,1E2],"d":"\\","e":0.1}"#;
        assert_eq!(
            std::str::from_utf8(&quote_decimals(body)).unwrap(),
            r#"{"a":"1.50","b":"2.5 \"3.5\"","c":["-0.25",7,"1E2"],"d":"\\","e":"0.1"}"#
        );
        assert!(matches!(
            quote_decimals(b"{\"a\":1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// The table in the module documentation, row by row.
    /// How `check` answers a code: its kind as the doc writes it, and its Holub code.
    fn checked(code: i64, status: &str) -> (&'static str, Option<FailureCode>) {
        match check("t", code, status) {
            Ok(()) => ("success", None),
            Err(e @ ProviderError::Temporary { .. }) => ("temporary", Some(e.code())),
            Err(e @ ProviderError::Permanent { .. }) => ("permanent", Some(e.code())),
            Err(e @ ProviderError::Account { .. }) => ("account", Some(e.code())),
            Err(e @ ProviderError::Unknown { .. }) => ("unknown", Some(e.code())),
        }
    }

    #[test]
    fn every_documented_code_maps_as_the_table_says() {
        // The data: every row maps as it says.
        for a in ANSWER_CODES {
            let kind = format!("{:?}", a.kind).to_lowercase();
            assert_eq!(checked(a.code, a.status), (kind.as_str(), a.holub), "{a:?}");
        }
        // The documentation: every row of the module's table is the data's, and every
        // documented error code is in the table.
        let mut documented = 0;
        for row in kit::doc_table(include_str!("mod.rs"), "code") {
            let [code, _, kind, holub] = row.as_slice() else {
                panic!("{row:?}")
            };
            let holub: FailureCode = holub.parse().unwrap();
            if code == "other" {
                assert_eq!(checked(42, "SOMETHING_NEW"), (kind.as_str(), Some(holub)));
                continue;
            }
            let (low, high) = code.split_once('–').unwrap_or((code, code));
            let range = low.parse::<i64>().unwrap()..=high.parse::<i64>().unwrap();
            for a in ANSWER_CODES.iter().filter(|a| range.contains(&a.code)) {
                assert_eq!(
                    checked(a.code, a.status),
                    (kind.as_str(), Some(holub)),
                    "{row:?}"
                );
                documented += 1;
            }
        }
        let errors = ANSWER_CODES.iter().filter(|a| a.kind != CodeKind::Success);
        assert_eq!(documented, errors.count());
        // The name decides; the number is the fallback.
        assert_eq!(check("t", 305, "").unwrap_err().code(), "invalid_number");
        assert_eq!(
            check("t", 0, "REQUIRED_BALANCE").unwrap_err().code(),
            "insufficient_balance"
        );
    }

    #[test]
    fn every_documented_status_maps_as_the_table_says() {
        for &(word, state) in STATUSES {
            assert_eq!(receipt_state(word), Some(state), "{word}");
            assert_eq!(receipt_state(&word.to_uppercase()), Some(state), "{word}");
        }
        let rows = kit::doc_table(include_str!("mod.rs"), "TurboSMS status");
        assert_eq!(rows.len(), STATUSES.len());
        for (row, &(word, state)) in rows.iter().zip(STATUSES) {
            assert_eq!(row[0], word);
            // `enroute (no final word: keep polling)` → `enroute`.
            let documented = row[2].split_whitespace().next().unwrap();
            assert_eq!(documented, format!("{state:?}").to_lowercase(), "{word}");
        }
        assert_eq!(receipt_state("DELIVRD"), None);
        assert_eq!(receipt_state(""), None);
    }

    #[test]
    fn times_are_kyiv_local_both_ways() {
        let utc = |y, mo, d, h, mi| Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap();
        assert_eq!(format_time(utc(2026, 1, 15, 10, 0)), "2026-01-15 12:00:00");
        assert_eq!(format_time(utc(2026, 7, 15, 10, 0)), "2026-07-15 13:00:00");
        for at in [utc(2026, 1, 15, 10, 0), utc(2026, 3, 29, 1, 0)] {
            assert_eq!(parse_time(&format_time(at)), Some(at));
        }
        assert_eq!(parse_time("2026-13-01 00:00:00"), None);
    }

    #[test]
    fn setup_takes_settings_and_credentials() {
        let built = build("ts-main", serde_json::Value::Null, &secret("abc123")).unwrap();
        assert!(built.webhook.is_none());
        assert_eq!(built.provider.name(), "ts-main");
        assert_eq!(built.provider.receipt_mode(), ReceiptMode::Poll);
        let client = TurboSms::new(
            "ts",
            serde_json::json!({"base_url": "http://127.0.0.1:9/prefix", "timeout_ms": 250}),
            &secret("abc123"),
        )
        .unwrap();
        assert_eq!(
            client.send_url.as_str(),
            "http://127.0.0.1:9/prefix/message/send.json"
        );
        assert_eq!(client.timeout, Some(Duration::from_millis(250)));
        let default = TurboSms::new("ts", serde_json::json!({}), &secret("abc")).unwrap();
        assert_eq!(
            default.balance_url.as_str(),
            "https://api.turbosms.ua/user/balance.json"
        );
        assert_eq!(
            default.status_url.as_str(),
            "https://api.turbosms.ua/message/status.json"
        );
        assert!(!format!("{default:?}").contains("abc"));
    }

    #[test]
    fn bad_settings_are_setup_errors() {
        for settings in [
            serde_json::json!({"base_url": "ftp://example.com"}),
            serde_json::json!({"base_url": "not a url"}),
            serde_json::json!({"base_url": "https://x.example/?a=1"}),
            serde_json::json!({"base_url": 5}),
            serde_json::json!({"timeout_ms": 0}),
            serde_json::json!({"timeout_ms": -1}),
            serde_json::json!({"sender": "Holub"}),
            serde_json::json!(["base_url"]),
            serde_json::json!("https://api.turbosms.ua"),
        ] {
            let result = build("ts", settings.clone(), &secret("abc"));
            assert!(
                matches!(result, Err(ProviderSetupError::Settings { ref name, .. }) if name == "ts"),
                "{settings}"
            );
        }
    }

    #[test]
    fn bad_credentials_are_setup_errors_that_do_not_show_the_secret() {
        for raw in [
            "",
            "hunter2secret",
            r#"{"token": ""}"#,
            r#"{"token": "   "}"#,
            r#"{"token": "hunter2 secret"}"#,
            "{\"token\": \"hunter2\\nsecret\"}",
            r#"{"token": "hunter2secret", "login": "x"}"#,
            r#"{"api_key": "hunter2secret"}"#,
            r#"{"token": 12345}"#,
        ] {
            match build("ts", serde_json::json!({}), &Secret::new(raw)) {
                Err(e @ ProviderSetupError::Credentials { .. }) => {
                    assert!(!e.to_string().contains("hunter2"), "{e}");
                }
                Err(e) => panic!("{raw}: {e}"),
                Ok(_) => panic!("{raw}: accepted"),
            }
        }
    }

    #[tokio::test]
    async fn lookup_is_unsupported_and_no_status_means_no_request() {
        let client = TurboSms::new(
            "ts",
            // Nothing listens there: a request would fail as unreachable.
            serde_json::json!({"base_url": "http://127.0.0.1:9"}),
            &secret("abc"),
        )
        .unwrap();
        let e = client
            .lookup(&MessageId::generate(Utc::now()))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            ProviderError::permanent(FailureCode::LookupUnsupported, e.message())
        );
        assert_eq!(client.status(&[]).await, Ok(vec![]));
        let unreachable = client.balance().await.unwrap_err();
        assert!(unreachable.is_retryable());
    }
}
