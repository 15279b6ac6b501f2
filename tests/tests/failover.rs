//! The route table on a real `holub serve`: with one provider down, messages fail over to
//! the next one on their route, none is lost and none is sent twice.

use std::process::Command;
use std::time::{Duration, Instant};

use holub_tests::{Api, Holub, TempDir, create_tenant, holub_bin};
use serde_json::json;

fn set_secret(dir: &std::path::Path, name: &str, value: &str) {
    let status = Command::new(holub_bin())
        .args(["secret", "set", name, value, "--data-dir"])
        .arg(dir)
        .status()
        .expect("holub secret set runs");
    assert!(status.success());
}

const BACKUP_SECRET: (&str, &str) = (
    "providers/backup",
    r#"{"api_token":"b-api","receipt_token":"b-rcpt"}"#,
);

/// `holub serve` over the route table `routes`, with the providers' `secrets` set first.
fn start_routed(dir: &TempDir, routes: &str, secrets: &[(&str, &str)], args: &[&str]) -> Holub {
    for (name, value) in secrets {
        set_secret(dir.path(), name, value);
    }
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, routes).unwrap();
    let mut all = vec!["--sync", "normal", "--routes", file.to_str().unwrap()];
    all.extend(args);
    Holub::start(dir.path(), &all)
}

const ROUTES: &str = r#"
[[provider]]
name = "primary"
kind = "holub-sim"
credentials = "providers/primary"
price_per_part_kopiyky = 60
simulate = true
[provider.simulator]
receipt_delay = 100
delivered_ratio = 1.0
faults = { down = true }

[[provider]]
name = "backup"
kind = "holub-sim"
credentials = "providers/backup"
price_per_part_kopiyky = 90
messages_per_second = 200
simulate = true
[provider.simulator]
receipt_delay = 100
delivered_ratio = 1.0

[[route]]
operators = ["kyivstar"]
providers = ["primary", "backup"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_down_messages_fail_over_and_are_delivered_once() {
    let dir = TempDir::new("failover");
    let keys = create_tenant(dir.path(), "Failover");
    let secrets = [
        (
            "providers/primary",
            r#"{"api_token":"p-api","receipt_token":"p-rcpt"}"#,
        ),
        BACKUP_SECRET,
    ];
    let holub = start_routed(&dir, ROUTES, &secrets, &[]);
    let api = Api::new(&holub, &keys.api_key);

    let recipients: Vec<_> = (0..300)
        .map(|i| json!({"to": format!("067{:07}", i)}))
        .collect();
    let a = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "failover", "recipients": recipients}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let ids: Vec<String> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 300);

    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = api
            .wait_terminal(id, left.max(Duration::from_secs(1)))
            .await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["provider"], "backup");
        assert_eq!(m["attempts"], 1, "failover happens within one attempt");
    }
    // Nothing reached the provider that was down; the backup took each message once.
    let stats = |name: &str| {
        let addr = holub.info["simulators"][name].as_str().unwrap().to_owned();
        async move {
            reqwest::get(format!("http://{addr}/api/v1/stats"))
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let primary = stats("primary").await;
    let backup = stats("backup").await;
    assert_eq!(primary["accepted"], 0, "{primary}");
    assert_eq!(backup["accepted"], 300, "{backup}");
    assert_eq!(backup["duplicates"], 0, "{backup}");

    // A receipt request applied once is refused when replayed.
    let m = api.get(&format!("/v1/messages/{}", ids[0])).await;
    let receipt = json!({"receipts": [{
        "message_id": m.body["provider_message_id"],
        "part": 1,
        "status": "DELIVRD",
        "done_at": chrono::Utc::now().to_rfc3339(),
    }]});
    let post = || {
        reqwest::Client::new()
            .post(holub.url("/v1/receipts/backup"))
            .bearer_auth("b-rcpt")
            .json(&receipt)
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 200);
    let replayed = post().await.unwrap();
    assert_eq!(replayed.status(), 409);
    let body: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "receipt_replayed");

    // Each provider's webhook takes only its own credentials.
    let r = reqwest::Client::new()
        .post(holub.url("/v1/receipts/primary"))
        .bearer_auth("forged")
        .json(&json!({"receipts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .post(holub.url("/v1/receipts/nobody"))
        .json(&json!({"receipts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// SMS Fly takes the message but its answer is unreadable, and SMS Fly cannot be asked
/// about a message by our id: the message may have gone out.
const UNREADABLE_SMSFLY: &str = r#"
[[provider]]
name = "fly"
kind = "smsfly"
credentials = "providers/fly"
simulate = true
[provider.simulator]
faults = { malformed_ratio = 1.0 }

[[provider]]
name = "backup"
kind = "holub-sim"
credentials = "providers/backup"
simulate = true

[[route]]
operators = ["kyivstar"]
providers = ["fly", "backup"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_that_cannot_be_looked_up_is_unconfirmed_not_resent() {
    let dir = TempDir::new("unconfirmed");
    let keys = create_tenant(dir.path(), "Unconfirmed");
    let secrets = [("providers/fly", r#"{"key":"fly-key"}"#), BACKUP_SECRET];
    let holub = start_routed(&dir, UNREADABLE_SMSFLY, &secrets, &["--orphan-after", "1"]);
    let api = Api::new(&holub, &keys.api_key);
    let id = api
        .accepted(&json!({"to": "0671234567", "from": "Holub", "text": "Ваш код: 4821"}))
        .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = api.get(&format!("/v1/messages/{id}")).await.body;
        if m["status"] != "queued" && m["status"] != "sending" {
            break m;
        }
        assert!(Instant::now() < deadline, "still {}", m["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(m["status"], "unconfirmed", "{m}");
    assert_eq!(m["error"]["code"], "submit_outcome_unknown", "{m}");
    // Not failed over: the backup would have sent it a second time.
    let addr = holub.info["simulators"]["backup"].as_str().unwrap();
    let backup: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(backup["accepted"], 0, "{backup}");
}
