//! Campaigns through `holub serve`: a template to lists of contacts at a pace, with its
//! estimate before it starts; only numbers with consent get it, an opt-out while it runs
//! stops the rest to that number; pause, resume and cancel; and a SIGKILL in the middle of
//! a large one loses no contact and sends none twice.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use holub_tests::{Api, Holub, TERMINAL, TempDir, create_tenant, holub_bin, tenant_command};
use serde_json::{Value, json};

const FLAGS: &[&str] = &[
    "--sync",
    "normal",
    "--sim-receipt-delay-ms",
    "100",
    "--sim-delivered-ratio",
    "1.0",
];

/// The tenant's marketing window open all day, so the tests do not depend on the hour.
fn any_hour(dir: &Path, tenant: &str) {
    tenant_command(
        dir,
        &[
            "limits",
            "--tenant",
            tenant,
            "--set",
            "marketing_window=00:00-24:00",
        ],
    )
    .expect("set the marketing window");
}

async fn template(api: &Api, category: &str) -> String {
    let t = api
        .post(
            "/v1/templates",
            &json!({"name": format!("Весна {category}"), "category": category,
                "text": "{{name}}, знижка {{discount}}% до неділі!"}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    t.body["id"].as_str().unwrap().to_owned()
}

async fn contact(api: &Api, phone: &str, name: &str, lists: &[&str]) {
    let c = api
        .post(
            "/v1/contacts",
            &json!({"phone": phone, "name": name, "attributes": {"discount": "20"},
                "lists": lists}),
        )
        .await;
    assert!(c.status == 201 || c.status == 200, "{:?}", c.body);
}

async fn consent(api: &Api, phone: &str) {
    let c = api
        .post(
            "/v1/consents",
            &json!({"phone": phone, "state": "given", "source": "web_form",
                "evidence": "Форма підписки на сайті, галочка «Згоден на розсилку»"}),
        )
        .await;
    assert_eq!(c.status, 201, "{:?}", c.body);
}

/// The campaign, once `done` says it is where the test waits for.
async fn wait_campaign(
    api: &Api,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let c = api.get(&format!("/v1/campaigns/{id}")).await;
        assert_eq!(c.status, 200, "{:?}", c.body);
        if done(&c.body) {
            return c.body;
        }
        assert!(
            Instant::now() < deadline,
            "campaign never got there: {}",
            c.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message of a batch, newest first.
async fn batch_messages(api: &Api, batch: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/messages?batch_id={batch}&limit=500&cursor={c}"),
            None => format!("/v1/messages?batch_id={batch}&limit=500"),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        out.extend(page.body["messages"].as_array().unwrap().iter().cloned());
        match page.body["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_reaches_consenting_contacts_at_its_pace_and_stops_at_an_opt_out() {
    let dir = TempDir::new("campaign");
    let keys = create_tenant(dir.path(), "Campaign");
    let other = create_tenant(dir.path(), "Other");
    any_hour(dir.path(), &keys.tenant_id);
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);
    let tpl = template(&api, "marketing").await;

    // Six on "Клієнти", two of them also on "VIP" with one more; no consent for one.
    let phones = [
        "0671110001",
        "0671110002",
        "0671110003",
        "0671110004",
        "0671110005",
        "0671110006",
        "0671110007",
    ];
    for (n, phone) in phones.iter().enumerate() {
        let lists: &[&str] = match n {
            0..=3 => &["Клієнти"],
            4 | 5 => &["Клієнти", "VIP"],
            _ => &["VIP"],
        };
        contact(&api, phone, &format!("Олено {n}"), lists).await;
        if n != 2 {
            consent(&api, phone).await;
        }
    }

    // The draft and its estimate: 6 + 3 places, one part each at the account's price.
    let made = api
        .post(
            "/v1/campaigns",
            &json!({"name": "Весняний розпродаж", "template_id": tpl,
                "lists": ["Клієнти", "VIP"], "from": "Holub", "pace_per_minute": 30}),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let c = &made.body;
    assert_eq!(c["state"], "draft");
    assert_eq!(c["category"], "marketing");
    assert_eq!(c["template_version"], 1);
    assert_eq!(c["estimate"]["recipients"], 9);
    let parts = c["estimate"]["segments_per_message"].as_u64().unwrap();
    assert!(parts >= 1);
    assert!(c["estimate"]["cost_kopiyky"].as_i64().unwrap() > 0);
    let id = c["id"].as_str().unwrap().to_owned();
    let batch = c["batch_id"].as_str().unwrap().to_owned();
    // The template changes after the campaign is made: the campaign keeps its version.
    let changed = api
        .put(
            &format!("/v1/templates/{tpl}"),
            &json!({"text": "Інший текст"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);

    // Another tenant sees nothing of it and cannot touch it.
    let them = Api::new(&holub, &other.api_key);
    assert_eq!(them.get(&format!("/v1/campaigns/{id}")).await.status, 404);
    assert_eq!(
        them.post(&format!("/v1/campaigns/{id}/start"), &json!({}))
            .await
            .status,
        404
    );
    assert!(
        them.get("/v1/campaigns").await.body["campaigns"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let started = api
        .post(&format!("/v1/campaigns/{id}/start"), &json!({}))
        .await;
    assert_eq!(started.status, 200, "{:?}", started.body);
    assert_eq!(started.body["state"], "running");
    let again = api
        .post(&format!("/v1/campaigns/{id}/start"), &json!({}))
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["error"]["code"], "campaign_state_conflict");

    // At 30 a minute, the six go two seconds apart (a contact on both lists once); the
    // last number opts out (a reply, recorded through the API) while its message waits.
    let expanded = wait_campaign(&api, &id, Duration::from_secs(30), |c| {
        c["progress"]["expanded"] == 6
    })
    .await;
    assert_eq!(expanded["progress"]["skipped"]["consent_missing"], 1);
    assert_eq!(expanded["progress"]["skipped_no_consent"], 1);
    let messages = batch_messages(&api, &batch).await;
    assert_eq!(messages.len(), 6);
    let mut sends: Vec<chrono::DateTime<chrono::Utc>> = messages
        .iter()
        .filter_map(|m| m["send_at"].as_str())
        .map(|s| s.parse().unwrap())
        .collect();
    sends.sort();
    assert!(
        sends.len() >= 5,
        "paced messages are scheduled: {messages:?}"
    );
    for pair in sends.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!((1900..=2100).contains(&gap), "two seconds apart: {gap} ms");
    }
    let withdrawn = api
        .post(
            "/v1/consents",
            &json!({"phone": "0671110007", "state": "withdrawn", "channel": "reply"}),
        )
        .await;
    assert_eq!(withdrawn.status, 201, "{:?}", withdrawn.body);

    // Each reaches the end; the one who opted out gets nothing.
    let mut by_phone = std::collections::HashMap::new();
    for m in &messages {
        let id = m["id"].as_str().unwrap();
        let done = api.wait_terminal(id, Duration::from_secs(60)).await;
        by_phone.insert(done["to"].as_str().unwrap().to_owned(), done);
    }
    assert!(
        !by_phone.contains_key("+380671110003"),
        "no consent, no message"
    );
    let stopped = &by_phone["+380671110007"];
    assert_eq!(stopped["status"], "rejected", "{stopped}");
    assert_eq!(stopped["error"]["code"], "consent_withdrawn");
    for phone in [
        "+380671110001",
        "+380671110002",
        "+380671110004",
        "+380671110005",
        "+380671110006",
    ] {
        let m = &by_phone[phone];
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["category"], "marketing");
        let text = m["text"].as_str().unwrap();
        assert!(text.starts_with("Олено "), "{text}");
        assert!(
            text.contains(", знижка 20% до неділі!"),
            "the pinned version: {text}"
        );
        assert!(text.contains("Відписатися: "), "{text}");
    }

    // A subscriber taps the opt-out link of the message they got: counted in the campaign.
    let code = by_phone["+380671110001"]["opt_out"].as_str().unwrap();
    let http = reqwest::Client::new();
    let tap = http
        .post(format!("{}/{code}", holub.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(tap.status(), 200);
    let done = wait_campaign(&api, &id, Duration::from_secs(60), |c| {
        c["state"] == "completed"
            && c["progress"]["statuses"]["delivered"] == 5
            && c["progress"]["statuses"]["rejected"] == 1
            && c["progress"]["opted_out"] == 1
    })
    .await;
    assert_eq!(done["progress"]["statuses"]["rejected"], 1, "{done}");
    let rate = done["progress"]["delivery_rate"].as_f64().unwrap();
    assert!((rate - 5.0 / 6.0).abs() < 0.001, "{done}");
    assert!(done["finished_at"].is_string());
    // The reports group by campaign: this one, and messages of no campaign apart.
    let otp = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": "Код 4821", "recipients": [{"to": "0671110009"}]}),
        )
        .await;
    assert_eq!(otp.status, 202, "{:?}", otp.body);
    let range = "from=2020-01-01T00:00:00Z&to=2099-01-01T00:00:00Z";
    let deadline = Instant::now() + Duration::from_secs(60);
    let groups = loop {
        let r = api
            .get(&format!("/v1/analytics/summary?{range}&group_by=campaign"))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let groups = r.body["groups"].as_array().unwrap().clone();
        if groups.len() == 2 {
            break groups;
        }
        assert!(Instant::now() < deadline, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ours = groups
        .iter()
        .find(|g| g["group"]["campaign"] == id.as_str())
        .expect("the campaign's group");
    assert_eq!(ours["messages"], 6, "{ours}");
    assert_eq!(ours["delivered"], 5, "{ours}");
    let none = groups.iter().find(|g| g["group"]["campaign"].is_null());
    assert_eq!(none.expect("no campaign's group")["messages"], 1);
    // Listed, newest first.
    let list = api.get("/v1/campaigns").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["campaigns"][0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_pauses_resumes_and_cancels_and_bad_requests_are_refused_by_name() {
    let dir = TempDir::new("campaign-states");
    let keys = create_tenant(dir.path(), "Campaign");
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);
    let tpl = template(&api, "transactional").await;
    for n in 0..20 {
        contact(&api, &format!("06722200{n:02}"), "Іван", &["Усі"]).await;
    }
    let body = json!({"name": "Нагадування", "template_id": tpl, "lists": ["Усі"],
        "from": "Holub", "pace_per_minute": 6});

    // Refused by name: nothing made.
    for (change, code) in [
        (json!({"name": " "}), "campaign_name_invalid"),
        (json!({"template_id": "tpl_nope"}), "template_id_invalid"),
        (
            json!({"template_id": "tpl_01J0000000000000000000000A"}),
            "template_not_found",
        ),
        (json!({"template_version": 7}), "template_not_found"),
        (json!({"lists": []}), "campaign_lists_invalid"),
        (
            json!({"lists": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]}),
            "campaign_lists_invalid",
        ),
        (json!({"pace_per_minute": 0}), "pace_invalid"),
        (json!({"start_at": "tomorrow"}), "start_at_invalid"),
        (
            json!({"start_at": "2099-01-01T00:00:00Z"}),
            "start_at_too_far",
        ),
        (json!({"validity": 5}), "validity_out_of_range"),
    ] {
        let mut bad = body.clone();
        for (k, v) in change.as_object().unwrap() {
            bad[k] = v.clone();
        }
        let r = api.post("/v1/campaigns", &bad).await;
        assert_eq!(r.status, 422, "{change}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], code, "{change}: {:?}", r.body);
    }
    let unknown = api
        .post("/v1/campaigns", &json!({"name": "x", "extra": 1}))
        .await;
    assert!(
        unknown.status == 422 || unknown.status == 400,
        "{:?}",
        unknown.body
    );
    assert!(
        api.get("/v1/campaigns").await.body["campaigns"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for path in [
        "/v1/campaigns/cmp_nope",
        "/v1/campaigns/tpl_01J0000000000000000000000A",
    ] {
        assert_eq!(api.get(path).await.status, 404);
    }

    // A draft can be cancelled, not paused or resumed.
    let made = api.post("/v1/campaigns", &body).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let act = |what: &str| format!("/v1/campaigns/{id}/{what}");
    for what in ["pause", "resume"] {
        let r = api.post(&act(what), &json!({})).await;
        assert_eq!(r.status, 409, "{what}: {:?}", r.body);
    }
    assert_eq!(api.post(&act("start"), &json!({})).await.status, 200);
    // Six a minute: its first chunk is the next minute's six, ten seconds apart.
    wait_campaign(&api, &id, Duration::from_secs(30), |c| {
        c["progress"]["expanded"] == 6
    })
    .await;
    let paused = api.post(&act("pause"), &json!({})).await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    assert_eq!(paused.body["state"], "paused");
    assert_eq!(api.post(&act("pause"), &json!({})).await.status, 409);
    let resumed = api.post(&act("resume"), &json!({})).await;
    assert_eq!(resumed.body["state"], "running", "{:?}", resumed.body);
    let cancelled = api.post(&act("cancel"), &json!({})).await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["state"], "cancelled");
    for what in ["start", "pause", "resume", "cancel"] {
        let r = api.post(&act(what), &json!({})).await;
        assert_eq!(r.status, 409, "{what}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "campaign_state_conflict");
    }
    // What was still scheduled is cancelled; at most the first went already.
    let batch = made.body["batch_id"].as_str().unwrap();
    let messages = batch_messages(&api, batch).await;
    assert_eq!(messages.len(), 6);
    let cancelled = messages
        .iter()
        .filter(|m| m["status"] == "cancelled")
        .count();
    assert!(cancelled >= 4, "{messages:?}");
    assert!(messages.iter().all(|m| m["status"] != "scheduled"));
    let c = api.get(&format!("/v1/campaigns/{id}")).await;
    assert_eq!(
        c.body["progress"]["expanded"], 6,
        "no chunk after the cancel"
    );
}

/// Writes `n` contacts (`067` numbers from `first`) as a CSV and imports them onto `list`.
fn import(dir: &Path, tenant: &str, list: &str, first: u32, n: u32) {
    let csv = dir.join(format!("{list}.csv"));
    let mut text = String::from("phone;name\n");
    for i in 0..n {
        text.push_str(&format!("067{:07};Абонент {i}\n", first + i));
    }
    std::fs::write(&csv, text).unwrap();
    let out = Command::new(holub_bin())
        .args(["contacts", "import"])
        .arg(&csv)
        .args(["--tenant", tenant, "--list", list, "--quiet", "--data-dir"])
        .arg(dir)
        .output()
        .expect("holub contacts import runs");
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_killed_mid_expansion_sends_each_contact_exactly_once() {
    const CONTACTS: u32 = 10_000;
    let dir = TempDir::new("campaign-kill");
    let keys = create_tenant(dir.path(), "Campaign");
    import(dir.path(), &keys.tenant_id, "Усі", 0, CONTACTS);
    let holub = Holub::start(dir.path(), FLAGS);
    let api = Api::new(&holub, &keys.api_key);
    let t = api
        .post(
            "/v1/templates",
            &json!({"name": "Нагадування", "text": "{{name}}, ваше замовлення готове"}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let tpl = t.body["id"].as_str().unwrap().to_owned();
    let made = api
        .post(
            "/v1/campaigns",
            &json!({"name": "Велика", "template_id": tpl, "lists": ["Усі"], "from": "Holub"}),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["estimate"]["recipients"], CONTACTS);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let batch = made.body["batch_id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    assert_eq!(
        api.post(&format!("/v1/campaigns/{id}/start"), &json!({}))
            .await
            .status,
        200
    );
    // Killed once some chunks are in and others are not.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = api.get(&format!("/v1/campaigns/{id}")).await;
        let expanded = c.body["progress"]["expanded"].as_u64().unwrap_or(0);
        if expanded >= 1_000 {
            assert!(
                expanded < u64::from(CONTACTS),
                "killed too late: {expanded}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the campaign never started: {}",
            c.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_seconds = started.elapsed().as_secs_f64();
    let holub = holub.restart_after_kill();
    let api = Api::new(&holub, &keys.api_key);
    let done = wait_campaign(&api, &id, Duration::from_secs(300), |c| {
        c["state"] == "completed"
    })
    .await;
    assert_eq!(done["progress"]["expanded"], CONTACTS, "{done}");

    // One message per contact, each to its own number, every one delivered.
    let deadline = Instant::now() + Duration::from_secs(300);
    let messages = loop {
        let messages = batch_messages(&api, &batch).await;
        let open = messages
            .iter()
            .filter(|m| !TERMINAL.contains(&m["status"].as_str().unwrap_or_default()))
            .count();
        if open == 0 {
            break messages;
        }
        assert!(Instant::now() < deadline, "{open} messages never finished");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(messages.len(), CONTACTS as usize);
    let numbers: HashSet<&str> = messages.iter().map(|m| m["to"].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), CONTACTS as usize, "no number twice");
    assert!(messages.iter().all(|m| m["status"] == "delivered"));
    eprintln!(
        "campaign of {CONTACTS}: killed after {first_seconds:.1} s, all expanded and delivered"
    );
}
