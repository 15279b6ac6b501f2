//! A simulator of AlphaSMS's JSON API on loopback. Its wire types and rules are written from
//! AlphaSMS's documentation (the sources are named in each [`Rule`]; the documented examples
//! are the adapter's `fixtures/`), never from Holub's adapter, so that a mistake in one shows
//! in the other's tests.
//!
//! `POST /api/json.php`, `Content-Type: application/json`, `{"auth": "<api key>", "data":
//! [commands]}`; the key is `settings.credentials.api_key`. A command is a send (`sms`), a
//! `status` query by the client `id`, or `balance`. Refusals answer the documented texts
//! (the JSON pages' "Access denied" and "Error in Alpha-name", the XML API's error table for
//! the rest) and name their rule in `x-holub-sim-rule`. Reports are pushed to a send's `hook`
//! (else to `settings.receipts_url`): `ROUTING`, then the final state at `receipt_delay`.
//! AlphaSMS documents no rate-limit answer: the simulator's is `429 {"success": false,
//! "error": "Too many requests"}`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use holub_shared::domain::segments;
use serde::Deserialize;
use serde_json::{Value, json};

use super::core::{self, Core, NewMessage, Record, refused, tag};
use super::{Fault, SimSettings};

pub const API_PATH: &str = "/api/json.php";
pub use super::core::{STATS_PATH, Stats};
/// What the account holds at the start, in kopiykas.
pub const INITIAL_BALANCE: i64 = 100_000;

const SEND: &str = "docs.alphasms.net/api/json/send_sms";
const XML_CODES: &str = "docs.alphasms.net/api/xml/references/message_status_codes";

/// A rule of this simulator, with the error text AlphaSMS answers when it is broken: the
/// documented one where there is one.
pub type Rule = core::Rule<&'static str>;

pub const AUTH: Rule = Rule {
    id: "alphasms.auth",
    description: "auth must be the account's API key; else the whole request is \"Access denied\"",
    source: "docs.alphasms.net/api/json (request structure); send_response_access_denied.json",
    answer: "Access denied",
};
pub const CONTENT_TYPE: Rule = Rule {
    id: "alphasms.content_type",
    description: "the body is sent with Content-Type: application/json",
    source: "docs.alphasms.net/api/json",
    answer: "Invalid request",
};
pub const BODY: Rule = Rule {
    id: "alphasms.body.json",
    description: "the body is a JSON object {\"auth\": string, \"data\": [commands]}",
    source: "docs.alphasms.net/api/json",
    answer: "Invalid request",
};
pub const DATA: Rule = Rule {
    id: "alphasms.data.required",
    description: "data is a non-empty array of commands, each an object with a type",
    source: "docs.alphasms.net/api/json",
    answer: "Invalid request",
};
pub const TYPE: Rule = Rule {
    id: "alphasms.type.known",
    description: "a command's type is one the simulator carries: sms, status or balance",
    source: "docs.alphasms.net/api/json (send_sms, message_status, balance)",
    answer: "Unknown request type",
};
pub const ID: Rule = Rule {
    id: "alphasms.id.number",
    description: "id is an integer from 1 to 2^53-1 (a number, exact in every JSON reader); \
                  else \"Wrong message ID\" (ERR_ID)",
    source: "docs.alphasms.net/api/json/send_sms (a number); XML error 201; RFC 8259 §6",
    answer: "Wrong message ID",
};
pub const DUPLICATE: Rule = Rule {
    id: "alphasms.id.duplicate",
    description: "an id is taken once; a repeat is \"A message with the specified ID already \
                  exists\" (ERR_DUPLICATE)",
    source: "docs.alphasms.net/api/xml/references/message_status_codes (208)",
    answer: "A message with the specified ID already exists",
};
pub const PHONE: Rule = Rule {
    id: "alphasms.phone.number",
    description: "phone is a JSON number of 7 to 15 digits (E.164 without +); else \
                  \"Incorrect recipient number\" (ERR_RECIPIENT)",
    source: "docs.alphasms.net/api/json/send_sms example; XML error 203; ITU-T E.164",
    answer: "Incorrect recipient number",
};
pub const SIGNATURE: Rule = Rule {
    id: "alphasms.sms_signature.length",
    description: "sms_signature is a string of 1 to 11 characters, or up to 15 digits; else \
                  \"Error in Alpha-name\"",
    source: "docs.alphasms.net/api/json/send_sms (error example); 3GPP TS 23.040 §9.1.2.5",
    answer: "Error in Alpha-name",
};
pub const LIFETIME: Rule = Rule {
    id: "alphasms.sms_lifetime.range",
    description: "sms_lifetime, if given, is an integer from 3600 to 259200 seconds",
    source: SEND,
    answer: "Invalid sms_lifetime",
};
pub const MESSAGE: Rule = Rule {
    id: "alphasms.sms_message.length",
    description: "sms_message is a string of 1 to 255 SMS parts; else \"Message too long or \
                  empty\" (ERR_LENGTH)",
    source: "docs.alphasms.net/api/xml/references/message_status_codes (204); 3GPP TS 23.040",
    answer: "Message too long or empty",
};
pub const HOOK: Rule = Rule {
    id: "alphasms.hook.url",
    description: "hook, if given, is an http(s) URL string",
    source: SEND,
    answer: "Invalid hook",
};
pub const BILLING: Rule = Rule {
    id: "alphasms.balance.funds",
    description: "a send the balance does not cover is \"Billing error\" (ERR_BILLING)",
    source: XML_CODES,
    answer: "Billing error",
};
pub const NOT_FOUND: Rule = Rule {
    id: "alphasms.status.known_id",
    description: "a status query names an id that was sent; else \"Message not found\"",
    source: "docs.alphasms.net/api/json/message_status",
    answer: "Message not found",
};

/// Every rule this simulator enforces.
pub const RULES: &[Rule] = &[
    AUTH,
    CONTENT_TYPE,
    BODY,
    DATA,
    TYPE,
    ID,
    DUPLICATE,
    PHONE,
    SIGNATURE,
    LIFETIME,
    MESSAGE,
    HOOK,
    BILLING,
    NOT_FOUND,
];

const MAX_PARTS: usize = 255;
const MAX_ID: u64 = (1 << 53) - 1;

/// The request as it may arrive: each member kept as JSON so a wrong type is refused by its
/// own rule instead of failing the whole request.
#[derive(Deserialize)]
struct Envelope {
    auth: Option<Value>,
    data: Option<Value>,
}

/// A send command, as documented.
#[derive(Deserialize)]
struct SmsCommand {
    id: Option<Value>,
    phone: Option<Value>,
    sms_signature: Option<Value>,
    sms_message: Option<Value>,
    sms_lifetime: Option<Value>,
    hook: Option<Value>,
}

fn client_id(id: Option<&Value>) -> Result<u64, &'static Rule> {
    id.and_then(Value::as_u64)
        .filter(|n| (1..=MAX_ID).contains(n))
        .ok_or(&ID)
}

/// The rules of a send command other than its id; its part count if it passes.
fn check_sms(command: &SmsCommand) -> Result<u32, &'static Rule> {
    let phone_ok = command
        .phone
        .as_ref()
        .and_then(Value::as_u64)
        .is_some_and(|n| (7..=15).contains(&n.to_string().len()));
    if !phone_ok {
        return Err(&PHONE);
    }
    let signature_ok = command
        .sms_signature
        .as_ref()
        .and_then(Value::as_str)
        .is_some_and(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                s.len() <= 15
            } else {
                (1..=11).contains(&s.chars().count()) && !s.trim().is_empty()
            }
        });
    if !signature_ok {
        return Err(&SIGNATURE);
    }
    let lifetime_ok = command
        .sms_lifetime
        .as_ref()
        .is_none_or(|v| v.as_u64().is_some_and(|s| (3_600..=259_200).contains(&s)));
    if !lifetime_ok {
        return Err(&LIFETIME);
    }
    let hook_ok = command.hook.as_ref().is_none_or(|v| {
        v.as_str().is_some_and(|url| {
            url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        })
    });
    if !hook_ok {
        return Err(&HOOK);
    }
    command
        .sms_message
        .as_ref()
        .and_then(Value::as_str)
        .map(|text| segments::estimate(text).segments)
        .filter(|parts| (1..=MAX_PARTS).contains(parts))
        .and_then(|parts| u32::try_from(parts).ok())
        .ok_or(&MESSAGE)
}

fn ok_item(data: Value) -> Value {
    json!({"success": true, "data": data})
}

fn error_item(rule: &Rule, id: Option<Value>) -> Value {
    match id {
        Some(id) => json!({"success": false, "error": rule.answer, "data": {"id": id}}),
        None => json!({"success": false, "error": rule.answer}),
    }
}

fn whole_error(rule: &Rule) -> Response {
    let body = json!({"success": false, "error": rule.answer});
    refused(rule, (StatusCode::OK, axum::Json(body)).into_response())
}

fn sent_item(record: &Record, id: u64) -> Value {
    let msg_id: u64 = record.id.parse().unwrap_or_default();
    ok_item(json!({"id": id, "msg_id": msg_id, "data": 1, "parts": record.parts}))
}

/// One AlphaSMS simulator.
struct Sim {
    core: Arc<Core>,
    /// AlphaSMS's own ids (`msg_id`), numbers like the documented `123456789`.
    next_msg_id: AtomicU64,
}

impl Sim {
    /// One send command: its answer item, and the rule it broke if refused.
    fn send(&self, command: SmsCommand) -> (Value, Option<&'static Rule>) {
        self.core.submitted(1);
        let id = match client_id(command.id.as_ref()) {
            Ok(id) => id,
            Err(rule) => return (error_item(rule, command.id), Some(rule)),
        };
        let key = id.to_string();
        if self.core.repeat_of(&key).is_some() {
            return (error_item(&DUPLICATE, Some(json!(id))), Some(&DUPLICATE));
        }
        let parts = match check_sms(&command) {
            Ok(parts) => parts,
            Err(rule) => return (error_item(rule, Some(json!(id))), Some(rule)),
        };
        let message = NewMessage {
            id: self.next_msg_id.fetch_add(1, Ordering::Relaxed).to_string(),
            client_id: Some(key),
            recipient: command.phone.map(|p| p.to_string()).unwrap_or_default(),
            parts,
        };
        let Ok(taken) = self.core.accept(vec![message]) else {
            return (error_item(&BILLING, Some(json!(id))), Some(&BILLING));
        };
        let record = &taken[0];
        let hook = command
            .hook
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(url) = hook.or_else(|| self.core.settings().receipts_url.clone()) {
            let delay = self.core.settings().receipt_delay;
            let last = if record.delivered {
                "DELIVERED"
            } else {
                "UNDELIVERABLE"
            };
            let report = |status| json!({"id": id, "type": "sms", "status": status});
            self.core.push_receipts(
                &url,
                vec![(delay / 4, report("ROUTING")), (delay, report(last))],
            );
        }
        (sent_item(record, id), None)
    }

    fn status(&self, id: Option<Value>) -> (Value, Option<&'static Rule>) {
        let key = match client_id(id.as_ref()) {
            Ok(key) => key,
            Err(rule) => return (error_item(rule, id), Some(rule)),
        };
        let Some(record) = self.core.record_by_client_id(&key.to_string()) else {
            return (error_item(&NOT_FOUND, Some(json!(key))), Some(&NOT_FOUND));
        };
        let status = match (record.is_final(), record.delivered) {
            (false, _) => "QUEUED",
            (true, true) => "DELIVERED",
            (true, false) => "UNDELIVERABLE",
        };
        (
            ok_item(json!({"id": key, "type": "sms", "status": status})),
            None,
        )
    }

    fn balance(&self) -> Value {
        // Hryvnias as a JSON number with up to four decimals, as documented.
        let amount: Value = serde_json::from_str(&core::hryvnias(self.core.balance(), 2))
            .unwrap_or_else(|_| json!(0));
        ok_item(json!({"amount": amount, "currency": "UAH"}))
    }

    fn command(&self, command: Value) -> (Value, Option<&'static Rule>) {
        match command.get("type").and_then(Value::as_str) {
            Some("sms") => match serde_json::from_value::<SmsCommand>(command) {
                Ok(sms) => self.send(sms),
                Err(_) => (error_item(&DATA, None), Some(&DATA)),
            },
            Some("status") => self.status(command.get("id").cloned()),
            Some("balance") => (self.balance(), None),
            _ => (error_item(&TYPE, None), Some(&TYPE)),
        }
    }
}

async fn api(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let json_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_content {
        return whole_error(&CONTENT_TYPE);
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return whole_error(&BODY);
    };
    let auth = envelope.auth.as_ref().and_then(Value::as_str);
    if !sim.core.authenticates("api_key", auth) {
        return whole_error(&AUTH);
    }
    let Some(commands) = envelope
        .data
        .and_then(|d| d.as_array().cloned())
        .filter(|d| !d.is_empty())
    else {
        return whole_error(&DATA);
    };
    let mut rules = Vec::new();
    let items: Vec<Value> = commands
        .into_iter()
        .map(|command| {
            let (item, rule) = sim.command(command);
            rules.extend(rule);
            item
        })
        .collect();
    let mut response = axum::Json(json!({"success": true, "data": items})).into_response();
    for rule in rules {
        tag(&mut response, rule);
    }
    response
}

/// AlphaSMS's faults: a proxy's 503 page, the simulator's own rate-limit answer, a cut body.
fn fault_page(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"success": false, "error": "Too many requests"})),
        )
            .into_response(),
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success":true,"data":[{"success":tr"#,
        )
            .into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response(),
    }
}

/// The simulator's endpoints over a fresh state.
pub fn router(settings: SimSettings) -> Router {
    let core = Core::new("alphasms", settings, INITIAL_BALANCE);
    let sim = Arc::new(Sim {
        core: Arc::clone(&core),
        next_msg_id: AtomicU64::new(100_000_001),
    });
    let api = Router::new().route(API_PATH, post(api)).with_state(sim);
    core::router(core, api, fault_page, RULES)
}

/// Starts a simulator on 127.0.0.1 with a port of the system's choosing, serving in the
/// background until the runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("alphasms", router(settings)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Faults;
    use chrono::Utc;
    use holub_shared::adapters::providers::Built;
    use holub_shared::adapters::providers::alphasms::build;
    use holub_shared::domain::status::ReceiptState;
    use holub_shared::domain::{Kopiyky, MessageId, PhoneNumber, SenderId};
    use holub_shared::ports::provider::WHOLE_MESSAGE;
    use holub_shared::ports::{
        OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, Secret, WebhookRequest,
    };
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    const KEY: &str = "test-api-key";
    const HOOK_TOKEN: &str = "test-hook-token-0123456789";

    fn settings() -> SimSettings {
        SimSettings {
            credentials: json!({"api_key": KEY}),
            receipt_delay: Duration::from_millis(150),
            delivered_ratio: 1.0,
            cost_per_part: 85,
            ..SimSettings::default()
        }
    }

    fn with_faults(faults: Faults) -> SimSettings {
        SimSettings {
            faults,
            ..settings()
        }
    }

    fn sms(text: &str) -> OutboundSms {
        let estimate = segments::estimate(text);
        OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse("+380671234567").expect("a number"),
            from: SenderId::parse("Holub").expect("a sender"),
            text: text.to_owned(),
            encoding: estimate.encoding,
            segments: u16::try_from(estimate.segments).expect("few parts"),
            validity_seconds: 3600,
        }
    }

    fn adapter(addr: SocketAddr, extra: serde_json::Value, key: &str) -> Built {
        let mut settings = json!({"base_url": format!("http://{addr}")});
        if let (Some(map), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
            map.extend(extra.clone());
        }
        let credentials =
            Secret::new(json!({"api_key": key, "hook_token": HOOK_TOKEN}).to_string());
        match build("alpha", settings, &credentials) {
            Ok(built) => built,
            Err(e) => panic!("setup: {e}"),
        }
    }

    async fn started(settings: SimSettings) -> (SocketAddr, Built) {
        let addr = start(settings).await.expect("the simulator starts");
        (addr, adapter(addr, json!({}), KEY))
    }

    async fn sim_stats(addr: SocketAddr) -> Stats {
        reqwest::get(format!("http://{addr}{STATS_PATH}"))
            .await
            .expect("stats answer")
            .json()
            .await
            .expect("stats JSON")
    }

    /// Polls `check` until it holds, failing after 20 s.
    async fn eventually<F: std::future::Future<Output = bool>>(
        what: &str,
        mut check: impl FnMut() -> F,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn sends_return_our_ids_and_repeats_are_not_sent_twice() {
        let (addr, built) = started(settings()).await;
        let provider = &built.provider;
        assert_eq!(provider.name(), "alpha");
        assert_eq!(provider.receipt_mode(), ReceiptMode::Poll);
        let one = sms("Ваш код: 4821");
        let submitted = provider.send(&one).await.expect("accepted");
        assert_eq!(submitted.provider_message_id, one.id.to_string());
        assert_eq!(submitted.cost, None, "AlphaSMS answers no price");
        // AlphaSMS refuses a taken id (ERR_DUPLICATE): the outcome is unknown, resolved by
        // a lookup, never a second message.
        let again = provider.send(&one).await.expect_err("a taken id");
        assert!(again.is_unknown(), "{again:?}");
        assert_eq!(again.code().to_string(), "duplicate_client_id");
        let stats = sim_stats(addr).await;
        assert_eq!(
            (stats.accepted, stats.submissions, stats.duplicates),
            (1, 2, 1)
        );

        // A batch, over several requests, with a multi-part message.
        let built = adapter(addr, json!({"batch_size": 2}), KEY);
        let long = "Довгий текст ".repeat(10);
        let batch = vec![sms("one"), sms(&long), sms("three")];
        let results = built.provider.send_many(&batch).await;
        assert_eq!(results.len(), 3);
        // Our id as it is, whatever the part count.
        for (sms, result) in batch.iter().zip(&results) {
            let submitted = result.as_ref().expect("accepted");
            assert_eq!(submitted.provider_message_id, sms.id.to_string());
        }
        assert!(batch[1].segments > 1);
        assert_eq!(sim_stats(addr).await.accepted, 4);
    }

    #[tokio::test]
    async fn refused_messages_map_to_permanent_errors() {
        let (_, built) = started(settings()).await;
        let empty = sms("");
        let e = built.provider.send(&empty).await.expect_err("refused");
        assert!(matches!(e, ProviderError::Permanent { .. }), "{e:?}");
        assert_eq!(e.code().to_string(), "invalid_text");
        assert!(e.to_string().contains("Message too long or empty"), "{e}");
        let poor = SimSettings {
            cost_per_part: INITIAL_BALANCE + 1,
            ..settings()
        };
        let (_, built) = started(poor).await;
        let e = built.provider.send(&sms("hi")).await.expect_err("refused");
        assert!(e.is_account(), "{e:?}");
        assert_eq!(e.code().to_string(), "insufficient_balance");
    }

    #[tokio::test]
    async fn lookup_finds_what_was_taken_and_only_that() {
        let (_, built) = started(settings()).await;
        let taken = sms("hello");
        built.provider.send(&taken).await.expect("accepted");
        let found = built.provider.lookup(&taken.id).await.expect("answered");
        assert_eq!(
            found.map(|s| s.provider_message_id),
            Some(taken.id.to_string())
        );
        let never = MessageId::generate(Utc::now());
        assert_eq!(built.provider.lookup(&never).await, Ok(None));
    }

    #[tokio::test]
    async fn polled_status_is_intermediate_then_final() {
        let (_, built) = started(settings()).await;
        let short = sms("hello");
        let long = sms(&"Довгий текст ".repeat(10));
        assert!(long.segments > 1);
        let mut ids = Vec::new();
        for m in [&short, &long] {
            let submitted = built.provider.send(m).await.expect("accepted");
            ids.push(submitted.provider_message_id);
        }
        // One receipt per message, for all its parts.
        let early = built.provider.status(&ids).await.expect("answered");
        assert_eq!(early.len(), 2);
        assert!(
            early
                .iter()
                .all(|r| r.state == ReceiptState::Enroute && r.part == WHOLE_MESSAGE)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let late = built.provider.status(&ids).await.expect("answered");
        let by_id: Vec<(&str, u16, ReceiptState)> = late
            .iter()
            .map(|r| (r.provider_message_id.as_str(), r.part, r.state))
            .collect();
        assert_eq!(
            by_id,
            vec![
                (ids[0].as_str(), WHOLE_MESSAGE, ReceiptState::Delivered),
                (ids[1].as_str(), WHOLE_MESSAGE, ReceiptState::Delivered),
            ]
        );
        // Unknown ids have no news; ids that are not ours are skipped.
        let unknown = MessageId::generate(Utc::now()).to_string();
        let none = built
            .provider
            .status(&[unknown, "12345".to_owned()])
            .await
            .expect("answered");
        assert!(none.is_empty());

        let failing = SimSettings {
            delivered_ratio: 0.0,
            receipt_delay: Duration::ZERO,
            ..settings()
        };
        let (_, built) = started(failing).await;
        let lost = sms("hello");
        built.provider.send(&lost).await.expect("accepted");
        let receipts = built
            .provider
            .status(&[lost.id.to_string()])
            .await
            .expect("answered");
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].state, ReceiptState::Undelivered);
        assert_eq!(receipts[0].part, WHOLE_MESSAGE);
    }

    /// A receiver of hook reports that parses them with the adapter's webhook, failing the
    /// first `fail_first` requests with 503 (Holub down).
    #[derive(Clone)]
    struct Receiver {
        webhook: Arc<dyn holub_shared::ports::ReceiptWebhook>,
        got: Arc<Mutex<Vec<ProviderReceipt>>>,
        refused: Arc<Mutex<Vec<String>>>,
        fail_first: Arc<Mutex<usize>>,
    }

    async fn hook(
        State(receiver): State<Receiver>,
        axum::extract::RawQuery(query): axum::extract::RawQuery,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        {
            let mut fail = receiver
                .fail_first
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *fail > 0 {
                *fail -= 1;
                return StatusCode::SERVICE_UNAVAILABLE;
            }
        }
        let request = WebhookRequest {
            headers: &headers,
            query: query.as_deref(),
            body: &body,
        };
        match receiver.webhook.parse(&request, Utc::now()) {
            Ok(receipts) => {
                receiver
                    .got
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(receipts);
                StatusCode::OK
            }
            Err(e) => {
                receiver
                    .refused
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(e.code().to_owned());
                StatusCode::UNAUTHORIZED
            }
        }
    }

    async fn push_end_to_end(faults: Faults) {
        let sim_addr = start(with_faults(faults.clone())).await.expect("starts");
        // The receiver needs the adapter's webhook, and the adapter the receiver's URL.
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binds");
        let receiver_addr = listener.local_addr().expect("an address");
        let built = adapter(
            sim_addr,
            json!({"hook_url": format!("http://{receiver_addr}/v1/receipts/alpha")}),
            KEY,
        );
        assert_eq!(built.provider.receipt_mode(), ReceiptMode::Push);
        let receiver = Receiver {
            webhook: built.webhook.clone().expect("a webhook"),
            got: Arc::default(),
            refused: Arc::default(),
            fail_first: Arc::new(Mutex::new(2)),
        };
        let app = Router::new()
            .route("/v1/receipts/alpha", post(hook))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let long = sms(&"Довгий текст ".repeat(10));
        assert!(long.segments > 1);
        let batch = vec![sms("one"), long];
        for result in built.provider.send_many(&batch).await {
            result.expect("accepted");
        }
        // Each report is one receipt for the whole message, keyed by our id.
        let final_of = |m: &OutboundSms| {
            let got = receiver.got.lock().unwrap_or_else(PoisonError::into_inner);
            let pid = m.id.to_string();
            got.iter().any(|r| {
                r.provider_message_id == pid
                    && r.part == WHOLE_MESSAGE
                    && r.state == ReceiptState::Delivered
            })
        };
        eventually("the final receipts", || {
            let done = batch.iter().all(final_of);
            async move { done }
        })
        .await;
        let copies = if faults.duplicate_receipts { 2 } else { 1 };
        // An intermediate and a final report per message.
        let expected = 2 * batch.len() * copies;
        eventually("the intermediate receipts too", || {
            let n = receiver
                .got
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            async move { n >= expected }
        })
        .await;
        let got = receiver
            .got
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(got.len(), expected);
        assert!(got.iter().all(|r| r.part == WHOLE_MESSAGE));
        assert!(got.iter().any(|r| r.state == ReceiptState::Enroute));
        assert!(
            receiver
                .refused
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        );
    }

    #[tokio::test]
    async fn receipts_are_pushed_to_the_hook_and_parse_with_the_webhook() {
        push_end_to_end(Faults::default()).await;
    }

    #[tokio::test]
    async fn duplicated_and_shuffled_receipts_still_parse() {
        push_end_to_end(Faults {
            duplicate_receipts: true,
            shuffle_receipts: true,
            ..Faults::default()
        })
        .await;
    }

    #[tokio::test]
    async fn forged_reports_are_refused_by_the_webhook() {
        let sim_addr = start(settings()).await.expect("starts");
        let built = adapter(
            sim_addr,
            json!({"hook_url": "http://127.0.0.1:9/v1/receipts/alpha"}),
            KEY,
        );
        let webhook = built.webhook.expect("a webhook");
        let headers = HeaderMap::new();
        let body = br#"{"id":"01JV7Q8M4X2K9T3N5R6B8C0D1E","type":"sms","status":"DELIVERED"}"#;
        let request = WebhookRequest {
            headers: &headers,
            query: Some("token=guess&id=01JV7Q8M4X2K9T3N5R6B8C0D1E"),
            body,
        };
        assert_eq!(
            webhook.parse(&request, Utc::now()),
            Err(holub_shared::ports::WebhookError::Unauthorized)
        );
    }

    #[tokio::test]
    async fn balance_is_read_in_kopiykas() {
        let (_, built) = started(settings()).await;
        assert_eq!(built.provider.balance().await, Ok(Kopiyky(INITIAL_BALANCE)));
        let long = sms(&"Довгий текст ".repeat(10));
        built.provider.send(&sms("one")).await.expect("accepted");
        built.provider.send(&long).await.expect("accepted");
        let spent = 85 * (1 + i64::from(long.segments));
        assert_eq!(
            built.provider.balance().await,
            Ok(Kopiyky(INITIAL_BALANCE - spent))
        );
    }

    #[tokio::test]
    async fn wrong_credentials_are_permanent() {
        let addr = start(settings()).await.expect("starts");
        let built = adapter(addr, json!({}), "not-the-key");
        let denied = |e: ProviderError| {
            assert!(e.is_account(), "{e:?}");
            assert_eq!(e.code().to_string(), "provider_unauthorized");
        };
        denied(built.provider.send(&sms("hi")).await.expect_err("denied"));
        denied(built.provider.balance().await.expect_err("denied"));
        let never = MessageId::generate(Utc::now());
        denied(built.provider.lookup(&never).await.expect_err("denied"));
        let stats = sim_stats(addr).await;
        assert_eq!((stats.accepted, stats.submissions), (0, 0));
        assert_eq!(stats.refusals.get(AUTH.id), Some(&3));
    }

    #[tokio::test]
    async fn server_errors_and_rate_limits_are_temporary() {
        let down = with_faults(Faults {
            server_error_ratio: 1.0,
            ..Faults::default()
        });
        let (addr, built) = started(down).await;
        let e = built.provider.send(&sms("hi")).await.expect_err("down");
        assert!(matches!(e, ProviderError::Temporary { .. }), "{e:?}");
        assert_eq!(e.code().to_string(), "provider_unavailable");
        let e = built.provider.balance().await.expect_err("down");
        assert_eq!(e.code().to_string(), "provider_unavailable");
        assert_eq!(sim_stats(addr).await.submissions, 0);

        let limited = with_faults(Faults {
            rate_limit_ratio: 1.0,
            ..Faults::default()
        });
        let (addr, built) = started(limited).await;
        let e = built.provider.send(&sms("hi")).await.expect_err("limited");
        assert!(matches!(e, ProviderError::Temporary { .. }), "{e:?}");
        assert_eq!(e.code().to_string(), "provider_rate_limited");
        let e = built
            .provider
            .status(&[MessageId::generate(Utc::now()).to_string()])
            .await
            .expect_err("limited");
        assert_eq!(e.code().to_string(), "provider_rate_limited");
        assert_eq!(sim_stats(addr).await.submissions, 0);
    }

    #[tokio::test]
    async fn malformed_and_hung_answers_are_unknown_and_the_work_was_done() {
        let garbled = with_faults(Faults {
            malformed_ratio: 1.0,
            ..Faults::default()
        });
        let (addr, built) = started(garbled).await;
        let e = built.provider.send(&sms("hi")).await.expect_err("garbled");
        assert!(e.is_unknown(), "{e:?}");
        assert_eq!(e.code().to_string(), "provider_bad_answer");
        assert_eq!(sim_stats(addr).await.accepted, 1);
        assert!(
            built
                .provider
                .balance()
                .await
                .expect_err("garbled")
                .is_unknown()
        );

        let hung = with_faults(Faults {
            timeout_ratio: 1.0,
            ..Faults::default()
        });
        let addr = start(hung).await.expect("starts");
        let built = adapter(addr, json!({"timeout_ms": 300}), KEY);
        let e = built.provider.send(&sms("hi")).await.expect_err("hung");
        assert!(e.is_unknown(), "{e:?}");
        assert_eq!(e.code().to_string(), "provider_timeout");
        assert_eq!(sim_stats(addr).await.accepted, 1);
    }

    /// Posts `body` as AlphaSMS documents it; the answer's JSON and the rules it names.
    async fn call(addr: SocketAddr, body: &Value) -> (Value, Vec<String>) {
        let answer = reqwest::Client::new()
            .post(format!("http://{addr}{API_PATH}"))
            .json(body)
            .send()
            .await
            .expect("an answer");
        let rules = core::rules_named(&answer);
        (answer.json().await.expect("JSON"), rules)
    }

    /// A documented request, with the simulator's key in place of the example's.
    fn documented(fixture: &str) -> Value {
        let mut request: Value = serde_json::from_str(fixture).expect("fixture JSON");
        request["auth"] = json!(KEY);
        request
    }

    #[tokio::test]
    async fn the_documented_examples_are_answered_in_the_documented_shape() {
        let addr = start(settings()).await.expect("starts");
        let fixture = |text: &str| serde_json::from_str::<Value>(text).expect("fixture JSON");
        let mut send = documented(include_str!(
            "../../../shared/src/adapters/providers/alphasms/fixtures/send_request.json"
        ));
        send["data"][0]["hook"] = json!("http://127.0.0.1:9/webhook/url.php");
        let (answer, rules) = call(addr, &send).await;
        assert!(rules.is_empty(), "{rules:?}");
        core::assert_same_shape(
            &answer,
            &fixture(include_str!(
                "../../../shared/src/adapters/providers/alphasms/fixtures/send_response_success.json"
            )),
        );
        assert_eq!(answer["data"][0]["data"]["id"], json!(100500));

        let (answer, rules) = call(addr, &send).await;
        assert_eq!(rules, [DUPLICATE.id]);
        assert_eq!(
            answer["data"][0]["error"],
            json!("A message with the specified ID already exists")
        );

        let status = documented(include_str!(
            "../../../shared/src/adapters/providers/alphasms/fixtures/status_request.json"
        ));
        let (answer, _) = call(addr, &status).await;
        core::assert_same_shape(
            &answer,
            &fixture(include_str!(
                "../../../shared/src/adapters/providers/alphasms/fixtures/status_response.json"
            )),
        );

        let balance = documented(include_str!(
            "../../../shared/src/adapters/providers/alphasms/fixtures/balance_request.json"
        ));
        let (answer, _) = call(addr, &balance).await;
        core::assert_same_shape(
            &answer,
            &fixture(include_str!(
                "../../../shared/src/adapters/providers/alphasms/fixtures/balance_response.json"
            )),
        );

        let mut denied = balance.clone();
        denied["auth"] = json!("wrong");
        let (answer, rules) = call(addr, &denied).await;
        assert_eq!(
            answer,
            fixture(include_str!(
                "../../../shared/src/adapters/providers/alphasms/fixtures/send_response_access_denied.json"
            ))
        );
        assert_eq!(rules, [AUTH.id]);

        let mut unsigned = documented(include_str!(
            "../../../shared/src/adapters/providers/alphasms/fixtures/send_request.json"
        ));
        unsigned["data"][0]["id"] = json!(100501);
        unsigned["data"][0]["sms_signature"] = json!("TooLongName1");
        let (answer, _) = call(addr, &unsigned).await;
        let mut expected = fixture(include_str!(
            "../../../shared/src/adapters/providers/alphasms/fixtures/send_response_alpha_name_error.json"
        ));
        expected["data"][0]["data"]["id"] = json!(100501);
        assert_eq!(answer, expected);
    }

    fn command(changes: Value) -> Value {
        let mut command = json!({
            "type": "sms", "id": 100500, "phone": 380971234567u64,
            "sms_signature": "SMSTest", "sms_message": "Message text to be sent via SMS",
            "sms_lifetime": 172800
        });
        if let (Some(map), Some(changes)) = (command.as_object_mut(), changes.as_object()) {
            for (key, value) in changes {
                if value.is_null() {
                    map.remove(key);
                } else {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        command
    }

    #[tokio::test]
    async fn every_rule_is_enforced_named_and_counted() {
        let poor = SimSettings {
            start_balance: Some(1000),
            ..settings()
        };
        let addr = start(poor).await.expect("starts");
        let client = reqwest::Client::new();
        let url = format!("http://{addr}{API_PATH}");
        // (rule, request body)
        let cases: Vec<(&Rule, Value)> = vec![
            (
                &AUTH,
                json!({"auth": "wrong", "data": [{"type": "balance"}]}),
            ),
            (&BODY, Value::String("{not json".into())),
            (&DATA, json!({"auth": KEY, "data": []})),
            (&DATA, json!({"auth": KEY, "data": 5})),
            (&TYPE, json!({"auth": KEY, "data": [{"type": "fax"}]})),
            (
                &ID,
                json!({"auth": KEY, "data": [command(json!({"id": "01JV7Q8M4X2K9T3N5R6B8C0D1E"}))]}),
            ),
            (
                &ID,
                json!({"auth": KEY, "data": [command(json!({"id": 9007199254740992u64}))]}),
            ),
            (
                &ID,
                json!({"auth": KEY, "data": [command(json!({"id": 0}))]}),
            ),
            (
                &ID,
                json!({"auth": KEY, "data": [{"type": "status", "id": "x"}]}),
            ),
            (
                &PHONE,
                json!({"auth": KEY, "data": [command(json!({"phone": "380971234567"}))]}),
            ),
            (
                &PHONE,
                json!({"auth": KEY, "data": [command(json!({"phone": 123456}))]}),
            ),
            (
                &SIGNATURE,
                json!({"auth": KEY, "data": [command(json!({"sms_signature": "TooLongName1"}))]}),
            ),
            (
                &SIGNATURE,
                json!({"auth": KEY, "data": [command(json!({"sms_signature": 5}))]}),
            ),
            (
                &SIGNATURE,
                json!({"auth": KEY, "data": [command(json!({"sms_signature": null}))]}),
            ),
            (
                &LIFETIME,
                json!({"auth": KEY, "data": [command(json!({"sms_lifetime": 3599}))]}),
            ),
            (
                &LIFETIME,
                json!({"auth": KEY, "data": [command(json!({"sms_lifetime": 259201}))]}),
            ),
            (
                &LIFETIME,
                json!({"auth": KEY, "data": [command(json!({"sms_lifetime": "3600"}))]}),
            ),
            (
                &MESSAGE,
                json!({"auth": KEY, "data": [command(json!({"sms_message": ""}))]}),
            ),
            (
                &MESSAGE,
                json!({"auth": KEY, "data": [command(json!({"sms_message": null}))]}),
            ),
            (
                &HOOK,
                json!({"auth": KEY, "data": [command(json!({"hook": "not a url"}))]}),
            ),
            (
                &BILLING,
                json!({"auth": KEY, "data": [command(json!({"id": 7, "sms_message": "x".repeat(2000)}))]}),
            ),
            (
                &NOT_FOUND,
                json!({"auth": KEY, "data": [{"type": "status", "id": 404}]}),
            ),
            (
                &DUPLICATE,
                json!({"auth": KEY, "data": [command(json!({"id": 1})), command(json!({"id": 1}))]}),
            ),
        ];
        for (rule, body) in &cases {
            let request = match body {
                Value::String(raw) => client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(raw.clone()),
                body => client.post(&url).json(body),
            };
            let answer = request.send().await.expect("an answer");
            let named = core::rules_named(&answer);
            assert_eq!(named.last().map(String::as_str), Some(rule.id), "{body}");
            let answer: Value = answer.json().await.expect("JSON");
            let error = answer["data"][0]["error"]
                .as_str()
                .or(answer["error"].as_str())
                .or(answer["data"][1]["error"].as_str());
            assert_eq!(error, Some(rule.answer), "{body}: {answer}");
        }
        let plain = client
            .post(&url)
            .body(json!({"auth": KEY, "data": [{"type": "balance"}]}).to_string())
            .send()
            .await
            .expect("an answer");
        assert_eq!(plain.headers()[core::RULE_HEADER], CONTENT_TYPE.id);
        let stats = sim_stats(addr).await;
        core::assert_every_rule_applied(RULES, &stats);
        // The documented limits themselves are taken.
        for changes in [
            json!({"id": 9007199254740991u64}),
            json!({"id": 2, "sms_lifetime": 3600}),
            json!({"id": 3, "sms_lifetime": 259200}),
            json!({"id": 4, "sms_lifetime": null}),
            json!({"id": 5, "sms_signature": "ElevenChars"}),
            json!({"id": 6, "sms_signature": "380971234567"}),
        ] {
            let (answer, rules) = call(
                addr,
                &json!({"auth": KEY, "data": [command(changes.clone())]}),
            )
            .await;
            assert!(rules.is_empty(), "{changes}: {rules:?} {answer}");
        }
    }

    /// Everything the adapter does, at the edges of what Holub sends, within every rule.
    #[tokio::test]
    async fn the_adapter_breaks_no_rule() {
        let (addr, built) = started(settings()).await;
        let provider = &built.provider;
        let mut short_lived = sms("Ваш код: 4821");
        short_lived.validity_seconds = 60;
        let mut long_lived = sms("Нагадування");
        long_lived.validity_seconds = 7 * 86_400;
        let sent = provider.send(&short_lived).await.expect("accepted");
        provider.send(&long_lived).await.expect("accepted");
        let many = provider
            .send_many(&[sms("one"), sms(&"Довгий текст ".repeat(10))])
            .await;
        assert!(many.iter().all(Result::is_ok), "{many:?}");
        let receipts = provider
            .status(&[sent.provider_message_id])
            .await
            .expect("answered");
        assert_eq!(receipts.len(), 1);
        assert!(
            provider
                .lookup(&short_lived.id)
                .await
                .expect("answered")
                .is_some()
        );
        provider.balance().await.expect("a balance");
        let stats = sim_stats(addr).await;
        assert!(stats.refusals.is_empty(), "{:?}", stats.refusals);
        assert_eq!(stats.accepted, 4);
    }
}
