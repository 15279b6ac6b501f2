//! A stand-in for Kyivstar Open Telecom's SMS API on loopback. Its wire types and rules are
//! written from the public clients Kyivstar's API is known by (each [`Rule`] names its
//! source; the documented examples are the adapter's `fixtures/`), never from Holub's
//! adapter.
//!
//! - `POST /idp/oauth2/token`: `Authorization: Basic base64(client_id:client_secret)` (from
//!   [`SimSettings::credentials`]), form `grant_type=client_credentials` →
//!   `{"access_token", "token_type": "Bearer", "expires_in": 28800}`.
//! - `POST /rest/v1/sms`, `POST /rest/v1/sms/batch`, `GET /rest/v1/sms/{msgId}`,
//!   `POST /rest/v1/sms/status/batch`, with `Authorization: Bearer <access_token>`; the same
//!   under `/sandbox` and `/mock`, the other servers the clients know.
//! - Errors are `{"reqId", "errorCode", "errorMsg"}` with a 4xx/5xx status. No catalogue of
//!   codes could be found, so the simulator's are its own (40001 is the clients' example for
//!   a bad number), except `1040`, the one code a client documents ("not delivered, or no
//!   such msgId"). Every refusal names its rule in `x-holub-sim-rule`.
//! - Receipts are polled: `accepted` until `receipt_delay`, then `delivered`, or — when not
//!   delivered — error `1040` on `GET` and no entry in the batch status. Batch keys are not
//!   remembered as idempotency keys (nothing says the real API does): a repeated key is sent
//!   again and counted in `duplicates`.
//! - `POST /__sim/revoke-tokens` forgets every access token (simulator only).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use holub_shared::domain::segments;
use holub_shared::domain::{PhoneNumber, SenderId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::core::{self, Core, NewMessage, Record, refused, tag};
use super::{Fault, SimSettings};
use crate::receipt::{bearer_token, constant_time_eq};

pub use super::core::{FAULTS_PATH, STATS_PATH, Stats};
pub const TOKEN_PATH: &str = "/idp/oauth2/token";
pub const SMS_PATH: &str = "/rest/v1/sms";
pub const SMS_ID_PATH: &str = "/rest/v1/sms/{msg_id}";
pub const SMS_BATCH_PATH: &str = "/rest/v1/sms/batch";
pub const SMS_STATUS_BATCH_PATH: &str = "/rest/v1/sms/status/batch";
pub const REVOKE_TOKENS_PATH: &str = "/__sim/revoke-tokens";
/// What the token answer says of its lifetime: 8 hours.
pub const TOKEN_LIFETIME_SECONDS: u64 = 28_800;
const MAX_BATCH: usize = 1000;

const GO: &str = "iamgoroot/kyivstar-opentelecom-go";
const DTO: &str = "imsadhappy/laravel-kyivstar-api src/Dto/Sms.php";

/// A rule of this simulator, with the error Kyivstar answers when it is broken.
pub type Rule = core::Rule<KsError>;

/// An HTTP status with the `errorCode` and `errorMsg` of the error body (for the token
/// endpoint, the OAuth `error` as the message, and no code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KsError {
    pub status: u16,
    pub code: i64,
    pub message: &'static str,
}

pub const CLIENT: Rule = Rule {
    id: "kyivstar.token.client",
    description: "the token request authenticates with Basic base64(client_id:client_secret); \
                  else 401 invalid_client",
    source: "imsadhappy/laravel-kyivstar-api src/Services/AuthenticationService.php",
    answer: KsError {
        status: 401,
        code: 0,
        message: "invalid_client",
    },
};
pub const GRANT: Rule = Rule {
    id: "kyivstar.token.grant",
    description: "the token request's form says grant_type=client_credentials; else 400 \
                  unsupported_grant_type",
    source: "imsadhappy/laravel-kyivstar-api AuthenticationService.php; RFC 6749 §4.4",
    answer: KsError {
        status: 400,
        code: 0,
        message: "unsupported_grant_type",
    },
};
pub const BEARER: Rule = Rule {
    id: "kyivstar.auth.bearer",
    description: "API calls carry Authorization: Bearer with a live access token; else 401",
    source: "iamgoroot/kyivstar-opentelecom-go oauth.go, internal/client/httpx.go",
    answer: KsError {
        status: 401,
        code: 40101,
        message: "Invalid credentials",
    },
};
pub const BODY: Rule = Rule {
    id: "kyivstar.body.json",
    description: "the body is JSON of the documented shape, with no unknown members; else 400",
    source: "iamgoroot/kyivstar-opentelecom-go api/v1/sms/models.go",
    answer: KsError {
        status: 400,
        code: 40000,
        message: "The request body is not valid JSON of the expected shape",
    },
};
pub const TO: Rule = Rule {
    id: "kyivstar.to.number",
    description: "to is an international number as digits (380…); else 400 40001",
    source: "iamgoroot/kyivstar-opentelecom-go test/local/handlers/sms.go (40001)",
    answer: KsError {
        status: 400,
        code: 40001,
        message: "Invalid phone number format",
    },
};
pub const FROM_REQUIRED: Rule = Rule {
    id: "kyivstar.from.required",
    description: "from is not empty; else 400",
    source: GO,
    answer: KsError {
        status: 400,
        code: 40002,
        message: "from is required",
    },
};
pub const FROM_ALPHA: Rule = Rule {
    id: "kyivstar.from.alpha",
    description: "from is an alpha-name (letters, at most 11 characters), not a number; else 422",
    source: "iamgoroot/kyivstar-opentelecom-go README.md (registered alpha-name)",
    answer: KsError {
        status: 422,
        code: 42201,
        message: "from is not an alpha-name registered for this account",
    },
};
pub const TEXT: Rule = Rule {
    id: "kyivstar.text.required",
    description: "text is not empty; else 400",
    source: GO,
    answer: KsError {
        status: 400,
        code: 40003,
        message: "text is required",
    },
};
pub const TTL: Rule = Rule {
    id: "kyivstar.message_ttl_sec.range",
    description: "messageTtlSec, if given, is an integer from 0 to 86400; else 400",
    source: DTO,
    answer: KsError {
        status: 400,
        code: 40004,
        message: "messageTtlSec must be 0 to 86400",
    },
};
pub const MAX_SEGMENTS: Rule = Rule {
    id: "kyivstar.max_segments.range",
    description: "maxSegments, if given, is an integer from 1 to 6; else 400",
    source: DTO,
    answer: KsError {
        status: 400,
        code: 40005,
        message: "maxSegments must be 1 to 6",
    },
};
pub const SEGMENTS: Rule = Rule {
    id: "kyivstar.text.segments",
    description: "text fits maxSegments parts (6 if not given); else 413",
    source: DTO,
    answer: KsError {
        status: 413,
        code: 41301,
        message: "The text needs more segments than maxSegments allows",
    },
};
pub const BATCH_EMPTY: Rule = Rule {
    id: "kyivstar.batch.required",
    description: "a batch's data has at least one item; else 400",
    source: "iamgoroot/kyivstar-opentelecom-go test/local/sms_test.go",
    answer: KsError {
        status: 400,
        code: 40006,
        message: "data is empty",
    },
};
pub const BATCH_LIMIT: Rule = Rule {
    id: "kyivstar.batch.limit",
    description: "a batch has at most 1000 items (the simulator's own limit); else 413",
    source: "none found: the simulator's own",
    answer: KsError {
        status: 413,
        code: 41302,
        message: "At most 1000 items per batch",
    },
};
pub const ENDPOINT: Rule = Rule {
    id: "kyivstar.endpoint.known",
    description: "the path is one of the SMS API's; else 404",
    source: "iamgoroot/kyivstar-opentelecom-go CLAUDE.md (the SMS paths of the OpenAPI document)",
    answer: KsError {
        status: 404,
        code: 40400,
        message: "No such endpoint",
    },
};
pub const MSG_ID: Rule = Rule {
    id: "kyivstar.msg_id.known",
    description: "a status query names a msgId that was sent; else 404 1040 (no entry in a \
                  batch)",
    source: "MakarovIgor/kyivstar.sms.api.php.client src/KyivstarSmsClient.php (1040)",
    answer: KsError {
        status: 404,
        code: 1040,
        message: "Message is not delivered or msgId does not exist",
    },
};

/// Every rule this simulator enforces.
pub const RULES: &[Rule] = &[
    CLIENT,
    GRANT,
    BEARER,
    BODY,
    TO,
    FROM_REQUIRED,
    FROM_ALPHA,
    TEXT,
    TTL,
    MAX_SEGMENTS,
    SEGMENTS,
    BATCH_EMPTY,
    BATCH_LIMIT,
    ENDPOINT,
    MSG_ID,
];

/// One message as the API takes it; the numbers kept as JSON so that a wrong type or range
/// is refused by its own rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SmsItem {
    from: String,
    to: String,
    text: String,
    #[serde(default)]
    message_ttl_sec: Option<Value>,
    #[serde(default)]
    max_segments: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    data: BTreeMap<String, SmsItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    data: Vec<String>,
}

/// Checks one message as the operator gateway would; its parts if it passes.
fn check(item: &SmsItem) -> Result<u32, &'static Rule> {
    let to = item.to.trim();
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || PhoneNumber::parse(&format!("+{digits}")).is_err()
    {
        return Err(&TO);
    }
    if item.from.trim().is_empty() {
        return Err(&FROM_REQUIRED);
    }
    if !matches!(SenderId::parse(&item.from), Ok(SenderId::Alpha(_))) {
        return Err(&FROM_ALPHA);
    }
    if item.text.is_empty() {
        return Err(&TEXT);
    }
    let integer_in = |value: &Option<Value>, range: std::ops::RangeInclusive<u64>| {
        value
            .as_ref()
            .is_none_or(|v| v.as_u64().is_some_and(|n| range.contains(&n)))
    };
    if !integer_in(&item.message_ttl_sec, 0..=86_400) {
        return Err(&TTL);
    }
    if !integer_in(&item.max_segments, 1..=6) {
        return Err(&MAX_SEGMENTS);
    }
    let most = item
        .max_segments
        .as_ref()
        .and_then(Value::as_u64)
        .unwrap_or(6);
    let parts = segments::estimate(&item.text).segments;
    if u64::try_from(parts).unwrap_or(u64::MAX) > most {
        return Err(&SEGMENTS);
    }
    Ok(u32::try_from(parts).unwrap_or(u32::MAX))
}

fn new_req_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

fn date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn http_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"reqId": new_req_id(), "errorCode": code, "errorMsg": message});
    (status, axum::Json(body)).into_response()
}

fn refuse(rule: &Rule) -> Response {
    let KsError {
        status,
        code,
        message,
    } = rule.answer;
    let mut response = error(http_status(status), code, message);
    if rule.id == BEARER.id {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    refused(rule, response)
}

fn rate_limit_headers(response: &mut Response, remaining: u32) {
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-rate-limit-limit", 100),
        ("x-rate-limit-period-sec", 1),
        ("x-rate-limit-remaining", remaining),
        ("x-rate-limit-reset", 1),
    ] {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
}

fn ok_json(body: Value, req_id: &str) -> Response {
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    rate_limit_headers(&mut response, 99);
    if let Ok(value) = HeaderValue::from_str(req_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

struct Sim {
    core: Arc<Core>,
    /// `base64(client_id:client_secret)`, what `Authorization: Basic` must carry.
    basic: String,
    tokens: Mutex<HashMap<String, Instant>>,
    batch_keys: Mutex<HashSet<String>>,
}

/// How the status query sees a message now.
enum Seen {
    Accepted(DateTime<Utc>),
    Delivered(DateTime<Utc>),
    /// Final and not delivered: error 1040, as for an unknown id.
    NotDelivered,
    Unknown,
}

impl Sim {
    /// No code panics while holding the lock, so a poisoned one still holds sound data.
    fn tokens(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn client_authenticated(&self, headers: &HeaderMap) -> bool {
        let Some((scheme, value)) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
        else {
            return false;
        };
        scheme.eq_ignore_ascii_case("basic")
            & constant_time_eq(value.trim().as_bytes(), self.basic.as_bytes())
    }

    fn issue_token(&self) -> String {
        let mut rng = rand::rng();
        let token = format!(
            "ks-sim-{:032x}{:032x}",
            rng.random::<u128>(),
            rng.random::<u128>()
        );
        let now = Instant::now();
        let mut tokens = self.tokens();
        tokens.retain(|_, until| *until > now);
        tokens.insert(
            token.clone(),
            now + Duration::from_secs(TOKEN_LIFETIME_SECONDS),
        );
        token
    }

    fn authorized(&self, headers: &HeaderMap) -> Result<(), &'static Rule> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(&BEARER)?;
        let now = Instant::now();
        let known = self.tokens().iter().any(|(known, until)| {
            constant_time_eq(known.as_bytes(), token.as_bytes()) & (*until > now)
        });
        if known { Ok(()) } else { Err(&BEARER) }
    }

    /// Takes one submitted message; `key` is its batch key, if any.
    fn submit(&self, key: Option<&str>, item: &SmsItem) -> Result<Record, &'static Rule> {
        self.core.submitted(1);
        if let Some(key) = key {
            let mut keys = self
                .batch_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if !keys.insert(key.to_owned()) {
                self.core.duplicated(1);
            }
        }
        let parts = check(item)?;
        let message = NewMessage {
            id: core::uuid_shaped(),
            client_id: None,
            recipient: item.to.clone(),
            parts,
        };
        // Kyivstar keeps no balance the API shows: the core's is never short of one part.
        self.core
            .accept(vec![message])
            .map(|mut taken| taken.remove(0))
            .map_err(|_| &BODY)
    }

    fn seen(&self, msg_id: &str) -> Seen {
        match self.core.record(msg_id) {
            None => Seen::Unknown,
            Some(r) if !r.is_final() => Seen::Accepted(r.accepted_at),
            Some(r) if r.delivered => Seen::Delivered(r.final_at()),
            Some(_) => Seen::NotDelivered,
        }
    }
}

async fn token_handler(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if !sim.client_authenticated(&headers) {
        let body = json!({
            "error": CLIENT.answer.message,
            "error_description": "Client authentication failed",
            "error_hint": "Send Authorization: Basic base64(client_id:client_secret)",
            "status_code": CLIENT.answer.status
        });
        return refused(
            &CLIENT,
            (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response(),
        );
    }
    let granted = url::form_urlencoded::parse(&body)
        .any(|(key, value)| key == "grant_type" && value == "client_credentials");
    if !granted {
        let body = json!({
            "error": GRANT.answer.message,
            "error_description": "grant_type must be client_credentials",
            "status_code": GRANT.answer.status
        });
        return refused(
            &GRANT,
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response(),
        );
    }
    let answer = json!({
        "access_token": sim.issue_token(),
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS
    });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn send_handler(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(rule) = sim.authorized(&headers) {
        return refuse(rule);
    }
    let Ok(item) = serde_json::from_slice::<SmsItem>(&body) else {
        return refuse(&BODY);
    };
    match sim.submit(None, &item) {
        Ok(record) => {
            let req_id = new_req_id();
            let body =
                json!({"reqId": req_id, "msgId": record.id, "reservedSmsSegments": record.parts});
            let mut response = ok_json(body, &req_id);
            response.headers_mut().insert(
                HeaderName::from_static("x-reserved-tarification-units"),
                HeaderValue::from(record.parts),
            );
            response
        }
        Err(rule) => refuse(rule),
    }
}

async fn batch_handler(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(rule) = sim.authorized(&headers) {
        return refuse(rule);
    }
    let Ok(batch) = serde_json::from_slice::<BatchBody>(&body) else {
        return refuse(&BODY);
    };
    if batch.data.is_empty() {
        return refuse(&BATCH_EMPTY);
    }
    if batch.data.len() > MAX_BATCH {
        return refuse(&BATCH_LIMIT);
    }
    let mut data = serde_json::Map::new();
    let mut rules = Vec::new();
    for (key, item) in &batch.data {
        let result = match sim.submit(Some(key), item) {
            Ok(record) => json!({"msgId": record.id, "reservedSmsSegments": record.parts}),
            Err(rule) => {
                rules.push(rule);
                let KsError { code, message, .. } = rule.answer;
                json!({"errorCode": code.to_string(), "errorMsg": message})
            }
        };
        data.insert(key.clone(), result);
    }
    let req_id = new_req_id();
    let mut response = ok_json(json!({"reqId": req_id, "data": data}), &req_id);
    for rule in rules {
        tag(&mut response, rule);
    }
    response
}

async fn check_handler(
    State(sim): State<Arc<Sim>>,
    Path(msg_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(rule) = sim.authorized(&headers) {
        return refuse(rule);
    }
    let req_id = new_req_id();
    let (status, at) = match sim.seen(&msg_id) {
        Seen::Accepted(at) => ("accepted", at),
        Seen::Delivered(at) => ("delivered", at),
        Seen::NotDelivered => {
            let KsError {
                status,
                code,
                message,
            } = MSG_ID.answer;
            return error(http_status(status), code, message);
        }
        Seen::Unknown => return refuse(&MSG_ID),
    };
    ok_json(
        json!({"reqId": req_id, "msgId": msg_id, "status": status, "date": date(at)}),
        &req_id,
    )
}

async fn status_batch_handler(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(rule) = sim.authorized(&headers) {
        return refuse(rule);
    }
    let Ok(query) = serde_json::from_slice::<StatusBody>(&body) else {
        return refuse(&BODY);
    };
    if query.data.is_empty() {
        return refuse(&BATCH_EMPTY);
    }
    if query.data.len() > MAX_BATCH {
        return refuse(&BATCH_LIMIT);
    }
    let mut data = serde_json::Map::new();
    let mut unknown = 0;
    for msg_id in &query.data {
        let (status, at) = match sim.seen(msg_id) {
            Seen::Accepted(at) => ("accepted", at),
            Seen::Delivered(at) => ("delivered", at),
            Seen::NotDelivered => continue,
            Seen::Unknown => {
                unknown += 1;
                continue;
            }
        };
        data.insert(
            msg_id.clone(),
            json!({"msgId": msg_id, "status": status, "date": date(at)}),
        );
    }
    let req_id = new_req_id();
    let mut response = ok_json(json!({"reqId": req_id, "data": data}), &req_id);
    for _ in 0..unknown {
        tag(&mut response, &MSG_ID);
    }
    response
}

async fn revoke_handler(State(sim): State<Arc<Sim>>) -> Response {
    sim.tokens().clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn fallback() -> Response {
    refuse(&ENDPOINT)
}

/// Kyivstar's faults in its error format: 500, a 429 with its rate-limit headers, and an
/// HTML page where JSON was due.
fn fault_page(fault: Fault) -> Response {
    match fault {
        Fault::RateLimited => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, 42901, "Rate limit exceeded");
            rate_limit_headers(&mut response, 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            "Internal server error",
        ),
    }
}

/// The simulator's endpoints over a fresh state; `InvalidInput` if `settings.credentials`
/// is not `{"client_id", "client_secret"}`.
pub fn router(settings: SimSettings) -> io::Result<Router> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            r#"kyivstar simulator: credentials must be {"client_id": "...", "client_secret": "..."}, neither empty"#,
        )
    };
    let credentials = settings.credentials.as_object().ok_or_else(invalid)?;
    let field = |name: &str| {
        credentials
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(client_id), Some(client_secret)) = (field("client_id"), field("client_secret"))
    else {
        return Err(invalid());
    };
    if credentials.len() != 2 {
        return Err(invalid());
    }
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    // No balance is documented: the account never runs short.
    let settings = SimSettings {
        start_balance: None,
        ..settings
    };
    let core = Core::new("kyivstar", settings, i64::MAX);
    let sim = Arc::new(Sim {
        core: Arc::clone(&core),
        basic,
        tokens: Mutex::default(),
        batch_keys: Mutex::default(),
    });
    let rest = Router::new()
        .route(SMS_PATH, post(send_handler))
        .route(SMS_BATCH_PATH, post(batch_handler))
        .route(SMS_STATUS_BATCH_PATH, post(status_batch_handler))
        .route(SMS_ID_PATH, get(check_handler));
    let api = Router::new()
        .route(TOKEN_PATH, post(token_handler))
        .merge(rest.clone())
        .nest("/sandbox", rest.clone())
        .nest("/mock", rest)
        .fallback(fallback)
        .with_state(Arc::clone(&sim));
    let own = Router::new()
        .route(REVOKE_TOKENS_PATH, post(revoke_handler))
        .with_state(sim);
    Ok(core::router(core, api, fault_page, RULES).merge(own))
}

/// Starts a simulator on `127.0.0.1` with a port of the system's choosing, serving in the
/// background until the runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("kyivstar", router(settings)?).await
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use holub_shared::adapters::providers::kyivstar;
    use holub_shared::domain::status::ReceiptState;
    use holub_shared::domain::{Kopiyky, MessageId};
    use holub_shared::ports::{
        OutboundSms, ProviderError, ReceiptMode, Secret, SmsProvider, Submitted,
    };

    use super::*;
    use crate::providers::Faults;

    const CLIENT_ID: &str = "holub-test-client";
    const CLIENT_SECRET: &str = "holub-test-secret";

    fn settings() -> SimSettings {
        SimSettings {
            credentials: json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
            receipt_delay: Duration::from_millis(100),
            delivered_ratio: 1.0,
            ..SimSettings::default()
        }
    }

    fn credentials() -> Secret {
        Secret::new(json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}).to_string())
    }

    fn provider_with(
        addr: SocketAddr,
        extra: serde_json::Value,
        secret: &Secret,
    ) -> Arc<dyn SmsProvider> {
        let mut settings = json!({
            "base_url": format!("http://{addr}"),
            "price_per_segment": "0.85",
        });
        if let (Some(settings), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
            settings.extend(extra.clone());
        }
        kyivstar::build("kyivstar-test", settings, secret)
            .expect("valid settings")
            .provider
    }

    fn provider(addr: SocketAddr) -> Arc<dyn SmsProvider> {
        provider_with(addr, json!({}), &credentials())
    }

    fn sms_from(text: &str, from: &str) -> OutboundSms {
        let estimate = segments::estimate(text);
        OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse("+380671234567").expect("a valid number"),
            from: SenderId::parse(from).expect("a valid sender"),
            text: text.to_owned(),
            encoding: estimate.encoding,
            segments: u16::try_from(estimate.segments).expect("few parts"),
            validity_seconds: 3600,
        }
    }

    fn sms(text: &str) -> OutboundSms {
        sms_from(text, "Holub")
    }

    fn kind(e: &ProviderError) -> &'static str {
        match e {
            ProviderError::Temporary { .. } => "temporary",
            ProviderError::Permanent { .. } => "permanent",
            ProviderError::Account { .. } => "account",
            ProviderError::Unknown { .. } => "unknown",
        }
    }

    async fn stats(addr: SocketAddr) -> Stats {
        reqwest::get(format!("http://{addr}{STATS_PATH}"))
            .await
            .expect("stats answer")
            .json()
            .await
            .expect("stats JSON")
    }

    async fn set_faults(addr: SocketAddr, faults: serde_json::Value) {
        let response = reqwest::Client::new()
            .put(format!("http://{addr}{FAULTS_PATH}"))
            .json(&faults)
            .send()
            .await
            .expect("faults answer");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }

    async fn raw_token(addr: SocketAddr) -> String {
        let answer = core::json_of(
            reqwest::Client::new()
                .post(format!("http://{addr}{TOKEN_PATH}"))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
        answer["access_token"].as_str().expect("a token").to_owned()
    }

    #[tokio::test]
    async fn bad_credentials_settings_do_not_start() {
        for credentials in [
            serde_json::Value::Null,
            json!({"token": "x"}),
            json!({"client_id": "", "client_secret": "x"}),
        ] {
            let e = start(SimSettings {
                credentials,
                ..settings()
            })
            .await
            .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[tokio::test]
    async fn sends_and_prices_by_reserved_segments() {
        let addr = start(settings()).await.unwrap();
        let provider = provider(addr);
        let short = provider.send(&sms("Ваш код: 4821")).await.unwrap();
        assert_eq!(short.cost, Some(Kopiyky(85)));
        assert_eq!(short.provider_message_id.len(), 36);
        // 100 Cyrillic letters: UCS-2, two parts.
        let long = provider.send(&sms(&"ї".repeat(100))).await.unwrap();
        assert_eq!(long.cost, Some(Kopiyky(170)));
        assert_ne!(short.provider_message_id, long.provider_message_id);
        let stats = stats(addr).await;
        assert_eq!(
            (stats.accepted, stats.submissions, stats.duplicates),
            (2, 2, 0)
        );
    }

    #[tokio::test]
    async fn without_a_price_the_cost_is_unknown() {
        let addr = start(settings()).await.unwrap();
        let sim_settings = json!({"base_url": format!("http://{addr}")});
        let provider = kyivstar::build("ks", sim_settings, &credentials())
            .unwrap()
            .provider;
        let submitted = provider.send(&sms("hello")).await.unwrap();
        assert_eq!(submitted.cost, None);
    }

    #[tokio::test]
    async fn status_is_polled_enroute_then_delivered() {
        let addr = start(SimSettings {
            receipt_delay: Duration::from_millis(300),
            ..settings()
        })
        .await
        .unwrap();
        let provider = provider(addr);
        assert_eq!(provider.receipt_mode(), ReceiptMode::Poll);
        let Submitted {
            provider_message_id: id,
            ..
        } = provider.send(&sms("hello")).await.unwrap();
        let ids = [
            id.clone(),
            "00000000-0000-0000-0000-000000000000".to_owned(),
        ];

        let early = provider.status(&ids).await.unwrap();
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].provider_message_id, id);
        assert_eq!(early[0].part, holub_shared::ports::provider::WHOLE_MESSAGE);
        assert_eq!(early[0].state, ReceiptState::Enroute);

        tokio::time::sleep(Duration::from_millis(400)).await;
        let late = provider.status(&ids).await.unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].state, ReceiptState::Delivered);
        assert!(late[0].at > early[0].at);
        assert!(provider.status(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn undelivered_messages_are_no_news() {
        let addr = start(SimSettings {
            delivered_ratio: 0.0,
            receipt_delay: Duration::from_millis(50),
            ..settings()
        })
        .await
        .unwrap();
        let provider = provider(addr);
        let id = provider
            .send(&sms("hello"))
            .await
            .unwrap()
            .provider_message_id;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            provider
                .status(std::slice::from_ref(&id))
                .await
                .unwrap()
                .is_empty()
        );

        let token = raw_token(addr).await;
        let response = reqwest::Client::new()
            .get(format!("http://{addr}{SMS_PATH}/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["errorCode"], json!(1040));
    }

    #[tokio::test]
    async fn send_many_uses_the_batch_request_and_keys_are_not_deduplicated() {
        let addr = start(settings()).await.unwrap();
        let provider = provider(addr);
        let batch = [
            sms("one"),
            sms_from("two", "+380671234567"),
            sms(&"ї".repeat(100)),
        ];
        let results = provider.send_many(&batch).await;
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().unwrap().cost, Some(Kopiyky(85)));
        let refused = results[1].as_ref().unwrap_err();
        assert_eq!(
            (kind(refused), refused.code().to_string().as_str()),
            ("permanent", "provider_rejected")
        );
        assert_eq!(results[2].as_ref().unwrap().cost, Some(Kopiyky(170)));
        let counted = stats(addr).await;
        assert_eq!(
            (counted.accepted, counted.submissions, counted.duplicates),
            (2, 3, 0)
        );

        // The same keys again: Kyivstar is not known to remember them, so it sends again.
        let again = provider.send_many(&batch).await;
        assert_ne!(
            again[0].as_ref().unwrap().provider_message_id,
            results[0].as_ref().unwrap().provider_message_id
        );
        let stats = stats(addr).await;
        assert_eq!(
            (stats.accepted, stats.submissions, stats.duplicates),
            (4, 6, 3)
        );
    }

    #[tokio::test]
    async fn a_large_batch_is_split_by_batch_size() {
        let addr = start(settings()).await.unwrap();
        let provider = provider_with(addr, json!({"batch_size": 2}), &credentials());
        let batch: Vec<OutboundSms> = (0..5).map(|i| sms(&format!("message {i}"))).collect();
        let results = provider.send_many(&batch).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(stats(addr).await.accepted, 5);
        let ids: Vec<String> = results
            .into_iter()
            .map(|r| r.map(|s| s.provider_message_id).unwrap_or_default())
            .collect();
        assert_eq!(provider.status(&ids).await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_text_over_max_segments_is_too_long() {
        let addr = start(settings()).await.unwrap();
        let provider = provider_with(addr, json!({"max_segments": 1}), &credentials());
        let e = provider.send(&sms(&"ї".repeat(100))).await.unwrap_err();
        assert_eq!(
            (kind(&e), e.code().to_string().as_str()),
            ("permanent", "text_too_long")
        );
        assert_eq!(stats(addr).await.accepted, 0);
    }

    #[tokio::test]
    async fn a_phone_sender_is_refused_as_invalid() {
        let addr = start(settings()).await.unwrap();
        let e = provider(addr)
            .send(&sms_from("hi", "+380671234567"))
            .await
            .unwrap_err();
        assert_eq!(
            (kind(&e), e.code().to_string().as_str()),
            ("permanent", "provider_rejected")
        );
    }

    #[tokio::test]
    async fn lookup_and_balance_are_unsupported() {
        let addr = start(settings()).await.unwrap();
        let provider = provider(addr);
        let e = provider
            .lookup(&MessageId::generate(Utc::now()))
            .await
            .unwrap_err();
        assert_eq!(
            (kind(&e), e.code().to_string().as_str()),
            ("permanent", "lookup_unsupported")
        );
        let e = provider.balance().await.unwrap_err();
        assert_eq!(
            (kind(&e), e.code().to_string().as_str()),
            ("permanent", "balance_unsupported")
        );
    }

    #[tokio::test]
    async fn wrong_credentials_are_account_errors() {
        let addr = start(settings()).await.unwrap();
        let wrong = Secret::new(
            json!({"client_id": CLIENT_ID, "client_secret": "not-the-secret"}).to_string(),
        );
        let provider = provider_with(addr, json!({}), &wrong);
        let e = provider.send(&sms("hello")).await.unwrap_err();
        assert_eq!(
            (kind(&e), e.code().to_string().as_str()),
            ("account", "provider_unauthorized")
        );
        let e = provider.status(&["x".to_owned()]).await.unwrap_err();
        assert_eq!(kind(&e), "account");
        assert_eq!(stats(addr).await.submissions, 0);
    }

    #[tokio::test]
    async fn a_refused_token_is_replaced_once() {
        let addr = start(settings()).await.unwrap();
        let provider = provider(addr);
        provider.send(&sms("one")).await.unwrap();
        let revoked = reqwest::Client::new()
            .post(format!("http://{addr}{REVOKE_TOKENS_PATH}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
        provider.send(&sms("two")).await.unwrap();
        assert_eq!(stats(addr).await.accepted, 2);
    }

    /// Each fault, played on the send after a token was taken, maps to its kind of error.
    #[tokio::test]
    async fn faults_map_to_provider_errors() {
        let cases = [
            (
                json!({"server_error_ratio": 1.0}),
                "temporary",
                "provider_unavailable",
                0,
            ),
            (
                json!({"down": true}),
                "temporary",
                "provider_unavailable",
                0,
            ),
            (
                json!({"rate_limit_ratio": 1.0}),
                "temporary",
                "provider_rate_limited",
                0,
            ),
            (
                json!({"malformed_ratio": 1.0}),
                "unknown",
                "provider_bad_answer",
                1,
            ),
            (
                json!({"timeout_ratio": 1.0}),
                "unknown",
                "provider_timeout",
                1,
            ),
        ];
        for (faults, want_kind, want_code, accepted) in cases {
            let addr = start(settings()).await.unwrap();
            let provider = provider_with(addr, json!({"timeout_ms": 500}), &credentials());
            // Takes the token before the faults are on.
            assert!(provider.status(&["x".to_owned()]).await.unwrap().is_empty());
            set_faults(addr, faults.clone()).await;
            let e = provider.send(&sms("hello")).await.unwrap_err();
            assert_eq!(
                (kind(&e), e.code().to_string().as_str()),
                (want_kind, want_code),
                "{faults}"
            );
            assert_eq!(stats(addr).await.accepted, accepted, "{faults}");
            let many = provider.send_many(&[sms("a"), sms("b")]).await;
            for result in many {
                let e = result.unwrap_err();
                assert_eq!(
                    (kind(&e), e.code().to_string().as_str()),
                    (want_kind, want_code),
                    "{faults}"
                );
            }
            assert!(
                provider.status(&["x".to_owned()]).await.is_err(),
                "{faults}"
            );
        }
    }

    /// A fault at the token endpoint leaves nothing sent, so it is never an unknown outcome.
    #[tokio::test]
    async fn faults_at_the_token_endpoint_are_temporary() {
        let cases = [
            (json!({"server_error_ratio": 1.0}), "provider_unavailable"),
            (json!({"rate_limit_ratio": 1.0}), "provider_rate_limited"),
            (json!({"malformed_ratio": 1.0}), "provider_bad_answer"),
            (json!({"timeout_ratio": 1.0}), "provider_timeout"),
        ];
        for (faults, want_code) in cases {
            let faults: Faults = serde_json::from_value(faults).unwrap();
            let addr = start(SimSettings {
                faults,
                ..settings()
            })
            .await
            .unwrap();
            let provider = provider_with(addr, json!({"timeout_ms": 500}), &credentials());
            let e = provider.send(&sms("hello")).await.unwrap_err();
            assert_eq!(
                (kind(&e), e.code().to_string().as_str()),
                ("temporary", want_code)
            );
            assert_eq!(stats(addr).await.submissions, 0);
        }
    }

    #[tokio::test]
    async fn the_api_wants_a_valid_token() {
        let addr = start(settings()).await.unwrap();
        let http = reqwest::Client::new();
        let body = json!({"from": "Holub", "to": "380671234567", "text": "hi"});
        for token in [None, Some("made-up")] {
            let mut request = http.post(format!("http://{addr}{SMS_PATH}")).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let error: serde_json::Value = response.json().await.unwrap();
            assert_eq!(error["errorCode"], json!(40101));
        }
        let response = http
            .post(format!("http://{addr}{TOKEN_PATH}"))
            .basic_auth(CLIENT_ID, Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = http
            .post(format!("http://{addr}{TOKEN_PATH}"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "password")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(stats(addr).await.submissions, 0);
    }

    fn fixture(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    /// The documented examples, posted as they are, are answered in the documented shape.
    #[tokio::test]
    async fn the_documented_examples_are_answered_in_the_documented_shape() {
        let addr = start(settings()).await.unwrap();
        let http = reqwest::Client::new();
        let token = raw_token(addr).await;
        let url = |path: &str| format!("http://{addr}{path}");

        let sent = http
            .post(url(SMS_PATH))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(include_str!(
                "../../../shared/src/adapters/providers/kyivstar/fixtures/send_request.json"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::OK);
        assert!(sent.headers().contains_key("x-request-id"));
        assert_eq!(sent.headers()["x-reserved-tarification-units"], "1");
        let sent: serde_json::Value = sent.json().await.unwrap();
        core::assert_same_shape(
            &sent,
            &fixture(include_str!(
                "../../../shared/src/adapters/providers/kyivstar/fixtures/send_response.json"
            )),
        );
        let msg_id = sent["msgId"].as_str().unwrap().to_owned();

        for prefix in ["", "/sandbox", "/mock"] {
            let checked = core::json_of(
                http.get(url(&format!("{prefix}{SMS_PATH}/{msg_id}")))
                    .bearer_auth(&token),
            )
            .await;
            core::assert_same_shape(
                &checked,
                &fixture(include_str!(
                    "../../../shared/src/adapters/providers/kyivstar/fixtures/check_response.json"
                )),
            );
            assert_eq!(checked["status"], json!("accepted"));
            assert!(checked["date"].as_str().is_some_and(|d| d.ends_with('Z')));
        }

        let batch = core::json_of(http
            .post(url(SMS_BATCH_PATH))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(include_str!(
                "../../../shared/src/adapters/providers/kyivstar/fixtures/batch_send_request.json"
            ))).await;
        let documented = fixture(include_str!(
            "../../../shared/src/adapters/providers/kyivstar/fixtures/batch_send_response.json"
        ));
        core::assert_same_shape(&batch, &documented);

        let mut query = fixture(include_str!(
            "../../../shared/src/adapters/providers/kyivstar/fixtures/status_batch_request.json"
        ));
        query["data"][0] = json!(msg_id);
        let statuses = core::json_of(
            http.post(url(SMS_STATUS_BATCH_PATH))
                .bearer_auth(&token)
                .json(&query),
        )
        .await;
        let mut documented = fixture(include_str!(
            "../../../shared/src/adapters/providers/kyivstar/fixtures/status_batch_response.json"
        ));
        let item = documented["data"]["20200000-0000-0000-0000-380670000200"].take();
        documented["data"] = json!({ msg_id.clone(): item });
        core::assert_same_shape(&statuses, &documented);

        let refused = http
            .post(url(SMS_PATH))
            .bearer_auth(&token)
            .json(&json!({"from": "messagedesk", "to": "12", "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let refused: serde_json::Value = refused.json().await.unwrap();
        let documented = fixture(include_str!(
            "../../../shared/src/adapters/providers/kyivstar/fixtures/error_bad_request.json"
        ));
        core::assert_same_shape(&refused, &documented);
        assert_eq!(refused["errorCode"], documented["errorCode"]);
        assert_eq!(refused["errorMsg"], documented["errorMsg"]);

        let unknown = http
            .get(url(&format!("{SMS_PATH}/{}", core::uuid_shaped())))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let unknown: serde_json::Value = unknown.json().await.unwrap();
        let documented = fixture(include_str!(
            "../../../shared/src/adapters/providers/kyivstar/fixtures/error_not_delivered.json"
        ));
        assert_eq!(unknown["errorCode"], documented["errorCode"]);
        assert_eq!(unknown["errorMsg"], documented["errorMsg"]);

        let token_answer = core::json_of(
            http.post(url(TOKEN_PATH))
                .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
        let documented = fixture(include_str!(
            "../../../shared/src/adapters/providers/kyivstar/fixtures/token_response.json"
        ));
        core::assert_same_shape(&token_answer, &documented);
        assert_eq!(token_answer["expires_in"], documented["expires_in"]);

        set_faults(addr, json!({"rate_limit_ratio": 1.0})).await;
        let limited = http
            .post(url(SMS_PATH))
            .bearer_auth(&token)
            .json(&json!({"from": "messagedesk", "to": "380670000200", "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()["x-rate-limit-remaining"], "0");
        let limited: serde_json::Value = limited.json().await.unwrap();
        assert_eq!(limited["errorCode"], json!(42901));
    }

    #[tokio::test]
    async fn every_rule_is_enforced_named_and_counted() {
        let addr = start(settings()).await.unwrap();
        let http = reqwest::Client::new();
        let token = raw_token(addr).await;
        let url = |path: &str| format!("http://{addr}{path}");
        let one = |changes: serde_json::Value| {
            let mut item = json!({"from": "Holub", "to": "380671234567", "text": "Привіт"});
            for (key, value) in changes.as_object().unwrap() {
                item[key] = value.clone();
            }
            item
        };
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_BATCH)
            .map(|i| (format!("k{i}"), one(json!({}))))
            .collect();
        // (rule, path, body); the single send, so that the HTTP status is the rule's.
        let cases: Vec<(&Rule, &str, serde_json::Value)> = vec![
            (
                &BODY,
                SMS_PATH,
                json!({"from": "Holub", "to": "380671234567"}),
            ),
            (&BODY, SMS_PATH, one(json!({"priority": 1}))),
            (&BODY, SMS_PATH, one(json!({"to": 380671234567u64}))),
            (&TO, SMS_PATH, one(json!({"to": "0671234567"}))),
            (&FROM_REQUIRED, SMS_PATH, one(json!({"from": " "}))),
            (&FROM_ALPHA, SMS_PATH, one(json!({"from": "380671234567"}))),
            (&TEXT, SMS_PATH, one(json!({"text": ""}))),
            (&TTL, SMS_PATH, one(json!({"messageTtlSec": 86401}))),
            (&TTL, SMS_PATH, one(json!({"messageTtlSec": -1}))),
            (&TTL, SMS_PATH, one(json!({"messageTtlSec": "60"}))),
            (&MAX_SEGMENTS, SMS_PATH, one(json!({"maxSegments": 0}))),
            (&MAX_SEGMENTS, SMS_PATH, one(json!({"maxSegments": 7}))),
            (
                &SEGMENTS,
                SMS_PATH,
                one(json!({"text": "ї".repeat(100), "maxSegments": 1})),
            ),
            (&SEGMENTS, SMS_PATH, one(json!({"text": "ї".repeat(500)}))),
            (&BATCH_EMPTY, SMS_BATCH_PATH, json!({"data": {}})),
            (&BATCH_EMPTY, SMS_STATUS_BATCH_PATH, json!({"data": []})),
            (&BATCH_LIMIT, SMS_BATCH_PATH, json!({"data": many})),
            (&ENDPOINT, "/rest/v2/sms", one(json!({}))),
        ];
        for (rule, path, body) in &cases {
            let answer = http
                .post(url(path))
                .bearer_auth(&token)
                .json(body)
                .send()
                .await
                .unwrap();
            let named = core::rules_named(&answer);
            assert_eq!(named, [rule.id], "{path} {body:.80}");
            assert_eq!(answer.status().as_u16(), rule.answer.status, "{body:.80}");
            let code = rule.answer.code;
            let answer: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(answer["errorCode"], json!(code));
        }
        // In a batch, the item is refused and the rule named all the same.
        let batch = http
            .post(url(SMS_BATCH_PATH))
            .bearer_auth(&token)
            .json(&json!({"data": {"a": one(json!({})), "b": one(json!({"maxSegments": 9}))}}))
            .send()
            .await
            .unwrap();
        assert_eq!(batch.headers()[core::RULE_HEADER], MAX_SEGMENTS.id);
        let batch: serde_json::Value = batch.json().await.unwrap();
        assert_eq!(batch["data"]["b"]["errorCode"], json!("40005"));
        assert!(batch["data"]["a"]["msgId"].is_string());
        let unknown = http
            .get(url(&format!("{SMS_PATH}/{}", core::uuid_shaped())))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.headers()[core::RULE_HEADER], MSG_ID.id);
        let unauthorized = http
            .post(url(SMS_PATH))
            .json(&one(json!({})))
            .send()
            .await
            .unwrap();
        assert_eq!(unauthorized.headers()[core::RULE_HEADER], BEARER.id);
        for (auth, form, rule) in [
            ("wrong", "grant_type=client_credentials", &CLIENT),
            (CLIENT_SECRET, "grant_type=password", &GRANT),
        ] {
            let answer = http
                .post(url(TOKEN_PATH))
                .basic_auth(CLIENT_ID, Some(auth))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.headers()[core::RULE_HEADER], rule.id);
        }
        let stats = stats(addr).await;
        core::assert_every_rule_applied(RULES, &stats);
        // The documented limits themselves are taken.
        for changes in [
            json!({"messageTtlSec": 0}),
            json!({"messageTtlSec": 86400}),
            json!({"maxSegments": 1}),
            json!({"maxSegments": 6, "text": "ї".repeat(400)}),
        ] {
            let answer = http
                .post(url(SMS_PATH))
                .bearer_auth(&token)
                .json(&one(changes.clone()))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK, "{changes:.80}");
        }
    }

    /// Everything the adapter does, at the edges of what Holub sends, within every rule.
    #[tokio::test]
    async fn the_adapter_breaks_no_rule() {
        let addr = start(settings()).await.unwrap();
        let provider = provider_with(addr, json!({"max_segments": 6}), &credentials());
        let mut short_lived = sms("Ваш код: 4821");
        short_lived.validity_seconds = 0;
        let mut long_lived = sms(&"ї".repeat(300));
        long_lived.validity_seconds = 7 * 86_400;
        let sent = provider.send(&short_lived).await.unwrap();
        provider.send(&long_lived).await.unwrap();
        let many = provider.send_many(&[sms("one"), sms("two")]).await;
        assert!(many.iter().all(Result::is_ok), "{many:?}");
        provider.status(&[sent.provider_message_id]).await.unwrap();
        let stats = stats(addr).await;
        assert!(stats.refusals.is_empty(), "{:?}", stats.refusals);
        assert_eq!(stats.accepted, 4);
    }
}
