//! Crash safety: `holub serve` is killed (SIGKILL) in the middle of a few thousand messages
//! and started again over the same data. Every accepted message must reach a terminal
//! state, and the simulator must have been asked to send each of them exactly once: a
//! simulator that is a process of its own (it outlives the crash), and the built-in one,
//! which dies with Holub and must come back remembering what it took.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holub_tests::{
    Api, Holub, QUICK_RECOVERY, Simulator, TERMINAL, TempDir, create_tenant, free_port,
};
use serde_json::json;
use tokio::task::JoinHandle;

const MESSAGES: usize = 3000;
const PER_BATCH: usize = 100;

async fn stats_at(base_url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{base_url}/api/v1/stats"))
        .bearer_auth(token)
        .send()
        .await
        .expect("simulator answers")
        .json()
        .await
        .expect("stats JSON")
}

async fn simulator_stats(sim: &Simulator, token: &str) -> serde_json::Value {
    stats_at(&sim.base_url, token).await
}

/// The built-in simulator of a running `holub serve`.
fn built_in_simulator(holub: &Holub) -> String {
    let addr = holub.info["simulators"]["simulator"]
        .as_str()
        .expect("holub serve names its built-in simulator");
    format!("http://{addr}")
}

/// Sends [`MESSAGES`] in batches from several tasks, with status callbacks to
/// `callback_url` if given; each task returns the ids accepted.
fn send_batches(api: &Api, callback_url: Option<&str>) -> Vec<JoinHandle<Vec<String>>> {
    (0..MESSAGES / PER_BATCH)
        .map(|b| {
            let api = api.clone();
            let callback_url = callback_url.map(str::to_owned);
            tokio::spawn(async move {
                let recipients: Vec<_> = (0..PER_BATCH)
                    .map(|i| json!({"to": format!("067{:07}", b * PER_BATCH + i)}))
                    .collect();
                let mut body =
                    json!({"from": "Holub", "text": "crash test", "recipients": recipients});
                if let Some(url) = callback_url {
                    body["callback_url"] = json!(url);
                }
                let resp = api
                    .http
                    .post(format!("{}/v1/messages/batch", api.base_url))
                    .bearer_auth(&api.key)
                    .json(&body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        v["results"]
                            .as_array()
                            .map(|rs| {
                                rs.iter()
                                    .filter_map(|r| r["id"].as_str().map(str::to_owned))
                                    .collect::<Vec<_>>()
                            })
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                }
            })
        })
        .collect()
}

/// Waits until the simulator at `base_url` has accepted `count` messages.
async fn wait_accepted(base_url: &str, token: &str, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = stats_at(base_url, token).await;
        if stats["accepted"].as_u64().unwrap_or(0) >= count {
            return;
        }
        assert!(Instant::now() < deadline, "dispatch never started: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects what the senders had accepted, waits (up to `within`) until every message Holub
/// holds is terminal, and checks that none accepted was lost and all were delivered.
async fn every_message_ends_delivered(
    api: &Api,
    senders: Vec<JoinHandle<Vec<String>>>,
    within: Duration,
) -> Vec<serde_json::Value> {
    let mut accepted = HashSet::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    assert!(accepted.len() >= 300, "only {} accepted", accepted.len());
    let deadline = Instant::now() + within;
    let messages = loop {
        let messages = api.all_messages().await;
        let open: Vec<&str> = messages
            .iter()
            .map(|m| m["status"].as_str().unwrap_or_default())
            .filter(|status| !TERMINAL.contains(status))
            .collect();
        if open.is_empty() {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} messages never finished (e.g. {})",
            open.len(),
            messages.len(),
            open[0]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let held: HashSet<String> = messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(accepted.is_subset(&held), "an accepted message was lost");
    let delivered = messages
        .iter()
        .filter(|m| m["status"] == "delivered")
        .count();
    assert_eq!(delivered, messages.len(), "every message was delivered");
    messages
}

/// The simulator took each message Holub holds once, and was never asked for one twice.
fn sent_exactly_once(stats: &serde_json::Value, messages: &[serde_json::Value]) {
    eprintln!("simulator: {stats}");
    assert_eq!(
        stats["duplicates"], 0,
        "a message was submitted twice: {stats}"
    );
    assert_eq!(
        stats["accepted"].as_u64().unwrap() as usize,
        messages.len(),
        "the simulator took exactly the messages Holub holds: {stats}"
    );
}

/// Simulator flags: receipts after `receipt_delay_ms`, every message delivered, slow sends
/// (so the kill lands while messages are being dispatched), and a tenth of the send requests
/// losing their answer (the messages are taken, the answer is a 503): those must be found by
/// lookup, not sent again.
fn slow_and_lossy(receipt_delay_ms: &str) -> [&str; 8] {
    [
        "--sim-receipt-delay-ms",
        receipt_delay_ms,
        "--sim-delivered-ratio",
        "1.0",
        "--sim-latency-ms",
        "30",
        "--sim-lost-answer-ratio",
        "0.1",
    ]
}

/// A customer's callback endpoint on loopback: the `event_id`s of every event it was sent
/// (it outlives the crash).
async fn callback_receiver() -> (String, Arc<Mutex<HashSet<String>>>) {
    use axum::body::Bytes;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let events: Vec<serde_json::Value> =
                    serde_json::from_slice(&body).unwrap_or_default();
                let mut kept = kept.lock().unwrap();
                for e in events {
                    kept.insert(e["event_id"].as_str().unwrap_or_default().to_owned());
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holub_loses_nothing_and_sends_nothing_twice() {
    let dir = TempDir::new("crash");
    let keys = create_tenant(dir.path(), "Crash");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (api_token, receipt_token) = ("sim-api-token", "sim-receipt-token");
    let sim = Simulator::start(
        &format!("http://{listen}/v1/receipts/simulator"),
        api_token,
        receipt_token,
        &slow_and_lossy("200"),
    );
    let mut args: Vec<&str> = sim.serve_args.iter().map(String::as_str).collect();
    args.extend(QUICK_RECOVERY);
    let holub = Holub::start_on(dir.path(), &listen, &args);
    let api = Api::new(&holub, &keys.api_key);

    // Send in batches from several tasks, each message with a status callback; kill Holub
    // while they and dispatch are running.
    let (hook, events) = callback_receiver().await;
    let senders = send_batches(&api, Some(&hook));
    wait_accepted(&sim.base_url, api_token, 300).await;
    let holub = holub.restart_after_kill();

    // Every message Holub holds, accepted before the crash or not, reaches a terminal state.
    let api = Api::new(&holub, &keys.api_key);
    let messages = every_message_ends_delivered(&api, senders, Duration::from_secs(180)).await;
    sent_exactly_once(&simulator_stats(&sim, api_token).await, &messages);

    // And the callback of each one's delivery came, whenever the kill fell: the job is
    // written with the change.
    let wanted: Vec<String> = messages
        .iter()
        .map(|m| format!("{}.delivered", m["id"].as_str().unwrap()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let seen = events.lock().unwrap();
            wanted.iter().filter(|w| !seen.contains(*w)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} delivered callbacks never came",
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_simulator_remembers_and_every_message_ends_within_a_minute() {
    let dir = TempDir::new("crash-built-in");
    let keys = create_tenant(dir.path(), "Crash");
    let listen = format!("127.0.0.1:{}", free_port());
    // Receipts come 2 s after a send, so many messages are `sent` when Holub dies and their
    // receipts fall due while it is down (the simulator dies with it here).
    let mut args = slow_and_lossy("2000").to_vec();
    args.extend(QUICK_RECOVERY);
    let holub = Holub::start_on(dir.path(), &listen, &args);
    let api = Api::new(&holub, &keys.api_key);
    let senders = send_batches(&api, None);
    // The simulator's stats need no token. Holub stays down longer than the receipt delay,
    // so every receipt due then is lost with the simulator's memory of what it still had to
    // push: those messages are settled only by asking.
    wait_accepted(&built_in_simulator(&holub), "", 300).await;
    let holub = holub.restart_after_kill_and_pause(Duration::from_secs(3));

    // Within a minute of the restart: what the simulator took before the crash is asked
    // about (receipts lost), found by lookup (answers lost), or pushed when due.
    let api = Api::new(&holub, &keys.api_key);
    let messages = every_message_ends_delivered(&api, senders, Duration::from_secs(60)).await;
    let stats = stats_at(&built_in_simulator(&holub), "").await;
    sent_exactly_once(&stats, &messages);
}
