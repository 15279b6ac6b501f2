//! What bounds a leaked key: the destination policy, the rate limit, the per-number limit and
//! the spend caps, each through `holub serve`'s HTTP API as a client meets it, with the
//! operator setting them on the command line. A refused request stores nothing.

use holub_tests::{Api, Holub, TempDir, TenantKeys, create_tenant, tenant_command};
use serde_json::{Value, json};

fn message(to: &str, text: &str) -> Value {
    json!({"to": to, "from": "Holub", "text": text})
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// A tenant with the kit's wide limits, then `set` on top (by the operator, audited).
fn tenant_with(dir: &TempDir, name: &str, set: &[&str]) -> TenantKeys {
    let keys = create_tenant(dir.path(), name);
    let mut args = vec!["limits", "--tenant", &keys.tenant_id];
    for s in set {
        args.extend(["--set", s]);
    }
    tenant_command(dir.path(), &args).expect("limits set");
    keys
}

/// Status, `Retry-After` and body of a POST.
async fn post(api: &Api, path: &str, body: &Value) -> (u16, Option<u64>, Value) {
    let resp = api
        .http
        .post(format!("{}{path}", api.base_url))
        .bearer_auth(&api.key)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

async fn stored(api: &Api) -> usize {
    api.all_messages().await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_limited_to_the_tenants_countries() {
    let dir = TempDir::new("limits-destination");
    let keys = tenant_with(&dir, "Dest", &["countries=UA"]);
    let holub = Holub::start(dir.path(), &[]);
    let api = Api::new(&holub, &keys.api_key);

    let (status, _, body) = post(&api, "/v1/messages", &message("+48 512 345 678", "Hi")).await;
    assert_eq!(
        (status, code(&body)),
        (422, "destination_not_allowed"),
        "{body}"
    );
    assert_eq!(body["error"]["field"], "to");
    // Premium and unknown ranges are not numbers that take SMS at all.
    let (status, _, body) = post(&api, "/v1/messages", &message("+44 909 879 0000", "Hi")).await;
    assert_eq!((status, code(&body)), (422, "phone_not_mobile"), "{body}");
    let (status, _, body) = post(&api, "/v1/messages", &message("0900123456", "Hi")).await;
    assert_eq!((status, code(&body)), (422, "phone_not_mobile"), "{body}");

    let batch = json!({"from": "Holub", "text": "Hi", "recipients": [
        {"to": "0671234567"}, {"to": "+48512345678"}, {"to": "+380501234567"}]});
    let (status, _, body) = post(&api, "/v1/messages/batch", &batch).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let refused = &body["results"][1]["error"];
    assert_eq!(refused["code"], "destination_not_allowed");
    assert_eq!(refused["field"], "recipients[1].to");
    assert_eq!(stored(&api).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_retry_after() {
    let dir = TempDir::new("limits-rate");
    let keys = tenant_with(&dir, "Rate", &["rate_per_second=1", "burst=3"]);
    let holub = Holub::start(dir.path(), &[]);
    let api = Api::new(&holub, &keys.api_key);

    let numbers = ["0671234561", "0671234562", "0671234563", "0671234564"];
    for to in &numbers[..3] {
        let (status, _, body) = post(&api, "/v1/messages", &message(to, "Hi")).await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, retry, body) = post(&api, "/v1/messages", &message(numbers[3], "Hi")).await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    assert!(retry.is_some_and(|s| (1..=2).contains(&s)), "{retry:?}");
    // More than the bucket holds can never pass: not a 429 to retry, but a 422.
    let batch = json!({"from": "Holub", "text": "Hi",
        "recipients": numbers.iter().map(|n| json!({"to": n})).collect::<Vec<_>>()});
    let (status, retry, body) = post(&api, "/v1/messages/batch", &batch).await;
    assert_eq!(
        (status, code(&body), retry),
        (422, "batch_exceeds_burst", None),
        "{body}"
    );
    assert_eq!(
        stored(&api).await,
        3,
        "nothing of a refused request is stored"
    );
    // After the wait, tokens are back.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _, body) = post(&api, "/v1/messages", &message(numbers[3], "Hi")).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_number_takes_a_limited_number_of_messages_an_hour() {
    let dir = TempDir::new("limits-velocity");
    let keys = tenant_with(&dir, "Velocity", &["per_number_per_hour=2"]);
    let other = tenant_with(&dir, "Other", &["per_number_per_hour=2"]);
    let holub = Holub::start(dir.path(), &[]);
    let api = Api::new(&holub, &keys.api_key);

    for typed in ["0671234567", "+380 67 123 45 67"] {
        let (status, _, body) = post(&api, "/v1/messages", &message(typed, "Code 1")).await;
        assert_eq!(status, 202, "{body}");
    }
    // The same number in any typing.
    let (status, retry, body) =
        post(&api, "/v1/messages", &message("(067) 123-45-67", "Code")).await;
    assert_eq!(
        (status, code(&body)),
        (429, "velocity_limit_exceeded"),
        "{body}"
    );
    assert!(retry.is_some_and(|s| s <= 3600), "{retry:?}");
    // Other numbers, and the same number of another tenant, are their own.
    let (status, _, _) = post(&api, "/v1/messages", &message("0671234568", "Code")).await;
    assert_eq!(status, 202);
    let (status, _, _) = post(
        &Api::new(&holub, &other.api_key),
        "/v1/messages",
        &message("0671234567", "Code"),
    )
    .await;
    assert_eq!(status, 202);

    let batch = json!({"from": "Holub", "text": "Hi", "recipients": [
        {"to": "0501234567"}, {"to": "0501234567"}, {"to": "0501234567"}, {"to": "0631234567"}]});
    let (status, _, body) = post(&api, "/v1/messages/batch", &batch).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    let rejected: Vec<&Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "rejected")
        .collect();
    assert_eq!(rejected[0]["error"]["code"], "velocity_limit_exceeded");
    assert_eq!(stored(&api).await, 3 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_caps_stop_a_day_and_a_month() {
    let dir = TempDir::new("limits-spend");
    let daily = tenant_with(
        &dir,
        "Daily",
        &["segment_price_kopiyky=150", "daily_spend_kopiyky=600"],
    );
    let monthly = tenant_with(
        &dir,
        "Monthly",
        &["daily_spend_kopiyky=100000", "monthly_spend_kopiyky=200"],
    );
    let holub = Holub::start(dir.path(), &[]);
    let api = Api::new(&holub, &daily.api_key);

    // 71 Cyrillic letters: two segments, 300 kopiykas.
    let long = "щ".repeat(71);
    let (status, _, body) = post(&api, "/v1/messages", &message("0671234567", &long)).await;
    assert_eq!(
        (status, body["segments"].as_u64()),
        (202, Some(2)),
        "{body}"
    );
    let batch = json!({"from": "Holub", "text": &long, "recipients": [{"to": "0671234568"}]});
    let (status, _, body) = post(&api, "/v1/messages/batch", &batch).await;
    assert_eq!(status, 202, "{body}");
    let (status, retry, body) = post(&api, "/v1/messages", &message("0671234569", "Hi")).await;
    assert_eq!(
        (status, code(&body)),
        (429, "daily_spend_cap_reached"),
        "{body}"
    );
    assert!(
        retry.is_some_and(|s| (1..=25 * 3600).contains(&s)),
        "{retry:?}"
    );
    assert_eq!(stored(&api).await, 2);

    let view = api.get("/v1/limits").await;
    assert_eq!(view.status, 200, "{:?}", view.body);
    assert_eq!(view.body["spent_today_kopiyky"], 600);
    assert_eq!(view.body["limits"]["daily_spend_kopiyky"], 600);

    let api = Api::new(&holub, &monthly.api_key);
    let (status, _, _) = post(&api, "/v1/messages", &message("0671234567", "Hi")).await;
    assert_eq!(status, 202);
    let (status, retry, body) = post(&api, "/v1/messages", &message("0671234567", &long)).await;
    assert_eq!(
        (status, code(&body)),
        (429, "monthly_spend_cap_reached"),
        "{body}"
    );
    assert!(retry.is_some(), "the cap resets with the month");
    // A charge above the whole cap can never pass.
    let many = json!({"from": "Holub", "text": &long, "recipients": [
        {"to": "0671234561"}, {"to": "0671234562"}]});
    let (status, retry, body) = post(&api, "/v1/messages/batch", &many).await;
    assert_eq!(
        (status, code(&body), retry),
        (422, "monthly_spend_cap_reached", None),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_message_gives_its_spend_back() {
    let dir = TempDir::new("limits-refund");
    let tenant = tenant_with(
        &dir,
        "Refund",
        &["segment_price_kopiyky=150", "daily_spend_kopiyky=300"],
    );
    let holub = Holub::start(dir.path(), &[]);
    let api = Api::new(&holub, &tenant.api_key);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = |to: &str| json!({"to": to, "from": "Holub", "text": "Hi", "send_at": later});

    let (status, _, first) = post(&api, "/v1/messages", &scheduled("0671234561")).await;
    assert_eq!(status, 202, "{first}");
    let (status, _, body) = post(&api, "/v1/messages", &scheduled("0671234562")).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = post(&api, "/v1/messages", &scheduled("0671234563")).await;
    assert_eq!((status, code(&body)), (429, "daily_spend_cap_reached"));
    assert_eq!(api.get("/v1/limits").await.body["spent_today_kopiyky"], 300);

    let id = first["id"].as_str().unwrap();
    let cancel = api
        .post(&format!("/v1/messages/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.status, 200, "{:?}", cancel.body);
    assert_eq!(api.get("/v1/limits").await.body["spent_today_kopiyky"], 150);
    let (status, _, body) = post(&api, "/v1/messages", &scheduled("0671234563")).await;
    assert_eq!(status, 202, "{body}");
    // Cancelling again gives nothing more back.
    let again = api
        .post(&format!("/v1/messages/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(api.get("/v1/limits").await.body["spent_today_kopiyky"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_read_by_admin_keys_and_set_only_by_the_operator() {
    let dir = TempDir::new("limits-admin");
    let keys = create_tenant(dir.path(), "Admin");
    let set = tenant_command(
        dir.path(),
        &[
            "limits",
            "--tenant",
            &keys.tenant_id,
            "--set",
            "rate_per_second=5",
        ],
    )
    .unwrap();
    assert_eq!(set["limits"]["rate_per_second"], 5);
    let refused = tenant_command(
        dir.path(),
        &[
            "limits",
            "--tenant",
            &keys.tenant_id,
            "--set",
            "rate_per_second=0",
        ],
    )
    .unwrap_err();
    assert!(
        refused.contains("rate_per_second must be 1 to"),
        "{refused}"
    );
    let holub = Holub::start(dir.path(), &[]);
    let admin = Api::new(&holub, &keys.api_key);

    let view = admin.get("/v1/limits").await;
    assert_eq!(view.status, 200);
    assert_eq!(view.body["limits"]["rate_per_second"], 5);
    assert_eq!(
        view.body["limits"]["countries"],
        json!(["DE", "GB", "PL", "UA"])
    );

    // No key, however scoped, changes them.
    let put = admin
        .http
        .put(format!("{}/v1/limits", admin.base_url))
        .bearer_auth(&admin.key)
        .json(&json!({"rate_per_second": 100000}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 405);
    let created = admin
        .post(
            "/v1/keys",
            &json!({"name": "sender", "scopes": ["messages:send"]}),
        )
        .await;
    let sender = admin.with_key(created.body["key"].as_str().unwrap());
    let refused = sender.get("/v1/limits").await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (403, "insufficient_scope")
    );

    // Each change is in the audit log with the limits before and after.
    let audit = admin.get("/v1/audit").await;
    let changes: Vec<&Value> = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "settings.update")
        .collect();
    assert_eq!(
        changes.len(),
        2,
        "the kit's wide limits, then rate_per_second=5"
    );
    assert_eq!(changes[0]["before"]["rate_per_second"], 100000);
    assert_eq!(changes[0]["after"]["rate_per_second"], 5);
    assert_eq!(changes[0]["actor"]["kind"], "operator");
}
