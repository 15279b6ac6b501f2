//! Bad input, at every endpoint, gets a clear 4xx with a stable error code, and nothing is
//! stored.

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::json;

fn assert_error(a: &holub_tests::Answer, status: u16, code: &str, what: &str) {
    assert_eq!(a.status, status, "{what}: {:?}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{what}: {:?}", a.body);
    assert!(a.body["error"]["message"].as_str().is_some(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_refuses_bad_input_and_stores_nothing() {
    let dir = TempDir::new("bad-input");
    let keys = create_tenant(dir.path(), "Bad input");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let ok = json!({"to": "0671234567", "from": "Holub", "text": "hi"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };

    // Authentication.
    for key in ["", "hk_wrong", "Bearer", &"x".repeat(5000)] {
        let bad = Api {
            key: key.to_owned(),
            ..api.clone()
        };
        assert_error(
            &bad.post("/v1/messages", &ok).await,
            401,
            "unauthorized",
            "bad key",
        );
        assert_error(
            &bad.get("/v1/messages").await,
            401,
            "unauthorized",
            "bad key on list",
        );
    }
    let no_auth = api
        .http
        .post(holub.url("/v1/messages"))
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);

    // POST /v1/messages
    let m = "/v1/messages";
    assert_error(
        &api.post_raw(m, "application/json", b"{\"to\":".to_vec())
            .await,
        400,
        "invalid_json",
        "truncated JSON",
    );
    assert_error(
        &api.post_raw(m, "application/json", b"\xff\xfe".to_vec())
            .await,
        400,
        "invalid_json",
        "not UTF-8",
    );
    assert_error(
        &api.post_raw(m, "text/plain", b"hi".to_vec()).await,
        415,
        "unsupported_media_type",
        "text/plain",
    );
    assert_error(
        &api.post(m, &json!([1, 2])).await,
        422,
        "invalid_request",
        "array body",
    );
    assert_error(
        &api.post(m, &with("to", json!(380671234567u64))).await,
        422,
        "invalid_request",
        "number for to",
    );
    assert_error(
        &api.post(m, &with("validity", json!("1h"))).await,
        422,
        "invalid_request",
        "string validity",
    );
    assert_error(
        &api.post(m, &with("validity", json!(-5))).await,
        422,
        "invalid_request",
        "negative validity",
    );
    assert_error(
        &api.post(m, &with("surprise", json!(1))).await,
        422,
        "invalid_request",
        "unknown field",
    );
    assert_error(
        &api.post(m, &json!({"to": "0671234567", "from": "Holub"}))
            .await,
        422,
        "invalid_request",
        "missing text",
    );
    for (to, code) in [
        ("044 123 45 67", "phone_landline"),
        ("067123", "phone_too_short"),
        ("06712345678", "phone_too_long"),
        ("0701234567", "phone_unknown_prefix"),
        ("067-ABC-45-67", "phone_invalid_character"),
        ("", "phone_empty"),
        ("102", "phone_short_code"),
    ] {
        let a = api.post(m, &with("to", json!(to))).await;
        assert_error(&a, 422, code, to);
        assert_eq!(a.body["error"]["field"], "to");
    }
    assert_error(
        &api.post(m, &with("from", json!("AB"))).await,
        422,
        "sender_bad_length",
        "short sender",
    );
    assert_error(
        &api.post(m, &with("from", json!("Голуб"))).await,
        422,
        "sender_invalid_character",
        "cyrillic sender",
    );
    assert_error(
        &api.post(m, &with("text", json!(""))).await,
        422,
        "text_empty",
        "empty text",
    );
    assert_error(
        &api.post(m, &with("text", json!("   "))).await,
        422,
        "text_empty",
        "blank text",
    );
    assert_error(
        &api.post(m, &with("text", json!("ї".repeat(671)))).await,
        422,
        "text_too_long",
        "11 UCS-2 parts",
    );
    assert_error(
        &api.post(m, &with("text", json!("a\u{0}b"))).await,
        422,
        "text_control_character",
        "NUL",
    );
    assert_error(
        &api.post(m, &with("send_at", json!("tomorrow"))).await,
        422,
        "send_at_invalid",
        "send_at",
    );
    assert_error(
        &api.post(m, &with("send_at", json!("2099-01-01T00:00:00Z")))
            .await,
        422,
        "send_at_too_far",
        "far send_at",
    );
    assert_error(
        &api.post(m, &with("validity", json!(10))).await,
        422,
        "validity_out_of_range",
        "validity 10",
    );
    assert_error(
        &api.post(m, &with("validity", json!(10_000_000))).await,
        422,
        "validity_out_of_range",
        "validity huge",
    );
    assert_error(
        &api.post(m, &with("callback_url", json!("ftp://x"))).await,
        422,
        "callback_url_invalid",
        "ftp",
    );
    assert_error(
        &api.post(m, &with("callback_url", json!("not a url"))).await,
        422,
        "callback_url_invalid",
        "garbage url",
    );
    assert_error(
        &api.post(m, &with("callback_statuses", json!([]))).await,
        422,
        "callback_statuses_empty",
        "no statuses",
    );
    assert_error(
        &api.post(m, &with("callback_statuses", json!(["delivred"])))
            .await,
        422,
        "invalid_request",
        "an unknown status",
    );
    assert_error(
        &api.post(m, &with("reference", json!("r".repeat(129))))
            .await,
        422,
        "reference_invalid",
        "reference",
    );
    assert_error(
        &api.post(m, &with("metadata", json!({"k": "v".repeat(5000)})))
            .await,
        422,
        "metadata_too_large",
        "metadata",
    );
    assert_error(
        &api.post(m, &with("metadata", json!([1]))).await,
        422,
        "invalid_request",
        "metadata array",
    );
    let huge = format!(
        "{{\"to\":\"0671234567\",\"from\":\"Holub\",\"text\":\"{}\"}}",
        "a".repeat(300_000)
    );
    if let Some(a) = api
        .try_post_raw(m, "application/json", huge.into_bytes())
        .await
    {
        assert_error(&a, 413, "body_too_large", "huge body");
    }
    let bad_key = api
        .http
        .post(holub.url(m))
        .bearer_auth(&api.key)
        .header("Idempotency-Key", "k".repeat(300))
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), 400);

    // POST /v1/messages/batch
    let b = "/v1/messages/batch";
    assert_error(
        &api.post_raw(b, "application/json", b"[".to_vec()).await,
        400,
        "invalid_json",
        "batch JSON",
    );
    assert_error(
        &api.post(b, &json!({"from": "Holub", "text": "x", "recipients": []}))
            .await,
        422,
        "batch_empty",
        "empty batch",
    );
    let many: Vec<_> = (0..10_001).map(|_| json!({"to": "0671234567"})).collect();
    assert_error(
        &api.post(
            b,
            &json!({"from": "Holub", "text": "x", "recipients": many}),
        )
        .await,
        422,
        "batch_too_large",
        "10,001",
    );
    assert_error(
        &api.post(
            b,
            &json!({"from": "Holub", "text": "x", "recipients": [{"to": "0671234567", "x": 1}]}),
        )
        .await,
        422,
        "invalid_request",
        "unknown recipient field",
    );
    assert_error(
        &api.post(
            b,
            &json!({"from": "A", "text": "x", "recipients": [{"to": "0671234567"}]}),
        )
        .await,
        422,
        "sender_bad_length",
        "batch sender",
    );
    // A template is measured before any placeholder work: 160 KB of openings is refused at
    // once (it used to take seconds of CPU).
    assert_error(
        &api.post(
            b,
            &json!({"from": "Holub", "text": "{{".repeat(80_000), "recipients": [{"to": "0671234567"}]}),
        )
        .await,
        422,
        "text_too_long",
        "160 KB template",
    );
    let giant = vec![b' '; 9 * 1024 * 1024];
    if let Some(a) = api.try_post_raw(b, "application/json", giant).await {
        assert_error(&a, 413, "body_too_large", "9 MiB batch");
    }

    // GET and cancel
    for id in [
        "nope",
        "01J00000000000000000000000",
        "%00",
        &"Z".repeat(300),
    ] {
        assert_error(
            &api.get(&format!("/v1/messages/{id}")).await,
            404,
            "not_found",
            id,
        );
        assert_error(
            &api.post(&format!("/v1/messages/{id}/cancel"), &json!({}))
                .await,
            404,
            "not_found",
            id,
        );
    }
    assert_error(
        &api.get("/v1/messages?status=done").await,
        422,
        "status_invalid",
        "status",
    );
    assert_error(
        &api.get("/v1/messages?limit=0").await,
        422,
        "limit_invalid",
        "limit 0",
    );
    assert_error(
        &api.get("/v1/messages?limit=abc").await,
        422,
        "invalid_query",
        "limit abc",
    );
    assert_error(
        &api.get("/v1/messages?cursor=xyz").await,
        422,
        "cursor_invalid",
        "cursor",
    );
    assert_error(
        &api.get("/v1/messages?to=044").await,
        422,
        "phone_too_short",
        "to filter",
    );
    assert_error(
        &api.get("/v1/messages?created_after=yesterday").await,
        422,
        "time_invalid",
        "time",
    );
    assert_error(
        &api.get("/v1/messages?color=red").await,
        422,
        "invalid_query",
        "unknown param",
    );

    // POST /v1/estimate
    assert_error(
        &api.post_raw("/v1/estimate", "application/json", b"{".to_vec())
            .await,
        400,
        "invalid_json",
        "estimate JSON",
    );
    assert_error(
        &api.post("/v1/estimate", &json!({"txt": "x"})).await,
        422,
        "invalid_request",
        "estimate field",
    );

    // Receipts without the provider's token, or with garbage.
    let r = api
        .http
        .post(holub.url("/v1/receipts/simulator"))
        .json(&json!({"receipts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = api
        .http
        .post(holub.url("/v1/receipts/simulator"))
        .bearer_auth("forged")
        .body("{\"receipts\": [{\"message_id\": \"x\"}]}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    assert_error(
        &api.get("/v1/nothing-here").await,
        404,
        "route_not_found",
        "unknown route",
    );

    // Nothing of the above was stored.
    let listed = api.get("/v1/messages").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["messages"], json!([]));

    // And the service still works.
    assert_eq!(api.post(m, &ok).await.status, 202);
    let e = api
        .post(
            "/v1/estimate",
            &json!({"text": "Привіт", "transliterate": true}),
        )
        .await;
    assert_eq!(e.status, 200);
    assert_eq!(e.body["text"], "Pryvit");
    assert_eq!(e.body["encoding"], "GSM-7");
    let doc = reqwest::get(holub.url("/v1/openapi.json")).await.unwrap();
    assert_eq!(doc.status(), 200);
    let doc: serde_json::Value = doc.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/messages"]["post"].is_object());
    // The document states the limits the server holds to, so a generated request inside the
    // schema is not refused for a rule it does not state.
    let send = &doc["paths"]["/v1/messages"]["post"];
    let key = &send["parameters"][0];
    assert_eq!(key["name"], "Idempotency-Key");
    assert_eq!(
        (&key["schema"]["minLength"], &key["schema"]["maxLength"]),
        (&json!(1), &json!(255))
    );
    for (link, operation) in [
        ("GetMessage", "get_message"),
        ("CancelMessage", "cancel_message"),
    ] {
        let link = &send["responses"]["202"]["links"][link];
        assert_eq!(link["operationId"], operation, "{link}");
        assert_eq!(link["parameters"]["id"], "$response.body#/id");
    }
    let list = doc["paths"]["/v1/messages"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(
        list.iter()
            .all(|p| p["in"] == "query" && p["required"] == false)
    );
    let limit = list.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(500))
    );
    let batch = &doc["components"]["schemas"]["BatchRequest"]["properties"];
    assert_eq!(batch["recipients"]["minItems"], 1);
    assert_eq!(batch["recipients"]["maxItems"], 10_000);
    assert!(batch["from"]["pattern"].is_string());
    let estimate = &doc["paths"]["/v1/estimate"]["post"]["responses"];
    assert!(estimate["400"].is_object() && estimate["415"].is_object());
    // The callback URL pattern the document states is the one the server holds to.
    for schema in ["SendMessageRequest", "BatchRequest", "WebhookRequest"] {
        assert_eq!(
            doc["components"]["schemas"][schema]["properties"]["callback_url"]["pattern"],
            holub_shared::services::intake::CALLBACK_URL_PATTERN,
            "{schema}"
        );
    }
    let statuses = &doc["components"]["schemas"]["MessageStatus"]["enum"];
    assert!(statuses.as_array().unwrap().contains(&json!("unconfirmed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_blows_a_text_up_is_refused_for_its_recipient_alone() {
    let dir = TempDir::new("blow-up");
    let keys = create_tenant(dir.path(), "Blow-up");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let a = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "{{v}} {{v}} {{v}}", "recipients": [
                {"to": "0671234567", "variables": {"v": "я".repeat(3000)}},
                {"to": "0671234568", "variables": {"v": "ok"}}
            ]}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    assert_eq!(a.body["accepted"], 1, "{:?}", a.body);
    assert_eq!(a.body["results"][0]["error"]["code"], "text_too_long");
    assert_eq!(a.body["results"][1]["status"], "accepted");
}
