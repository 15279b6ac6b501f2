//! A stand-in for Kyivstar Open Telecom's SMS API, on loopback.
//!
//! It speaks the wire format Holub's adapter
//! ([`holub_shared::adapters::providers::kyivstar`]) was written against; that module's
//! documentation names the sources. In short:
//!
//! - `POST /idp/oauth2/token` — `Authorization: Basic base64(client_id:client_secret)` (from
//!   [`SimSettings::credentials`], `{"client_id","client_secret"}`), form body
//!   `grant_type=client_credentials` → `{"access_token","token_type":"Bearer","expires_in":28800}`;
//!   wrong credentials → `401 {"error":"invalid_client",…}`.
//! - `POST /rest/v1/sms` — `{"from","to","text"[,"messageTtlSec","maxSegments"]}` →
//!   `{"reqId","msgId","reservedSmsSegments"}`.
//! - `POST /rest/v1/sms/batch` — `{"data":{"<key>":{…}}}` → `{"reqId","data":{"<key>":
//!   {"msgId","reservedSmsSegments"} | {"errorCode","errorMsg"}}}`.
//! - `GET /rest/v1/sms/{msgId}` → `{"reqId","msgId","status","date"}`.
//! - `POST /rest/v1/sms/status/batch` — `{"data":["<msgId>",…]}` → `{"reqId","data":
//!   {"<msgId>":{"msgId","status","date"}}}`.
//!
//! The `/rest` endpoints want `Authorization: Bearer <access_token>` (else `401`). Errors are
//! `{"reqId","errorCode","errorMsg"}`; since no catalogue of Kyivstar's codes could be found,
//! the simulator's codes are its own: `40000` unreadable body, `40001` bad `to`, `40002`
//! empty `from`, `40003` empty `text`, `40004` bad `messageTtlSec`, `40005` bad
//! `maxSegments`, `40006` empty batch, `40101` no valid token, `40400` no such endpoint,
//! `41301` more parts than `maxSegments` (default 6), `41302` batch too large, `42201`
//! sender not an alpha-name, `42901` rate limit, `50001` server error, and `1040` (the one
//! code a client documents: "not delivered, or no such msgId").
//!
//! Receipts are **polled**, as with the real API (`receipts_url` is not used): a message is
//! `accepted` until `receipt_delay` has passed, then `delivered` (by [`delivered`]) — or,
//! when it was not, the status query answers as the one description of a failure says:
//! error `1040` on `GET`, and no entry in the batch status. The single send takes no client
//! id; batch keys are not remembered as idempotency keys (nothing says the real API does),
//! so a repeated key is sent again and counted in `duplicates`.
//!
//! Every provider endpoint rolls [`Faults::roll`]: `ServerError` → `500`, `RateLimited` →
//! `429` with `X-Rate-Limit-*` and `Retry-After`, `Malformed` → the work is done and the
//! answer is `200` HTML, `Hang` → the work is done and the answer waits [`HANG`].
//!
//! Simulator-only endpoints (no auth, no faults): `GET /__sim/stats` →
//! `{"accepted","submissions","duplicates"}`; `PUT /__sim/faults` with a [`Faults`] object
//! replaces the faults; `POST /__sim/revoke-tokens` forgets every access token (so the next
//! API call gets a 401).

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
use axum::routing::{get, post, put};
use chrono::{DateTime, SecondsFormat, Utc};
use holub_shared::domain::segments;
use holub_shared::domain::{PhoneNumber, SenderId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Fault, Faults, HANG, SimSettings, delivered};
use crate::receipt::{bearer_token, constant_time_eq};

pub const TOKEN_PATH: &str = "/idp/oauth2/token";
pub const SMS_PATH: &str = "/rest/v1/sms";
pub const SMS_ID_PATH: &str = "/rest/v1/sms/{msg_id}";
pub const SMS_BATCH_PATH: &str = "/rest/v1/sms/batch";
pub const SMS_STATUS_BATCH_PATH: &str = "/rest/v1/sms/status/batch";
pub const STATS_PATH: &str = "/__sim/stats";
pub const FAULTS_PATH: &str = "/__sim/faults";
pub const REVOKE_TOKENS_PATH: &str = "/__sim/revoke-tokens";

/// Access tokens live 8 hours, as a client's notes quote the documentation.
pub const TOKEN_LIFETIME_SECONDS: u64 = 28_800;
const MAX_SEGMENTS: u32 = 6;
const MAX_TTL_SECONDS: u32 = 86_400;
const MAX_BATCH: usize = 1000;
const NOT_DELIVERED_OR_UNKNOWN: i64 = 1040;

/// What the simulator counts, as `GET /__sim/stats` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Messages taken.
    pub accepted: u64,
    /// Messages submitted, taken or refused.
    pub submissions: u64,
    /// Batch items whose key had been submitted before (they are sent again all the same).
    pub duplicates: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    client_id: String,
    client_secret: String,
}

/// One message as the API takes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SmsItem {
    from: String,
    to: String,
    text: String,
    #[serde(default)]
    message_ttl_sec: Option<u32>,
    #[serde(default)]
    max_segments: Option<u32>,
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

/// The simulator: cheap to clone, every clone is the same one.
#[derive(Clone)]
pub struct KyivstarSim {
    shared: Arc<Shared>,
}

struct Shared {
    settings: SimSettings,
    /// `base64(client_id:client_secret)`, what `Authorization: Basic` must carry.
    basic: String,
    inner: Mutex<Inner>,
}

struct Inner {
    faults: Faults,
    tokens: HashMap<String, Instant>,
    messages: HashMap<String, Record>,
    batch_keys: HashSet<String>,
    stats: Stats,
}

struct Record {
    accepted_at: DateTime<Utc>,
    due: Instant,
    done_at: DateTime<Utc>,
    delivered: bool,
}

/// How the status query sees a message now.
enum Seen {
    Accepted(DateTime<Utc>),
    Delivered(DateTime<Utc>),
    /// Final and not delivered, or never seen: error 1040.
    NotDelivered,
}

/// Why a message is refused.
struct Refusal {
    status: StatusCode,
    code: i64,
    message: &'static str,
}

impl Refusal {
    const fn new(status: StatusCode, code: i64, message: &'static str) -> Self {
        Refusal {
            status,
            code,
            message,
        }
    }
}

impl KyivstarSim {
    /// A fresh simulator; `InvalidInput` if `settings.credentials` is not
    /// `{"client_id","client_secret"}`.
    pub fn new(settings: SimSettings) -> io::Result<Self> {
        let credentials: Credentials = serde_json::from_value(settings.credentials.clone())
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    r#"kyivstar simulator: credentials must be {"client_id": "...", "client_secret": "..."}"#,
                )
            })?;
        if credentials.client_id.is_empty() || credentials.client_secret.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "kyivstar simulator: client_id and client_secret must not be empty",
            ));
        }
        let basic =
            base64(format!("{}:{}", credentials.client_id, credentials.client_secret).as_bytes());
        let faults = settings.faults.clone();
        Ok(KyivstarSim {
            shared: Arc::new(Shared {
                settings,
                basic,
                inner: Mutex::new(Inner {
                    faults,
                    tokens: HashMap::new(),
                    messages: HashMap::new(),
                    batch_keys: HashSet::new(),
                    stats: Stats::default(),
                }),
            }),
        })
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// No code panics while holding the lock, so a poisoned one still holds sound data.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn roll(&self) -> Fault {
        let faults = self.lock().faults.clone();
        faults.roll().await
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
            & constant_time_eq(value.trim().as_bytes(), self.shared.basic.as_bytes())
    }

    fn issue_token(&self) -> String {
        let token = format!("ks-sim-{:032x}{:032x}", random_u128(), random_u128());
        let expires = Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECONDS);
        let mut inner = self.lock();
        let now = Instant::now();
        inner.tokens.retain(|_, until| *until > now);
        inner.tokens.insert(token.clone(), expires);
        token
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
        else {
            return false;
        };
        let inner = self.lock();
        let now = Instant::now();
        // Look-up by hash; then the stored token is compared in constant time anyway.
        inner.tokens.iter().any(|(known, until)| {
            constant_time_eq(known.as_bytes(), token.as_bytes()) & (*until > now)
        })
    }

    /// Records one submitted message; `key` is its batch key, if any.
    fn submit(
        &self,
        key: Option<&str>,
        checked: Result<u32, Refusal>,
    ) -> Result<(String, u32), Refusal> {
        let settings = &self.shared.settings;
        let outcome = delivered(settings);
        let mut inner = self.lock();
        inner.stats.submissions += 1;
        if let Some(key) = key
            && !inner.batch_keys.insert(key.to_owned())
        {
            inner.stats.duplicates += 1;
        }
        let segments = checked?;
        let msg_id = new_msg_id();
        let accepted_at = Utc::now();
        let delay = settings.receipt_delay;
        inner.messages.insert(
            msg_id.clone(),
            Record {
                accepted_at,
                due: Instant::now() + delay,
                done_at: accepted_at
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()),
                delivered: outcome,
            },
        );
        inner.stats.accepted += 1;
        Ok((msg_id, segments))
    }

    fn seen(&self, msg_id: &str) -> Seen {
        let inner = self.lock();
        match inner.messages.get(msg_id) {
            None => Seen::NotDelivered,
            Some(r) if Instant::now() < r.due => Seen::Accepted(r.accepted_at),
            Some(r) if r.delivered => Seen::Delivered(r.done_at),
            Some(_) => Seen::NotDelivered,
        }
    }
}

/// Checks one message as the operator gateway would; its parts if it passes.
fn check(item: &SmsItem) -> Result<u32, Refusal> {
    let to = item.to.trim();
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || PhoneNumber::parse(&format!("+{digits}")).is_err()
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            40001,
            "Invalid phone number format",
        ));
    }
    if item.from.trim().is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            40002,
            "from is required",
        ));
    }
    if !matches!(SenderId::parse(&item.from), Ok(SenderId::Alpha(_))) {
        return Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            "from is not an alpha-name registered for this account",
        ));
    }
    if item.text.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            40003,
            "text is required",
        ));
    }
    if item.message_ttl_sec.is_some_and(|t| t > MAX_TTL_SECONDS) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            40004,
            "messageTtlSec must be 0 to 86400",
        ));
    }
    if item
        .max_segments
        .is_some_and(|m| !(1..=MAX_SEGMENTS).contains(&m))
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            40005,
            "maxSegments must be 1 to 6",
        ));
    }
    let parts = u32::try_from(segments::estimate(&item.text).segments).unwrap_or(u32::MAX);
    if parts > item.max_segments.unwrap_or(MAX_SEGMENTS) {
        return Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            41301,
            "The text needs more segments than maxSegments allows",
        ));
    }
    Ok(parts)
}

fn random_u128() -> u128 {
    rand::rng().random()
}

fn new_req_id() -> String {
    format!("{:032x}", random_u128())
}

/// A UUID-shaped id, like the documented `20200000-0000-0000-0000-380670000200`.
fn new_msg_id() -> String {
    let h = format!("{:032x}", random_u128());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Standard base64 with padding (RFC 4648), for the Basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let index = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"reqId": new_req_id(), "errorCode": code, "errorMsg": message});
    (status, axum::Json(body)).into_response()
}

fn refused(refusal: &Refusal) -> Response {
    error(refusal.status, refusal.code, refusal.message)
}

fn unauthorized() -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, 40101, "Invalid credentials");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn bad_body() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        40000,
        "The request body is not valid JSON of the expected shape",
    )
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

/// The answer for a fault decided before any work, if it is one.
fn refuse_first(fault: Fault) -> Option<Response> {
    match fault {
        Fault::ServerError => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            "Internal server error",
        )),
        Fault::RateLimited => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, 42901, "Rate limit exceeded");
            rate_limit_headers(&mut response, 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(response)
        }
        Fault::None | Fault::Malformed | Fault::Hang => None,
    }
}

/// The answer after the work: as is, garbled, or late.
async fn finish(fault: Fault, response: Response) -> Response {
    match fault {
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Fault::Hang => {
            tokio::time::sleep(HANG).await;
            response
        }
        Fault::None | Fault::ServerError | Fault::RateLimited => response,
    }
}

fn ok_json(body: serde_json::Value, req_id: &str) -> Response {
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    rate_limit_headers(&mut response, 99);
    if let Ok(value) = HeaderValue::from_str(req_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    response
}

async fn token_handler(
    State(sim): State<KyivstarSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = sim.roll().await;
    if let Some(response) = refuse_first(fault) {
        return response;
    }
    if !sim.client_authenticated(&headers) {
        let body = json!({
            "error": "invalid_client",
            "error_description": "Client authentication failed",
            "error_hint": "Send Authorization: Basic base64(client_id:client_secret)",
            "status_code": 401
        });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let form = String::from_utf8_lossy(&body);
    if !form
        .split('&')
        .any(|pair| pair == "grant_type=client_credentials")
    {
        let body = json!({
            "error": "unsupported_grant_type",
            "error_description": "grant_type must be client_credentials",
            "status_code": 400
        });
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let token = sim.issue_token();
    let answer = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECONDS
    });
    finish(fault, (StatusCode::OK, axum::Json(answer)).into_response()).await
}

async fn send_handler(State(sim): State<KyivstarSim>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = sim.roll().await;
    if let Some(response) = refuse_first(fault) {
        return response;
    }
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let Ok(item) = serde_json::from_slice::<SmsItem>(&body) else {
        return finish(fault, bad_body()).await;
    };
    let response = match sim.submit(None, check(&item)) {
        Ok((msg_id, segments)) => {
            let req_id = new_req_id();
            let body = json!({"reqId": req_id, "msgId": msg_id, "reservedSmsSegments": segments});
            let mut response = ok_json(body, &req_id);
            response.headers_mut().insert(
                HeaderName::from_static("x-reserved-tarification-units"),
                HeaderValue::from(segments),
            );
            response
        }
        Err(refusal) => refused(&refusal),
    };
    finish(fault, response).await
}

async fn batch_handler(
    State(sim): State<KyivstarSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = sim.roll().await;
    if let Some(response) = refuse_first(fault) {
        return response;
    }
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let Ok(batch) = serde_json::from_slice::<BatchBody>(&body) else {
        return finish(fault, bad_body()).await;
    };
    if batch.data.is_empty() {
        return finish(
            fault,
            error(StatusCode::BAD_REQUEST, 40006, "data is empty"),
        )
        .await;
    }
    if batch.data.len() > MAX_BATCH {
        let response = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            41302,
            "At most 1000 messages per batch",
        );
        return finish(fault, response).await;
    }
    let mut data = serde_json::Map::new();
    for (key, item) in &batch.data {
        let result = match sim.submit(Some(key), check(item)) {
            Ok((msg_id, segments)) => json!({"msgId": msg_id, "reservedSmsSegments": segments}),
            Err(refusal) => json!({
                "errorCode": refusal.code.to_string(),
                "errorMsg": refusal.message
            }),
        };
        data.insert(key.clone(), result);
    }
    let req_id = new_req_id();
    let response = ok_json(json!({"reqId": req_id, "data": data}), &req_id);
    finish(fault, response).await
}

async fn check_handler(
    State(sim): State<KyivstarSim>,
    Path(msg_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let fault = sim.roll().await;
    if let Some(response) = refuse_first(fault) {
        return response;
    }
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let req_id = new_req_id();
    let response = match sim.seen(&msg_id) {
        Seen::Accepted(at) => ok_json(
            json!({"reqId": req_id, "msgId": msg_id, "status": "accepted", "date": date(at)}),
            &req_id,
        ),
        Seen::Delivered(at) => ok_json(
            json!({"reqId": req_id, "msgId": msg_id, "status": "delivered", "date": date(at)}),
            &req_id,
        ),
        Seen::NotDelivered => error(
            StatusCode::NOT_FOUND,
            NOT_DELIVERED_OR_UNKNOWN,
            "Message is not delivered or msgId does not exist",
        ),
    };
    finish(fault, response).await
}

async fn status_batch_handler(
    State(sim): State<KyivstarSim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = sim.roll().await;
    if let Some(response) = refuse_first(fault) {
        return response;
    }
    if !sim.authorized(&headers) {
        return unauthorized();
    }
    let Ok(query) = serde_json::from_slice::<StatusBody>(&body) else {
        return finish(fault, bad_body()).await;
    };
    if query.data.is_empty() {
        return finish(
            fault,
            error(StatusCode::BAD_REQUEST, 40006, "data is empty"),
        )
        .await;
    }
    if query.data.len() > MAX_BATCH {
        let response = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            41302,
            "At most 1000 message ids per query",
        );
        return finish(fault, response).await;
    }
    let mut data = serde_json::Map::new();
    for msg_id in &query.data {
        let (status, at) = match sim.seen(msg_id) {
            Seen::Accepted(at) => ("accepted", at),
            Seen::Delivered(at) => ("delivered", at),
            Seen::NotDelivered => continue,
        };
        data.insert(
            msg_id.clone(),
            json!({"msgId": msg_id, "status": status, "date": date(at)}),
        );
    }
    let req_id = new_req_id();
    let response = ok_json(json!({"reqId": req_id, "data": data}), &req_id);
    finish(fault, response).await
}

async fn stats_handler(State(sim): State<KyivstarSim>) -> Response {
    (StatusCode::OK, axum::Json(sim.stats())).into_response()
}

async fn faults_handler(State(sim): State<KyivstarSim>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            sim.lock().faults = faults;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => bad_body(),
    }
}

async fn revoke_handler(State(sim): State<KyivstarSim>) -> Response {
    sim.lock().tokens.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn fallback() -> Response {
    error(StatusCode::NOT_FOUND, 40400, "No such endpoint")
}

/// The simulator's endpoints over `sim`.
pub fn router(sim: KyivstarSim) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token_handler))
        .route(SMS_PATH, post(send_handler))
        .route(SMS_BATCH_PATH, post(batch_handler))
        .route(SMS_STATUS_BATCH_PATH, post(status_batch_handler))
        .route(SMS_ID_PATH, get(check_handler))
        .route(STATS_PATH, get(stats_handler))
        .route(FAULTS_PATH, put(faults_handler))
        .route(REVOKE_TOKENS_PATH, post(revoke_handler))
        .fallback(fallback)
        .with_state(sim)
}

/// Starts a simulator on `127.0.0.1` with a port of the system's choosing, serving in the
/// background until the runtime ends.
pub async fn start(settings: SimSettings) -> io::Result<SocketAddr> {
    super::serve_in_background("kyivstar", router(KyivstarSim::new(settings)?)).await
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use holub_shared::adapters::providers::kyivstar::{
        self, BatchSendResponse, CheckResponse, ErrorBody, ErrorCode, SendResponse,
        StatusBatchResponse, TokenResponse,
    };
    use holub_shared::domain::status::ReceiptState;
    use holub_shared::domain::{Kopiyky, MessageId};
    use holub_shared::ports::{
        OutboundSms, ProviderError, ReceiptMode, Secret, SmsProvider, Submitted,
    };

    use super::*;

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
        let answer: TokenResponse = reqwest::Client::new()
            .post(format!("http://{addr}{TOKEN_PATH}"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token answer")
            .json()
            .await
            .expect("documented token JSON");
        answer.access_token
    }

    #[test]
    fn base64_is_rfc_4648() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
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
        let body: ErrorBody = response.json().await.unwrap();
        assert_eq!(body.error_code, Some(ErrorCode::Number(1040)));
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
            (kind(refused), refused.code()),
            ("permanent", kyivstar::error_codes::REJECTED)
        );
        assert_eq!(results[2].as_ref().unwrap().cost, Some(Kopiyky(170)));
        assert_eq!(
            stats(addr).await,
            Stats {
                accepted: 2,
                submissions: 3,
                duplicates: 0
            }
        );

        // The same keys again: Kyivstar is not known to remember them, so it sends again.
        let again = provider.send_many(&batch).await;
        assert_ne!(
            again[0].as_ref().unwrap().provider_message_id,
            results[0].as_ref().unwrap().provider_message_id
        );
        assert_eq!(
            stats(addr).await,
            Stats {
                accepted: 4,
                submissions: 6,
                duplicates: 3
            }
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
            (kind(&e), e.code()),
            ("permanent", kyivstar::error_codes::TEXT_TOO_LONG)
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
            (kind(&e), e.code()),
            ("permanent", kyivstar::error_codes::INVALID_MESSAGE)
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
            (kind(&e), e.code()),
            ("permanent", kyivstar::error_codes::LOOKUP_UNSUPPORTED)
        );
        let e = provider.balance().await.unwrap_err();
        assert_eq!(
            (kind(&e), e.code().as_str()),
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
            (kind(&e), e.code().as_str()),
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
                (kind(&e), e.code().as_str()),
                (want_kind, want_code),
                "{faults}"
            );
            assert_eq!(stats(addr).await.accepted, accepted, "{faults}");
            let many = provider.send_many(&[sms("a"), sms("b")]).await;
            for result in many {
                let e = result.unwrap_err();
                assert_eq!(
                    (kind(&e), e.code().as_str()),
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
            assert_eq!((kind(&e), e.code().as_str()), ("temporary", want_code));
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
            let error: ErrorBody = response.json().await.unwrap();
            assert_eq!(error.error_code, Some(ErrorCode::Number(40101)));
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

    /// The simulator's answers parse with the adapter's structs, the ones the documented
    /// examples parse with.
    #[tokio::test]
    async fn answers_have_the_documented_shape() {
        let sim = KyivstarSim::new(settings()).unwrap();
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(sim.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let token = raw_token(addr).await;
        let url = |path: &str| format!("http://{addr}{path}");

        let sent = http
            .post(url(SMS_PATH))
            .bearer_auth(&token)
            .json(&json!({"from": "messagedesk", "to": "380670000200", "text": "Hello World!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::OK);
        assert!(sent.headers().contains_key("x-request-id"));
        assert_eq!(sent.headers()["x-reserved-tarification-units"], "1");
        let sent: SendResponse = sent.json().await.unwrap();
        assert_eq!(sent.reserved_sms_segments, Some(1));

        let checked: CheckResponse = http
            .get(url(&format!("{SMS_PATH}/{}", sent.msg_id)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(checked.msg_id, sent.msg_id);
        assert_eq!(checked.status, "accepted");
        assert!(checked.date.as_deref().is_some_and(|d| d.ends_with('Z')));

        let batch: BatchSendResponse = http
            .post(url(SMS_BATCH_PATH))
            .bearer_auth(&token)
            .json(&json!({"data": {
                "uniqueMsgKey1": {"from": "messagedesk", "to": "380670000200", "text": "Hello World!"},
                "uniqueMsgKey2": {"from": "messagedesk", "to": "12", "text": "Hello again!"}
            }}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(batch.data["uniqueMsgKey1"].msg_id.is_some());
        assert_eq!(
            batch.data["uniqueMsgKey2"].error_code,
            Some(ErrorCode::Text("40001".into()))
        );

        let statuses: StatusBatchResponse = http
            .post(url(SMS_STATUS_BATCH_PATH))
            .bearer_auth(&token)
            .json(&json!({"data": [sent.msg_id]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            statuses.data[&sent.msg_id].status.as_deref(),
            Some("accepted")
        );

        let refused = http
            .post(url(SMS_PATH))
            .bearer_auth(&token)
            .json(&json!({"from": "messagedesk", "to": "0441234567", "text": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let refused: ErrorBody = refused.json().await.unwrap();
        assert!(refused.req_id.is_some() && refused.error_msg.is_some());

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
        let limited: ErrorBody = limited.json().await.unwrap();
        assert_eq!(limited.error_code, Some(ErrorCode::Number(42901)));

        let raw: serde_json::Value = reqwest::get(url(STATS_PATH))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            raw,
            json!({"accepted": 2, "submissions": 4, "duplicates": 0})
        );
    }
}
