//! End-to-end tests: a simulator in-process on 127.0.0.1:0, the provider adapter talking to
//! it, and a small receiver collecting the receipts it posts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use chrono::Utc;
use holub_shared::domain::segments::estimate;
use holub_shared::domain::status::ReceiptState;
use holub_shared::domain::{Kopiyky, MessageId, PhoneNumber, SenderId};
use holub_shared::ports::{OutboundSms, ProviderError, ProviderReceipt, SmsProvider};
use tokio::net::TcpListener;

use crate::provider::codes;
use crate::wire::{ErrorBody, LookupResponse, SendResponse, SendResult, Stats};
use crate::{
    Simulator, SimulatorConfig, SimulatorProvider, parse_receipts, serve, verify_receipt_token,
};

const API_TOKEN: &str = "test-api-token";
const RECEIPT_TOKEN: &str = "test-receipt-token";
const RECEIPTS_PATH: &str = "/v1/receipts/simulator";

fn config() -> SimulatorConfig {
    SimulatorConfig {
        api_token: API_TOKEN.into(),
        receipt_token: RECEIPT_TOKEN.into(),
        receipt_delay: Duration::from_millis(50),
        delivered_ratio: 1.0,
        seed: Some(7),
        ..SimulatorConfig::default()
    }
}

fn config_with_receipts(receiver: SocketAddr) -> SimulatorConfig {
    SimulatorConfig {
        receipts_url: format!("http://{receiver}{RECEIPTS_PATH}"),
        ..config()
    }
}

fn sms(text: &str) -> OutboundSms {
    let estimate = estimate(text);
    OutboundSms {
        id: MessageId::generate(Utc::now()),
        to: PhoneNumber::parse("+380671234567").expect("a valid number"),
        from: SenderId::parse("Holub").expect("a valid sender"),
        text: text.to_owned(),
        encoding: estimate.encoding,
        segments: u16::try_from(estimate.segments).expect("few parts"),
        validity_seconds: 3600,
    }
}

fn provider(simulator: &Simulator) -> SimulatorProvider {
    SimulatorProvider::new(&simulator.base_url(), API_TOKEN, "simulator").expect("a provider")
}

async fn start(config: SimulatorConfig) -> Simulator {
    Simulator::start(config)
        .await
        .expect("the simulator starts")
}

/// Polls `check` until it holds, failing the test after 20 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn temporary_code(
    result: &Result<impl std::fmt::Debug, ProviderError>,
) -> Option<holub_shared::domain::FailureCode> {
    match result {
        Err(ProviderError::Temporary { code, .. }) => Some(*code),
        _ => None,
    }
}

fn unknown_code(
    result: &Result<impl std::fmt::Debug, ProviderError>,
) -> Option<holub_shared::domain::FailureCode> {
    match result {
        Err(ProviderError::Unknown { code, .. }) => Some(*code),
        _ => None,
    }
}

fn account_code(
    result: &Result<impl std::fmt::Debug, ProviderError>,
) -> Option<holub_shared::domain::FailureCode> {
    match result {
        Err(ProviderError::Account { code, .. }) => Some(*code),
        _ => None,
    }
}

fn permanent_code(
    result: &Result<impl std::fmt::Debug, ProviderError>,
) -> Option<holub_shared::domain::FailureCode> {
    match result {
        Err(ProviderError::Permanent { code, .. }) => Some(*code),
        _ => None,
    }
}

/// Collects receipt POSTs. Answers 503 to the first `fail_first` requests, then `status`.
#[derive(Clone)]
struct Receiver {
    taken: Arc<Mutex<Vec<Bytes>>>,
    auth: Arc<Mutex<Vec<Option<String>>>>,
    requests: Arc<AtomicUsize>,
    fail_first: Arc<AtomicUsize>,
    status: StatusCode,
}

impl Receiver {
    fn new(fail_first: usize, status: StatusCode) -> Self {
        Receiver {
            taken: Arc::default(),
            auth: Arc::default(),
            requests: Arc::default(),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            status,
        }
    }

    async fn start(self) -> (SocketAddr, Self) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        (addr, self.start_on(listener))
    }

    fn start_on(self, listener: TcpListener) -> Self {
        let app = Router::new()
            .route(RECEIPTS_PATH, post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        self
    }

    /// Every receipt of every batch answered 2xx, parsed as Holub would.
    fn receipts(&self) -> Vec<ProviderReceipt> {
        self.taken
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|body| parse_receipts(body).expect("the simulator posts valid receipts"))
            .collect()
    }

    fn receipt_count(&self) -> usize {
        self.receipts().len()
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    receiver.auth.lock().expect("lock").push(auth);
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if receiver.status.is_success() {
        receiver.taken.lock().expect("lock").push(body);
    }
    receiver.status
}

async fn get_json<T: serde::de::DeserializeOwned>(url: String, token: Option<&str>) -> (u16, T) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn stats_over_http(simulator: &Simulator) -> Stats {
    get_json(format!("{}/api/v1/stats", simulator.base_url()), None)
        .await
        .1
}

#[tokio::test]
async fn accepts_messages_with_unique_ids_and_prices_per_part() {
    let simulator = start(config()).await;
    let provider = provider(&simulator);
    let short = sms("Your code: 4821");
    let long = sms(&"ї".repeat(100));
    assert_eq!(long.segments, 2);

    let results = provider.send_many(&[short, long]).await;
    let submitted: Vec<_> = results.into_iter().map(|r| r.expect("accepted")).collect();
    assert!(
        submitted
            .iter()
            .all(|s| s.provider_message_id.starts_with("sim-"))
    );
    assert_ne!(
        submitted[0].provider_message_id,
        submitted[1].provider_message_id
    );
    assert_eq!(submitted[0].cost, Some(Kopiyky(85)));
    assert_eq!(submitted[1].cost, Some(Kopiyky(170)));

    let single = provider.send(&sms("one more")).await.expect("accepted");
    assert_eq!(single.cost, Some(Kopiyky(85)));

    let stats = stats_over_http(&simulator).await;
    assert_eq!(
        (stats.accepted, stats.submissions, stats.duplicates),
        (3, 3, 0)
    );
    assert_eq!(stats, simulator.stats());
    assert_eq!(provider.name(), "simulator");
}

#[tokio::test]
async fn the_cost_per_part_is_configurable() {
    let simulator = start(SimulatorConfig {
        cost_per_part: 120,
        ..config()
    })
    .await;
    let submitted = provider(&simulator)
        .send(&sms(&"a".repeat(161)))
        .await
        .expect("accepted");
    assert_eq!(submitted.cost, Some(Kopiyky(240)));
}

#[tokio::test]
async fn a_resubmitted_client_id_is_answered_not_sent_again() {
    let simulator = start(config()).await;
    let provider = provider(&simulator);
    let message = sms("Hello");

    let first = provider.send(&message).await.expect("accepted");
    let again = provider.send(&message).await.expect("accepted");
    let in_one_batch = provider
        .send_many(&[message.clone(), message.clone()])
        .await;
    assert_eq!(again, first);
    for result in in_one_batch {
        assert_eq!(result, Ok(first.clone()));
    }
    let stats = simulator.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.submissions, 4);
    assert_eq!(stats.duplicates, 3);
}

#[tokio::test]
async fn lookup_finds_accepted_messages_and_not_others() {
    let simulator = start(SimulatorConfig {
        receipt_delay: Duration::from_secs(60),
        ..config()
    })
    .await;
    let provider = provider(&simulator);
    let message = sms("Hello");
    let submitted = provider.send(&message).await.expect("accepted");

    assert_eq!(
        provider.lookup(&message.id).await,
        Ok(Some(submitted.clone()))
    );
    assert_eq!(provider.lookup(&sms("never sent").id).await, Ok(None));

    let (status, found): (u16, LookupResponse) = get_json(
        format!("{}/api/v1/messages/{}", simulator.base_url(), message.id),
        Some(API_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found.status, "ENROUTE");
    assert_eq!(found.message_id, submitted.provider_message_id);
    assert_eq!(found.cost, "0.85");

    let (status, body): (u16, ErrorBody) = get_json(
        format!("{}/api/v1/messages/not-a-ulid", simulator.base_url()),
        Some(API_TOKEN),
    )
    .await;
    assert_eq!((status, body.error.as_str()), (400, "invalid_client_id"));
}

#[tokio::test]
async fn status_answers_final_receipts_of_known_messages_only() {
    let simulator = start(config()).await;
    let provider = provider(&simulator);
    assert!(provider.answers_status());
    let (short, long) = (sms("Hello"), sms(&"x".repeat(200)));
    let short_id = provider
        .send(&short)
        .await
        .expect("accepted")
        .provider_message_id;
    let long_id = provider
        .send(&long)
        .await
        .expect("accepted")
        .provider_message_id;
    let ids = [short_id.clone(), long_id.clone(), "sim-unknown".to_owned()];
    // Not due yet: no news, not an intermediate state.
    let slow = start(SimulatorConfig {
        receipt_delay: Duration::from_secs(60),
        ..config()
    })
    .await;
    let slow_id = self::provider(&slow)
        .send(&short)
        .await
        .expect("accepted")
        .provider_message_id;
    assert_eq!(self::provider(&slow).status(&[slow_id]).await, Ok(vec![]));

    tokio::time::sleep(Duration::from_millis(100)).await;
    let receipts = provider.status(&ids).await.expect("answered");
    let mut seen: Vec<(&str, u16, ReceiptState)> = receipts
        .iter()
        .map(|r| (r.provider_message_id.as_str(), r.part, r.state))
        .collect();
    seen.sort();
    let mut expected = vec![
        (short_id.as_str(), 1, ReceiptState::Delivered),
        (long_id.as_str(), 1, ReceiptState::Delivered),
        (long_id.as_str(), 2, ReceiptState::Delivered),
    ];
    expected.sort();
    assert_eq!(seen, expected, "one receipt per part, unknown ids left out");
}

#[tokio::test]
async fn a_journal_keeps_what_was_accepted_across_a_restart() {
    let dir = std::env::temp_dir().join(format!("holub-sim-{}", MessageId::generate(Utc::now())));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let journaled = SimulatorConfig {
        journal: Some(dir.join("simulator.journal")),
        receipt_delay: Duration::from_millis(300),
        ..config()
    };
    let first = start(journaled.clone()).await;
    let (early, late) = (sms("Hello"), sms("Привіт"));
    let early_sent = provider(&first).send(&early).await.expect("accepted");
    let late_sent = provider(&first).send(&late).await.expect("accepted");
    first.stop().await;

    let second = start(journaled).await;
    let again = provider(&second);
    assert_eq!(again.lookup(&early.id).await, Ok(Some(early_sent.clone())));
    assert_eq!(second.stats().accepted, 2);
    // The same client id again is a duplicate, answered with the first id.
    assert_eq!(again.send(&late).await, Ok(late_sent.clone()));
    assert_eq!(second.stats().duplicates, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let receipts = again
        .status(&[
            early_sent.provider_message_id,
            late_sent.provider_message_id,
        ])
        .await
        .expect("answered");
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    assert!(receipts.iter().all(|r| r.state == ReceiptState::Delivered));
    second.stop().await;
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}

#[tokio::test]
async fn final_states_follow_the_ratios() {
    for (delivered_ratio, expired_ratio, expected) in [
        (1.0, 0.0, "DELIVRD"),
        (0.0, 0.0, "UNDELIV"),
        (0.0, 1.0, "EXPIRED"),
    ] {
        let simulator = start(SimulatorConfig {
            receipt_delay: Duration::ZERO,
            delivered_ratio,
            expired_ratio,
            ..config()
        })
        .await;
        let message = sms("Hello");
        provider(&simulator).send(&message).await.expect("accepted");
        let (_, found): (u16, LookupResponse) = get_json(
            format!("{}/api/v1/messages/{}", simulator.base_url(), message.id),
            Some(API_TOKEN),
        )
        .await;
        assert_eq!(found.status, expected);
    }
}

#[tokio::test]
async fn receipts_arrive_with_the_token_and_parse() {
    let (addr, receiver) = Receiver::new(0, StatusCode::OK).start().await;
    let simulator = start(config_with_receipts(addr)).await;
    let provider = provider(&simulator);
    let batch = [sms("one"), sms("two"), sms("three")];
    let started = Instant::now();
    let submitted: Vec<_> = provider
        .send_many(&batch)
        .await
        .into_iter()
        .map(|r| r.expect("accepted"))
        .collect();
    assert_eq!(simulator.stats().receipts_pending, 3);

    eventually("3 receipts", || receiver.receipt_count() == 3).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    let receipts = receiver.receipts();
    let ids: HashSet<_> = receipts
        .iter()
        .map(|r| r.provider_message_id.clone())
        .collect();
    let expected: HashSet<_> = submitted
        .iter()
        .map(|s| s.provider_message_id.clone())
        .collect();
    assert_eq!(ids, expected);
    assert!(receipts.iter().all(|r| r.part == 1));
    assert!(receipts.iter().all(|r| r.state == ReceiptState::Delivered));
    assert!(
        receipts
            .iter()
            .all(|r| (r.at - Utc::now()).num_seconds().abs() < 60)
    );
    for auth in receiver.auth.lock().expect("lock").iter() {
        assert!(verify_receipt_token(auth.as_deref(), RECEIPT_TOKEN));
        assert!(!verify_receipt_token(auth.as_deref(), API_TOKEN));
    }

    eventually("posted counted", || simulator.stats().receipts_posted == 3).await;
    let stats = simulator.stats();
    assert_eq!((stats.receipts_pending, stats.receipts_dropped), (0, 0));
}

#[tokio::test]
async fn a_multipart_message_gets_one_receipt_per_part() {
    let (addr, receiver) = Receiver::new(0, StatusCode::OK).start().await;
    let simulator = start(config_with_receipts(addr)).await;
    let message = sms(&"a".repeat(400));
    assert_eq!(message.segments, 3);
    let submitted = provider(&simulator).send(&message).await.expect("accepted");
    assert_eq!(submitted.cost, Some(Kopiyky(255)));

    eventually("3 part receipts", || receiver.receipt_count() == 3).await;
    let mut parts: Vec<u16> = receiver.receipts().iter().map(|r| r.part).collect();
    parts.sort_unstable();
    assert_eq!(parts, [1, 2, 3]);
    assert!(
        receiver
            .receipts()
            .iter()
            .all(|r| r.provider_message_id == submitted.provider_message_id)
    );
}

#[tokio::test]
async fn receipts_are_retried_after_5xx() {
    let (addr, receiver) = Receiver::new(3, StatusCode::OK).start().await;
    let simulator = start(config_with_receipts(addr)).await;
    provider(&simulator)
        .send_many(&[sms("one"), sms("two")])
        .await
        .into_iter()
        .for_each(|r| assert!(r.is_ok()));

    eventually("2 receipts", || receiver.receipt_count() == 2).await;
    assert!(receiver.requests() >= 4, "3 refusals and a success");
    eventually("posted counted", || simulator.stats().receipts_posted == 2).await;
    // Taken once each: the failed attempts did not count, and nothing is resent after.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.receipt_count(), 2);
    assert_eq!(simulator.stats().receipts_pending, 0);
}

#[tokio::test]
async fn receipts_wait_for_a_receiver_that_is_down() {
    // Take a free port, and leave it closed for a while: connection refused.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port")
        .local_addr()
        .expect("an address")
        .port();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let simulator = start(config_with_receipts(addr)).await;
    provider(&simulator)
        .send_many(&[sms("one"), sms("two"), sms(&"b".repeat(200))])
        .await
        .into_iter()
        .for_each(|r| assert!(r.is_ok()));

    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = simulator.stats();
    assert_eq!((stats.receipts_pending, stats.receipts_posted), (4, 0));

    let listener = TcpListener::bind(addr).await.expect("the same port again");
    let receiver = Receiver::new(0, StatusCode::OK).start_on(listener);
    eventually("4 receipts", || receiver.receipt_count() == 4).await;
    eventually("posted counted", || simulator.stats().receipts_posted == 4).await;
    assert_eq!(simulator.stats().receipts_pending, 0);
}

#[tokio::test]
async fn a_batch_refused_with_4xx_is_dropped_not_retried() {
    let (addr, receiver) = Receiver::new(0, StatusCode::UNPROCESSABLE_ENTITY)
        .start()
        .await;
    let simulator = start(config_with_receipts(addr)).await;
    provider(&simulator)
        .send_many(&[sms("one"), sms("two")])
        .await
        .into_iter()
        .for_each(|r| assert!(r.is_ok()));

    eventually("dropped counted", || {
        simulator.stats().receipts_dropped == 2
    })
    .await;
    let requests = receiver.requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests(), requests);
    let stats = simulator.stats();
    assert_eq!((stats.receipts_pending, stats.receipts_posted), (0, 0));
}

#[tokio::test]
async fn duplicate_and_out_of_order_receipts_can_be_injected() {
    let (addr, receiver) = Receiver::new(0, StatusCode::OK).start().await;
    let simulator = start(SimulatorConfig {
        duplicate_receipts: true,
        shuffle_receipts: true,
        ..config_with_receipts(addr)
    })
    .await;
    let batch: Vec<_> = (0..20).map(|i| sms(&format!("message {i}"))).collect();
    let submitted: Vec<_> = provider(&simulator)
        .send_many(&batch)
        .await
        .into_iter()
        .map(|r| r.expect("accepted").provider_message_id)
        .collect();

    eventually("40 receipts", || receiver.receipt_count() == 40).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for receipt in receiver.receipts() {
        *seen.entry(receipt.provider_message_id).or_default() += 1;
    }
    assert!(submitted.iter().all(|id| seen.get(id) == Some(&2)));
    let order: Vec<String> = receiver
        .receipts()
        .into_iter()
        .take(20)
        .map(|r| r.provider_message_id)
        .collect();
    assert_ne!(order, submitted, "the first 20 came in send order");
    eventually("posted counted", || simulator.stats().receipts_posted == 40).await;
}

#[tokio::test]
async fn fail_ratio_one_makes_every_message_temporary() {
    let simulator = start(SimulatorConfig {
        fail_ratio: 1.0,
        ..config()
    })
    .await;
    let provider = provider(&simulator);
    let results = provider
        .send_many(&[sms("one"), sms("two"), sms("three")])
        .await;
    assert_eq!(results.len(), 3);
    for result in &results {
        assert_eq!(temporary_code(result), Some(codes::UNAVAILABLE));
    }
    assert_eq!(simulator.stats().submissions, 0);
}

#[tokio::test]
async fn reject_ratio_one_makes_every_message_permanent() {
    let simulator = start(SimulatorConfig {
        reject_ratio: 1.0,
        ..config()
    })
    .await;
    let results = provider(&simulator)
        .send_many(&[sms("one"), sms("two")])
        .await;
    for result in &results {
        assert_eq!(
            permanent_code(result),
            Some(holub_shared::domain::FailureCode::ProviderRejected)
        );
    }
    let stats = simulator.stats();
    assert_eq!((stats.accepted, stats.submissions), (0, 2));
}

#[tokio::test]
async fn a_lost_answer_is_temporary_and_resolved_by_lookup() {
    let simulator = start(SimulatorConfig {
        lost_answer_ratio: 1.0,
        ..config()
    })
    .await;
    let provider = provider(&simulator);
    let message = sms("Hello");
    let result = provider.send(&message).await;
    assert_eq!(temporary_code(&result), Some(codes::UNAVAILABLE));
    let found = provider.lookup(&message.id).await.expect("a lookup answer");
    assert!(found.is_some_and(|s| s.provider_message_id.starts_with("sim-")));
    // Trying again is answered from the record: still one message.
    let _ = provider.send(&message).await;
    let stats = simulator.stats();
    assert_eq!((stats.accepted, stats.duplicates), (1, 1));
}

#[tokio::test]
async fn latency_is_added_to_send_requests() {
    let simulator = start(SimulatorConfig {
        latency: Duration::from_millis(150),
        ..config()
    })
    .await;
    let started = Instant::now();
    provider(&simulator)
        .send(&sms("slow"))
        .await
        .expect("accepted");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn over_the_rate_limit_is_temporary() {
    let simulator = start(SimulatorConfig {
        rate_limit_per_second: Some(2),
        ..config()
    })
    .await;
    let provider = provider(&simulator);
    for result in provider.send_many(&[sms("one"), sms("two")]).await {
        assert!(result.is_ok());
    }
    let result = provider.send(&sms("three")).await;
    assert_eq!(temporary_code(&result), Some(codes::RATE_LIMITED));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(provider.send(&sms("four")).await.is_ok());
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused() {
    let simulator = start(config()).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"messages": []});
    let url = format!("{}/api/v1/send", simulator.base_url());
    for token in [None, Some("wrong"), Some("")] {
        let mut request = client.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let error: ErrorBody = response.json().await.expect("a JSON body");
        assert_eq!(error.error, "unauthorized");
    }
    let (status, _): (u16, ErrorBody) = get_json(
        format!("{}/api/v1/messages/{}", simulator.base_url(), sms("x").id),
        None,
    )
    .await;
    assert_eq!(status, 401);

    let wrong =
        SimulatorProvider::new(&simulator.base_url(), "wrong", "simulator").expect("a provider");
    let message = sms("Hello");
    assert_eq!(
        account_code(&wrong.send(&message).await),
        Some(codes::UNAUTHORIZED)
    );
    assert_eq!(
        temporary_code(&wrong.lookup(&message.id).await),
        Some(codes::UNAUTHORIZED)
    );
    assert_eq!(simulator.stats().submissions, 0);
}

#[tokio::test]
async fn each_message_is_checked_and_answered_in_order() {
    let simulator = start(config()).await;
    let good = MessageId::generate(Utc::now()).to_string();
    let body = serde_json::json!({"messages": [
        {"client_id": "nope", "to": "380671234567", "from": "Holub", "text": "a"},
        {"client_id": MessageId::generate(Utc::now()).to_string(), "to": "12345", "from": "Holub", "text": "a"},
        {"client_id": MessageId::generate(Utc::now()).to_string(), "to": "380671234567", "from": "H!", "text": "a"},
        {"client_id": MessageId::generate(Utc::now()).to_string(), "to": "380671234567", "from": "Holub", "text": ""},
        {"client_id": good, "to": "+380671234567", "from": "Holub", "text": "a", "validity": 60},
    ]});
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/send", simulator.base_url()))
        .bearer_auth(API_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    let answer: SendResponse = response.json().await.expect("holub-sim v1");
    let codes: Vec<&str> = answer
        .results
        .iter()
        .map(|r| match r {
            SendResult::Accepted { .. } => "accepted",
            SendResult::Error {
                code, retryable, ..
            } => {
                assert!(!retryable);
                code
            }
        })
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_client_id",
            "invalid_number",
            "invalid_sender",
            "empty_text",
            "accepted"
        ]
    );
    assert!(
        matches!(&answer.results[4], SendResult::Accepted { client_id, .. } if *client_id == good)
    );
    let stats = simulator.stats();
    assert_eq!((stats.accepted, stats.submissions), (1, 5));
}

#[tokio::test]
async fn malformed_or_oversized_requests_are_refused_whole() {
    let simulator = start(config()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/send", simulator.base_url());
    let item = serde_json::json!({"client_id": MessageId::generate(Utc::now()).to_string(),
                                  "to": "380671234567", "from": "Holub", "text": "a"});
    for (body, code) in [
        (
            serde_json::json!({"messages": vec![item; 1001]}),
            "too_many_messages",
        ),
        (
            serde_json::json!({"messages": [{"to": "380671234567"}]}),
            "bad_request",
        ),
        (serde_json::json!({"msgs": []}), "bad_request"),
    ] {
        let response = client
            .post(&url)
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error: ErrorBody = response.json().await.expect("a JSON body");
        assert_eq!(error.error, code);
    }
    assert_eq!(simulator.stats().submissions, 0);
}

#[tokio::test]
async fn large_batches_go_in_requests_of_1000() {
    let simulator = start(config()).await;
    let batch: Vec<_> = (0..2500).map(|i| sms(&format!("code {i}"))).collect();
    let results = provider(&simulator).send_many(&batch).await;
    assert_eq!(results.len(), 2500);
    assert!(results.iter().all(Result::is_ok));
    let ids: HashSet<_> = results
        .into_iter()
        .filter_map(Result::ok)
        .map(|s| s.provider_message_id)
        .collect();
    assert_eq!(ids.len(), 2500);
    assert_eq!(simulator.stats().accepted, 2500);
}

/// A stand-in for a broken provider: answers each request with the next canned answer.
async fn fake_provider(answers: Vec<(StatusCode, &'static str)>) -> SocketAddr {
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let next = move || {
        let answers = Arc::clone(&answers);
        async move {
            let (status, body) = answers
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or((StatusCode::GONE, "{}"));
            (status, [(header::CONTENT_TYPE, "application/json")], body)
        }
    };
    let app = Router::new()
        .route("/api/v1/send", post(next.clone()))
        .route("/api/v1/messages/{id}", get(next));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_malformed_answer_leaves_the_outcome_unknown() {
    let message = sms("Hello");
    let other = MessageId::generate(Utc::now());
    let wrong_client: &'static str = Box::leak(
        format!(
            r#"{{"results":[{{"status":"accepted","client_id":"{other}","message_id":"sim-1","cost":"0.85","parts":1}}]}}"#
        )
        .into_boxed_str(),
    );
    let answers = vec![
        (StatusCode::OK, "this is not JSON"),
        (StatusCode::OK, r#"{"results":[]}"#),
        (StatusCode::OK, r#"{"results":[{"status":"queued"}]}"#),
        (StatusCode::OK, r#"{"outcome":"fine"}"#),
        (StatusCode::OK, wrong_client),
        (StatusCode::OK, r#"[1,2,3]"#),
        (StatusCode::CREATED, r#"{"results":[]}"#),
    ];
    let count = answers.len();
    let addr = fake_provider(answers).await;
    let provider =
        SimulatorProvider::new(&format!("http://{addr}/"), API_TOKEN, "fake").expect("a provider");
    for attempt in 0..count {
        let result = provider.send(&message).await;
        assert_eq!(
            unknown_code(&result),
            Some(codes::BAD_ANSWER),
            "answer {attempt}: {result:?}"
        );
    }
}

#[tokio::test]
async fn http_errors_are_sorted_into_temporary_and_permanent() {
    let message = sms("Hello");
    let addr = fake_provider(vec![
        (StatusCode::INTERNAL_SERVER_ERROR, "oops"),
        (StatusCode::BAD_GATEWAY, ""),
        (StatusCode::TOO_MANY_REQUESTS, r#"{"error":"rate_limited"}"#),
        (StatusCode::BAD_REQUEST, r#"{"error":"bad_request"}"#),
        (StatusCode::IM_A_TEAPOT, "no"),
        // Lookups: only the simulator's own not_found means "never seen".
        (StatusCode::NOT_FOUND, "<html>not here</html>"),
        (StatusCode::OK, r#"{"message_id":""}"#),
        (StatusCode::BAD_REQUEST, r#"{"error":"invalid_client_id"}"#),
        (StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#),
        (
            StatusCode::OK,
            r#"{"message_id":"sim-9","cost":"1,70","parts":2,"status":"DELIVRD"}"#,
        ),
    ])
    .await;
    let provider =
        SimulatorProvider::new(&format!("http://{addr}"), API_TOKEN, "fake").expect("a provider");
    assert_eq!(
        temporary_code(&provider.send(&message).await),
        Some(codes::UNAVAILABLE)
    );
    assert_eq!(
        temporary_code(&provider.send(&message).await),
        Some(codes::UNAVAILABLE)
    );
    assert_eq!(
        temporary_code(&provider.send(&message).await),
        Some(codes::RATE_LIMITED)
    );
    assert_eq!(
        permanent_code(&provider.send(&message).await),
        Some(codes::BAD_REQUEST)
    );
    assert_eq!(
        permanent_code(&provider.send(&message).await),
        Some(codes::BAD_REQUEST)
    );
    assert_eq!(
        unknown_code(&provider.lookup(&message.id).await),
        Some(codes::BAD_ANSWER)
    );
    assert_eq!(
        unknown_code(&provider.lookup(&message.id).await),
        Some(codes::BAD_ANSWER)
    );
    assert_eq!(
        temporary_code(&provider.lookup(&message.id).await),
        Some(codes::BAD_REQUEST)
    );
    assert_eq!(provider.lookup(&message.id).await, Ok(None));
    let found = provider.lookup(&message.id).await.expect("found");
    assert_eq!(
        found.map(|s| (s.provider_message_id, s.cost)),
        Some(("sim-9".to_owned(), Some(Kopiyky(170))))
    );
}

#[tokio::test]
async fn an_unreachable_simulator_is_temporary() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port")
        .local_addr()
        .expect("an address")
        .port();
    let provider = SimulatorProvider::new(&format!("http://127.0.0.1:{port}"), API_TOKEN, "gone")
        .expect("a provider");
    let message = sms("Hello");
    let results = provider.send_many(&[message.clone(), sms("two")]).await;
    assert!(
        results
            .iter()
            .all(|r| temporary_code(r) == Some(codes::UNREACHABLE))
    );
    assert_eq!(
        temporary_code(&provider.lookup(&message.id).await),
        Some(codes::UNREACHABLE)
    );
    assert!(provider.send_many(&[]).await.is_empty());
}

#[test]
fn bad_base_urls_are_refused() {
    for url in [
        "",
        "127.0.0.1:9090",
        "ftp://127.0.0.1",
        "mailto:sim@example.com",
    ] {
        assert!(
            SimulatorProvider::new(url, API_TOKEN, "sim").is_err(),
            "{url:?}"
        );
    }
    let provider =
        SimulatorProvider::new("http://127.0.0.1:9090/sim", "s3cret", "sim").expect("a provider");
    assert!(!format!("{provider:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_works() {
    let simulator = start(config()).await;
    let app = Router::new().nest_service("/prefix", crate::router(simulator.state().clone()));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let provider = SimulatorProvider::new(&format!("http://{addr}/prefix"), API_TOKEN, "sim")
        .expect("a provider");
    let message = sms("Hello");
    assert!(provider.send(&message).await.is_ok());
    assert!(matches!(provider.lookup(&message.id).await, Ok(Some(_))));
}

#[tokio::test]
async fn serve_runs_on_a_given_listener() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let server = tokio::spawn(serve(listener, config()));
    let (status, stats): (u16, Stats) = get_json(format!("http://{addr}/api/v1/stats"), None).await;
    assert_eq!((status, stats), (200, Stats::default()));
    server.abort();

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a port");
    let bad = SimulatorConfig {
        fail_ratio: 2.0,
        ..config()
    };
    let error = serve(listener, bad).await.err().map(|e| e.kind());
    assert_eq!(error, Some(std::io::ErrorKind::InvalidInput));
}

/// 10,000 messages through send, receipts and the receiver, on two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_flow_through() {
    let (addr, receiver) = Receiver::new(0, StatusCode::OK).start().await;
    let simulator = start(config_with_receipts(addr)).await;
    let provider = provider(&simulator);
    let batch: Vec<_> = (0..10_000).map(|i| sms(&format!("code {i}"))).collect();
    let started = Instant::now();
    let results = provider.send_many(&batch).await;
    let send_time = started.elapsed();
    assert!(results.iter().all(Result::is_ok));
    eventually("10,000 receipts", || {
        simulator.stats().receipts_posted == 10_000
    })
    .await;
    let total = started.elapsed();
    assert_eq!(receiver.receipt_count(), 10_000);
    assert!(receiver.requests() >= 20, "batches of at most 500");
    let stats = simulator.stats();
    assert_eq!((stats.accepted, stats.receipts_pending), (10_000, 0));
    eprintln!("10,000 messages: sent in {send_time:?}, all receipts in {total:?}");
}

#[tokio::test]
async fn a_dropped_handle_keeps_running_and_stop_stops() {
    let simulator = start(config()).await;
    let base_url = simulator.base_url();
    assert_eq!(format!("http://{simulator}"), base_url);
    let provider = SimulatorProvider::new(&base_url, API_TOKEN, "simulator").expect("a provider");
    let state = simulator.state().clone();
    drop(simulator);
    assert!(provider.send(&sms("still here")).await.is_ok());
    assert_eq!(state.stats().accepted, 1);

    let simulator = start(config()).await;
    let provider = self::provider(&simulator);
    // A pooled keep-alive connection must not outlive the stop.
    assert!(provider.send(&sms("before")).await.is_ok());
    simulator.stop().await;
    let result = provider.send(&sms("gone")).await;
    assert_eq!(temporary_code(&result), Some(codes::UNREACHABLE));
}
