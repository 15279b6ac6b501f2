//! Consent to marketing through `holub serve`: a marketing message reaches only a number
//! whose consent is on record, carries an opt-out link that works with one tap and no login,
//! stops at an opt-out (also one that arrives while it waits), and keeps to the tenant's
//! sending window; transactional messages need none of it.

use std::time::Duration;

use chrono::{Timelike, Utc};
use holub_tests::{Api, Holub, TempDir, create_tenant, tenant_command};
use serde_json::{Value, json};

const FLAGS: &[&str] = &[
    "--sync",
    "normal",
    "--sim-receipt-delay-ms",
    "100",
    "--sim-delivered-ratio",
    "1.0",
];

fn set_window(dir: &TempDir, tenant: &str, window: &str) {
    tenant_command(
        dir.path(),
        &[
            "limits",
            "--tenant",
            tenant,
            "--set",
            &format!("marketing_window={window}"),
        ],
    )
    .expect("set the marketing window");
}

fn given(phone: &str) -> Value {
    json!({"phone": phone, "state": "given", "source": "web_form",
        "evidence": "Форма підписки №8812, 2026-11-30, галочка «Згоден на розсилку»"})
}

fn marketing(to: &str) -> Value {
    json!({"to": to, "from": "Holub", "category": "marketing",
        "text": "Знижка 20% на все до неділі!"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_reaches_only_consenting_numbers_and_stops_at_an_opt_out() {
    let dir = TempDir::new("consent");
    let keys = create_tenant(dir.path(), "Consent");
    let other = create_tenant(dir.path(), "Other");
    set_window(&dir, &keys.tenant_id, "00:00-24:00");
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);

    // No consent on record: refused by name, nothing stored.
    let r = api.post("/v1/messages", &marketing("0671234567")).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "consent_missing");
    assert_eq!(r.body["error"]["field"], "to");
    assert!(api.all_messages().await.is_empty());

    // Consent recorded (the number in any typing): the ledger says so.
    let c = api.post("/v1/consents", &given("(067) 123-45-67")).await;
    assert_eq!(c.status, 201, "{:?}", c.body);
    assert_eq!(c.body["phone"], "+380671234567");
    assert_eq!(c.body["state"], "given");
    let entry = &c.body["entries"][0];
    assert_eq!(entry["change"], "given");
    assert_eq!(entry["source"], "web_form");
    assert_eq!(entry["recorded_by"]["kind"], "api_key");
    assert!(entry["evidence"].as_str().unwrap().contains("№8812"));

    // Now it goes, with the opt-out link at its end, counted in its parts.
    let m = api.post("/v1/messages", &marketing("0671234567")).await;
    assert_eq!(m.status, 202, "{:?}", m.body);
    assert_eq!(m.body["category"], "marketing");
    let code = m.body["opt_out"].as_str().unwrap().to_owned();
    let link = format!("{}/{code}", holub.base_url);
    assert_eq!(
        m.body["text"],
        format!("Знижка 20% на все до неділі!\nВідписатися: {link}")
    );
    let estimate = api
        .post("/v1/estimate", &json!({"text": m.body["text"]}))
        .await;
    assert_eq!(m.body["segments"], estimate.body["segments"]);
    let id = m.body["id"].as_str().unwrap().to_owned();
    let done = api.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "delivered", "{done}");

    // A blank text is refused as blank, whole: the opt-out line does not make it a message.
    for text in ["", "  \n "] {
        let one = json!({"to": "0671234567", "from": "Holub", "category": "marketing",
            "text": text});
        let r = api.post("/v1/messages", &one).await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "text_empty");
        let batch = json!({"from": "Holub", "category": "marketing", "text": text,
            "recipients": [{"to": "0671234567"}]});
        let r = api.post("/v1/messages/batch", &batch).await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "text_empty");
    }

    // A Latin text gets a Latin label: the link never makes it UCS-2.
    let latin = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "category": "marketing",
                "text": "Sale -20% until Sunday"}),
        )
        .await;
    assert_eq!(latin.status, 202, "{:?}", latin.body);
    assert_eq!(latin.body["encoding"], "GSM-7");
    assert!(
        latin.body["text"]
            .as_str()
            .unwrap()
            .starts_with("Sale -20% until Sunday\nVidpysatysia: http")
    );

    // A batch: each recipient checked on its own.
    let c = api.post("/v1/consents", &given("0501112233")).await;
    assert_eq!(c.status, 201);
    let w = api
        .post(
            "/v1/consents",
            &json!({"phone": "0501112233", "state": "withdrawn", "channel": "console"}),
        )
        .await;
    assert_eq!(w.status, 201, "{:?}", w.body);
    assert_eq!(w.body["state"], "withdrawn");
    let b = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "category": "marketing", "text": "Привіт, {{name}}!",
                "recipients": [
                    {"to": "0671234567", "variables": {"name": "Олено"}},
                    {"to": "0939998877", "variables": {"name": "Петре"}},
                    {"to": "0501112233", "variables": {"name": "Іване"}}]}),
        )
        .await;
    assert_eq!(b.status, 202, "{:?}", b.body);
    assert_eq!(b.body["accepted"], 1);
    let results = b.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[1]["error"]["code"], "consent_missing");
    assert_eq!(results[1]["error"]["field"], "recipients[1].to");
    assert_eq!(results[2]["error"]["code"], "consent_withdrawn");

    // Opening the opt-out link (or a messenger unfolding it) changes nothing: a page in
    // Ukrainian with one button.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.headers()["cache-control"], "private, no-store");
    let html = page.text().await.unwrap();
    assert!(html.contains("lang=\"uk\""), "{html}");
    assert!(html.contains("<strong>Holub</strong>"), "{html}");
    assert!(html.contains(&format!("action=\"/{code}\"")), "{html}");
    let ledger = api.get("/v1/consents/+380671234567").await;
    assert_eq!(ledger.body["state"], "given");

    // The tap: withdrawn, by the subscriber, through the link.
    let tap = http.post(&link).send().await.unwrap();
    assert_eq!(tap.status(), 200);
    assert!(tap.text().await.unwrap().contains("Ви відписалися"));
    let ledger = api.get("/v1/consents/0671234567").await;
    assert_eq!(ledger.status, 200, "{:?}", ledger.body);
    assert_eq!(ledger.body["state"], "withdrawn");
    let last = ledger.body["entries"].as_array().unwrap().last().unwrap();
    assert_eq!(last["change"], "withdrawn");
    assert_eq!(last["channel"], "opt_out_link");
    assert_eq!(last["recorded_by"]["kind"], "subscriber");

    // No more marketing to it; transactional messages still go.
    let r = api.post("/v1/messages", &marketing("0671234567")).await;
    assert_eq!(r.body["error"]["code"], "consent_withdrawn", "{:?}", r.body);
    let otp = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "Код: 4821"}),
        )
        .await;
    assert_eq!(otp.status, 202, "{:?}", otp.body);
    assert_eq!(otp.body["category"], "transactional");
    assert!(otp.body["opt_out"].is_null());

    // Another tenant sees nothing of this tenant's ledger.
    let them = Api::new(&holub, &other.api_key);
    let theirs = them.get("/v1/consents/0671234567").await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.body["state"], "none");
    assert!(theirs.body["entries"].as_array().unwrap().is_empty());

    // Unknown codes, and a tracked-link code is no opt-out code.
    let none = http
        .post(format!("{}/AAAAAAAAAA", holub.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_that_comes_while_a_message_waits_stops_it_at_dispatch() {
    let dir = TempDir::new("consent-dispatch");
    let keys = create_tenant(dir.path(), "Consent");
    set_window(&dir, &keys.tenant_id, "00:00-24:00");
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);

    for phone in ["0672223344", "0672223355"] {
        assert_eq!(api.post("/v1/consents", &given(phone)).await.status, 201);
    }
    // Both accepted (consent given), to go out in three seconds.
    let send_at = (Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let mut ids = Vec::new();
    for phone in ["0672223344", "0672223355"] {
        let mut body = marketing(phone);
        body["send_at"] = json!(send_at);
        let m = api.post("/v1/messages", &body).await;
        assert_eq!(m.status, 202, "{:?}", m.body);
        assert_eq!(m.body["status"], "scheduled");
        ids.push(m.body["id"].as_str().unwrap().to_owned());
    }
    // One number opts out (through the API, as a reply would) before they go.
    let w = api
        .post(
            "/v1/consents",
            &json!({"phone": "0672223344", "state": "withdrawn", "channel": "reply"}),
        )
        .await;
    assert_eq!(w.status, 201, "{:?}", w.body);

    let stopped = api.wait_terminal(&ids[0], Duration::from_secs(30)).await;
    assert_eq!(stopped["status"], "rejected", "{stopped}");
    assert_eq!(stopped["error"]["code"], "consent_withdrawn");
    assert!(stopped["provider"].is_null(), "never handed to a provider");
    let sent = api.wait_terminal(&ids[1], Duration::from_secs(30)).await;
    assert_eq!(sent["status"], "delivered", "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketing_outside_the_window_waits_for_it_and_transactional_never_does() {
    let dir = TempDir::new("consent-window");
    let keys = create_tenant(dir.path(), "Consent");
    // A one-hour window that is closed now, on Kyiv's clock.
    let hour = holub_shared::domain::kyiv::to_local(Utc::now()).hour();
    let window = if hour >= 2 {
        "00:00-01:00"
    } else {
        "12:00-13:00"
    };
    set_window(&dir, &keys.tenant_id, window);
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);
    assert_eq!(
        api.post("/v1/consents", &given("0673334455")).await.status,
        201
    );

    let m = api.post("/v1/messages", &marketing("0673334455")).await;
    assert_eq!(m.status, 202, "{:?}", m.body);
    assert_eq!(m.body["status"], "scheduled");
    let send_at = chrono::DateTime::parse_from_rfc3339(m.body["send_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let local = holub_shared::domain::kyiv::to_local(send_at);
    assert_eq!(
        (local.hour(), local.minute()),
        (if hour >= 2 { 0 } else { 12 }, 0)
    );
    assert!(send_at > Utc::now());
    // Its validity counts from the opening.
    let expires = chrono::DateTime::parse_from_rfc3339(m.body["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(expires - send_at, chrono::Duration::days(1));

    let otp = api
        .post(
            "/v1/messages",
            &json!({"to": "0673334455", "from": "Holub", "text": "Код: 1234"}),
        )
        .await;
    assert_eq!(otp.body["status"], "queued", "{:?}", otp.body);
    let done = api
        .wait_terminal(otp.body["id"].as_str().unwrap(), Duration::from_secs(20))
        .await;
    assert_eq!(done["status"], "delivered");
    let waiting = api
        .get(&format!("/v1/messages/{}", m.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(waiting.body["status"], "scheduled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_consent_requests_are_refused_by_name_and_record_nothing() {
    let dir = TempDir::new("consent-bad");
    let keys = create_tenant(dir.path(), "Consent");
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let cases = [
        (
            json!({"phone": "12345", "state": "given", "source": "app", "evidence": "x"}),
            "phone",
        ),
        (
            json!({"phone": "0671234567", "state": "given", "evidence": "x"}),
            "source",
        ),
        (
            json!({"phone": "0671234567", "state": "given", "source": "app"}),
            "evidence",
        ),
        (
            json!({"phone": "0671234567", "state": "given", "source": "app", "evidence": " "}),
            "evidence",
        ),
        (
            json!({"phone": "0671234567", "state": "given", "source": "app",
                "evidence": "я".repeat(1001)}),
            "evidence",
        ),
        (
            json!({"phone": "0671234567", "state": "given", "source": "app", "evidence": "x",
                "at": "yesterday"}),
            "at",
        ),
        (
            json!({"phone": "0671234567", "state": "withdrawn", "source": "app"}),
            "source",
        ),
        (
            json!({"phone": "0671234567", "state": "withdrawn", "channel": "opt_out_link"}),
            "channel",
        ),
    ];
    for (body, field) in cases {
        let r = api.post("/v1/consents", &body).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {:?}", r.body);
    }
    // Dated ahead of the server's clock, it would outrank every entry until then: a
    // conflict with the clock, not a malformed body.
    let r = api
        .post(
            "/v1/consents",
            &json!({"phone": "0671234567", "state": "given", "source": "app", "evidence": "x",
                "at": future}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "time_in_future");
    // A control character in evidence, C1 included.
    let r = api
        .post(
            "/v1/consents",
            &json!({"phone": "0671234567", "state": "given", "source": "app", "evidence": "a\u{9b}b"}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    for body in [
        json!({"phone": "0671234567", "state": "maybe"}),
        json!({"phone": "0671234567", "state": "given", "source": "telepathy", "evidence": "x"}),
        json!({"phone": "0671234567", "state": "given", "source": "app", "evidence": "x", "colour": 1}),
    ] {
        let r = api.post("/v1/consents", &body).await;
        assert!(r.status == 400 || r.status == 422, "{body}: {:?}", r.body);
    }
    let ledger = api.get("/v1/consents/0671234567").await;
    assert_eq!(ledger.body["state"], "none");
    assert!(ledger.body["entries"].as_array().unwrap().is_empty());
    let bad = api.get("/v1/consents/not-a-number").await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    // A category that does not exist.
    let r = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "x", "category": "spam"}),
        )
        .await;
    assert!(r.status == 400 || r.status == 422, "{:?}", r.body);
    // A key without contacts:write cannot touch the ledger.
    let r = api
        .post(
            "/v1/keys",
            &json!({"name": "reader", "scopes": ["messages:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let reader = api.with_key(r.body["key"].as_str().unwrap());
    let r = reader.post("/v1/consents", &given("0671234567")).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "insufficient_scope");
    assert_eq!(reader.get("/v1/consents/0671234567").await.status, 403);
}
