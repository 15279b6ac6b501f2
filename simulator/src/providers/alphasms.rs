//! A simulator of AlphaSMS's JSON API (see `holub_shared::adapters::providers::alphasms` for
//! the API and its sources), on loopback, state in memory.
//!
//! - `POST /api/json.php`, `Content-Type: application/json`, body `{"auth": "<api key>",
//!   "data": [commands]}`; the API key is `settings.credentials.api_key`. A wrong key is
//!   answered `200 {"success": false, "error": "Access denied"}`, as documented.
//! - `{"type": "sms", "id", "phone", "sms_signature", "sms_message", "sms_lifetime",
//!   "hook"}` → `{"success": true, "data": {"id", "msg_id", "data": 1, "parts"}}`, or
//!   `{"success": false, "error": "…", "data": {"id"}}`, the documented shape of a refused
//!   command ("Error in Alpha-name"). The error text is the XML API's description of the
//!   error ("Wrong message ID", "Incorrect recipient number", "Error in Alpha-name",
//!   "Message too long or empty", "Billing error"), followed by the rule that was broken
//!   and its source; [`check_sms`] holds the rules. Each client `id` is taken once: a repeat
//!   is answered as the original and counted as a duplicate. Each part costs
//!   `cost_per_part` kopiykas off the balance (1000 UAH at the start).
//! - `{"type": "status", "id"}` → `{"id", "type": "sms", "status"}`: `QUEUED` until
//!   `receipt_delay` has passed, then `DELIVERED` or `UNDELIVERABLE` by [`delivered`]
//!   (decided at send); an unknown id is `{"success": false, "error": "Message not
//!   found"}`, an invalid one is refused as in a send.
//! - `{"type": "balance"}` → `{"amount", "currency": "UAH"}`.
//! - Delivery reports: for a message sent with a `hook` (else to `settings.receipts_url`, if
//!   set), `POST <hook>` with the status item `{"id", "type": "sms", "status"}`: `ROUTING`
//!   at a quarter of `receipt_delay`, the final state at `receipt_delay`. A report the
//!   receiver does not take (no connection, 408, 429, 5xx) is posted again with a backoff
//!   from 100 ms to 2 s, for up to 10 minutes; a 4xx drops it. `duplicate_receipts` posts
//!   each twice; `shuffle_receipts` jitters them and sometimes posts the intermediate state
//!   after the final one.
//! - Faults, rolled once per request: `ServerError` → `503` (plain text, as a proxy in
//!   front of the API would); `RateLimited` → `429 {"success": false, "error": "Too many
//!   requests"}` (AlphaSMS documents no rate-limit answer: this is the simulator's choice);
//!   `Malformed` → the work is done, then a truncated body; `Hang` → the work is done, then
//!   no answer for [`HANG`].
//! - `GET /__sim/stats` → `{"accepted", "submissions", "duplicates"}` (simulator only).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use holub_shared::domain::segments;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Fault, HANG, SimSettings, delivered};

pub const API_PATH: &str = "/api/json.php";
pub const STATS_PATH: &str = "/__sim/stats";
/// What the account holds at the start, in kopiykas.
pub const INITIAL_BALANCE: i64 = 100_000;
/// Most parts of one message: the concatenation header counts parts in one octet
/// (3GPP TS 23.040 §9.2.3.24.1).
const MAX_PARTS: usize = 255;
/// The client `id`: documented as a number (docs.alphasms.net/api/json/send_sms, "unique
/// message identifier in the client system") with no range; positive, and at most 2^53-1,
/// the largest integer every JSON reader keeps exact (RFC 8259 §6).
const CLIENT_ID: RangeInclusive<u64> = 1..=(1 << 53) - 1;
/// `sms_lifetime` in seconds, as documented (docs.alphasms.net/api/json/send_sms).
const SMS_LIFETIME: RangeInclusive<u64> = 3_600..=259_200;
/// `phone`: a number (the documented example, `380971234567`) of at most 15 digits
/// (ITU-T E.164 §6); the shortest assigned international numbers have 7.
const PHONE_DIGITS: RangeInclusive<usize> = 7..=15;
/// `sms_signature`: an alphanumeric originator has at most 11 characters (3GPP TS 23.040
/// §9.1.2.5), a numeric one is an E.164 number.
const ALPHA_NAME_CHARS: RangeInclusive<usize> = 1..=11;
const NUMERIC_SENDER_DIGITS: RangeInclusive<usize> = 1..=15;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// The simulator's counters, as `GET /__sim/stats` shows them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages taken (each client id once).
    pub accepted: u64,
    /// Send commands received, duplicates and refusals included.
    pub submissions: u64,
    /// Send commands whose client id was already taken.
    pub duplicates: u64,
}

/// The credentials it accepts (other keys, such as `hook_token`, are Holub's business).
#[derive(Deserialize)]
struct SimCredentials {
    api_key: String,
}

/// One AlphaSMS simulator: cheap to clone, every clone is the same simulator.
#[derive(Clone)]
pub struct AlphaSmsSim {
    shared: Arc<Shared>,
}

struct Shared {
    settings: SimSettings,
    api_key: Option<String>,
    http: reqwest::Client,
    state: Mutex<Inner>,
}

struct Inner {
    messages: HashMap<u64, Record>,
    next_msg_id: u64,
    balance: i64,
    stats: Stats,
}

struct Record {
    id: u64,
    msg_id: u64,
    parts: u16,
    delivered: bool,
    due: Instant,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    data: Option<Vec<Command>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Command {
    Sms(SmsCommand),
    Status {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
    Balance,
    #[serde(other)]
    Other,
}

/// A send command, every field as the JSON it came as, so that a wrong type is refused
/// with the rule it broke rather than failing the whole request.
#[derive(Deserialize)]
struct SmsCommand {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    phone: Option<serde_json::Value>,
    #[serde(default)]
    sms_signature: Option<serde_json::Value>,
    #[serde(default)]
    sms_message: Option<serde_json::Value>,
    #[serde(default)]
    sms_lifetime: Option<serde_json::Value>,
    #[serde(default)]
    hook: Option<String>,
}

/// A refused command: the XML API's description of the error, then the rule and its source.
fn refusal(description: &str, rule: &str) -> String {
    format!("{description}: {rule}")
}

/// The client id of a send or status command, or why it is refused.
fn client_id(id: Option<&serde_json::Value>) -> Result<u64, String> {
    let rule = "id must be an integer from 1 to 9007199254740991 \
                (docs.alphasms.net/api/json/send_sms: a number; RFC 8259 §6)";
    id.and_then(serde_json::Value::as_u64)
        .filter(|n| CLIENT_ID.contains(n))
        .ok_or_else(|| refusal("Wrong message ID", rule))
}

/// The documented rules of a send command other than the id: the message's part count, or
/// the refusal.
fn check_sms(command: &SmsCommand) -> Result<u16, String> {
    let phone = command
        .phone
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .filter(|n| PHONE_DIGITS.contains(&n.to_string().len()));
    if phone.is_none() {
        return Err(refusal(
            "Incorrect recipient number",
            "phone must be an integer of 7 to 15 digits \
             (docs.alphasms.net/api/json/send_sms example; ITU-T E.164)",
        ));
    }
    let signature = command
        .sms_signature
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .filter(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                NUMERIC_SENDER_DIGITS.contains(&s.len())
            } else {
                ALPHA_NAME_CHARS.contains(&s.chars().count()) && !s.trim().is_empty()
            }
        });
    if signature.is_none() {
        return Err(refusal(
            "Error in Alpha-name",
            "sms_signature must be a string of 1 to 11 characters, or of up to 15 digits \
             (3GPP TS 23.040 §9.1.2.5)",
        ));
    }
    let lifetime_ok = match &command.sms_lifetime {
        None => true,
        Some(value) => value.as_u64().is_some_and(|s| SMS_LIFETIME.contains(&s)),
    };
    if !lifetime_ok {
        return Err(refusal(
            "Invalid sms_lifetime",
            "sms_lifetime must be an integer from 3600 to 259200 seconds \
             (docs.alphasms.net/api/json/send_sms)",
        ));
    }
    let parts = command
        .sms_message
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .map(|text| segments::estimate(text).segments)
        .filter(|parts| (1..=MAX_PARTS).contains(parts))
        .and_then(|parts| u16::try_from(parts).ok());
    parts.ok_or_else(|| {
        refusal(
            "Message too long or empty",
            "sms_message must be a string of 1 to 255 SMS parts (3GPP TS 23.040 §9.2.3.24.1)",
        )
    })
}

fn ok_item(data: serde_json::Value) -> serde_json::Value {
    json!({"success": true, "data": data})
}

fn error_item(error: &str, id: Option<serde_json::Value>) -> serde_json::Value {
    match id {
        Some(id) => json!({"success": false, "error": error, "data": {"id": id}}),
        None => json!({"success": false, "error": error}),
    }
}

fn whole_error(error: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"success": false, "error": error})),
    )
        .into_response()
}

/// A report to push.
struct Report {
    url: String,
    body: serde_json::Value,
    after: Duration,
}

impl AlphaSmsSim {
    pub fn new(settings: SimSettings) -> Self {
        let api_key = serde_json::from_value::<SimCredentials>(settings.credentials.clone())
            .ok()
            .map(|c| c.api_key)
            .filter(|k| !k.is_empty());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        AlphaSmsSim {
            shared: Arc::new(Shared {
                settings,
                api_key,
                http,
                state: Mutex::new(Inner {
                    messages: HashMap::new(),
                    next_msg_id: 100_000_000,
                    balance: INITIAL_BALANCE,
                    stats: Stats::default(),
                }),
            }),
        }
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn authorized(&self, auth: Option<&str>) -> bool {
        match (&self.shared.api_key, auth) {
            (Some(key), Some(auth)) => key.as_bytes() == auth.as_bytes(),
            _ => false,
        }
    }

    /// One send command: its answer item, and the reports to push if it was taken.
    fn send(&self, command: SmsCommand, reports: &mut Vec<Report>) -> serde_json::Value {
        let settings = &self.shared.settings;
        let key = match client_id(command.id.as_ref()) {
            Ok(key) => key,
            Err(error) => {
                self.lock().stats.submissions += 1;
                return error_item(&error, command.id.clone());
            }
        };
        let echo = json!(key);
        // Checked outside the lock.
        let checked = check_sms(&command);
        let mut inner = self.lock();
        inner.stats.submissions += 1;
        if let Some(record) = inner.messages.get(&key) {
            let answer = ok_item(json!({
                "id": record.id, "msg_id": record.msg_id, "data": 1, "parts": record.parts
            }));
            inner.stats.duplicates += 1;
            return answer;
        }
        let parts = match checked {
            Ok(parts) => parts,
            Err(error) => return error_item(&error, Some(echo)),
        };
        let cost = settings.cost_per_part.saturating_mul(i64::from(parts));
        if inner.balance < cost {
            return error_item("Billing error", Some(echo));
        }
        inner.balance -= cost;
        inner.next_msg_id += 1;
        let msg_id = inner.next_msg_id;
        let is_delivered = delivered(settings);
        inner.messages.insert(
            key,
            Record {
                id: key,
                msg_id,
                parts,
                delivered: is_delivered,
                due: Instant::now() + settings.receipt_delay,
            },
        );
        inner.stats.accepted += 1;
        drop(inner);
        let target = command.hook.or_else(|| settings.receipts_url.clone());
        if let Some(url) = target {
            self.plan_reports(url, &echo, is_delivered, reports);
        }
        ok_item(json!({"id": echo, "msg_id": msg_id, "data": 1, "parts": parts}))
    }

    fn plan_reports(
        &self,
        url: String,
        id: &serde_json::Value,
        is_delivered: bool,
        reports: &mut Vec<Report>,
    ) {
        let faults = &self.shared.settings.faults;
        let delay = self.shared.settings.receipt_delay;
        let final_status = if is_delivered {
            "DELIVERED"
        } else {
            "UNDELIVERABLE"
        };
        let mut planned = vec![("ROUTING", delay / 4), (final_status, delay)];
        if faults.shuffle_receipts {
            let mut rng = rand::rng();
            let spread = u64::try_from(delay.as_millis() / 2)
                .unwrap_or(u64::MAX)
                .max(1);
            for (_, after) in &mut planned {
                *after += Duration::from_millis(rng.random_range(0..=spread));
            }
            if rng.random_bool(0.5) {
                planned[0].1 = planned[1].1 + Duration::from_millis(rng.random_range(1..=spread));
            }
        }
        let copies = if faults.duplicate_receipts { 2 } else { 1 };
        for (status, after) in planned {
            for _ in 0..copies {
                reports.push(Report {
                    url: url.clone(),
                    body: json!({"id": id, "type": "sms", "status": status}),
                    after,
                });
            }
        }
    }

    fn status(&self, id: Option<serde_json::Value>) -> serde_json::Value {
        let key = match client_id(id.as_ref()) {
            Ok(key) => key,
            Err(error) => return error_item(&error, id),
        };
        let inner = self.lock();
        let Some(record) = inner.messages.get(&key) else {
            return error_item("Message not found", Some(json!(key)));
        };
        let status = match (Instant::now() >= record.due, record.delivered) {
            (false, _) => "QUEUED",
            (true, true) => "DELIVERED",
            (true, false) => "UNDELIVERABLE",
        };
        ok_item(json!({"id": record.id, "type": "sms", "status": status}))
    }

    fn balance(&self) -> serde_json::Value {
        let kopiyky = self.lock().balance;
        // Hryvnias as a JSON number, as documented (the simulator may use a float).
        ok_item(json!({"amount": kopiyky as f64 / 100.0, "currency": "UAH"}))
    }

    /// Posts one report when it is due, again and again while the receiver is down.
    async fn push(self, report: Report) {
        tokio::time::sleep(report.after).await;
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let result = self
                .shared
                .http
                .post(&report.url)
                .json(&report.body)
                .send()
                .await;
            match result {
                Ok(response) if response.status().is_success() => return,
                Ok(response)
                    if response.status().is_client_error()
                        && response.status() != StatusCode::REQUEST_TIMEOUT
                        && response.status() != StatusCode::TOO_MANY_REQUESTS =>
                {
                    tracing::warn!(
                        status = response.status().as_u16(),
                        "alphasms sim: the receiver refused a report; dropping it"
                    );
                    return;
                }
                Ok(response) => {
                    tracing::debug!(
                        status = response.status().as_u16(),
                        "alphasms sim: report not taken"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "alphasms sim: report not posted"),
            }
            if started.elapsed() > GIVE_UP_AFTER {
                tracing::warn!("alphasms sim: giving up on a report");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

async fn api(State(sim): State<AlphaSmsSim>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = sim.shared.settings.faults.roll().await;
    match fault {
        Fault::ServerError => {
            return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
        }
        Fault::RateLimited => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"success": false, "error": "Too many requests"})),
            )
                .into_response();
        }
        Fault::None | Fault::Malformed | Fault::Hang => {}
    }
    let json_content = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_content {
        return whole_error("Invalid request: Content-Type must be application/json");
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&body) else {
        return whole_error("Invalid request");
    };
    if !sim.authorized(envelope.auth.as_deref()) {
        return whole_error("Access denied");
    }
    let Some(commands) = envelope.data.filter(|d| !d.is_empty()) else {
        return whole_error("Invalid request: empty data");
    };
    let mut reports = Vec::new();
    let items: Vec<serde_json::Value> = commands
        .into_iter()
        .map(|command| match command {
            Command::Sms(sms) => sim.send(sms, &mut reports),
            Command::Status { id } => sim.status(id),
            Command::Balance => sim.balance(),
            Command::Other => error_item("Unknown request type", None),
        })
        .collect();
    for report in reports {
        tokio::spawn(sim.clone().push(report));
    }
    match fault {
        Fault::Malformed => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"success":true,"data":[{"success":tr"#,
            )
                .into_response();
        }
        Fault::Hang => tokio::time::sleep(HANG).await,
        _ => {}
    }
    (
        StatusCode::OK,
        axum::Json(json!({"success": true, "data": items})),
    )
        .into_response()
}

async fn stats(State(sim): State<AlphaSmsSim>) -> axum::Json<Stats> {
    axum::Json(sim.stats())
}

/// The simulator's endpoints over `sim`.
pub fn router(sim: AlphaSmsSim) -> Router {
    Router::new()
        .route(API_PATH, post(api))
        .route(STATS_PATH, get(stats))
        .with_state(sim)
}

/// Starts a simulator on 127.0.0.1 with a port of the system's choosing, serving in the
/// background until the runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("alphasms", router(AlphaSmsSim::new(settings))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Faults;
    use chrono::Utc;
    use holub_shared::adapters::providers::alphasms::{
        self, build,
        wire::{Answer, BalanceData, SendData, StatusData, parse},
    };
    use holub_shared::adapters::providers::{Built, http::codes};
    use holub_shared::domain::status::ReceiptState;
    use holub_shared::domain::{Kopiyky, MessageId, PhoneNumber, SenderId};
    use holub_shared::ports::provider::WHOLE_MESSAGE;
    use holub_shared::ports::{
        OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, Secret, WebhookRequest,
    };

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

    async fn raw(addr: SocketAddr, body: serde_json::Value) -> Vec<u8> {
        reqwest::Client::new()
            .post(format!("http://{addr}{API_PATH}"))
            .json(&body)
            .send()
            .await
            .expect("an answer")
            .bytes()
            .await
            .expect("a body")
            .to_vec()
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
        let again = provider.send(&one).await.expect("answered as the original");
        assert_eq!(again, submitted);
        assert_eq!(
            sim_stats(addr).await,
            Stats {
                accepted: 1,
                submissions: 2,
                duplicates: 1
            }
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
        assert_eq!(e.code(), alphasms::error_codes::INVALID_TEXT);
        assert!(
            e.to_string()
                .contains("Message too long or empty: sms_message"),
            "{e}"
        );
        let poor = SimSettings {
            cost_per_part: INITIAL_BALANCE + 1,
            ..settings()
        };
        let (_, built) = started(poor).await;
        let e = built.provider.send(&sms("hi")).await.expect_err("refused");
        assert!(e.is_account(), "{e:?}");
        assert_eq!(e.code(), alphasms::error_codes::INSUFFICIENT_BALANCE);
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
        let unauthorized = ProviderError::account(codes::UNAUTHORIZED, "alpha: Access denied");
        assert_eq!(
            built.provider.send(&sms("hi")).await,
            Err(unauthorized.clone())
        );
        assert_eq!(built.provider.balance().await, Err(unauthorized.clone()));
        assert_eq!(
            built
                .provider
                .lookup(&MessageId::generate(Utc::now()))
                .await,
            Err(unauthorized)
        );
        assert_eq!(sim_stats(addr).await, Stats::default());
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
        assert_eq!(e.code(), codes::UNAVAILABLE);
        let e = built.provider.balance().await.expect_err("down");
        assert_eq!(e.code(), codes::UNAVAILABLE);
        assert_eq!(sim_stats(addr).await.submissions, 0);

        let limited = with_faults(Faults {
            rate_limit_ratio: 1.0,
            ..Faults::default()
        });
        let (addr, built) = started(limited).await;
        let e = built.provider.send(&sms("hi")).await.expect_err("limited");
        assert!(matches!(e, ProviderError::Temporary { .. }), "{e:?}");
        assert_eq!(e.code(), codes::RATE_LIMITED);
        let e = built
            .provider
            .status(&[MessageId::generate(Utc::now()).to_string()])
            .await
            .expect_err("limited");
        assert_eq!(e.code(), codes::RATE_LIMITED);
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
        assert_eq!(e.code(), codes::BAD_ANSWER);
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
        assert_eq!(e.code(), codes::TIMEOUT);
        assert_eq!(sim_stats(addr).await.accepted, 1);
    }

    #[tokio::test]
    async fn answers_have_the_documented_shape() {
        let addr = start(settings()).await.expect("starts");
        let send = raw(
            addr,
            json!({"auth": KEY, "data": [{
                "type": "sms", "id": 100500, "phone": 380971234567u64,
                "sms_signature": "SMSTest", "sms_message": "Message text to be sent via SMS",
                "sms_lifetime": 172800, "short_link": true, "unsubscribe_link": true,
                "hook": "http://127.0.0.1:9/webhook/url.php"
            }, {
                "type": "sms", "id": 100501, "phone": 380971234567u64,
                "sms_signature": "TooLongName1", "sms_message": "x"
            }]}),
        )
        .await;
        let answer: Answer<SendData> = parse(&send).expect("the documented send answer");
        assert!(answer.success.0);
        let items = answer.data.expect("items");
        assert_eq!(items.len(), 2);
        assert!(items[0].success.0);
        let data = items[0].data.as_ref().expect("data");
        assert_eq!(data.id.as_deref(), Some("100500"));
        assert!(data.msg_id.is_some());
        assert_eq!(data.parts.as_deref(), Some("1"));
        assert!(!items[1].success.0);
        assert!(
            items[1]
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("Error in Alpha-name: sms_signature")),
            "{:?}",
            items[1].error
        );
        assert_eq!(
            items[1].data.as_ref().and_then(|d| d.id.as_deref()),
            Some("100501")
        );

        let status = raw(
            addr,
            json!({"auth": KEY, "data": [{"type": "status", "id": 100500}]}),
        )
        .await;
        let answer: Answer<StatusData> = parse(&status).expect("the documented status answer");
        let items = answer.data.expect("items");
        let data = items[0].data.as_ref().expect("data");
        assert_eq!(data.id.as_deref(), Some("100500"));
        assert_eq!(data.kind.as_deref(), Some("sms"));
        assert!(
            data.status
                .as_deref()
                .and_then(alphasms::receipt_state)
                .is_some()
        );

        let balance = raw(addr, json!({"auth": KEY, "data": [{"type": "balance"}]})).await;
        let answer: Answer<BalanceData> = parse(&balance).expect("the documented balance answer");
        let items = answer.data.expect("items");
        let data = items[0].data.as_ref().expect("data");
        assert_eq!(data.currency.as_deref(), Some("UAH"));
        assert!(data.amount.is_some());

        let denied = raw(
            addr,
            json!({"auth": "wrong", "data": [{"type": "balance"}]}),
        )
        .await;
        let answer: Answer<BalanceData> = parse(&denied).expect("the documented refusal");
        assert!(!answer.success.0);
        assert_eq!(answer.error.as_deref(), Some("Access denied"));
        assert!(answer.data.is_none());
    }

    /// Sends one raw command; the answer item's `success` and `error`.
    async fn one(addr: SocketAddr, command: serde_json::Value) -> (bool, Option<String>) {
        let body = raw(addr, json!({"auth": KEY, "data": [command]})).await;
        let answer: Answer<SendData> = parse(&body).expect("the documented answer");
        assert!(answer.success.0, "{}", String::from_utf8_lossy(&body));
        let items = answer.data.expect("items");
        assert_eq!(items.len(), 1);
        (items[0].success.0, items[0].error.clone())
    }

    fn command(changes: serde_json::Value) -> serde_json::Value {
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
    async fn the_old_requests_are_refused() {
        let addr = start(settings()).await.expect("starts");
        // What Holub sent before: the ULID as a text id, the raw validity of an OTP.
        let (ok, error) = one(addr, command(json!({"id": "01JV7Q8M4X2K9T3N5R6B8C0D1E"}))).await;
        assert!(!ok);
        let error = error.expect("an error");
        assert!(
            error.starts_with("Wrong message ID: id must be an integer"),
            "{error}"
        );
        let (ok, error) = one(addr, command(json!({"id": 100501, "sms_lifetime": 599}))).await;
        assert!(!ok);
        let error = error.expect("an error");
        assert!(
            error.starts_with("Invalid sms_lifetime: sms_lifetime must be"),
            "{error}"
        );
        // The adapter maps both to permanent failures of the message.
        assert_eq!(
            alphasms::classify("Wrong message ID: x", alphasms::Scope::Message).1,
            alphasms::error_codes::INVALID_CLIENT_ID
        );
        assert_eq!(sim_stats(addr).await.accepted, 0);
        // While the adapter's request for the same OTP is taken.
        let built = adapter(addr, json!({}), KEY);
        let mut otp = sms("Ваш код: 4821");
        otp.validity_seconds = 599;
        built.provider.send(&otp).await.expect("accepted");
        assert_eq!(sim_stats(addr).await.accepted, 1);
    }

    #[tokio::test]
    async fn every_documented_rule_is_enforced_and_named() {
        let addr = start(settings()).await.expect("starts");
        let refused: &[(serde_json::Value, &str)] = &[
            (json!({"id": null}), "Wrong message ID: id must be"),
            (json!({"id": "100500"}), "Wrong message ID: id must be"),
            (json!({"id": 0}), "Wrong message ID: id must be"),
            (json!({"id": -5}), "Wrong message ID: id must be"),
            (json!({"id": 1.5}), "Wrong message ID: id must be"),
            (
                json!({"id": 9007199254740992u64}),
                "Wrong message ID: id must be",
            ),
            (
                json!({"phone": null}),
                "Incorrect recipient number: phone must be",
            ),
            (
                json!({"phone": "380971234567"}),
                "Incorrect recipient number: phone must be",
            ),
            (
                json!({"phone": 3809712345671234u64}),
                "Incorrect recipient number: phone must be",
            ),
            (
                json!({"phone": 123456}),
                "Incorrect recipient number: phone must be",
            ),
            (
                json!({"sms_signature": null}),
                "Error in Alpha-name: sms_signature must be",
            ),
            (
                json!({"sms_signature": ""}),
                "Error in Alpha-name: sms_signature must be",
            ),
            (
                json!({"sms_signature": "TooLongName1"}),
                "Error in Alpha-name: sms_signature must be",
            ),
            (
                json!({"sms_signature": "3809712345671234"}),
                "Error in Alpha-name: sms_signature must be",
            ),
            (
                json!({"sms_signature": 5}),
                "Error in Alpha-name: sms_signature must be",
            ),
            (
                json!({"sms_lifetime": 3599}),
                "Invalid sms_lifetime: sms_lifetime must be",
            ),
            (
                json!({"sms_lifetime": 259201}),
                "Invalid sms_lifetime: sms_lifetime must be",
            ),
            (
                json!({"sms_lifetime": "3600"}),
                "Invalid sms_lifetime: sms_lifetime must be",
            ),
            (
                json!({"sms_message": null}),
                "Message too long or empty: sms_message must be",
            ),
            (
                json!({"sms_message": ""}),
                "Message too long or empty: sms_message must be",
            ),
            (
                json!({"sms_message": 5}),
                "Message too long or empty: sms_message must be",
            ),
        ];
        for (changes, expected) in refused {
            let (ok, error) = one(addr, command(changes.clone())).await;
            assert!(!ok, "{changes} was taken");
            let error = error.unwrap_or_default();
            assert!(error.starts_with(expected), "{changes}: {error}");
            // Every refusal names its source.
            assert!(error.contains('(') && error.ends_with(')'), "{error}");
        }
        assert_eq!(sim_stats(addr).await.accepted, 0);
        let taken = [
            json!({"id": 1}),
            json!({"id": 9007199254740991u64}),
            json!({"id": 100501, "sms_lifetime": 3600}),
            json!({"id": 100502, "sms_lifetime": 259200}),
            json!({"id": 100503, "sms_lifetime": null}),
            json!({"id": 100504, "sms_signature": "ElevenChars"}),
            json!({"id": 100505, "sms_signature": "380971234567"}),
        ];
        for changes in &taken {
            let (ok, error) = one(addr, command(changes.clone())).await;
            assert!(ok, "{changes}: {error:?}");
        }
        assert_eq!(sim_stats(addr).await.accepted, 7);
        // A status query is held to the same id rule.
        let body = raw(
            addr,
            json!({"auth": KEY, "data": [{"type": "status", "id": "01JV7Q8M4X2K9T3N5R6B8C0D1E"}]}),
        )
        .await;
        let answer: Answer<StatusData> = parse(&body).expect("the documented answer");
        let items = answer.data.expect("items");
        assert!(!items[0].success.0);
        assert!(
            items[0]
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("Wrong message ID")),
            "{:?}",
            items[0].error
        );
    }
}
