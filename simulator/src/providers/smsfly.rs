//! A stand-in for SMS Fly API v2 on loopback. Its wire types and rules are written from the
//! sources SMS Fly's API is known by (each [`Rule`] names its own; the documented examples
//! are the adapter's `fixtures/`), never from Holub's adapter, so that a parsing mistake in
//! the adapter shows in its tests.
//!
//! `POST /api/v2/api.php`, `{"auth": {"key"}, "action", "data"}`, with the actions
//! `SENDMESSAGE` (one recipient, SMS channel), `GETMESSAGESTATUS` and `GETBALANCE`. Answers
//! are `200` `{"success": 1, "date", "data"}` or `{"success": 0, "date", "error": {"code",
//! "date", "description"}}` with the documented codes. Costs and the balance are hryvnia
//! strings with 3 decimals, as in the real answers; ids look like the real ones (`FAPI` and
//! 16 hex digits). SMS Fly takes no client id and pushes nothing: `GETMESSAGESTATUS` answers
//! `ACCEPTD`, `SENT`, then `DELIVRD` or `UNDELIV` at `receipt_delay`. SMS Fly documents no
//! rate-limit answer: the simulator's is a bare HTTP 429.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use holub_shared::domain::{PhoneNumber, SenderId, segments};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::core::{self, Core, NewMessage, Record, refused};
use super::{Fault, SimSettings};

/// The one API endpoint, as on sms-fly.ua.
pub const API_PATH: &str = "/api/v2/api.php";
pub use super::core::{STATS_PATH, Stats};
/// The account's money at start: 10 000 UAH.
pub const STARTING_BALANCE_KOPIYKY: i64 = 1_000_000;

const PDF: &str = "sms-fly.ua/public/api.v2.03.pdf, as quoted by public clients";
const ERRORS: &str = "the error table quoted by public clients (msgErrorsEn)";

/// A rule of this simulator, with the documented error SMS Fly answers when it is broken.
pub type Rule = core::Rule<FlyError>;

/// An error code and its documented English description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FlyError {
    pub code: &'static str,
    pub description: &'static str,
}

pub const BODY: Rule = Rule {
    id: "smsfly.body.json",
    description: "the body is a JSON object {auth, action, data}; else INVREQUEST",
    source: ERRORS,
    answer: FlyError {
        code: "INVREQUEST",
        description: "query is empty or has an invalid format",
    },
};
pub const AUTH: Rule = Rule {
    id: "smsfly.auth.key",
    description: "auth.key is the account's API key; else FORBIDDEN",
    source: "SMS Fly's WordPress plugin (includes/smsflyc.php); knaus94/sms-fly",
    answer: FlyError {
        code: "FORBIDDEN",
        description: "access denied",
    },
};
pub const ACTION: Rule = Rule {
    id: "smsfly.action.known",
    description: "action is SENDMESSAGE, GETMESSAGESTATUS or GETBALANCE; else INVACTION",
    source: "Vadim-Podlevsky/SmsFlyApi src/SmsFlyApi.php (every action); msgErrorsEn",
    answer: FlyError {
        code: "INVACTION",
        description: "action not specified or not supported",
    },
};
pub const DATA: Rule = Rule {
    id: "smsfly.data.shape",
    description: "data is an object with the action's members, each of its documented type \
                  (recipient and text strings, channels an array of strings); else INVREQUEST",
    source: PDF,
    answer: FlyError {
        code: "INVREQUEST",
        description: "query is empty or has an invalid format",
    },
};
pub const CHANNELS: Rule = Rule {
    id: "smsfly.channels.known",
    description: "channels lists known channels (sms, viber) and, in the simulator, sms; else \
                  INVCHANNELS",
    source: "sol-parts/symfony-smsfly-notifier send request; msgErrorsEn",
    answer: FlyError {
        code: "INVCHANNELS",
        description: "correct sending channels are not specified",
    },
};
pub const SMS: Rule = Rule {
    id: "smsfly.sms.required",
    description: "with the sms channel, an sms object is given; else INVSMSMESSAGE",
    source: ERRORS,
    answer: FlyError {
        code: "INVSMSMESSAGE",
        description: "message for sms channel not specified",
    },
};
pub const RECIPIENT: Rule = Rule {
    id: "smsfly.recipient.number",
    description: "recipient is the international number as digits (380…); else INVRECIPIENT",
    source: "sol-parts/symfony-smsfly-notifier Tests/SmsFlyTransportTest.php; msgErrorsEn",
    answer: FlyError {
        code: "INVRECIPIENT",
        description: "wrong recipient",
    },
};
pub const SOURCE: Rule = Rule {
    id: "smsfly.source.sender",
    description: "sms.source is a sender name: up to 11 letters, digits and spaces, or a \
                  number; else INVSOURCE",
    source: "msgErrorsEn (INVSOURCE); 3GPP TS 23.040 §9.1.2.5",
    answer: FlyError {
        code: "INVSOURCE",
        description: "sender not specified or not correct",
    },
};
pub const TTL: Rule = Rule {
    id: "smsfly.ttl.range",
    description: "sms.ttl, if given, is an integer of minutes from 1 to 1440; else INVREQUEST",
    source: "sol-parts/symfony-smsfly-notifier SmsFlyOptions.php",
    answer: FlyError {
        code: "INVREQUEST",
        description: "query is empty or has an invalid format",
    },
};
pub const TEXT: Rule = Rule {
    id: "smsfly.text.length",
    description: "sms.text is a string of 1 to 255 SMS parts; else INVTEXT",
    source: "msgErrorsEn (INVTEXT); 3GPP TS 23.040 §9.2.3.24.1",
    answer: FlyError {
        code: "INVTEXT",
        description: "message text is missing or does not match requirements",
    },
};
pub const FUNDS: Rule = Rule {
    id: "smsfly.balance.funds",
    description: "a send the balance does not cover is INSUFFICIENTFUNDS",
    source: "SMS Fly's WordPress plugin (includes/smsflyc.php)",
    answer: FlyError {
        code: "INSUFFICIENTFUNDS",
        description: "insufficient funds to send this message",
    },
};
pub const MESSAGE_ID: Rule = Rule {
    id: "smsfly.message_id.known",
    description: "data.messageID names a message that was sent; else INVMSGID",
    source: "Vadim-Podlevsky/SmsFlyApi getMessageStatus(); msgErrorsEn",
    answer: FlyError {
        code: "INVMSGID",
        description: "ID not set or not found",
    },
};

/// Every rule this simulator enforces.
pub const RULES: &[Rule] = &[
    BODY, AUTH, ACTION, DATA, CHANNELS, SMS, RECIPIENT, SOURCE, TTL, TEXT, FUNDS, MESSAGE_ID,
];

const MAX_PARTS: usize = 255;

// What arrives: every member optional and loosely typed, so that each gap is refused by its
// own rule.

#[derive(Deserialize)]
struct Incoming {
    auth: Option<Value>,
    action: Option<Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct IncomingSend {
    recipient: Option<String>,
    channels: Option<Vec<String>>,
    sms: Option<IncomingSms>,
}

#[derive(Deserialize)]
struct IncomingSms {
    source: Option<Value>,
    ttl: Option<Value>,
    text: Option<Value>,
}

#[derive(Deserialize)]
struct IncomingStatus {
    #[serde(rename = "messageID")]
    message_id: Option<String>,
}

// What is answered, as the documented examples show it.

#[derive(Serialize)]
struct Answer<D> {
    success: u8,
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<D>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

#[derive(Serialize)]
struct ErrorBody {
    code: &'static str,
    date: String,
    description: &'static str,
}

#[derive(Serialize)]
struct MessageData {
    #[serde(rename = "messageID")]
    message_id: String,
    sms: ChannelState,
}

#[derive(Serialize)]
struct ChannelState {
    status: &'static str,
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<String>,
}

#[derive(Serialize)]
struct BalanceData {
    balance: String,
}

struct Sim {
    core: Arc<Core>,
    /// Makes ids differ between simulators.
    id_prefix: u32,
    next_id: AtomicU64,
}

impl Sim {
    /// Carries out one API request and answers it as SMS Fly would.
    fn handle(&self, body: &[u8]) -> Response {
        let Ok(request) = serde_json::from_slice::<Incoming>(body) else {
            return refuse(&BODY);
        };
        let key = request
            .auth
            .as_ref()
            .and_then(|a| a.get("key"))
            .and_then(Value::as_str);
        if !self.core.authenticates("key", key) {
            return refuse(&AUTH);
        }
        match request.action.as_ref().and_then(Value::as_str) {
            Some("SENDMESSAGE") => self.send(request.data),
            Some("GETMESSAGESTATUS") => self.status(request.data),
            Some("GETBALANCE") => answer(BalanceData {
                balance: core::hryvnias(self.core.balance(), 3),
            }),
            _ => refuse(&ACTION),
        }
    }

    fn send(&self, data: Option<Value>) -> Response {
        self.core.submitted(1);
        let Some(Ok(send)) = data.map(serde_json::from_value::<IncomingSend>) else {
            return refuse(&DATA);
        };
        let channels = send.channels.unwrap_or_default();
        if channels.is_empty()
            || !channels.iter().all(|c| c == "sms" || c == "viber")
            || !channels.iter().any(|c| c == "sms")
        {
            return refuse(&CHANNELS);
        }
        let Some(sms) = send.sms else {
            return refuse(&SMS);
        };
        let recipient = send.recipient.unwrap_or_default();
        if recipient.is_empty()
            || !recipient.bytes().all(|b| b.is_ascii_digit())
            || PhoneNumber::parse(&format!("+{recipient}")).is_err()
        {
            return refuse(&RECIPIENT);
        }
        let source = sms.source.as_ref().and_then(Value::as_str);
        if source.is_none_or(|source| SenderId::parse(source).is_err()) {
            return refuse(&SOURCE);
        }
        let ttl_ok = sms
            .ttl
            .as_ref()
            .is_none_or(|ttl| ttl.as_u64().is_some_and(|m| (1..=1440).contains(&m)));
        if !ttl_ok {
            return refuse(&TTL);
        }
        let parts = sms
            .text
            .as_ref()
            .and_then(Value::as_str)
            .map(|text| segments::estimate(text).segments)
            .filter(|parts| (1..=MAX_PARTS).contains(parts))
            .and_then(|parts| u32::try_from(parts).ok());
        let Some(parts) = parts else {
            return refuse(&TEXT);
        };
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message = NewMessage {
            id: format!("FAPI{:08X}{n:08X}", self.id_prefix),
            client_id: None,
            recipient,
            parts,
        };
        let Ok(taken) = self.core.accept(vec![message]) else {
            return refuse(&FUNDS);
        };
        let record = &taken[0];
        answer(MessageData {
            message_id: record.id.clone(),
            sms: ChannelState {
                status: "ACCEPTD",
                date: with_offset(record.accepted_at),
                cost: Some(core::hryvnias(record.cost, 3)),
            },
        })
    }

    fn status(&self, data: Option<Value>) -> Response {
        let Some(Ok(query)) = data.map(serde_json::from_value::<IncomingStatus>) else {
            return refuse(&DATA);
        };
        let Some(record) = query.message_id.and_then(|id| self.core.record(&id)) else {
            return refuse(&MESSAGE_ID);
        };
        let (status, at) = status_now(&record);
        answer(MessageData {
            message_id: record.id,
            // Like the documented status answer: a channel date without an offset.
            sms: ChannelState {
                status,
                date: without_offset(at),
                cost: None,
            },
        })
    }
}

/// A message's status now, and the time it took that status.
fn status_now(record: &Record) -> (&'static str, DateTime<Utc>) {
    if record.is_final() {
        let status = if record.delivered {
            "DELIVRD"
        } else {
            "UNDELIV"
        };
        (status, record.final_at())
    } else if record.progress() < 0.5 {
        ("ACCEPTD", record.accepted_at)
    } else {
        let half = (record.final_at() - record.accepted_at) / 2;
        ("SENT", record.accepted_at + half)
    }
}

async fn api(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    sim.handle(&body)
}

/// SMS Fly's faults: an HTML 500 page, a bare 429, a cut-off JSON answer.
fn fault_page(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response(),
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"success":1,"date":"2026-05-01 12:00:00 +0300","data":{"messageID":"#,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>500 Internal Server Error</h1></body></html>",
        )
            .into_response(),
    }
}

/// The simulator's endpoints over a fresh state.
pub fn router(settings: SimSettings) -> Router {
    let core = Core::new("smsfly", settings, STARTING_BALANCE_KOPIYKY);
    if core.credential("key").is_none() {
        tracing::warn!(
            "smsfly simulator: no {{\"key\"}} in the credentials; every request is FORBIDDEN"
        );
    }
    let sim = Arc::new(Sim {
        core: Arc::clone(&core),
        id_prefix: rand::random::<u32>(),
        next_id: AtomicU64::new(1),
    });
    let api = Router::new().route(API_PATH, post(api)).with_state(sim);
    core::router(core, api, fault_page, RULES)
}

/// Starts a simulator on `127.0.0.1` with a port of the system's choosing, serving in the
/// background until the runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("smsfly", router(settings)).await
}

/// `2026-05-01 15:00:00 +0300`, in Kyiv time, as the real answers show it.
fn with_offset(at: DateTime<Utc>) -> String {
    core::kyiv_time(at, "%Y-%m-%d %H:%M:%S %z")
}

/// `2026-05-01 15:00:00`, Kyiv local time.
fn without_offset(at: DateTime<Utc>) -> String {
    core::kyiv_time(at, "%Y-%m-%d %H:%M:%S")
}

fn answer<D: Serialize>(data: D) -> Response {
    let body = Answer {
        success: 1,
        date: with_offset(Utc::now()),
        data: Some(data),
        error: None,
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn refuse(rule: &Rule) -> Response {
    let FlyError { code, description } = rule.answer;
    let date = with_offset(Utc::now());
    let body: Answer<()> = Answer {
        success: 0,
        date: date.clone(),
        data: None,
        error: Some(ErrorBody {
            code,
            date,
            description,
        }),
    };
    refused(rule, (StatusCode::OK, axum::Json(body)).into_response())
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
    use std::time::Duration;

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
        let stats = stats_of(addr).await;
        assert_eq!(
            (stats.accepted, stats.submissions, stats.duplicates),
            (3, 3, 0)
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
        assert_eq!(e.code().to_string(), "lookup_unsupported");
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
        assert_eq!(e.code().to_string(), "insufficient_balance");
        assert_eq!(stats_of(addr).await.accepted, 0);
        assert_eq!(stats_of(addr).await.submissions, 1);
    }

    #[tokio::test]
    async fn wrong_credentials_are_account_errors() {
        let (addr, _) = started(settings()).await;
        let wrong = adapter(addr, "not-the-key", 5_000);
        let send = wrong.send(&sms(OTP)).await.unwrap_err();
        assert!(send.is_account(), "{send:?}");
        assert_eq!(send.code().to_string(), "provider_unauthorized");
        let balance = wrong.balance().await.unwrap_err();
        assert_eq!(balance.code().to_string(), "provider_unauthorized");
        let status = wrong.status(&["FAPI0000000000000001".to_owned()]).await;
        assert!(matches!(status, Err(ProviderError::Account { .. })));
        let stats = stats_of(addr).await;
        assert_eq!((stats.accepted, stats.submissions), (0, 0));
        assert_eq!(stats.refusals.get(AUTH.id), Some(&3));

        // A simulator given no key takes nobody.
        let (_, fly) = started(SimSettings {
            credentials: serde_json::Value::Null,
            ..settings()
        })
        .await;
        assert_eq!(
            fly.send(&sms(OTP)).await.unwrap_err().code().to_string(),
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
                assert_eq!(e.code().to_string(), code);
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
        assert_eq!(e.code().to_string(), "provider_bad_answer");
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
        assert_eq!(e.code().to_string(), "provider_timeout");
        assert_eq!(stats_of(addr).await.accepted, 1);
    }

    /// Posts a documented request; the answer's JSON and the rules it names.
    async fn call(addr: SocketAddr, body: &serde_json::Value) -> (serde_json::Value, Vec<String>) {
        let answer = reqwest::Client::new()
            .post(format!("http://{addr}{API_PATH}"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let rules = core::rules_named(&answer);
        (answer.json().await.unwrap(), rules)
    }

    fn documented(fixture: &str) -> serde_json::Value {
        let mut request: serde_json::Value = serde_json::from_str(fixture).unwrap();
        request["auth"]["key"] = json!(KEY);
        request
    }

    fn fixture(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn the_documented_examples_are_answered_in_the_documented_shape() {
        let addr = start(settings()).await.unwrap();
        let mut send = documented(include_str!(
            "../../../shared/src/adapters/providers/smsfly/fixtures/send_request.json"
        ));
        // The example's sender, "sender", is a valid alpha-name.
        let (answer, rules) = call(addr, &send).await;
        assert!(rules.is_empty(), "{rules:?}: {answer}");
        core::assert_same_shape(
            &answer,
            &fixture(include_str!(
                "../../../shared/src/adapters/providers/smsfly/fixtures/send_response.json"
            )),
        );
        assert_eq!(answer["data"]["sms"]["cost"], json!("0.850"));
        let id = answer["data"]["messageID"].as_str().unwrap().to_owned();
        assert!(is_fly_id(&id), "{id}");

        let mut status = documented(include_str!(
            "../../../shared/src/adapters/providers/smsfly/fixtures/status_request.json"
        ));
        status["data"]["messageID"] = json!(id);
        let (answer, _) = call(addr, &status).await;
        let mut documented_status = fixture(include_str!(
            "../../../shared/src/adapters/providers/smsfly/fixtures/status_response.json"
        ));
        // The example answers a Viber-and-SMS message; the simulator carries SMS alone.
        documented_status["data"]
            .as_object_mut()
            .unwrap()
            .remove("viber");
        core::assert_same_shape(&answer, &documented_status);
        let date = answer["data"]["sms"]["date"].as_str().unwrap();
        assert_eq!(date.len(), "2021-12-17 10:36:12".len(), "no offset: {date}");

        let balance = documented(include_str!(
            "../../../shared/src/adapters/providers/smsfly/fixtures/balance_request.json"
        ));
        let (answer, _) = call(addr, &balance).await;
        core::assert_same_shape(
            &answer,
            &fixture(include_str!(
                "../../../shared/src/adapters/providers/smsfly/fixtures/balance_response.json"
            )),
        );

        send["data"]["sms"]["source"] = json!("");
        let (answer, rules) = call(addr, &send).await;
        assert_eq!(rules, [SOURCE.id]);
        let documented_error = fixture(include_str!(
            "../../../shared/src/adapters/providers/smsfly/fixtures/error_response.json"
        ));
        core::assert_same_shape(&answer, &documented_error);
        assert_eq!(answer["error"]["code"], documented_error["error"]["code"]);
        assert_eq!(
            answer["error"]["description"],
            documented_error["error"]["description"]
        );
    }

    #[tokio::test]
    async fn every_rule_is_enforced_named_and_counted() {
        let addr = start(SimSettings {
            start_balance: Some(1000),
            ..settings()
        })
        .await
        .unwrap();
        let send = |changes: serde_json::Value| {
            let mut sms = json!({"source": "Holub", "ttl": 5, "text": "Текст"});
            let mut data =
                json!({"recipient": "380771234567", "channels": ["sms"], "sms": sms.clone()});
            for (key, value) in changes.as_object().unwrap() {
                if ["source", "ttl", "text"].contains(&key.as_str()) {
                    if value.is_null() {
                        sms.as_object_mut().unwrap().remove(key);
                    } else {
                        sms[key] = value.clone();
                    }
                    data["sms"] = sms.clone();
                } else if value.is_null() {
                    data.as_object_mut().unwrap().remove(key);
                } else {
                    data[key] = value.clone();
                }
            }
            json!({"auth": {"key": KEY}, "action": "SENDMESSAGE", "data": data})
        };
        let cases: Vec<(&Rule, serde_json::Value)> = vec![
            (&BODY, json!("not an object")),
            (
                &AUTH,
                json!({"auth": {"key": "wrong"}, "action": "GETBALANCE"}),
            ),
            (&AUTH, json!({"action": "GETBALANCE"})),
            (&ACTION, json!({"auth": {"key": KEY}, "action": "SENDBULK"})),
            (&ACTION, json!({"auth": {"key": KEY}})),
            (
                &DATA,
                json!({"auth": {"key": KEY}, "action": "SENDMESSAGE"}),
            ),
            (&DATA, send(json!({"recipient": 380771234567u64}))),
            (
                &DATA,
                json!({"auth": {"key": KEY}, "action": "GETMESSAGESTATUS", "data": "x"}),
            ),
            (&CHANNELS, send(json!({"channels": []}))),
            (&CHANNELS, send(json!({"channels": ["telegram", "sms"]}))),
            (&CHANNELS, send(json!({"channels": ["viber"]}))),
            (&SMS, send(json!({"sms": null}))),
            (&RECIPIENT, send(json!({"recipient": "+380771234567"}))),
            (&RECIPIENT, send(json!({"recipient": "12"}))),
            (&SOURCE, send(json!({"source": null}))),
            (&SOURCE, send(json!({"source": "TwelveChars1"}))),
            (&TTL, send(json!({"ttl": 0}))),
            (&TTL, send(json!({"ttl": 1441}))),
            (&TTL, send(json!({"ttl": "5"}))),
            (&TEXT, send(json!({"text": ""}))),
            (&TEXT, send(json!({"text": null}))),
            (&FUNDS, send(json!({"text": "x".repeat(2000)}))),
            (
                &MESSAGE_ID,
                json!({"auth": {"key": KEY}, "action": "GETMESSAGESTATUS", "data": {"messageID": "FAPI0000000000000001"}}),
            ),
            (
                &MESSAGE_ID,
                json!({"auth": {"key": KEY}, "action": "GETMESSAGESTATUS", "data": {}}),
            ),
        ];
        for (rule, body) in &cases {
            let (answer, rules) = call(addr, body).await;
            assert_eq!(rules, [rule.id], "{body}: {answer}");
            assert_eq!(answer["success"], json!(0));
            assert_eq!(answer["error"]["code"], json!(rule.answer.code), "{body}");
        }
        let stats = stats_of(addr).await;
        core::assert_every_rule_applied(RULES, &stats);
        assert_eq!(stats.accepted, 0);
        for changes in [
            json!({"ttl": 1}),
            json!({"ttl": 1440}),
            json!({"ttl": null}),
            json!({"channels": ["sms", "viber"]}),
        ] {
            let (answer, rules) = call(addr, &send(changes.clone())).await;
            assert!(rules.is_empty(), "{changes}: {answer}");
        }
    }

    #[test]
    fn statuses_walk_from_accepted_to_final() {
        let core = Core::new("smsfly", settings(), 1000);
        let take = |id: &str| NewMessage {
            id: id.to_owned(),
            client_id: None,
            recipient: "380771234567".to_owned(),
            parts: 1,
        };
        let record = core.accept(vec![take("a")]).unwrap().remove(0);
        assert_eq!(status_now(&record).0, "ACCEPTD");
        let instant = Core::new(
            "smsfly",
            SimSettings {
                receipt_delay: Duration::ZERO,
                ..settings()
            },
            1000,
        );
        let done = instant.accept(vec![take("b")]).unwrap().remove(0);
        assert_eq!(status_now(&done), ("DELIVRD", done.accepted_at));
    }

    /// Everything the adapter does, at the edges of what Holub sends, within every rule.
    #[tokio::test]
    async fn the_adapter_breaks_no_rule() {
        let (addr, fly) = started(settings()).await;
        let mut short_lived = sms(OTP);
        short_lived.validity_seconds = 10;
        let mut long_lived = sms(LONG);
        long_lived.validity_seconds = 7 * 86_400;
        let sent = fly.send(&short_lived).await.unwrap();
        fly.send(&long_lived).await.unwrap();
        let many = fly.send_many(&[sms("one"), sms("two")]).await;
        assert!(many.iter().all(Result::is_ok), "{many:?}");
        assert_eq!(
            fly.status(&[sent.provider_message_id]).await.unwrap().len(),
            1
        );
        fly.balance().await.unwrap();
        let stats = stats_of(addr).await;
        assert!(stats.refusals.is_empty(), "{:?}", stats.refusals);
        assert_eq!(stats.accepted, 4);
    }
}
