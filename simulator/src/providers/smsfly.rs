//! A stand-in for SMS Fly API v2 on loopback, speaking its wire format (see
//! `holub_shared::adapters::providers::smsfly` for the format and its sources).
//!
//! - `POST /api/v2/api.php` with `{"auth": {"key"}, "action", "data"}`: `SENDMESSAGE`,
//!   `GETMESSAGESTATUS`, `GETBALANCE`. The key must be the `key` of
//!   [`SimSettings::credentials`] (`{"key": "..."}`); any other key, or settings without one,
//!   is answered `FORBIDDEN`. Answers are `200` with `{"success": 1, "date", "data"}` or
//!   `{"success": 0, "date", "error": {"code", "date", "description"}}`, with the documented
//!   codes (`INVREQUEST`, `INVACTION`, `INVRECIPIENT`, `INVSOURCE`, `INVTEXT`, `INVCHANNELS`,
//!   `INVSMSMESSAGE`, `INVMSGID`, `INSUFFICIENTFUNDS`, `FORBIDDEN`).
//! - Sends are priced `cost_per_part` per part (as a 3-decimal hryvnia string, like the real
//!   answers) and taken off a balance that starts at [`STARTING_BALANCE_KOPIYKY`]; a send the
//!   balance cannot pay for is `INSUFFICIENTFUNDS`. Ids look like the real ones
//!   (`FAPI` and 16 hex digits). SMS Fly takes no client-side id, so every accepted send is a
//!   new message and `duplicates` stays 0.
//! - SMS Fly does not push receipts: `GETMESSAGESTATUS` reports `ACCEPTD`, then `SENT`, until
//!   `receipt_delay` has passed since the send, then `DELIVRD` or `UNDELIV` (decided at the
//!   send by [`delivered`]). Like the documented answer, the status's own date carries no
//!   offset; the answer's date does (`+0300`).
//! - Faults, rolled on every API request: `ServerError` → `500` with an HTML page;
//!   `RateLimited` → `429` (SMS Fly documents no rate-limit answer, so a bare HTTP 429);
//!   `Malformed` → the request is carried out, then the answer is cut-off JSON; `Hang` → the
//!   request is carried out, then the answer waits [`HANG`].
//! - `GET /__sim/stats` (simulator only, no faults): `{"accepted", "submissions", "duplicates"}`.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, Utc};
use holub_shared::adapters::providers::smsfly::wire::{
    Amount, Answer, BalanceData, ChannelState, ErrorBody, FlyStatus, MessageData,
};
use holub_shared::adapters::providers::smsfly::{TTL_MAX_MINUTES, TTL_MIN_MINUTES};
use holub_shared::domain::{PhoneNumber, SenderId, segments};
use serde::{Deserialize, Serialize};

use super::{Fault, HANG, SimSettings, delivered};

/// The one API endpoint, as on sms-fly.ua.
pub const API_PATH: &str = "/api/v2/api.php";
/// The simulator's counters.
pub const STATS_PATH: &str = "/__sim/stats";
/// The account's money at start: 10 000 UAH.
pub const STARTING_BALANCE_KOPIYKY: i64 = 1_000_000;
/// A concatenated SMS has at most 255 parts.
const MAX_PARTS: usize = 255;

/// What `GET /__sim/stats` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages taken (and charged).
    pub accepted: u64,
    /// Authenticated `SENDMESSAGE` requests that reached the simulator, taken or not.
    pub submissions: u64,
    /// Sends recognised as repeats: always 0, as SMS Fly takes no client-side id.
    pub duplicates: u64,
}

/// Starts a simulator on `127.0.0.1` with a port of the system's choosing, serving in the
/// background until the runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("smsfly", router(settings)).await
}

/// The simulator's endpoints over a fresh state.
pub fn router(settings: SimSettings) -> Router {
    Router::new()
        .route(API_PATH, post(api))
        .route(STATS_PATH, get(stats))
        .with_state(Sim::new(settings))
}

#[derive(Clone)]
struct Sim {
    shared: Arc<Shared>,
}

struct Shared {
    settings: SimSettings,
    /// The accepted API key; `None` when the settings hold none (nothing authenticates).
    key: Option<String>,
    /// Makes ids differ between simulators.
    id_prefix: u32,
    inner: Mutex<Inner>,
}

struct Inner {
    messages: HashMap<String, Record>,
    next_id: u64,
    balance: i64,
    stats: Stats,
}

struct Record {
    accepted: Instant,
    accepted_at: DateTime<Utc>,
    delivered: bool,
}

#[derive(Deserialize)]
struct ExpectedCredentials {
    key: String,
}

/// A request as it may arrive: every member optional, so that each gap gets its own error.
#[derive(Deserialize)]
struct Incoming {
    auth: Option<IncomingAuth>,
    action: Option<String>,
    data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct IncomingAuth {
    key: Option<String>,
}

#[derive(Deserialize)]
struct IncomingSend {
    recipient: Option<String>,
    channels: Option<Vec<String>>,
    sms: Option<IncomingSms>,
}

#[derive(Deserialize)]
struct IncomingSms {
    source: Option<String>,
    ttl: Option<u32>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct IncomingStatus {
    #[serde(rename = "messageID")]
    message_id: Option<String>,
}

/// An error answer: the code and its documented description.
struct Refusal(&'static str, &'static str);

const INVREQUEST: Refusal = Refusal("INVREQUEST", "query is empty or has an invalid format");
const INVACTION: Refusal = Refusal("INVACTION", "action not specified or not supported");
const FORBIDDEN: Refusal = Refusal("FORBIDDEN", "access denied");
const INVRECIPIENT: Refusal = Refusal("INVRECIPIENT", "wrong recipient");
const INVTEXT: Refusal = Refusal(
    "INVTEXT",
    "message text is missing or does not match requirements",
);
const INVSOURCE: Refusal = Refusal("INVSOURCE", "sender not specified or not correct");
const INVCHANNELS: Refusal = Refusal("INVCHANNELS", "correct sending channels are not specified");
const INVSMSMESSAGE: Refusal = Refusal("INVSMSMESSAGE", "message for sms channel not specified");
const INVMSGID: Refusal = Refusal("INVMSGID", "ID not set or not found");
const INSUFFICIENTFUNDS: Refusal = Refusal(
    "INSUFFICIENTFUNDS",
    "insufficient funds to send this message",
);

impl Sim {
    fn new(settings: SimSettings) -> Self {
        let key = serde_json::from_value::<ExpectedCredentials>(settings.credentials.clone())
            .ok()
            .map(|c| c.key);
        if key.is_none() {
            tracing::warn!(
                "smsfly simulator: no {{\"key\"}} in the credentials; every request is FORBIDDEN"
            );
        }
        Sim {
            shared: Arc::new(Shared {
                settings,
                key,
                id_prefix: rand::random::<u32>(),
                inner: Mutex::new(Inner {
                    messages: HashMap::new(),
                    next_id: 0,
                    balance: STARTING_BALANCE_KOPIYKY,
                    stats: Stats::default(),
                }),
            }),
        }
    }

    /// No code panics halfway through an update, so a poisoned lock still holds consistent
    /// data.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn authorized(&self, auth: Option<&IncomingAuth>) -> bool {
        let given = auth.and_then(|a| a.key.as_deref());
        match (given, self.shared.key.as_deref()) {
            (Some(given), Some(expected)) => {
                crate::receipt::constant_time_eq(given.as_bytes(), expected.as_bytes())
            }
            _ => false,
        }
    }

    /// Carries out one API request and answers it as SMS Fly would.
    fn handle(&self, body: &[u8]) -> Response {
        let Ok(request) = serde_json::from_slice::<Incoming>(body) else {
            return refuse(INVREQUEST);
        };
        if !self.authorized(request.auth.as_ref()) {
            return refuse(FORBIDDEN);
        }
        match request.action.as_deref() {
            Some("SENDMESSAGE") => self.send(request.data),
            Some("GETMESSAGESTATUS") => self.status(request.data),
            Some("GETBALANCE") => self.balance(),
            _ => refuse(INVACTION),
        }
    }

    fn send(&self, data: Option<serde_json::Value>) -> Response {
        self.lock().stats.submissions += 1;
        let Some(Ok(send)) = data.map(serde_json::from_value::<IncomingSend>) else {
            return refuse(INVREQUEST);
        };
        let channels = send.channels.unwrap_or_default();
        if channels.is_empty()
            || !channels.iter().all(|c| c == "sms" || c == "viber")
            || !channels.iter().any(|c| c == "sms")
        {
            // The simulator carries SMS only.
            return refuse(INVCHANNELS);
        }
        let Some(sms) = send.sms else {
            return refuse(INVSMSMESSAGE);
        };
        let recipient = send.recipient.unwrap_or_default();
        if recipient.is_empty()
            || !recipient.bytes().all(|b| b.is_ascii_digit())
            || PhoneNumber::parse(&format!("+{recipient}")).is_err()
        {
            return refuse(INVRECIPIENT);
        }
        if sms
            .source
            .as_deref()
            .is_none_or(|source| SenderId::parse(source).is_err())
        {
            return refuse(INVSOURCE);
        }
        if sms
            .ttl
            .is_some_and(|ttl| !(TTL_MIN_MINUTES..=TTL_MAX_MINUTES).contains(&ttl))
        {
            return refuse(INVREQUEST);
        }
        let text = sms.text.unwrap_or_default();
        let parts = segments::estimate(&text).segments;
        if parts == 0 || parts > MAX_PARTS {
            return refuse(INVTEXT);
        }
        let cost = i64::try_from(parts)
            .ok()
            .and_then(|parts| self.shared.settings.cost_per_part.checked_mul(parts))
            .unwrap_or(i64::MAX);
        let delivered = delivered(&self.shared.settings);
        let now = Utc::now();
        let message_id = {
            let mut inner = self.lock();
            if inner.balance < cost {
                return refuse(INSUFFICIENTFUNDS);
            }
            inner.balance -= cost;
            inner.next_id += 1;
            let message_id = format!("FAPI{:08X}{:08X}", self.shared.id_prefix, inner.next_id);
            inner.messages.insert(
                message_id.clone(),
                Record {
                    accepted: Instant::now(),
                    accepted_at: now,
                    delivered,
                },
            );
            inner.stats.accepted += 1;
            message_id
        };
        tracing::debug!(%message_id, parts, "smsfly simulator: took a message");
        answer(MessageData {
            message_id,
            sms: Some(ChannelState {
                status: FlyStatus::Accepted,
                date: Some(with_offset(now)),
                cost: Some(Amount::Text(hryvnias(cost))),
                label: None,
            }),
            viber: None,
        })
    }

    fn status(&self, data: Option<serde_json::Value>) -> Response {
        let Some(Ok(query)) = data.map(serde_json::from_value::<IncomingStatus>) else {
            return refuse(INVREQUEST);
        };
        let Some(message_id) = query.message_id else {
            return refuse(INVMSGID);
        };
        let delay = self.shared.settings.receipt_delay;
        let (status, at) = {
            let inner = self.lock();
            let Some(record) = inner.messages.get(&message_id) else {
                return refuse(INVMSGID);
            };
            status_now(record, delay, record.accepted.elapsed())
        };
        answer(MessageData {
            message_id,
            sms: Some(ChannelState {
                status,
                date: Some(without_offset(at)),
                cost: None,
                label: None,
            }),
            viber: None,
        })
    }

    fn balance(&self) -> Response {
        let balance = self.lock().balance;
        answer(BalanceData {
            balance: Amount::Text(hryvnias(balance)),
        })
    }
}

/// A message's status `elapsed` after it was taken, and the time it took that status.
fn status_now(record: &Record, delay: Duration, elapsed: Duration) -> (FlyStatus, DateTime<Utc>) {
    if elapsed >= delay {
        let done = chrono::Duration::from_std(delay).unwrap_or_default();
        let status = if record.delivered {
            FlyStatus::Delivered
        } else {
            FlyStatus::Undelivered
        };
        (status, record.accepted_at + done)
    } else if elapsed * 2 < delay {
        (FlyStatus::Accepted, record.accepted_at)
    } else {
        let half = chrono::Duration::from_std(delay / 2).unwrap_or_default();
        (FlyStatus::Sent, record.accepted_at + half)
    }
}

async fn api(State(sim): State<Sim>, body: Bytes) -> Response {
    let fault = sim.shared.settings.faults.roll().await;
    match fault {
        Fault::ServerError => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>500 Internal Server Error</h1></body></html>",
            )
                .into_response();
        }
        Fault::RateLimited => {
            return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        }
        Fault::None | Fault::Malformed | Fault::Hang => {}
    }
    let answer = sim.handle(&body);
    match fault {
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success":1,"date":"2026-05-01 12:00:00 +0300","data":{"messageID":"#,
        )
            .into_response(),
        Fault::Hang => {
            tokio::time::sleep(HANG).await;
            answer
        }
        _ => answer,
    }
}

async fn stats(State(sim): State<Sim>) -> Response {
    let stats = sim.lock().stats;
    (StatusCode::OK, axum::Json(stats)).into_response()
}

/// Kyiv time at `at`, as the real answers show it.
fn kyiv(at: DateTime<Utc>) -> FixedOffset {
    holub_shared::domain::kyiv::offset_at(at)
}

/// `2026-05-01 15:00:00 +0300`.
fn with_offset(at: DateTime<Utc>) -> String {
    at.with_timezone(&kyiv(at))
        .format("%Y-%m-%d %H:%M:%S %z")
        .to_string()
}

/// `2026-05-01 15:00:00`, Kyiv local time.
fn without_offset(at: DateTime<Utc>) -> String {
    at.with_timezone(&kyiv(at))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Kopiykas as SMS Fly writes hryvnias: `"0.850"`.
fn hryvnias(kopiyky: i64) -> String {
    let sign = if kopiyky < 0 { "-" } else { "" };
    let abs = kopiyky.unsigned_abs();
    format!("{sign}{}.{:02}0", abs / 100, abs % 100)
}

fn answer<D: Serialize>(data: D) -> Response {
    let body = Answer {
        success: 1,
        date: Some(with_offset(Utc::now())),
        data: Some(data),
        error: None,
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn refuse(Refusal(code, description): Refusal) -> Response {
    let date = with_offset(Utc::now());
    let body: Answer<()> = Answer {
        success: 0,
        date: Some(date.clone()),
        data: None,
        error: Some(ErrorBody {
            code: code.to_owned(),
            date: Some(date),
            description: Some(description.to_owned()),
        }),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::Faults;
    use holub_shared::adapters::providers::smsfly;
    use holub_shared::domain::status::ReceiptState;
    use holub_shared::domain::{Kopiyky, MessageId};
    use holub_shared::ports::provider::WHOLE_MESSAGE;
    use holub_shared::ports::{OutboundSms, ProviderError, ReceiptMode, Secret, SmsProvider};
    use serde_json::json;

    const KEY: &str = "sim-key-7f3a";
    const OTP: &str = "Your code: 4821";
    /// 103 characters, Cyrillic: UCS-2, two parts.
    const LONG: &str = "Ваше замовлення прийнято. Кур'єр зателефонує за годину до доставки. Дякуємо, що обрали нас! Гарного дня";

    fn settings() -> SimSettings {
        SimSettings {
            credentials: json!({ "key": KEY }),
            receipt_delay: Duration::from_millis(400),
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

    fn adapter(addr: SocketAddr, key: &str, timeout_ms: u64) -> Arc<dyn SmsProvider> {
        let built = smsfly::build(
            "fly",
            json!({ "base_url": format!("http://{addr}"), "timeout_ms": timeout_ms }),
            &Secret::new(json!({ "key": key }).to_string()),
        )
        .unwrap();
        assert!(built.webhook.is_none());
        built.provider
    }

    async fn started(settings: SimSettings) -> (SocketAddr, Arc<dyn SmsProvider>) {
        let addr = start(settings).await.unwrap();
        (addr, adapter(addr, KEY, 5_000))
    }

    fn sms(text: &str) -> OutboundSms {
        let estimate = segments::estimate(text);
        OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse("0671234567").unwrap(),
            from: SenderId::parse("Holub").unwrap(),
            text: text.to_owned(),
            encoding: estimate.encoding,
            segments: u16::try_from(estimate.segments).unwrap(),
            validity_seconds: 3600,
        }
    }

    async fn stats_of(addr: SocketAddr) -> Stats {
        reqwest::get(format!("http://{addr}{STATS_PATH}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A raw API call, answered with its status and body.
    async fn raw(addr: SocketAddr, body: serde_json::Value) -> (StatusCode, String) {
        let response = reqwest::Client::new()
            .post(format!("http://{addr}{API_PATH}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (status, response.text().await.unwrap())
    }

    fn is_fly_id(id: &str) -> bool {
        id.len() == 20 && id.starts_with("FAPI") && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[tokio::test]
    async fn sends_return_ids_and_costs() {
        let (addr, fly) = started(settings()).await;
        assert_eq!(fly.receipt_mode(), ReceiptMode::Poll);
        let one = fly.send(&sms(OTP)).await.unwrap();
        assert!(is_fly_id(&one.provider_message_id), "{one:?}");
        assert_eq!(one.cost, Some(Kopiyky(85)));

        let long = sms(LONG);
        assert_eq!(long.segments, 2);
        let two = fly.send(&long).await.unwrap();
        // SMS Fly's id as it is, whatever the part count.
        assert!(is_fly_id(&two.provider_message_id), "{two:?}");
        assert_eq!(two.cost, Some(Kopiyky(170)));

        // No client-side id: the same message again is a new message.
        let again = fly.send(&sms(OTP)).await.unwrap();
        assert_ne!(again.provider_message_id, one.provider_message_id);
        assert_eq!(
            stats_of(addr).await,
            Stats {
                accepted: 3,
                submissions: 3,
                duplicates: 0
            }
        );
    }

    #[tokio::test]
    async fn lookup_is_unsupported() {
        let (_, fly) = started(settings()).await;
        let e = fly
            .lookup(&MessageId::generate(Utc::now()))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Permanent { .. }));
        assert_eq!(e.code(), "lookup_unsupported");
    }

    #[tokio::test]
    async fn status_is_enroute_until_the_delay_then_final_for_the_whole_message() {
        let (_, fly) = started(settings()).await;
        let sent_at = Utc::now();
        let one = fly.send(&sms(OTP)).await.unwrap();
        let two = fly.send(&sms(LONG)).await.unwrap();
        let ids = vec![
            one.provider_message_id.clone(),
            two.provider_message_id.clone(),
            "FAPI00000000DEADBEEF".to_owned(),
        ];
        let early = fly.status(&ids).await.unwrap();
        assert_eq!(early.len(), 2, "{early:?}");
        assert!(
            early
                .iter()
                .all(|r| r.state == ReceiptState::Enroute && r.part == WHOLE_MESSAGE)
        );

        tokio::time::sleep(Duration::from_millis(600)).await;
        let done = fly.status(&ids).await.unwrap();
        let parts = |id: &str| {
            done.iter()
                .filter(|r| r.provider_message_id == id)
                .map(|r| (r.part, r.state))
                .collect::<Vec<_>>()
        };
        // One receipt per message, for all its parts.
        assert_eq!(
            parts(&one.provider_message_id),
            vec![(WHOLE_MESSAGE, ReceiptState::Delivered)]
        );
        assert_eq!(
            parts(&two.provider_message_id),
            vec![(WHOLE_MESSAGE, ReceiptState::Delivered)]
        );
        // Stamped when the simulator delivered them (dates have whole seconds).
        for receipt in &done {
            let lag = receipt.at - sent_at;
            assert!(lag > chrono::Duration::seconds(-2) && lag < chrono::Duration::seconds(3));
        }
        // The unknown id gave no news, and no error.
        assert_eq!(done.len(), 2);
        assert!(fly.status(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn undelivered_messages_are_reported_so() {
        let (_, fly) = started(SimSettings {
            delivered_ratio: 0.0,
            receipt_delay: Duration::ZERO,
            ..settings()
        })
        .await;
        let sent = fly.send(&sms(OTP)).await.unwrap();
        let receipts = fly.status(&[sent.provider_message_id]).await.unwrap();
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].state, ReceiptState::Undelivered);
    }

    #[tokio::test]
    async fn the_balance_falls_by_the_costs() {
        let (_, fly) = started(settings()).await;
        assert_eq!(
            fly.balance().await.unwrap(),
            Kopiyky(STARTING_BALANCE_KOPIYKY)
        );
        fly.send(&sms(OTP)).await.unwrap();
        fly.send(&sms(LONG)).await.unwrap();
        assert_eq!(
            fly.balance().await.unwrap(),
            Kopiyky(STARTING_BALANCE_KOPIYKY - 255)
        );
    }

    #[tokio::test]
    async fn no_money_is_an_account_error() {
        let (addr, fly) = started(SimSettings {
            cost_per_part: STARTING_BALANCE_KOPIYKY + 1,
            ..settings()
        })
        .await;
        let e = fly.send(&sms(OTP)).await.unwrap_err();
        assert!(e.is_account(), "{e:?}");
        assert_eq!(e.code(), "insufficient_balance");
        assert_eq!(stats_of(addr).await.accepted, 0);
        assert_eq!(stats_of(addr).await.submissions, 1);
    }

    #[tokio::test]
    async fn wrong_credentials_are_account_errors() {
        let (addr, _) = started(settings()).await;
        let wrong = adapter(addr, "not-the-key", 5_000);
        let send = wrong.send(&sms(OTP)).await.unwrap_err();
        assert!(send.is_account(), "{send:?}");
        assert_eq!(send.code(), "provider_unauthorized");
        let balance = wrong.balance().await.unwrap_err();
        assert_eq!(balance.code(), "provider_unauthorized");
        let status = wrong.status(&["FAPI0000000000000001".to_owned()]).await;
        assert!(matches!(status, Err(ProviderError::Account { .. })));
        assert_eq!(stats_of(addr).await, Stats::default());

        // A simulator given no key takes nobody.
        let (_, fly) = started(SimSettings {
            credentials: serde_json::Value::Null,
            ..settings()
        })
        .await;
        assert_eq!(
            fly.send(&sms(OTP)).await.unwrap_err().code(),
            "provider_unauthorized"
        );
    }

    #[tokio::test]
    async fn server_errors_and_rate_limits_are_temporary() {
        let cases = [
            (
                Faults {
                    server_error_ratio: 1.0,
                    ..Faults::default()
                },
                "provider_unavailable",
            ),
            (
                Faults {
                    down: true,
                    ..Faults::default()
                },
                "provider_unavailable",
            ),
            (
                Faults {
                    rate_limit_ratio: 1.0,
                    ..Faults::default()
                },
                "provider_rate_limited",
            ),
        ];
        for (faults, code) in cases {
            let (addr, fly) = started(with_faults(faults)).await;
            for e in [
                fly.send(&sms(OTP)).await.unwrap_err(),
                fly.balance().await.unwrap_err(),
                fly.status(&["FAPI0000000000000001".to_owned()])
                    .await
                    .unwrap_err(),
            ] {
                assert!(matches!(e, ProviderError::Temporary { .. }), "{e:?}");
                assert_eq!(e.code(), code);
            }
            // Nothing was done.
            assert_eq!(stats_of(addr).await, Stats::default());
        }
    }

    #[tokio::test]
    async fn malformed_answers_leave_the_outcome_unknown() {
        let (addr, fly) = started(with_faults(Faults {
            malformed_ratio: 1.0,
            ..Faults::default()
        }))
        .await;
        let e = fly.send(&sms(OTP)).await.unwrap_err();
        assert!(e.is_unknown(), "{e:?}");
        assert_eq!(e.code(), "provider_bad_answer");
        // The message was taken all the same.
        assert_eq!(stats_of(addr).await.accepted, 1);
        assert!(fly.balance().await.unwrap_err().is_unknown());
    }

    #[tokio::test]
    async fn hangs_leave_the_outcome_unknown() {
        let addr = start(with_faults(Faults {
            timeout_ratio: 1.0,
            ..Faults::default()
        }))
        .await
        .unwrap();
        let fly = adapter(addr, KEY, 300);
        let e = fly.send(&sms(OTP)).await.unwrap_err();
        assert!(e.is_unknown(), "{e:?}");
        assert_eq!(e.code(), "provider_timeout");
        assert_eq!(stats_of(addr).await.accepted, 1);
    }

    #[tokio::test]
    async fn answers_have_the_documented_shape() {
        let addr = start(settings()).await.unwrap();
        let auth = json!({ "key": KEY });
        let send = json!({
            "auth": auth,
            "action": "SENDMESSAGE",
            "data": {
                "recipient": "380771234567",
                "channels": ["sms"],
                "sms": { "source": "sender", "ttl": 5, "text": "Текст sms. Перевірка!" }
            }
        });
        let (status, body) = raw(addr, send.clone()).await;
        assert_eq!(status, StatusCode::OK);
        let answer: Answer<MessageData> = serde_json::from_str(&body).unwrap();
        assert_eq!(answer.success, 1);
        assert!(answer.error.is_none());
        let data = answer.data.unwrap();
        assert!(is_fly_id(&data.message_id));
        let state = data.sms.unwrap();
        assert_eq!(state.status, FlyStatus::Accepted);
        assert_eq!(state.cost, Some(Amount::Text("0.850".to_owned())));
        for date in [answer.date.unwrap(), state.date.unwrap()] {
            assert!(
                DateTime::parse_from_str(&date, "%Y-%m-%d %H:%M:%S %z").is_ok(),
                "{date}"
            );
        }
        // The same members as the documented answer.
        let documented: serde_json::Value = serde_json::from_str(include_str!(
            "../../../shared/src/adapters/providers/smsfly/fixtures/send_response.json"
        ))
        .unwrap();
        let ours: serde_json::Value = serde_json::from_str(&body).unwrap();
        let keys = |v: &serde_json::Value, path: &[&str]| {
            let mut v = v;
            for p in path {
                v = &v[*p];
            }
            v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
        };
        for path in [&[][..], &["data"], &["data", "sms"]] {
            assert_eq!(keys(&ours, path), keys(&documented, path), "{path:?}");
        }

        let status_query = json!({
            "auth": auth,
            "action": "GETMESSAGESTATUS",
            "data": { "messageID": data.message_id }
        });
        let (_, body) = raw(addr, status_query).await;
        let answer: Answer<MessageData> = serde_json::from_str(&body).unwrap();
        let state = answer.data.unwrap().sms.unwrap();
        assert_eq!(state.status, FlyStatus::Accepted);
        let date = state.date.unwrap();
        assert!(chrono::NaiveDateTime::parse_from_str(&date, "%Y-%m-%d %H:%M:%S").is_ok());

        let (_, body) = raw(addr, json!({ "auth": auth, "action": "GETBALANCE" })).await;
        let answer: Answer<BalanceData> = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer.data.unwrap().balance,
            Amount::Text("9999.150".to_owned())
        );

        let with_data = |data: serde_json::Value| json!({ "auth": auth, "action": "SENDMESSAGE", "data": data });
        let refusals = [
            (
                json!({ "auth": { "key": "nope" }, "action": "GETBALANCE" }),
                "FORBIDDEN",
            ),
            (json!({ "action": "GETBALANCE" }), "FORBIDDEN"),
            (json!("not a request"), "INVREQUEST"),
            (json!({ "auth": auth, "action": "SENDVOICE" }), "INVACTION"),
            (
                json!({ "auth": auth, "action": "SENDMESSAGE" }),
                "INVREQUEST",
            ),
            (
                with_data(json!({ "recipient": "380771234567", "channels": ["fax"] })),
                "INVCHANNELS",
            ),
            (
                with_data(json!({ "recipient": "380771234567", "channels": ["sms"] })),
                "INVSMSMESSAGE",
            ),
            (
                with_data(json!({
                    "recipient": "0441234567", "channels": ["sms"],
                    "sms": { "source": "sender", "text": "Hi" }
                })),
                "INVRECIPIENT",
            ),
            (
                with_data(json!({
                    "recipient": "380771234567", "channels": ["sms"],
                    "sms": { "source": "Bad sender!", "text": "Hi" }
                })),
                "INVSOURCE",
            ),
            (
                with_data(json!({
                    "recipient": "380771234567", "channels": ["sms"],
                    "sms": { "source": "sender", "text": "" }
                })),
                "INVTEXT",
            ),
            (
                with_data(json!({
                    "recipient": "380771234567", "channels": ["sms"],
                    "sms": { "source": "sender", "ttl": 5000, "text": "Hi" }
                })),
                "INVREQUEST",
            ),
            (
                json!({ "auth": auth, "action": "GETMESSAGESTATUS",
                        "data": { "messageID": "FAPI0000000000000000" } }),
                "INVMSGID",
            ),
        ];
        for (request, code) in refusals {
            let (status, body) = raw(addr, request.clone()).await;
            assert_eq!(status, StatusCode::OK, "{request}");
            let answer: Answer<MessageData> = serde_json::from_str(&body).unwrap();
            assert_eq!(answer.success, 0, "{request}");
            assert!(answer.data.is_none());
            let error = answer.error.unwrap();
            assert_eq!(error.code, code, "{request}");
            assert!(error.description.is_some() && error.date.is_some());
            // The adapter reads every one of them as an error, never a success.
            let mapped = smsfly::map_error("fly", "SENDMESSAGE", &error);
            assert!(!mapped.is_unknown());
        }
        // Only the one valid send was taken; every authenticated send was counted.
        let stats = stats_of(addr).await;
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.submissions, 8);
    }

    #[tokio::test]
    async fn stats_have_exactly_the_three_counters() {
        let addr = start(settings()).await.unwrap();
        let body: serde_json::Value = reqwest::get(format!("http://{addr}{STATS_PATH}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            body,
            json!({ "accepted": 0, "submissions": 0, "duplicates": 0 })
        );
    }

    #[test]
    fn amounts_are_written_with_three_decimals() {
        assert_eq!(hryvnias(85), "0.850");
        assert_eq!(hryvnias(100_005), "1000.050");
        assert_eq!(hryvnias(-350), "-3.500");
        assert_eq!(hryvnias(0), "0.000");
    }

    #[test]
    fn statuses_walk_from_accepted_to_final() {
        let record = |delivered| Record {
            accepted: Instant::now(),
            accepted_at: Utc::now(),
            delivered,
        };
        let delay = Duration::from_millis(1000);
        let ms = Duration::from_millis;
        assert_eq!(
            status_now(&record(true), delay, ms(0)).0,
            FlyStatus::Accepted
        );
        assert_eq!(status_now(&record(true), delay, ms(600)).0, FlyStatus::Sent);
        assert_eq!(
            status_now(&record(true), delay, ms(1000)).0,
            FlyStatus::Delivered
        );
        assert_eq!(
            status_now(&record(false), delay, ms(5000)).0,
            FlyStatus::Undelivered
        );
        let r = record(true);
        assert_eq!(
            status_now(&r, delay, ms(1000)).1,
            r.accepted_at + chrono::Duration::seconds(1)
        );
    }
}
