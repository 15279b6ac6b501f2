//! `GET /v1/messages/export` through `holub serve`: the message log as CSV that a
//! spreadsheet opens right (UTF-8 with a BOM, Cyrillic intact, formulas neutralised), every
//! page of it, the list's filters, one tenant's messages only, and bad input refused.

use std::time::Duration;

use holub_tests::{Api, Holub, TempDir, create_tenant};
use serde_json::json;

/// An RFC 4180 reader, written apart from the exporter: records of fields.
fn parse(text: &str, delimiter: char) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, c) if c == delimiter => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "a cut-off record"
    );
    records
}

async fn export(api: &Api, query: &str) -> (u16, String, String) {
    let resp = api
        .http
        .get(format!("{}/v1/messages/export{query}", api.base_url))
        .bearer_auth(&api.key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_log_exports_as_csv_a_spreadsheet_opens_right() {
    let dir = TempDir::new("export");
    let keys = create_tenant(dir.path(), "Export");
    let other = create_tenant(dir.path(), "Other");
    let holub = Holub::start(
        dir.path(),
        &[
            "--sync",
            "normal",
            "--sim-receipt-delay-ms",
            "50",
            "--sim-delivered-ratio",
            "1.0",
        ],
    );
    let api = Api::new(&holub, &keys.api_key);
    let stranger = Api::new(&holub, &other.api_key);

    // 1,200 messages in batches (more than two pages of the export), one with a text and a
    // reference that a spreadsheet would run as formulas, and another tenant's message.
    let tricky = api
        .post(
            "/v1/messages",
            &json!({"to": "0671234567", "from": "Holub", "text": "=HYPERLINK(\"http://x\"); Привіт, світ!\nРядок два",
                "reference": "@SUM(A1)"}),
        )
        .await;
    assert_eq!(tricky.status, 202, "{:?}", tricky.body);
    let tricky_id = tricky.body["id"].as_str().unwrap().to_owned();
    for b in 0..3 {
        let recipients: Vec<_> = (0..400)
            .map(|i| json!({"to": format!("+38050{:07}", b * 400 + i)}))
            .collect();
        let sent = api
            .post(
                "/v1/messages/batch",
                &json!({"from": "Holub", "text": "Знижка 10%", "recipients": recipients}),
            )
            .await;
        assert_eq!(sent.status, 202, "{:?}", sent.body);
    }
    let theirs = stranger
        .post(
            "/v1/messages",
            &json!({"to": "0679999999", "from": "Holub", "text": "чуже"}),
        )
        .await;
    assert_eq!(theirs.status, 202);
    api.wait_terminal(&tricky_id, Duration::from_secs(30)).await;

    let (status, kind, text) = export(&api, "?delimiter=semicolon").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(kind, "text/csv; charset=utf-8");
    let body = text.strip_prefix('\u{feff}').expect("a byte-order mark");
    let records = parse(body, ';');
    assert_eq!(records[0][0], "id");
    assert_eq!(records.len(), 1 + 1201, "a header and every message, once");
    let mut ids: Vec<&str> = records[1..].iter().map(|r| r[0].as_str()).collect();
    let listed = ids.clone();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1201);
    let mut newest_first = listed.clone();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, newest_first, "newest first");
    assert!(records.iter().all(|r| r.len() == records[0].len()));
    let column = |name: &str| records[0].iter().position(|c| c == name).unwrap();
    let row = records
        .iter()
        .find(|r| r[0] == tricky_id)
        .expect("the tricky message");
    assert_eq!(
        row[column("text")],
        "'=HYPERLINK(\"http://x\"); Привіт, світ!\nРядок два"
    );
    assert_eq!(row[column("reference")], "'@SUM(A1)");
    assert_eq!(row[column("to")], "'+380671234567");
    assert_eq!(row[column("status")], "delivered");
    assert!(!text.contains("чуже") && !text.contains("0679999999"));

    // The list's filters.
    let (_, _, delivered) = export(&api, "?status=delivered&to=%2B380671234567").await;
    let records = parse(delivered.trim_start_matches('\u{feff}'), ',');
    assert_eq!(records.len(), 2, "{delivered}");
    assert_eq!(records[1][0], tricky_id);

    // Bad input, answered 4xx.
    for (query, code) in [
        ("?delimiter=tab", "delimiter_invalid"),
        ("?status=nope", "status_invalid"),
        ("?created_after=yesterday", "time_invalid"),
        ("?limit=5", "invalid_query"),
    ] {
        let answer = api.get(&format!("/v1/messages/export{query}")).await;
        assert_eq!(answer.status, 422, "{query}: {:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], code, "{query}");
    }
    let anonymous = reqwest::get(format!("{}/v1/messages/export", api.base_url))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}
