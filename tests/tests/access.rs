//! What a key may do, from where a message may come, and the record of who changed what:
//! API keys with scopes, expiry, rotation and revocation; the sender registry; the audit log.
//! Each through `holub serve` and its HTTP API (and the operator's command line), as a client
//! and an operator would.

use std::time::Duration;

use holub_tests::{Api, Holub, TempDir, create_tenant, tenant_command};
use serde_json::{Value, json};

/// As on AWS, only registered senders send (`holub serve` lets unregistered ones through by
/// default: see `one_machine_lets_unlisted_senders_through_and_holds_listed_ones`).
const FAST: &[&str] = &[
    "--sim-receipt-delay-ms",
    "100",
    "--poll-every",
    "1",
    "--open-senders",
    "false",
];

fn message(from: &str, to: &str) -> Value {
    json!({"to": to, "from": from, "text": "Ваш код: 4821"})
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

async fn new_key(admin: &Api, name: &str, scopes: &[&str], extra: Value) -> (String, String) {
    let mut body = json!({"name": name, "scopes": scopes});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created = admin.post("/v1/keys", &body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("holub_sk_"), "{key}");
    assert!(key.starts_with(created.body["prefix"].as_str().unwrap()));
    (key, created.body["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_does_only_what_its_scopes_allow() {
    let dir = TempDir::new("scopes");
    let keys = create_tenant(dir.path(), "Scopes");
    let holub = Holub::start(dir.path(), FAST);
    let admin = Api::new(&holub, &keys.api_key);

    let (send_key, send_id) = new_key(&admin, "shop backend", &["messages:send"], json!({})).await;
    let (read_key, _) = new_key(&admin, "dashboard", &["messages:read"], json!({})).await;
    let sender = admin.with_key(&send_key);
    let reader = admin.with_key(&read_key);

    // The sending key sends, and can do nothing else.
    let id = sender.accepted(&message("Holub", "0671234567")).await;
    for path in [
        format!("/v1/messages/{id}"),
        "/v1/messages".into(),
        "/v1/keys".into(),
        "/v1/audit".into(),
    ] {
        let refused = sender.get(&path).await;
        assert_eq!(refused.status, 403, "{path}: {:?}", refused.body);
        assert_eq!(code(&refused.body), "insufficient_scope");
    }
    let refused = sender
        .post("/v1/keys", &json!({"name": "mine", "scopes": ["admin"]}))
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (403, "insufficient_scope")
    );
    let refused = sender.post("/v1/senders", &json!({"sender": "Mine"})).await;
    assert_eq!(refused.status, 403);

    // The reading key reads, and cannot send or cancel.
    let got = reader.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let refused = reader
        .post("/v1/messages", &message("Holub", "0671234567"))
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (403, "insufficient_scope")
    );
    let refused = reader
        .post(&format!("/v1/messages/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        admin.all_messages().await.len(),
        1,
        "nothing more was stored"
    );

    // Keys are listed with their scopes and last use, never their secrets.
    let listed = admin.get("/v1/keys").await;
    assert_eq!(listed.status, 200);
    let text = listed.body.to_string();
    assert!(
        !text.contains(&send_key) && !text.contains(&read_key) && !text.contains(&keys.api_key)
    );
    let entry = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == send_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["scopes"], json!(["messages:send"]));
    assert_eq!(entry["status"], "active");
    assert!(entry["last_used_at"].is_string(), "{entry}");

    // Bad requests are refused with stable codes, and nothing is made.
    for (body, expected) in [
        (json!({"name": "x", "scopes": []}), "scopes_invalid"),
        (
            json!({"name": "x", "scopes": ["messages:write"]}),
            "invalid_request",
        ),
        (json!({"name": "", "scopes": ["admin"]}), "name_invalid"),
        (
            json!({"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at_invalid",
        ),
        (
            json!({"name": "x", "scopes": ["admin"], "expires_at": "tomorrow"}),
            "expires_at_invalid",
        ),
    ] {
        let refused = admin.post("/v1/keys", &body).await;
        assert_eq!(
            (refused.status, code(&refused.body)),
            (422, expected),
            "{body}"
        );
    }
    assert_eq!(
        admin.get("/v1/keys").await.body["keys"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_revoked_rotated_and_expire() {
    let dir = TempDir::new("key-life");
    let keys = create_tenant(dir.path(), "Lifecycle");
    let holub = Holub::start(dir.path(), FAST);
    let admin = Api::new(&holub, &keys.api_key);

    // Revoked: refused at once by this server.
    let (key, id) = new_key(&admin, "leaked", &["messages:send"], json!({})).await;
    let leaked = admin.with_key(&key);
    leaked.accepted(&message("Holub", "0671234567")).await;
    let revoked = admin
        .post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(revoked.body["status"], "revoked");
    let refused = leaked
        .post("/v1/messages", &message("Holub", "0671234567"))
        .await;
    assert_eq!((refused.status, code(&refused.body)), (401, "unauthorized"));
    let again = admin
        .post(&format!("/v1/keys/{id}/revoke"), &json!({}))
        .await;
    assert_eq!((again.status, code(&again.body)), (404, "key_not_found"));

    // Rotated without grace: the old key stops now, the new one has its scopes.
    let (old_key, old_id) = new_key(&admin, "ci", &["messages:read"], json!({})).await;
    let rotated = admin
        .post(&format!("/v1/keys/{old_id}/rotate"), &json!({}))
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let new_key_secret = rotated.body["new"]["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated.body["new"]["scopes"], json!(["messages:read"]));
    assert_eq!(rotated.body["new"]["name"], "ci");
    assert_eq!(
        admin.with_key(&old_key).get("/v1/messages").await.status,
        401
    );
    assert_eq!(
        admin
            .with_key(&new_key_secret)
            .get("/v1/messages")
            .await
            .status,
        200
    );

    // Rotated with grace: both work until it ends.
    let new_id = rotated.body["new"]["id"].as_str().unwrap().to_owned();
    let graced = admin
        .post(
            &format!("/v1/keys/{new_id}/rotate"),
            &json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(graced.status, 200);
    let newest = graced.body["new"]["key"].as_str().unwrap().to_owned();
    assert_eq!(
        admin
            .with_key(&new_key_secret)
            .get("/v1/messages")
            .await
            .status,
        200
    );
    assert_eq!(
        admin.with_key(&newest).get("/v1/messages").await.status,
        200
    );
    let too_long = admin
        .post(
            &format!("/v1/keys/{new_id}/rotate"),
            &json!({"grace_seconds": 604801}),
        )
        .await;
    assert_eq!(
        (too_long.status, code(&too_long.body)),
        (422, "grace_invalid")
    );

    // Expired: refused once its time has come.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (short, _) = new_key(
        &admin,
        "short",
        &["messages:read"],
        json!({"expires_at": soon}),
    )
    .await;
    assert_eq!(admin.with_key(&short).get("/v1/messages").await.status, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(admin.with_key(&short).get("/v1/messages").await.status, 401);
    let listed = admin.get("/v1/keys").await;
    let statuses: Vec<&str> = listed.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"expired") && statuses.contains(&"revoked"),
        "{statuses:?}"
    );

    // Another tenant's admin cannot touch these keys.
    let other = create_tenant(dir.path(), "Other");
    let other = admin.with_key(&other.api_key);
    let foreign = other
        .post(&format!("/v1/keys/{new_id}/revoke"), &json!({}))
        .await;
    assert_eq!(
        (foreign.status, code(&foreign.body)),
        (404, "key_not_found")
    );
    assert_eq!(
        admin.with_key(&newest).get("/v1/messages").await.status,
        200
    );

    // The operator revokes a key by presenting it (the legacy and current forms alike).
    let out = tenant_command(dir.path(), &["revoke-key", "--key", &newest]).unwrap();
    assert_eq!(out["revoked"], true);
    drop(holub);
    let holub = Holub::start(dir.path(), FAST);
    let admin = Api::new(&holub, &keys.api_key);
    assert_eq!(
        admin.with_key(&newest).get("/v1/messages").await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_out_only_from_senders_active_on_the_recipients_network() {
    let dir = TempDir::new("senders");
    let keys = create_tenant(dir.path(), "Senders");
    let holub = Holub::start(dir.path(), FAST);
    let admin = Api::new(&holub, &keys.api_key);

    // Asked for through the API: pending everywhere, so nothing goes out from it yet.
    let asked = admin
        .post("/v1/senders", &json!({"sender": "NewShop"}))
        .await;
    assert_eq!(asked.status, 201, "{:?}", asked.body);
    assert_eq!(asked.body["networks"]["kyivstar"], "pending");
    let twice = admin
        .post("/v1/senders", &json!({"sender": "NewShop"}))
        .await;
    assert_eq!(
        (twice.status, code(&twice.body)),
        (409, "sender_already_registered")
    );
    let bad = admin
        .post("/v1/senders", &json!({"sender": "New Shop"}))
        .await;
    assert_eq!(
        (bad.status, code(&bad.body)),
        (422, "sender_invalid_character")
    );

    // The operator records Kyivstar's registration.
    let set = tenant_command(
        dir.path(),
        &[
            "set-sender",
            "--tenant",
            &keys.tenant_id,
            "--sender",
            "NewShop",
            "--network",
            "kyivstar",
            "--status",
            "active",
        ],
    )
    .unwrap();
    assert_eq!(set["networks"]["kyivstar"], "active");
    assert_eq!(set["networks"]["vodafone"], "pending");

    let sent = admin
        .post("/v1/messages", &message("NewShop", "0671234567"))
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    let refused = admin
        .post("/v1/messages", &message("NewShop", "0501234567"))
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (422, "sender_not_active")
    );
    assert_eq!(refused.body["error"]["field"], "from");
    let refused = admin
        .post("/v1/messages", &message("Stranger", "0671234567"))
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (422, "sender_not_registered")
    );

    // In a batch, a recipient on a network the sender is not active on is refused alone.
    let batch = admin
        .post(
            "/v1/messages/batch",
            &json!({"from": "NewShop", "text": "Знижка 10%", "recipients": [
                {"to": "0671234567"}, {"to": "0631234567"}, {"to": "0971234567"}]}),
        )
        .await;
    assert_eq!(batch.status, 202, "{:?}", batch.body);
    assert_eq!(
        (
            batch.body["accepted"].as_u64(),
            batch.body["rejected"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        batch.body["results"][1]["error"]["code"],
        "sender_not_active"
    );
    assert_eq!(
        batch.body["results"][1]["error"]["field"],
        "recipients[1].to"
    );
    let whole = admin
        .post(
            "/v1/messages/batch",
            &json!({"from": "Stranger", "text": "x", "recipients": [{"to": "0671234567"}]}),
        )
        .await;
    assert_eq!(
        (whole.status, code(&whole.body)),
        (422, "sender_not_registered")
    );
    assert_eq!(
        admin.all_messages().await.len(),
        3,
        "refused messages are not stored"
    );

    // Removed: refused from then on.
    let listed = admin.get("/v1/senders").await;
    let names: Vec<&str> = listed.body["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sender"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Holub", "NewShop", "Shop24"]);
    assert_eq!(admin.delete("/v1/senders/NewShop").await.status, 204);
    assert_eq!(admin.delete("/v1/senders/NewShop").await.status, 404);
    let refused = admin
        .post("/v1/messages", &message("NewShop", "0671234567"))
        .await;
    assert_eq!(code(&refused.body), "sender_not_registered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_administrative_change_is_in_the_audit_log() {
    let dir = TempDir::new("audit");
    let keys = create_tenant(dir.path(), "Audit");
    let holub = Holub::start(dir.path(), FAST);
    let admin = Api::new(&holub, &keys.api_key);
    let me = admin.get("/v1/keys").await.body["keys"][0]["id"].clone();

    let (secret, id) = new_key(&admin, "temporary", &["messages:send"], json!({})).await;
    admin
        .post(&format!("/v1/keys/{id}/rotate"), &json!({}))
        .await;
    admin
        .post("/v1/senders", &json!({"sender": "Audited"}))
        .await;
    admin.delete("/v1/senders/Audited").await;

    let log = admin.get("/v1/audit?limit=3").await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let first = log.body["entries"].as_array().unwrap().clone();
    let cursor = log.body["next"].as_str().unwrap().to_owned();
    let rest = admin.get(&format!("/v1/audit?cursor={cursor}")).await;
    let entries: Vec<Value> = first
        .into_iter()
        .chain(rest.body["entries"].as_array().unwrap().iter().cloned())
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "sender.remove",
            "sender.request",
            "key.rotate",
            "key.create",
            // `holub tenant create --sender … --limit …`: the operator, on the command line.
            "settings.update",
            "sender.status",
            "sender.request",
            "sender.status",
            "sender.request",
            "tenant.create"
        ]
    );
    for entry in &entries[..4] {
        assert_eq!(
            entry["actor"],
            json!({"kind": "api_key", "key_id": me}),
            "{entry}"
        );
        assert_eq!(entry["source"], "127.0.0.1");
    }
    assert_eq!(entries[8]["actor"]["kind"], "operator");
    assert_eq!(entries[3]["after"]["scopes"], json!(["messages:send"]));
    assert_eq!(entries[2]["target"], id.as_str());
    assert!(!log.body.to_string().contains(&secret) && !rest.body.to_string().contains(&secret));

    // The command line reads the same log.
    let cli = tenant_command(
        dir.path(),
        &["audit", "--tenant", &keys.tenant_id, "--limit", "2"],
    )
    .unwrap();
    assert_eq!(cli.as_array().unwrap().len(), 2);
    assert_eq!(cli[0]["action"], "sender.remove");

    let bad = admin.get("/v1/audit?limit=0").await;
    assert_eq!((bad.status, code(&bad.body)), (422, "limit_invalid"));
    let bad = admin.get("/v1/audit?cursor=nope").await;
    assert_eq!((bad.status, code(&bad.body)), (422, "cursor_invalid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_machine_lets_unlisted_senders_through_and_holds_listed_ones() {
    let dir = TempDir::new("open-senders");
    let keys = create_tenant(dir.path(), "Open");
    let holub = Holub::start(dir.path(), &["--sim-receipt-delay-ms", "100"]);
    let admin = Api::new(&holub, &keys.api_key);

    // No record of "Unlisted": on one machine, it sends.
    let sent = admin
        .post("/v1/messages", &message("Unlisted", "0671234567"))
        .await;
    assert_eq!(sent.status, 202, "{:?}", sent.body);
    // A sender with a record is held to it: asked for, it is pending everywhere.
    let asked = admin
        .post("/v1/senders", &json!({"sender": "NewShop"}))
        .await;
    assert_eq!(asked.status, 201, "{:?}", asked.body);
    let refused = admin
        .post("/v1/messages", &message("NewShop", "0671234567"))
        .await;
    assert_eq!(
        (refused.status, code(&refused.body)),
        (422, "sender_not_active"),
        "{:?}",
        refused.body
    );
}
