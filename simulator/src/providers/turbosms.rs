//! A stand-in for TurboSMS's HTTP API (`api.turbosms.ua`) on loopback. Its wire types and
//! rules are written from TurboSMS's documentation and the clients that quote it (each
//! [`Rule`] names its source; the documented examples are the adapter's `fixtures/`), never
//! from Holub's adapter.
//!
//! - `POST /message/send.json`, `/message/status.json`, `/user/balance.json` (also without
//!   `.json`), and `/message/ping.json`, `/user/ping.json`. Parameters come as a JSON body or
//!   as a form (`recipients[]=…&sms[sender]=…&sms[text]=…`, `messages[]=…`).
//! - The token in one of the ways turbosms.ua/api.html lists: `Authorization: Bearer` (or
//!   `Basic`) with the token itself, or a `token` parameter, in the query or in a form body.
//!   A `token` member of a JSON body is no documented way and is not read.
//! - Every answer is HTTP 200 with `{"response_code", "response_status",
//!   "response_result"}`, as documented; refusals carry the documented code and name the rule
//!   in `x-holub-sim-rule`.
//! - `sequence_id`: a request whose id already created messages is not run again; it is
//!   answered with the first answer and its recipients are counted as duplicates.
//! - TurboSMS is polled: `Queued`, `Accepted`, `Sent`, then `Delivered` or `Undelivered` at
//!   `receipt_delay`; times are Kyiv local time, `2020-01-01 00:00:01`.
//! - TurboSMS documents no rate-limit answer: the simulator's is HTTP 429 with
//!   `Retry-After: 1`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use holub_shared::domain::{PhoneNumber, SenderId, segments};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::core::{self, Core, NewMessage, Record, refused, tag};
use super::{Fault, SimSettings};
use crate::receipt::bearer_token;

pub use super::core::Stats;
/// The balance a simulator starts with, in kopiykas (10 000.00 UAH).
pub const START_BALANCE: i64 = 1_000_000;
/// Most recipients in one send request (the simulator's own limit).
pub const MAX_RECIPIENTS: usize = 5000;
/// Most parts of one text (the simulator's own limit).
pub const MAX_PARTS: usize = 10;

const API: &str = "turbosms.ua/api.html";
const CODES: &str = "daaner/turbosms resources/lang/en/turbosms.php (response_status codes)";

/// A rule of this simulator, with the documented code TurboSMS answers when it is broken.
pub type Rule = core::Rule<Code>;

/// A `response_code` and its `response_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Code {
    pub code: i64,
    pub status: &'static str,
}

pub const TOKEN_REQUIRED: Rule = Rule {
    id: "turbosms.token.required",
    description: "a token comes as Authorization: Bearer/Basic, or as a token parameter of the \
                  query or of a form body; else 103 REQUIRED_TOKEN",
    source: API,
    answer: Code {
        code: 103,
        status: "REQUIRED_TOKEN",
    },
};
pub const TOKEN_VALID: Rule = Rule {
    id: "turbosms.token.valid",
    description: "the token is the account's; else 105 REQUIRED_AUTH",
    source: CODES,
    answer: Code {
        code: 105,
        status: "REQUIRED_AUTH",
    },
};
pub const CONTENT: Rule = Rule {
    id: "turbosms.body.required",
    description: "send and status take parameters; an empty body is 104 REQUIRED_CONTENT",
    source: CODES,
    answer: Code {
        code: 104,
        status: "REQUIRED_CONTENT",
    },
};
pub const PARSE: Rule = Rule {
    id: "turbosms.body.parse",
    description: "a body that is neither JSON nor a form is 502 FAILED_PARSE_BODY",
    source: CODES,
    answer: Code {
        code: 502,
        status: "FAILED_PARSE_BODY",
    },
};
pub const SHAPE: Rule = Rule {
    id: "turbosms.body.shape",
    description: "parameters have their documented types (recipients and messages arrays of \
                  strings, sms an object of strings); else 300 INVALID_REQUEST",
    source: "turbosms.ua/api.html send example (fixtures/send_request.json); daaner/turbosms",
    answer: Code {
        code: 300,
        status: "INVALID_REQUEST",
    },
};
pub const METHOD: Rule = Rule {
    id: "turbosms.method.known",
    description: "the path is a documented module/method: message/send, message/status, \
                  user/balance, message/ping, user/ping; else 300 INVALID_REQUEST",
    source: API,
    answer: Code {
        code: 300,
        status: "INVALID_REQUEST",
    },
};
pub const SENDER_REQUIRED: Rule = Rule {
    id: "turbosms.sender.required",
    description: "sms.sender is given; else 200 REQUIRED_MESSAGE_SENDER",
    source: CODES,
    answer: Code {
        code: 200,
        status: "REQUIRED_MESSAGE_SENDER",
    },
};
pub const TEXT_REQUIRED: Rule = Rule {
    id: "turbosms.text.required",
    description: "sms.text is not empty; else 201 REQUIRED_MESSAGE_TEXT",
    source: CODES,
    answer: Code {
        code: 201,
        status: "REQUIRED_MESSAGE_TEXT",
    },
};
pub const RECIPIENTS_REQUIRED: Rule = Rule {
    id: "turbosms.recipients.required",
    description: "recipients lists at least one number; else 202 REQUIRED_MESSAGE_RECIPIENT",
    source: CODES,
    answer: Code {
        code: 202,
        status: "REQUIRED_MESSAGE_RECIPIENT",
    },
};
pub const RECIPIENTS_LIMIT: Rule = Rule {
    id: "turbosms.recipients.limit",
    description: "at most 5000 recipients per request (the simulator's own limit); else 405 \
                  NOT_ALLOWED_RECIPIENTS_LIMIT",
    source: CODES,
    answer: Code {
        code: 405,
        status: "NOT_ALLOWED_RECIPIENTS_LIMIT",
    },
};
pub const SENDER_VALID: Rule = Rule {
    id: "turbosms.sender.valid",
    description: "sms.sender is an alpha-name of up to 11 characters or a number; else 302 \
                  INVALID_MESSAGE_SENDER",
    source: "daaner/turbosms codes; 3GPP TS 23.040 §9.1.2.5",
    answer: Code {
        code: 302,
        status: "INVALID_MESSAGE_SENDER",
    },
};
pub const TEXT_LENGTH: Rule = Rule {
    id: "turbosms.text.length",
    description: "sms.text fits 10 SMS parts (the simulator's own limit); else 413 \
                  NOT_ALLOWED_MESSAGE_TEXT_LENGTH",
    source: CODES,
    answer: Code {
        code: 413,
        status: "NOT_ALLOWED_MESSAGE_TEXT_LENGTH",
    },
};
pub const PHONE: Rule = Rule {
    id: "turbosms.recipient.phone",
    description: "each recipient is an international number as digits (380…); else that \
                  recipient's item is 305 INVALID_PHONE",
    source: "turbosms.ua/api.html send example; daaner/turbosms codes",
    answer: Code {
        code: 305,
        status: "INVALID_PHONE",
    },
};
pub const RECIPIENT_DUPLICATE: Rule = Rule {
    id: "turbosms.recipient.duplicate",
    description: "a number is listed once per request; a repeat's item is 407 \
                  NOT_ALLOWED_RECIPIENT_DUPLICATE",
    source: CODES,
    answer: Code {
        code: 407,
        status: "NOT_ALLOWED_RECIPIENT_DUPLICATE",
    },
};
pub const FUNDS: Rule = Rule {
    id: "turbosms.balance.funds",
    description: "a send the balance does not cover is 203 REQUIRED_BALANCE",
    source: CODES,
    answer: Code {
        code: 203,
        status: "REQUIRED_BALANCE",
    },
};
pub const MESSAGES_REQUIRED: Rule = Rule {
    id: "turbosms.messages.required",
    description: "a status query lists at least one message id; else 300 INVALID_REQUEST",
    source: "daaner/turbosms src/TurboSMS.php (message/status.json with messages)",
    answer: Code {
        code: 300,
        status: "INVALID_REQUEST",
    },
};
pub const MESSAGE_ID_FORMAT: Rule = Rule {
    id: "turbosms.message_id.format",
    description: "a message id is a UUID; else its item is 307 INVALID_MESSAGE_ID",
    source: "eduard-romaniuk/turbosms-spring-boot-starter TsResponseStatus.java (307)",
    answer: Code {
        code: 307,
        status: "INVALID_MESSAGE_ID",
    },
};
pub const MESSAGE_ID_KNOWN: Rule = Rule {
    id: "turbosms.message_id.known",
    description: "a message id is one the account has; else its item is 414 \
                  NOT_ALLOWED_MESSAGE_ID",
    source: "daaner/turbosms README.md status example (fixtures/status_response.json)",
    answer: Code {
        code: 414,
        status: "NOT_ALLOWED_MESSAGE_ID",
    },
};

/// Every rule this simulator enforces.
pub const RULES: &[Rule] = &[
    TOKEN_REQUIRED,
    TOKEN_VALID,
    CONTENT,
    PARSE,
    SHAPE,
    METHOD,
    SENDER_REQUIRED,
    TEXT_REQUIRED,
    RECIPIENTS_REQUIRED,
    RECIPIENTS_LIMIT,
    SENDER_VALID,
    TEXT_LENGTH,
    PHONE,
    RECIPIENT_DUPLICATE,
    FUNDS,
    MESSAGES_REQUIRED,
    MESSAGE_ID_FORMAT,
    MESSAGE_ID_KNOWN,
];

// Wire types, as the documented examples show them.

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
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    found: Option<Found>,
    response_status: &'static str,
}

#[derive(Serialize)]
struct Found {
    recipient: String,
    sent: String,
    updated: String,
    status: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Deserialize)]
struct SendBody {
    recipients: Option<Vec<String>>,
    sms: Option<SmsBody>,
    sequence_id: Option<String>,
}

#[derive(Deserialize)]
struct SmsBody {
    sender: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct StatusBody {
    messages: Option<Vec<String>>,
}

fn envelope<T: Serialize>(code: i64, status: &'static str, result: Option<T>) -> Response {
    let body = Envelope {
        response_code: code,
        response_status: status,
        response_result: result,
    };
    axum::Json(body).into_response()
}

fn refuse(rule: &Rule) -> Response {
    let Code { code, status } = rule.answer;
    refused(rule, envelope::<()>(code, status, None))
}

/// Kyiv local time, as TurboSMS writes it: `2020-01-01 00:00:01`.
fn kyiv_time(at: DateTime<Utc>) -> String {
    core::kyiv_time(at, "%Y-%m-%d %H:%M:%S")
}

/// Whether the body is a form, the one body a `token` parameter is read from.
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

fn parameter(query: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(query)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A form's parameters as the JSON they stand for: `sms[text]=…` is a member of `sms`,
/// `recipients[]=…` (or `recipients[0]=…`) an item of `recipients`.
fn form_json(body: &[u8]) -> Value {
    let mut root = serde_json::Map::new();
    for (key, value) in url::form_urlencoded::parse(body) {
        if key == "token" {
            continue;
        }
        let value = Value::String(value.into_owned());
        match key.split_once('[') {
            None => {
                root.insert(key.into_owned(), value);
            }
            Some((name, rest)) => {
                let inner = rest.trim_end_matches(']');
                let slot = root.entry(name.to_owned());
                if inner.is_empty() || inner.bytes().all(|b| b.is_ascii_digit()) {
                    let list = slot.or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(items) = list {
                        items.push(value);
                    }
                } else {
                    let object = slot.or_insert_with(|| Value::Object(serde_json::Map::new()));
                    if let Value::Object(members) = object {
                        members.insert(inner.to_owned(), value);
                    }
                }
            }
        }
    }
    Value::Object(root)
}

/// A request's parameters, from a JSON body or a form; `needed` says an empty body is a
/// refusal rather than no parameters.
fn parameters<T: for<'de> Deserialize<'de>>(
    headers: &HeaderMap,
    body: &[u8],
    needed: bool,
) -> Result<T, &'static Rule> {
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        if needed {
            return Err(&CONTENT);
        }
        Value::Object(serde_json::Map::new())
    } else if is_form(headers) {
        form_json(body)
    } else {
        serde_json::from_slice(body).map_err(|_| &PARSE)?
    };
    serde_json::from_value(value).map_err(|_| &SHAPE)
}

struct Sim {
    core: Arc<Core>,
    /// Answers of requests that created messages, by `sequence_id`, with their recipients.
    sequences: Mutex<HashMap<String, (String, u64)>>,
}

fn json_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

type Method = fn(&Sim, &HeaderMap, &[u8]) -> Response;

impl Sim {
    /// The token from the header, the query or a form body, checked.
    fn authorize(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(), &'static Rule> {
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|value| {
                bearer_token(value).or_else(|| {
                    let (scheme, token) = value.trim().split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("basic")
                        .then(|| token.trim_start())
                })
            })
            .map(str::to_owned);
        let token = from_header
            .or_else(|| query.and_then(|q| parameter(q.as_bytes(), "token")))
            .or_else(|| is_form(headers).then(|| parameter(body, "token")).flatten())
            .filter(|t| !t.is_empty());
        match token {
            None => Err(&TOKEN_REQUIRED),
            Some(t) if self.core.authenticates("token", Some(&t)) => Ok(()),
            Some(_) => Err(&TOKEN_VALID),
        }
    }

    fn send(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let request = match parameters::<SendBody>(headers, body, true) {
            Ok(request) => request,
            Err(rule) => return refuse(rule),
        };
        let recipients = request.recipients.unwrap_or_default();
        self.core.submitted(recipients.len() as u64);
        let sms = request.sms.unwrap_or(SmsBody {
            sender: None,
            text: None,
        });
        let sender = sms.sender.unwrap_or_default();
        let text = sms.text.unwrap_or_default();
        if sender.trim().is_empty() {
            return refuse(&SENDER_REQUIRED);
        }
        if text.is_empty() {
            return refuse(&TEXT_REQUIRED);
        }
        if recipients.is_empty() {
            return refuse(&RECIPIENTS_REQUIRED);
        }
        if recipients.len() > MAX_RECIPIENTS {
            return refuse(&RECIPIENTS_LIMIT);
        }
        if SenderId::parse(&sender).is_err() {
            return refuse(&SENDER_VALID);
        }
        let parts = segments::estimate(&text).segments;
        if parts > MAX_PARTS {
            return refuse(&TEXT_LENGTH);
        }
        let parts = u32::try_from(parts).unwrap_or(u32::MAX);
        let mut sequences = self
            .sequences
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((answer, count)) = request
            .sequence_id
            .as_deref()
            .and_then(|id| sequences.get(id))
        {
            self.core.duplicated(*count);
            return json_text(answer.clone());
        }
        let mut seen = HashSet::new();
        let checked: Vec<(String, Option<&'static Rule>)> = recipients
            .iter()
            .map(|r| {
                let rule = if !seen.insert(r.as_str()) {
                    Some(&RECIPIENT_DUPLICATE)
                } else if r.is_empty()
                    || !r.bytes().all(|b| b.is_ascii_digit())
                    || PhoneNumber::parse(&format!("+{r}")).is_err()
                {
                    Some(&PHONE)
                } else {
                    None
                };
                (r.clone(), rule)
            })
            .collect();
        let new: Vec<NewMessage> = checked
            .iter()
            .filter(|(_, rule)| rule.is_none())
            .map(|(phone, _)| NewMessage {
                id: core::uuid_shaped(),
                client_id: None,
                recipient: phone.clone(),
                parts,
            })
            .collect();
        let Ok(taken) = self.core.accept(new) else {
            return refuse(&FUNDS);
        };
        let mut taken = taken.into_iter();
        let mut rules = Vec::new();
        let items: Vec<SendItem> = checked
            .into_iter()
            .map(|(phone, rule)| match rule {
                Some(rule) => {
                    rules.push(rule);
                    let Code { code, status } = rule.answer;
                    SendItem {
                        phone,
                        response_code: code,
                        message_id: None,
                        response_status: status,
                    }
                }
                None => SendItem {
                    phone,
                    response_code: 0,
                    message_id: taken.next().map(|r| r.id),
                    response_status: "OK",
                },
            })
            .collect();
        let (code, status) = if rules.is_empty() {
            (800, "SUCCESS_MESSAGE_ACCEPTED")
        } else {
            (802, "SUCCESS_MESSAGE_PARTIAL_ACCEPTED")
        };
        let accepted = items.len() > rules.len();
        let answer = serde_json::to_string(&Envelope {
            response_code: code,
            response_status: status,
            response_result: Some(items),
        })
        .unwrap_or_default();
        if accepted && let Some(sequence_id) = request.sequence_id {
            sequences.insert(sequence_id, (answer.clone(), recipients.len() as u64));
        }
        let mut response = json_text(answer);
        for rule in rules {
            tag(&mut response, rule);
        }
        response
    }

    fn status(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let request = match parameters::<StatusBody>(headers, body, true) {
            Ok(request) => request,
            Err(rule) => return refuse(rule),
        };
        let messages = request.messages.unwrap_or_default();
        if messages.is_empty() {
            return refuse(&MESSAGES_REQUIRED);
        }
        let mut rules = Vec::new();
        let items: Vec<StatusItem> = messages
            .into_iter()
            .map(|id| {
                let record = if core::is_uuid_shaped(&id) {
                    self.core.record(&id).ok_or(&MESSAGE_ID_KNOWN)
                } else {
                    Err(&MESSAGE_ID_FORMAT)
                };
                match record {
                    Ok(record) => StatusItem {
                        message_id: id,
                        response_code: 0,
                        found: Some(found(&record)),
                        response_status: "OK",
                    },
                    Err(rule) => {
                        rules.push(rule);
                        let Code { code, status } = rule.answer;
                        StatusItem {
                            message_id: id,
                            response_code: code,
                            found: None,
                            response_status: status,
                        }
                    }
                }
            })
            .collect();
        let mut response = envelope(0, "OK", Some(items));
        for rule in rules {
            tag(&mut response, rule);
        }
        response
    }

    fn balance(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        if let Err(rule) = parameters::<serde_json::Map<String, Value>>(headers, body, false) {
            return refuse(rule);
        }
        // Written by hand so the amount is an exact decimal literal.
        let body = format!(
            r#"{{"response_code":0,"response_status":"OK","response_result":{{"balance":{}}}}}"#,
            core::hryvnias(self.core.balance(), 2)
        );
        json_text(body)
    }
}

/// A message's status now, as a status item shows it.
fn found(record: &Record) -> Found {
    let progress = record.progress();
    let (status, updated) = if record.is_final() {
        let word = if record.delivered {
            "Delivered"
        } else {
            "Undelivered"
        };
        (word, record.final_at())
    } else if progress < 1.0 / 3.0 {
        ("Queued", record.accepted_at)
    } else if progress < 2.0 / 3.0 {
        ("Accepted", record.accepted_at)
    } else {
        ("Sent", record.accepted_at)
    };
    Found {
        recipient: record.recipient.clone(),
        sent: kyiv_time(record.accepted_at),
        updated: kyiv_time(updated),
        status,
        kind: "sms",
    }
}

async fn handle(
    sim: Arc<Sim>,
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: Bytes,
) -> Response {
    if let Err(rule) = sim.authorize(&headers, query.as_deref(), &body) {
        return refuse(rule);
    }
    method(&sim, &headers, &body)
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

async fn ping_handler() -> Response {
    envelope::<()>(1, "PONG", None)
}

async fn unknown_method() -> Response {
    refuse(&METHOD)
}

/// TurboSMS's faults: an HTML 503 page, a 429 with `Retry-After`, a body that is not JSON
/// of the envelope.
fn fault_page(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok","result":[{"id":"#,
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
        )
            .into_response(),
    }
}

/// The simulator's routes over a fresh state. `InvalidInput` if `settings.credentials` is not
/// `{"token": "..."}` with a token.
pub fn router(settings: SimSettings) -> io::Result<Router> {
    let only_token = settings.credentials.as_object().is_some_and(|c| {
        c.len() == 1
            && c.get("token")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
    });
    if !only_token {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "turbosms simulator: credentials must be {\"token\": \"...\"} with a token",
        ));
    }
    let core = Core::new("turbosms", settings, START_BALANCE);
    let sim = Arc::new(Sim {
        core: Arc::clone(&core),
        sequences: Mutex::default(),
    });
    let api = Router::new()
        .route("/message/send.json", post(send_handler))
        .route("/message/send", post(send_handler))
        .route("/message/status.json", post(status_handler))
        .route("/message/status", post(status_handler))
        .route("/user/balance.json", post(balance_handler))
        .route("/user/balance", post(balance_handler))
        .route("/message/ping.json", post(ping_handler).get(ping_handler))
        .route("/user/ping.json", post(ping_handler).get(ping_handler))
        .fallback(unknown_method)
        .with_state(sim);
    Ok(core::router(core, api, fault_page, RULES))
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

    use holub_shared::adapters::providers::turbosms;
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

    /// The balance of a balance answer, in kopiykas, read from its decimal text.
    fn balance_of(answer: &str) -> Option<i64> {
        let value: serde_json::Value = serde_json::from_str(answer).ok()?;
        let text = value["response_result"]["balance"].as_number()?.to_string();
        let (whole, cents) = text.split_once('.').unwrap_or((&text, "0"));
        Some(whole.parse::<i64>().ok()? * 100 + format!("{cents:0<2}")[..2].parse::<i64>().ok()?)
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
        assert!(core::is_uuid_shaped(&submitted.provider_message_id));
        assert_eq!(submitted.cost, None);
        let other = provider.send(&message("Ваш код: 1234")).await.unwrap();
        assert_ne!(other.provider_message_id, submitted.provider_message_id);
        let stats = stats(addr).await;
        assert_eq!(
            (stats.accepted, stats.submissions, stats.duplicates),
            (2, 2, 0)
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
        let stats = stats(addr).await;
        assert_eq!(
            (stats.accepted, stats.submissions, stats.duplicates),
            (1, 2, 1)
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
        let unknown = core::uuid_shaped();
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
            assert_eq!(e.code().to_string(), code);
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
            assert_eq!(e.code().to_string(), "insufficient_balance");
        }
        assert_eq!(stats(addr).await.accepted, 0);
    }

    #[tokio::test]
    async fn wrong_or_missing_credentials_are_refused() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, "wrong-token", 2000);
        let errors = [
            provider.send(&message("hello")).await.unwrap_err(),
            provider.status(&[core::uuid_shaped()]).await.unwrap_err(),
            provider.balance().await.unwrap_err(),
        ];
        for e in errors {
            assert!(e.is_account(), "{e:?}");
            assert_eq!(e.code().to_string(), "provider_unauthorized");
        }
        let missing = raw(addr, "message/send.json", None, "{}").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&missing).unwrap(),
            serde_json::from_str::<serde_json::Value>(REQUIRED_TOKEN).unwrap()
        );
        // The documented ways (turbosms.ua/api.html): a GET parameter, a POST parameter of a
        // form, `Authorization: Basic` or `Bearer`.
        let by_query = raw(addr, &format!("user/balance.json?token={TOKEN}"), None, "").await;
        assert!(balance_of(&by_query).is_some());
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
        assert!(balance_of(&by_form).is_some(), "{by_form}");
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
            assert!(balance_of(&by_header).is_some(), "{scheme}: {by_header}");
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
                provider.status(&[core::uuid_shaped()]).await.unwrap_err(),
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
            e.code().to_string()
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

        // The documented request, with one number refused: 802, like the documented answer.
        let mut request: serde_json::Value = serde_json::from_str(include_str!(
            "../../../shared/src/adapters/providers/turbosms/fixtures/send_request.json"
        ))
        .unwrap();
        request["recipients"][1] = json!("12345");
        let answer = raw(addr, "message/send.json", Some(TOKEN), &request.to_string()).await;
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        core::assert_same_shape(&value, &documented_send);
        assert_eq!(value["response_code"], json!(802));
        assert_eq!(
            value["response_result"][1]["response_status"],
            json!("INVALID_PHONE")
        );
        assert_eq!(value["response_result"][1]["message_id"], json!(null));
        let item_keys = keys(&documented_send["response_result"][0]);
        for item in value["response_result"].as_array().unwrap() {
            assert_eq!(keys(item), item_keys);
        }
        let id = value["response_result"][0]["message_id"]
            .as_str()
            .unwrap()
            .to_owned();

        // A status answer: items as the documented ones, found and not found.
        let body = json!({ "messages": [id, core::uuid_shaped()] }).to_string();
        let answer = raw(addr, "message/status.json", Some(TOKEN), &body).await;
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(keys(&value), keys(&documented_status));
        let documented_items = documented_status["response_result"].as_array().unwrap();
        let items = value["response_result"].as_array().unwrap();
        core::assert_same_shape(&items[0], &documented_items[0]);
        assert_eq!(keys(&items[0]), keys(&documented_items[0]));
        assert_eq!(keys(&items[1]), keys(&documented_items[1]));
        assert_eq!(items[1]["response_status"], "NOT_ALLOWED_MESSAGE_ID");
        let sent = items[0]["sent"].as_str().unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(sent, "%Y-%m-%d %H:%M:%S").is_ok());

        // Balance and ping.
        let answer = raw(addr, "user/balance.json", Some(TOKEN), "{}").await;
        core::assert_same_shape(
            &serde_json::from_str(&answer).unwrap(),
            &serde_json::from_str(include_str!(
                "../../../shared/src/adapters/providers/turbosms/fixtures/balance_response.json"
            ))
            .unwrap(),
        );
        assert_eq!(
            balance_of(&answer),
            Some(START_BALANCE - 2 * settings().cost_per_part)
        );
        let ping = raw(addr, "message/ping.json", None, "").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ping).unwrap(),
            serde_json::from_str::<serde_json::Value>(PING).unwrap()
        );
    }

    #[tokio::test]
    async fn a_form_body_is_read_like_json() {
        let addr = start(settings()).await.unwrap();
        let url = format!("http://{addr}/message/send.json");
        let form = format!(
            "token={TOKEN}&recipients%5B%5D=380678998668&recipients%5B%5D=380503288668\
             &sms%5Bsender%5D=Holub&sms%5Btext%5D=%D0%9F%D1%80%D0%B8%D0%B2%D1%96%D1%82"
        );
        let answer = core::json_of(
            reqwest::Client::new()
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form),
        )
        .await;
        assert_eq!(answer["response_code"], json!(800), "{answer}");
        assert_eq!(stats(addr).await.accepted, 2);
    }

    #[tokio::test]
    async fn every_rule_is_enforced_named_and_counted() {
        let addr = start(SimSettings {
            start_balance: Some(1000),
            ..settings()
        })
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let send = |changes: serde_json::Value| {
            let mut body = json!({"recipients": ["380671234567"], "sms": {"sender": "Holub", "text": "Привіт"}});
            for (key, value) in changes.as_object().unwrap() {
                if key == "sender" || key == "text" {
                    body["sms"][key] = value.clone();
                } else {
                    body[key] = value.clone();
                }
            }
            body.to_string()
        };
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("38067{i:07}"))
            .collect();
        // (rule, path, authorization, body)
        let cases: Vec<(&Rule, &str, Option<&str>, String)> = vec![
            (&TOKEN_REQUIRED, "message/send.json", None, send(json!({}))),
            (
                &TOKEN_VALID,
                "message/send.json",
                Some("wrong"),
                send(json!({})),
            ),
            (&CONTENT, "message/send.json", Some(TOKEN), String::new()),
            (&PARSE, "message/send.json", Some(TOKEN), "not json".into()),
            (
                &SHAPE,
                "message/send.json",
                Some(TOKEN),
                r#"{"recipients": 5}"#.into(),
            ),
            (
                &SHAPE,
                "message/send.json",
                Some(TOKEN),
                send(json!({"recipients": [380671234567u64]})),
            ),
            (
                &METHOD,
                "message/sendmany.json",
                Some(TOKEN),
                send(json!({})),
            ),
            (
                &SENDER_REQUIRED,
                "message/send.json",
                Some(TOKEN),
                send(json!({"sender": ""})),
            ),
            (
                &TEXT_REQUIRED,
                "message/send.json",
                Some(TOKEN),
                send(json!({"text": ""})),
            ),
            (
                &RECIPIENTS_REQUIRED,
                "message/send.json",
                Some(TOKEN),
                send(json!({"recipients": []})),
            ),
            (
                &RECIPIENTS_LIMIT,
                "message/send.json",
                Some(TOKEN),
                send(json!({"recipients": many})),
            ),
            (
                &SENDER_VALID,
                "message/send.json",
                Some(TOKEN),
                send(json!({"sender": "TwelveChars1"})),
            ),
            (
                &TEXT_LENGTH,
                "message/send.json",
                Some(TOKEN),
                send(json!({"text": "a".repeat(1700)})),
            ),
            (
                &PHONE,
                "message/send.json",
                Some(TOKEN),
                send(json!({"recipients": ["380671234567", "+380671234568"]})),
            ),
            (
                &RECIPIENT_DUPLICATE,
                "message/send.json",
                Some(TOKEN),
                send(json!({"recipients": ["380671234569", "380671234569"]})),
            ),
            (
                &FUNDS,
                "message/send.json",
                Some(TOKEN),
                send(json!({"text": "a".repeat(1500)})),
            ),
            (
                &MESSAGES_REQUIRED,
                "message/status.json",
                Some(TOKEN),
                r#"{"messages": []}"#.into(),
            ),
            (
                &MESSAGE_ID_FORMAT,
                "message/status.json",
                Some(TOKEN),
                r#"{"messages": ["12"]}"#.into(),
            ),
            (
                &MESSAGE_ID_KNOWN,
                "message/status.json",
                Some(TOKEN),
                json!({"messages": [core::uuid_shaped()]}).to_string(),
            ),
        ];
        for (rule, path, token, body) in &cases {
            let mut request = client
                .post(format!("http://{addr}/{path}"))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), reqwest::StatusCode::OK);
            let named = core::rules_named(&answer);
            assert_eq!(named, [rule.id], "{path} {body:.80}");
            let answer: serde_json::Value = answer.json().await.unwrap();
            let Code { code, status } = rule.answer;
            let item = &answer["response_result"]
                .as_array()
                .and_then(|items| items.last())
                .cloned();
            let (got_code, got_status) = match item {
                Some(item) => (&item["response_code"], &item["response_status"]),
                None => (&answer["response_code"], &answer["response_status"]),
            };
            assert_eq!(
                (got_code, got_status),
                (&json!(code), &json!(status)),
                "{answer}"
            );
        }
        let stats = stats(addr).await;
        core::assert_every_rule_applied(RULES, &stats);
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
    }

    /// Everything the adapter does, at the edges of what Holub sends, within every rule.
    #[tokio::test]
    async fn the_adapter_breaks_no_rule() {
        let addr = start(settings()).await.unwrap();
        let provider = client(addr, TOKEN, 2000);
        let first = message("Ваш код: 4821");
        let sent = provider.send(&first).await.unwrap();
        provider.send(&first).await.unwrap();
        provider
            .send(&message(&"Довгий текст ".repeat(20)))
            .await
            .unwrap();
        let many = provider.send_many(&[message("one"), message("two")]).await;
        assert!(many.iter().all(Result::is_ok), "{many:?}");
        assert_eq!(
            provider
                .status(&[sent.provider_message_id])
                .await
                .unwrap()
                .len(),
            1
        );
        provider.balance().await.unwrap();
        let stats = stats(addr).await;
        assert!(stats.refusals.is_empty(), "{:?}", stats.refusals);
        assert_eq!((stats.accepted, stats.duplicates), (4, 1));
    }
}
