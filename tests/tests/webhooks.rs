//! Webhooks in both directions, through `holub serve`: status callbacks where Holub serves
//! others reach only public addresses, checked when they are sent and not only when the URL
//! was taken; the receipt endpoints throttle a flood and recover.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::{Value, json};

const FAST: &[&str] = &["--sim-receipt-delay-ms", "100", "--poll-every", "1"];

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// A loopback port that counts the connections made to it (a customer's endpoint, or what
/// an attacker wants reached); it speaks no TLS, and need not: a connection is the harm.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, seen)
}

fn message(callback_url: &str) -> Value {
    json!({
        "to": "0671234567",
        "from": "Holub",
        "text": "Ваш код: 4821",
        "callback_url": callback_url,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_public_mode_callbacks_never_reach_a_local_address() {
    let dir = TempDir::new("webhooks-public");
    let keys = create_tenant(dir.path(), "Webhooks");
    let (control_port, control) = counting_listener().await;
    let (guarded_port, guarded) = counting_listener().await;

    // On one's own machine a callback to a local service is normal: it is called.
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);
    api.accepted(&message(&format!("https://localhost:{control_port}/hook")))
        .await;
    // Taken while local callbacks were allowed, sent after they no longer are: a message
    // scheduled a few seconds ahead, whose callbacks start only when it is released.
    let mut scheduled = message(&format!("https://localhost:{guarded_port}/hook?to=x"));
    scheduled["send_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339());
    let scheduled_id = api.accepted(&scheduled).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while control.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the local callback was never made"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(holub);

    // The same data, served to others.
    let mut args = vec!["--public-callbacks-only"];
    args.extend_from_slice(FAST);
    let holub = Holub::start(dir.path(), &args);
    let api = Api::new(&holub, &keys.api_key);

    // Intake refuses what it can tell: a name that resolves to loopback, a literal private
    // address, a mapped one, and plain http.
    for url in [
        format!("https://localhost:{guarded_port}/hook"),
        format!("https://127.0.0.1:{guarded_port}/hook"),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "http://hooks.example.com/holub".to_owned(),
    ] {
        let refused = api.post("/v1/messages", &message(&url)).await;
        assert_eq!(refused.status, 422, "{url}: {:?}", refused.body);
        assert_eq!(code(&refused.body), "callback_url_invalid", "{url}");
        assert_eq!(refused.body["error"]["field"], "callback_url");
    }

    // The message taken before is sent, and its callbacks are checked when they are sent:
    // none reaches the local address.
    let done = api
        .wait_terminal(&scheduled_id, Duration::from_secs(30))
        .await;
    // Whatever the simulator made of it (delivered, mostly), every step was a status change
    // with a callback to send.
    assert!(done["status"] != "cancelled", "{done}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        guarded.load(Ordering::SeqCst),
        0,
        "a callback connected to a local address in public mode"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_endpoints_throttle_a_flood_and_recover() {
    let dir = TempDir::new("webhooks-throttle");
    let holub = Holub::start(dir.path(), &["--receipt-rate", "1", "--receipt-burst", "3"]);
    let http = reqwest::Client::new();
    let url = holub.url("/v1/receipts/no-such-provider");
    let post = || http.post(&url).body("{}").send();

    // Within the burst, each request is answered on its own merits.
    for _ in 0..3 {
        let answer = post().await.unwrap();
        assert_eq!(answer.status(), 404);
    }
    // Past it: 429, a stable code, and when to come back.
    let throttled = post().await.unwrap();
    assert_eq!(throttled.status(), 429);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(code(&body), "rate_limited");

    // After waiting as told, the source is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(post().await.unwrap().status(), 404);
    // The API beside it is not throttled by the receipts' buckets.
    let health = http.get(holub.url("/v1/messages")).send().await.unwrap();
    assert_ne!(health.status(), 429);
}
