//! No phone number or message text in any log line, at any level: `holub serve` runs a
//! workload of every kind (single, batch with placeholders, a refused number, a cancel, an
//! estimate, receipts, status callbacks) with its own crates logging at `trace`, and the log
//! is searched for the numbers and texts it was given.

use std::time::Duration;

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::json;

/// Holub's crates at their most verbose; libraries at `info`, as an operator runs them.
const LEVEL: &str = "info,holub=trace,holub_shared=trace,holub_simulator=trace,holub_api=trace,holub_receipts=trace,holub_dispatch=trace";

/// What must never show: the numbers' national digits, and words of the texts.
const SECRETS: &[&str] = &[
    "671234567",
    "501112233",
    "934445566",
    "671112299",
    "Секретний",
    "4821",
    "Олен",
    "Таємниця",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_number_or_text_reaches_the_log() {
    let dir = TempDir::new("private-logs");
    let keys = create_tenant(dir.path(), "Private");
    let log = dir.path().join("holub.log");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let holub = Holub::start_logging_at(
        dir.path(),
        &log,
        LEVEL,
        &[
            "--sync",
            "normal",
            "--sim-receipt-delay-ms",
            "100",
            "--sim-delivered-ratio",
            "0.5",
        ],
    );
    let api = Api::new(&holub, &keys.api_key);

    let single = api
        .accepted(
            &json!({"to": "0671234567", "from": "Holub", "text": "Секретний код 4821",
                          "callback_url": hook}),
        )
        .await;
    let batch = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "{{name}}, Таємниця 4821", "callback_url": hook,
            "recipients": [
                {"to": "+380501112233", "variables": {"name": "Олена"}},
                {"to": "(093) 444-55-66", "variables": {"name": "Олег"}},
                {"to": "067111229", "variables": {"name": "Олеся"}},
                {"to": "067 111 22 99"}
            ]}),
        )
        .await;
    assert_eq!(batch.status, 202, "{:?}", batch.body);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let later = api
        .accepted(
            &json!({"to": "0671112299", "from": "Holub", "text": "Таємниця",
                          "send_at": tomorrow}),
        )
        .await;
    let _ = api
        .post(&format!("/v1/messages/{later}/cancel"), &json!({}))
        .await;
    let _ = api
        .post("/v1/estimate", &json!({"text": "Секретний код 4821"}))
        .await;
    let _ = api.get("/v1/messages?to=0671234567").await;
    let _ = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "\u{0}Таємниця"}),
        )
        .await;
    api.wait_terminal(&single, Duration::from_secs(20)).await;
    for result in batch.body["results"].as_array().unwrap() {
        if let Some(id) = result["id"].as_str() {
            api.wait_terminal(id, Duration::from_secs(20)).await;
        }
    }
    // Callbacks go out after the status changes; give them a moment to be logged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(holub);

    let text = std::fs::read_to_string(&log).expect("the log is written");
    // The log was written, at the verbose level asked for.
    assert!(
        text.contains("TRACE") && text.contains("holub is serving"),
        "{text}"
    );
    for line in text.lines() {
        for secret in SECRETS {
            assert!(!line.contains(secret), "{secret:?} in the log: {line}");
        }
    }
}
