//! Tracked links through `holub serve`: a message sent with `track_links` carries short links
//! of its own (its parts counted with them), each redirects to its URL, clicks by people and
//! by preview fetchers are counted apart, the first click by a person is told by a signed
//! `message.clicked` callback, and the click-through rate reaches the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::{Value, json};

const FLAGS: &[&str] = &[
    "--sync",
    "normal",
    "--sim-receipt-delay-ms",
    "100",
    "--sim-delivered-ratio",
    "1.0",
    "--rollup-every",
    "1",
];

const PHONE: &str =
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36";
const PREVIEW: &str = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)";

#[derive(Clone, Default)]
struct Caught {
    posts: Arc<Mutex<Vec<(Value, bool)>>>,
    secret: String,
}

async fn catch(State(c): State<Caught>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers
        .get("holub-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let signed = holub_shared::services::callbacks::verify(
        c.secret.as_bytes(),
        header,
        &body,
        Utc::now().timestamp(),
    );
    let events: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut posts = c.posts.lock().unwrap();
    for event in events.as_array().cloned().unwrap_or_default() {
        posts.push((event, signed));
    }
    StatusCode::NO_CONTENT
}

async fn receiver(secret: &str) -> (String, Caught) {
    let caught = Caught {
        secret: secret.to_owned(),
        ..Caught::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(catch))
        .with_state(caught.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, caught)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_flows_from_the_short_link_to_the_report_and_a_signed_callback() {
    let dir = TempDir::new("links");
    let keys = create_tenant(dir.path(), "Links");
    let (hook, caught) = receiver(&keys.webhook_secret).await;
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);

    let text = "Ваше замовлення №1542 готове: https://shop.example.ua/orders/1542?t=Zk81c. \
                Оцінка: https://shop.example.ua/feedback";
    let a = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": text, "track_links": true,
                "callback_url": hook, "callback_statuses": ["delivered"], "reference": "o-1542"}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let links = a.body["links"].as_array().unwrap().clone();
    assert_eq!(links.len(), 2);
    assert_eq!(
        links[0]["url"],
        "https://shop.example.ua/orders/1542?t=Zk81c"
    );
    assert_eq!(links[1]["url"], "https://shop.example.ua/feedback");
    // The text as sent has the short links instead, and its parts are counted with them.
    let sent = a.body["text"].as_str().unwrap();
    let short = |l: &Value| format!("{}/{}", holub.base_url, l["code"].as_str().unwrap());
    assert_eq!(
        sent,
        format!(
            "Ваше замовлення №1542 готове: {}. Оцінка: {}",
            short(&links[0]),
            short(&links[1])
        )
    );
    let estimate = api.post("/v1/estimate", &json!({"text": sent})).await;
    assert_eq!(estimate.status, 200, "{:?}", estimate.body);
    assert_eq!(a.body["segments"], estimate.body["segments"]);
    api.wait_terminal(&id, Duration::from_secs(20)).await;

    // A messenger unfolds the link first; then the person taps it, twice.
    let code = links[0]["code"].as_str().unwrap();
    for agent in [PREVIEW, PHONE, PHONE] {
        let (status, location) = api.click(code, Some(agent)).await;
        assert_eq!(status, 302);
        assert_eq!(
            location.as_deref(),
            Some("https://shop.example.ua/orders/1542?t=Zk81c")
        );
    }
    let m = api.get(&format!("/v1/messages/{id}")).await;
    assert_eq!(m.body["clicks"], 2, "{:?}", m.body);
    assert_eq!(m.body["bot_clicks"], 1);
    assert!(m.body["clicked_at"].is_string());

    // One signed `message.clicked` callback, though the URL asked for `delivered` only.
    let deadline = Instant::now() + Duration::from_secs(20);
    let clicked = loop {
        let found = caught
            .posts
            .lock()
            .unwrap()
            .iter()
            .find(|(e, _)| e["type"] == "message.clicked")
            .cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no message.clicked callback");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(clicked.1, "the callback is signed");
    assert_eq!(clicked.0["event_id"], format!("{id}.clicked"));
    assert_eq!(clicked.0["message_id"], id.as_str());
    assert_eq!(clicked.0["reference"], "o-1542");
    assert_eq!(clicked.0["at"], m.body["clicked_at"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posts = caught.posts.lock().unwrap().clone();
    assert_eq!(
        posts
            .iter()
            .filter(|(e, _)| e["type"] == "message.clicked")
            .count(),
        1,
        "{posts:?}"
    );
    assert!(
        posts
            .iter()
            .all(|(e, _)| e["type"] == "message.clicked" || e["status"] == "delivered")
    );

    // The report: one delivered, one clicked by a person, CTR 100%.
    let deadline = Instant::now() + Duration::from_secs(20);
    let day = chrono::Duration::days(1);
    let range = format!(
        "/v1/analytics/summary?from={}&to={}",
        (Utc::now() - day).format("%Y-%m-%dT%H:00:00Z"),
        (Utc::now() + day).format("%Y-%m-%dT%H:00:00Z")
    );
    loop {
        let r = api.get(&range).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let t = &r.body["totals"];
        if t["clicks"] == 2 {
            assert_eq!(t["clicked"], 1, "{t}");
            assert_eq!(t["bot_clicks"], 1, "{t}");
            assert_eq!(t["delivered"], 1, "{t}");
            assert_eq!(t["ctr"], 1.0, "{t}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the clicks never reached the report: {t}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipient_gets_links_of_its_own_and_unknown_codes_are_not_found() {
    let dir = TempDir::new("links-batch");
    let keys = create_tenant(dir.path(), "Links");
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);

    let a = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "{{name}}, -20% до неділі: https://shop.ua/sale",
                "track_links": true,
                "recipients": [
                    {"to": "0671234567", "variables": {"name": "Олено"}},
                    {"to": "0501234567", "variables": {"name": "Петре"}},
                    {"to": "0931234567", "variables": {"name": "Ірино"}}]}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let mut codes = Vec::new();
    for r in a.body["results"].as_array().unwrap() {
        let m = api
            .get(&format!("/v1/messages/{}", r["id"].as_str().unwrap()))
            .await;
        let links = m.body["links"].as_array().unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0]["url"], "https://shop.ua/sale");
        codes.push(links[0]["code"].as_str().unwrap().to_owned());
    }
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 3, "one code per recipient");
    for code in &codes {
        let (status, location) = api.click(code, Some(PHONE)).await;
        assert_eq!(
            (status, location.as_deref()),
            (302, Some("https://shop.ua/sale"))
        );
    }

    // Without `track_links` the text is left alone.
    let plain = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "https://shop.ua/sale"}),
        )
        .await;
    assert_eq!(plain.body["text"], "https://shop.ua/sale");
    assert_eq!(plain.body["links"], json!([]));

    // Codes nobody was given, and paths that cannot be codes: 404 with a stable code.
    for path in [
        "AAAAAAAAAA",
        "zzzzzzzzz1",
        "short",
        "%D0%B0%D0%B1",
        "AAAAAAAAAAA",
    ] {
        let a = api.get(&format!("/{path}")).await;
        assert_eq!(a.status, 404, "{path}: {:?}", a.body);
        assert_eq!(a.body["error"]["code"], "link_not_found", "{path}");
    }
    // `track_links` must be a boolean.
    let bad = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "x", "track_links": "yes"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
}
