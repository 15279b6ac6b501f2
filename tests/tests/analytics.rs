//! Analytics through `holub serve`: after a randomised workload (single messages, batches,
//! scheduled and cancelled ones, repeated requests, provider failures, undelivered and
//! expired messages, tracked links clicked by people and preview fetchers, some more than
//! once) with a SIGKILL and a restart in the middle, every report equals a
//! recomputation from the message log itself; each tenant sees only its own numbers; bad
//! queries get a 4xx with a stable code; and `holub report` prints the same numbers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use holub_shared::domain::stats::Histogram;
use holub_tests::{Api, Holub, QUICK_RECOVERY, TERMINAL, TempDir, create_tenant, holub_bin};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Simulated outcomes of every kind (with [`QUICK_RECOVERY`], to bring back quickly what the
/// kill left in flight).
const FLAGS: [&str; 14] = [
    "--sync",
    "normal",
    "--rollup-every",
    "1",
    "--sim-receipt-delay-ms",
    "100",
    "--sim-delivered-ratio",
    "0.7",
    "--sim-expired-ratio",
    "0.3",
    "--sim-reject-ratio",
    "0.05",
    "--sim-fail-ratio",
    "0.05",
];

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// What a group of messages adds up to, computed here from their JSON views.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    messages: i64,
    statuses: BTreeMap<String, i64>,
    parts: i64,
    cost: i64,
    accepted_to_delivered: Histogram,
    sent_to_delivered: Histogram,
    clicked: i64,
    clicks: i64,
    bot_clicks: i64,
}

impl Expected {
    fn add(&mut self, m: &Value) {
        self.messages += 1;
        let status = m["status"].as_str().unwrap().to_owned();
        *self.statuses.entry(status.clone()).or_default() += 1;
        self.parts += m["segments"].as_i64().unwrap();
        self.cost += m["cost_kopiyky"].as_i64().unwrap_or(0);
        let clicks = m["clicks"].as_i64().unwrap();
        self.clicked += i64::from(clicks > 0);
        self.clicks += clicks;
        self.bot_clicks += m["bot_clicks"].as_i64().unwrap();
        if status == "delivered" {
            let history = m["history"].as_array().unwrap();
            let at = |s: &str| {
                history
                    .iter()
                    .rev()
                    .find(|c| c["status"] == s)
                    .map(|c| time(&c["at"]))
            };
            let delivered = at("delivered").unwrap();
            let ms = |from: DateTime<Utc>| (delivered - from).num_milliseconds().max(0);
            self.accepted_to_delivered
                .record(ms(time(&m["created_at"])), 1);
            if let Some(sent) = at("sent") {
                self.sent_to_delivered.record(ms(sent), 1);
            }
        }
    }

    /// Checks a report's totals against these.
    fn matches(&self, totals: &Value) -> Result<(), String> {
        let statuses: BTreeMap<String, i64> = totals["statuses"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
            .collect();
        let latency = |h: &Histogram, name: &str| -> Result<(), String> {
            let got = &totals["latency_ms"][name];
            for (q, field) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
                if got[field].as_i64() != h.quantile(q) {
                    return Err(format!("{name} {field}: {got} vs {:?}", h.quantile(q)));
                }
            }
            if got["count"].as_i64() != Some(h.count()) {
                return Err(format!("{name} count: {got}"));
            }
            Ok(())
        };
        let outcomes: i64 = ["delivered", "undelivered", "expired", "failed", "rejected"]
            .iter()
            .map(|s| self.statuses.get(*s).copied().unwrap_or(0))
            .sum();
        let delivered = self.statuses.get("delivered").copied().unwrap_or(0);
        let rate = (outcomes > 0)
            .then(|| (delivered as f64 / outcomes as f64 * 10_000.0).round() / 10_000.0);
        let ctr = (delivered > 0)
            .then(|| (self.clicked as f64 / delivered as f64 * 10_000.0).round() / 10_000.0);
        if totals["messages"].as_i64() != Some(self.messages)
            || statuses != self.statuses
            || totals["parts"].as_i64() != Some(self.parts)
            || totals["cost_kopiyky"].as_i64() != Some(self.cost)
            || totals["delivered"].as_i64() != Some(delivered)
            || totals["delivery_rate"].as_f64() != rate
            || totals["clicked"].as_i64() != Some(self.clicked)
            || totals["clicks"].as_i64() != Some(self.clicks)
            || totals["bot_clicks"].as_i64() != Some(self.bot_clicks)
            || totals["ctr"].as_f64() != ctr
        {
            return Err(format!("report {totals} vs expected {self:?}"));
        }
        latency(&self.accepted_to_delivered, "accepted_to_delivered")?;
        latency(&self.sent_to_delivered, "sent_to_delivered")
    }
}

/// The groups a report by provider, operator, sender, batch and encoding must have.
fn recompute(messages: &[Value]) -> BTreeMap<Vec<String>, Expected> {
    let mut groups: BTreeMap<Vec<String>, Expected> = BTreeMap::new();
    for m in messages {
        let key = ["provider", "operator", "from", "batch_id", "encoding"]
            .map(|field| m[field].to_string())
            .to_vec();
        groups.entry(key).or_default().add(m);
    }
    groups
}

fn range_of(messages: &[Value]) -> (String, String) {
    let times: Vec<DateTime<Utc>> = messages.iter().map(|m| time(&m["created_at"])).collect();
    let from = *times.iter().min().unwrap() - chrono::Duration::hours(2);
    let to = *times.iter().max().unwrap() + chrono::Duration::hours(2);
    (
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Waits until the summary grouped by every dimension but time equals the recomputation,
/// or panics with the last difference.
async fn wait_until_reports_match(api: &Api, messages: &[Value]) -> Value {
    let expected = recompute(messages);
    let (from, to) = range_of(messages);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = api
            .get(&format!(
                "/v1/analytics/summary?from={from}&to={to}&group_by=provider,operator,sender,batch,encoding"
            ))
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        let groups = a.body["groups"].as_array().unwrap();
        let mismatch = (|| {
            if groups.len() != expected.len() {
                return Err(format!(
                    "{} groups, expected {}",
                    groups.len(),
                    expected.len()
                ));
            }
            for g in groups {
                let key = ["provider", "operator", "sender", "batch", "encoding"]
                    .map(|field| g["group"][field].to_string())
                    .to_vec();
                let e = expected
                    .get(&key)
                    .ok_or(format!("unexpected group {key:?}"))?;
                e.matches(g)?;
            }
            let mut all = Expected::default();
            messages.iter().for_each(|m| all.add(m));
            all.matches(&a.body["totals"])
        })();
        match mismatch {
            Ok(()) => return a.body,
            Err(why) if Instant::now() > deadline => panic!("the report never matched: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn all_terminal(api: &Api, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let messages = api.all_messages().await;
        let open: Vec<&Value> = messages
            .iter()
            .filter(|m| !TERMINAL.contains(&m["status"].as_str().unwrap()))
            .collect();
        if open.is_empty() {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "{} messages never finished: {:?}",
            open.len(),
            open.iter()
                .map(|m| (&m["status"], &m["history"]))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A random workload of one tenant: batches, singles (some repeated with the same
/// idempotency key), messages scheduled a second ahead, and ones scheduled far ahead and
/// cancelled.
async fn workload(api: &Api, rng: &mut rand::rngs::StdRng, rounds: usize) {
    for round in 0..rounds {
        let sender = ["Holub", "Shop"][rng.random_range(0..2)];
        let text = [
            "Ваше замовлення готове",
            "Your code: 4821",
            "Знижка 20%: https://shop.ua/sale?id=7, до неділі! https://shop.ua/",
        ][rng.random_range(0..3)];
        let track_links = rng.random_bool(0.7);
        match rng.random_range(0..4) {
            0 => {
                let n = rng.random_range(2..40);
                let recipients: Vec<Value> = (0..n)
                    .map(|i| json!({"to": format!("+38050{:07}", round * 100 + i)}))
                    .collect();
                let a = api
                    .post(
                        "/v1/messages/batch",
                        &json!({"from": sender, "text": text, "recipients": recipients,
                            "track_links": track_links}),
                    )
                    .await;
                assert_eq!(a.status, 202, "{:?}", a.body);
            }
            1 => {
                let body = json!({"to": format!("+38067{:07}", round), "from": sender,
                    "text": text, "track_links": track_links});
                let key = format!("k-{round}-{}", rng.random::<u64>());
                for _ in 0..rng.random_range(1..3) {
                    let a = api.post_with("/v1/messages", &body, Some(&key)).await;
                    assert!(matches!(a.status, 200 | 202), "{:?}", a.body);
                }
            }
            2 => {
                let at = Utc::now() + chrono::Duration::seconds(1);
                api.accepted(&json!({"to": format!("+38093{:07}", round), "from": sender,
                    "text": text, "send_at": at.to_rfc3339()}))
                    .await;
            }
            _ => {
                let at = Utc::now() + chrono::Duration::days(2);
                let id = api
                    .accepted(&json!({"to": format!("+38063{:07}", round), "from": sender,
                        "text": text, "send_at": at.to_rfc3339()}))
                    .await;
                let a = api
                    .post(&format!("/v1/messages/{id}/cancel"), &json!({}))
                    .await;
                assert_eq!(a.status, 200, "{:?}", a.body);
            }
        }
    }
}

/// Follows some of the tracked links of `messages`: as a phone's browser or as a messenger's
/// preview fetcher, some more than once. Every one redirects to its URL.
async fn clicks(api: &Api, rng: &mut rand::rngs::StdRng, messages: &[Value]) -> usize {
    const AGENTS: [Option<&str>; 4] = [
        Some(
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36",
        ),
        Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Mobile Safari/604.1",
        ),
        Some("TelegramBot (like TwitterBot)"),
        None,
    ];
    let mut followed = 0;
    for m in messages {
        for link in m["links"].as_array().unwrap() {
            if !rng.random_bool(0.4) {
                continue;
            }
            for _ in 0..rng.random_range(1..4) {
                let agent = AGENTS[rng.random_range(0..AGENTS.len())];
                let code = link["code"].as_str().unwrap();
                let (status, location) = api.click(code, agent).await;
                assert_eq!(status, 302);
                assert_eq!(location.as_deref(), link["url"].as_str());
                followed += 1;
            }
        }
    }
    followed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_equals_a_recomputation_from_the_messages_after_a_crash() {
    let dir = TempDir::new("analytics");
    let keys = create_tenant(dir.path(), "Analytics");
    let other = create_tenant(dir.path(), "Other");
    let holub = Holub::start(dir.path(), &[&FLAGS[..], &QUICK_RECOVERY[..]].concat());
    let api = Api::new(&holub, &keys.api_key);
    let seed = std::env::var("HOLUB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("workload seed {seed} (HOLUB_TEST_SEED={seed} repeats it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    workload(&api, &mut rng, 30).await;
    let so_far = api.all_messages().await;
    let mut followed = clicks(&api, &mut rng, &so_far).await;
    // Killed while dispatch, receipts and the rollup are busy; started again.
    let holub = holub.restart_after_kill();
    let api = Api::new(&holub, &keys.api_key);
    let stranger = Api::new(&holub, &other.api_key);
    workload(&api, &mut rng, 30).await;
    let so_far = api.all_messages().await;
    followed += clicks(&api, &mut rng, &so_far).await;
    assert!(followed > 0, "no link was followed");
    stranger
        .accepted(&json!({"to": "+380991234567", "from": "Holub", "text": "чужий"}))
        .await;

    let messages = all_terminal(&api, Duration::from_secs(60)).await;
    assert!(messages.len() > 60, "{} messages", messages.len());
    let summary = wait_until_reports_match(&api, &messages).await;

    // A range of millennia reads only the hours that hold statistics, and totals the same.
    let all_time = api
        .get("/v1/analytics/summary?from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z")
        .await;
    assert_eq!(all_time.status, 200, "{:?}", all_time.body);
    assert_eq!(all_time.body["totals"], summary["totals"]);

    // The other tenant sees its one message only, and the first tenant none of it.
    let theirs = all_terminal(&stranger, Duration::from_secs(30)).await;
    wait_until_reports_match(&stranger, &theirs).await;
    assert_eq!(theirs.len(), 1);

    // A time series by day adds up to the summary; by hour it has every hour of the range.
    let (from, to) = range_of(&messages);
    let days = api
        .get(&format!(
            "/v1/analytics/timeseries?from={from}&to={to}&interval=day"
        ))
        .await;
    assert_eq!(days.status, 200, "{:?}", days.body);
    let per_day: i64 = days.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["messages"].as_i64().unwrap())
        .sum();
    assert_eq!(per_day, summary["totals"]["messages"].as_i64().unwrap());
    let hours = api
        .get(&format!(
            "/v1/analytics/timeseries?from={from}&to={to}&interval=hour&timezone=UTC"
        ))
        .await;
    assert_eq!(hours.status, 200, "{:?}", hours.body);
    let hours = hours.body["groups"].as_array().unwrap();
    assert!(hours.len() >= 4, "{} hours", hours.len());
    assert!(
        hours.iter().any(|h| h["messages"] == 0),
        "quiet hours are in the series"
    );

    // `holub report` prints the same totals, as JSON and as a table.
    let report = |extra: &[&str]| {
        std::process::Command::new(holub_bin())
            .args([
                "report",
                "--tenant",
                &keys.tenant_id,
                "--from",
                &from,
                "--to",
                &to,
            ])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = report(&["--group-by", "provider", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["totals"], summary["totals"]);
    let out = report(&["--group-by", "sender,encoding"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("total"), "{table}");
    assert!(
        table.contains("Holub") && table.contains("UCS-2"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_queries_get_a_4xx_with_a_stable_code() {
    let dir = TempDir::new("analytics-bad");
    let keys = create_tenant(dir.path(), "Bad");
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let range = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z";
    for (query, status, code) in [
        (
            "summary?to=2026-11-02T00:00:00Z".to_owned(),
            422,
            "invalid_query",
        ),
        (
            "summary?from=yesterday&to=2026-11-02T00:00:00Z".into(),
            422,
            "time_invalid",
        ),
        (
            format!("summary?{range}&group_by=campaigns"),
            422,
            "group_by_unknown",
        ),
        (
            format!("summary?{range}&timezone=Mars"),
            422,
            "timezone_unknown",
        ),
        (format!("summary?{range}&colour=red"), 422, "invalid_query"),
        (
            format!("timeseries?{range}&interval=week"),
            422,
            "interval_invalid",
        ),
        (
            format!("timeseries?{range}&group_by=planet"),
            422,
            "group_by_unknown",
        ),
    ] {
        let a = api.get(&format!("/v1/analytics/{query}")).await;
        assert_eq!(a.status, status, "{query}: {:?}", a.body);
        assert_eq!(a.body["error"]["code"], code, "{query}");
    }
    // An empty range of a new tenant is all zeros, not an error; one that ends before it
    // starts covers no hour (as a list so filtered finds nothing); a series longer than a
    // report holds is cut short, and says where it stops.
    let a = api.get(&format!("/v1/analytics/summary?{range}")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["totals"]["messages"], 0);
    let a = api
        .get("/v1/analytics/summary?from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z&group_by=provider")
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["groups"], json!([]));
    assert_eq!(a.body["totals"]["delivery_rate"], Value::Null);
    let a = api
        .get("/v1/analytics/timeseries?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z")
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        (a.body["from"].clone(), a.body["groups"].clone()),
        (a.body["to"].clone(), json!([]))
    );
    let a = api
        .get("/v1/analytics/timeseries?from=2016-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&interval=hour")
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["truncated"], true);
    assert_eq!(a.body["groups"].as_array().unwrap().len(), 10_000);
    // No key, and a key without the analytics scope.
    let anonymous = api.with_key("");
    let a = anonymous
        .get(&format!("/v1/analytics/summary?{range}"))
        .await;
    assert_eq!(a.status, 401, "{:?}", a.body);
    let sender_only = api
        .post(
            "/v1/keys",
            &json!({"name": "sender", "scopes": ["messages:send"]}),
        )
        .await;
    assert_eq!(sender_only.status, 201, "{:?}", sender_only.body);
    let limited = api.with_key(sender_only.body["key"].as_str().unwrap());
    let a = limited.get(&format!("/v1/analytics/summary?{range}")).await;
    assert_eq!(a.status, 403, "{:?}", a.body);
}
