//! `holub serve` with each Ukrainian provider's simulator (its own wire format), chosen in
//! the route table, and with failover between two of them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use holub_tests::{Api, Holub, TempDir, create_tenant, holub_bin};
use serde_json::json;

fn set_secret(dir: &Path, name: &str, value: &str) {
    let status = Command::new(holub_bin())
        .args(["secret", "set", name, value, "--data-dir"])
        .arg(dir)
        .status()
        .expect("holub secret set runs");
    assert!(status.success());
}

/// Credentials as each provider's adapter reads them from the secret store.
fn credentials(kind: &str) -> &'static str {
    match kind {
        "turbosms" => r#"{"token": "turbo-test-token"}"#,
        "smsfly" => r#"{"key": "smsfly-test-key"}"#,
        "alphasms" => {
            r#"{"api_key": "alpha-test-key", "hook_token": "alpha-hook-token-0123456789"}"#
        }
        "kyivstar" => r#"{"client_id": "ks-client", "client_secret": "ks-secret"}"#,
        other => panic!("no credentials for {other}"),
    }
}

fn provider_block(name: &str, kind: &str, extra: &str) -> String {
    format!(
        r#"
[[provider]]
name = "{name}"
kind = "{kind}"
credentials = "providers/{name}"
simulate = true
{extra}
[provider.simulator]
receipt_delay = 200
delivered_ratio = 1.0
"#
    )
}

async fn stats(holub: &Holub, name: &str) -> serde_json::Value {
    let addr = holub.info["simulators"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no simulator {name}: {}", holub.info))
        .to_owned();
    reqwest::get(format!("http://{addr}/__sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn run_with(kind: &str) {
    let dir = TempDir::new(kind);
    let keys = create_tenant(dir.path(), kind);
    set_secret(dir.path(), &format!("providers/{kind}"), credentials(kind));
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, provider_block(kind, kind, "")).unwrap();
    let holub = Holub::start(
        dir.path(),
        &[
            "--sync",
            "normal",
            "--poll-every",
            "1",
            "--routes",
            routes.to_str().unwrap(),
        ],
    );
    let api = Api::new(&holub, &keys.api_key);
    let texts = ["Ваш код: 4821".to_owned(), "Довге повідомлення. ".repeat(5)];
    let mut ids = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let a = api
            .post(
                "/v1/messages",
                &json!({"to": format!("06712345{i:02}"), "from": "Holub", "text": text}),
            )
            .await;
        assert_eq!(a.status, 202, "{kind}: {:?}", a.body);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let m = api.wait_terminal(id, Duration::from_secs(30)).await;
        assert_eq!(m["status"], "delivered", "{kind}: {m}");
        assert_eq!(m["provider"], kind);
        let provider_id = m["provider_message_id"].as_str().expect("a provider id");
        // The provider's id (AlphaSMS: ours) as it is, even for the 2-part message.
        match kind {
            "smsfly" => assert!(
                provider_id.len() == 20 && provider_id.starts_with("FAPI"),
                "{provider_id}"
            ),
            "alphasms" => assert_eq!(provider_id, id),
            _ => {}
        }
    }
    let s = stats(&holub, kind).await;
    assert_eq!(s["accepted"], 2, "{kind}: {s}");
    assert_eq!(s["duplicates"], 0, "{kind}: {s}");
    // A forged receipt (no token, or a wrong one) is refused; providers that do not push
    // have no webhook at all.
    for url in [
        holub.url(&format!("/v1/receipts/{kind}?id={}", ids[0])),
        holub.url(&format!("/v1/receipts/{kind}?token=forged&id={}", ids[0])),
    ] {
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"id": ids[0], "status": "DELIVERED"}))
            .send()
            .await
            .unwrap();
        let expected = if kind == "alphasms" { 401 } else { 404 };
        assert_eq!(r.status().as_u16(), expected, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turbosms_simulator_end_to_end() {
    run_with("turbosms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsfly_simulator_end_to_end() {
    run_with("smsfly").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alphasms_simulator_end_to_end() {
    run_with("alphasms").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyivstar_simulator_end_to_end() {
    run_with("kyivstar").await;
}

/// Fifty Kyivstar numbers routed to TurboSMS first and SMS Fly second, with `turbo_trouble`
/// appended to TurboSMS's simulator settings. Waits until every message is delivered, checks
/// that SMS Fly carried each one once, and hands back Holub (for the simulators' stats) and
/// the delivered messages.
async fn fail_over_to_smsfly(
    label: &str,
    turbo_trouble: &str,
) -> (TempDir, Holub, Vec<serde_json::Value>) {
    let dir = TempDir::new(label);
    let keys = create_tenant(dir.path(), label);
    set_secret(dir.path(), "providers/turbo", credentials("turbosms"));
    set_secret(dir.path(), "providers/fly", credentials("smsfly"));
    let mut table = provider_block("turbo", "turbosms", "price_per_part_kopiyky = 70");
    table.push_str(turbo_trouble);
    table.push_str(&provider_block(
        "fly",
        "smsfly",
        "price_per_part_kopiyky = 80\nmessages_per_second = 100",
    ));
    table.push_str("\n[[route]]\noperators = [\"kyivstar\"]\nproviders = [\"turbo\", \"fly\"]\n");
    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, table).unwrap();
    let holub = Holub::start(
        dir.path(),
        &[
            "--sync",
            "normal",
            "--poll-every",
            "1",
            "--routes",
            routes.to_str().unwrap(),
        ],
    );
    let api = Api::new(&holub, &keys.api_key);
    let recipients: Vec<_> = (0..50)
        .map(|i| json!({"to": format!("067{:07}", i)}))
        .collect();
    let a = api
        .post(
            "/v1/messages/batch",
            &json!({"from": "Holub", "text": label, "recipients": recipients}),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let mut delivered = Vec::new();
    for r in a.body["results"].as_array().unwrap() {
        let m = api
            .wait_terminal(r["id"].as_str().unwrap(), Duration::from_secs(30))
            .await;
        assert_eq!(m["status"], "delivered", "{m}");
        assert_eq!(m["provider"], "fly");
        delivered.push(m);
    }
    let fly = stats(&holub, "fly").await;
    assert_eq!(fly["accepted"], 50, "{fly}");
    assert_eq!(fly["duplicates"], 0, "{fly}");
    (dir, holub, delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kyivstar_numbers_fail_over_from_a_down_turbosms_to_smsfly() {
    let (_dir, holub, _) =
        fail_over_to_smsfly("ua-failover", "[provider.simulator.faults]\ndown = true\n").await;
    assert_eq!(stats(&holub, "turbo").await["accepted"], 0);
}

/// An empty TurboSMS account (its documented `203 REQUIRED_BALANCE` to every send) is the
/// account's trouble, not the messages': they fail over to SMS Fly within their first
/// attempt and each is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_turbosms_balance_fails_over_to_smsfly() {
    let (_dir, holub, delivered) = fail_over_to_smsfly("ua-balance", "start_balance = 0\n").await;
    for m in &delivered {
        assert_eq!(m["attempts"], 1, "failover happens within one attempt: {m}");
    }
    let turbo = stats(&holub, "turbo").await;
    assert_eq!(turbo["accepted"], 0, "{turbo}");
    assert!(
        turbo["refusals"]["turbosms.balance.funds"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "the empty account was asked and refused: {turbo}"
    );
}
