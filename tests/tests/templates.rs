//! Message templates through the API of a running `holub serve`: versions, unique names, the
//! estimate of a message from one, bad input, and tenant isolation.

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_keep_their_versions_and_names_and_estimate_their_messages() {
    let dir = TempDir::new("templates");
    let keys = create_tenant(dir.path(), "Templates");
    let other = create_tenant(dir.path(), "Other");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let price = api.get("/v1/limits").await.body["limits"]["segment_price_kopiyky"]
        .as_i64()
        .expect("a price per part");

    let t = api
        .post(
            "/v1/templates",
            &json!({"name": "Знижка вихідного дня", "category": "marketing",
                "text": "{{name}}, знижка {{discount}}% до неділі! {{name}}, чекаємо."}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let id = t.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("tpl_"));
    assert_eq!(t.body["version"], 1);
    assert_eq!(t.body["category"], "marketing");
    assert_eq!(t.body["placeholders"], json!(["name", "discount"]));
    // The shortest message: placeholders empty, the opt-out line added; Cyrillic, so UCS-2.
    let e = &t.body["estimate"];
    assert_eq!(e["encoding"], "UCS-2", "{e}");
    assert_eq!(e["placeholders_empty"], true);
    let segments = e["segments"].as_i64().unwrap();
    assert!(segments >= 1);
    assert_eq!(e["cost_kopiyky"].as_i64(), Some(segments * price));

    // Names are unique, whatever the case.
    let dup = api
        .post(
            "/v1/templates",
            &json!({"name": "знижка ВИХІДНОГО дня", "text": "x"}),
        )
        .await;
    assert_eq!(dup.status, 409, "{:?}", dup.body);
    assert_eq!(dup.body["error"]["code"], "template_name_taken");

    // A change is a new version; the old one is kept as it was.
    let v2 = api
        .put(
            &format!("/v1/templates/{id}"),
            &json!({"text": "Sale -{{discount}}% until Sunday"}),
        )
        .await;
    assert_eq!(v2.status, 200, "{:?}", v2.body);
    assert_eq!(v2.body["version"], 2);
    assert_eq!(v2.body["name"], "Знижка вихідного дня");
    assert_eq!(v2.body["category"], "marketing");
    assert_eq!(v2.body["estimate"]["encoding"], "GSM-7");
    let v1 = api.get(&format!("/v1/templates/{id}?version=1")).await;
    assert_eq!(v1.status, 200, "{:?}", v1.body);
    assert!(
        v1.body["text"]
            .as_str()
            .unwrap()
            .starts_with("{{name}}, знижка")
    );
    assert_eq!(v1.body["latest_version"], 2);
    let latest = api.get(&format!("/v1/templates/{id}")).await;
    assert_eq!(latest.body["version"], 2);
    assert_eq!(
        api.get(&format!("/v1/templates/{id}?version=3"))
            .await
            .status,
        404
    );

    // A renamed template frees its old name.
    let other_tpl = api
        .post(
            "/v1/templates",
            &json!({"name": "Нагадування", "text": "Ваш запис на {{time}}"}),
        )
        .await;
    assert_eq!(other_tpl.status, 201, "{:?}", other_tpl.body);
    assert_eq!(other_tpl.body["category"], "transactional");
    let clash = api
        .put(
            &format!("/v1/templates/{id}"),
            &json!({"name": "нагадування"}),
        )
        .await;
    assert_eq!(clash.status, 409, "{:?}", clash.body);
    let renamed = api
        .put(
            &format!("/v1/templates/{id}"),
            &json!({"name": "Осінній розпродаж"}),
        )
        .await;
    assert_eq!(renamed.body["version"], 3, "{:?}", renamed.body);
    let reuse = api
        .post(
            "/v1/templates",
            &json!({"name": "Знижка вихідного дня", "text": "y"}),
        )
        .await;
    assert_eq!(reuse.status, 201, "{:?}", reuse.body);

    // Listed oldest first, a page at a time.
    let page = api.get("/v1/templates?limit=2").await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let names: Vec<&str> = page.body["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Осінній розпродаж", "Нагадування"]);
    let next = page.body["next"].as_str().unwrap();
    let rest = api
        .get(&format!("/v1/templates?limit=2&cursor={next}"))
        .await;
    assert_eq!(rest.body["templates"][0]["name"], "Знижка вихідного дня");

    // Another account sees none of it, and cannot change or delete it.
    let them = Api::new(&holub, &other.api_key);
    assert_eq!(them.get(&format!("/v1/templates/{id}")).await.status, 404);
    assert_eq!(
        them.get(&format!("/v1/templates/{id}?version=1"))
            .await
            .status,
        404
    );
    assert_eq!(
        them.put(&format!("/v1/templates/{id}"), &json!({"text": "z"}))
            .await
            .status,
        404
    );
    assert_eq!(
        them.delete(&format!("/v1/templates/{id}")).await.status,
        404
    );
    assert!(
        them.get("/v1/templates").await.body["templates"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Deleted: gone from the list, its versions still readable by number.
    assert_eq!(api.delete(&format!("/v1/templates/{id}")).await.status, 204);
    assert_eq!(api.get(&format!("/v1/templates/{id}")).await.status, 404);
    let kept = api.get(&format!("/v1/templates/{id}?version=2")).await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    assert_eq!(kept.body["latest_version"], serde_json::Value::Null);
    assert_eq!(api.delete(&format!("/v1/templates/{id}")).await.status, 404);
    let after = api
        .put(&format!("/v1/templates/{id}"), &json!({"text": "z"}))
        .await;
    assert_eq!(after.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_templates_are_refused_by_name() {
    let dir = TempDir::new("templates-bad");
    let keys = create_tenant(dir.path(), "Templates");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    for (body, code) in [
        (json!({"name": " ", "text": "x"}), "template_name_invalid"),
        (
            json!({"name": "a\u{7}", "text": "x"}),
            "template_name_invalid",
        ),
        (
            json!({"name": "я".repeat(101), "text": "x"}),
            "template_name_invalid",
        ),
        (json!({"name": "n", "text": " \n "}), "text_empty"),
        (
            json!({"name": "n", "text": "a\u{9b}"}),
            "text_control_character",
        ),
        (
            json!({"name": "n", "text": "я".repeat(2001)}),
            "text_too_long",
        ),
    ] {
        let r = api.post("/v1/templates", &body).await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{:?}", r.body);
    }
    for body in [
        json!({"name": "n"}),
        json!({"name": "n", "text": "x", "category": "spam"}),
        json!({"name": "n", "text": "x", "colour": 1}),
        json!(["n", "x"]),
    ] {
        let r = api.post("/v1/templates", &body).await;
        assert!(r.status == 400 || r.status == 422, "{body}: {:?}", r.body);
    }
    assert!(
        api.get("/v1/templates").await.body["templates"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for path in [
        "/v1/templates?limit=0",
        "/v1/templates?limit=101",
        "/v1/templates?cursor=nope",
        "/v1/templates?colour=red",
    ] {
        assert_eq!(api.get(path).await.status, 422, "{path}");
    }
    let t = api
        .post("/v1/templates", &json!({"name": "n", "text": "x"}))
        .await;
    let id = t.body["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/v1/templates/{id}?version=0"))
            .await
            .status,
        422
    );
    assert_eq!(
        api.get(&format!("/v1/templates/{id}?version=x"))
            .await
            .status,
        422
    );
    assert_eq!(api.get("/v1/templates/not-an-id").await.status, 404);
    let r = api
        .put(&format!("/v1/templates/{id}"), &json!({"text": ""}))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(
        api.get(&format!("/v1/templates/{id}")).await.body["version"],
        1
    );
    // Scopes: making needs messages:send, reading messages:read.
    let r = api
        .post(
            "/v1/keys",
            &json!({"name": "reader", "scopes": ["messages:read"]}),
        )
        .await;
    let reader = api.with_key(r.body["key"].as_str().unwrap());
    assert_eq!(reader.get("/v1/templates").await.status, 200);
    let w = reader
        .post("/v1/templates", &json!({"name": "m", "text": "x"}))
        .await;
    assert_eq!(w.status, 403, "{:?}", w.body);
}
