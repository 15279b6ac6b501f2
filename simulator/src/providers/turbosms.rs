//! A stand-in for TurboSMS's HTTP API (`api.turbosms.ua`), on loopback.
//!
//! It speaks the wire format Holub's adapter
//! ([`holub_shared::adapters::providers::turbosms`], whose module documentation names the
//! sources) expects of the real API:
//!
//! - `POST /message/send.json`, `/message/status.json`, `/user/balance.json` (also without
//!   `.json`) with a JSON body, and `/message/ping.json`, `/user/ping.json`;
//! - the token in one of the ways turbosms.ua/api.html lists: a `token` GET parameter, a
//!   `token` POST parameter with `Content-Type: application/x-www-form-urlencoded`, or
//!   `Authorization: Basic <token>` / `Authorization: Bearer <token>`; nothing else (a
//!   `token` field of a JSON body is not a documented way, and is not read). Missing →
//!   `103 REQUIRED_TOKEN`, wrong → `105 REQUIRED_AUTH`. A form body authenticates, but the
//!   simulator reads parameters only from JSON bodies;
//! - every answer HTTP 200 with `{"response_code","response_status","response_result"}`;
//! - send: one item per recipient (`phone`, `response_code`, `message_id`, a UUID,
//!   `response_status`), `800 SUCCESS_MESSAGE_ACCEPTED` or, when a recipient is refused
//!   (`305 INVALID_PHONE`, `407 NOT_ALLOWED_RECIPIENT_DUPLICATE`),
//!   `802 SUCCESS_MESSAGE_PARTIAL_ACCEPTED`; whole-request errors `104`, `200`–`203`, `300`,
//!   `302`, `405`, `413`, `502`. Each part costs `cost_per_part` kopiykas, taken from a
//!   balance that starts at `start_balance` (default [`START_BALANCE`]); a send it does not
//!   cover is answered `203 REQUIRED_BALANCE`;
//! - `sequence_id`: a request whose id already created messages is not run again; it is
//!   answered with the first answer and its recipients are counted as duplicates;
//! - status (TurboSMS polls, it does not push: `receipts_url` is not used): `Queued`, then
//!   `Accepted`, then `Sent` over `receipt_delay`, then `Delivered` or `Undelivered` (by
//!   [`delivered`], decided at send time); `414 NOT_ALLOWED_MESSAGE_ID` for an id it never
//!   gave, `307 INVALID_MESSAGE_ID` for one that is not a UUID;
//! - balance: `{"balance": 9999.15}`, hryvnias with two decimals.
//!
//! Faults ([`super::Faults::roll`]) at every endpoint but the stats: `ServerError` → HTTP 503
//! (nothing done), `RateLimited` → HTTP 429 with `Retry-After: 1` (TurboSMS documents no
//! rate-limit answer; this is the conservative stand-in; nothing done), `Malformed` → the
//! work is done, then a body that is not the documented JSON, `Hang` → the work is done, then
//! the answer waits [`HANG`].
//!
//! `GET /__sim/stats` (simulator only, no token): `{"accepted","submissions","duplicates"}`
//! — messages created, recipients submitted (repeats included), recipients of repeated
//! `sequence_id`s.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use holub_shared::adapters::providers::turbosms::format_time;
use holub_shared::domain::{PhoneNumber, SenderId, segments};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Fault, HANG, SimSettings, delivered};
use crate::receipt::{bearer_token, constant_time_eq};

/// The balance a simulator starts with, in kopiykas (10 000.00 UAH).
pub const START_BALANCE: i64 = 1_000_000;
/// Most recipients in one send request (the simulator's own limit).
pub const MAX_RECIPIENTS: usize = 5000;
/// Most parts of one text (the simulator's own limit).
pub const MAX_PARTS: usize = 10;

/// The counters `GET /__sim/stats` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub accepted: u64,
    pub submissions: u64,
    pub duplicates: u64,
}

struct Sim {
    settings: SimSettings,
    token: String,
    inner: Mutex<Inner>,
}

struct Inner {
    messages: HashMap<String, Record>,
    /// Answers of requests that created messages, by `sequence_id`, with their recipients.
    sequences: HashMap<String, (String, u64)>,
    balance: i64,
    stats: Stats,
}

struct Record {
    recipient: String,
    sent_at: DateTime<Utc>,
    created: Instant,
    delivered: bool,
}

// Wire types, written independently of the adapter's so that a mistake in one shows in the
// other's tests.

#[derive(Serialize)]
struct Envelope<T> {
    response_code: i64,
    response_status: &'static str,
    response_result: Option<T>,
}

#[derive(Serialize)]
struct SendItem {
    phone: String,
    response_code: i64,
    message_id: Option<String>,
    response_status: &'static str,
}

#[derive(Serialize)]
struct StatusItem {
    message_id: String,
    response_code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    response_status: &'static str,
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    sms: Option<SmsBody>,
    #[serde(default)]
    sequence_id: Option<String>,
}

#[derive(Deserialize)]
struct SmsBody {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    messages: Vec<String>,
}

/// The balance takes no parameters; a JSON body must still be a JSON object.
#[derive(Deserialize, Default)]
struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    token: String,
}

fn envelope<T: Serialize>(code: i64, status: &'static str, result: Option<T>) -> String {
    let body = Envelope {
        response_code: code,
        response_status: status,
        response_result: result,
    };
    serde_json::to_string(&body).unwrap_or_else(|_| fatal())
}

fn error(code: i64, status: &'static str) -> String {
    envelope::<()>(code, status, None)
}

fn fatal() -> String {
    r#"{"response_code":999,"response_status":"FATAL_ERROR","response_result":null}"#.to_owned()
}

/// Reads a JSON body, as the API would refuse it: empty, not JSON, or not its shape.
fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(error(104, "REQUIRED_CONTENT"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| error(502, "FAILED_PARSE_BODY"))?;
    serde_json::from_value(value).map_err(|_| error(300, "INVALID_REQUEST"))
}

/// A random UUID-shaped id, as TurboSMS gives.
fn new_message_id() -> String {
    let v: u128 = rand::rng().random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Kopiykas as TurboSMS writes hryvnias: `9999.15`.
fn hryvnias(kopiyky: i64) -> String {
    let sign = if kopiyky < 0 { "-" } else { "" };
    let abs = kopiyky.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "token")
        .map(|(_, value)| value)
}

/// Whether the body is a form, the only body the documentation reads a `token` from.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// `Authorization: Basic <token>` (the token itself, as documented, not base64 of a
/// user and password) or `Authorization: Bearer <token>`.
fn header_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    bearer_token(value).or_else(|| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("basic")
            .then(|| token.trim_start())
    })
}

impl Sim {
    /// A poisoned lock still holds consistent data: no code panics halfway through an update.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token from the header, the query or a form body; `Err` with the answer if it is
    /// missing or wrong.
    fn authorize(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let form = if is_form(headers) {
            std::str::from_utf8(body).ok()
        } else {
            None
        };
        let token = header_token(headers)
            .or_else(|| query_token(query))
            .or_else(|| query_token(form))
            .filter(|t| !t.is_empty());
        match token {
            None => Err(error(103, "REQUIRED_TOKEN")),
            Some(t) if constant_time_eq(t.as_bytes(), self.token.as_bytes()) => Ok(()),
            Some(_) => Err(error(105, "REQUIRED_AUTH")),
        }
    }

    fn send(&self, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> String {
        if let Err(answer) = self.authorize(headers, query, body) {
            return answer;
        }
        let request = match parse_body::<SendBody>(body) {
            Ok(request) => request,
            Err(answer) => return answer,
        };
        let Some(sms) = request.sms.as_ref() else {
            return error(200, "REQUIRED_MESSAGE_SENDER");
        };
        if sms.sender.trim().is_empty() {
            return error(200, "REQUIRED_MESSAGE_SENDER");
        }
        if sms.text.is_empty() {
            return error(201, "REQUIRED_MESSAGE_TEXT");
        }
        if request.recipients.is_empty() {
            return error(202, "REQUIRED_MESSAGE_RECIPIENT");
        }
        if request.recipients.len() > MAX_RECIPIENTS {
            return error(405, "NOT_ALLOWED_RECIPIENTS_LIMIT");
        }
        if SenderId::parse(&sms.sender).is_err() {
            return error(302, "INVALID_MESSAGE_SENDER");
        }
        let parts = segments::estimate(&sms.text).segments;
        if parts > MAX_PARTS {
            return error(413, "NOT_ALLOWED_MESSAGE_TEXT_LENGTH");
        }
        let count = request.recipients.len() as u64;

        // Check every recipient before taking the lock.
        let mut seen = HashSet::new();
        let checked: Vec<(String, Option<(i64, &'static str)>)> = request
            .recipients
            .iter()
            .map(|r| {
                let refusal = if !seen.insert(r.as_str()) {
                    Some((407, "NOT_ALLOWED_RECIPIENT_DUPLICATE"))
                } else if r.is_empty()
                    || !r.bytes().all(|b| b.is_ascii_digit())
                    || PhoneNumber::parse(r).is_err()
                {
                    Some((305, "INVALID_PHONE"))
                } else {
                    None
                };
                (r.clone(), refusal)
            })
            .collect();
        let valid = checked
            .iter()
            .filter(|(_, refusal)| refusal.is_none())
            .count();
        let per_message = self
            .settings
            .cost_per_part
            .saturating_mul(i64::try_from(parts).unwrap_or(i64::MAX));
        let cost = per_message.saturating_mul(i64::try_from(valid).unwrap_or(i64::MAX));

        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.stats.submissions += count;
        if let Some(sequence_id) = request.sequence_id.as_deref()
            && let Some((answer, recipients)) = inner.sequences.get(sequence_id)
        {
            inner.stats.duplicates += *recipients;
            return answer.clone();
        }
        if inner.balance < cost {
            return error(203, "REQUIRED_BALANCE");
        }
        let now = Utc::now();
        let created = Instant::now();
        let mut items = Vec::with_capacity(checked.len());
        for (phone, refusal) in checked {
            let item = match refusal {
                Some((code, status)) => SendItem {
                    phone,
                    response_code: code,
                    message_id: None,
                    response_status: status,
                },
                None => {
                    let id = new_message_id();
                    inner.messages.insert(
                        id.clone(),
                        Record {
                            recipient: phone.clone(),
                            sent_at: now,
                            created,
                            delivered: delivered(&self.settings),
                        },
                    );
                    SendItem {
                        phone,
                        response_code: 0,
                        message_id: Some(id),
                        response_status: "OK",
                    }
                }
            };
            items.push(item);
        }
        inner.balance -= cost;
        inner.stats.accepted += valid as u64;
        let (code, status) = if valid == items.len() {
            (800, "SUCCESS_MESSAGE_ACCEPTED")
        } else {
            (802, "SUCCESS_MESSAGE_PARTIAL_ACCEPTED")
        };
        let answer = envelope(code, status, Some(items));
        if valid > 0
            && let Some(sequence_id) = request.sequence_id
        {
            inner.sequences.insert(sequence_id, (answer.clone(), count));
        }
        answer
    }

    fn status(&self, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> String {
        if let Err(answer) = self.authorize(headers, query, body) {
            return answer;
        }
        let request = match parse_body::<StatusBody>(body) {
            Ok(request) => request,
            Err(answer) => return answer,
        };
        if request.messages.is_empty() {
            return error(300, "INVALID_REQUEST");
        }
        let delay = self.settings.receipt_delay;
        let inner = self.lock();
        let items: Vec<StatusItem> = request
            .messages
            .into_iter()
            .map(|id| {
                let refused = |code, status| StatusItem {
                    message_id: id.clone(),
                    response_code: code,
                    recipient: None,
                    sent: None,
                    updated: None,
                    status: None,
                    kind: None,
                    response_status: status,
                };
                if !looks_like_uuid(&id) {
                    return refused(307, "INVALID_MESSAGE_ID");
                }
                let Some(record) = inner.messages.get(&id) else {
                    return refused(414, "NOT_ALLOWED_MESSAGE_ID");
                };
                let elapsed = record.created.elapsed();
                let (status, updated) = if elapsed >= delay {
                    let done = record.sent_at
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                    let word = if record.delivered {
                        "Delivered"
                    } else {
                        "Undelivered"
                    };
                    (word, done)
                } else if elapsed < delay / 3 {
                    ("Queued", record.sent_at)
                } else if elapsed < delay * 2 / 3 {
                    ("Accepted", record.sent_at)
                } else {
                    ("Sent", record.sent_at)
                };
                StatusItem {
                    message_id: id.clone(),
                    response_code: 0,
                    recipient: Some(record.recipient.clone()),
                    sent: Some(format_time(record.sent_at)),
                    updated: Some(format_time(updated)),
                    status: Some(status),
                    kind: Some("sms"),
                    response_status: "OK",
                }
            })
            .collect();
        drop(inner);
        envelope(0, "OK", Some(items))
    }

    fn balance(&self, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> String {
        if let Err(answer) = self.authorize(headers, query, body) {
            return answer;
        }
        if !is_form(headers)
            && !body.iter().all(u8::is_ascii_whitespace)
            && let Err(answer) = parse_body::<NoParams>(body)
        {
            return answer;
        }
        let balance = self.lock().balance;
        // Written by hand so the amount is an exact decimal literal.
        format!(
            r#"{{"response_code":0,"response_status":"OK","response_result":{{"balance":{}}}}}"#,
            hryvnias(balance)
        )
    }
}

/// The answer to a fault that stops a request before any work.
fn refused(fault: Fault) -> Option<Response> {
    match fault {
        Fault::ServerError => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
            )
                .into_response(),
        ),
        Fault::RateLimited => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(response)
        }
        Fault::None | Fault::Malformed | Fault::Hang => None,
    }
}

/// Answers `body` after the work was done, as the fault says.
async fn deliver(fault: Fault, body: String) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match fault {
        Fault::Malformed => (
            StatusCode::OK,
            json,
            r#"{"status":"ok","result":[{"id":"#.to_owned(),
        )
            .into_response(),
        Fault::Hang => {
            tokio::time::sleep(HANG).await;
            (StatusCode::OK, json, body).into_response()
        }
        _ => (StatusCode::OK, json, body).into_response(),
    }
}

type Method = fn(&Sim, &HeaderMap, Option<&str>, &[u8]) -> String;

async fn handle(
    sim: Arc<Sim>,
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> Response {
    let fault = sim.settings.faults.roll().await;
    if let Some(response) = refused(fault) {
        return response;
    }
    let answer = method(&sim, &headers, query.as_deref(), &body);
    deliver(fault, answer).await
}

async fn send_handler(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    handle(sim, Sim::send, headers, query, body).await
}

async fn status_handler(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    handle(sim, Sim::status, headers, query, body).await
}

async fn balance_handler(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    handle(sim, Sim::balance, headers, query, body).await
}

async fn ping_handler(State(sim): State<Arc<Sim>>) -> Response {
    let fault = sim.settings.faults.roll().await;
    if let Some(response) = refused(fault) {
        return response;
    }
    deliver(fault, error(1, "PONG")).await
}

async fn stats_handler(State(sim): State<Arc<Sim>>) -> Response {
    let stats = sim.lock().stats;
    (StatusCode::OK, axum::Json(stats)).into_response()
}

/// The simulator's routes over a fresh state. `InvalidInput` if `settings.credentials` is not
/// `{"token": "..."}`.
pub fn router(settings: SimSettings) -> io::Result<Router> {
    let credentials: Credentials =
        serde_json::from_value(settings.credentials.clone()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "turbosms simulator: credentials must be {\"token\": \"...\"}",
            )
        })?;
    if credentials.token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "turbosms simulator: the token is empty",
        ));
    }
    let sim = Arc::new(Sim {
        token: credentials.token,
        inner: Mutex::new(Inner {
            messages: HashMap::new(),
            sequences: HashMap::new(),
            balance: settings.start_balance.unwrap_or(START_BALANCE),
            stats: Stats::default(),
        }),
        settings,
    });
    Ok(Router::new()
        .route("/message/send.json", post(send_handler))
        .route("/message/send", post(send_handler))
        .route("/message/status.json", post(status_handler))
        .route("/message/status", post(status_handler))
        .route("/user/balance.json", post(balance_handler))
        .route("/user/balance", post(balance_handler))
        .route("/message/ping.json", post(ping_handler).get(ping_handler))
        .route("/user/ping.json", post(ping_handler).get(ping_handler))
        .route("/__sim/stats", get(stats_handler))
        .with_state(sim))
}

/// Starts a simulator on `127.0.0.1` with a port of the system's choosing, serving in the
/// background until the Tokio runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("turbosms", router(settings)?).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    use holub_shared::adapters::providers::turbosms::{
        self, Envelope, SendResult, StatusResult, parse_balance,
    };
    use holub_shared::domain::status::ReceiptState;
    use holub_shared::domain::{Kopiyky, MessageId};
    use holub_shared::ports::{
        OutboundSms, ProviderError, ReceiptMode, Secret, SmsProvider, Submitted,
    };
    use serde_json::json;

    use crate::providers::Faults;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
    const PING: &str =
        include_str!("../../../shared/src/adapters/providers/turbosms/fixtures/ping_response.json");
    const REQUIRED_TOKEN: &str = include_str!(
        "../../../shared/src/adapters/providers/turbosms/fixtures/error_required_token.json"
    );
    const SEND_PARTIAL: &str = include_str!(
        "../../../shared/src/adapters/providers/turbosms/fixtures/send_response_partial.json"
    );
    const STATUS: &str = include_str!(
        "../../../shared/src/adapters/providers/turbosms/fixtures/status_response.json"
    );

    fn settings() -> SimSettings {
        SimSettings {
            credentials: json!({ "token": TOKEN }),
            receipt_delay: Duration::from_millis(1000),
            delivered_ratio: 1.0,
            ..SimSettings::default()
        }
    }

    fn client(addr: SocketAddr, token: &str, timeout_ms: u64) -> Arc<dyn SmsProvider> {
        turbosms::build(
            "turbosms-test",
            json!({ "base_url": format!("http://{addr}"), "timeout_ms": timeout_ms }),
            &Secret::new(json!({ "token": token }).to_string()),
        )
        .unwrap()
        .provider
    }

    fn message(text: &str) -> OutboundSms {
        let estimate = segments::estimate(text);
        OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse("+380671234567").unwrap(),
            from: SenderId::parse("Holub").unwrap(),
            text: text.to_owned(),
            encoding: estimate.encoding,
            segments: u16::try_from(estimate.segments).unwrap(),
            validity_seconds: 3600,
        }
    }

    async fn stats(addr: SocketAddr) -> Stats {
        reqwest::get(format!("http://{addr}/__sim/stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn raw(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> String {
        let mut request = reqwest::Client::new()
            .post(format!("http://{addr}/{path}"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{path}");
        response.text().await.unwrap()
    }

    fn keys(value: &serde_json::Value) -> BTreeSet<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_send_is_accepted_with_an_id_and_no_cost() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        assert_eq!(provider.name(), "turbosms-test");
        let submitted = provider.send(&message("Ваш код: 4821")).await.unwrap();
        assert!(looks_like_uuid(&submitted.provider_message_id));
        assert_eq!(submitted.cost, None);
        let other = provider.send(&message("Ваш код: 1234")).await.unwrap();
        assert_ne!(other.provider_message_id, submitted.provider_message_id);
        assert_eq!(
            stats(addr).await,
            Stats {
                accepted: 2,
                submissions: 2,
                duplicates: 0
            }
        );
    }

    #[tokio::test]
    async fn a_resubmitted_message_is_answered_as_the_first_and_sent_once() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        let sms = message("Order 42 is ready");
        let first = provider.send(&sms).await.unwrap();
        let again = provider.send(&sms).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(
            stats(addr).await,
            Stats {
                accepted: 1,
                submissions: 2,
                duplicates: 1
            }
        );
        // The balance was charged once.
        assert_eq!(
            provider.balance().await,
            Ok(Kopiyky(START_BALANCE - settings().cost_per_part))
        );
    }

    #[tokio::test]
    async fn lookup_is_unsupported() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        let sms = message("hello");
        provider.send(&sms).await.unwrap();
        let e = provider.lookup(&sms.id).await.unwrap_err();
        assert_eq!(
            e,
            ProviderError::permanent(
                holub_shared::domain::FailureCode::LookupUnsupported,
                e.message()
            )
        );
    }

    #[tokio::test]
    async fn statuses_are_enroute_until_the_delay_then_final() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        assert_eq!(provider.receipt_mode(), ReceiptMode::Poll);
        let Submitted {
            provider_message_id: id,
            ..
        } = provider.send(&message("hello")).await.unwrap();
        let unknown = new_message_id();
        let ids = vec![id.clone(), unknown, "not-a-uuid".to_owned()];
        let early = provider.status(&ids).await.unwrap();
        assert_eq!(early.len(), 1);
        assert_eq!(
            (
                early[0].provider_message_id.as_str(),
                early[0].part,
                early[0].state
            ),
            (
                id.as_str(),
                holub_shared::ports::provider::WHOLE_MESSAGE,
                ReceiptState::Enroute
            )
        );
        tokio::time::sleep(settings().receipt_delay + Duration::from_millis(100)).await;
        let late = provider.status(&ids).await.unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].state, ReceiptState::Delivered);
        assert!(late[0].at >= early[0].at);
        assert!(late[0].at <= Utc::now() + chrono::Duration::seconds(1));

        let failing = start(SimSettings {
            delivered_ratio: 0.0,
            receipt_delay: Duration::ZERO,
            ..settings()
        })
        .await
        .unwrap();
        let provider = client(failing, TOKEN, 2000);
        let id = provider
            .send(&message("hello"))
            .await
            .unwrap()
            .provider_message_id;
        let receipts = provider.status(std::slice::from_ref(&id)).await.unwrap();
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].state, ReceiptState::Undelivered);
    }

    #[tokio::test]
    async fn the_balance_goes_down_by_the_parts_sent() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        assert_eq!(provider.balance().await, Ok(Kopiyky(START_BALANCE)));
        // 100 Cyrillic characters: UCS-2, two parts.
        let long = "ж".repeat(100);
        assert_eq!(message(&long).segments, 2);
        provider.send(&message(&long)).await.unwrap();
        assert_eq!(
            provider.balance().await,
            Ok(Kopiyky(START_BALANCE - 2 * settings().cost_per_part))
        );
    }

    #[tokio::test]
    async fn refusals_map_to_permanent_codes() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        for (text, code) in [("", "invalid_text"), (&*"a".repeat(1700), "text_too_long")] {
            let e = provider.send(&message(text)).await.unwrap_err();
            assert!(matches!(e, ProviderError::Permanent { .. }), "{e:?}");
            assert_eq!(e.code(), code);
        }
        assert_eq!(stats(addr).await.accepted, 0);
    }

    #[tokio::test]
    async fn an_empty_account_answers_required_balance_to_every_send() {
        let addr = start(SimSettings {
            start_balance: Some(0),
            ..settings()
        })
        .await
        .unwrap();
        let body =
            json!({"recipients": ["380671234567"], "sms": {"sender": "Holub", "text": "hi"}});
        let answer = raw(addr, "message/send.json", Some(TOKEN), &body.to_string()).await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&answer).unwrap(),
            json!({"response_code": 203, "response_status": "REQUIRED_BALANCE", "response_result": null})
        );
        let provider = client(addr, TOKEN, 2000);
        for _ in 0..3 {
            let e = provider.send(&message("hello")).await.unwrap_err();
            assert!(e.is_account(), "{e:?}");
            assert_eq!(e.code(), "insufficient_balance");
        }
        assert_eq!(stats(addr).await.accepted, 0);
    }

    #[tokio::test]
    async fn wrong_or_missing_credentials_are_refused() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, "wrong-token", 2000);
        let errors = [
            provider.send(&message("hello")).await.unwrap_err(),
            provider.status(&[new_message_id()]).await.unwrap_err(),
            provider.balance().await.unwrap_err(),
        ];
        for e in errors {
            assert!(e.is_account(), "{e:?}");
            assert_eq!(e.code(), "provider_unauthorized");
        }
        let missing = raw(addr, "message/send.json", None, "{}").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&missing).unwrap(),
            serde_json::from_str::<serde_json::Value>(REQUIRED_TOKEN).unwrap()
        );
        // The documented ways (turbosms.ua/api.html): a GET parameter, a POST parameter of a
        // form, `Authorization: Basic` or `Bearer`.
        let by_query = raw(addr, &format!("user/balance.json?token={TOKEN}"), None, "").await;
        assert!(parse_balance("t", by_query.as_bytes()).is_ok());
        let url = format!("http://{addr}/user/balance.json");
        let by_form = reqwest::Client::new()
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={TOKEN}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(parse_balance("t", by_form.as_bytes()).is_ok(), "{by_form}");
        for scheme in ["Basic", "Bearer"] {
            let by_header = reqwest::Client::new()
                .post(&url)
                .header("Authorization", format!("{scheme} {TOKEN}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                parse_balance("t", by_header.as_bytes()).is_ok(),
                "{scheme}: {by_header}"
            );
        }
        // Undocumented: a JSON body's field, a form token under another content type, and
        // other schemes.
        let refused = [
            raw(
                addr,
                "user/balance.json",
                None,
                &json!({ "token": TOKEN }).to_string(),
            )
            .await,
            reqwest::Client::new()
                .post(&url)
                .header("Content-Type", "text/plain")
                .body(format!("token={TOKEN}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            reqwest::Client::new()
                .post(&url)
                .header("Authorization", format!("Token {TOKEN}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        ];
        for answer in refused {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&answer).unwrap(),
                serde_json::from_str::<serde_json::Value>(REQUIRED_TOKEN).unwrap()
            );
        }
        assert_eq!(stats(addr).await.submissions, 0);
    }

    #[tokio::test]
    async fn each_fault_maps_to_the_right_error_kind() {
        let cases: [(Faults, &str, bool); 5] = [
            (
                Faults {
                    server_error_ratio: 1.0,
                    ..Faults::default()
                },
                "temporary",
                false,
            ),
            (
                Faults {
                    down: true,
                    ..Faults::default()
                },
                "temporary",
                false,
            ),
            (
                Faults {
                    rate_limit_ratio: 1.0,
                    ..Faults::default()
                },
                "temporary",
                false,
            ),
            (
                Faults {
                    malformed_ratio: 1.0,
                    ..Faults::default()
                },
                "unknown",
                true,
            ),
            (
                Faults {
                    timeout_ratio: 1.0,
                    ..Faults::default()
                },
                "unknown",
                true,
            ),
        ];
        for (faults, kind, work_done) in cases {
            let label = format!("{faults:?}");
            let addr = start(SimSettings {
                faults,
                ..settings()
            })
            .await
            .unwrap();
            let provider = client(addr, TOKEN, 300);
            let errors = [
                provider.send(&message("hello")).await.unwrap_err(),
                provider.status(&[new_message_id()]).await.unwrap_err(),
                provider.balance().await.unwrap_err(),
            ];
            for e in &errors {
                let got = match e {
                    ProviderError::Temporary { .. } => "temporary",
                    ProviderError::Permanent { .. } => "permanent",
                    ProviderError::Account { .. } => "account",
                    ProviderError::Unknown { .. } => "unknown",
                };
                assert_eq!(got, kind, "{label}: {e:?}");
            }
            assert_eq!(stats(addr).await.accepted, u64::from(work_done), "{label}");
        }
        // The codes say which fault it was.
        let code_of = |faults: Faults| async move {
            let addr = start(SimSettings {
                faults,
                ..settings()
            })
            .await
            .unwrap();
            let e = client(addr, TOKEN, 300)
                .send(&message("hello"))
                .await
                .unwrap_err();
            e.code().to_owned()
        };
        let rate_limited = code_of(Faults {
            rate_limit_ratio: 1.0,
            ..Faults::default()
        });
        assert_eq!(rate_limited.await, "provider_rate_limited");
        let hung = code_of(Faults {
            timeout_ratio: 1.0,
            ..Faults::default()
        });
        assert_eq!(hung.await, "provider_timeout");
        let malformed = code_of(Faults {
            malformed_ratio: 1.0,
            ..Faults::default()
        });
        assert_eq!(malformed.await, "provider_bad_answer");
    }

    #[tokio::test]
    async fn answers_have_the_documented_shape() {
        let addr = start(settings()).await.unwrap();
        let documented_send: serde_json::Value = serde_json::from_str(SEND_PARTIAL).unwrap();
        let documented_status: serde_json::Value = serde_json::from_str(STATUS).unwrap();

        // A send with one good and one bad number: 802, like the documented example.
        let body = json!({
            "recipients": ["380671234567", "12345"],
            "sms": {"sender": "Holub", "text": "Привіт"},
        })
        .to_string();
        let answer = raw(addr, "message/send.json", Some(TOKEN), &body).await;
        let parsed: Envelope<Vec<SendResult>> = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            (parsed.response_code, parsed.response_status.as_str()),
            (802, "SUCCESS_MESSAGE_PARTIAL_ACCEPTED")
        );
        let items = parsed.response_result.unwrap();
        assert_eq!(items[1].response_status, "INVALID_PHONE");
        assert_eq!(items[1].message_id, None);
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(keys(&value), keys(&documented_send));
        let item_keys = keys(&documented_send["response_result"][0]);
        for item in value["response_result"].as_array().unwrap() {
            assert_eq!(keys(item), item_keys);
        }
        let id = items[0].message_id.clone().unwrap();

        // A status answer: items as the documented ones, found and not found.
        let body = json!({ "messages": [id, new_message_id()] }).to_string();
        let answer = raw(addr, "message/status.json", Some(TOKEN), &body).await;
        let parsed: Envelope<Vec<StatusResult>> = serde_json::from_str(&answer).unwrap();
        assert_eq!(parsed.response_code, 0);
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(keys(&value), keys(&documented_status));
        let documented_items = documented_status["response_result"].as_array().unwrap();
        let items = value["response_result"].as_array().unwrap();
        assert_eq!(keys(&items[0]), keys(&documented_items[0]));
        assert_eq!(keys(&items[1]), keys(&documented_items[1]));
        assert_eq!(items[1]["response_status"], "NOT_ALLOWED_MESSAGE_ID");
        assert!(turbosms::parse_time(items[0]["sent"].as_str().unwrap()).is_some());

        // Balance and ping.
        let answer = raw(addr, "user/balance.json", Some(TOKEN), "{}").await;
        assert_eq!(
            parse_balance("t", answer.as_bytes()),
            Ok(Kopiyky(START_BALANCE - settings().cost_per_part))
        );
        let ping = raw(addr, "message/ping.json", None, "").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ping).unwrap(),
            serde_json::from_str::<serde_json::Value>(PING).unwrap()
        );

        // Requests the API cannot read.
        for (body, code) in [("", 104), ("not json", 502), (r#"{"recipients": 5}"#, 300)] {
            let answer = raw(addr, "message/send.json", Some(TOKEN), body).await;
            let head: turbosms::Head = serde_json::from_str(&answer).unwrap();
            assert_eq!(head.response_code, code, "{body}");
        }
    }

    #[test]
    fn bad_simulator_credentials_are_refused() {
        for credentials in [json!(null), json!({"token": ""}), json!({"key": "x"})] {
            let settings = SimSettings {
                credentials,
                ..SimSettings::default()
            };
            assert_eq!(
                router(settings).err().map(|e| e.kind()),
                Some(io::ErrorKind::InvalidInput)
            );
        }
        assert_eq!(hryvnias(999_915), "9999.15");
        assert_eq!(hryvnias(5), "0.05");
        assert!(looks_like_uuid(&new_message_id()));
        assert!(!looks_like_uuid("f83f8868-5e46-c6cf-e4fb-615e5a29375"));
    }
}
