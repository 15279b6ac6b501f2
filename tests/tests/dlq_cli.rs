//! `holub dlq redrive` on a data directory, as an operator runs it once the cause of the
//! dead letters is fixed.

use std::process::Command;

use holub_tests::{TempDir, create_tenant, holub_bin};

fn redrive(dir: &TempDir, queue: &str) -> std::process::Output {
    Command::new(holub_bin())
        .args(["dlq", "redrive", "--queue", queue, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("holub dlq runs")
}

#[test]
fn dead_letters_go_back_on_their_queue() {
    let dir = TempDir::new("dlq-cli");
    create_tenant(dir.path(), "Dlq");
    {
        let db = rusqlite::Connection::open(dir.path().join("holub.db")).unwrap();
        db.execute_batch(
            "INSERT INTO dead_letters (queue, body, receive_count, sent_at, dead_at)
             VALUES ('dispatch', 'job-1', 5, 0, 0), ('dispatch', 'job-2', 5, 0, 0),
                    ('callbacks', 'cb-1', 5, 0, 0);",
        )
        .unwrap();
    }
    let out = redrive(&dir, "dispatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, serde_json::json!({"queue": "dispatch", "moved": 2}));

    let db = rusqlite::Connection::open(dir.path().join("holub.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM queue_messages WHERE queue = 'dispatch' AND receive_count = 0"),
        2
    );
    assert_eq!(
        count("SELECT count(*) FROM dead_letters WHERE queue = 'dispatch'"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM dead_letters WHERE queue = 'callbacks'"),
        1
    );

    let again = redrive(&dir, "dispatch");
    let answer: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(answer["moved"], 0);
    assert!(!redrive(&dir, "nowhere").status.success());
}
