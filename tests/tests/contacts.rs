//! The address book through `holub serve`: contacts added and merged by number (in any
//! typing), changed, searched, paged by list and deleted; each tenant sees only its own;
//! bad input refused by name; the number, name and attributes never in the database in clear.

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::{Value, json};

fn names(page: &Value) -> Vec<String> {
    page["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_merged_by_number_searched_and_paged_by_list() {
    let dir = TempDir::new("contacts");
    let keys = create_tenant(dir.path(), "Contacts");
    let other = create_tenant(dir.path(), "Other");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);

    let a = api
        .post(
            "/v1/contacts",
            &json!({"phone": "067 123 45 67", "name": "Олена Коваль",
                "attributes": {"city": "Київ", "discount": "20"}, "lists": ["VIP", "Клієнти Київ"]}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["phone"], "+380671234567");
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("con_"));

    // The same number, typed otherwise: merged, not duplicated.
    let m = api
        .post(
            "/v1/contacts",
            &json!({"phone": "+380671234567", "attributes": {"discount": "25"},
                "lists": ["Розсилка"]}),
        )
        .await;
    assert_eq!(m.status, 200, "{:?}", m.body);
    assert_eq!(m.body["id"], id.as_str());
    assert_eq!(m.body["name"], "Олена Коваль");
    assert_eq!(
        m.body["attributes"],
        json!({"city": "Київ", "discount": "25"})
    );
    assert_eq!(m.body["lists"], json!(["VIP", "Клієнти Київ", "Розсилка"]));

    for (phone, name, lists) in [
        ("0501112233", "Петро Іваненко", json!(["VIP"])),
        ("0931112233", "Ірина Шевченко", json!(["Клієнти Київ"])),
        ("0971112233", "Андрій Мельник", json!([])),
    ] {
        let r = api
            .post(
                "/v1/contacts",
                &json!({"phone": phone, "name": name, "lists": lists}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }

    // Pages, oldest first, by list, by number, by text.
    let all = api.get("/v1/contacts?limit=3").await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(
        names(&all.body),
        ["Олена Коваль", "Петро Іваненко", "Ірина Шевченко"]
    );
    let cursor = all.body["next"].as_str().unwrap();
    let rest = api
        .get(&format!("/v1/contacts?limit=3&cursor={cursor}"))
        .await;
    assert_eq!(names(&rest.body), ["Андрій Мельник"]);
    assert!(rest.body["next"].is_null());
    let vip = api.get("/v1/contacts?list=VIP").await;
    assert_eq!(names(&vip.body), ["Олена Коваль", "Петро Іваненко"]);
    let kyiv = api.get("/v1/contacts?list=%D0%9A%D0%BB%D1%96%D1%94%D0%BD%D1%82%D0%B8%20%D0%9A%D0%B8%D1%97%D0%B2").await;
    assert_eq!(names(&kyiv.body), ["Олена Коваль", "Ірина Шевченко"]);
    let by_phone = api.get("/v1/contacts?phone=0931112233").await;
    assert_eq!(names(&by_phone.body), ["Ірина Шевченко"]);
    let by_text = api.get("/v1/contacts?q=%D1%96%D0%B2%D0%B0%D0%BD").await; // "іван"
    assert_eq!(names(&by_text.body), ["Петро Іваненко"]);
    let lists = api.get("/v1/lists").await;
    assert_eq!(
        lists.body["lists"],
        json!(["VIP", "Клієнти Київ", "Розсилка"])
    );

    // Changed: the fields given replace the stored ones.
    let p = api
        .patch(
            &format!("/v1/contacts/{id}"),
            &json!({"name": "", "lists": ["VIP"]}),
        )
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert!(p.body["name"].is_null());
    assert_eq!(p.body["lists"], json!(["VIP"]));
    assert_eq!(p.body["attributes"]["discount"], "25");
    let lists = api.get("/v1/lists").await;
    assert_eq!(lists.body["lists"], json!(["VIP", "Клієнти Київ"]));

    // Another tenant sees none of it.
    let them = Api::new(&holub, &other.api_key);
    assert_eq!(them.get(&format!("/v1/contacts/{id}")).await.status, 404);
    assert!(names(&them.get("/v1/contacts").await.body).is_empty());
    assert_eq!(
        them.patch(&format!("/v1/contacts/{id}"), &json!({"name": "x"}))
            .await
            .status,
        404
    );
    assert_eq!(them.delete(&format!("/v1/contacts/{id}")).await.status, 404);

    // Deleted.
    assert_eq!(api.delete(&format!("/v1/contacts/{id}")).await.status, 204);
    assert_eq!(api.get(&format!("/v1/contacts/{id}")).await.status, 404);
    assert_eq!(api.delete(&format!("/v1/contacts/{id}")).await.status, 404);
    assert_eq!(
        names(&api.get("/v1/contacts?list=VIP").await.body),
        ["Петро Іваненко"]
    );

    // Nothing personal in the database in clear.
    drop(holub);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    for secret in ["380501112233", "Іваненко", "Шевченко"] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is stored in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_contacts_are_refused_by_name() {
    let dir = TempDir::new("contacts-bad");
    let keys = create_tenant(dir.path(), "Contacts");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let many_lists: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
    let many_attrs: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("a{i}"), json!("x"))).collect();
    for (body, code) in [
        (json!({"phone": "123"}), "phone"),
        (json!({"phone": "0671234567", "name": "a\u{0}b"}), "name"),
        (
            json!({"phone": "0671234567", "name": "я".repeat(201)}),
            "name",
        ),
        (
            json!({"phone": "0671234567", "attributes": {"міс то": "x"}}),
            "attributes",
        ),
        (
            json!({"phone": "0671234567", "attributes": many_attrs}),
            "attributes",
        ),
        (
            json!({"phone": "0671234567", "lists": ["a\u{7}b"]}),
            "lists",
        ),
        (json!({"phone": "0671234567", "lists": ["  "]}), "lists"),
        (json!({"phone": "0671234567", "lists": many_lists}), "lists"),
    ] {
        let r = api.post("/v1/contacts", &body).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], code, "{body}: {:?}", r.body);
    }
    // A merge that would overfill the stored contact: a conflict with it, nothing changed.
    let twenty: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
    let full = api
        .post(
            "/v1/contacts",
            &json!({"phone": "0501112233", "lists": twenty}),
        )
        .await;
    assert_eq!(full.status, 201, "{:?}", full.body);
    let r = api
        .post(
            "/v1/contacts",
            &json!({"phone": "0501112233", "lists": ["one more"]}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "too_many_lists");
    let id = full.body["id"].as_str().unwrap();
    let stored = api.get(&format!("/v1/contacts/{id}")).await;
    assert_eq!(stored.body["lists"].as_array().unwrap().len(), 20);
    let r = api.delete(&format!("/v1/contacts/{id}")).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A body that is not an object, though serde could read the fields from an array.
    let r = api
        .patch(&format!("/v1/contacts/{id}"), &json!([null, null]))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = api
        .post(
            "/v1/contacts",
            &json!({"phone": "0671234567", "colour": "red"}),
        )
        .await;
    assert!(r.status == 400 || r.status == 422, "{:?}", r.body);
    assert!(names(&api.get("/v1/contacts").await.body).is_empty());
    for path in [
        "/v1/contacts?limit=0",
        "/v1/contacts?cursor=nope",
        "/v1/contacts?phone=12",
        "/v1/contacts?list=a%07b",
        "/v1/contacts?q=",
        "/v1/contacts?colour=red",
    ] {
        assert_eq!(api.get(path).await.status, 422, "{path}");
    }
    assert_eq!(api.get("/v1/contacts/not-an-id").await.status, 404);
    // Scopes: writing needs contacts:write, reading contacts:read.
    let r = api
        .post(
            "/v1/keys",
            &json!({"name": "reader", "scopes": ["contacts:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let reader = api.with_key(r.body["key"].as_str().unwrap());
    assert_eq!(reader.get("/v1/contacts").await.status, 200);
    let w = reader
        .post("/v1/contacts", &json!({"phone": "0671234567"}))
        .await;
    assert_eq!(w.status, 403, "{:?}", w.body);
}
