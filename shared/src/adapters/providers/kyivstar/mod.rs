//! Kyivstar Open Telecom ("Київстар Відкритий Телеком"): programmable SMS over Kyivstar's API
//! gateway.
//!
//! # Sources
//!
//! The official reference is `https://api-gateway.kyivstar.ua/#overview` (with its OpenAPI
//! document at `/api/public/openapi.yaml`); it could not be read from here, so everything
//! below comes from public clients that were written against it:
//!
//! - iamgoroot/kyivstar-opentelecom-go: `oauth.go` and `cfg.go` (token URL, server modes),
//!   `api/v1/sms/{client,models}.go` (paths and bodies), `internal/client/{httpx,errors,
//!   headers}.go` (`/rest/` prefix, error body, status handling, rate-limit headers),
//!   `internal/models/err.go` (error body), `test/local/handlers/sms.go` and
//!   `test/local/sms_test.go` (examples), `CLAUDE.md` (the SMS paths of the OpenAPI document);
//! - imsadhappy/laravel-kyivstar-api: `src/Services/AuthenticationService.php` (Basic auth,
//!   form body, `token_type`), `src/Services/JsonHttpService.php` (one retry with a fresh
//!   token on 401), `src/Dto/Sms.php` (`maxSegments` 1–6, `messageTtlSec` 0–86400),
//!   `README.md` (status vocabulary `accepted|delivered|seen`, servers mock/sandbox/production);
//! - MakarovIgor/kyivstar.sms.api.php.client: `src/KyivstarSmsClient.php` (error 1040 on the
//!   status query: "not delivered or message id does not exist"), `src/KyivstarAuth.php`;
//! - p4b-solutions/kyivstar-adwisor (`expires_in`, the OAuth error body, `messageTtlSec`).
//!
//! The examples are kept verbatim as fixtures under `fixtures/`; `SOURCES.md` there
//! says where each one came from.
//!
//! # The API as Holub uses it
//!
//! - **Token**: `POST {base}/idp/oauth2/token`, `Authorization: Basic base64(client_id:
//!   client_secret)`, form body `grant_type=client_credentials` → `{"access_token",
//!   "token_type":"Bearer","expires_in"}`. The token is cached until one minute (or a tenth
//!   of its lifetime, if shorter) before it expires; a `401` from the API drops it and the
//!   request is made once more with a fresh one. A token failure is never an unknown
//!   outcome: no message has left yet.
//! - **Send**: `POST {base}{mode}/rest/v1/sms` with `Authorization: Bearer <token>` and
//!   `{"from","to","text","messageTtlSec"[,"maxSegments"]}` → `200 {"reqId","msgId",
//!   "reservedSmsSegments"}`. `to` is the E.164 digits without `+`; `from` the registered
//!   alpha-name; `messageTtlSec` is Holub's validity, capped at 86 400 s.
//! - **Batch send** ([`SmsProvider::send_many`]): `POST …/rest/v1/sms/batch` with
//!   `{"data":{"<key>":{…as send…}}}` → `{"reqId","data":{"<key>":{"msgId",
//!   "reservedSmsSegments"} | {"errorCode","errorMsg"}}}`. Holub's message id is the key.
//! - **Status** ([`SmsProvider::status`]): `POST …/rest/v1/sms/status/batch` with
//!   `{"data":["<msgId>",…]}` → `{"reqId","data":{"<msgId>":{"msgId","status","date"}}}`
//!   (the one-message form is `GET …/rest/v1/sms/{msgId}`).
//! - **Errors**: a non-2xx answer with `{"reqId","errorCode","errorMsg"}`; `429` for the rate
//!   limit (with `X-Rate-Limit-Limit`, `-Period-Sec`, `-Remaining`, `-Reset` headers).
//!
//! `mode` picks the server: `live` (no prefix), `sandbox` (`/sandbox`), `mock` (`/mock`).
//!
//! # Receipts: polled
//!
//! Kyivstar does not push SMS delivery reports (no client or description shows a callback),
//! so [`SmsProvider::receipt_mode`] is [`ReceiptMode::Poll`], there is no webhook, and the
//! status query is polled. Kyivstar reports per message, not per part: each report is
//! returned for the whole message (`WHOLE_MESSAGE`), and Holub applies it to every part.
//!
//! | Kyivstar `status` | Holub | note |
//! | --- | --- | --- |
//! | `accepted` | `enroute` | documented |
//! | `delivered` | `delivered` | documented |
//! | `seen` | `delivered` | documented (read implies delivered) |
//! | `undelivered`, `failed` | `undelivered` | not in what could be read; recognised defensively |
//! | `expired` | `expired` | same |
//! | `rejected` | `rejected` | same |
//! | anything else | no news | logged, the message is polled again |
//! | error `1040`, or no entry | no news | "not delivered or id does not exist": ambiguous, so never read as final |
//!
//! # Errors
//!
//! No catalogue of `errorCode` values could be found (the codes in the Go client's tests are
//! its author's examples), so answers are mapped by HTTP status; `errorCode`, `errorMsg`
//! (long digit runs masked) and `reqId` go into the error message.
//!
//! | answer | Holub code | kind |
//! | --- | --- | --- |
//! | `400` | `provider_bad_request` | permanent |
//! | `401` (again after a fresh token) | `provider_unauthorized` | account |
//! | `403` | `provider_unauthorized` | account |
//! | `404`, other 4xx | `provider_bad_request` | permanent |
//! | `408` | `provider_timeout` | temporary |
//! | `413` (text longer than `maxSegments`) | `text_too_long` | permanent |
//! | `422` (content refused: number, sender or text, unsaid which) | `provider_rejected` | permanent |
//! | `429` | `provider_rate_limited` | temporary |
//! | 5xx | `provider_unavailable` | temporary |
//! | batch item with `errorCode` | `provider_rejected` | permanent |
//! | send answer not `200`+documented JSON, batch answer missing a key | `provider_bad_answer` | unknown |
//! | no connection | `provider_unreachable` | temporary |
//! | request sent, no answer (timeout, cut) | `provider_timeout` / `provider_unreachable` | unknown |
//! | token endpoint `400`/`401`/`403` | `provider_unauthorized` | account |
//! | token endpoint: anything else failing | its code above | temporary |
//!
//! *Account* errors (refused client credentials) stop every message, not one: the gateway
//! takes Kyivstar out of the route for a while and fails the message over.
//!
//! # What the sources do not say, and what Holub does
//!
//! - **Client-side id**: the single send takes none, and nothing says the batch keys are
//!   remembered across requests, so [`SmsProvider::lookup`] answers `lookup_unsupported`
//!   and a lost answer to a send cannot be resolved through Kyivstar.
//! - **Balance**: no balance endpoint is documented: `balance_unsupported` (the default).
//! - **Cost**: answers carry reserved segments, not money. With `price_per_segment` set the
//!   cost is segments × price; otherwise it is unknown.
//! - **Failure vocabulary** of the status query: only `accepted`, `delivered` and `seen` are
//!   described, plus error `1040`; see the status table.
//! - **Batch size limit**: not found; `batch_size` (default 100) splits larger batches.
//! - **`maxSegments`**: sent only when the `max_segments` setting is given (1–6).
//!
//! # Configuration
//!
//! Settings (all optional, unknown keys refused): `base_url` (default
//! `https://api-gateway.kyivstar.ua`), `mode` (`live` | `sandbox` | `mock`), `timeout_ms`
//! (per request, default [`http::REQUEST_TIMEOUT`]), `batch_size` (1–1000), `max_segments`
//! (1–6), `price_per_segment` (hryvnias, e.g. `"0.85"`).
//! Credentials: `{"client_id": "...", "client_secret": "..."}` from the API market
//! (api-market.kyivstar.ua).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, StatusCode, header};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::http::{self, codes};
use super::kit::{self, Setup};
use super::{Built, ProviderSetupError};
use crate::domain::Kopiyky;
use crate::domain::status::ReceiptState;
use crate::ports::provider::WHOLE_MESSAGE;
use crate::ports::{
    OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, Secret, SmsProvider, Submitted,
};

/// The kind string in the route table.
pub const KIND: &str = "kyivstar";
/// The public API gateway.
pub const DEFAULT_BASE_URL: &str = "https://api-gateway.kyivstar.ua";
/// The OAuth2 token endpoint, under the base URL (never under the mode prefix).
pub const TOKEN_PATH: &str = "/idp/oauth2/token";
/// Send one SMS; `{SMS_PATH}/{msgId}` is its status.
pub const SMS_PATH: &str = "/rest/v1/sms";
/// Send several SMS in one request.
pub const SMS_BATCH_PATH: &str = "/rest/v1/sms/batch";
/// The status of several SMS in one request.
pub const SMS_STATUS_BATCH_PATH: &str = "/rest/v1/sms/status/batch";
/// The longest `messageTtlSec` the API takes.
pub const MAX_TTL_SECONDS: u32 = 86_400;
/// The largest `maxSegments` the API takes.
pub const MAX_SEGMENTS: u8 = 6;
/// The status query's "not delivered, or no such message id".
pub const ERROR_NOT_DELIVERED_OR_UNKNOWN: i64 = 1040;

const DEFAULT_BATCH_SIZE: usize = 100;
/// Status batches in flight at once.
const MAX_CONCURRENT_STATUS: usize = 4;
const MAX_BATCH_SIZE: usize = 1000;
/// Assumed token lifetime when the token answer does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Most characters of a provider's error message kept in ours.
const MAX_ERROR_MESSAGE: usize = 200;

/// Holub's codes for the answers that `http` has no code for.
pub mod error_codes {
    use crate::domain::FailureCode;

    pub const TEXT_TOO_LONG: FailureCode = FailureCode::TextTooLong;
    pub const INVALID_MESSAGE: FailureCode = FailureCode::ProviderRejected;
    pub const REJECTED: FailureCode = FailureCode::ProviderRejected;
    pub const LOOKUP_UNSUPPORTED: FailureCode = FailureCode::LookupUnsupported;
}

pub mod wire;
pub use wire::*;

/// Every status word Holub reads, as the module documentation's table.
pub const STATUSES: &[(&str, ReceiptState)] = &[
    ("accepted", ReceiptState::Enroute),
    ("delivered", ReceiptState::Delivered),
    ("seen", ReceiptState::Delivered),
    // Not in the descriptions that could be read; recognised in case Kyivstar uses them.
    ("undelivered", ReceiptState::Undelivered),
    ("failed", ReceiptState::Undelivered),
    ("expired", ReceiptState::Expired),
    ("rejected", ReceiptState::Rejected),
];

/// Maps a status of the status query; `None` for a word Holub does not know.
pub fn receipt_state(status: &str) -> Option<ReceiptState> {
    let status = status.trim();
    STATUSES
        .iter()
        .find(|(word, _)| word.eq_ignore_ascii_case(status))
        .map(|&(_, state)| state)
}

// ---------------------------------------------------------------------------------------
// Settings and credentials
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Live,
    Sandbox,
    Mock,
}

impl Mode {
    fn prefix(self) -> &'static str {
        match self {
            Mode::Live => "",
            Mode::Sandbox => "/sandbox",
            Mode::Mock => "/mock",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    max_segments: Option<u8>,
    #[serde(default)]
    price_per_segment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    client_id: String,
    client_secret: String,
}

/// Makes the Kyivstar provider `name` from its settings and credentials (see the module
/// documentation for both).
pub fn build(
    name: &str,
    settings: serde_json::Value,
    credentials: &Secret,
) -> Result<Built, ProviderSetupError> {
    KyivstarClient::new(name, settings, credentials).map(Built::polled)
}

// ---------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------

/// Kyivstar Open Telecom's SMS API as a [`SmsProvider`].
#[derive(Debug)]
pub struct KyivstarClient {
    name: String,
    http: reqwest::Client,
    token_url: String,
    sms_url: String,
    batch_url: String,
    status_url: String,
    client_id: String,
    client_secret: Secret,
    timeout: Option<Duration>,
    batch_size: usize,
    max_segments: Option<u8>,
    price_per_segment: Option<Kopiyky>,
    token: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    value: Arc<str>,
    refresh_at: Instant,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("value", &"***")
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

impl KyivstarClient {
    /// See [`build`].
    pub fn new(
        name: &str,
        settings: serde_json::Value,
        credentials: &Secret,
    ) -> Result<Self, ProviderSetupError> {
        let setup = Setup::new(name);
        let settings: Settings = setup.settings(settings)?;
        let credentials: Credentials = setup.credentials(
            credentials,
            r#"a JSON object {"client_id": "...", "client_secret": "..."}"#,
        )?;
        let client_id = setup.required(&credentials.client_id, "client_id")?;
        let client_secret = setup.required(&credentials.client_secret, "client_secret")?;
        let base = setup.base_url(settings.base_url.as_deref(), DEFAULT_BASE_URL)?;
        let base = base.as_str().trim_end_matches('/');
        let timeout = setup.timeout(settings.timeout_ms, kit::MAX_TIMEOUT_MS)?;
        let batch_size = settings.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(setup.settings_error(format!("batch_size must be 1 to {MAX_BATCH_SIZE}")));
        }
        if let Some(max) = settings.max_segments
            && !(1..=MAX_SEGMENTS).contains(&max)
        {
            return Err(setup.settings_error(format!("max_segments must be 1 to {MAX_SEGMENTS}")));
        }
        let price_per_segment = match settings.price_per_segment.as_deref() {
            None => None,
            Some(raw) => match Kopiyky::parse_hryvnias(raw) {
                Ok(price) if price.0 >= 0 => Some(price),
                Ok(_) => {
                    return Err(setup.settings_error("price_per_segment must not be negative"));
                }
                Err(e) => return Err(setup.settings_error(format!("price_per_segment: {e}"))),
            },
        };
        let api = format!("{base}{}", settings.mode.prefix());
        Ok(KyivstarClient {
            name: name.to_owned(),
            http: http::client(),
            token_url: format!("{base}{TOKEN_PATH}"),
            sms_url: format!("{api}{SMS_PATH}"),
            batch_url: format!("{api}{SMS_BATCH_PATH}"),
            status_url: format!("{api}{SMS_STATUS_BATCH_PATH}"),
            client_id: client_id.expose().to_owned(),
            client_secret,
            timeout,
            batch_size,
            max_segments: settings.max_segments,
            price_per_segment,
            token: Mutex::new(None),
        })
    }

    /// The body of a send for `sms`, or the refusal Kyivstar would answer (413) if its
    /// text has more parts than `maxSegments` (the route's, else the API's [`MAX_SEGMENTS`]):
    /// refused here, before anything is sent or paid for.
    pub fn request_for(&self, sms: &OutboundSms) -> Result<SendRequest, ProviderError> {
        let limit = self.max_segments.unwrap_or(MAX_SEGMENTS);
        if sms.segments > u16::from(limit) {
            return Err(ProviderError::permanent(
                error_codes::TEXT_TOO_LONG,
                format!(
                    "{}: the text has {} parts, Kyivstar takes at most {limit}",
                    self.name, sms.segments
                ),
            ));
        }
        Ok(send_request(sms, self.max_segments))
    }

    fn with_timeout(&self, request: RequestBuilder) -> RequestBuilder {
        match self.timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        }
    }

    /// A valid token: the cached one, or a fresh one if there is none, it is about to
    /// expire, or it is `rejected` (the one a 401 came back for).
    async fn token(&self, rejected: Option<&str>) -> Result<Arc<str>, ProviderError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref() {
            let was_rejected = rejected.is_some_and(|r| r == &*token.value);
            if !was_rejected && Instant::now() < token.refresh_at {
                return Ok(Arc::clone(&token.value));
            }
        }
        *cached = None;
        let fresh = self.fetch_token().await?;
        let value = Arc::clone(&fresh.value);
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<CachedToken, ProviderError> {
        let request = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .header(header::ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials")]);
        let started = Instant::now();
        let response = self
            .with_timeout(request)
            .send()
            .await
            .map_err(|e| temporary(http::transport_error(&self.name, &e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| temporary(http::transport_error(&self.name, &e)))?;
        if status != StatusCode::OK {
            return Err(token_status_error(&self.name, status));
        }
        let answer: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            temporary(http::bad_answer(
                &self.name,
                "the token answer is not the documented JSON",
            ))
        })?;
        token_from_answer(&self.name, answer, started)
    }

    /// Sends a request built by `build` with a token; on a 401, once more with a fresh one.
    async fn execute(
        &self,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let token = self.token(None).await?;
        let (status, body) = self.attempt(build(&token)).await?;
        if status != StatusCode::UNAUTHORIZED {
            return Ok((status, body));
        }
        tracing::info!(provider = %self.name, "kyivstar: token refused; fetching a new one");
        let fresh = self.token(Some(&token)).await?;
        self.attempt(build(&fresh)).await
    }

    async fn attempt(
        &self,
        request: RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), ProviderError> {
        let response = self
            .with_timeout(request)
            .send()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| http::transport_error(&self.name, &e))?;
        Ok((status, body.to_vec()))
    }

    async fn send_chunk(&self, chunk: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        let prepared: Vec<_> = chunk.iter().map(|sms| self.request_for(sms)).collect();
        let data: BTreeMap<String, SendRequest> = chunk
            .iter()
            .zip(&prepared)
            .filter_map(|(sms, body)| Some((sms.id.to_string(), body.clone().ok()?)))
            .collect();
        if data.is_empty() {
            return prepared
                .into_iter()
                .filter_map(Result::err)
                .map(Err)
                .collect();
        }
        let body = BatchSendRequest { data };
        tracing::debug!(provider = %self.name, count = chunk.len(), "kyivstar: batch send");
        let answer = self
            .execute(|token| {
                self.http
                    .post(&self.batch_url)
                    .bearer_auth(token)
                    .json(&body)
            })
            .await;
        let parsed = answer.and_then(|(status, bytes)| {
            parse_batch_answer(&self.name, status, &bytes, self.price_per_segment)
        });
        match parsed {
            Ok(results) => chunk
                .iter()
                .zip(prepared)
                .map(|(sms, body)| {
                    body?;
                    results
                        .get(&sms.id.to_string())
                        .cloned()
                        .unwrap_or_else(|| {
                            Err(http::bad_answer(
                                &self.name,
                                "the batch answer has no result for a message it was sent",
                            ))
                        })
                })
                .collect(),
            Err(e) => prepared
                .into_iter()
                .map(|body| Err(body.err().unwrap_or_else(|| e.clone())))
                .collect(),
        }
    }

    async fn status_chunk(&self, ids: &[String]) -> Result<Vec<ProviderReceipt>, ProviderError> {
        let body = StatusBatchRequest { data: ids.to_vec() };
        let (status, bytes) = self
            .execute(|token| {
                self.http
                    .post(&self.status_url)
                    .bearer_auth(token)
                    .json(&body)
            })
            .await?;
        parse_status_answer(&self.name, status, &bytes, ids, Utc::now())
    }
}

fn temporary(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Unknown { code, message } => ProviderError::Temporary { code, message },
        other => other,
    }
}

/// The token endpoint refused: bad credentials stop the account until the secret is fixed,
/// the rest may pass.
fn token_status_error(name: &str, status: StatusCode) -> ProviderError {
    let message = format!(
        "{name}: the token endpoint answered HTTP {}",
        status.as_u16()
    );
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::warn!(
                provider = name,
                status = status.as_u16(),
                "kyivstar: client credentials refused"
            );
            ProviderError::account(
                codes::UNAUTHORIZED,
                format!("{message}: check client_id and client_secret"),
            )
        }
        other => temporary(http::status_error(name, other)),
    }
}

fn token_from_answer(
    name: &str,
    answer: TokenResponse,
    requested_at: Instant,
) -> Result<CachedToken, ProviderError> {
    let bearer = answer
        .token_type
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
    if answer.access_token.trim().is_empty() || !bearer {
        return Err(temporary(http::bad_answer(
            name,
            "the token answer has no bearer access_token",
        )));
    }
    let lifetime = answer
        .expires_in
        .as_ref()
        .and_then(Seconds::get)
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    let margin = TOKEN_MARGIN.min(lifetime / 10);
    Ok(CachedToken {
        value: answer.access_token.trim().into(),
        refresh_at: requested_at + lifetime - margin,
    })
}

/// The send body for `sms`: digits without `+`, the alpha-name, Holub's validity capped at
/// the API's maximum.
pub fn send_request(sms: &OutboundSms, max_segments: Option<u8>) -> SendRequest {
    let from = kit::sender(&sms.from);
    SendRequest {
        from,
        to: sms.to.digits().to_owned(),
        text: sms.text.clone(),
        max_segments,
        message_ttl_sec: Some(sms.validity_seconds.min(MAX_TTL_SECONDS)),
    }
}

fn cost(segments: Option<u32>, price: Option<Kopiyky>) -> Option<Kopiyky> {
    price?.checked_mul(i64::from(segments?))
}

/// Reads the answer to a single send.
pub fn parse_send_answer(
    name: &str,
    status: StatusCode,
    body: &[u8],
    price_per_segment: Option<Kopiyky>,
) -> Result<Submitted, ProviderError> {
    if status != StatusCode::OK {
        return Err(error_answer(name, status, body));
    }
    let answer: SendResponse = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(name, "the send answer is not the documented JSON"))?;
    if answer.msg_id.trim().is_empty() {
        return Err(http::bad_answer(name, "the send answer has an empty msgId"));
    }
    Ok(Submitted {
        cost: cost(answer.reserved_sms_segments, price_per_segment),
        provider_message_id: answer.msg_id,
    })
}

/// Reads the answer to a batch send into one result per key.
pub fn parse_batch_answer(
    name: &str,
    status: StatusCode,
    body: &[u8],
    price_per_segment: Option<Kopiyky>,
) -> Result<HashMap<String, Result<Submitted, ProviderError>>, ProviderError> {
    if status != StatusCode::OK {
        return Err(error_answer(name, status, body));
    }
    let answer: BatchSendResponse = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(name, "the batch answer is not the documented JSON"))?;
    Ok(answer
        .data
        .into_iter()
        .map(|(key, item)| {
            let result = match (item.msg_id, &item.error_code) {
                (Some(msg_id), None) if !msg_id.trim().is_empty() => Ok(Submitted {
                    cost: cost(item.reserved_sms_segments, price_per_segment),
                    provider_message_id: msg_id,
                }),
                (_, Some(code)) => {
                    tracing::warn!(provider = name, error_code = %code, "kyivstar: batch item refused");
                    Err(ProviderError::permanent(
                        error_codes::REJECTED,
                        format!(
                            "{name} refused the message (errorCode {code}): {}",
                            scrub(item.error_msg.as_deref().unwrap_or("-"))
                        ),
                    ))
                }
                _ => Err(http::bad_answer(
                    name,
                    "a batch item has neither a msgId nor an errorCode",
                )),
            };
            (key, result)
        })
        .collect())
}

/// Reads the answer to a status query for `ids`; `now` stands in for a missing date.
pub fn parse_status_answer(
    name: &str,
    status: StatusCode,
    body: &[u8],
    ids: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<ProviderReceipt>, ProviderError> {
    if status == StatusCode::NOT_FOUND
        && let Ok(error) = serde_json::from_slice::<ErrorBody>(body)
        && error.error_code.as_ref().and_then(ErrorCode::as_number)
            == Some(ERROR_NOT_DELIVERED_OR_UNKNOWN)
    {
        // None of them is known (or delivered): no news.
        return Ok(Vec::new());
    }
    if status != StatusCode::OK {
        return Err(error_answer(name, status, body));
    }
    let answer: StatusBatchResponse = serde_json::from_slice(body)
        .map_err(|_| http::bad_answer(name, "the status answer is not the documented JSON"))?;
    let mut receipts = Vec::new();
    for id in ids {
        let Some(item) = answer.data.get(id) else {
            continue;
        };
        let Some(word) = item.status.as_deref() else {
            continue;
        };
        let Some(state) = receipt_state(word) else {
            tracing::warn!(
                provider = name,
                status = word,
                "kyivstar: unknown status; no news"
            );
            continue;
        };
        receipts.push(ProviderReceipt {
            provider_message_id: id.clone(),
            // Statuses are per message, not per part.
            part: WHOLE_MESSAGE,
            state,
            at: item.date.as_deref().and_then(parse_date).unwrap_or(now),
        });
    }
    Ok(receipts)
}

fn parse_date(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// An error answer (any status but the documented success), mapped as the module's table
/// says.
pub fn error_answer(name: &str, status: StatusCode, body: &[u8]) -> ProviderError {
    let detail = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => {
            let code = error
                .error_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string());
            let req = error.req_id.unwrap_or_else(|| "-".to_owned());
            let msg = scrub(error.error_msg.as_deref().unwrap_or("-"));
            format!(" (errorCode {code}, reqId {req}): {msg}")
        }
        Err(_) => String::new(),
    };
    let message = |what: &str| format!("{name} {what}, HTTP {}{detail}", status.as_u16());
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(provider = name, status = 413, "kyivstar: text too long");
            ProviderError::permanent(
                error_codes::TEXT_TOO_LONG,
                message("refused the text as too long"),
            )
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            tracing::warn!(provider = name, status = 422, "kyivstar: message refused");
            ProviderError::permanent(error_codes::INVALID_MESSAGE, message("refused the message"))
        }
        other => match http::status_error(name, other) {
            ProviderError::Temporary { code, .. } => ProviderError::Temporary {
                code,
                message: message("could not take the request"),
            },
            ProviderError::Permanent { code, .. } => ProviderError::Permanent {
                code,
                message: message("refused the request"),
            },
            ProviderError::Account { code, .. } => ProviderError::Account {
                code,
                message: message("refused the account's credentials"),
            },
            ProviderError::Unknown { code, .. } => ProviderError::Unknown {
                code,
                message: message("gave an undocumented answer"),
            },
        },
    }
}

/// A provider message for our logs and records: runs of 7+ digits (a phone number, say)
/// masked, and cut short.
fn scrub(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_ERROR_MESSAGE));
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 7 {
            out.push_str("<number>");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in message.chars().take(MAX_ERROR_MESSAGE) {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[async_trait]
impl SmsProvider for KyivstarClient {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
        let body = self.request_for(sms)?;
        tracing::debug!(
            provider = %self.name,
            id = %sms.id,
            to = %sms.to.masked(),
            segments = sms.segments,
            "kyivstar: send"
        );
        let (status, bytes) = self
            .execute(|token| self.http.post(&self.sms_url).bearer_auth(token).json(&body))
            .await?;
        parse_send_answer(&self.name, status, &bytes, self.price_per_segment)
    }

    async fn send_many(&self, batch: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        if let [single] = batch {
            return vec![self.send(single).await];
        }
        let chunks = batch.chunks(self.batch_size).map(|c| self.send_chunk(c));
        futures::future::join_all(chunks)
            .await
            .into_iter()
            .flatten()
            .collect()
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
            self.batch_size,
            MAX_CONCURRENT_STATUS,
            |chunk| self.status_chunk(chunk),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageId, SenderId};

    const SEND_REQUEST: &str = include_str!("fixtures/send_request.json");
    const SEND_RESPONSE: &str = include_str!("fixtures/send_response.json");
    const CHECK_RESPONSE: &str = include_str!("fixtures/check_response.json");
    const BATCH_SEND_REQUEST: &str = include_str!("fixtures/batch_send_request.json");
    const BATCH_SEND_RESPONSE: &str = include_str!("fixtures/batch_send_response.json");
    const STATUS_BATCH_REQUEST: &str = include_str!("fixtures/status_batch_request.json");
    const STATUS_BATCH_RESPONSE: &str = include_str!("fixtures/status_batch_response.json");
    const ERROR_BAD_REQUEST: &str = include_str!("fixtures/error_bad_request.json");
    const ERROR_NOT_FOUND: &str = include_str!("fixtures/error_not_found.json");
    const ERROR_UNAUTHORIZED: &str = include_str!("fixtures/error_unauthorized.json");
    const ERROR_SERVER: &str = include_str!("fixtures/error_server.json");
    const ERROR_NOT_DELIVERED: &str = include_str!("fixtures/error_not_delivered.json");
    const TOKEN_RESPONSE: &str = include_str!("fixtures/token_response.json");

    const MSG_ID: &str = "20200000-0000-0000-0000-380670000200";

    fn credentials() -> Secret {
        Secret::new(r#"{"client_id":"id-1","client_secret":"s3cr3t-value"}"#)
    }

    fn client(settings: serde_json::Value) -> KyivstarClient {
        KyivstarClient::new("ks", settings, &credentials()).expect("valid setup")
    }

    fn sms(text: &str) -> OutboundSms {
        kit::testing::outbound("380670000200", "messagedesk", text, 3600)
    }

    fn kind(e: &ProviderError) -> &'static str {
        match e {
            ProviderError::Temporary { .. } => "temporary",
            ProviderError::Permanent { .. } => "permanent",
            ProviderError::Account { .. } => "account",
            ProviderError::Unknown { .. } => "unknown",
        }
    }

    #[test]
    fn the_send_body_serializes_like_the_documented_example() {
        let documented = SendRequest {
            from: "messagedesk".into(),
            to: "380670000200".into(),
            text: "Hello World!".into(),
            max_segments: None,
            message_ttl_sec: None,
        };
        assert_eq!(
            serde_json::to_string(&documented).unwrap(),
            SEND_REQUEST.trim()
        );
        let parsed: SendRequest = serde_json::from_str(SEND_REQUEST).unwrap();
        assert_eq!(parsed, documented);
    }

    #[test]
    fn a_holub_message_becomes_the_documented_body_plus_its_validity() {
        let body = client(serde_json::json!({}))
            .request_for(&sms("Hello World!"))
            .unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(SEND_REQUEST).unwrap();
        expected["messageTtlSec"] = serde_json::json!(3600);
        assert_eq!(serde_json::to_value(&body).unwrap(), expected);

        let mut long = sms("x");
        long.validity_seconds = 3 * 86_400;
        let capped = client(serde_json::json!({"max_segments": 3}))
            .request_for(&long)
            .unwrap();
        assert_eq!(capped.message_ttl_sec, Some(MAX_TTL_SECONDS));
        assert_eq!(capped.max_segments, Some(3));
        assert_eq!(
            serde_json::to_string(&capped).unwrap(),
            r#"{"from":"messagedesk","to":"380670000200","text":"x","maxSegments":3,"messageTtlSec":86400}"#
        );
    }

    #[test]
    fn a_phone_sender_goes_as_digits() {
        let mut message = sms("hi");
        message.from = SenderId::parse("+380671234567").unwrap();
        assert_eq!(send_request(&message, None).from, "380671234567");
    }

    #[test]
    fn the_batch_bodies_serialize_like_the_documented_examples() {
        let item = |to: &str, text: &str| SendRequest {
            from: "messagedesk".into(),
            to: to.into(),
            text: text.into(),
            max_segments: None,
            message_ttl_sec: None,
        };
        let batch = BatchSendRequest {
            data: BTreeMap::from([
                (
                    "uniqueMsgKey1".to_owned(),
                    item("380670000200", "Hello World!"),
                ),
                (
                    "uniqueMsgKey2".to_owned(),
                    item("380670000201", "Hello again!"),
                ),
            ]),
        };
        assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            BATCH_SEND_REQUEST.trim()
        );
        let status = StatusBatchRequest {
            data: vec![MSG_ID.to_owned()],
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            STATUS_BATCH_REQUEST.trim()
        );
    }

    #[test]
    fn the_documented_send_answer_is_an_accepted_message() {
        let parsed: SendResponse = serde_json::from_str(SEND_RESPONSE).unwrap();
        assert_eq!(parsed.msg_id, MSG_ID);
        assert_eq!(parsed.reserved_sms_segments, Some(1));
        assert_eq!(
            parsed.req_id.as_deref(),
            Some("ad30594292f7959683a410bf1add088e")
        );
        let submitted =
            parse_send_answer("ks", StatusCode::OK, SEND_RESPONSE.as_bytes(), None).unwrap();
        assert_eq!(submitted.provider_message_id, MSG_ID);
        assert_eq!(submitted.cost, None);
        let priced = parse_send_answer(
            "ks",
            StatusCode::OK,
            SEND_RESPONSE.as_bytes(),
            Some(Kopiyky(85)),
        )
        .unwrap();
        assert_eq!(priced.cost, Some(Kopiyky(85)));
    }

    #[test]
    fn an_unreadable_or_undocumented_send_answer_is_an_unknown_outcome() {
        for (status, body) in [
            (StatusCode::OK, "<html>oops</html>"),
            (StatusCode::OK, r#"{"reqId":"x"}"#),
            (StatusCode::OK, r#"{"msgId":""}"#),
            (StatusCode::CREATED, SEND_RESPONSE),
            (StatusCode::MOVED_PERMANENTLY, ""),
        ] {
            let e = parse_send_answer("ks", status, body.as_bytes(), None).unwrap_err();
            assert!(e.is_unknown(), "{status} {body}: {e:?}");
            assert_eq!(e.code(), codes::BAD_ANSWER);
        }
    }

    #[test]
    fn the_documented_check_answer_maps_to_delivered() {
        let parsed: CheckResponse = serde_json::from_str(CHECK_RESPONSE).unwrap();
        assert_eq!(parsed.msg_id, MSG_ID);
        assert_eq!(receipt_state(&parsed.status), Some(ReceiptState::Delivered));
        assert_eq!(
            parsed.date.as_deref().and_then(parse_date),
            Some(
                DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
                    .unwrap()
                    .to_utc()
            )
        );
    }

    #[test]
    fn the_documented_batch_answer_gives_one_result_per_key() {
        let parsed: BatchSendResponse = serde_json::from_str(BATCH_SEND_RESPONSE).unwrap();
        assert_eq!(parsed.data.len(), 2);
        let results = parse_batch_answer(
            "ks",
            StatusCode::OK,
            BATCH_SEND_RESPONSE.as_bytes(),
            Some(Kopiyky(100)),
        )
        .unwrap();
        let first = results["uniqueMsgKey1"].as_ref().unwrap();
        assert_eq!(first.provider_message_id, MSG_ID);
        assert_eq!(first.cost, Some(Kopiyky(100)));
        assert_eq!(
            results["uniqueMsgKey2"]
                .as_ref()
                .unwrap()
                .provider_message_id,
            "20200000-0000-0000-0000-380670000201"
        );
    }

    #[test]
    fn a_refused_batch_item_is_permanent_and_an_empty_one_unknown() {
        let body = r#"{"reqId":"r","data":{
            "a":{"errorCode":"40001","errorMsg":"Invalid phone number 380670000200"},
            "b":{"errorCode":42201,"errorMsg":"bad"},
            "c":{}}}"#;
        let results = parse_batch_answer("ks", StatusCode::OK, body.as_bytes(), None).unwrap();
        let a = results["a"].as_ref().unwrap_err();
        assert_eq!((kind(a), a.code()), ("permanent", error_codes::REJECTED));
        assert!(a.message().contains("errorCode 40001"), "{a}");
        assert!(!a.message().contains("380670000200"), "{a}");
        assert_eq!(kind(results["b"].as_ref().unwrap_err()), "permanent");
        assert!(results["c"].as_ref().unwrap_err().is_unknown());
    }

    #[test]
    fn the_documented_status_answer_maps_to_receipts() {
        let parsed: StatusBatchResponse = serde_json::from_str(STATUS_BATCH_RESPONSE).unwrap();
        assert_eq!(parsed.data[MSG_ID].status.as_deref(), Some("delivered"));
        let now = Utc::now();
        let receipts = parse_status_answer(
            "ks",
            StatusCode::OK,
            STATUS_BATCH_RESPONSE.as_bytes(),
            &[MSG_ID.to_owned(), "unknown-id".to_owned()],
            now,
        )
        .unwrap();
        assert_eq!(
            receipts,
            vec![ProviderReceipt {
                provider_message_id: MSG_ID.to_owned(),
                part: WHOLE_MESSAGE,
                state: ReceiptState::Delivered,
                at: DateTime::parse_from_rfc3339("2025-01-01T12:00:00.000Z")
                    .unwrap()
                    .to_utc(),
            }]
        );
    }

    #[test]
    fn every_status_maps_as_the_table_says() {
        for &(word, state) in STATUSES {
            assert_eq!(receipt_state(word), Some(state), "{word}");
            assert_eq!(receipt_state(&word.to_uppercase()), Some(state), "{word}");
        }
        // The documented table lists the same words with the same states.
        let mut documented = 0;
        for row in kit::doc_table(include_str!("mod.rs"), "Kyivstar status") {
            if row[1] == "no news" {
                continue;
            }
            for word in row[0].split(", ") {
                let state = format!("{:?}", receipt_state(word).unwrap()).to_lowercase();
                assert_eq!(state, row[1], "{word}");
                documented += 1;
            }
        }
        assert_eq!(documented, STATUSES.len());
        for word in ["sent", ""] {
            assert_eq!(receipt_state(word), None, "{word:?}");
        }
    }

    #[test]
    fn unknown_statuses_and_error_1040_are_no_news() {
        let now = Utc::now();
        let body = r#"{"reqId":"r","data":{
            "a":{"msgId":"a","status":"queued-somewhere"},
            "b":{"msgId":"b","errorCode":1040},
            "c":{"msgId":"c","status":"accepted"}}}"#;
        let ids = ["a", "b", "c"].map(String::from);
        let receipts =
            parse_status_answer("ks", StatusCode::OK, body.as_bytes(), &ids, now).unwrap();
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].provider_message_id, "c");
        assert_eq!(receipts[0].state, ReceiptState::Enroute);
        assert_eq!(receipts[0].at, now);

        let error: ErrorBody = serde_json::from_str(ERROR_NOT_DELIVERED).unwrap();
        assert_eq!(
            error.error_code.as_ref().and_then(ErrorCode::as_number),
            Some(ERROR_NOT_DELIVERED_OR_UNKNOWN)
        );
        let none = parse_status_answer(
            "ks",
            StatusCode::NOT_FOUND,
            ERROR_NOT_DELIVERED.as_bytes(),
            &ids,
            now,
        )
        .unwrap();
        assert!(none.is_empty());
        // Any other 404 is a misconfiguration, not news.
        let e = parse_status_answer(
            "ks",
            StatusCode::NOT_FOUND,
            ERROR_NOT_FOUND.as_bytes(),
            &ids,
            now,
        )
        .unwrap_err();
        assert_eq!(kind(&e), "permanent");
    }

    #[test]
    fn the_documented_error_bodies_parse() {
        for (body, code, msg) in [
            (ERROR_BAD_REQUEST, 40001, "Invalid phone number format"),
            (ERROR_NOT_FOUND, 40401, "Message not found"),
            (ERROR_UNAUTHORIZED, 40101, "Invalid credentials"),
            (ERROR_SERVER, 50001, "Internal server error"),
        ] {
            let parsed: ErrorBody = serde_json::from_str(body).unwrap();
            assert_eq!(parsed.req_id.as_deref(), Some("err-req-id"));
            assert_eq!(parsed.error_code, Some(ErrorCode::Number(code)));
            assert_eq!(parsed.error_msg.as_deref(), Some(msg));
        }
    }

    #[test]
    fn every_error_answer_maps_as_the_table_says() {
        let cases = [
            (400, ERROR_BAD_REQUEST, "permanent", codes::BAD_REQUEST),
            (401, ERROR_UNAUTHORIZED, "account", codes::UNAUTHORIZED),
            (403, "", "account", codes::UNAUTHORIZED),
            (404, ERROR_NOT_FOUND, "permanent", codes::BAD_REQUEST),
            (408, "", "temporary", codes::TIMEOUT),
            (413, "", "permanent", error_codes::TEXT_TOO_LONG),
            (
                422,
                ERROR_BAD_REQUEST,
                "permanent",
                error_codes::INVALID_MESSAGE,
            ),
            (429, "", "temporary", codes::RATE_LIMITED),
            (500, ERROR_SERVER, "temporary", codes::UNAVAILABLE),
            (502, "<html>", "temporary", codes::UNAVAILABLE),
            (503, "", "temporary", codes::UNAVAILABLE),
            (302, "", "unknown", codes::BAD_ANSWER),
        ];
        for (status, body, want_kind, want_code) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            let e = error_answer("ks", status, body.as_bytes());
            assert_eq!((kind(&e), e.code()), (want_kind, want_code), "{status}");
            let again = parse_send_answer("ks", status, body.as_bytes(), None).unwrap_err();
            assert_eq!(again, e);
        }
        let e = error_answer("ks", StatusCode::BAD_REQUEST, ERROR_BAD_REQUEST.as_bytes());
        assert!(
            e.message().contains("errorCode 40001")
                && e.message().contains("reqId err-req-id")
                && e.message().contains("Invalid phone number format"),
            "{e}"
        );
    }

    #[test]
    fn the_token_endpoint_errors_are_never_unknown() {
        for (status, want) in [
            (400, "account"),
            (401, "account"),
            (403, "account"),
            (429, "temporary"),
            (500, "temporary"),
            (302, "temporary"),
        ] {
            let e = token_status_error("ks", StatusCode::from_u16(status).unwrap());
            assert_eq!(kind(&e), want, "{status}");
        }
    }

    #[test]
    fn the_token_answer_sets_the_refresh_time() {
        let answer: TokenResponse = serde_json::from_str(TOKEN_RESPONSE).unwrap();
        assert_eq!(answer.expires_in, Some(Seconds::Number(28_800)));
        assert!(!format!("{answer:?}").contains("eyJ"));
        let at = Instant::now();
        let token = token_from_answer("ks", answer, at).unwrap();
        assert_eq!(token.refresh_at, at + Duration::from_secs(28_800 - 60));

        let short: TokenResponse =
            serde_json::from_str(r#"{"access_token":"t","expires_in":"100"}"#).unwrap();
        let token = token_from_answer("ks", short, at).unwrap();
        assert_eq!(token.refresh_at, at + Duration::from_secs(90));

        let unknown: TokenResponse = serde_json::from_str(r#"{"access_token":"t"}"#).unwrap();
        let token = token_from_answer("ks", unknown, at).unwrap();
        assert_eq!(token.refresh_at, at + DEFAULT_TOKEN_LIFETIME - TOKEN_MARGIN);

        for bad in [
            r#"{"access_token":" "}"#,
            r#"{"access_token":"t","token_type":"mac"}"#,
        ] {
            let answer: TokenResponse = serde_json::from_str(bad).unwrap();
            let e = token_from_answer("ks", answer, at).err().unwrap();
            assert_eq!(kind(&e), "temporary", "{bad}");
        }
    }

    #[test]
    fn build_gives_a_polled_provider_with_no_webhook() {
        let built = build("kyivstar-main", serde_json::Value::Null, &credentials()).unwrap();
        assert_eq!(built.provider.name(), "kyivstar-main");
        assert_eq!(built.provider.receipt_mode(), ReceiptMode::Poll);
        assert!(built.webhook.is_none());

        let c = client(serde_json::json!({}));
        assert_eq!(
            c.token_url,
            "https://api-gateway.kyivstar.ua/idp/oauth2/token"
        );
        assert_eq!(c.sms_url, "https://api-gateway.kyivstar.ua/rest/v1/sms");
        let sandbox = client(serde_json::json!({
            "base_url": "http://127.0.0.1:8080/", "mode": "sandbox", "timeout_ms": 500,
            "batch_size": 10, "max_segments": 6, "price_per_segment": "0.85"
        }));
        assert_eq!(sandbox.token_url, "http://127.0.0.1:8080/idp/oauth2/token");
        assert_eq!(
            sandbox.status_url,
            "http://127.0.0.1:8080/sandbox/rest/v1/sms/status/batch"
        );
        assert_eq!(sandbox.timeout, Some(Duration::from_millis(500)));
        assert_eq!(sandbox.price_per_segment, Some(Kopiyky(85)));
        let mock = client(serde_json::json!({"mode": "mock"}));
        assert_eq!(
            mock.batch_url,
            "https://api-gateway.kyivstar.ua/mock/rest/v1/sms/batch"
        );
    }

    #[tokio::test]
    async fn each_documented_limit_holds_at_its_bounds() {
        let with = |segments: u16, validity_seconds: u32| {
            let mut m = sms("x");
            m.segments = segments;
            m.validity_seconds = validity_seconds;
            m
        };
        // maxSegments: the route's (1 to 6), else the API's 6; one part more is refused
        // before sending, in a single send and in a batch alike.
        for (settings, limit) in [
            (serde_json::json!({}), MAX_SEGMENTS),
            (serde_json::json!({"max_segments": 1}), 1),
            (serde_json::json!({"max_segments": 6}), 6),
        ] {
            let c = client(settings);
            assert!(c.request_for(&with(u16::from(limit), 60)).is_ok());
            let e = c.request_for(&with(u16::from(limit) + 1, 60)).unwrap_err();
            assert_eq!(
                (kind(&e), e.code()),
                ("permanent", error_codes::TEXT_TOO_LONG)
            );
            let too_long = with(u16::from(limit) + 1, 60);
            let refused = c.send_many(&[too_long.clone(), too_long]).await;
            assert!(
                refused
                    .iter()
                    .all(|r| r.as_ref().unwrap_err().code() == error_codes::TEXT_TOO_LONG)
            );
        }
        // messageTtlSec: 0 to 86,400; a longer validity is capped.
        for (validity, ttl) in [(0, 0), (86_400, 86_400), (86_401, MAX_TTL_SECONDS)] {
            let body = client(serde_json::json!({}))
                .request_for(&with(1, validity))
                .unwrap();
            assert_eq!(body.message_ttl_sec, Some(ttl), "{validity}");
        }
    }

    #[test]
    fn the_kind_is_registered() {
        assert!(super::super::KINDS.contains(&KIND));
        let built = super::super::build(KIND, "ks", serde_json::json!({}), &credentials())
            .expect("registered");
        assert_eq!(built.provider.name(), "ks");
    }

    #[test]
    fn bad_settings_are_setup_errors() {
        for settings in [
            serde_json::json!({"base_url": "not a url"}),
            serde_json::json!({"base_url": "ftp://example.com"}),
            serde_json::json!({"base_url": "https://example.com/?a=b"}),
            serde_json::json!({"mode": "production"}),
            serde_json::json!({"timeout_ms": 0}),
            serde_json::json!({"batch_size": 0}),
            serde_json::json!({"batch_size": 5000}),
            serde_json::json!({"max_segments": 7}),
            serde_json::json!({"max_segments": 0}),
            serde_json::json!({"price_per_segment": "0.855"}),
            serde_json::json!({"price_per_segment": "-1"}),
            serde_json::json!({"token": "x"}),
            serde_json::json!(["base_url"]),
            serde_json::json!("https://api-gateway.kyivstar.ua"),
        ] {
            let e = build("ks", settings.clone(), &credentials()).err();
            assert!(
                matches!(e, Some(ProviderSetupError::Settings { .. })),
                "{settings}: {e:?}"
            );
        }
    }

    #[test]
    fn bad_credentials_are_setup_errors_that_never_quote_the_secret() {
        for raw in [
            "",
            "not json",
            r#""s3cr3t-plain-token""#,
            r#"{"client_id":"id"}"#,
            r#"{"client_id":"id","client_secret":"s3cr3t-x","token":"s3cr3t-y"}"#,
            r#"{"client_id":"","client_secret":"s3cr3t-x"}"#,
            r#"{"client_id":"id","client_secret":""}"#,
            r#"{"client_id":5,"client_secret":"s3cr3t-x"}"#,
        ] {
            let e = build("ks", serde_json::json!({}), &Secret::new(raw)).err();
            match e {
                Some(ProviderSetupError::Credentials { message, .. }) => {
                    assert!(!message.contains("s3cr3t"), "{raw}: {message}");
                }
                other => panic!("{raw}: {other:?}"),
            }
        }
    }

    #[test]
    fn provider_messages_are_scrubbed_of_numbers_and_cut_short() {
        assert_eq!(
            scrub("Invalid phone number 380670000200 (code 42)"),
            "Invalid phone number <number> (code 42)"
        );
        assert_eq!(scrub("a\nb"), "a b");
        assert_eq!(scrub(&"x".repeat(500)).len(), MAX_ERROR_MESSAGE);
    }

    #[tokio::test]
    async fn lookup_is_unsupported() {
        let c = client(serde_json::json!({}));
        let e = c
            .lookup(&MessageId::generate(Utc::now()))
            .await
            .unwrap_err();
        assert_eq!(
            (kind(&e), e.code()),
            ("permanent", error_codes::LOOKUP_UNSUPPORTED)
        );
        let e = c.balance().await.unwrap_err();
        assert_eq!(
            (kind(&e), e.code().as_str()),
            ("permanent", "balance_unsupported")
        );
    }
}
