//! The whole pipeline on one machine: `holub serve` started as a process with a fresh data
//! directory and the built-in simulator, driven over HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use holub_tests::{Api, Holub, Simulator, TempDir, create_tenant, free_port};
use serde_json::json;

/// Fast receipts and an always-delivering simulator, so outcomes are certain.
const FAST: &[&str] = &[
    "--sync",
    "normal",
    "--sim-receipt-delay-ms",
    "100",
    "--sim-delivered-ratio",
    "1.0",
];

fn history(message: &serde_json::Value) -> Vec<String> {
    message["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_walks_to_delivered_with_its_history() {
    let dir = TempDir::new("single");
    let keys = create_tenant(dir.path(), "Single");
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);

    let a = api
        .post(
            "/v1/messages",
            &json!({"to": "(067) 123-45-67", "from": "Holub", "text": "Ваш код: 4821", "reference": "order-1"}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["status"], "queued");
    assert_eq!(a.body["to"], "+380671234567");
    assert_eq!(a.body["encoding"], "UCS-2");
    assert_eq!(a.body["segments"], 1);
    assert_eq!(a.body["operator"], "kyivstar");
    let id = a.body["id"].as_str().unwrap().to_owned();

    let m = api.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(m["status"], "delivered", "{m:?}");
    assert_eq!(
        history(&m),
        ["accepted", "queued", "sending", "sent", "delivered"]
    );
    assert_eq!(m["provider"], "simulator");
    assert!(m["provider_message_id"].as_str().is_some());
    assert_eq!(m["cost_kopiyky"], 85);
    assert_eq!(m["reference"], "order-1");
    assert_eq!(m["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_that_never_come_are_asked_for() {
    let dir = TempDir::new("reconcile");
    let keys = create_tenant(dir.path(), "Reconcile");
    // The simulator pushes its receipts to a port nobody listens on: every one is lost.
    let nowhere = format!("http://127.0.0.1:{}/v1/receipts/simulator", free_port());
    let (api_token, receipt_token) = ("sim-api-token", "sim-receipt-token");
    let sim = Simulator::start(
        &nowhere,
        api_token,
        receipt_token,
        &[
            "--sim-receipt-delay-ms",
            "100",
            "--sim-delivered-ratio",
            "1.0",
        ],
    );
    let mut args: Vec<&str> = sim.serve_args.iter().map(String::as_str).collect();
    args.extend(["--reconcile-after", "1", "--poll-every", "1"]);
    let holub = Holub::start(dir.path(), &args);
    let api = Api::new(&holub, &keys.api_key);
    let id = api
        .accepted(&json!({"to": "0671234567", "from": "Holub", "text": "Ваш код: 4821"}))
        .await;
    let m = api.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(
        m["status"], "delivered",
        "settled by asking the provider: {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_fill_placeholders_and_refuse_bad_recipients_alone() {
    let dir = TempDir::new("batch");
    let keys = create_tenant(dir.path(), "Batch");
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);

    let a = api
        .post(
            "/v1/messages/batch",
            &json!({
                "from": "Shop24",
                "text": "{{name}}, ваше замовлення {{order}} готове",
                "transliterate": true,
                "recipients": [
                    {"to": "0501234567", "variables": {"name": "Олена", "order": "A-1"}},
                    {"to": "044 123 45 67", "variables": {"name": "Ігор", "order": "A-2"}},
                    {"to": "0931234567", "variables": {"name": "Юрій"}},
                    {"to": "+48 512 345 678", "variables": {"name": "Anna", "order": "A-4"}},
                ]
            }),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["accepted"], 2);
    assert_eq!(a.body["rejected"], 2);
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected");
    assert_eq!(results[1]["error"]["code"], "phone_landline");
    assert_eq!(results[1]["error"]["field"], "recipients[1].to");
    assert_eq!(results[2]["error"]["code"], "template_variable_missing");
    assert_eq!(results[3]["status"], "accepted");

    let first = api
        .wait_terminal(results[0]["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(first["status"], "delivered");
    assert_eq!(first["text"], "Olena, vashe zamovlennia A-1 hotove");
    assert_eq!(first["encoding"], "GSM-7");
    assert_eq!(first["batch_id"], a.body["batch_id"]);

    let listed = api
        .get(&format!(
            "/v1/messages?batch_id={}",
            a.body["batch_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_are_released_on_time_and_can_be_cancelled_before() {
    let dir = TempDir::new("scheduled");
    let keys = create_tenant(dir.path(), "Scheduled");
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);

    let send_at = Utc::now() + chrono::Duration::seconds(3);
    let body = |text: &str| {
        json!({"to": "0671234567", "from": "Holub", "text": text,
               "send_at": send_at.to_rfc3339()})
    };
    let kept = api.post("/v1/messages", &body("kept")).await;
    assert_eq!(kept.status, 202, "{:?}", kept.body);
    assert_eq!(kept.body["status"], "scheduled");
    let dropped = api.post("/v1/messages", &body("dropped")).await;
    let dropped_id = dropped.body["id"].as_str().unwrap();

    let c = api
        .post(&format!("/v1/messages/{dropped_id}/cancel"), &json!({}))
        .await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    assert_eq!(c.body["status"], "cancelled");

    let m = api
        .wait_terminal(kept.body["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(m["status"], "delivered");
    let queued_at: DateTime<Utc> = m["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|h| h["status"] == "queued")
        .map(|h| h["at"].as_str().unwrap().parse().unwrap())
        .unwrap();
    let late = queued_at - send_at;
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(2),
        "released {late} after send_at"
    );

    // Too late to cancel now; and unknown ids are not found.
    let again = api
        .post(
            &format!("/v1/messages/{}/cancel", kept.body["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"]["code"], "not_cancellable");
    let unknown = api
        .post("/v1/messages/01J00000000000000000000000/cancel", &json!({}))
        .await;
    assert_eq!(unknown.status, 404);
    let d = api.get(&format!("/v1/messages/{dropped_id}")).await;
    assert_eq!(d.body["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_messages_survive_a_restart() {
    let dir = TempDir::new("restart");
    let keys = create_tenant(dir.path(), "Restart");
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);
    let send_at = Utc::now() + chrono::Duration::seconds(4);
    let a = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "later", "send_at": send_at.to_rfc3339()}),
        )
        .await;
    assert_eq!(a.status, 202);
    let holub = holub.restart_after_kill();
    let api = Api::new(&holub, &keys.api_key);
    let m = api
        .wait_terminal(a.body["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(m["status"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_or_conflict() {
    let dir = TempDir::new("idem");
    let keys = create_tenant(dir.path(), "Idem");
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);
    let body = json!({"to": "0671234567", "from": "Holub", "text": "once"});

    let first = api.post_with("/v1/messages", &body, Some("order-77")).await;
    assert_eq!(first.status, 202);
    let second = api.post_with("/v1/messages", &body, Some("order-77")).await;
    assert_eq!(second.status, 202);
    assert_eq!(second.body, first.body, "the same answer, byte for byte");

    let other = json!({"to": "0671234567", "from": "Holub", "text": "twice?"});
    let conflict = api
        .post_with("/v1/messages", &other, Some("order-77"))
        .await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.body["error"]["code"], "idempotency_key_reused");

    let listed = api.get("/v1/messages").await;
    assert_eq!(listed.body["messages"].as_array().unwrap().len(), 1);

    // Concurrent duplicates: exactly one message.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            let body = json!({"to": "0501234567", "from": "Holub", "text": "race"});
            tokio::spawn(async move { api.post_with("/v1/messages", &body, Some("race-1")).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for r in racers {
        let a = r.await.unwrap();
        assert_eq!(a.status, 202, "{:?}", a.body);
        ids.insert(a.body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    let listed = api.get("/v1/messages").await;
    assert_eq!(listed.body["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_messages() {
    let dir = TempDir::new("tenants");
    let a_keys = create_tenant(dir.path(), "A");
    let b_keys = create_tenant(dir.path(), "B");
    let holub = Holub::start(dir.path(), FAST);
    let a = Api::new(&holub, &a_keys.api_key);
    let b = Api::new(&holub, &b_keys.api_key);
    let sent = a
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "mine", "send_at": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}),
        )
        .await;
    let id = sent.body["id"].as_str().unwrap();
    assert_eq!(b.get(&format!("/v1/messages/{id}")).await.status, 404);
    assert_eq!(
        b.post(&format!("/v1/messages/{id}/cancel"), &json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        b.get("/v1/messages").await.body["messages"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        a.get(&format!("/v1/messages/{id}")).await.body["status"],
        "scheduled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_and_paginate() {
    let dir = TempDir::new("list");
    let keys = create_tenant(dir.path(), "List");
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut ids = Vec::new();
    for i in 0..7 {
        let to = if i % 2 == 0 {
            "0671234567"
        } else {
            "0501234567"
        };
        let a = api
            .post(
                "/v1/messages",
                &json!({"to": to, "from": "Holub", "text": format!("n{i}"), "send_at": later}),
            )
            .await;
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/messages?limit=3&cursor={c}"),
            None => "/v1/messages?limit=3".to_owned(),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        for m in page.body["messages"].as_array().unwrap() {
            seen.push(m["id"].as_str().unwrap().to_owned());
        }
        match page.body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    let kyivstar = api
        .get("/v1/messages?to=%2B380671234567&status=scheduled")
        .await;
    assert_eq!(kyivstar.body["messages"].as_array().unwrap().len(), 4);
    let none = api.get("/v1/messages?status=delivered").await;
    assert_eq!(none.body["messages"].as_array().unwrap().len(), 0);
}

#[derive(Clone, Default)]
struct Caught {
    events: Arc<Mutex<Vec<(serde_json::Value, bool)>>>,
    secret: String,
}

async fn catch(State(c): State<Caught>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers
        .get("holub-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = holub_shared::services::callbacks::verify(
        c.secret.as_bytes(),
        header,
        &body,
        Utc::now().timestamp(),
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let posted = v.as_array().cloned().unwrap_or_default();
    let mut events = c.events.lock().unwrap();
    // The first attempt at each event is refused, to prove callbacks are retried.
    let first_try = posted
        .iter()
        .any(|p| !events.iter().any(|(e, _)| e["event_id"] == p["event_id"]));
    events.extend(posted.into_iter().map(|p| (p, ok)));
    if first_try && ok {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_callbacks_are_signed_and_retried() {
    let dir = TempDir::new("callbacks");
    let keys = create_tenant(dir.path(), "Callbacks");
    let caught = Caught {
        secret: keys.webhook_secret.clone(),
        ..Caught::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(catch))
        .with_state(caught.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);
    let a = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "hook", "callback_url": receiver, "reference": "r-9"}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    // A second message whose URL asked for its final status only.
    let finals = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234568", "from": "Holub", "text": "hook", "callback_url": receiver,
                "callback_statuses": ["delivered", "undelivered", "expired", "failed"]}),
        )
        .await;
    assert_eq!(finals.status, 202, "{:?}", finals.body);
    let finals_id = finals.body["id"].as_str().unwrap().to_owned();
    api.wait_terminal(&id, Duration::from_secs(20)).await;
    api.wait_terminal(&finals_id, Duration::from_secs(20)).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delivered_ok = {
            let events = caught.events.lock().unwrap();
            events
                .iter()
                .filter(|(e, ok)| *ok && e["status"] == "delivered")
                .count()
                >= 4
        };
        if delivered_ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retried delivered callback"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = caught.events.lock().unwrap();
    assert!(events.iter().all(|(_, ok)| *ok), "every callback is signed");
    let statuses: std::collections::HashSet<_> = events
        .iter()
        .map(|(e, _)| e["status"].as_str().unwrap().to_owned())
        .collect();
    for s in ["sending", "sent", "delivered"] {
        assert!(statuses.contains(s), "no {s} callback in {statuses:?}");
    }
    let delivered = events
        .iter()
        .find(|(e, _)| e["status"] == "delivered" && e["message_id"] == id.as_str())
        .unwrap();
    assert_eq!(delivered.0["reference"], "r-9");
    assert_eq!(delivered.0["type"], "message.status");
    assert_eq!(delivered.0["event_id"], format!("{id}.delivered"));
    let of_finals: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e["message_id"] == finals_id.as_str())
        .map(|(e, _)| e["status"].as_str().unwrap())
        .collect();
    assert!(
        !of_finals.is_empty() && of_finals.iter().all(|s| *s == "delivered"),
        "{of_finals:?}"
    );
}

/// Every POST a receiver got: its path, its `Holub-Signature` and its body.
type Posts = Arc<Mutex<Vec<(String, String, Bytes)>>>;

async fn record(
    State(posts): State<Posts>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("holub-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    posts
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), signature, body));
    StatusCode::NO_CONTENT
}

/// The POST to `path` that tells of `message`'s `status`, waited for.
async fn posted(posts: &Posts, path: &str, message: &str, status: &str) -> (String, Bytes) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = posts.lock().unwrap().iter().find_map(|(p, sig, body)| {
            let events: serde_json::Value = serde_json::from_slice(body).ok()?;
            let told = events.as_array()?.iter().any(|e| {
                e["message_id"] == message && e["status"] == status && e["type"] == "message.status"
            });
            (p == path && told).then(|| (sig.clone(), body.clone()))
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {status} callback of {message} at {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_callback_and_a_rotated_secret_sign_with_both_through_the_grace() {
    use holub_shared::services::callbacks::verify;
    let dir = TempDir::new("account-callback");
    let keys = create_tenant(dir.path(), "Account callback");
    let posts = Posts::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(axum::routing::post(record))
        .with_state(posts.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let holub = Holub::start(dir.path(), FAST);
    let api = Api::new(&holub, &keys.api_key);

    let none = api.get("/v1/webhook").await;
    assert_eq!(none.status, 200, "{:?}", none.body);
    assert_eq!(none.body["callback_url"], serde_json::Value::Null);
    let account = format!("{base}/account");
    let set = api
        .put(
            "/v1/webhook",
            &json!({"callback_url": account, "callback_statuses": ["delivered"]}),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["callback_statuses"], json!(["delivered"]));
    assert_eq!(api.get("/v1/webhook").await.body["callback_url"], account);
    for bad in [
        json!({"callback_url": "ftp://example.com/x"}),
        json!({"callback_url": account, "callback_statuses": []}),
        json!({"callback_url": account, "other": 1}),
    ] {
        let refused = api.put("/v1/webhook", &bad).await;
        assert!(
            matches!(refused.status, 400 | 422),
            "{bad}: {:?}",
            refused.body
        );
    }
    assert_eq!(
        api.get("/v1/webhook").await.body["callback_url"],
        account,
        "a refused change changes nothing"
    );

    let rotated = api
        .post("/v1/webhook/rotate-secret", &json!({"grace_seconds": 3600}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, keys.webhook_secret);
    let until: DateTime<Utc> = rotated.body["previous_secret_valid_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (until - Utc::now() - chrono::Duration::hours(1))
            .num_seconds()
            .abs()
            < 60
    );
    assert_eq!(
        api.get("/v1/webhook").await.body["previous_secret_valid_until"],
        rotated.body["previous_secret_valid_until"]
    );
    let too_long = api
        .post(
            "/v1/webhook/rotate-secret",
            &json!({"grace_seconds": 604801}),
        )
        .await;
    assert_eq!(too_long.status, 422, "{:?}", too_long.body);

    // A message without a URL of its own goes to the account's, about `delivered` only,
    // signed by both secrets.
    let plain = api
        .accepted(&json!({"to": "0671234567", "from": "Holub", "text": "account"}))
        .await;
    // One with its own URL goes there, about every status.
    let own = api
        .accepted(&json!({"to": "0671234568", "from": "Holub", "text": "own",
            "callback_url": format!("{base}/own")}))
        .await;
    let (signature, body) = posted(&posts, "/account", &plain, "delivered").await;
    let now = Utc::now().timestamp();
    assert_eq!(signature.matches("v1=").count(), 2, "{signature}");
    assert!(verify(new_secret.as_bytes(), &signature, &body, now));
    assert!(verify(
        keys.webhook_secret.as_bytes(),
        &signature,
        &body,
        now
    ));
    posted(&posts, "/own", &own, "sent").await;
    posted(&posts, "/own", &own, "delivered").await;
    api.wait_terminal(&plain, Duration::from_secs(20)).await;
    {
        let posts = posts.lock().unwrap();
        for (path, _, body) in posts.iter() {
            let events: serde_json::Value = serde_json::from_slice(body).unwrap();
            for e in events.as_array().unwrap() {
                if path == "/account" {
                    assert_eq!(e["status"], "delivered", "only what the account asked for");
                    assert_eq!(e["message_id"], plain.as_str());
                } else {
                    assert_eq!(e["message_id"], own.as_str());
                }
            }
        }
    }

    // No grace (a leaked secret): the newest alone signs, at once.
    let urgent = api
        .post("/v1/webhook/rotate-secret", &json!({"grace_seconds": 0}))
        .await;
    assert_eq!(urgent.status, 200, "{:?}", urgent.body);
    assert_eq!(
        urgent.body["previous_secret_valid_until"],
        serde_json::Value::Null
    );
    let newest = urgent.body["secret"].as_str().unwrap().to_owned();
    let after = api
        .accepted(&json!({"to": "0671234569", "from": "Holub", "text": "after"}))
        .await;
    let (signature, body) = posted(&posts, "/account", &after, "delivered").await;
    let now = Utc::now().timestamp();
    assert_eq!(signature.matches("v1=").count(), 1, "{signature}");
    assert!(verify(newest.as_bytes(), &signature, &body, now));
    assert!(!verify(new_secret.as_bytes(), &signature, &body, now));

    // Removing the account callback: later messages tell nobody.
    let removed = api.put("/v1/webhook", &json!({"callback_url": null})).await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(removed.body["callback_url"], serde_json::Value::Null);
    let audit = api.get("/v1/audit").await;
    let actions: Vec<&str> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "webhook_secret.rotate")
            .count(),
        2,
        "{actions:?}"
    );
    assert!(actions.contains(&"settings.update"), "{actions:?}");
    assert!(
        !audit.body.to_string().contains(&newest),
        "no secret in the audit log"
    );
}
