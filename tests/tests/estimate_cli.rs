//! `holub estimate`, run as the real binary.

use std::process::Command;

fn estimate(args: &[&str]) -> serde_json::Value {
    let out = Command::new(holub_tests::holub_bin())
        .arg("estimate")
        .args(args)
        .output()
        .expect("the holub binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn cyrillic_travels_as_ucs2() {
    let v = estimate(&["Привіт! Ваш код: 4821"]);
    assert_eq!(v["encoding"], "UCS-2");
    assert_eq!(v["characters"], 21);
    assert_eq!(v["units"], 21);
    assert_eq!(v["segments"], 1);
    assert_eq!(v["parts"], serde_json::json!(["Привіт! Ваш код: 4821"]));
    assert_eq!(v["text"], "Привіт! Ваш код: 4821");
}

#[test]
fn transliteration_makes_gsm7() {
    let v = estimate(&["--transliterate", "Згорани, Їжакевич і Юрій"]);
    assert_eq!(v["encoding"], "GSM-7");
    assert_eq!(v["text"], "Zghorany, Yizhakevych i Yurii");
    assert_eq!(v["segments"], 1);
}

#[test]
fn long_texts_are_split_into_parts() {
    let text = format!("{}€", "a".repeat(152));
    let v = estimate(&[&text]);
    assert_eq!(v["encoding"], "GSM-7");
    assert_eq!(v["units"], 154);
    assert_eq!(v["segments"], 1);
    let long = "ї".repeat(71);
    let v = estimate(&[&long]);
    assert_eq!(v["segments"], 2);
    assert_eq!(v["parts"][0].as_str().unwrap().chars().count(), 67);
    assert_eq!(v["parts"][1].as_str().unwrap().chars().count(), 4);
}

#[test]
fn empty_text_is_measured_not_refused() {
    let v = estimate(&[""]);
    assert_eq!(v["segments"], 0);
    assert_eq!(v["parts"], serde_json::json!([]));
}
