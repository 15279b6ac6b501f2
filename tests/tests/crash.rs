//! Crash safety: `holub serve` is killed (SIGKILL) in the middle of a few thousand messages
//! and started again over the same data. Every accepted message must reach a terminal
//! state, and the simulator (a process of its own, which outlives the crash) must have been
//! asked to send each of them exactly once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use holub_tests::{Api, Holub, Simulator, TERMINAL, TempDir, create_tenant, free_port};
use serde_json::json;

const MESSAGES: usize = 3000;
const PER_BATCH: usize = 100;

async fn simulator_stats(sim: &Simulator, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}/api/v1/stats", sim.base_url))
        .bearer_auth(token)
        .send()
        .await
        .expect("simulator answers")
        .json()
        .await
        .expect("stats JSON")
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
        // Slow sends, so the kill lands while messages are being dispatched; and a tenth of
        // the send requests lose their answer (the messages are taken, the answer is a 503):
        // those must be found by lookup, not sent again.
        &[
            "--sim-receipt-delay-ms",
            "200",
            "--sim-delivered-ratio",
            "1.0",
            "--sim-latency-ms",
            "30",
            "--sim-lost-answer-ratio",
            "0.1",
        ],
    );
    let args = [
        "--simulator-url",
        sim.base_url.as_str(),
        "--simulator-api-token",
        api_token,
        "--simulator-receipt-token",
        receipt_token,
        "--dispatch-batch",
        "50",
        "--dispatch-visibility",
        "3",
        "--orphan-after",
        "2",
        "--requeue-after",
        "3",
    ];
    let holub = Holub::start_on(dir.path(), &listen, &args);
    let api = Api::new(&holub, &keys.api_key);

    // Send in batches from several tasks; kill Holub while they and dispatch are running.
    let senders: Vec<_> = (0..MESSAGES / PER_BATCH)
        .map(|b| {
            let api = api.clone();
            tokio::spawn(async move {
                let recipients: Vec<_> = (0..PER_BATCH)
                    .map(|i| json!({"to": format!("067{:07}", b * PER_BATCH + i)}))
                    .collect();
                let body = json!({"from": "Holub", "text": "crash test", "recipients": recipients});
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
        .collect();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = simulator_stats(&sim, api_token).await;
        if stats["accepted"].as_u64().unwrap_or(0) >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "dispatch never started: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holub = holub.restart_after_kill();
    let mut accepted = HashSet::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    assert!(accepted.len() >= 300, "only {} accepted", accepted.len());

    // Every message Holub holds, accepted before the crash or not, reaches a terminal state.
    let api = Api::new(&holub, &keys.api_key);
    let deadline = Instant::now() + Duration::from_secs(180);
    let messages = loop {
        let messages = api.all_messages().await;
        let open = messages
            .iter()
            .filter(|m| !TERMINAL.contains(&m["status"].as_str().unwrap_or_default()))
            .count();
        if open == 0 {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} messages never finished",
            messages.len()
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

    let stats = simulator_stats(&sim, api_token).await;
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
