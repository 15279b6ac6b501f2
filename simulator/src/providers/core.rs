//! What every provider simulator shares, so that each provider module holds only its wire
//! format and its rules: the record store of accepted messages, the balance, the stats, the
//! credentials check, receipt pushing, and fault injection applied once, as a layer in front
//! of a provider's routes.
//!
//! A provider refuses a request by attaching the [`Rule`] it applied to its answer
//! ([`refused`]); the layer reads the rule back, logs it and counts it, so no handler counts
//! refusals itself and every refusal names its rule in the `x-holub-sim-rule` header.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Fault, Faults, HANG, SimSettings};

/// The response header naming the rule a refusal applied.
pub const RULE_HEADER: &str = "x-holub-sim-rule";
/// The simulator's counters (simulator only: no auth, no faults).
pub const STATS_PATH: &str = "/__sim/stats";
/// `PUT` a [`Faults`] object to replace the faults (simulator only).
pub const FAULTS_PATH: &str = "/__sim/faults";
/// The provider's rule table, as JSON (simulator only).
pub const RULES_PATH: &str = "/__sim/rules";
/// When each message was submitted, as [`Submissions`] (simulator only): what a test of a
/// rate limit counts in every one-second window.
pub const SUBMISSIONS_PATH: &str = "/__sim/submissions";

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// One documented rule a simulator enforces: a stable id (`<kind>.<field>.<check>`), what it
/// demands, where the provider says so, and the provider's `answer` to a request that
/// breaks it (its error code and text, in the provider's own terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule<A = ()> {
    pub id: &'static str,
    pub description: &'static str,
    pub source: &'static str,
    pub answer: A,
}

/// Tags `response` as a refusal under `rule`; several rules may tag one answer (a batch).
pub fn refused<A>(rule: &Rule<A>, mut response: Response) -> Response {
    tag(&mut response, rule);
    response
}

/// Adds `rule` to an answer that is otherwise built elsewhere (a batch item's refusal).
pub fn tag<A>(response: &mut Response, rule: &Rule<A>) {
    response
        .headers_mut()
        .append(RULE_HEADER, HeaderValue::from_static(rule.id));
}

/// What `GET /__sim/stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Messages taken (each client id once).
    pub accepted: u64,
    /// Messages submitted, repeats and refusals included.
    pub submissions: u64,
    /// Submissions the provider recognised as repeats.
    pub duplicates: u64,
    /// Refusals, by the id of the rule applied.
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
}

/// What `GET /__sim/submissions` shows: the time each message was submitted (repeats and
/// refusals included), microseconds since the epoch, in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submissions {
    pub at_us: Vec<i64>,
}

impl Submissions {
    /// The most submissions in any window of `window` (sliding: every window that starts at
    /// a submission, which is where the most begin).
    pub fn most_in(&self, window: Duration) -> usize {
        let mut at = self.at_us.clone();
        at.sort_unstable();
        let span = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let mut end = 0;
        let mut most = 0;
        for start in 0..at.len() {
            while end < at.len() && at[end] - at[start] < span {
                end += 1;
            }
            most = most.max(end - start);
        }
        most
    }
}

/// One accepted message and the fate decided when it was taken.
#[derive(Debug, Clone)]
pub struct Record {
    /// The provider's id for it.
    pub id: String,
    /// The client's id for it, where the provider takes one.
    pub client_id: Option<String>,
    pub recipient: String,
    pub parts: u32,
    /// Kopiykas charged.
    pub cost: i64,
    pub delivered: bool,
    pub accepted_at: DateTime<Utc>,
    accepted: Instant,
    due: Instant,
}

impl Record {
    /// Whether its final state is reached.
    pub fn is_final(&self) -> bool {
        Instant::now() >= self.due
    }

    /// How far along the way to its final state (0.0 to 1.0).
    pub fn progress(&self) -> f64 {
        let whole = self.due.saturating_duration_since(self.accepted);
        if whole.is_zero() {
            return 1.0;
        }
        (self.accepted.elapsed().as_secs_f64() / whole.as_secs_f64()).min(1.0)
    }

    /// When its final state is (or was) reached.
    pub fn final_at(&self) -> DateTime<Utc> {
        let whole = self.due.saturating_duration_since(self.accepted);
        self.accepted_at + chrono::Duration::from_std(whole).unwrap_or_default()
    }
}

/// A message a provider module has checked and wants taken.
pub struct NewMessage {
    pub id: String,
    pub client_id: Option<String>,
    pub recipient: String,
    pub parts: u32,
}

/// The balance does not cover the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsufficientFunds;

/// One simulator's state: cheap to share, every `Arc` is the same simulator.
pub struct Core {
    kind: &'static str,
    settings: SimSettings,
    http: reqwest::Client,
    state: Mutex<Inner>,
}

struct Inner {
    faults: Faults,
    records: HashMap<String, Record>,
    by_client_id: HashMap<String, String>,
    balance: i64,
    stats: Stats,
    submitted_at: Vec<i64>,
}

impl Core {
    /// A fresh simulator of `kind`; the balance starts at `settings.start_balance`, else at
    /// `default_balance` kopiykas.
    pub fn new(kind: &'static str, settings: SimSettings, default_balance: i64) -> Arc<Core> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Arc::new(Core {
            kind,
            http,
            state: Mutex::new(Inner {
                faults: settings.faults.clone(),
                records: HashMap::new(),
                by_client_id: HashMap::new(),
                balance: settings.start_balance.unwrap_or(default_balance),
                stats: Stats::default(),
                submitted_at: Vec::new(),
            }),
            settings,
        })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn settings(&self) -> &SimSettings {
        &self.settings
    }

    /// No code panics halfway through an update, so a poisoned lock still holds sound data.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The string member `name` of the credentials the simulator was given, if non-empty.
    pub fn credential(&self, name: &str) -> Option<&str> {
        self.settings
            .credentials
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether `given` is the credential `name`, compared in constant time; never with no
    /// credential configured.
    pub fn authenticates(&self, name: &str, given: Option<&str>) -> bool {
        match (self.credential(name), given) {
            (Some(expected), Some(given)) => {
                crate::receipt::constant_time_eq(expected.as_bytes(), given.as_bytes())
            }
            _ => false,
        }
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub fn balance(&self) -> i64 {
        self.lock().balance
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Counts `n` messages submitted, whatever becomes of them, and when.
    pub fn submitted(&self, n: u64) {
        let now = Utc::now().timestamp_micros();
        let mut state = self.lock();
        state.stats.submissions += n;
        state
            .submitted_at
            .extend(std::iter::repeat_n(now, usize::try_from(n).unwrap_or(0)));
    }

    pub fn submissions(&self) -> Submissions {
        Submissions {
            at_us: self.lock().submitted_at.clone(),
        }
    }

    /// Counts `n` submissions the provider recognises as repeats.
    pub fn duplicated(&self, n: u64) {
        self.lock().stats.duplicates += n;
    }

    /// The message taken under `client_id`, counting the repeat.
    pub fn repeat_of(&self, client_id: &str) -> Option<Record> {
        let mut state = self.lock();
        let state = &mut *state;
        let record = state
            .by_client_id
            .get(client_id)
            .and_then(|id| state.records.get(id))
            .cloned()?;
        state.stats.duplicates += 1;
        Some(record)
    }

    /// The message the provider knows by `id`.
    pub fn record(&self, id: &str) -> Option<Record> {
        self.lock().records.get(id).cloned()
    }

    /// The message taken under `client_id`.
    pub fn record_by_client_id(&self, client_id: &str) -> Option<Record> {
        let state = self.lock();
        let id = state.by_client_id.get(client_id)?;
        state.records.get(id).cloned()
    }

    /// Takes every message or none: charges `cost_per_part` per part, decides each one's
    /// fate by `delivered_ratio` and when its receipt is due.
    pub fn accept(&self, messages: Vec<NewMessage>) -> Result<Vec<Record>, InsufficientFunds> {
        let settings = &self.settings;
        let price = |parts: u32| settings.cost_per_part.saturating_mul(i64::from(parts));
        let total = messages
            .iter()
            .fold(0i64, |sum, m| sum.saturating_add(price(m.parts)));
        let mut state = self.lock();
        if state.balance < total {
            return Err(InsufficientFunds);
        }
        state.balance -= total;
        let now = Instant::now();
        let mut taken = Vec::with_capacity(messages.len());
        for message in messages {
            let record = Record {
                cost: price(message.parts),
                delivered: super::delivered(settings),
                accepted_at: Utc::now(),
                accepted: now,
                due: now + settings.receipt_delay,
                id: message.id,
                client_id: message.client_id,
                recipient: message.recipient,
                parts: message.parts,
            };
            if let Some(client_id) = &record.client_id {
                state
                    .by_client_id
                    .insert(client_id.clone(), record.id.clone());
            }
            state.records.insert(record.id.clone(), record.clone());
            state.stats.accepted += 1;
            taken.push(record);
        }
        Ok(taken)
    }

    /// Pushes receipts to `url`: each `(after, body)` is posted as JSON `after` the send,
    /// again while the receiver cannot take it. `duplicate_receipts` posts each twice;
    /// `shuffle_receipts` jitters them and sometimes moves the first after the last.
    pub fn push_receipts(
        self: &Arc<Self>,
        url: &str,
        mut plan: Vec<(Duration, serde_json::Value)>,
    ) {
        let faults = self.lock().faults.clone();
        let delay = self.settings.receipt_delay;
        if faults.shuffle_receipts && !plan.is_empty() {
            let mut rng = rand::rng();
            let spread = u64::try_from(delay.as_millis() / 2)
                .unwrap_or(u64::MAX)
                .max(1);
            for (after, _) in &mut plan {
                *after += Duration::from_millis(rng.random_range(0..=spread));
            }
            let last = plan
                .iter()
                .map(|(after, _)| *after)
                .max()
                .unwrap_or_default();
            if plan.len() > 1 && rng.random_bool(0.5) {
                plan[0].0 = last + Duration::from_millis(rng.random_range(1..=spread));
            }
        }
        let copies = if faults.duplicate_receipts { 2 } else { 1 };
        for (after, body) in plan {
            for _ in 0..copies {
                tokio::spawn(Arc::clone(self).push(url.to_owned(), after, body.clone()));
            }
        }
    }

    async fn push(self: Arc<Self>, url: String, after: Duration, body: serde_json::Value) {
        tokio::time::sleep(after).await;
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.http.post(&url).json(&body).send().await {
                Ok(answer) if answer.status().is_success() => return,
                Ok(answer)
                    if answer.status().is_client_error()
                        && answer.status() != StatusCode::REQUEST_TIMEOUT
                        && answer.status() != StatusCode::TOO_MANY_REQUESTS =>
                {
                    let status = answer.status().as_u16();
                    tracing::warn!(
                        kind = self.kind,
                        status,
                        "receiver refused a receipt; dropped"
                    );
                    return;
                }
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    tracing::debug!(kind = self.kind, status, "receipt not taken");
                }
                Err(e) => tracing::debug!(kind = self.kind, error = %e, "receipt not posted"),
            }
            if started.elapsed() > GIVE_UP_AFTER {
                tracing::warn!(kind = self.kind, "giving up on a receipt");
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn roll(&self) -> Fault {
        let faults = self.lock().faults.clone();
        faults.roll().await
    }

    fn count_refusals(&self, response: &Response) {
        let rules: Vec<&str> = response
            .headers()
            .get_all(RULE_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if rules.is_empty() {
            return;
        }
        let mut state = self.lock();
        for rule in rules {
            tracing::info!(kind = self.kind, rule, "simulator refused a request");
            *state.stats.refusals.entry(rule.to_owned()).or_default() += 1;
        }
    }
}

/// How a provider writes a fault: its 5xx page, its rate-limit answer, a body that is not
/// its format. Called with [`Fault::ServerError`], [`Fault::RateLimited`] and
/// [`Fault::Malformed`].
pub type FaultPage = fn(Fault) -> Response;

/// A provider's routes behind the one fault layer, plus the simulator's own endpoints: its
/// stats, its faults and its table of `rules`.
pub fn router<A: Serialize + Send + Sync>(
    core: Arc<Core>,
    api: Router,
    page: FaultPage,
    rules: &'static [Rule<A>],
) -> Router {
    api.layer(middleware::from_fn_with_state(
        (Arc::clone(&core), page),
        faults_and_rules,
    ))
    .merge(
        Router::new()
            .route(STATS_PATH, get(stats))
            .route(
                SUBMISSIONS_PATH,
                get(|State(core): State<Arc<Core>>| async move { axum::Json(core.submissions()) }),
            )
            .route(FAULTS_PATH, put(set_faults))
            .route(RULES_PATH, get(move || async move { axum::Json(rules) }))
            .with_state(core),
    )
}

/// Rolls the faults once per request: a 5xx or rate limit answers before any work;
/// malformed and hung answers come after the work is done. Counts the rules refusals name.
async fn faults_and_rules(
    State((core, page)): State<(Arc<Core>, FaultPage)>,
    request: Request,
    next: Next,
) -> Response {
    let fault = core.roll().await;
    if matches!(fault, Fault::ServerError | Fault::RateLimited) {
        return page(fault);
    }
    let response = next.run(request).await;
    core.count_refusals(&response);
    match fault {
        Fault::Malformed => page(fault),
        Fault::Hang => {
            tokio::time::sleep(HANG).await;
            response
        }
        Fault::None | Fault::ServerError | Fault::RateLimited => response,
    }
}

async fn stats(State(core): State<Arc<Core>>) -> axum::Json<Stats> {
    axum::Json(core.stats())
}

async fn set_faults(State(core): State<Arc<Core>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            core.set_faults(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// A random id in the 8-4-4-4-12 hex shape of a UUID, as TurboSMS and Kyivstar give.
pub fn uuid_shaped() -> String {
    let h = format!("{:032x}", rand::rng().random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// `at` in Kyiv local time (the domain's, from the tz database), written with the strftime
/// `format`.
pub fn kyiv_time(at: DateTime<Utc>, format: &str) -> String {
    holub_shared::domain::kyiv::fixed(at)
        .format(format)
        .to_string()
}

/// Whether `s` has the 8-4-4-4-12 hex shape of a UUID.
pub fn is_uuid_shaped(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Kopiykas as hryvnias with `decimals` (2 or 3) places: `9999.15`, `0.850`.
pub fn hryvnias(kopiyky: i64, decimals: usize) -> String {
    let sign = if kopiyky < 0 { "-" } else { "" };
    let abs = kopiyky.unsigned_abs();
    let zeros = "0".repeat(decimals.saturating_sub(2));
    format!("{sign}{}.{:02}{zeros}", abs / 100, abs % 100)
}

/// Fails unless `actual` has every member `documented` has, with the same JSON type, all
/// the way down (each item of an array against the documented first item): what a client
/// of the documented example reads is there in the simulator's answer.
#[cfg(test)]
pub fn assert_same_shape(actual: &serde_json::Value, documented: &serde_json::Value) {
    fn walk(path: &str, actual: &serde_json::Value, documented: &serde_json::Value) {
        use serde_json::Value::{Array, Bool, Null, Number, Object, String};
        match (actual, documented) {
            (Object(a), Object(d)) => {
                for (key, value) in d {
                    let inner = format!("{path}.{key}");
                    let got = a.get(key).unwrap_or_else(|| panic!("{inner} is missing"));
                    walk(&inner, got, value);
                }
            }
            (Array(a), Array(d)) => {
                if let Some(d) = d.first() {
                    for (i, a) in a.iter().enumerate() {
                        walk(&format!("{path}[{i}]"), a, d);
                    }
                }
            }
            // A documented null says the member is there, not what it holds otherwise.
            (_, Null) | (Number(_), Number(_)) | (String(_), String(_)) | (Bool(_), Bool(_)) => {}
            (a, d) => panic!("{path}: {a} where the documentation shows {d}"),
        }
    }
    walk("$", actual, documented);
}

/// Sends `request` and reads its answer as JSON.
#[cfg(test)]
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let answer = request.send().await.expect("an answer");
    answer.json().await.expect("a JSON answer")
}

/// The rules an answer names.
#[cfg(test)]
pub fn rules_named(answer: &reqwest::Response) -> Vec<String> {
    answer
        .headers()
        .get_all(RULE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// Fails unless every rule of a provider's table is well formed and was applied (so tested)
/// at least once by the simulator whose `stats` these are.
#[cfg(test)]
pub fn assert_every_rule_applied<A>(rules: &[Rule<A>], stats: &Stats) {
    let mut ids = std::collections::HashSet::new();
    for rule in rules {
        assert!(ids.insert(rule.id), "{} is in the table twice", rule.id);
        assert!(
            !rule.description.is_empty() && !rule.source.is_empty(),
            "{}",
            rule.id
        );
        assert!(
            stats.refusals.contains_key(rule.id),
            "{} is not tested",
            rule.id
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyiv_time_follows_summer_time() {
        let winter = "2026-01-15T10:00:00Z".parse().expect("a time");
        assert_eq!(
            kyiv_time(winter, "%Y-%m-%d %H:%M:%S %z"),
            "2026-01-15 12:00:00 +0200"
        );
        let summer = "2026-07-15T10:00:00Z".parse().expect("a time");
        assert_eq!(
            kyiv_time(summer, "%Y-%m-%d %H:%M:%S %z"),
            "2026-07-15 13:00:00 +0300"
        );
    }

    #[test]
    fn money_and_ids_are_written_as_the_providers_write_them() {
        assert_eq!(hryvnias(999_915, 2), "9999.15");
        assert_eq!(hryvnias(85, 3), "0.850");
        assert_eq!(hryvnias(-5, 2), "-0.05");
        assert!(is_uuid_shaped(&uuid_shaped()));
        assert!(!is_uuid_shaped("FAPI00134035C3000004"));
    }

    #[test]
    fn accepting_is_all_or_nothing_and_charges_per_part() {
        let core = Core::new("test", SimSettings::default(), 200);
        let message = |id: &str, parts| NewMessage {
            id: id.to_owned(),
            client_id: Some(format!("c-{id}")),
            recipient: "380671234567".to_owned(),
            parts,
        };
        assert_eq!(
            core.accept(vec![message("a", 1), message("b", 2)]).err(),
            Some(InsufficientFunds)
        );
        assert_eq!(core.stats().accepted, 0);
        let taken = core.accept(vec![message("a", 2)]).expect("covered");
        assert_eq!(taken[0].cost, 170);
        assert_eq!(core.balance(), 30);
        assert!(core.repeat_of("c-a").is_some());
        assert_eq!(core.stats().duplicates, 1);
        assert_eq!(
            core.record_by_client_id("c-a").map(|r| r.id),
            Some("a".into())
        );
    }

    const TEST_RULE: Rule = Rule {
        id: "test.text.required",
        description: "text is given",
        source: "this test",
        answer: (),
    };

    fn refusing_page(_: Fault) -> Response {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }

    #[tokio::test]
    async fn refusals_are_counted_by_rule_and_the_table_is_served() {
        let core = Core::new("test", SimSettings::default(), 0);
        let api = Router::new().route(
            "/send",
            axum::routing::post(|| async {
                refused(&TEST_RULE, StatusCode::BAD_REQUEST.into_response())
            }),
        );
        let app = router(Arc::clone(&core), api, refusing_page, &[TEST_RULE]);
        let addr = super::super::serve_in_background("test", app)
            .await
            .expect("serves");
        let http = reqwest::Client::new();
        let answer = http
            .post(format!("http://{addr}/send"))
            .send()
            .await
            .expect("answer");
        assert_eq!(rules_named(&answer), [TEST_RULE.id]);
        let stats = json_of(http.get(format!("http://{addr}{STATS_PATH}"))).await;
        assert_eq!(stats["refusals"][TEST_RULE.id], 1);
        let table = json_of(http.get(format!("http://{addr}{RULES_PATH}"))).await;
        assert_eq!(table[0]["id"], TEST_RULE.id);
        assert_eq!(table[0]["source"], TEST_RULE.source);
        // Faults are played in front of the provider's routes, not the simulator's own.
        core.set_faults(Faults {
            down: true,
            ..Faults::default()
        });
        let down = http
            .post(format!("http://{addr}/send"))
            .send()
            .await
            .expect("answer");
        assert_eq!(down.status().as_u16(), 503);
        let stats = http
            .get(format!("http://{addr}{STATS_PATH}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(stats.status().as_u16(), 200);
    }
}
