//! AlphaSMS, through its JSON API (kind `"alphasms"`).
//!
//! # Sources
//!
//! - The JSON API documentation: <https://docs.alphasms.net/api/json> (request structure,
//!   endpoint, `auth`), `…/api/json/send_sms` (also mirrored at
//!   `docs-interconnect-solutions.pages.dev/api/json/send_sms`), `…/api/json/message_status`,
//!   `…/api/json/balance` (also at `partner.interconnect.solutions/api/json/balance`) and
//!   `…/api/json/references/message_statuses`.
//! - The XML API's status/error code table, <https://docs.alphasms.net/api/xml/references/message_status_codes>,
//!   for the gateway's error names (`ERR_SENDER`, `ERR_DUPLICATE`, …), which the JSON pages
//!   do not list.
//! - The HTTP API's status page, <https://docs.alphasms.net/api/http/status>
//!   (`status:Delivered code:3`), which shows the `#` column of the JSON status table is the
//!   status code.
//! - A well-kept client: `Prihod/alphasms-client` (PHP; `src/Client.php`,
//!   `src/Request/SMSRequest.php`, `src/Request/StatusMessageRequest.php`,
//!   `tests/ClientTest.php`): the same endpoint, the client `id` a string of digits
//!   (`microtime(true) * 10000`, about 1.7·10¹³), the phone as a number, `"error": ""` on
//!   successful answers.
//!
//! The documented examples are the fixtures under `fixtures/` (see its
//! `SOURCES.md`).
//!
//! # The API, as used here
//!
//! Every request is `POST {base_url}/api/json.php` with `Content-Type: application/json` and
//! a body `{"auth": "<api key>", "data": [ {"type": …, …}, … ]}`: the API key rides in the
//! body, and one request carries several commands. The answer is HTTP 200 with
//! `{"success": true, "data": [ {"success": bool, "error"?: "…", "data": {…}}, … ]}`, one
//! item per command, or `{"success": false, "error": "Access denied"}` for the whole
//! request. The send example echoes the command's `id` in each item; items are matched to
//! commands by that id, or by position when an item carries none.
//!
//! - **Send** — `{"type": "sms", "id", "phone", "sms_signature", "sms_message",
//!   "sms_lifetime", "hook"}`: `id` is the client's id of the message, a number (we send
//!   [`ClientId::of`] our [`MessageId`]), `phone` the E.164 digits as a JSON number,
//!   `sms_signature` the alpha-name, `sms_lifetime` the validity in seconds, 3,600 to
//!   259,200 ([`lifetime`] clamps into it), `hook` the URL delivery reports for this message
//!   are sent to. The item answers `{"id", "msg_id",
//!   "data", "parts"}`. [`SmsProvider::send_many`] sends up to `batch_size` messages in one
//!   request.
//! - **Status** — `{"type": "status", "id": <client id>}` answers `{"id", "type",
//!   "status"}`. The documented example asks by the id the send example gave as the client
//!   `id`, so the status query is keyed by the client id we derive from *our* id; that is
//!   why the provider message id Holub records is our own id (see below), and why
//!   [`SmsProvider::lookup`] works.
//! - **Balance** — `{"type": "balance"}` answers `{"amount": 31.1683, "currency": "UAH"}`.
//!   The amount has four decimals; it is read as text (JSON numbers are never turned into
//!   floats here) and rounded *down* to whole kopiykas.
//!
//! **Provider message ids.** Holub's provider message id for an AlphaSMS message is our
//! [`MessageId`] as it is (`01JV7Q8M4X2K9T3N5R6B8C0D1E`), whatever its part count; the
//! numeric client id on the wire is derived from it ([`ClientId::of`]), so receipts find
//! the message by the id recorded at `sent` and no mapping is stored. AlphaSMS
//! reports one status per *message*, so every receipt (from the hook or from
//! [`SmsProvider::status`]) is for the whole message, as [`WHOLE_MESSAGE`], and Holub
//! applies it to each part. (The provider's own `msg_id` is logged, not kept: no documented
//! request takes it.)
//!
//! # Receipts: push through the per-message hook, or poll
//!
//! AlphaSMS pushes delivery reports only to the `hook` URL given with each message, so:
//!
//! - with the `hook_url` setting, every message is sent with
//!   `hook = <hook_url>?token=<hook_token>&id=<message id>` and
//!   [`SmsProvider::receipt_mode`] is [`ReceiptMode::Push`]; [`AlphaSmsReceipts`] (in
//!   [`Built::webhook`]) parses what arrives there. `hook_url` is the public URL of Holub's
//!   receipt endpoint for this route, e.g. `https://api.example.ua/v1/receipts/alphasms-main`;
//!   it must not use the query keys `token` or `id` itself;
//! - without it, no hook is sent and the mode is [`ReceiptMode::Poll`]: Holub polls
//!   [`SmsProvider::status`] (which works in both modes).
//!
//! The documentation does not say how reports are authenticated (nothing is signed), so
//! Holub puts a secret of its own in the hook URL's query and [`AlphaSmsReceipts`] compares
//! it in constant time, refusing a missing or wrong one with [`WebhookError::Unauthorized`].
//! Without a signed timestamp a replay cannot be told from a retry, so
//! [`WebhookError::Replayed`] is never returned; receipts are applied monotonically, so a
//! replayed one changes nothing.
//!
//! # Settings and credentials
//!
//! Settings (unknown keys are refused):
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `base_url` | `https://alphasms.net` | scheme and host of the API |
//! | `hook_url` | none (poll) | Holub's receipt endpoint for this route: turns on push |
//! | `timeout_ms` | 10 000 | whole-request timeout, 1 to 60 000 |
//! | `batch_size` | 100 | messages per send request, 1 to 1000 |
//!
//! Credentials: `{"api_key": "…", "hook_token": "…", "previous_hook_token": "…"}`;
//! `hook_token` (at least 16 characters) is required with `hook_url`. The optional
//! `previous_hook_token` is still accepted on reports, never sent: it lets the token be
//! rotated while reports for messages sent with the old one are still to come (put the
//! new token as `hook_token`, the old as `previous_hook_token`, and drop it once those
//! messages are final; see docs/deploy.md).
//!
//! # Errors
//!
//! HTTP statuses other than 200 go through [`http::status_error`] (429 and 5xx temporary,
//! 401/403 and other 4xx permanent, anything else unknown); transport failures through
//! [`http::transport_error`]; an answer that is not the documented JSON through
//! [`http::bad_answer`] (unknown). The API reports errors as English text in `error`, for
//! the whole request or per message. The JSON pages document two texts ("Access denied",
//! "Error in Alpha-name"); the others are recognised by the XML API's error names and
//! descriptions, and by keywords. In this order, the first match wins:
//!
//! | the error text contains (case-insensitive) | Holub code | kind |
//! | --- | --- | --- |
//! | `access denied`, `unauthori`, `api key` | `provider_unauthorized` | account |
//! | `err_duplicate`, `duplicate`, `already exists` | `duplicate_client_id` | unknown: the provider already has a message with this id; dispatch looks it up |
//! | `not found` | `message_not_found` | permanent (a lookup answers `None`) |
//! | `err_id`, `message id` | `invalid_client_id` | permanent (a lookup answers `None`) |
//! | `too many requests`, `rate limit`, `throttl` | `provider_rate_limited` | temporary |
//! | `err_overlimit`, `limit` | `provider_quota_exceeded` | temporary |
//! | `err_billing`, `billing`, `balance`, `funds`, `money` | `insufficient_balance` | account |
//! | `err_sender`, `alpha-name`, `alphaname`, `alpha name`, `sender`, `signature` | `sender_not_registered` | permanent |
//! | `err_recipient`, `recipient`, `phone`, `destination`, `number` | `invalid_number` | permanent |
//! | `err_length`, `too long`, `empty`, `length` | `invalid_text` | permanent |
//! | `err_unknown`, `unknown error`, `internal` | `provider_error` | temporary |
//! | anything else, for one message | `provider_rejected` | permanent |
//! | anything else, for the whole request | `provider_error` | temporary |
//!
//! *Account* errors stop every message, not this one: the gateway takes AlphaSMS out of the
//! route for a while and fails the message over.
//!
//! A balance in another currency than UAH is `balance_currency_unsupported` (permanent);
//! [`SmsProvider::lookup`] maps `message_not_found` and `invalid_client_id` to `None`.
//!
//! # Statuses
//!
//! Every status of the JSON reference, by name (case-insensitive; `_` and spaces alike) or
//! by its number:
//!
//! | # | status | Holub |
//! | --- | --- | --- |
//! | 1 | `ACCEPTED` | enroute (Holub's reading of SMPP `ACCEPTD`: not proof of delivery) |
//! | 2 | `DELETED` | undelivered |
//! | 3 | `DELIVERED` | delivered |
//! | 4 | `EXPIRED` | expired |
//! | 5 | `FILTERED` | rejected |
//! | 6 | `INVALID DESTINATION ADDRESS` | rejected |
//! | 7 | `INVALID SOURCE ADDRESS` | rejected |
//! | 8 | `NO ROUTE` | rejected |
//! | 9 | `PARTIALLY DELIVERED` | undelivered (the message did not arrive whole) |
//! | 10 | `QUEUED` | enroute |
//! | 11 | `READ` | delivered (Viber) |
//! | 12 | `REJECTED` | rejected |
//! | 13 | `REPLIED` | delivered (Viber two-way) |
//! | 14 | `ROUTING` | enroute |
//! | 15 | `SIM FULL` | undelivered |
//! | 16 | `UNDELIVERABLE` | undelivered |
//! | 17 | `UNKNOWN` | enroute (no claim either way) |
//!
//! The XML API's names are recognised too: `SCHEDULED`, `ENROUTE`, `SENDING` (enroute),
//! `DISCARDED`, `NOT_SUPPORTED`, `WRONG_ALPHANAME`, `WRONG_ALPHANAME_RETURNED` (rejected).
//!
//! # What the documentation does not say, and what is done here
//!
//! - **The hook's request format** (method, body, fields, authentication) was not found.
//!   [`AlphaSmsReceipts`] takes the status answer's item (`{"id", "type", "status"}`, the
//!   status by name or number), a JSON array of them, or the same fields form-encoded or in
//!   the query; the message is identified by the `id` Holub put in the hook URL (a body `id`
//!   that is neither it nor its client id is refused). The status answer and the hook carry no time, so a
//!   receipt is stamped when it is read.
//! - **The client id's range.** The documentation types it as a number and gives no
//!   range; we keep to 1..=2^53-1, exact in every JSON reader (see [`ClientId`]). The XML
//!   error `ERR_DUPLICATE` ("A message with
//!   the specified ID already exists") shows the gateway refuses a repeated id; that answer
//!   maps to `duplicate_client_id` (unknown outcome, resolved by lookup), never to a resend.
//! - **The error texts** other than the two documented ones: matched by keyword (table
//!   above); unrecognised per-message errors are permanent, whole-request ones temporary.
//! - **Rate limits**: no documented answer; HTTP 429 and texts about too many requests are
//!   temporary.
//! - **The price of a message**: the send answer carries none (`data` is undocumented), so
//!   [`Submitted::cost`] is `None`.
//! - **Batch size**: not documented; 100 messages per request by default. `sms_lifetime` is
//!   Holub's validity clamped into the documented range (omitted when 0).
//! - **Base URL**: the JSON docs say `https://alphasms.net`; older clients use
//!   `https://alphasms.ua`. The default is the documented one; `base_url` overrides it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::http;
use super::kit::{self, Setup};
use super::{Built, ProviderSetupError};
use crate::domain::FailureCode;
use crate::domain::status::ReceiptState;
use crate::domain::{Kopiyky, MessageId};
use crate::ports::provider::WHOLE_MESSAGE;
use crate::ports::{
    OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, ReceiptWebhook, Secret, SmsProvider,
    Submitted, WebhookError, WebhookRequest,
};

use wire::{Answer, BalanceData, ClientId, Echo, Item, RequestItem, SendData, SmsItem, StatusData};

/// The provider kind in the route table.
pub const KIND: &str = "alphasms";
/// The documented base URL.
pub const DEFAULT_BASE_URL: &str = "https://alphasms.net";
/// The one endpoint of the JSON API.
pub const API_PATH: &str = "/api/json.php";
pub const DEFAULT_BATCH_SIZE: usize = 100;
pub const MAX_BATCH_SIZE: usize = 1000;
pub const MAX_TIMEOUT_MS: u64 = kit::MAX_TIMEOUT_MS;
pub const MIN_HOOK_TOKEN_LEN: usize = 16;
/// The documented range of `sms_lifetime`, in seconds (one hour to three days).
pub const MIN_SMS_LIFETIME: u32 = 3_600;
pub const MAX_SMS_LIFETIME: u32 = 259_200;

/// Holub's stable error codes for AlphaSMS answers (the transport ones are in
/// [`http::codes`]).
pub mod error_codes {
    use crate::domain::FailureCode;

    pub const DUPLICATE_CLIENT_ID: FailureCode = FailureCode::DuplicateClientId;
    pub const MESSAGE_NOT_FOUND: FailureCode = FailureCode::MessageNotFound;
    pub const INVALID_CLIENT_ID: FailureCode = FailureCode::InvalidClientId;
    pub const QUOTA_EXCEEDED: FailureCode = FailureCode::ProviderQuotaExceeded;
    pub const INSUFFICIENT_BALANCE: FailureCode = FailureCode::InsufficientBalance;
    pub const SENDER_NOT_REGISTERED: FailureCode = FailureCode::SenderNotRegistered;
    pub const INVALID_NUMBER: FailureCode = FailureCode::InvalidNumber;
    pub const INVALID_TEXT: FailureCode = FailureCode::InvalidText;
    pub const PROVIDER_ERROR: FailureCode = FailureCode::ProviderError;
    pub const PROVIDER_REJECTED: FailureCode = FailureCode::ProviderRejected;
    pub const CURRENCY_UNSUPPORTED: FailureCode = FailureCode::BalanceCurrencyUnsupported;
}

/// The JSON bodies, as documented. Answers are read with [`parse`](wire::parse), which
/// keeps every JSON number as its literal text, so no amount or id ever passes through a
/// float.
pub mod wire;

#[cfg(test)]
mod hostile;

/// The route table's settings for an AlphaSMS route.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    hook_url: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    batch_size: Option<usize>,
}

/// The secret's JSON object. No `Debug`: it holds the key.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    api_key: String,
    #[serde(default)]
    hook_token: Option<String>,
    #[serde(default)]
    previous_hook_token: Option<String>,
}

/// Makes an AlphaSMS route: the client, and the receipt parser when `hook_url` is set.
pub fn build(
    name: &str,
    settings: serde_json::Value,
    credentials: &Secret,
) -> Result<Built, ProviderSetupError> {
    let setup = Setup::new(name);
    let settings_error = |message: String| setup.settings_error(message);
    let credentials_error = |message: String| setup.credentials_error(message);

    let settings: Settings = setup.settings(settings)?;
    let base = setup.base_url(settings.base_url.as_deref(), DEFAULT_BASE_URL)?;
    let endpoint = setup.join(&base, API_PATH)?;
    let hook_url = match settings.hook_url.as_deref() {
        None => None,
        Some(raw) => {
            let url = web_url(raw).map_err(|e| settings_error(format!("hook_url: {e}")))?;
            if url
                .query_pairs()
                .any(|(k, _)| matches!(k.as_ref(), "token" | "id"))
            {
                return Err(settings_error(
                    "hook_url must not use the query keys token or id".to_owned(),
                ));
            }
            Some(url)
        }
    };
    let timeout = setup
        .timeout(settings.timeout_ms, MAX_TIMEOUT_MS)?
        .unwrap_or(http::REQUEST_TIMEOUT);
    let batch_size = match settings.batch_size {
        None => DEFAULT_BATCH_SIZE,
        Some(n) if (1..=MAX_BATCH_SIZE).contains(&n) => n,
        Some(n) => {
            return Err(settings_error(format!(
                "batch_size must be 1 to {MAX_BATCH_SIZE}, not {n}"
            )));
        }
    };

    let credentials: Credentials = setup.credentials(
        credentials,
        r#"a JSON object {"api_key": "…", "hook_token": "…"}"#,
    )?;
    let api_key = setup.required(&credentials.api_key, "api_key")?;
    let hook = match (hook_url, credentials.hook_token) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(credentials_error(
                "hook_token is required when hook_url is set".to_owned(),
            ));
        }
        (Some(_), Some(token)) if token.chars().count() < MIN_HOOK_TOKEN_LEN => {
            return Err(credentials_error(format!(
                "hook_token must have at least {MIN_HOOK_TOKEN_LEN} characters"
            )));
        }
        (Some(url), Some(token)) => Some(Hook {
            url,
            token: Secret::new(token),
        }),
    };
    // Like `hook_token`, it means nothing without `hook_url` (receipts are then polled).
    let previous = match credentials.previous_hook_token.filter(|_| hook.is_some()) {
        Some(token) if token.chars().count() < MIN_HOOK_TOKEN_LEN => {
            return Err(credentials_error(format!(
                "previous_hook_token must have at least {MIN_HOOK_TOKEN_LEN} characters"
            )));
        }
        other => other.map(Secret::new),
    };

    let webhook: Option<Arc<dyn ReceiptWebhook>> = hook.as_ref().map(|h| {
        let receipts = AlphaSmsReceipts::new(h.token.clone());
        let receipts = match previous {
            Some(previous) => receipts.also_accepting(previous),
            None => receipts,
        };
        Arc::new(receipts) as Arc<dyn ReceiptWebhook>
    });
    let provider = AlphaSms {
        name: name.to_owned(),
        endpoint,
        api_key,
        hook,
        timeout,
        batch_size,
        http: http::client(),
    };
    Ok(Built {
        provider: Arc::new(provider),
        webhook,
    })
}

/// An absolute http(s) URL.
fn web_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{raw:?} is not an http(s) URL"));
    }
    Ok(url)
}

/// The hook Holub asks AlphaSMS to report to.
#[derive(Debug)]
struct Hook {
    url: reqwest::Url,
    token: Secret,
}

/// The AlphaSMS client of one route.
#[derive(Debug)]
pub struct AlphaSms {
    name: String,
    endpoint: reqwest::Url,
    api_key: Secret,
    hook: Option<Hook>,
    timeout: Duration,
    batch_size: usize,
    http: reqwest::Client,
}

/// The kind of a provider error, before it gets its code and message.
pub use super::kit::ErrorKind as Kind;

/// Where an error text was reported: for one message, or for the whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Message,
    Request,
}

/// AlphaSMS error texts by the words they contain, first match wins (the table of the
/// module doc): the XML API's `ERR_*` names, its descriptions and the JSON API's texts.
#[rustfmt::skip]
pub const ERROR_WORDS: &[(&[&str], Kind, FailureCode)] = {
    use FailureCode as F;
    use Kind::*;
    &[
        (&["access denied", "unauthori", "api key"], Account, F::ProviderUnauthorized),
        (&["err_duplicate", "duplicate", "already exists"], Unknown, F::DuplicateClientId),
        (&["not found"], Permanent, F::MessageNotFound),
        (&["err_id", "message id"], Permanent, F::InvalidClientId),
        (&["too many requests", "rate limit", "throttl"], Temporary, F::ProviderRateLimited),
        (&["err_overlimit", "limit"], Temporary, F::ProviderQuotaExceeded),
        (&["err_billing", "billing", "balance", "funds", "money"], Account, F::InsufficientBalance),
        (&["err_sender", "alpha-name", "alphaname", "alpha name", "sender", "signature"], Permanent, F::SenderNotRegistered),
        (&["err_recipient", "recipient", "phone", "destination", "number"], Permanent, F::InvalidNumber),
        (&["err_length", "too long", "empty", "length"], Permanent, F::InvalidText),
        (&["err_unknown", "unknown error", "internal"], Temporary, F::ProviderError),
    ]
};

/// The Holub code and kind of an AlphaSMS error text ([`ERROR_WORDS`]); a text none of
/// them matches is the message's refusal, or the request's passing trouble.
pub fn classify(text: &str, scope: Scope) -> (Kind, FailureCode) {
    let t = text.to_ascii_lowercase();
    ERROR_WORDS
        .iter()
        .find(|(words, ..)| words.iter().any(|w| t.contains(w)))
        .map(|&(_, kind, code)| (kind, code))
        .unwrap_or(match scope {
            Scope::Message => (Kind::Permanent, FailureCode::ProviderRejected),
            Scope::Request => (Kind::Temporary, FailureCode::ProviderError),
        })
}

/// The provider error for an AlphaSMS error text. The text is the provider's own, about the
/// request; it never holds the number or the message text.
fn provider_error(provider: &str, text: Option<&str>, scope: Scope) -> ProviderError {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    let (kind, code) = classify(text.unwrap_or(""), scope);
    let shown: String = text.unwrap_or("no error text").chars().take(200).collect();
    let message = format!("{provider}: {shown}");
    tracing::warn!(provider, code = %code, error = %shown, "alphasms: refused");
    kind.error(code, message)
}

/// The Holub state of an AlphaSMS status, by name (any case, `_` or space) or number.
pub fn receipt_state(status: &str) -> Option<ReceiptState> {
    let name = status
        .trim()
        .to_ascii_uppercase()
        .replace(['_', '-'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    STATUSES
        .iter()
        .find(|&&(number, word, _)| word == name || (!number.is_empty() && number == name))
        .map(|&(.., state)| state)
}

/// Every documented status, by number and name (`fixtures/message_statuses.tsv`, in its
/// order), then the XML API's words (no number), with what each means for Holub.
#[rustfmt::skip]
pub const STATUSES: &[(&str, &str, ReceiptState)] = {
    use ReceiptState::*;
    &[
        ("1", "ACCEPTED", Enroute),
        ("2", "DELETED", Undelivered),
        ("3", "DELIVERED", Delivered),
        ("4", "EXPIRED", Expired),
        ("5", "FILTERED", Rejected),
        ("6", "INVALID DESTINATION ADDRESS", Rejected),
        ("7", "INVALID SOURCE ADDRESS", Rejected),
        ("8", "NO ROUTE", Rejected),
        ("9", "PARTIALLY DELIVERED", Undelivered),
        ("10", "QUEUED", Enroute),
        ("11", "READ", Delivered),
        ("12", "REJECTED", Rejected),
        ("13", "REPLIED", Delivered),
        ("14", "ROUTING", Enroute),
        ("15", "SIM FULL", Undelivered),
        ("16", "UNDELIVERABLE", Undelivered),
        ("17", "UNKNOWN", Enroute),
        ("", "SCHEDULED", Enroute),
        ("", "ENROUTE", Enroute),
        ("", "SENDING", Enroute),
        ("", "DISCARDED", Rejected),
        ("", "NOT SUPPORTED", Rejected),
        ("", "WRONG ALPHANAME", Rejected),
        ("", "WRONG ALPHANAME RETURNED", Rejected),
    ]
};

/// Hryvnias with any number of decimals, rounded down to whole kopiykas, without a float.
pub fn floor_to_kopiyky(amount: &str) -> Option<Kopiyky> {
    let t = amount.trim();
    let negative = t.starts_with('-');
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) || !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let (kept, dropped) = frac.split_at(frac.len().min(2));
    let exact = Kopiyky::parse_hryvnias(&format!("{whole}.{kept:0<2}")).ok()?;
    let cut = dropped.bytes().any(|b| b != b'0');
    Some(if negative && cut {
        Kopiyky(exact.0.checked_sub(1)?)
    } else {
        exact
    })
}

/// The `sms_lifetime` of a message valid for `validity_seconds` (0: none, AlphaSMS's
/// default applies), clamped into the documented range. Going up to the minimum is safe:
/// Holub expires the message itself when its own validity ends, so the customer's validity
/// still holds in Holub (at worst the operator delivers a message Holub has reported
/// `expired`); sending the true validity instead would have every OTP refused.
pub fn lifetime(validity_seconds: u32) -> Option<u32> {
    (validity_seconds > 0).then(|| validity_seconds.clamp(MIN_SMS_LIFETIME, MAX_SMS_LIFETIME))
}

/// For each requested id, the answer item for it: the one echoing it, else the one at its
/// position when the counts agree and that item echoes no id.
fn pair<'a, T: Echo>(requested: &[String], items: &'a [Item<T>]) -> Vec<Option<&'a Item<T>>> {
    let echo = |item: &'a Item<T>| item.data.as_ref().and_then(|d| d.echo_id());
    requested
        .iter()
        .enumerate()
        .map(|(i, want)| {
            if let Some(found) = items.iter().find(|it| echo(it) == Some(want.as_str())) {
                return Some(found);
            }
            if items.len() == requested.len() {
                return items.get(i).filter(|it| echo(it).is_none());
            }
            None
        })
        .collect()
}

impl AlphaSms {
    /// One request to the API: the commands' answers, or why there are none.
    async fn call<T: DeserializeOwned>(
        &self,
        data: Vec<RequestItem>,
    ) -> Result<Vec<Item<T>>, ProviderError> {
        let body = wire::Request {
            auth: self.api_key.expose(),
            data,
        };
        let response = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(http::status_error(&self.name, status));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        let answer: Answer<T> = wire::parse(&bytes)
            .map_err(|e| http::bad_answer(&self.name, &format!("not the documented JSON: {e}")))?;
        if !answer.success.0 {
            return Err(provider_error(
                &self.name,
                answer.error.as_deref(),
                Scope::Request,
            ));
        }
        Ok(answer.data.unwrap_or_default())
    }

    /// The send command of one message.
    pub fn sms_item(&self, sms: &OutboundSms) -> Result<SmsItem, ProviderError> {
        let phone = sms.to.digits().parse::<u64>().map_err(|_| {
            ProviderError::permanent(
                error_codes::INVALID_NUMBER,
                format!("{}: {} is not a number", self.name, sms.to.masked()),
            )
        })?;
        let signature = kit::sender(&sms.from);
        let hook = self.hook.as_ref().map(|hook| {
            let mut url = hook.url.clone();
            url.query_pairs_mut()
                .append_pair("token", hook.token.expose())
                .append_pair("id", &sms.id.to_string());
            String::from(url)
        });
        Ok(SmsItem {
            id: ClientId::of(&sms.id),
            phone,
            sms_signature: signature,
            sms_message: sms.text.clone(),
            sms_lifetime: lifetime(sms.validity_seconds),
            short_link: None,
            unsubscribe_link: None,
            hook,
        })
    }

    /// Sends one request of at most `batch_size` messages.
    async fn send_chunk(&self, chunk: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        let mut results: Vec<Option<Result<Submitted, ProviderError>>> = vec![None; chunk.len()];
        let mut commands = Vec::with_capacity(chunk.len());
        let mut sent = Vec::with_capacity(chunk.len());
        for (i, sms) in chunk.iter().enumerate() {
            match self.sms_item(sms) {
                Ok(item) => {
                    commands.push(RequestItem::Sms(item));
                    sent.push(i);
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !commands.is_empty() {
            tracing::debug!(provider = %self.name, count = commands.len(), "alphasms: sending");
            match self.call::<SendData>(commands).await {
                Err(e) => {
                    for &i in &sent {
                        results[i] = Some(Err(e.clone()));
                    }
                }
                Ok(items) => {
                    let ids: Vec<String> = sent
                        .iter()
                        .map(|&i| ClientId::of(&chunk[i].id).to_string())
                        .collect();
                    for (&i, item) in sent.iter().zip(pair(&ids, &items)) {
                        results[i] = Some(self.send_result(&chunk[i], item));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(http::bad_answer(&self.name, "no answer"))))
            .collect()
    }

    fn send_result(
        &self,
        sms: &OutboundSms,
        item: Option<&Item<SendData>>,
    ) -> Result<Submitted, ProviderError> {
        let Some(item) = item else {
            return Err(http::bad_answer(
                &self.name,
                "the answer has no item for a message",
            ));
        };
        if !item.success.0 {
            return Err(provider_error(
                &self.name,
                item.error.as_deref(),
                Scope::Message,
            ));
        }
        let data = item.data.as_ref();
        let msg_id = data.and_then(|d| d.msg_id.as_deref()).unwrap_or("-");
        let parts = data.and_then(|d| d.parts.as_deref()).unwrap_or("-");
        tracing::debug!(
            provider = %self.name,
            id = %sms.id,
            msg_id,
            parts,
            "alphasms: accepted"
        );
        Ok(Submitted {
            provider_message_id: sms.id.to_string(),
            cost: None,
        })
    }

    /// The status answers for up to `batch_size` of our ids.
    async fn status_chunk(
        &self,
        wanted: &[(String, MessageId)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        let commands = wanted
            .iter()
            .map(|(_, id)| RequestItem::Status {
                id: ClientId::of(id),
            })
            .collect();
        let items = self.call::<StatusData>(commands).await?;
        let ids: Vec<String> = wanted
            .iter()
            .map(|(_, id)| ClientId::of(id).to_string())
            .collect();
        let mut receipts = Vec::new();
        for ((provider_id, _), item) in wanted.iter().zip(pair(&ids, &items)) {
            let Some(item) = item.filter(|it| it.success.0) else {
                continue;
            };
            let Some(status) = item.data.as_ref().and_then(|d| d.status.as_deref()) else {
                continue;
            };
            let Some(state) = receipt_state(status) else {
                tracing::warn!(provider = %self.name, status, "alphasms: unknown status");
                continue;
            };
            // A status is for the whole message.
            receipts.push(ProviderReceipt {
                provider_message_id: provider_id.clone(),
                part: WHOLE_MESSAGE,
                state,
                at: now,
            });
        }
        Ok(receipts)
    }
}

#[async_trait]
impl SmsProvider for AlphaSms {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
        self.send_chunk(std::slice::from_ref(sms))
            .await
            .pop()
            .unwrap_or_else(|| Err(http::bad_answer(&self.name, "no answer")))
    }

    async fn send_many(&self, batch: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        let mut results = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(self.batch_size) {
            results.extend(self.send_chunk(chunk).await);
        }
        results
    }

    async fn lookup(&self, id: &MessageId) -> Result<Option<Submitted>, ProviderError> {
        let items = self
            .call::<StatusData>(vec![RequestItem::Status {
                id: ClientId::of(id),
            }])
            .await?;
        let ids = [ClientId::of(id).to_string()];
        let Some(Some(item)) = pair(&ids, &items).into_iter().next() else {
            return Err(http::bad_answer(
                &self.name,
                "the status answer has no item",
            ));
        };
        if item.success.0 {
            return Ok(Some(Submitted {
                provider_message_id: id.to_string(),
                cost: None,
            }));
        }
        let error = provider_error(&self.name, item.error.as_deref(), Scope::Message);
        if matches!(
            error.code(),
            error_codes::MESSAGE_NOT_FOUND | error_codes::INVALID_CLIENT_ID
        ) {
            return Ok(None);
        }
        Err(error)
    }

    fn receipt_mode(&self) -> ReceiptMode {
        if self.hook.is_some() {
            ReceiptMode::Push
        } else {
            ReceiptMode::Poll
        }
    }

    /// Pushed or not, AlphaSMS answers status queries: receipts overdue after a crash or a
    /// lost push are asked for.
    fn answers_status(&self) -> bool {
        true
    }

    async fn status(
        &self,
        provider_message_ids: &[String],
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        let ours = |p: &String| p.parse::<MessageId>().ok().map(|id| (p.clone(), id));
        let wanted: Vec<String> = provider_message_ids
            .iter()
            .filter(|p| {
                let ok = ours(p).is_some();
                if !ok {
                    tracing::warn!(provider = %self.name, provider_message_id = %p, "alphasms: not one of our ids");
                }
                ok
            })
            .cloned()
            .collect();
        let now = Utc::now();
        kit::status_in_chunks(
            &self.name,
            &wanted,
            self.batch_size,
            1,
            |chunk| async move {
                let chunk: Vec<(String, MessageId)> = chunk.iter().filter_map(ours).collect();
                self.status_chunk(&chunk, now).await
            },
        )
        .await
    }

    async fn balance(&self) -> Result<Kopiyky, ProviderError> {
        let items = self.call::<BalanceData>(vec![RequestItem::Balance]).await?;
        let Some(item) = items.first() else {
            return Err(http::bad_answer(
                &self.name,
                "the balance answer has no item",
            ));
        };
        if !item.success.0 {
            return Err(provider_error(
                &self.name,
                item.error.as_deref(),
                Scope::Request,
            ));
        }
        let data = item.data.as_ref();
        let currency = data.and_then(|d| d.currency.as_deref()).unwrap_or("UAH");
        if !currency.eq_ignore_ascii_case("UAH") {
            return Err(ProviderError::permanent(
                error_codes::CURRENCY_UNSUPPORTED,
                format!("{}: the balance is in {currency}, not UAH", self.name),
            ));
        }
        data.and_then(|d| d.amount.as_deref())
            .and_then(floor_to_kopiyky)
            .ok_or_else(|| http::bad_answer(&self.name, "the balance amount is not a number"))
    }
}

/// Parses AlphaSMS delivery reports arriving at the hook URL (see the module doc), after
/// checking the token Holub put in its query: the current one, or the previous one while a
/// rotation lasts.
pub struct AlphaSmsReceipts {
    token: Secret,
    previous: Option<Secret>,
}

impl AlphaSmsReceipts {
    pub fn new(token: Secret) -> Self {
        AlphaSmsReceipts {
            token,
            previous: None,
        }
    }

    /// The same parser, also taking reports that carry `previous`.
    pub fn also_accepting(self, previous: Secret) -> Self {
        AlphaSmsReceipts {
            previous: Some(previous),
            ..self
        }
    }

    /// Compares with every accepted token whichever matches, so the time taken does not
    /// tell which one did.
    fn accepts(&self, token: &str) -> bool {
        let matches = |expected: &Secret| {
            let expected = expected.expose();
            !expected.is_empty() && constant_time_eq(token.as_bytes(), expected.as_bytes())
        };
        let current = matches(&self.token);
        let previous = self.previous.as_ref().is_some_and(matches);
        current | previous
    }
}

fn malformed(code: &'static str, message: impl Into<String>) -> WebhookError {
    WebhookError::Malformed {
        code,
        message: message.into(),
    }
}

/// Compares every byte whatever the first difference; only the lengths may leak.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = a.len() ^ b.len();
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(std::hint::black_box(x ^ y));
    }
    std::hint::black_box(diff) == 0
}

impl ReceiptWebhook for AlphaSmsReceipts {
    fn parse(
        &self,
        request: &WebhookRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<ProviderReceipt>, WebhookError> {
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(request.query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let field = |pairs: &[(String, String)], key: &str| {
            pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
        };
        let token = field(&query, "token").unwrap_or_default();
        if !self.accepts(&token) {
            return Err(WebhookError::Unauthorized);
        }

        let url_id = field(&query, "id");

        let body = request.body.trim_ascii();
        let reports: Vec<wire::StatusData> =
            if body.first().is_some_and(|b| *b == b'{' || *b == b'[') {
                match wire::parse::<wire::HookBody>(body) {
                    Ok(wire::HookBody::One(one)) => vec![one],
                    Ok(wire::HookBody::Many(many)) => many,
                    Err(e) => {
                        return Err(malformed(
                            "receipt_malformed",
                            format!("not an AlphaSMS report: {e}"),
                        ));
                    }
                }
            } else {
                // Form-encoded, or the fields in the query.
                let pairs: Vec<(String, String)> = if body.is_empty() {
                    query.clone()
                } else {
                    url::form_urlencoded::parse(body).into_owned().collect()
                };
                vec![wire::StatusData {
                    id: field(&pairs, "id"),
                    kind: field(&pairs, "type"),
                    status: field(&pairs, "status"),
                    msg_id: field(&pairs, "msg_id"),
                }]
            };
        if reports.is_empty() {
            return Err(malformed("receipt_malformed", "no report in the body"));
        }

        let bad_id = |_| malformed("receipt_bad_id", "the id is not a Holub message id");
        let mut receipts = Vec::new();
        for report in reports {
            // The hook URL carries our id; a body id is AlphaSMS's echo of the client id we
            // sent (the number derived from it), or our id itself. A bare number cannot be
            // turned back into our id, so a report without the URL's id must carry ours.
            let id: MessageId = match (&url_id, &report.id) {
                (Some(url), body) => {
                    let id: MessageId = url.parse().map_err(bad_id)?;
                    if let Some(body) = body
                        && body != url
                        && *body != ClientId::of(&id).to_string()
                    {
                        return Err(malformed(
                            "receipt_id_mismatch",
                            "the report's id is not the hook's",
                        ));
                    }
                    id
                }
                (None, Some(body)) => body.parse().map_err(bad_id)?,
                (None, None) => {
                    return Err(malformed("receipt_malformed", "the report has no id"));
                }
            };
            let status = report
                .status
                .as_deref()
                .ok_or_else(|| malformed("receipt_malformed", "the report has no status"))?;
            let state = receipt_state(status).ok_or_else(|| {
                malformed(
                    "receipt_unknown_status",
                    format!(
                        "unknown AlphaSMS status {:?}",
                        status.chars().take(40).collect::<String>()
                    ),
                )
            })?;
            // A report is for the whole message.
            receipts.push(ProviderReceipt {
                provider_message_id: id.to_string(),
                part: WHOLE_MESSAGE,
                state,
                at: now,
            });
        }
        Ok(receipts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::providers::http::codes;
    use crate::domain::segments::Encoding;
    use crate::domain::{PhoneNumber, SenderId};
    use chrono::TimeZone;
    use wire::{HookBody, Request, parse};

    const SEND_REQUEST: &str = include_str!("fixtures/send_request.json");
    const SEND_OK: &str = include_str!("fixtures/send_response_success.json");
    const ACCESS_DENIED: &str = include_str!("fixtures/send_response_access_denied.json");
    const ALPHA_NAME_ERROR: &str = include_str!("fixtures/send_response_alpha_name_error.json");
    const STATUS_REQUEST: &str = include_str!("fixtures/status_request.json");
    const STATUS_OK: &str = include_str!("fixtures/status_response.json");
    const BALANCE_REQUEST: &str = include_str!("fixtures/balance_request.json");
    const BALANCE_OK: &str = include_str!("fixtures/balance_response.json");
    const STATUSES_TSV: &str = include_str!("fixtures/message_statuses.tsv");
    const ERRORS: &str = include_str!("fixtures/error_codes.tsv");
    const DOC_KEY: &str = "bb56a4369eb19***cfec6d1776bd25";
    const TOKEN: &str = "a-hook-token-of-32-characters-xx";

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("valid JSON")
    }

    fn creds(value: serde_json::Value) -> Secret {
        Secret::new(value.to_string())
    }

    fn build_ok(settings: serde_json::Value, credentials: serde_json::Value) -> Built {
        match build("alpha", settings, &creds(credentials)) {
            Ok(built) => built,
            Err(e) => panic!("setup failed: {e}"),
        }
    }

    fn client(settings: serde_json::Value, credentials: serde_json::Value) -> AlphaSms {
        let settings: Settings = serde_json::from_value(settings).expect("settings");
        let credentials: Credentials = serde_json::from_value(credentials).expect("credentials");
        AlphaSms {
            name: "alpha".into(),
            endpoint: web_url("https://alphasms.net/api/json.php").expect("url"),
            api_key: Secret::new(credentials.api_key),
            hook: settings.hook_url.map(|u| Hook {
                url: web_url(&u).expect("url"),
                token: Secret::new(credentials.hook_token.expect("token")),
            }),
            timeout: http::REQUEST_TIMEOUT,
            batch_size: DEFAULT_BATCH_SIZE,
            http: http::client(),
        }
    }

    fn sms(segments: u16) -> OutboundSms {
        OutboundSms {
            id: "01JV7Q8M4X2K9T3N5R6B8C0D1E".parse().expect("id"),
            to: PhoneNumber::parse("+380971234567").expect("phone"),
            from: SenderId::parse("SMSTest").expect("sender"),
            text: "Message text to be sent via SMS".into(),
            encoding: Encoding::Gsm7,
            segments,
            validity_seconds: 172_800,
        }
    }

    #[test]
    fn the_send_request_serializes_like_the_documented_example() {
        let request = Request {
            auth: DOC_KEY,
            data: vec![RequestItem::Sms(SmsItem {
                id: ClientId::new(100500).expect("in range"),
                phone: 380971234567,
                sms_signature: "SMSTest".into(),
                sms_message: "Message text to be sent via SMS".into(),
                sms_lifetime: Some(172800),
                short_link: Some(true),
                unsubscribe_link: Some(true),
                hook: Some("https://example.org/webhook/url.php".into()),
            })],
        };
        let ours = serde_json::to_value(&request).expect("serializes");
        assert_eq!(ours, json(SEND_REQUEST));
    }

    #[test]
    fn the_status_and_balance_requests_serialize_like_the_documented_examples() {
        let status = Request {
            auth: DOC_KEY,
            data: vec![RequestItem::Status {
                id: ClientId::new(100500).expect("in range"),
            }],
        };
        assert_eq!(
            serde_json::to_value(&status).expect("serializes"),
            json(STATUS_REQUEST)
        );
        let balance = Request {
            auth: DOC_KEY,
            data: vec![RequestItem::Balance],
        };
        assert_eq!(
            serde_json::to_value(&balance).expect("serializes"),
            json(BALANCE_REQUEST)
        );
    }

    #[test]
    fn our_send_item_has_the_documented_shape() {
        let alpha = client(
            serde_json::json!({"hook_url": "https://holub.example/v1/receipts/alpha?route=a"}),
            serde_json::json!({"api_key": "k", "hook_token": TOKEN}),
        );
        let item = alpha.sms_item(&sms(2)).expect("an item");
        let value = serde_json::to_value(RequestItem::Sms(item)).expect("serializes");
        assert_eq!(value["type"], "sms");
        let ours: MessageId = "01JV7Q8M4X2K9T3N5R6B8C0D1E".parse().expect("id");
        let number = value["id"].as_u64().expect("the id is a JSON number");
        assert_eq!(number, ClientId::of(&ours).get());
        assert_eq!(value["phone"], serde_json::json!(380971234567u64));
        assert_eq!(value["sms_signature"], "SMSTest");
        assert_eq!(value["sms_lifetime"], 172800);
        assert!(value.get("short_link").is_none());
        let hook = value["hook"].as_str().expect("a hook");
        assert_eq!(
            hook,
            format!(
                "https://holub.example/v1/receipts/alpha?route=a&token={TOKEN}&id=01JV7Q8M4X2K9T3N5R6B8C0D1E"
            )
        );
        // Without a hook URL, no hook: the route is polled.
        let polled = client(serde_json::json!({}), serde_json::json!({"api_key": "k"}));
        let item = polled.sms_item(&sms(1)).expect("an item");
        assert_eq!(item.hook, None);
        let mut no_validity = sms(1);
        no_validity.validity_seconds = 0;
        assert_eq!(
            polled.sms_item(&no_validity).expect("item").sms_lifetime,
            None
        );
    }

    #[test]
    fn the_lifetime_is_clamped_into_the_documented_range() {
        for (validity, sent) in [
            (0, None),
            (1, Some(3_600)),
            (599, Some(3_600)),
            (3_599, Some(3_600)),
            (3_600, Some(3_600)),
            (172_800, Some(172_800)),
            (259_200, Some(259_200)),
            (259_201, Some(259_200)),
            (u32::MAX, Some(259_200)),
        ] {
            assert_eq!(lifetime(validity), sent, "{validity}");
        }
        // An OTP valid for 600 s goes out with the documented minimum.
        let alpha = client(serde_json::json!({}), serde_json::json!({"api_key": "k"}));
        let mut otp = sms(1);
        otp.validity_seconds = 599;
        assert_eq!(
            alpha.sms_item(&otp).expect("item").sms_lifetime,
            Some(3_600)
        );
    }

    #[test]
    fn client_ids_are_json_safe_numbers_derived_from_our_ids() {
        assert_eq!(ClientId::new(0), None);
        assert_eq!(ClientId::new(1 << 53), None);
        assert_eq!(
            ClientId::new(ClientId::MAX).map(ClientId::get),
            Some(ClientId::MAX)
        );
        let ours: MessageId = "01JV7Q8M4X2K9T3N5R6B8C0D1E".parse().expect("id");
        // Deterministic: the same message always gets the same number.
        assert_eq!(ClientId::of(&ours), ClientId::of(&ours));
        let now = Utc::now();
        let mut seen = std::collections::HashSet::new();
        // Ids made in one millisecond by one process get consecutive numbers.
        let burst: Vec<MessageId> = (0..10_000).map(|_| MessageId::generate(now)).collect();
        for id in &burst {
            let n = ClientId::of(id).get();
            assert!((1..=ClientId::MAX).contains(&n));
            assert!(seen.insert(n), "collision at {id}");
        }
        // The extremes of the random part stay in range.
        for random in [0u128, 1, u128::from(ClientId::MAX), (1u128 << 80) - 1] {
            let id: MessageId = ulid::Ulid::from_parts(1, random)
                .to_string()
                .parse()
                .expect("id");
            assert!((1..=ClientId::MAX).contains(&ClientId::of(&id).get()));
        }
    }

    #[test]
    fn the_documented_send_answers_parse_and_map() {
        let alpha = client(serde_json::json!({}), serde_json::json!({"api_key": "k"}));
        let ok: Answer<SendData> = parse(SEND_OK.as_bytes()).expect("parses");
        assert!(ok.success.0);
        let items = ok.data.expect("items");
        let data = items[0].data.as_ref().expect("data");
        assert_eq!(data.id.as_deref(), Some("100500"));
        assert_eq!(data.msg_id.as_deref(), Some("123456789"));
        assert_eq!(data.parts.as_deref(), Some("1"));
        let mut doc_sms = sms(1);
        doc_sms.id = MessageId::generate(Utc::now());
        let submitted = alpha
            .send_result(&doc_sms, Some(&items[0]))
            .expect("accepted");
        assert_eq!(submitted.provider_message_id, doc_sms.id.to_string());
        assert_eq!(submitted.cost, None);

        let denied: Answer<SendData> = parse(ACCESS_DENIED.as_bytes()).expect("parses");
        assert!(!denied.success.0);
        assert!(denied.data.is_none());
        let e = provider_error("alpha", denied.error.as_deref(), Scope::Request);
        assert_eq!(
            e,
            ProviderError::account(codes::UNAUTHORIZED, "alpha: Access denied")
        );

        let alpha_name: Answer<SendData> = parse(ALPHA_NAME_ERROR.as_bytes()).expect("parses");
        let items = alpha_name.data.expect("items");
        assert_eq!(
            items[0].data.as_ref().and_then(|d| d.id.as_deref()),
            Some("100500")
        );
        let e = alpha
            .send_result(&doc_sms, Some(&items[0]))
            .expect_err("refused");
        assert_eq!(
            e,
            ProviderError::permanent(
                error_codes::SENDER_NOT_REGISTERED,
                "alpha: Error in Alpha-name"
            )
        );
        // No item for a message: the outcome is unknown.
        assert!(
            alpha
                .send_result(&doc_sms, None)
                .expect_err("lost")
                .is_unknown()
        );
    }

    #[test]
    fn the_documented_status_and_balance_answers_parse_and_map() {
        let status: Answer<StatusData> = parse(STATUS_OK.as_bytes()).expect("parses");
        let items = status.data.expect("items");
        let data = items[0].data.as_ref().expect("data");
        assert_eq!(data.id.as_deref(), Some("10500"));
        assert_eq!(data.kind.as_deref(), Some("viber"));
        assert_eq!(
            data.status.as_deref().and_then(receipt_state),
            Some(ReceiptState::Delivered)
        );

        let balance: Answer<BalanceData> = parse(BALANCE_OK.as_bytes()).expect("parses");
        let items = balance.data.expect("items");
        let data = items[0].data.as_ref().expect("data");
        assert_eq!(data.amount.as_deref(), Some("31.1683"));
        assert_eq!(data.currency.as_deref(), Some("UAH"));
        assert_eq!(
            data.amount.as_deref().and_then(floor_to_kopiyky),
            Some(Kopiyky(3116))
        );
    }

    #[test]
    fn answers_seen_in_clients_parse_too() {
        // `Prihod/alphasms-client` tests: `"error": ""` on success; `success` may be 1/0.
        let body = br#"{"success":1,"data":[{"success":true,"data":{"id":"01JV7Q8M4X2K9T3N5R6B8C0D1E","msg_id":1,"data":1,"parts":2}}],"error":""}"#;
        let answer: Answer<SendData> = parse(body).expect("parses");
        assert!(answer.success.0);
        assert!(parse::<Answer<SendData>>(b"<html>502</html>").is_err());
        assert!(parse::<Answer<SendData>>(br#"{"result":"ok"}"#).is_err());
        assert!(parse::<Answer<SendData>>(br#"{"success":"maybe"}"#).is_err());
    }

    #[test]
    fn every_documented_status_maps_as_the_table_says() {
        for &(number, name, state) in STATUSES {
            for written in [name, &name.to_lowercase(), &name.replace(' ', "_")] {
                assert_eq!(receipt_state(written), Some(state), "{written}");
            }
            if !number.is_empty() {
                assert_eq!(receipt_state(number), Some(state), "#{number}");
            }
        }
        // The documented list is the numbered part of the table, in order.
        let documented: Vec<(&str, &str)> = STATUSES_TSV
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut cols = l.split('\t');
                (cols.next().unwrap_or(""), cols.next().unwrap_or(""))
            })
            .collect();
        let numbered: Vec<(&str, &str)> = STATUSES
            .iter()
            .filter(|(number, ..)| !number.is_empty())
            .map(|&(number, name, _)| (number, name))
            .collect();
        assert_eq!(documented, numbered);
        for name in ["", "DELIVRD?", "0", "18", "SENT"] {
            assert_eq!(receipt_state(name), None, "{name}");
        }
    }

    #[test]
    fn every_error_maps_as_the_table_says() {
        use error_codes as c;
        // The XML API's error rows: name and description both.
        let expected = [
            ("ERR_UNKNOWN", Kind::Temporary, c::PROVIDER_ERROR),
            ("ERR_ID", Kind::Permanent, c::INVALID_CLIENT_ID),
            ("ERR_SENDER", Kind::Permanent, c::SENDER_NOT_REGISTERED),
            ("ERR_RECIPIENT", Kind::Permanent, c::INVALID_NUMBER),
            ("ERR_LENGTH", Kind::Permanent, c::INVALID_TEXT),
            ("ERR_BILLING", Kind::Account, c::INSUFFICIENT_BALANCE),
            ("ERR_OVERLIMIT", Kind::Temporary, c::QUOTA_EXCEEDED),
            ("ERR_DUPLICATE", Kind::Unknown, c::DUPLICATE_CLIENT_ID),
            ("ERR_DELETE", Kind::Permanent, c::PROVIDER_REJECTED),
        ];
        let rows: Vec<(&str, &str)> = ERRORS
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut cols = l.split('\t').skip(1);
                (cols.next().unwrap_or(""), cols.next().unwrap_or(""))
            })
            .collect();
        assert_eq!(rows.len(), expected.len());
        for ((name, description), (want, kind, code)) in rows.into_iter().zip(expected) {
            assert_eq!(name, want);
            assert_eq!(classify(name, Scope::Message), (kind, code), "{name}");
            assert_eq!(
                classify(description, Scope::Message),
                (kind, code),
                "{description}"
            );
        }
        // The JSON API's documented texts, and the rest of the table.
        let cases = [
            ("Access denied", Kind::Account, codes::UNAUTHORIZED),
            (
                "Error in Alpha-name",
                Kind::Permanent,
                c::SENDER_NOT_REGISTERED,
            ),
            ("Message not found", Kind::Permanent, c::MESSAGE_NOT_FOUND),
            ("Too many requests", Kind::Temporary, codes::RATE_LIMITED),
            ("Insufficient funds", Kind::Account, c::INSUFFICIENT_BALANCE),
            ("Invalid phone", Kind::Permanent, c::INVALID_NUMBER),
            ("Internal error", Kind::Temporary, c::PROVIDER_ERROR),
        ];
        for (text, kind, code) in cases {
            assert_eq!(classify(text, Scope::Message), (kind, code), "{text}");
        }
        assert_eq!(
            classify("Something odd", Scope::Message),
            (Kind::Permanent, c::PROVIDER_REJECTED)
        );
        assert_eq!(
            classify("Something odd", Scope::Request),
            (Kind::Temporary, c::PROVIDER_ERROR)
        );
        assert!(provider_error("p", Some("ERR_DUPLICATE"), Scope::Message).is_unknown());
        let none = provider_error("p", None, Scope::Request);
        assert_eq!(none.code(), c::PROVIDER_ERROR);
    }

    #[test]
    fn numbers_are_read_as_their_literal_text() {
        let body = br#"{"a":-1.50e3,"b":"7 \"8\" 9","c":[1,2.25],"d":true,"e":null}"#;
        let out = wire::lossless(body);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf-8"),
            r#"{"a":"-1.50e3","b":"7 \"8\" 9","c":["1","2.25"],"d":true,"e":null}"#
        );
        assert_eq!(
            wire::lossless("«ціна» 12".as_bytes()),
            "«ціна» \"12\"".as_bytes()
        );
    }

    #[test]
    fn balances_are_rounded_down_to_kopiykas() {
        for (amount, kopiyky) in [
            ("31.1683", Some(3116)),
            ("31.1600", Some(3116)),
            ("12", Some(1200)),
            ("0.5", Some(50)),
            ("-3.501", Some(-351)),
            ("-3.50", Some(-350)),
            ("1e3", None),
            ("abc", None),
            ("", None),
        ] {
            assert_eq!(floor_to_kopiyky(amount), kopiyky.map(Kopiyky), "{amount}");
        }
    }

    #[test]
    fn the_provider_message_id_is_our_id_whatever_the_part_count() {
        let alpha = client(serde_json::json!({}), serde_json::json!({"api_key": "k"}));
        let ok: Answer<SendData> = parse(SEND_OK.as_bytes()).expect("parses");
        let items = ok.data.expect("items");
        for segments in [1, 2, 3] {
            let submitted = alpha
                .send_result(&sms(segments), Some(&items[0]))
                .expect("accepted");
            assert_eq!(
                submitted.provider_message_id, "01JV7Q8M4X2K9T3N5R6B8C0D1E",
                "{segments}"
            );
        }
    }

    #[test]
    fn answers_pair_with_commands_by_echoed_id_or_position() {
        let answer: Answer<SendData> = parse(
            br#"{"success":true,"data":[
                {"success":true,"data":{"id":"b","msg_id":2}},
                {"success":true,"data":{"id":"a","msg_id":1}}]}"#,
        )
        .expect("parses");
        let items = answer.data.expect("items");
        let ids = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let paired = pair(&ids, &items);
        let msg = |i: usize| {
            paired[i]
                .and_then(|it| it.data.as_ref())
                .and_then(|d| d.msg_id.clone())
        };
        assert_eq!(
            (msg(0), msg(1), msg(2)),
            (Some("1".into()), Some("2".into()), None)
        );
        let anonymous: Answer<SendData> =
            parse(br#"{"success":true,"data":[{"success":true,"data":{"msg_id":7}}]}"#)
                .expect("parses");
        let items = anonymous.data.expect("items");
        assert!(pair(&ids[..1], &items)[0].is_some());
        assert!(pair(&ids[..2], &items).iter().all(Option::is_none));
    }

    fn hook_request<'a>(
        headers: &'a reqwest::header::HeaderMap,
        query: Option<&'a str>,
        body: &'a [u8],
    ) -> WebhookRequest<'a> {
        WebhookRequest {
            headers,
            query,
            body,
        }
    }

    #[test]
    fn hook_reports_parse_with_the_token() {
        let receipts = AlphaSmsReceipts::new(Secret::new(TOKEN));
        let headers = reqwest::header::HeaderMap::new();
        let now = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let query = format!("token={TOKEN}&id=01JV7Q8M4X2K9T3N5R6B8C0D1E");
        let body = br#"{"id":"01JV7Q8M4X2K9T3N5R6B8C0D1E","type":"sms","status":"DELIVERED"}"#;
        let parsed = receipts
            .parse(&hook_request(&headers, Some(&query), body), now)
            .expect("accepted");
        // One receipt, for the whole message.
        let delivered = vec![ProviderReceipt {
            provider_message_id: "01JV7Q8M4X2K9T3N5R6B8C0D1E".into(),
            part: WHOLE_MESSAGE,
            state: ReceiptState::Delivered,
            at: now,
        }];
        assert_eq!(parsed, delivered);
        // AlphaSMS echoing the client id we sent (a number) in the body.
        let ours: MessageId = "01JV7Q8M4X2K9T3N5R6B8C0D1E".parse().expect("id");
        let echoed = format!(
            r#"{{"id":{},"type":"sms","status":"DELIVERED"}}"#,
            ClientId::of(&ours)
        );
        let parsed = receipts
            .parse(
                &hook_request(&headers, Some(&query), echoed.as_bytes()),
                now,
            )
            .expect("accepted");
        assert_eq!(parsed, delivered);
        // Hooks given out before part counts left the URL still carry `parts`: it is ignored.
        for old in ["&parts=2", "&parts=0", "&parts=x"] {
            let query = format!("{query}{old}");
            let parsed = receipts
                .parse(&hook_request(&headers, Some(&query), body), now)
                .expect("accepted");
            assert_eq!(parsed, delivered, "{old}");
        }
        // The status by number, an array, a body without id, a form body, the query alone.
        let single = format!("token={TOKEN}&id=01JV7Q8M4X2K9T3N5R6B8C0D1E");
        for body in [
            &br#"[{"status":16}]"#[..],
            br#"{"status":"UNDELIVERABLE","msg_id":5}"#,
            b"status=UNDELIVERABLE&id=01JV7Q8M4X2K9T3N5R6B8C0D1E",
        ] {
            let parsed = receipts
                .parse(&hook_request(&headers, Some(&single), body), now)
                .expect("accepted");
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].part, WHOLE_MESSAGE);
            assert_eq!(parsed[0].state, ReceiptState::Undelivered);
            assert_eq!(parsed[0].provider_message_id, "01JV7Q8M4X2K9T3N5R6B8C0D1E");
        }
        let in_query = format!("{single}&status=EXPIRED");
        let parsed = receipts
            .parse(&hook_request(&headers, Some(&in_query), b""), now)
            .expect("accepted");
        assert_eq!(parsed[0].state, ReceiptState::Expired);
        // The hook as the documentation's status item, keyed only by the body's id.
        let parsed = receipts
            .parse(
                &hook_request(
                    &headers,
                    Some(&format!("token={TOKEN}")),
                    br#"{"id":"01JV7Q8M4X2K9T3N5R6B8C0D1E","status":"READ"}"#,
                ),
                now,
            )
            .expect("accepted");
        assert_eq!(parsed[0].state, ReceiptState::Delivered);
    }

    #[test]
    fn forged_and_malformed_hook_reports_are_refused() {
        let receipts = AlphaSmsReceipts::new(Secret::new(TOKEN));
        let headers = reqwest::header::HeaderMap::new();
        let now = Utc::now();
        let body = br#"{"status":"DELIVERED"}"#;
        for query in [
            None,
            Some("id=01JV7Q8M4X2K9T3N5R6B8C0D1E"),
            Some("token=&id=01JV7Q8M4X2K9T3N5R6B8C0D1E"),
            Some("token=a-hook-token-of-32-characters-xy&id=01JV7Q8M4X2K9T3N5R6B8C0D1E"),
            Some("token=a-hook-token&id=01JV7Q8M4X2K9T3N5R6B8C0D1E"),
        ] {
            assert_eq!(
                receipts.parse(&hook_request(&headers, query, body), now),
                Err(WebhookError::Unauthorized),
                "{query:?}"
            );
        }
        let good = format!("token={TOKEN}&id=01JV7Q8M4X2K9T3N5R6B8C0D1E");
        let cases: [(&str, &[u8], &str); 8] = [
            (&good, b"{not json", "receipt_malformed"),
            (
                &good,
                br#"{"status":"SOMETHING"}"#,
                "receipt_unknown_status",
            ),
            (&good, br#"{"type":"sms"}"#, "receipt_malformed"),
            (&good, b"[]", "receipt_malformed"),
            (
                &good,
                br#"{"id":"01JV7Q8M4X2K9T3N5R6B8C0D1F","status":"DELIVERED"}"#,
                "receipt_id_mismatch",
            ),
            (&format!("token={TOKEN}&id=100500"), body, "receipt_bad_id"),
            // Another message's client id, and a bare number with no id in the URL.
            (
                &good,
                br#"{"id":100500,"status":"DELIVERED"}"#,
                "receipt_id_mismatch",
            ),
            (
                &format!("token={TOKEN}"),
                br#"{"id":100500,"status":"DELIVERED"}"#,
                "receipt_bad_id",
            ),
        ];
        for (query, body, code) in cases {
            let e = receipts
                .parse(&hook_request(&headers, Some(query), body), now)
                .expect_err("refused");
            assert_eq!(
                e.code(),
                code,
                "{query} {:?}",
                String::from_utf8_lossy(body)
            );
        }
        let no_id = format!("token={TOKEN}");
        let e = receipts
            .parse(&hook_request(&headers, Some(&no_id), body), now)
            .expect_err("refused");
        assert_eq!(e.code(), "receipt_malformed");
        // An empty configured token never matches.
        let open = AlphaSmsReceipts::new(Secret::new(""));
        assert_eq!(
            open.parse(&hook_request(&headers, Some("token=&id=x"), body), now),
            Err(WebhookError::Unauthorized)
        );
        assert!(matches!(
            parse::<HookBody>(br#"{"status":"READ"}"#),
            Ok(HookBody::One(_))
        ));
    }

    #[test]
    fn during_a_rotation_the_current_and_previous_tokens_are_taken() {
        const PREVIOUS: &str = "the-previous-hook-token-of-32-ch";
        const THIRD: &str = "a-third-token-nobody-was-given-x";
        let built = build_ok(
            serde_json::json!({"hook_url": "https://holub.example/v1/receipts/alpha"}),
            serde_json::json!({"api_key": "k", "hook_token": TOKEN, "previous_hook_token": PREVIOUS}),
        );
        let receipts = built.webhook.expect("pushed");
        let headers = reqwest::header::HeaderMap::new();
        let body = br#"{"status":"DELIVERED"}"#;
        let with = |token: &str| format!("token={token}&id=01JV7Q8M4X2K9T3N5R6B8C0D1E");
        for token in [TOKEN, PREVIOUS] {
            let query = with(token);
            let parsed = receipts.parse(&hook_request(&headers, Some(&query), body), Utc::now());
            assert!(parsed.is_ok(), "{token}: {parsed:?}");
        }
        for token in [THIRD, ""] {
            let query = with(token);
            assert_eq!(
                receipts.parse(&hook_request(&headers, Some(&query), body), Utc::now()),
                Err(WebhookError::Unauthorized),
                "{token}"
            );
        }
        // Only the current token goes out with messages.
        let hook = "https://holub.example/v1/receipts/alpha";
        let only_current = client(
            serde_json::json!({"hook_url": hook}),
            serde_json::json!({"api_key": "k", "hook_token": TOKEN, "previous_hook_token": PREVIOUS}),
        );
        assert_eq!(
            only_current.hook.as_ref().map(|h| h.token.expose()),
            Some(TOKEN)
        );
        // A short previous token, or one without a current, is refused at setup.
        for credentials in [
            serde_json::json!({"api_key": "k", "hook_token": TOKEN, "previous_hook_token": "short"}),
            serde_json::json!({"api_key": "k", "previous_hook_token": PREVIOUS}),
        ] {
            assert!(
                matches!(
                    build(
                        "alpha",
                        serde_json::json!({"hook_url": hook}),
                        &creds(credentials.clone())
                    ),
                    Err(ProviderSetupError::Credentials { .. })
                ),
                "{credentials}"
            );
        }
        let polled = build_ok(
            serde_json::Value::Null,
            serde_json::json!({"api_key": "k", "previous_hook_token": PREVIOUS}),
        );
        assert!(polled.webhook.is_none());
    }

    #[test]
    fn setup_takes_settings_and_credentials() {
        let polled = build_ok(serde_json::Value::Null, serde_json::json!({"api_key": "k"}));
        assert_eq!(polled.provider.name(), "alpha");
        assert_eq!(polled.provider.receipt_mode(), ReceiptMode::Poll);
        assert!(polled.webhook.is_none());
        let pushed = build_ok(
            serde_json::json!({
                "base_url": "http://127.0.0.1:9/",
                "hook_url": "https://holub.example/v1/receipts/alpha",
                "timeout_ms": 500,
                "batch_size": 10
            }),
            serde_json::json!({"api_key": "k", "hook_token": TOKEN}),
        );
        assert_eq!(pushed.provider.receipt_mode(), ReceiptMode::Push);
        assert!(pushed.webhook.is_some());
        assert!(
            pushed.provider.answers_status(),
            "overdue pushed receipts are asked for"
        );
    }

    #[test]
    fn the_factory_knows_the_kind() {
        assert!(super::super::KINDS.contains(&KIND));
        let built = super::super::build(
            KIND,
            "alpha",
            serde_json::json!({}),
            &creds(serde_json::json!({"api_key": "k"})),
        )
        .expect("built");
        assert_eq!(built.provider.name(), "alpha");
    }

    #[test]
    fn bad_setup_is_an_error_not_a_panic() {
        let key = serde_json::json!({"api_key": "k"});
        let bad_settings = [
            serde_json::json!([]),
            serde_json::json!("https://alphasms.net"),
            serde_json::json!({"base_url": "alphasms.net"}),
            serde_json::json!({"base_url": "ftp://alphasms.net"}),
            serde_json::json!({"base_url": 5}),
            serde_json::json!({"hook_url": "not a url"}),
            serde_json::json!({"hook_url": "https://h.example/r?token=x"}),
            serde_json::json!({"timeout_ms": 0}),
            serde_json::json!({"timeout_ms": 600000}),
            serde_json::json!({"batch_size": 0}),
            serde_json::json!({"batch_size": 5000}),
            serde_json::json!({"sender": "Holub"}),
        ];
        for settings in bad_settings {
            let shown = settings.to_string();
            assert!(
                matches!(
                    build("alpha", settings, &creds(key.clone())),
                    Err(ProviderSetupError::Settings { .. })
                ),
                "{shown}"
            );
        }
        let hook = serde_json::json!({"hook_url": "https://holub.example/r"});
        let bad_credentials = [
            (serde_json::json!({}), Secret::new("not json")),
            (serde_json::json!({}), Secret::new("")),
            (serde_json::json!({}), creds(serde_json::json!({}))),
            (
                serde_json::json!({}),
                creds(serde_json::json!({"api_key": ""})),
            ),
            (
                serde_json::json!({}),
                creds(serde_json::json!({"api_key": 5})),
            ),
            (
                serde_json::json!({}),
                creds(serde_json::json!({"token": "k"})),
            ),
            (hook.clone(), creds(key.clone())),
            (
                hook.clone(),
                creds(serde_json::json!({"api_key": "k", "hook_token": "short"})),
            ),
        ];
        for (settings, credentials) in bad_credentials {
            match build("alpha", settings, &credentials) {
                Err(ProviderSetupError::Credentials { message, .. }) => {
                    assert!(!message.contains("secret-value"), "{message}");
                }
                Err(e) => panic!("wrong error: {e}"),
                Ok(_) => panic!("accepted bad credentials"),
            }
        }
        // A wrongly typed secret is not echoed in the error.
        match build(
            "alpha",
            serde_json::json!({}),
            &creds(serde_json::json!({"api_key": ["secret-value"]})),
        ) {
            Err(ProviderSetupError::Credentials { message, .. }) => {
                assert!(!message.contains("secret-value"), "{message}");
            }
            _ => panic!("accepted bad credentials"),
        }
    }
}
