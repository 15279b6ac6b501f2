//! `holub contacts import`: CSV files as Excel in Ukraine writes them, into a tenant's
//! contacts, then seen through the API of a running `holub serve`.

use std::path::Path;
use std::process::{Command, Output};

use holub_tests::{Api, Holub, TempDir, create_tenant, holub_bin};
use serde_json::Value;

fn import(dir: &Path, tenant: &str, file: &Path, extra: &[&str]) -> Output {
    Command::new(holub_bin())
        .args(["contacts", "import"])
        .arg(file)
        .args(["--tenant", tenant, "--quiet", "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("holub contacts import runs")
}

fn tally(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON tally ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The report's lines after its header, split at commas outside quotes (good enough for
/// the report's own quoting of messages).
fn report(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).expect("the report");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("row,status,id,restored_zero,code,column,message")
    );
    lines
        .map(|line| {
            let mut cells = Vec::new();
            let (mut cell, mut quoted) = (String::new(), false);
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => cells.push(std::mem::take(&mut cell)),
                    c => cell.push(c),
                }
            }
            cells.push(cell);
            cells
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excel_file_in_windows_1251_is_imported_merged_and_reported_row_by_row() {
    let dir = TempDir::new("import");
    let keys = create_tenant(dir.path(), "Import");
    let other = create_tenant(dir.path(), "Other");
    // What Excel saves as "CSV (розділювачі – коми)" on a Ukrainian Windows: cp1251, `;`,
    // CRLF, a number that lost its leading 0, a quoted cell with `;` and `""`.
    let mut text = String::from("Телефон;Ім'я;Місто;Списки\r\n");
    text.push_str("671234567;Олена Коваль;Київ;VIP\r\n"); // row 2: the lost 0
    text.push_str("050 111 22 33;\"Петро \"\"Кум\"\"; Іваненко\";Львів;\r\n"); // row 3
    text.push_str("+380671234567;;Одеса;Розсилка\r\n"); // row 4: row 2's number again
    text.push_str("12345;Хтось;Харків;\r\n"); // row 5: not a number
    text.push_str(";Без номера;Суми;\r\n"); // row 6: no number
    text.push_str("\r\n"); // row 7: blank, skipped
    text.push_str("0931112233;=HYPERLINK(\"x\");Дніпро;VIP|Опт\r\n"); // row 8
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&text);
    assert!(!unmappable);
    let mut bytes = bytes.into_owned();
    // Row 9: one line of 10 MB, then row 10, a good one.
    bytes.extend(std::iter::repeat_n(b'7', 10 * 1024 * 1024));
    bytes.extend_from_slice(b"\r\n0661234567;Anna;Kyiv;\r\n");
    let file = dir.path().join("contacts.csv");
    std::fs::write(&file, &bytes).unwrap();
    let report_path = dir.path().join("report.csv");

    let out = import(
        dir.path(),
        &keys.tenant_id,
        &file,
        &[
            "--list",
            "Клієнти",
            "--report",
            report_path.to_str().unwrap(),
        ],
    );
    // Some rows failed: exit status 2, the tally still printed.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = tally(&out);
    assert_eq!(t["rows"], 8, "{t}");
    assert_eq!(t["created"], 4, "{t}");
    assert_eq!(t["updated"], 1, "{t}");
    assert_eq!(t["failed"], 3, "{t}");
    assert_eq!(t["restored_zero"], 1, "{t}");
    let rows = report(&report_path);
    let by_row = |n: &str| {
        rows.iter()
            .find(|r| r[0] == n)
            .unwrap_or_else(|| panic!("row {n}"))
    };
    assert_eq!(by_row("2")[1], "created");
    assert_eq!(by_row("2")[3], "true");
    assert_eq!(by_row("4")[1], "updated");
    assert_eq!(
        by_row("4")[2],
        by_row("2")[2],
        "merged into row 2's contact"
    );
    assert_eq!(by_row("5")[1], "failed");
    assert!(by_row("5")[4].starts_with("phone_"), "{:?}", by_row("5"));
    assert_eq!(by_row("5")[5], "Телефон");
    assert_eq!(by_row("6")[4], "phone_missing");
    assert!(rows.iter().all(|r| r[0] != "7"), "a blank row is no result");
    assert_eq!(by_row("9")[4], "row_too_long");
    assert_eq!(by_row("10")[1], "created");
    // No cell's content in the report: only codes, ids and the tenant's own headers.
    let raw = std::fs::read_to_string(&report_path).unwrap();
    for secret in ["12345", "Хтось", "Без номера", "Олена"] {
        assert!(!raw.contains(secret), "{secret} in the report");
    }

    // Through the API: merged, transliterated attribute names, lists.
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let page = api
        .get("/v1/contacts?list=%D0%9A%D0%BB%D1%96%D1%94%D0%BD%D1%82%D0%B8")
        .await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let contacts = page.body["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 4, "{:?}", page.body);
    let olena = api.get("/v1/contacts?phone=0671234567").await.body["contacts"][0].clone();
    assert_eq!(olena["name"], "Олена Коваль");
    assert_eq!(
        olena["attributes"]["misto"], "Одеса",
        "the later row's value wins"
    );
    assert_eq!(
        olena["lists"],
        serde_json::json!(["VIP", "Клієнти", "Розсилка"])
    );
    let petro = api.get("/v1/contacts?phone=0501112233").await.body["contacts"][0].clone();
    assert_eq!(petro["name"], "Петро \"Кум\"; Іваненко");
    // A formula is stored as the text it is (the export neutralises it).
    let formula = api.get("/v1/contacts?phone=0931112233").await.body["contacts"][0].clone();
    assert_eq!(formula["name"], "=HYPERLINK(\"x\")");
    assert_eq!(
        formula["lists"],
        serde_json::json!(["VIP", "Клієнти", "Опт"])
    );

    // Imported again: nothing new, every good row merged.
    let again = import(dir.path(), &keys.tenant_id, &file, &[]);
    let t = tally(&again);
    assert_eq!(
        (t["created"].as_u64(), t["updated"].as_u64()),
        (Some(0), Some(5)),
        "{t}"
    );

    // Another tenant sees none of it.
    let them = Api::new(&holub, &other.api_key);
    let page = them.get("/v1/contacts").await;
    assert!(page.body["contacts"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_utf8_file_with_a_bom_and_commas_imports_with_a_column_mapping() {
    let dir = TempDir::new("import-utf8");
    let keys = create_tenant(dir.path(), "Import");
    let file = dir.path().join("export.csv");
    std::fs::write(
        &file,
        "\u{feff}Mobile,Client,Bonus,Ignored\n+380501234567,Ірина,150,x\n0671112233,Андрій,0,y\n",
    )
    .unwrap();
    let out = import(
        dir.path(),
        &keys.tenant_id,
        &file,
        &[
            "--map",
            "Mobile=phone",
            "--map",
            "Client=name",
            "--map",
            "Ignored=skip",
            "--map",
            "Bonus=bonus_uah",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tally(&out)["created"], 2);
    let holub = Holub::start(dir.path(), &["--sync", "normal"]);
    let api = Api::new(&holub, &keys.api_key);
    let c = api.get("/v1/contacts?phone=0501234567").await.body["contacts"][0].clone();
    assert_eq!(c["name"], "Ірина");
    assert_eq!(c["attributes"], serde_json::json!({"bonus_uah": "150"}));
}

#[test]
fn bad_files_are_refused_whole_and_store_nothing() {
    let dir = TempDir::new("import-bad");
    let keys = create_tenant(dir.path(), "Import");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("empty.csv", Vec::new(), "file_empty"),
        (
            "no-phone.csv",
            "Name;City\nОлена;Київ\n".into(),
            "phone_column_missing",
        ),
        (
            "utf16.csv",
            [&[0xFF, 0xFE][..], "P\0h\0o\0n\0e\0".as_bytes()].concat(),
            "encoding_unsupported",
        ),
        (
            "workbook.xlsx",
            b"PK\x03\x04rest of a zip".to_vec(),
            "file_not_csv",
        ),
    ];
    for (name, bytes, code) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let out = import(dir.path(), &keys.tenant_id, &file, &[]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(code), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}");
    }
    // Options that make no sense are refused before the file is read.
    let file = dir.path().join("ok.csv");
    std::fs::write(&file, "phone\n0671234567\n").unwrap();
    for extra in [
        &["--encoding", "koi8-u"][..],
        &["--delimiter", "|"],
        &["--map", "phone"],
        &["--list", " "],
    ] {
        let out = import(dir.path(), &keys.tenant_id, &file, extra);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
    }
    let out = import(dir.path(), "ten_nope", &file, &[]);
    assert_eq!(out.status.code(), Some(1));
}
