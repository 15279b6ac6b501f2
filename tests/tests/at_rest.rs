//! What the data directory gives away, through `holub serve` and the operator's command line as
//! they are used: numbers and texts are stored sealed under the tenant's data key (so neither
//! the database nor its write-ahead log holds them in clear), the filter by number still finds
//! them, and erasing the tenant makes them unreadable for good and shuts its keys out.

use std::path::Path;
use std::time::{Duration, Instant};

use holub_tests::{Api, Holub, TempDir, create_tenant, tenant_command};
use serde_json::json;

/// Every byte of the data directory's files (the database, its WAL, the secrets file aside).
fn stored_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("holub.db") {
            bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    bytes
}

fn holds(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_holds_no_number_or_text_and_erasure_is_for_good() {
    let dir = TempDir::new("at-rest");
    let keys = create_tenant(dir.path(), "AtRest");
    // Every message delivered: the default 5% undelivered would make the check below flaky.
    let holub = Holub::start(
        dir.path(),
        &[
            "--sim-receipt-delay-ms",
            "100",
            "--sim-delivered-ratio",
            "1.0",
        ],
    );
    let api = Api::new(&holub, &keys.api_key);

    let text = "Пароль 583920 для входу";
    let id = api
        .accepted(&json!({"to": "050 777 12 34", "from": "Holub", "text": text}))
        .await;
    let done = api.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "delivered", "{done}");
    assert_eq!(done["text"], text);
    let scheduled = api
        .accepted(&json!({
            "to": "050 777 12 35", "from": "Holub", "text": "Нагадування 112233",
            "send_at": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339(),
        }))
        .await;
    // A tracked link: its URL is part of the text, and as sealed.
    let linked = api
        .post(
            "/v1/messages",
            &json!({"to": "050 777 12 36", "from": "Holub", "track_links": true,
                "text": "Скидання: https://bank.example.ua/reset?token=Qx7Zr9",
                "send_at": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339()}),
        )
        .await;
    assert_eq!(linked.status, 202, "{:?}", linked.body);
    let code = linked.body["links"][0]["code"].as_str().unwrap().to_owned();
    assert_eq!(api.click(&code, None).await.0, 302);
    // A consent's evidence may name a person: sealed too.
    let consent = api
        .post(
            "/v1/consents",
            &json!({"phone": "050 777 12 37", "state": "given", "source": "paper",
                "evidence": "Анкета Тарас Шевчук, паспорт КВ771122"}),
        )
        .await;
    assert_eq!(consent.status, 201, "{:?}", consent.body);
    let found = api.get("/v1/messages?to=%2B380507771234").await;
    assert_eq!(found.status, 200, "{:?}", found.body);
    assert_eq!(found.body["messages"][0]["id"], id.as_str());
    assert_eq!(found.body["messages"].as_array().unwrap().len(), 1);

    let bytes = stored_bytes(dir.path());
    assert!(!bytes.is_empty());
    for secret in [
        "380507771234",
        "380507771235",
        "583920",
        "112233",
        "Пароль",
        "Нагадування",
        "Qx7Zr9",
        "bank.example.ua",
        "380507771237",
        "КВ771122",
        "Шевчук",
    ] {
        assert!(
            !holds(&bytes, secret),
            "{secret:?} is in the database in clear"
        );
    }

    // A console user of the tenant: an address, personal data the erasure must take.
    let mut made = std::process::Command::new(holub_tests::holub_bin())
        .args(["user", "create", "--data-dir"])
        .arg(dir.path())
        .args([
            "--tenant",
            &keys.tenant_id,
            "--email",
            "owner@erased.example",
        ])
        .args(["--role", "owner"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("holub user create runs");
    {
        use std::io::Write as _;
        let mut stdin = made.stdin.take().unwrap();
        stdin.write_all(b"a long enough password\n").unwrap();
    }
    assert!(made.wait().unwrap().success());

    // Erased by the operator while the server runs.
    let refused = tenant_command(
        dir.path(),
        &[
            "erase",
            "--tenant",
            &keys.tenant_id,
            "--confirm",
            "someone-else",
        ],
    );
    assert!(refused.is_err(), "{refused:?}");
    let erased = tenant_command(
        dir.path(),
        &[
            "erase",
            "--tenant",
            &keys.tenant_id,
            "--confirm",
            &keys.tenant_id,
        ],
    )
    .expect("erase runs");
    assert_eq!(erased["erased"], true, "{erased}");
    assert_eq!(erased["console_users_removed"], 1, "{erased}");
    // Its keys stop working everywhere within the key cache's 30 seconds.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let answer = api.get(&format!("/v1/messages/{scheduled}")).await;
        if answer.status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "still {}", answer.status);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Its short links lead nowhere any more: their URLs cannot be opened.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (status, _) = api.click(&code, None).await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the short link still answers {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = tenant_command(dir.path(), &["audit", "--tenant", &keys.tenant_id]).unwrap();
    assert_eq!(log[0]["action"], "tenant.erase", "{log}");
    drop(holub);

    // The database alone (with the master key beside it, as it is here) still opens only
    // what was never erased: nothing of this tenant.
    let db = rusqlite::Connection::open(dir.path().join("holub.db")).unwrap();
    let (wrapped, erased_at): (Option<Vec<u8>>, Option<i64>) = db
        .query_row(
            "SELECT wrapped, erased_at FROM tenant_keys WHERE tenant_id = ?1",
            [&keys.tenant_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(wrapped.is_none() && erased_at.is_some());
    let users: i64 = db
        .query_row(
            "SELECT count(*) FROM console_users WHERE tenant_id = ?1",
            [&keys.tenant_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(users, 0, "the erased tenant's console users are gone");
}
