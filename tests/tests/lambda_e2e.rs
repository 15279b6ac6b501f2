//! The real Lambda binaries, end to end: each function is its own process under a local
//! Lambda Runtime API ([`holub_tests::lambda`]), over DynamoDB, SQS and Secrets Manager
//! served by moto (`scripts/test` starts it and sets `HOLUB_TEST_AWS_ENDPOINT`), with the
//! providers' simulators on loopback. The API and receipts functions sit behind an API
//! Gateway front, the dispatch, callbacks and campaigns functions behind SQS event sources,
//! and the scheduler and rollup functions are invoked with the EventBridge schedule's event.
//!
//! Every test has tables, queues and a secrets prefix of its own, so they run in parallel.
//! Without moto the tests are skipped with a notice, except in CI, where they fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use holub_shared::ports::SecretStore;
use holub_simulator::providers::{self, Faults, SimSettings};
use holub_tests::lambda::{
    Deployment, FunctionConfig, HttpFront, InvokeError, LambdaFunction, SqsEventSource,
    StreamEventSource, UnservedFront, function_bin,
};
use serde_json::{Value, json};

const SCHEDULED_EVENT: &str = include_str!("../../events/eventbridge-scheduled.json");
const RECEIPT_EVENT: &str = include_str!("../../events/apigw-v2-receipt-alphasms.json");
/// The hook token and message id the receipt event carries.
const RECEIPT_EVENT_TOKEN: &str = "hook-token-7f3a9c1e5b2d4086";
const RECEIPT_EVENT_ID: &str = "01JV7Q9A1B2C3D4E5F6G7H8J9K";
const KEY: &str = "hk_5e2d1c0b9a887766554433221100ffeeddccbbaa99887766554433221100ffee";
const ALPHA_API_KEY: &str = "alpha-e2e-api-key";
const ALPHA_HOOK_TOKEN: &str = "alpha-e2e-hook-token-0123456789";
const TURBO_TOKEN: &str = "turbo-e2e-token";

/// The moto endpoint, or `None` (skip) outside CI when it is not running.
fn endpoint(test: &str) -> Option<String> {
    match std::env::var("HOLUB_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "HOLUB_TEST_AWS_ENDPOINT is not set: scripts/test starts moto and sets it"
            );
            eprintln!("skipping {test}: HOLUB_TEST_AWS_ENDPOINT is not set");
            None
        }
    }
}

/// Waits (up to 10 s) until `function` has printed an embedded-metric line in the
/// deployment's namespace counting one `metric` for AlphaSMS and Kyivstar.
async fn wait_printed(function: &LambdaFunction, metric: &str) {
    let printed = |logs: &str| {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|d| {
                d["_aws"]["CloudWatchMetrics"][0]["Namespace"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("Holub/"))
                    && d["Provider"] == "alphasms"
                    && d["Operator"] == "kyivstar"
                    && d[metric] == 1
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = function.logs(500);
        if printed(&logs) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {metric} metric line in:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One deployment on moto for one test, and its functions.
struct Stack(Deployment);

impl Stack {
    async fn new(name: &str) -> Option<Stack> {
        let endpoint = endpoint(name)?;
        let deployment = Deployment::create(&endpoint, name, KEY)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Some(Stack(deployment))
    }

    async fn put_secret(&self, name: &str, value: Value) {
        self.0.put_secret(name, &value).await.unwrap();
    }

    /// An AlphaSMS simulator that delivers after 300 ms, its credentials stored, and the
    /// route table that sends through it and has its receipts pushed to the front returned
    /// (not serving yet).
    async fn alpha(&self) -> (String, UnservedFront, String) {
        let sim = start_sim(
            "alphasms",
            json!({"api_key": ALPHA_API_KEY}),
            Duration::from_millis(300),
        )
        .await;
        self.put_secret(
            "providers/alphasms",
            json!({"api_key": ALPHA_API_KEY, "hook_token": ALPHA_HOOK_TOKEN}),
        )
        .await;
        let receipts_front = HttpFront::bind().await.expect("a port");
        let routes = alpha_routes(&sim, receipts_front.url());
        (sim, receipts_front, routes)
    }

    /// Starts one function binary of this deployment and waits for its init.
    async fn function(&self, bin: &str, routes: &str) -> Arc<LambdaFunction> {
        self.function_with(bin, routes, &[]).await
    }

    /// The same, with settings of its own (`HOLUB_*` variables, as the template would set).
    async fn function_with(
        &self,
        bin: &str,
        routes: &str,
        settings: &[(&str, &str)],
    ) -> Arc<LambdaFunction> {
        let mut config = self.0.config(bin, routes);
        for (name, value) in settings {
            config = config.env(name, *value);
        }
        let function = LambdaFunction::start_ready(&function_bin(bin), config)
            .await
            .unwrap_or_else(|e| panic!("{bin} did not start: {e}"));
        Arc::new(function)
    }
}

/// A route table with one AlphaSMS provider that pushes its receipts to `receipts_url`.
fn alpha_routes(sim_url: &str, receipts_url: &str) -> String {
    format!(
        r#"[[provider]]
name = "alphasms"
kind = "alphasms"
credentials = "providers/alphasms"
settings = {{ base_url = "{sim_url}", hook_url = "{receipts_url}/v1/receipts/alphasms", timeout_ms = 5000 }}
"#
    )
}

/// A route table with one TurboSMS provider, whose receipts are polled.
fn turbo_routes(sim_url: &str) -> String {
    format!(
        r#"[[provider]]
name = "turbo"
kind = "turbosms"
credentials = "providers/turbo"
settings = {{ base_url = "{sim_url}", timeout_ms = 5000 }}
"#
    )
}

async fn start_sim(kind: &str, credentials: Value, receipt_delay: Duration) -> String {
    start_sim_with(kind, credentials, receipt_delay, Faults::default()).await
}

async fn start_sim_with(
    kind: &str,
    credentials: Value,
    receipt_delay: Duration,
    faults: Faults,
) -> String {
    let settings = SimSettings {
        credentials,
        receipt_delay,
        delivered_ratio: 1.0,
        faults,
        ..SimSettings::default()
    };
    let addr = providers::start(kind, settings)
        .await
        .expect("the simulator starts");
    format!("http://{addr}")
}

async fn sim_stats(sim_url: &str) -> Value {
    reqwest::get(format!("{sim_url}/__sim/stats"))
        .await
        .expect("stats answer")
        .json()
        .await
        .expect("stats JSON")
}

/// The tenant's HTTP client of an API front.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(front: &HttpFront) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: front.url.clone(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(path, body, None).await
    }

    /// A POST with an `Idempotency-Key`, or without.
    async fn post_with(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let resp = request.send().await.expect("the front answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("the front answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, body: Value) -> String {
        let (status, answer) = self.post("/v1/messages", &body).await;
        assert_eq!(status, 202, "{answer}");
        answer["id"].as_str().expect("a message id").to_owned()
    }

    async fn message(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/messages/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls a message until its status is one of `statuses`, or panics after `timeout`.
    async fn wait_status(&self, id: &str, statuses: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.message(id).await;
            let status = m["status"].as_str().unwrap_or_default();
            if statuses.contains(&status) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "message {id} still {status}, not {statuses:?}: {m}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

fn history(message: &Value) -> Vec<String> {
    message["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Feeds the queue to its function until `records` records were delivered and none failed.
async fn drain_queue(source: &SqsEventSource, records: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut delivered = 0;
    while delivered < records {
        assert!(
            Instant::now() < deadline,
            "only {delivered} of {records} records came from the queue"
        );
        let Some(delivery) = source
            .poll_once(Duration::from_secs(1))
            .await
            .expect("the queue answers")
        else {
            continue;
        };
        let response = delivery.result.expect("the function answers");
        assert!(delivery.failed.is_empty(), "failed records: {response}");
        assert_eq!(delivery.deleted, delivery.message_ids.len());
        delivered += delivery.message_ids.len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_goes_through_the_real_functions_to_delivered() {
    let Some(stack) = Stack::new("delivered").await else {
        return;
    };
    let (sim, receipts_front, routes) = stack.alpha().await;
    let (api, receipts, dispatch) = tokio::join!(
        stack.function("holub-api", &routes),
        stack.function("holub-receipts", &routes),
        stack.function("holub-dispatch", &routes),
    );
    let _receipts_front = receipts_front.serve(receipts.clone());
    let api_front = HttpFront::start(api).await.expect("a port");
    let client = Client::new(&api_front);

    let (status, health) = client.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    let id = client
        .send(json!({"to": "067 123 45 67", "from": "Holub", "text": "Ваш код: 4821"}))
        .await;
    assert_eq!(client.message(&id).await["status"], "queued");

    // An event the function cannot read is an invocation error, not a crash.
    match dispatch.invoke(&json!({"not": "an SQS event"})).await {
        Err(InvokeError::Function { .. }) => {}
        other => panic!("expected a function error, got {other:?}"),
    }
    let source = SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.dispatch, dispatch)
        .await
        .expect("the dispatch queue");
    drain_queue(&source, 1, Duration::from_secs(20)).await;

    // The simulator pushes the receipt to the receipts function's front.
    let message = client
        .wait_status(&id, &["delivered"], Duration::from_secs(20))
        .await;
    assert_eq!(message["provider"], "alphasms");
    assert_eq!(message["provider_message_id"], id.as_str());
    assert_eq!(
        history(&message),
        ["accepted", "queued", "sending", "sent", "delivered"],
        "{message}"
    );
    assert_eq!(sim_stats(&sim).await["accepted"], 1);

    // Each function printed its status changes as CloudWatch embedded metrics, in the
    // deployment's namespace (its log is read as it comes: wait for the line).
    wait_printed(source.function(), "Sent").await;
    wait_printed(&receipts, "Delivered").await;

    // The receipt fixture, for this message, straight to the function: a receipt that
    // arrives again changes nothing.
    let event: Value = serde_json::from_str(
        &RECEIPT_EVENT
            .replace(RECEIPT_EVENT_TOKEN, ALPHA_HOOK_TOKEN)
            .replace(RECEIPT_EVENT_ID, &id),
    )
    .expect("the event is JSON");
    let answer = receipts.invoke(&event).await.expect("the function answers");
    // Applied again (200), or recognised as the simulator's own request replayed (409).
    assert!(
        answer["statusCode"] == 200 || answer["statusCode"] == 409,
        "{answer}"
    );
    let again = client.message(&id).await;
    assert_eq!(again["history"], message["history"]);

    // The number and text are sealed under the tenant's data key: another instance (a cold
    // start) unwraps that key with KMS to read them back.
    let cold = stack.function("holub-api", &routes).await;
    let cold_front = HttpFront::start(cold).await.expect("a port");
    let read = Client::new(&cold_front).message(&id).await;
    assert_eq!(
        (&read["to"], &read["text"]),
        (&json!("+380671234567"), &json!("Ваш код: 4821")),
        "{read}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_dispatch_record_is_sent_once() {
    let Some(stack) = Stack::new("redelivered").await else {
        return;
    };
    // A slow provider: every answer takes a while, so the first attempt is still at work
    // when the record comes again.
    let slow = Faults {
        latency: Duration::from_millis(1500),
        ..Faults::default()
    };
    let sim = start_sim_with(
        "alphasms",
        json!({"api_key": ALPHA_API_KEY}),
        Duration::from_millis(300),
        slow,
    )
    .await;
    stack
        .put_secret(
            "providers/alphasms",
            json!({"api_key": ALPHA_API_KEY, "hook_token": ALPHA_HOOK_TOKEN}),
        )
        .await;
    let receipts_front = HttpFront::bind().await.expect("a port");
    let routes = alpha_routes(&sim, receipts_front.url());
    // Two execution environments of the dispatch function, as SQS hands a record to a
    // second one when its visibility runs out while the first is still at work.
    let (api, receipts, first, second) = tokio::join!(
        stack.function("holub-api", &routes),
        stack.function("holub-receipts", &routes),
        stack.function("holub-dispatch", &routes),
        stack.function("holub-dispatch", &routes),
    );
    let _receipts_front = receipts_front.serve(receipts);
    let api_front = HttpFront::start(api).await.expect("a port");
    let client = Client::new(&api_front);
    let id = client
        .send(json!({"to": "+380501234567", "from": "Holub", "text": "Once only"}))
        .await;

    let source = SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.dispatch, first.clone())
        .await
        .expect("the dispatch queue");
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = source
            .receive(Duration::from_secs(1))
            .await
            .expect("the queue answers");
        if !records.is_empty() {
            break records;
        }
        assert!(Instant::now() < deadline, "no dispatch job");
    };
    assert_eq!(records.len(), 1);
    let record_id = records[0].message_id().expect("a message id").to_owned();
    let event = source.event(&records);
    assert!(event["Records"][0]["body"].as_str().unwrap().contains(&id));
    assert_eq!(
        event["Records"][0]["attributes"]["ApproximateReceiveCount"],
        "1"
    );

    // The first environment claims the message and waits for the provider; meanwhile the
    // same record reaches the second, which must leave it alone and hand the job back.
    let first_attempt = tokio::spawn({
        let (first, event) = (first.clone(), event.clone());
        async move { first.invoke(&event).await }
    });
    client
        .wait_status(&id, &["sending"], Duration::from_secs(10))
        .await;
    let second_attempt = second.invoke(&event).await.expect("the second answers");
    assert_eq!(
        second_attempt["batchItemFailures"],
        json!([{"itemIdentifier": record_id}]),
        "a job whose message another worker is sending comes back later"
    );
    let first_attempt = first_attempt
        .await
        .expect("joined")
        .expect("the first answers");
    assert_eq!(first_attempt["batchItemFailures"], json!([]));
    let sent = client.message(&id).await;
    assert!(
        ["sent", "delivered"].contains(&sent["status"].as_str().unwrap_or_default()),
        "{sent}"
    );
    assert_eq!(sent["attempts"], 1, "{sent}");

    // And once more after it was sent.
    let again = second.invoke(&event).await.expect("answers");
    assert_eq!(
        again["batchItemFailures"],
        json!([]),
        "a job for a sent message is done"
    );
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["submissions"], 1, "{stats}");
    assert_eq!(stats["accepted"], 1, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    let message = client
        .wait_status(&id, &["delivered"], Duration::from_secs(20))
        .await;
    assert_eq!(
        history(&message),
        ["accepted", "queued", "sending", "sent", "delivered"],
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_run_releases_due_messages_and_polls_receipts() {
    let Some(stack) = Stack::new("scheduler").await else {
        return;
    };
    let receipt_delay = Duration::from_millis(500);
    let sim = start_sim("turbosms", json!({"token": TURBO_TOKEN}), receipt_delay).await;
    stack
        .put_secret("providers/turbo", json!({"token": TURBO_TOKEN}))
        .await;
    let routes = turbo_routes(&sim);
    let (api, dispatch, scheduler) = tokio::join!(
        stack.function("holub-api", &routes),
        stack.function("holub-dispatch", &routes),
        stack.function("holub-scheduler", &routes),
    );
    let api_front = HttpFront::start(api).await.expect("a port");
    let client = Client::new(&api_front);
    let source = SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.dispatch, dispatch)
        .await
        .expect("the dispatch queue");

    // One message now, sent at once; one scheduled a few seconds ahead.
    let now_id = client
        .send(json!({"to": "+380931234567", "from": "Holub", "text": "Now"}))
        .await;
    let send_at = Utc::now() + chrono::Duration::seconds(4);
    let later_id = client
        .send(json!({
            "to": "+380931234568", "from": "Holub", "text": "Later",
            "send_at": send_at.to_rfc3339(),
        }))
        .await;
    assert_eq!(client.message(&later_id).await["status"], "scheduled");
    drain_queue(&source, 1, Duration::from_secs(20)).await;
    assert_eq!(client.message(&now_id).await["status"], "sent");

    // Past the schedule, and past the first message's receipt delay.
    let due_in = (send_at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(due_in.max(receipt_delay) + Duration::from_millis(300)).await;
    let event: Value = serde_json::from_str(SCHEDULED_EVENT).expect("the event is JSON");
    let report = scheduler.invoke(&event).await.expect("the run answers");
    assert_eq!(report["handled"]["release"], 1, "{report}");
    assert_eq!(report["handled"]["poll"], 1, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    let now_message = client.message(&now_id).await;
    assert_eq!(now_message["status"], "delivered", "{now_message}");
    assert_eq!(
        history(&now_message),
        ["accepted", "queued", "sending", "sent", "delivered"]
    );
    assert_eq!(client.message(&later_id).await["status"], "queued");

    // The released message's job is in the dispatch queue; a later run polls its receipt.
    drain_queue(&source, 1, Duration::from_secs(20)).await;
    assert_eq!(client.message(&later_id).await["status"], "sent");
    tokio::time::sleep(receipt_delay + Duration::from_millis(300)).await;
    let report = scheduler.invoke(&event).await.expect("the run answers");
    assert_eq!(report["handled"]["release"], 0, "{report}");
    assert_eq!(report["handled"]["poll"], 1, "{report}");
    let later = client.message(&later_id).await;
    assert_eq!(later["status"], "delivered", "{later}");
    assert_eq!(
        history(&later),
        [
            "accepted",
            "scheduled",
            "queued",
            "sending",
            "sent",
            "delivered"
        ]
    );
    assert_eq!(sim_stats(&sim).await["accepted"], 2);
}

/// Feeds the queue to its function until it stays empty; returns how many records went.
async fn drain_until_empty(source: &SqsEventSource) -> usize {
    let mut delivered = 0;
    let mut empty = 0;
    while empty < 2 {
        match source
            .poll_once(Duration::from_secs(1))
            .await
            .expect("the queue answers")
        {
            None => empty += 1,
            Some(delivery) => {
                let response = delivery.result.expect("the function answers");
                assert!(delivery.failed.is_empty(), "failed records: {response}");
                delivered += delivery.message_ids.len();
                empty = 0;
            }
        }
    }
    delivered
}

/// One request at a customer's callback endpoint: whether it was taken, whether its
/// signature verified, and its body.
type Callback = (bool, bool, Value);

/// A customer's callback endpoint on loopback, reporting every request. It refuses its
/// first one (503), so one callback goes back to the queue with its backoff.
async fn callback_endpoint(
    secret: &'static str,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Callback>) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicBool, Ordering};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let refused_one = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!("http://{}/hook", listener.local_addr().expect("an address"));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (tx, refused_one) = (tx.clone(), refused_one.clone());
            async move {
                let taken = refused_one.swap(true, Ordering::SeqCst);
                let signature = headers
                    .get("holub-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let signed = holub_shared::services::callbacks::verify(
                    secret.as_bytes(),
                    signature,
                    &body,
                    Utc::now().timestamp(),
                );
                let body = serde_json::from_slice(&body).unwrap_or_default();
                let _ = tx.send((taken, signed, body));
                if taken {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// The paths the other tests leave out, so that every function's calls in this suite
/// cover what its role grants (`infra/check_iam.py`): batches with and without an
/// `Idempotency-Key`, a repeated key, a list, a cancel, status callbacks through the
/// callbacks function behind its queue, and the requeue sweep over a batch's marker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_keys_cancels_and_callbacks_run_as_deployed() {
    const WEBHOOK_SECRET: &str = "whsec_lambda_paths";
    let Some(stack) = Stack::new("paths").await else {
        return;
    };
    let (hook, mut callbacks_seen) = callback_endpoint(WEBHOOK_SECRET).await;
    stack
        .0
        .aws
        .secrets
        .put(
            &holub_shared::services::callbacks::signing_secret_name(&stack.0.tenant_id),
            &holub_shared::ports::Secret::new(WEBHOOK_SECRET),
        )
        .await
        .expect("the tenant's signing secret");
    let (sim, receipts_front, routes) = stack.alpha().await;
    // The customer's endpoint is on loopback here, which the deployment refuses unless told:
    // at intake (the API) and when the callback is sent (the callbacks function).
    let private = [("HOLUB_PRIVATE_CALLBACKS", "true")];
    let api_settings = [
        ("HOLUB_PRIVATE_CALLBACKS", "true"),
        ("HOLUB_SHORT_LINK_BASE", "https://s.holub.example"),
    ];
    let (api, receipts, dispatch, callbacks, scheduler) = tokio::join!(
        stack.function_with("holub-api", &routes, &api_settings),
        stack.function("holub-receipts", &routes),
        stack.function("holub-dispatch", &routes),
        stack.function_with("holub-callbacks", &routes, &private),
        stack.function_with("holub-scheduler", &routes, &[("HOLUB_REQUEUE_AFTER", "1")]),
    );
    let _receipts_front = receipts_front.serve(receipts);
    let api_front = HttpFront::start(api).await.expect("a port");
    let client = Client::new(&api_front);
    let dispatch_source =
        SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.dispatch, dispatch)
            .await
            .expect("the dispatch queue");
    let callback_source = SqsEventSource::new(
        stack.0.sqs.clone(),
        &stack.0.queues.callbacks,
        callbacks.clone(),
    )
    .await
    .expect("the callbacks queue");
    let status_changes =
        StreamEventSource::new(&stack.0.endpoint, &stack.0.dynamo.messages_table, callbacks)
            .await
            .expect("the messages table's stream");

    // One message with a key and a callback of its final statuses only, sent twice: one
    // message.
    // Its link is tracked.
    let otp = json!({"to": "+380671234501", "from": "Holub", "text": "Код: 1 https://shop.ua/o/1",
        "callback_url": hook, "track_links": true,
        "callback_statuses": ["delivered", "undelivered", "expired", "failed"]});
    let (status, first) = client.post_with("/v1/messages", &otp, Some("otp-1")).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = client.post_with("/v1/messages", &otp, Some("otp-1")).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]), "{again}");
    let otp_id = first["id"].as_str().expect("an id").to_owned();

    // Administration through the API function: a key made, used (its last use recorded),
    // listed and revoked; a sender asked for and removed; the audit log and limits read.
    let (status, made) = client
        .post(
            "/v1/keys",
            &json!({"name": "lambda", "scopes": ["messages:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let new_key = made["key"].as_str().expect("a key").to_owned();
    let used = client
        .http
        .get(format!("{}/v1/messages/{otp_id}", client.base))
        .bearer_auth(&new_key)
        .send()
        .await
        .expect("the front answers");
    assert_eq!(used.status().as_u16(), 200);
    let (status, keys) = client.get("/v1/keys").await;
    assert_eq!(status, 200, "{keys}");
    let revoke = format!("/v1/keys/{}/revoke", made["id"].as_str().expect("an id"));
    let (status, revoked) = client.post(&revoke, &json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    let (status, asked) = client
        .post("/v1/senders", &json!({"sender": "LambdaShop"}))
        .await;
    assert_eq!(status, 201, "{asked}");
    let removed = client
        .http
        .delete(format!("{}/v1/senders/LambdaShop", client.base))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("the front answers");
    assert_eq!(removed.status().as_u16(), 204);
    let (status, audit) = client.get("/v1/audit").await;
    assert_eq!(status, 200, "{audit}");
    let (status, limits) = client.get("/v1/limits").await;
    assert_eq!(status, 200, "{limits}");
    // The account's callback set and removed again (the batches below name none); the
    // signing secret rotated with a grace, so callbacks are signed by the secret the
    // endpoint checks too.
    for callback in [json!(hook), Value::Null] {
        let resp = client
            .http
            .put(format!("{}/v1/webhook", client.base))
            .bearer_auth(KEY)
            .json(&json!({"callback_url": callback}))
            .send()
            .await
            .expect("the front answers");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (status, rotated) = client
        .post("/v1/webhook/rotate-secret", &json!({"grace_seconds": 3600}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, webhook) = client.get("/v1/webhook").await;
    assert_eq!(status, 200, "{webhook}");
    assert_eq!(
        webhook["previous_secret_valid_until"], rotated["previous_secret_valid_until"],
        "{webhook}"
    );

    // Batches: one without a key (its messages put together), one with (a transaction).
    let recipients = |n: usize, base: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"to": format!("+3806712346{:02}", base + i)}))
            .collect()
    };
    let (status, plain) = client
        .post_with(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "Hi", "recipients": recipients(3, 0)}),
            None,
        )
        .await;
    assert_eq!(status, 202, "{plain}");
    let (status, keyed) = client
        .post_with(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "Hi", "recipients": recipients(2, 10)}),
            Some("batch-1"),
        )
        .await;
    assert_eq!(status, 202, "{keyed}");

    // Two scheduled messages with callbacks: one cancelled, one released by the scheduler.
    let soon = Utc::now() + chrono::Duration::seconds(2);
    let later = Utc::now() + chrono::Duration::hours(1);
    let scheduled = |at: chrono::DateTime<Utc>, to: &str| json!({"to": to, "from": "Holub", "text": "Later", "send_at": at.to_rfc3339(), "callback_url": hook});
    let soon_id = client.send(scheduled(soon, "+380671234590")).await;
    let cancel_id = client.send(scheduled(later, "+380671234591")).await;
    let (status, cancelled) = client
        .post(&format!("/v1/messages/{cancel_id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, &cancelled["status"]),
        (200, &json!("cancelled")),
        "{cancelled}"
    );

    let (status, page) = client.get("/v1/messages?limit=50").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(8), "{page}");

    // Past the schedule and the requeue age: the scheduler releases the one and sends the
    // queued ones' jobs again (the batches' through their markers).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let event: Value = serde_json::from_str(SCHEDULED_EVENT).expect("the event is JSON");
    let report = scheduler.invoke(&event).await.expect("the run answers");
    assert_eq!(report["handled"]["release"], 1, "{report}");
    assert!(report["handled"]["requeue"].as_u64() >= Some(5), "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");

    // Every job, the second copies included; each message is sent once all the same.
    assert!(drain_until_empty(&dispatch_source).await >= 12);
    let ids: Vec<String> = [&plain, &keyed]
        .iter()
        .flat_map(|b| b["results"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .chain([otp_id.clone(), soon_id.clone()])
        .collect();
    assert_eq!(ids.len(), 7, "{plain} {keyed}");
    for id in &ids {
        client
            .wait_status(id, &["delivered"], Duration::from_secs(30))
            .await;
    }
    assert_eq!(
        sim_stats(&sim).await["accepted"],
        7,
        "each message sent once"
    );

    // The API function serves the tracked link's short link: a redirect, the click counted.
    let otp = client.message(&otp_id).await;
    let code = otp["links"][0]["code"].as_str().expect("a tracked link");
    assert!(
        otp["text"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("https://s.holub.example/{code}"))),
        "{otp}"
    );
    let follower = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148")
        .build()
        .expect("a client");
    let resp = follower
        .get(format!("{}/{code}", api_front.url))
        .send()
        .await
        .expect("the front answers");
    assert_eq!(resp.status().as_u16(), 302);
    assert_eq!(resp.headers()["location"], "https://shop.ua/o/1");
    assert_eq!(client.message(&otp_id).await["clicks"], 1);

    // Nothing of the batches is queued any more: the next run deletes their markers.
    let report = scheduler.invoke(&event).await.expect("the run answers");
    assert_eq!(report["handled"]["requeue"], 0, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");

    // The callbacks function delivers each status change of the three messages with a
    // callback URL, signed; the one the endpoint refused comes back after its backoff.
    let expected = [
        (otp_id.as_str(), "delivered"),
        (otp_id.as_str(), "clicked"),
        (soon_id.as_str(), "queued"),
        (soon_id.as_str(), "delivered"),
        (cancel_id.as_str(), "cancelled"),
    ];
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut refused: Option<Vec<(String, String)>> = None;
    let mut retried = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let all_seen = |seen: &[(String, String)]| {
        expected.iter().all(|e| {
            seen.iter()
                .any(|(id, status)| (id.as_str(), status.as_str()) == *e)
        })
    };
    while !all_seen(&seen)
        || !refused
            .as_ref()
            .is_some_and(|r| r.iter().all(|e| seen.contains(e)))
    {
        assert!(Instant::now() < deadline, "callbacks seen: {seen:?}");
        // The stream's status changes to the callbacks queue, as the mapping relays them.
        let relayed = status_changes
            .poll_once()
            .await
            .expect("the stream answers");
        if let Some(result) = relayed.result {
            result.expect("the function relays the changes");
        }
        if let Some(delivery) = callback_source
            .poll_once(Duration::from_secs(1))
            .await
            .expect("the queue answers")
        {
            delivery.result.expect("the function answers");
            retried += delivery.failed.len();
        }
        while let Ok((taken, signed, body)) = callbacks_seen.try_recv() {
            assert!(signed, "{body}");
            let events: Vec<(String, String)> = body
                .as_array()
                .expect("an array of events")
                .iter()
                .map(|e| {
                    let what = if e["type"] == "message.clicked" {
                        "clicked"
                    } else {
                        e["status"].as_str().unwrap_or_default()
                    };
                    (
                        e["message_id"].as_str().unwrap_or_default().to_owned(),
                        what.to_owned(),
                    )
                })
                .collect();
            if taken {
                seen.extend(events);
            } else {
                refused = Some(events);
            }
        }
    }
    // The one-time password's URL asked for final statuses only (and is told of its click).
    assert!(
        seen.iter()
            .all(|(id, status)| id != &otp_id || status == "delivered" || status == "clicked"),
        "{seen:?}"
    );
    // The refused callback was put back, and came again until it was taken.
    // (Its jobs were put back: one record, or each of the records one POST gathered.)
    assert!(
        retried >= 1,
        "the endpoint refused one callback POST: {refused:?}"
    );

    // The rollup function folds the table's stream into the statistics, and the API
    // function reports them: the same counts as the message log, once however often it runs.
    let rollup = stack.function("holub-rollup", &routes).await;
    let statuses = |messages: &Value| {
        let mut counts = serde_json::Map::new();
        for m in messages["messages"].as_array().expect("messages") {
            let status = m["status"].as_str().unwrap_or_default().to_owned();
            let n = counts.get(&status).and_then(Value::as_i64).unwrap_or(0);
            counts.insert(status, json!(n + 1));
        }
        Value::Object(counts)
    };
    let from = (chrono::Utc::now() - chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (chrono::Utc::now() + chrono::Duration::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let summary_path = format!("/v1/analytics/summary?from={from}&to={to}&group_by=provider");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut folded = 0;
    loop {
        let (_, before) = client.get("/v1/messages?limit=100").await;
        let report = rollup.invoke(&event).await.expect("the run answers");
        assert_eq!(report["errors"], json!([]), "{report}");
        folded += report["handled"]["rollup"].as_u64().expect("a count");
        let (_, after) = client.get("/v1/messages?limit=100").await;
        let (status, summary) = client.get(&summary_path).await;
        assert_eq!(status, 200, "{summary}");
        if statuses(&before) == statuses(&after)
            && summary["totals"]["statuses"] == statuses(&after)
            && summary["totals"]["clicked"] == 1
        {
            assert_eq!(summary["totals"]["clicks"], 1, "{summary}");
            assert!(folded > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{summary} vs {}",
            statuses(&after)
        );
    }
    // Another run counts nothing twice.
    let (_, before) = client.get("/v1/messages?limit=100").await;
    let report = rollup.invoke(&event).await.expect("the run answers");
    assert_eq!(report["errors"], json!([]), "{report}");
    let (_, summary) = client.get(&summary_path).await;
    let (_, after) = client.get("/v1/messages?limit=100").await;
    if statuses(&before) == statuses(&after) {
        assert_eq!(summary["totals"]["statuses"], statuses(&after), "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_without_its_configuration_fails_its_init() {
    // No HOLUB_* variables: `main` fails fast, before the runtime's first poll, as Lambda
    // would report a Runtime.ExitError of the init phase.
    let config = FunctionConfig::new("holub-dispatch-unconfigured");
    let function = LambdaFunction::start(&function_bin("holub-dispatch"), config)
        .await
        .expect("the process starts");
    match function.ready().await {
        Err(InvokeError::Init(why)) => {
            assert!(why.contains("exit status"), "{why}");
            assert!(why.contains("HOLUB_MESSAGES_TABLE"), "{why}");
        }
        other => panic!("expected an init failure, got {other:?}"),
    }
    assert!(function.init_duration().is_none());
    match function.invoke(&json!({"Records": []})).await {
        Err(InvokeError::Init(_)) => {}
        other => panic!("expected an init failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consent_and_opt_out_run_as_deployed() {
    use holub_shared::domain::{AuditAction, Origin, SendingWindow, TenantLimits};
    use holub_shared::ports::TenantStore;
    let Some(stack) = Stack::new("consent").await else {
        return;
    };
    // Marketing at any hour this test may run.
    let limits = TenantLimits {
        marketing_window: SendingWindow::ALWAYS,
        ..TenantLimits::default()
    };
    let audit = Origin::operator().entry(
        &stack.0.tenant_id,
        Utc::now(),
        AuditAction::SettingsUpdate,
        "limits",
        None,
        None,
    );
    stack
        .0
        .aws
        .store
        .put_limits(&stack.0.tenant_id, &limits, &audit)
        .await
        .expect("the tenant's limits");
    let (_sim, receipts_front, routes) = stack.alpha().await;
    let api_settings = [("HOLUB_SHORT_LINK_BASE", "https://s.holub.example")];
    let (api, receipts, dispatch) = tokio::join!(
        stack.function_with("holub-api", &routes, &api_settings),
        stack.function("holub-receipts", &routes),
        stack.function("holub-dispatch", &routes),
    );
    let _receipts_front = receipts_front.serve(receipts);
    let api_front = HttpFront::start(api).await.expect("a port");
    let client = Client::new(&api_front);
    let source = SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.dispatch, dispatch)
        .await
        .expect("the dispatch queue");

    let marketing = json!({"to": "+380671234570", "from": "Holub", "category": "marketing",
        "text": "Знижка 20%"});
    let (status, refused) = client.post("/v1/messages", &marketing).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "consent_missing");
    let (status, ledger) = client
        .post(
            "/v1/consents",
            &json!({"phone": "0671234570", "state": "given", "source": "paper",
                "evidence": "Анкета №17"}),
        )
        .await;
    assert_eq!(status, 201, "{ledger}");
    assert_eq!(ledger["state"], "given");

    // The address book, as deployed: a contact and its merge (the number guard's
    // transaction), a list's page (the index), the lists.
    let contact = json!({"phone": "0671234570", "name": "Олена", "lists": ["VIP"]});
    let (status, created) = client.post("/v1/contacts", &contact).await;
    assert_eq!(status, 201, "{created}");
    let merge = json!({"phone": "+380671234570", "attributes": {"city": "Київ"},
        "lists": ["Клієнти"]});
    let (status, merged) = client.post("/v1/contacts", &merge).await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["id"], created["id"]);
    assert_eq!(merged["lists"], json!(["VIP", "Клієнти"]));
    let (status, page) = client.get("/v1/contacts?list=VIP").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["contacts"][0]["id"], created["id"]);
    let (status, lists) = client.get("/v1/lists").await;
    assert_eq!(status, 200, "{lists}");
    assert_eq!(lists["lists"], json!(["VIP", "Клієнти"]));

    // Accepted (consent read by the API), checked again and sent by dispatch.
    let id = client.send(marketing.clone()).await;
    drain_queue(&source, 1, Duration::from_secs(20)).await;
    let sent = client
        .wait_status(&id, &["delivered"], Duration::from_secs(20))
        .await;
    let code = sent["opt_out"]
        .as_str()
        .expect("an opt-out code")
        .to_owned();
    assert!(
        sent["text"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("Відписатися: https://s.holub.example/{code}"))),
        "{sent}"
    );

    // The opt-out link, served by the API function: a page, then the tap.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{}/{code}", api_front.url))
        .send()
        .await
        .expect("the front answers");
    assert_eq!(page.status().as_u16(), 200);
    let tap = http
        .post(format!("{}/{code}", api_front.url))
        .send()
        .await
        .expect("the front answers");
    assert_eq!(tap.status().as_u16(), 200);
    let (status, ledger) = client.get("/v1/consents/0671234570").await;
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(ledger["state"], "withdrawn");
    assert_eq!(ledger["entries"].as_array().map(Vec::len), Some(2));
    let (status, refused) = client.post("/v1/messages", &marketing).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "consent_withdrawn");
}

/// A marketing campaign as deployed: made and started through the API function, expanded
/// chunk by chunk by the campaigns function behind its queue (a burst of two makes chunks
/// of two contacts, the last with one message; a chunk right after another meets the rate
/// limit and comes back after its backoff), its messages sent by dispatch, an opt-out
/// through one counted; another campaign started, paused, resumed and cancelled, whose jobs
/// then do nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_campaign_runs_as_deployed() {
    use holub_shared::domain::Origin;
    use holub_shared::ports::SystemClock;
    let Some(stack) = Stack::new("campaign").await else {
        return;
    };
    // Marketing at any hour this test may run; chunks of two contacts (the burst), and a
    // rate of one message a second, so the second chunk, right after the first, waits.
    let limits = [
        ("marketing_window", "00:00-24:00"),
        ("burst", "2"),
        ("rate_per_second", "1"),
    ]
    .map(|(n, v)| (n.to_owned(), v.to_owned()));
    holub_shared::services::Limits::new(
        Arc::new(stack.0.aws.store.clone()),
        Arc::new(stack.0.aws.store.clone()),
        Arc::new(SystemClock),
        Default::default(),
    )
    .set(&stack.0.tenant_id, &limits, &Origin::operator())
    .await
    .expect("the tenant's limits");
    let (_sim, receipts_front, routes) = stack.alpha().await;
    // The API makes opt-out links' codes with its messages; so do campaigns' chunks.
    let short_links = [("HOLUB_SHORT_LINK_BASE", "https://s.holub.example")];
    let (api, receipts, dispatch, campaigns) = tokio::join!(
        stack.function_with("holub-api", &routes, &short_links),
        stack.function("holub-receipts", &routes),
        stack.function("holub-dispatch", &routes),
        stack.function_with("holub-campaigns", &routes, &short_links),
    );
    let _receipts_front = receipts_front.serve(receipts);
    let api_front = HttpFront::start(api).await.expect("a port");
    let client = Client::new(&api_front);
    let dispatch_source =
        SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.dispatch, dispatch)
            .await
            .expect("the dispatch queue");
    let mut campaign_source =
        SqsEventSource::new(stack.0.sqs.clone(), &stack.0.queues.campaigns, campaigns)
            .await
            .expect("the campaigns queue");
    // As the template's event source mapping: one chunk per invocation.
    campaign_source.batch_size = 1;

    let (status, template) = client
        .post(
            "/v1/templates",
            &json!({"name": "Весна", "category": "marketing",
                "text": "{{name}}, весняна знижка 20% до неділі!"}),
        )
        .await;
    assert_eq!(status, 201, "{template}");
    let template_id = template["id"].as_str().expect("a template id");
    // Six contacts on the list; the last gave no consent.
    let contacts = ["Олена", "Тарас", "Ірина", "Богдан", "Марта", "Назар"];
    for (i, name) in contacts.iter().enumerate() {
        let phone = format!("+38067123480{i}");
        let (status, contact) = client
            .post(
                "/v1/contacts",
                &json!({"phone": phone, "name": name, "lists": ["Весна"]}),
            )
            .await;
        assert_eq!(status, 201, "{contact}");
        if i < contacts.len() - 1 {
            let (status, ledger) = client
                .post(
                    "/v1/consents",
                    &json!({"phone": phone, "state": "given", "source": "web_form",
                        "evidence": format!("Форма №{i}")}),
                )
                .await;
            assert_eq!(status, 201, "{ledger}");
        }
    }

    // Made with its estimate (the list's contacts counted), started; a second start is
    // refused.
    let body = json!({"name": "Весняний розпродаж", "template_id": template_id,
        "lists": ["Весна"], "from": "Holub"});
    let (status, made) = client.post("/v1/campaigns", &body).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["state"], "draft", "{made}");
    assert_eq!(made["estimate"]["recipients"], 6, "{made}");
    let id = made["id"].as_str().expect("a campaign id").to_owned();
    let (status, started) = client
        .post(&format!("/v1/campaigns/{id}/start"), &json!({}))
        .await;
    assert_eq!(
        (status, &started["state"]),
        (200, &json!("running")),
        "{started}"
    );
    let (status, again) = client
        .post(&format!("/v1/campaigns/{id}/start"), &json!({}))
        .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"]["code"], "campaign_state_conflict");

    // Another campaign to the same list: started, paused, resumed and cancelled before any
    // of its jobs ran.
    let (status, other) = client
        .post(
            "/v1/campaigns",
            &json!({"name": "Скасована", "template_id": template_id, "lists": ["Весна"],
                "from": "Holub"}),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["id"].as_str().expect("a campaign id").to_owned();
    for (action, state) in [
        ("start", "running"),
        ("pause", "paused"),
        ("resume", "running"),
        ("cancel", "cancelled"),
    ] {
        let (status, changed) = client
            .post(&format!("/v1/campaigns/{other_id}/{action}"), &json!({}))
            .await;
        assert_eq!(
            (status, &changed["state"]),
            (200, &json!(state)),
            "{changed}"
        );
    }
    let (status, page) = client.get("/v1/campaigns").await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["campaigns"]
        .as_array()
        .expect("campaigns")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        listed,
        [other_id.as_str(), id.as_str()],
        "newest first: {page}"
    );

    // The campaigns function takes in chunk after chunk, each queueing the next; a chunk
    // the rate limit refuses is queued again as a job of its own, delayed until it may go
    // (a retry would count against the queue's receives).
    let campaign_path = format!("/v1/campaigns/{id}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut jobs, mut failed) = (0, 0);
    loop {
        if let Some(delivery) = campaign_source
            .poll_once(Duration::from_secs(1))
            .await
            .expect("the queue answers")
        {
            delivery.result.expect("the function answers");
            jobs += 1;
            failed += delivery.failed.len();
        }
        let (status, campaign) = client.get(&campaign_path).await;
        assert_eq!(status, 200, "{campaign}");
        if campaign["state"] == "completed" {
            break;
        }
        assert_eq!(campaign["state"], "running", "{campaign}");
        assert!(Instant::now() < deadline, "{campaign}");
    }
    // The second chunk's job comes right after the first chunk's two messages took the
    // whole burst: at one message a second, it is queued again until two more may go. So
    // more jobs than the three chunks ran, and none failed.
    assert_eq!(failed, 0);
    assert!(jobs >= 4, "no chunk met the rate limit: {jobs} jobs");
    // The cancelled campaign's jobs (start and resume) find it cancelled and do nothing.
    drain_until_empty(&campaign_source).await;

    let (_, campaign) = client.get(&campaign_path).await;
    assert_eq!(campaign["progress"]["expanded"], 5, "{campaign}");
    assert_eq!(
        campaign["progress"]["skipped"],
        json!({"consent_missing": 1}),
        "{campaign}"
    );
    assert_eq!(campaign["progress"]["skipped_no_consent"], 1, "{campaign}");
    assert!(campaign["finished_at"].is_string(), "{campaign}");
    let (_, cancelled) = client.get(&format!("/v1/campaigns/{other_id}")).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["progress"]["expanded"], 0, "{cancelled}");

    // Its messages carry its batch id, each its contact's name and the opt-out link.
    let batch = campaign["batch_id"].as_str().expect("a batch id");
    let messages_path = format!("/v1/messages?batch_id={batch}&limit=50");
    let (status, page) = client.get(&messages_path).await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().expect("messages").clone();
    assert_eq!(messages.len(), 5, "{page}");
    let mut names: Vec<String> = Vec::new();
    for m in &messages {
        let text = m["text"].as_str().unwrap_or_default();
        let name = text.split(',').next().unwrap_or_default().to_owned();
        assert!(
            text.starts_with(&format!("{name}, весняна знижка 20% до неділі!"))
                && text.contains("Відписатися: https://s.holub.example/"),
            "{m}"
        );
        names.push(name);
    }
    names.sort();
    let mut expected: Vec<&str> = contacts[..5].to_vec();
    expected.sort();
    assert_eq!(names, expected);

    // Dispatch sends them; the provider's receipts make them delivered.
    assert_eq!(drain_until_empty(&dispatch_source).await, 5);
    for m in &messages {
        let id = m["id"].as_str().expect("a message id");
        client
            .wait_status(id, &["delivered"], Duration::from_secs(30))
            .await;
    }

    // The rollup folds their statuses into the statistics, which the campaign's progress
    // reads by its batch id.
    let rollup = stack.function("holub-rollup", &routes).await;
    let event: Value = serde_json::from_str(SCHEDULED_EVENT).expect("the event is JSON");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = rollup.invoke(&event).await.expect("the run answers");
        assert_eq!(report["errors"], json!([]), "{report}");
        let (_, campaign) = client.get(&campaign_path).await;
        if campaign["progress"]["statuses"] == json!({"delivered": 5}) {
            assert_eq!(campaign["progress"]["delivery_rate"], 1.0, "{campaign}");
            break;
        }
        assert!(Instant::now() < deadline, "{campaign}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A subscriber opts out through a campaign message's link: counted in its progress.
    let code = messages[0]["opt_out"].as_str().expect("an opt-out code");
    let tap = reqwest::Client::new()
        .post(format!("{}/{code}", api_front.url))
        .send()
        .await
        .expect("the front answers");
    assert_eq!(tap.status().as_u16(), 200);
    let (_, campaign) = client.get(&campaign_path).await;
    assert_eq!(campaign["progress"]["opted_out"], 1, "{campaign}");
}

/// The cookies a response sets, as `name=value` pairs (attributes left out).
fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect()
}

/// The value of a form's hidden `csrf` field in a page.
fn csrf_field(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_console_signs_in_and_sends_through_the_api_function() {
    use holub_shared::domain::{Email, Role};
    use holub_shared::ports::SystemClock;
    use holub_shared::services::Users;

    let Some(stack) = Stack::new("console").await else {
        return;
    };
    // The first owner, as `holub user create --aws` makes one.
    let users = Users::new(
        Arc::new(stack.0.aws.store.clone()),
        Arc::new(stack.0.aws.store.clone()),
        Arc::new(SystemClock),
    );
    let email = "owner@console.example";
    let password = "a-console-password";
    users
        .create(
            &stack.0.tenant_id,
            Email::parse(email).unwrap(),
            Role::Owner,
            password,
            &holub_shared::domain::Origin::operator(),
        )
        .await
        .unwrap();
    let (_sim, _receipts_front, routes) = stack.alpha().await;
    let api = stack.function("holub-api", &routes).await;
    let front = HttpFront::start(api).await.expect("a port");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", front.url);

    // Without a session, a page is a redirect to sign-in.
    let answer = http.get(url("/console/compose")).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    assert_eq!(answer.headers()["location"], "/console/sign-in");

    // Sign in as a browser does: the form's cookie and token, then the session cookie.
    let form = http.get(url("/console/sign-in")).send().await.unwrap();
    let pre = set_cookies(&form).join("; ");
    let token = csrf_field(&form.text().await.unwrap());
    let signed = http
        .post(url("/console/sign-in"))
        .header("cookie", &pre)
        .form(&[
            ("csrf", token.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303, "{:?}", signed.text().await);
    let session = set_cookies(&signed)
        .into_iter()
        .find(|c| c.starts_with("holub_session=") && c.len() > "holub_session=".len())
        .expect("a session cookie through API Gateway's cookies");

    // Compose, and send what a confirmation would post.
    let page = http
        .get(url("/console/compose"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = csrf_field(&page.text().await.unwrap());
    let recipients = json!([{"to": "+380671234567"}, {"to": "+380501234567"}]).to_string();
    let sent = http
        .post(url("/console/compose/send"))
        .header("cookie", &session)
        .form(&[
            ("csrf", csrf.as_str()),
            ("nonce", "lambda-console-1"),
            ("from", "Holub"),
            ("text", "Вітаємо з консолі"),
            ("recipients", recipients.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303, "{:?}", sent.text().await);
    let list = sent.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        list.starts_with("/console/messages?batch_id=bat_"),
        "{list}"
    );
    let rows = http
        .get(url(&list))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(rows.matches("<tr data-id=").count(), 2, "{rows}");

    // Without the token, the same post is refused; after sign-out the session is gone.
    let refused = http
        .post(url("/console/compose/send"))
        .header("cookie", &session)
        .form(&[("nonce", "lambda-console-2"), ("recipients", "[]")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let out = http
        .post(url("/console/sign-out"))
        .header("cookie", &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = http
        .get(url("/console/compose"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 303);
}
