//! The simulator's HTTP side: the holub-sim v1 endpoints over one in-memory state.
//!
//! All state sits behind one `std::sync::Mutex`, held only for map look-ups and inserts:
//! parsing numbers, senders and texts happens before it is taken, so a request of 1000
//! messages holds the lock for microseconds. Receipts are not tasks: each accepted message
//! pushes one entry on a heap ordered by due time, and the single poster task
//! ([`SimulatorState::run_receipts`]) drains it. With a [`Journal`], accepted messages are
//! written down before the send is answered and read back at start.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use holub_shared::domain::segments;
use holub_shared::domain::{MessageId, PhoneNumber, SenderId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, SimulatorConfig};
use crate::journal::{self, Journal};
use crate::receipt::{bearer_token, constant_time_eq};
use crate::wire::{
    ErrorBody, LookupResponse, MAX_MESSAGES_PER_REQUEST, MESSAGES_PATH, Receipt, ReceiptBatch,
    SEND_PATH, STATS_PATH, STATUS_PATH, SendItem, SendRequest, SendResponse, SendResult, Stats,
    StatusRequest, format_hryvnias,
};

/// Send bodies may be large (1000 long messages); anything past this is refused with 413.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// A concatenated SMS has at most 255 parts (the UDH part counter is one byte).
const MAX_PARTS: usize = 255;
/// After a restart, receipts that fell due this recently are posted again.
const REPUSH_WITHIN: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The simulator's shared state: cheap to clone, every clone is the same simulator.
#[derive(Clone)]
pub struct SimulatorState {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: SimulatorConfig,
    pub(crate) receipts_url: Option<reqwest::Url>,
    pub(crate) http: reqwest::Client,
    journal: Option<Journal>,
    inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    /// Accepted messages by canonical client id.
    messages: HashMap<String, Record>,
    /// The client id of each accepted message, by the simulator's id.
    client_ids: HashMap<Arc<str>, String>,
    /// Final receipts not yet due, earliest first.
    pub(crate) schedule: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    rng: SmallRng,
    pub(crate) stats: Stats,
    window_start: Instant,
    window_used: u64,
}

struct Record {
    message_id: Arc<str>,
    cost: i64,
    parts: u16,
    outcome: Outcome,
    due: Instant,
    done_at: DateTime<Utc>,
}

/// How a message ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    Undelivered,
    Expired,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Undelivered, Outcome::Expired];

    pub(crate) fn code(self) -> &'static str {
        match self {
            Outcome::Delivered => "DELIVRD",
            Outcome::Undelivered => "UNDELIV",
            Outcome::Expired => "EXPIRED",
        }
    }

    fn from_code(code: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.code() == code)
    }
}

/// The final receipts (one per part) of one message, due at `due`.
pub(crate) struct Scheduled {
    pub(crate) due: Instant,
    seq: u64,
    pub(crate) message_id: Arc<str>,
    pub(crate) parts: u16,
    pub(crate) outcome: Outcome,
    pub(crate) done_at: DateTime<Utc>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// A send item checked outside the lock.
enum Prepared {
    Valid { key: String, parts: u16, cost: i64 },
    Invalid { code: &'static str, message: String },
}

impl SimulatorState {
    /// A fresh simulator with no messages. Receipts are posted only while
    /// [`run_receipts`](Self::run_receipts) runs.
    pub fn new(config: SimulatorConfig) -> Result<Self, ConfigError> {
        let receipts_url = config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        let rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        let mut inner = Inner {
            messages: HashMap::new(),
            client_ids: HashMap::new(),
            schedule: BinaryHeap::new(),
            next_seq: 0,
            rng,
            stats: Stats::default(),
            window_start: Instant::now(),
            window_used: 0,
        };
        let journal = match &config.journal {
            Some(path) => {
                let (journal, remembered) = Journal::open(path, Utc::now())
                    .map_err(|e| ConfigError::Journal(format!("{}: {e}", path.display())))?;
                inner.remember(remembered, receipts_url.is_some(), &config);
                Some(journal)
            }
            None => None,
        };
        Ok(SimulatorState {
            shared: Arc::new(Shared {
                config,
                receipts_url,
                http,
                journal,
                inner: Mutex::new(inner),
            }),
        })
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.config
    }

    /// The counters, as `GET /api/v1/stats` shows them.
    pub fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// A poisoned lock still holds consistent data (no code panics halfway through an
    /// update), so it is used rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// True with probability `ratio`, from the simulator's (possibly seeded) generator.
    fn roll(&self, ratio: f64) -> bool {
        ratio > 0.0 && self.lock().rng.random::<f64>() < ratio
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        token.is_some_and(|token| {
            constant_time_eq(token.as_bytes(), self.shared.config.api_token.as_bytes())
        })
    }

    /// Takes room for `count` messages in the current one-second window.
    fn admit(&self, inner: &mut Inner, count: u64, now: Instant) -> bool {
        let Some(limit) = self.shared.config.rate_limit_per_second else {
            return true;
        };
        if now.duration_since(inner.window_start) >= Duration::from_secs(1) {
            inner.window_start = now;
            inner.window_used = 0;
        }
        if inner.window_used > 0 && inner.window_used + count > u64::from(limit) {
            return false;
        }
        inner.window_used += count;
        true
    }

    /// Records a checked request; `None` when the rate limit refuses it. Returns the answer
    /// and what the journal must hold before it is given.
    fn submit(
        &self,
        items: Vec<SendItem>,
        prepared: Vec<Prepared>,
    ) -> Option<(Vec<SendResult>, Vec<journal::Entry>)> {
        let config = &self.shared.config;
        let receipts_on = self.shared.receipts_url.is_some();
        let copies: u64 = if config.duplicate_receipts { 2 } else { 1 };
        let mut inner = self.lock();
        let inner = &mut *inner;
        let now = Instant::now();
        let now_utc = Utc::now();
        if !self.admit(inner, items.len() as u64, now) {
            return None;
        }
        let due = now + config.receipt_delay;
        let done_at = now_utc
            + chrono::Duration::from_std(config.receipt_delay).unwrap_or(chrono::Duration::zero());
        let mut results = Vec::with_capacity(items.len());
        let mut written = Vec::new();
        for (item, prepared) in items.into_iter().zip(prepared) {
            inner.stats.submissions += 1;
            let (key, parts, cost) = match prepared {
                Prepared::Invalid { code, message } => {
                    results.push(SendResult::Error {
                        client_id: item.client_id,
                        code: code.to_owned(),
                        message,
                        retryable: false,
                    });
                    continue;
                }
                Prepared::Valid { key, parts, cost } => (key, parts, cost),
            };
            if let Some(record) = inner.messages.get(&key) {
                inner.stats.duplicates += 1;
                results.push(accepted(item.client_id, record));
                continue;
            }
            if config.reject_ratio > 0.0 && inner.rng.random::<f64>() < config.reject_ratio {
                results.push(SendResult::Error {
                    client_id: item.client_id,
                    code: "rejected".to_owned(),
                    message: "the simulated operator refused the message".to_owned(),
                    retryable: false,
                });
                continue;
            }
            let outcome = if inner.rng.random::<f64>() < config.delivered_ratio {
                Outcome::Delivered
            } else if config.expired_ratio > 0.0 && inner.rng.random::<f64>() < config.expired_ratio
            {
                Outcome::Expired
            } else {
                Outcome::Undelivered
            };
            let message_id: Arc<str> = format!("sim-{}", MessageId::generate(now_utc)).into();
            let record = Record {
                message_id,
                cost,
                parts,
                outcome,
                due,
                done_at,
            };
            results.push(accepted(item.client_id, &record));
            if self.shared.journal.is_some() {
                written.push(journal::Entry {
                    client_id: key.clone(),
                    message_id: record.message_id.to_string(),
                    cost,
                    parts,
                    outcome: outcome.code().to_owned(),
                    done: done_at,
                });
            }
            inner.insert(key, record, receipts_on, copies);
        }
        Some((results, written))
    }

    /// The final receipts of the messages named by `message_ids` whose state is final now.
    fn final_receipts(&self, message_ids: &[String]) -> Vec<Receipt> {
        let inner = self.lock();
        let now = Instant::now();
        let mut receipts = Vec::new();
        for id in message_ids {
            let Some(record) = inner
                .client_ids
                .get(id.as_str())
                .and_then(|key| inner.messages.get(key))
                .filter(|record| now >= record.due)
            else {
                continue;
            };
            receipts.extend(final_receipts(
                &record.message_id,
                record.parts,
                record.outcome,
                record.done_at,
            ));
        }
        receipts
    }

    fn lookup(&self, key: &str) -> Option<LookupResponse> {
        let inner = self.lock();
        let record = inner.messages.get(key)?;
        let status = if Instant::now() >= record.due {
            record.outcome.code()
        } else {
            "ENROUTE"
        };
        Some(LookupResponse {
            message_id: record.message_id.to_string(),
            cost: format_hryvnias(record.cost),
            parts: record.parts,
            status: status.to_owned(),
        })
    }
}

impl Inner {
    /// Takes an accepted message; its receipts are scheduled if receipts are posted.
    fn insert(&mut self, key: String, record: Record, receipts_on: bool, copies: u64) {
        self.stats.accepted += 1;
        self.client_ids
            .insert(Arc::clone(&record.message_id), key.clone());
        if receipts_on {
            self.next_seq += 1;
            self.schedule.push(Reverse(Scheduled {
                due: record.due,
                seq: self.next_seq,
                message_id: Arc::clone(&record.message_id),
                parts: record.parts,
                outcome: record.outcome,
                done_at: record.done_at,
            }));
            self.stats.receipts_pending += u64::from(record.parts) * copies;
        }
        self.messages.insert(key, record);
    }

    /// Takes back what the journal remembers. Receipts not yet due are scheduled again
    /// (they were certainly not posted); those that fell due in the last [`REPUSH_WITHIN`]
    /// are posted again, as a provider retries a push nobody acknowledged (the journal does
    /// not know which were): receipts are at-least-once anyway. Older ones are left for the
    /// client to ask about.
    fn remember(
        &mut self,
        entries: Vec<journal::Entry>,
        receipts_on: bool,
        config: &SimulatorConfig,
    ) {
        let (now, now_utc) = (Instant::now(), Utc::now());
        let copies: u64 = if config.duplicate_receipts { 2 } else { 1 };
        for entry in entries {
            let Some(outcome) = Outcome::from_code(&entry.outcome) else {
                continue;
            };
            let ahead = (entry.done - now_utc).to_std().unwrap_or(Duration::ZERO);
            let record = Record {
                message_id: entry.message_id.into(),
                cost: entry.cost,
                parts: entry.parts,
                outcome,
                due: now + ahead,
                done_at: entry.done,
            };
            let push = receipts_on && entry.done >= now_utc - REPUSH_WITHIN;
            self.insert(entry.client_id, record, push, copies);
        }
    }
}

/// The final receipts of one message, one per part, as they are pushed and as a status
/// query answers them.
pub(crate) fn final_receipts(
    message_id: &str,
    parts: u16,
    outcome: Outcome,
    done_at: DateTime<Utc>,
) -> impl Iterator<Item = Receipt> + '_ {
    let done_at = done_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (1..=parts).map(move |part| Receipt {
        message_id: message_id.to_owned(),
        part,
        status: outcome.code().to_owned(),
        done_at: done_at.clone(),
    })
}

fn accepted(client_id: String, record: &Record) -> SendResult {
    SendResult::Accepted {
        client_id,
        message_id: record.message_id.to_string(),
        cost: format_hryvnias(record.cost),
        parts: record.parts,
    }
}

/// Checks one message the way an operator gateway would; nothing here touches the state.
fn prepare(item: &SendItem, cost_per_part: i64) -> Prepared {
    let key = match item.client_id.parse::<MessageId>() {
        Ok(id) => id.to_string(),
        Err(_) => {
            return Prepared::Invalid {
                code: "invalid_client_id",
                message: "client_id must be a 26-character ULID".to_owned(),
            };
        }
    };
    if let Err(e) = PhoneNumber::parse(&item.to) {
        return Prepared::Invalid {
            code: "invalid_number",
            message: format!("{e} ({})", e.code()),
        };
    }
    if let Err(e) = SenderId::parse(&item.from) {
        return Prepared::Invalid {
            code: "invalid_sender",
            message: format!("{e} ({})", e.code()),
        };
    }
    let parts = segments::estimate(&item.text).segments;
    if parts == 0 {
        return Prepared::Invalid {
            code: "empty_text",
            message: "the text is empty".to_owned(),
        };
    }
    let Some(parts) = u16::try_from(parts)
        .ok()
        .filter(|&p| usize::from(p) <= MAX_PARTS)
    else {
        return Prepared::Invalid {
            code: "text_too_long",
            message: format!("a message has at most {MAX_PARTS} parts"),
        };
    };
    Prepared::Valid {
        key,
        parts,
        cost: cost_per_part.saturating_mul(i64::from(parts)),
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: code.to_owned(),
        message: Some(message.into()),
    };
    (status, axum::Json(body)).into_response()
}

/// A JSON request body of at most [`MAX_MESSAGES_PER_REQUEST`] messages (by `count`), or
/// the code and reason of the `400` refusing it.
fn parse_bounded<T: serde::de::DeserializeOwned>(
    body: &[u8],
    count: impl FnOnce(&T) -> usize,
) -> Result<T, (&'static str, String)> {
    let request: T = serde_json::from_slice(body).map_err(|e| ("bad_request", e.to_string()))?;
    if count(&request) > MAX_MESSAGES_PER_REQUEST {
        return Err((
            "too_many_messages",
            format!("at most {MAX_MESSAGES_PER_REQUEST} messages per request"),
        ));
    }
    Ok(request)
}

fn unauthorized() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "send Authorization: Bearer <api_token>",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn send_handler(
    State(state): State<SimulatorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let config = &state.shared.config;
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    if state.roll(config.fail_ratio) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "injected failure: try again",
        );
    }
    let request: SendRequest = match parse_bounded(&body, |r: &SendRequest| r.messages.len()) {
        Ok(request) => request,
        Err((code, why)) => return error(StatusCode::BAD_REQUEST, code, why),
    };
    let prepared = request
        .messages
        .iter()
        .map(|item| prepare(item, config.cost_per_part))
        .collect();
    let count = request.messages.len();
    let Some((results, written)) = state.submit(request.messages, prepared) else {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "over the simulated rate limit",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    if let Some(journal) = &state.shared.journal
        && let Err(e) = journal.append(&written)
    {
        // Taken in memory, not on record: the client tries again and is answered from
        // memory, as for any repeated client id.
        tracing::error!(error = %e, "simulator: the journal cannot be written");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the simulator cannot record messages now",
        );
    }
    if state.roll(config.lost_answer_ratio) {
        tracing::debug!(
            count,
            "simulator: answer to an accepted send request lost on purpose"
        );
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "injected failure after processing",
        );
    }
    tracing::trace!(count, "simulator: send request answered");
    (StatusCode::OK, axum::Json(SendResponse { results })).into_response()
}

async fn lookup_handler(
    State(state): State<SimulatorState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = client_id.parse::<MessageId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client_id",
            "client_id must be a 26-character ULID",
        );
    };
    match state.lookup(&id.to_string()) {
        Some(found) => (StatusCode::OK, axum::Json(found)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(ErrorBody {
                error: "not_found".to_owned(),
                message: None,
            }),
        )
            .into_response(),
    }
}

async fn status_handler(
    State(state): State<SimulatorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let request = match parse_bounded(&body, |r: &StatusRequest| r.message_ids.len()) {
        Ok(request) => request,
        Err((code, why)) => return error(StatusCode::BAD_REQUEST, code, why),
    };
    let receipts = state.final_receipts(&request.message_ids);
    (StatusCode::OK, axum::Json(ReceiptBatch { receipts })).into_response()
}

async fn stats_handler(State(state): State<SimulatorState>) -> Response {
    (StatusCode::OK, axum::Json(state.stats())).into_response()
}

async fn fallback() -> Response {
    error(StatusCode::NOT_FOUND, "no_route", "no such endpoint")
}

/// The holub-sim v1 endpoints over `state`. Receipts go out only while
/// [`SimulatorState::run_receipts`] runs (as [`serve`] and [`Simulator`] arrange).
pub fn router(state: SimulatorState) -> Router {
    Router::new()
        .route(SEND_PATH, post(send_handler))
        .route(MESSAGES_PATH, get(lookup_handler))
        .route(STATUS_PATH, post(status_handler))
        .route(STATS_PATH, get(stats_handler))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Runs a simulator on `listener`, with its receipt poster, until the process ends (or the
/// listener fails). A configuration that cannot run is an `InvalidInput` error.
pub async fn serve(listener: TcpListener, config: SimulatorConfig) -> io::Result<()> {
    let state =
        SimulatorState::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let receipts = tokio::spawn(state.clone().run_receipts());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "simulator: listening (holub-sim v1)");
    }
    let result = axum::serve(listener, router(state)).await;
    receipts.abort();
    result
}

/// A simulator running inside this process (server and receipt poster), until
/// [`stop`](Self::stop) or the end of the Tokio runtime. Dropping the handle leaves it
/// running, as dropping a `JoinHandle` does. `Display` shows the address it listens on.
pub struct Simulator {
    addr: SocketAddr,
    state: SimulatorState,
    stop: tokio::sync::oneshot::Sender<()>,
    server: JoinHandle<()>,
    receipts: JoinHandle<()>,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a port of the system's choosing.
    pub async fn start(config: SimulatorConfig) -> io::Result<Simulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Simulator::start_on(listener, config)
    }

    /// Starts a simulator on an already bound listener. Must be called inside a Tokio runtime.
    pub fn start_on(listener: TcpListener, config: SimulatorConfig) -> io::Result<Simulator> {
        let addr = listener.local_addr()?;
        let state = SimulatorState::new(config)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let receipts = tokio::spawn(state.clone().run_receipts());
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Only an explicit stop shuts the server down; a dropped handle does not.
        let signal = async move {
            if stopped.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::error!(error = %e, "simulator: server stopped");
            }
        });
        Ok(Simulator {
            addr,
            state,
            stop,
            server,
            receipts,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, what [`crate::SimulatorProvider::new`] takes.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &SimulatorState {
        &self.state
    }

    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Stops posting receipts and serving: the listener closes, requests in flight are
    /// answered, idle connections are closed. Waits up to 5 s for that, then cuts the rest.
    pub async fn stop(self) {
        self.receipts.abort();
        // The server may already have ended; then there is nobody to tell.
        let _ = self.stop.send(());
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        // An aborted task ends with a cancellation error; nothing else can come out of it.
        let _ = self.receipts.await;
    }
}

impl std::fmt::Display for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.addr, f)
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
