//! What only the SQLite backend has, each test on its own temporary database file: rows
//! damaged behind its back, the group commit and its writer thread, durability across a
//! reopen, schema versions, query plans, queue order, stale handles and dead letters.
//!
//! What every backend must do is in the contract suite (`tests/tests/contract.rs`), which
//! runs on SQLite too; a test belongs here only if it checks something that suite cannot.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::domain::status::{PartReceipt, ReceiptState};
use crate::domain::{
    ApiKeyRecord, AuditAction, BatchId, Encoding, IdempotencyKey, KeyId, KeyName, Message,
    MessageId, MessageStatus, Origin, PhoneNumber, Scopes, SenderId, StatusChange, TenantId,
};
use crate::ports::{
    IdempotencyRecord, ListQuery, MessageRef, MessageStore, Outgoing, Patch, Queue, QueueError,
    QueueName, ReceiptHandle, Retention, Retryable, StoreError, Tenant, TenantStore, Transition,
};

use MessageStatus::*;

/// A database file (and the secrets file with its master key) in a directory of its own in
/// the temp directory, removed when dropped.
struct TempDb {
    dir: PathBuf,
    path: PathBuf,
}

impl TempDb {
    fn new(name: &str) -> TempDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "holub-sqlite-test-{name}-{}-{nanos}-{n}",
            std::process::id()
        ));
        let path = dir.join("holub.db");
        TempDb { dir, path }
    }

    fn open(&self) -> SqliteBackend {
        self.open_with(SqliteConfig {
            sync: SyncMode::Normal,
            ..SqliteConfig::default()
        })
    }

    fn open_with(&self, config: SqliteConfig) -> SqliteBackend {
        SqliteBackend::open(&self.path, config).expect("open the test database")
    }

    /// A separate raw connection, to look at or damage what the backend stored.
    fn raw(&self) -> rusqlite::Connection {
        std::fs::create_dir_all(&self.dir).expect("the test directory");
        let conn = rusqlite::Connection::open(&self.path).expect("open a raw connection");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An instant with nanoseconds, so round trips are checked at full precision.
fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_777_636_800 + second, 123_456_789)
        .single()
        .expect("a valid instant")
}

fn tenant() -> TenantId {
    TenantId::generate(Utc::now())
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).expect("a valid number")
}

fn message(tenant: &TenantId, created: DateTime<Utc>) -> Message {
    Message {
        id: MessageId::generate(created),
        tenant_id: tenant.clone(),
        batch_id: None,
        to: phone("+380671234567"),
        from: SenderId::parse("Holub").expect("a valid sender"),
        text: "Ваш код: 4821".into(),
        encoding: Encoding::Ucs2,
        segments: 1,
        status: Accepted,
        created_at: created,
        updated_at: created,
        send_at: None,
        expires_at: created + TimeDelta::days(1),
        callback_url: None,
        callback_statuses: Default::default(),
        reference: None,
        metadata: None,
        provider: None,
        provider_message_id: None,
        cost: None,
        error: None,
        attempts: 0,
        history: vec![StatusChange {
            status: Accepted,
            at: created,
        }],
        links: Vec::new(),
        clicks: 0,
        bot_clicks: 0,
        clicked_at: None,
        category: Default::default(),
        opt_out: None,
    }
}

fn record(tenant: &TenantId, key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        tenant_id: tenant.clone(),
        key: IdempotencyKey::parse(key).expect("a valid key"),
        fingerprint: format!("fp-{key}"),
        status_code: 202,
        body: json!({"messages": [{"id": "x"}], "count": 1}),
        created_at: at(0),
    }
}

fn step(m: &Message, from: &[MessageStatus], to: MessageStatus, second: i64) -> Transition {
    Transition {
        tenant_id: m.tenant_id.clone(),
        id: m.id,
        from: from.to_vec(),
        to,
        at: at(second),
        patch: Patch::default(),
    }
}

fn receipt(part: u16, state: ReceiptState, second: i64) -> PartReceipt {
    PartReceipt {
        part,
        state,
        at: at(second),
    }
}

fn reference(m: &Message) -> MessageRef {
    MessageRef {
        tenant_id: m.tenant_id.clone(),
        id: m.id,
    }
}

fn outgoing(body: &str) -> Outgoing {
    Outgoing {
        body: body.into(),
        delay: Duration::ZERO,
    }
}

fn bodies(deliveries: &[crate::ports::Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.body.as_str()).collect()
}

const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Stored data
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unreadable_rows_are_corrupt_not_a_panic() {
    let db = TempDb::new("corrupt");
    let store = db.open();
    let t = tenant();
    let m = message(&t, at(0));
    let n = message(&t, at(1));
    store.insert(&[m.clone(), n.clone()], None).await.unwrap();
    let raw = db.raw();
    raw.execute(
        "UPDATE messages SET status = 'bogus' WHERE id = ?1",
        [m.id.to_string()],
    )
    .unwrap();
    raw.execute(
        "UPDATE messages SET history = '[{\"nope\": 1}]' WHERE id = ?1",
        [n.id.to_string()],
    )
    .unwrap();

    let err = store.get(&t, &m.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store.get(&t, &n.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store
        .list(
            &t,
            &ListQuery {
                limit: 10,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    let err = store
        .transition(&[step(&n, &[Accepted], Queued, 2)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// The writer, the file and its schema
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_commit_together_and_fail_alone() {
    let db = TempDb::new("group-commit");
    let store = db.open_with(SqliteConfig::default()); // synchronous=FULL
    let t = tenant();
    store
        .insert(&[message(&t, at(0))], Some(&record(&t, "taken")))
        .await
        .unwrap();

    // 50 inserts at once; #7 reuses a taken key, #20 and #21 race for one new key.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let m = message(&t, at(i));
            let key = match i {
                7 => "taken".to_owned(),
                20 | 21 => "raced".to_owned(),
                _ => format!("key-{i}"),
            };
            let result = store
                .insert(std::slice::from_ref(&m), Some(&record(&t, &key)))
                .await;
            (i, m, result)
        }));
    }
    let mut landed = 0;
    let mut raced_winners = 0;
    for task in tasks {
        let (i, m, result) = task.await.unwrap();
        let stored = store.get(&t, &m.id).await.unwrap();
        match (i, result) {
            (7, Err(StoreError::IdempotencyKeyTaken)) => assert_eq!(stored, None),
            (20 | 21, Err(StoreError::IdempotencyKeyTaken)) => assert_eq!(stored, None),
            (20 | 21, Ok(())) => {
                raced_winners += 1;
                landed += 1;
                assert_eq!(stored, Some(m));
            }
            (_, Ok(())) => {
                landed += 1;
                assert_eq!(stored, Some(m));
            }
            (i, other) => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(raced_winners, 1);
    assert_eq!(landed, 48);
    let all = store
        .list(
            &t,
            &ListQuery {
                limit: 100,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.messages.len(), 49);
    // (Concurrent claims of one message, one winner: the contract suite's `races`.)
}

#[tokio::test]
async fn a_panicking_request_fails_alone_and_the_writer_goes_on() {
    let db = TempDb::new("panic");
    let store = db.open();
    let t = tenant();
    let boom = store.db.write(|_conn| -> Result<(), error::Failure> {
        panic!("a bug in a request");
    });
    let m = message(&t, at(0));
    let fine = store.insert(std::slice::from_ref(&m), None);
    let (boom, fine) = tokio::join!(boom, fine);
    assert!(
        matches!(
            boom,
            Err(error::Failure::Unavailable(error::BackendError::Panicked))
        ),
        "{boom:?}"
    );
    fine.unwrap();
    assert_eq!(store.get(&t, &m.id).await.unwrap(), Some(m));
}

#[tokio::test]
async fn a_failed_commit_fails_its_group_and_the_next_one_commits() {
    let db = TempDb::new("failed-commit");
    let store = db.open();
    // A deferred foreign key is checked only at COMMIT, and a COMMIT refused for it leaves
    // the transaction open: what a full disk can do to a COMMIT too.
    store
        .db
        .write(|conn| {
            conn.execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (p INTEGER REFERENCES parent (id)
                     DEFERRABLE INITIALLY DEFERRED);",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let orphan = store
        .db
        .write(|conn| {
            conn.execute("INSERT INTO child (p) VALUES (42)", [])?;
            Ok(())
        })
        .await;
    assert!(
        matches!(
            orphan,
            Err(error::Failure::Unavailable(error::BackendError::Commit(_)))
        ),
        "{orphan:?}"
    );

    let t = tenant();
    let m = message(&t, at(0));
    store.insert(std::slice::from_ref(&m), None).await.unwrap();
    assert_eq!(store.get(&t, &m.id).await.unwrap(), Some(m));
    let children: i64 = db
        .raw()
        .query_row("SELECT count(*) FROM child", [], |r| r.get(0))
        .unwrap();
    assert_eq!(children, 0);
}

#[tokio::test]
async fn a_full_database_refuses_writes_and_takes_them_once_it_has_room() {
    let db = TempDb::new("full");
    let store = db.open();
    let set_max_pages = |pages: i64| {
        store.db.write(move |conn| {
            let max: i64 =
                conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get(0)
                })?;
            Ok(max)
        })
    };
    // As large as it is now: one page more is a full disk (SQLITE_FULL).
    set_max_pages(1).await.unwrap();
    let t = tenant();
    let mut stored = Vec::new();
    let refused = loop {
        let batch: Vec<Message> = (0..50).map(|i| message(&t, at(i))).collect();
        match store.insert(&batch, None).await {
            Ok(()) => stored.extend(batch),
            Err(e) => break e,
        }
        assert!(stored.len() < 100_000, "the database never filled");
    };
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    assert!(refused.is_retryable());
    let err = store
        .send_batch(QueueName::Dispatch, vec![outgoing("job"); 200])
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // Reads go on.
    if let Some(m) = stored.first() {
        assert_eq!(store.get(&t, &m.id).await.unwrap().as_ref(), Some(m));
    }

    // Room again: writes are taken, without reopening.
    set_max_pages(1 << 30).await.unwrap();
    let m = message(&t, at(100));
    store.insert(std::slice::from_ref(&m), None).await.unwrap();
    assert_eq!(store.get(&t, &m.id).await.unwrap(), Some(m));
    store
        .send_batch(QueueName::Dispatch, vec![outgoing("job")])
        .await
        .unwrap();
    assert_eq!(store.queue_depth(QueueName::Dispatch).await.unwrap(), 1);
}

#[tokio::test]
async fn a_stopped_writer_makes_writes_unavailable_not_hang() {
    let db = TempDb::new("stopped");
    let mut store = db.open();
    let t = tenant();
    let m = message(&t, at(0));
    store.insert(std::slice::from_ref(&m), None).await.unwrap();
    // The vault's weak handle on the database goes first, so this one is the only handle.
    let master = crate::adapters::vault::LocalMasterKey::new(
        crate::adapters::file_secrets::FileSecretStore::in_dir(&db.dir),
    );
    store.vault = std::sync::Arc::new(crate::adapters::vault::Vault::new(
        std::sync::Arc::new(master),
        std::sync::Arc::new(super::keys::Shelf(std::sync::Weak::new())),
    ));
    std::sync::Arc::get_mut(&mut store.db)
        .expect("the only handle")
        .stop_writer();
    let master = crate::adapters::vault::LocalMasterKey::new(
        crate::adapters::file_secrets::FileSecretStore::in_dir(&db.dir),
    );
    store.vault = std::sync::Arc::new(crate::adapters::vault::Vault::new(
        std::sync::Arc::new(master),
        std::sync::Arc::new(super::keys::Shelf(std::sync::Arc::downgrade(&store.db))),
    ));
    let err = store.insert(&[message(&t, at(1))], None).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store
        .send_batch(QueueName::Dispatch, vec![outgoing("x")])
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
    // Reads do not need the writer.
    assert_eq!(store.get(&t, &m.id).await.unwrap(), Some(m));
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let db = TempDb::new("reopen");
    let t = tenant();
    let m = message(&t, at(0));
    let in_flight;
    let key_id;
    {
        let store = db.open_with(SqliteConfig::default());
        let key = ApiKeyRecord {
            id: Some(KeyId::generate(at(0))),
            tenant_id: t.clone(),
            hash: "hash".into(),
            name: Some(KeyName::parse("first").unwrap()),
            scopes: Scopes::parse("messages:send").unwrap(),
            created_at: Some(at(0)),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        let audit =
            Origin::operator().entry(&t, at(0), AuditAction::TenantCreate, "tenant", None, None);
        let tenant = Tenant {
            id: t.clone(),
            name: "Acme".into(),
            created_at: at(0),
        };
        store.create_tenant(&tenant, &key, &audit).await.unwrap();
        key_id = key.id.clone();
        store
            .insert(std::slice::from_ref(&m), Some(&record(&t, "k")))
            .await
            .unwrap();
        store
            .transition(&[step(&m, &[Accepted], Queued, 1)])
            .await
            .unwrap();
        store
            .add_receipts(&[(reference(&m), receipt(1, ReceiptState::Enroute, 2))])
            .await
            .unwrap();
        store
            .send_batch(QueueName::Dispatch, vec![outgoing("one"), outgoing("two")])
            .await
            .unwrap();
        let got = store
            .receive(QueueName::Dispatch, 1, LONG, Duration::ZERO)
            .await
            .unwrap();
        in_flight = got[0].body.clone();
        store.close().await;
    }
    let store = db.open();
    let key = store
        .api_key(key_id.as_ref(), "hash")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&key.tenant_id, key.scopes.to_list().as_str()),
        (&t, "messages:send")
    );
    let log = store.audit_log(&t, None, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    let stored = store.get(&t, &m.id).await.unwrap().unwrap();
    assert_eq!(stored.status, Queued);
    assert_eq!(stored.history.len(), 2);
    assert!(
        store
            .idempotency(&t, &IdempotencyKey::parse("k").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    let receipts = store
        .add_receipts(&[(reference(&m), receipt(1, ReceiptState::Enroute, 2))])
        .await
        .unwrap();
    assert_eq!(receipts[0].len(), 1);
    assert_eq!(store.queue_depth(QueueName::Dispatch).await.unwrap(), 2);
    // The message received before the restart is still hidden.
    let got = store
        .receive(QueueName::Dispatch, 10, LONG, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_ne!(got[0].body, in_flight);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = TempDb::new("schema-version");
    drop(db.open());
    db.raw().execute_batch("PRAGMA user_version = 99").unwrap();
    let err = SqliteBackend::open(&db.path, SqliteConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_database_from_before_key_ids_keeps_its_keys_and_senders() {
    let db = TempDb::new("schema-v2");
    {
        let raw = db.raw();
        for sql in &super::schema::MIGRATIONS[..2] {
            raw.execute_batch(sql).unwrap();
        }
        raw.execute_batch(
            "PRAGMA user_version = 2;
             INSERT INTO tenants VALUES ('ten_01J00000000000000000000000', 'Old', 0);
             INSERT INTO api_keys (key_hash, tenant_id) VALUES ('old-hash', 'ten_01J00000000000000000000000');
             INSERT INTO messages (tenant_id, id, to_number, sender, text, encoding, segments,
                 status, created_at, updated_at, expires_at, attempts, history)
             VALUES ('ten_01J00000000000000000000000', '01J00000000000000000000000', '+380671234567',
                 'OldShop', 'x', 'GSM-7', 1, 'delivered', 0, 0, 0, 1, '[]');
             INSERT INTO idempotency VALUES ('ten_01J00000000000000000000000', 'old-key',
                 'old-fingerprint', 202, '{\"to\": \"+380671234567\"}', 0);",
        )
        .unwrap();
    }
    let store = db.open();
    let t: TenantId = "ten_01J00000000000000000000000".parse().unwrap();
    // A message from before sealing reads as it was, and is sealed by `seal_legacy`.
    let old_id: MessageId = "01J00000000000000000000000".parse().unwrap();
    let before = store.get(&t, &old_id).await.unwrap().unwrap();
    assert_eq!(before.to, phone("+380671234567"));
    let old_key = IdempotencyKey::parse("old-key").unwrap();
    let answer = store.idempotency(&t, &old_key).await.unwrap().unwrap();
    assert_eq!(answer.fingerprint, "old-fingerprint");
    assert_eq!(store.seal_legacy().await.unwrap(), 2);
    assert_eq!(
        store.idempotency(&t, &old_key).await.unwrap().unwrap(),
        answer
    );
    let (fingerprint, body): (String, String) = db
        .raw()
        .query_row("SELECT fingerprint, body FROM idempotency", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(fingerprint != "old-fingerprint" && body.is_empty());
    assert_eq!(store.seal_legacy().await.unwrap(), 0);
    let (to, sealed): (String, Option<Vec<u8>>) = db
        .raw()
        .query_row("SELECT to_number, sealed FROM messages", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(to.is_empty() && sealed.is_some());
    assert_eq!(store.get(&t, &old_id).await.unwrap().unwrap(), before);
    let found = store
        .list(
            &t,
            &ListQuery {
                to: Some(phone("+380671234567")),
                limit: 10,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.messages, vec![before]);
    let key = store.api_key(None, "old-hash").await.unwrap().unwrap();
    assert_eq!(
        (key.id, key.scopes, key.tenant_id),
        (None, Scopes::ADMIN, t.clone())
    );
    // The message from before counts in the statistics from the first rollup (its
    // operator unknown: it was not kept then).
    let rolled = crate::ports::StatsStore::roll_up(&store, 100)
        .await
        .unwrap();
    assert_eq!(rolled.events, 1);
    let cells = crate::ports::StatsStore::stats(
        &store,
        &t,
        crate::domain::stats::Hour(0),
        crate::domain::stats::Hour(1),
    )
    .await
    .unwrap();
    assert_eq!(cells.len(), 1, "{cells:?}");
    assert_eq!(
        (cells[0].0.operator, cells[0].1.count(Delivered)),
        (None, 1)
    );
    let senders = store.senders(&t).await.unwrap();
    assert_eq!(senders.len(), 1);
    assert_eq!(senders[0].sender.as_str(), "OldShop");
    assert!(
        senders[0]
            .networks
            .values()
            .all(|r| *r == crate::domain::Registration::Active)
    );
}

#[tokio::test]
async fn every_query_uses_its_index() {
    let db = TempDb::new("plans");
    drop(db.open());
    let raw = db.raw();
    let plan = |sql: &str| -> String {
        let mut stmt = raw.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Unbound parameters are NULL, which does not change the plan.
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push(row.get::<_, String>(3).unwrap());
        }
        steps.join(" | ")
    };
    let t = tenant();
    let list = |f: fn(&mut ListQuery)| {
        let mut q = ListQuery {
            limit: 10,
            after: Some(MessageId::generate(at(0))),
            ..ListQuery::default()
        };
        f(&mut q);
        store::list_sql_for_tests(&t, &q)
    };
    let cases = [
        (list(|_| {}), "messages_tenant_id"),
        (list(|q| q.status = Some(Queued)), "messages_tenant_id"),
        (
            list(|q| q.to = Some(phone("+380671234567"))),
            "messages_tenant_tag",
        ),
        (
            list(|q| q.batch_id = Some(BatchId::generate(at(0)))),
            "messages_tenant_batch",
        ),
        (queue::VISIBLE.to_owned(), "queue_visible"),
    ];
    let named = store::QUERIES_FOR_TESTS.iter().map(|(name, sql)| {
        let index = match *name {
            "due_scheduled" => "messages_due",
            "stale_queued" => "messages_stale_queued",
            "sent_past_validity" => "messages_validity",
            "find_by_provider_ids" => "messages_provider",
            "receipts" => "messages_tenant_id",
            "get" => "messages_tenant_id",
            other => panic!("no expected index for {other}"),
        };
        ((*sql).to_owned(), index)
    });
    for (sql, index) in cases.into_iter().chain(named) {
        let plan = plan(&sql);
        assert!(
            plan.contains(&format!("INDEX {index}"))
                && !plan.contains("SCAN messages")
                && !plan.contains("TEMP B-TREE"),
            "{sql}\n  → {plan}"
        );
    }
    // The rollup reads messages by `seq`, and the reports a range of one tenant's cells.
    for sql in super::stats::QUERIES_FOR_TESTS {
        let plan = plan(sql);
        assert!(
            !plan.contains("SCAN m")
                && !plan.contains("SCAN stats")
                && !plan.contains("TEMP B-TREE"),
            "{sql}\n  → {plan}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------

// Delivery, hiding, deleting, delays, long polls and size limits are in the contract suite;
// what SQS does not promise (order, depth, what an older handle does) is checked here.

#[tokio::test]
async fn the_queue_is_first_in_first_out_and_deletes_only_its_own() {
    let db = TempDb::new("queue");
    let queue = db.open();
    let q = QueueName::Dispatch;
    queue
        .send_batch(q, vec![outgoing("a"), outgoing("b"), outgoing("c")])
        .await
        .unwrap();
    queue
        .send_batch(QueueName::Callbacks, vec![outgoing("cb")])
        .await
        .unwrap();

    let got = queue.receive(q, 10, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&got), ["a", "b", "c"]);
    let handles: Vec<ReceiptHandle> = got[..2].iter().map(|d| d.handle.clone()).collect();
    // Deleting through the wrong queue does nothing.
    queue
        .delete_batch(QueueName::Callbacks, &handles)
        .await
        .unwrap();
    assert_eq!(queue.queue_depth(q).await.unwrap(), 3);
    queue.delete_batch(q, &handles).await.unwrap();
    assert_eq!(queue.queue_depth(q).await.unwrap(), 1);
    assert_eq!(queue.queue_depth(QueueName::Callbacks).await.unwrap(), 1);

    // `max` takes the oldest.
    queue
        .send_batch(q, (0..5).map(|i| outgoing(&i.to_string())).collect())
        .await
        .unwrap();
    let got = queue.receive(q, 2, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&got), ["0", "1"]);
}

#[tokio::test]
async fn an_older_handle_is_stale() {
    let db = TempDb::new("stale-handle");
    let queue = db.open();
    let q = QueueName::Dispatch;
    queue.send_batch(q, vec![outgoing("job")]).await.unwrap();
    // Milliseconds, where SQS counts whole seconds.
    let short = Duration::from_millis(200);
    let first = queue.receive(q, 10, short, Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(260)).await;
    let second = queue.receive(q, 10, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&second), ["job"]);
    assert_ne!(second[0].handle, first[0].handle);

    // Deleting with the first handle does nothing, delaying with it fails.
    queue
        .delete_batch(q, &[first[0].handle.clone()])
        .await
        .unwrap();
    assert_eq!(queue.queue_depth(q).await.unwrap(), 1);
    let err = queue
        .change_visibility(q, &first[0].handle, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::StaleHandle), "{err:?}");
    // The current one still works.
    queue
        .delete_batch(q, &[second[0].handle.clone()])
        .await
        .unwrap();
    assert_eq!(queue.queue_depth(q).await.unwrap(), 0);
}

#[tokio::test]
async fn a_message_received_too_often_is_dead_lettered() {
    let db = TempDb::new("dead-letters");
    let queue = db.open_with(SqliteConfig {
        sync: SyncMode::Normal,
        max_receives: 2,
        readers: 1,
    });
    let q = QueueName::Dispatch;
    queue.send_batch(q, vec![outgoing("poison")]).await.unwrap();
    for count in 1..=2 {
        let got = queue
            .receive(q, 1, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(bodies(&got), ["poison"]);
        assert_eq!(got[0].receive_count, count);
    }
    queue
        .send_batch(q, vec![outgoing("healthy")])
        .await
        .unwrap();
    // The poison is older and first in line: it is buried, and the healthy one is delivered
    // in its place within the same receive.
    let got = queue.receive(q, 1, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&got), ["healthy"]);
    assert_eq!(queue.dead_letters(q).await.unwrap(), ["poison"]);
    assert!(
        queue
            .dead_letters(QueueName::Callbacks)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(queue.queue_depth(q).await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------
// Throughput (not run by default: `cargo test --release -p holub-shared --features sqlite
// sqlite::tests::throughput -- --ignored --nocapture`)
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check; run it on purpose"]
async fn throughput() {
    let db = TempDb::new("throughput");
    let store = db.open_with(SqliteConfig::default());
    let t = tenant();

    // Single inserts with an idempotency key each, from 32 concurrent clients.
    let total = 9_000;
    let clients = 32;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let store = store.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..total / clients {
                let m = message(&t, Utc::now());
                let rec = record(&t, &format!("single-{c}-{i}"));
                let began = Instant::now();
                store
                    .insert(std::slice::from_ref(&m), Some(&rec))
                    .await
                    .unwrap();
                latencies.push(began.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    eprintln!(
        "single inserts: {:.0}/s, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(1.0)
    );

    // The pipeline: batch intake → queue → dispatch → receipts.
    let batches = 20;
    let per_batch = 1000;
    let started = Instant::now();
    let intake = {
        let store = store.clone();
        let t = t.clone();
        tokio::spawn(async move {
            for _ in 0..batches {
                let messages: Vec<Message> = (0..per_batch)
                    .map(|_| {
                        let mut m = message(&t, Utc::now());
                        m.status = Queued;
                        m
                    })
                    .collect();
                store.insert(&messages, None).await.unwrap();
                let jobs = messages
                    .iter()
                    .map(|m| outgoing(&format!("{}|{}", m.tenant_id, m.id)))
                    .collect();
                store.send_batch(QueueName::Dispatch, jobs).await.unwrap();
            }
        })
    };
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let mut done = 0;
            loop {
                let jobs = store
                    .receive(QueueName::Dispatch, 250, LONG, Duration::from_millis(500))
                    .await
                    .unwrap();
                if jobs.is_empty() {
                    return done;
                }
                let refs: Vec<(TenantId, MessageId)> = jobs
                    .iter()
                    .map(|j| {
                        let (t, id) = j.body.split_once('|').unwrap();
                        (t.parse().unwrap(), id.parse().unwrap())
                    })
                    .collect();
                let claim = |(t, id): &(TenantId, MessageId), from, to, patch: Patch| Transition {
                    tenant_id: t.clone(),
                    id: *id,
                    from: vec![from],
                    to,
                    at: Utc::now(),
                    patch,
                };
                let claims: Vec<_> = refs
                    .iter()
                    .map(|r| {
                        claim(
                            r,
                            Queued,
                            Sending,
                            Patch {
                                count_attempt: true,
                                ..Patch::default()
                            },
                        )
                    })
                    .collect();
                store.transition(&claims).await.unwrap();
                let sent: Vec<_> = refs
                    .iter()
                    .map(|r| {
                        claim(
                            r,
                            Sending,
                            Sent,
                            Patch {
                                provider: Some("sim".into()),
                                provider_message_id: Some(format!("sim-{}", r.1)),
                                ..Patch::default()
                            },
                        )
                    })
                    .collect();
                store.transition(&sent).await.unwrap();
                let handles: Vec<_> = jobs.iter().map(|j| j.handle.clone()).collect();
                store
                    .delete_batch(QueueName::Dispatch, &handles)
                    .await
                    .unwrap();
                // The receipts come back.
                let ids: Vec<String> = refs.iter().map(|r| format!("sim-{}", r.1)).collect();
                let targets = store.find_by_provider_ids("sim", &ids).await.unwrap();
                let receipts: Vec<_> = targets
                    .iter()
                    .map(|t| {
                        (
                            t.clone().unwrap().message,
                            PartReceipt {
                                part: 1,
                                state: ReceiptState::Delivered,
                                at: Utc::now(),
                            },
                        )
                    })
                    .collect();
                store.add_receipts(&receipts).await.unwrap();
                let delivered: Vec<_> = refs
                    .iter()
                    .map(|r| claim(r, Sent, Delivered, Patch::default()))
                    .collect();
                let results = store.transition(&delivered).await.unwrap();
                assert!(results.iter().all(Option::is_some), "worker {w}");
                done += jobs.len();
            }
        }));
    }
    intake.await.unwrap();
    let mut done = 0;
    for w in workers {
        done += w.await.unwrap();
    }
    // The last half second is the workers' final empty long poll.
    let elapsed = started.elapsed().saturating_sub(Duration::from_millis(500));
    assert_eq!(done, batches * per_batch);
    eprintln!(
        "pipeline: {done} messages in {elapsed:?}: {:.0}/s",
        done as f64 / elapsed.as_secs_f64()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_database_is_readable_by_its_user_alone() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = std::env::temp_dir().join(format!(
        "holub-sqlite-private-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let path = dir.join("data").join("holub.db");
    let store = SqliteBackend::open(&path, SqliteConfig::default()).unwrap();
    store
        .insert(&[message(&tenant(), at(0))], None)
        .await
        .unwrap();
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    // The master key beside it, made by that first write.
    assert_eq!(mode(&path.parent().unwrap().join("secrets.json")), 0o600);
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    store.close().await;

    // A database made before, readable by others, is tightened when opened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = SqliteBackend::open(&path, SqliteConfig::default()).unwrap();
    assert_eq!(mode(&path), 0o600);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn old_final_messages_and_idempotency_records_are_forgotten() {
    let db = TempDb::new("retention");
    let store = db.open();
    let t = tenant();
    let final_at = |created: i64, status| {
        let mut m = message(&t, at(created));
        m.status = status;
        m
    };
    let old_delivered = final_at(0, Delivered);
    let old_failed = final_at(1, Failed);
    let old_scheduled = final_at(2, Scheduled);
    let young_delivered = final_at(100, Delivered);
    let old_key = IdempotencyRecord {
        tenant_id: t.clone(),
        key: IdempotencyKey::parse("old").unwrap(),
        fingerprint: "f".into(),
        status_code: 202,
        body: serde_json::json!({}),
        created_at: at(0),
    };
    store
        .insert(
            &[
                old_delivered.clone(),
                old_failed.clone(),
                old_scheduled.clone(),
            ],
            Some(&old_key),
        )
        .await
        .unwrap();
    store
        .insert(std::slice::from_ref(&young_delivered), None)
        .await
        .unwrap();
    store
        .add_receipts(&[(
            MessageRef {
                tenant_id: t.clone(),
                id: old_delivered.id,
            },
            PartReceipt {
                part: 1,
                state: ReceiptState::Delivered,
                at: at(3),
            },
        )])
        .await
        .unwrap();

    let everyone = Retention {
        before: at(50),
        tenants: Vec::new(),
    };
    let forgotten = store.forget_old(&everyone, at(50), 1_000).await.unwrap();
    assert_eq!(forgotten, 3, "two final messages and one record");
    for (m, kept) in [
        (&old_delivered, false),
        (&old_failed, false),
        (&old_scheduled, true),
        (&young_delivered, true),
    ] {
        assert_eq!(
            store.get(&t, &m.id).await.unwrap().is_some(),
            kept,
            "{:?}",
            m.status
        );
    }
    assert!(store.idempotency(&t, &old_key.key).await.unwrap().is_none());
    let receipts: i64 = db
        .raw()
        .query_row("SELECT count(*) FROM receipts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(receipts, 0, "receipts go with their message");
    assert_eq!(store.forget_old(&everyone, at(50), 1_000).await.unwrap(), 0);
    store.close().await;
}

/// A tenant in the store, with one key, so erasure has something to act on.
async fn stored_tenant(store: &SqliteBackend) -> TenantId {
    let t = tenant();
    let key = ApiKeyRecord {
        id: Some(KeyId::generate(at(0))),
        tenant_id: t.clone(),
        hash: format!("hash-{t}"),
        name: Some(KeyName::parse("main").unwrap()),
        scopes: Scopes::ADMIN,
        created_at: Some(at(0)),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    let audit =
        Origin::operator().entry(&t, at(0), AuditAction::TenantCreate, "tenant", None, None);
    let tenant = Tenant {
        id: t.clone(),
        name: "Acme".into(),
        created_at: at(0),
    };
    store.create_tenant(&tenant, &key, &audit).await.unwrap();
    t
}

/// Every byte SQLite keeps for the database: the file and its write-ahead log.
fn stored_bytes(db: &TempDb) -> Vec<u8> {
    let mut bytes = std::fs::read(&db.path).unwrap();
    if let Ok(wal) = std::fs::read(format!("{}-wal", db.path.display())) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn numbers_and_texts_are_stored_sealed_and_found_by_tag() {
    let db = TempDb::new("sealed");
    let store = db.open();
    let (a, b) = (stored_tenant(&store).await, stored_tenant(&store).await);
    let mut to_a = message(&a, at(0));
    to_a.to = phone("+380501112233");
    to_a.text = "Секретний код 739164".into();
    let mut other = message(&a, at(1));
    other.to = phone("+380634445566");
    let mut to_b = message(&b, at(2));
    to_b.to = phone("+380501112233");
    let mut answer = record(&a, "sealed-key");
    answer.body = json!({"to": "+380501112233", "text": "Секретний код 739164"});
    store
        .insert(&[to_a.clone(), other.clone()], Some(&answer))
        .await
        .unwrap();
    store
        .insert(std::slice::from_ref(&to_b), None)
        .await
        .unwrap();

    let bytes = stored_bytes(&db);
    for secret in [
        "380501112233",
        "380634445566",
        "739164",
        "Секретний",
        "fp-sealed-key",
    ] {
        assert!(!contains(&bytes, secret), "{secret} is stored in clear");
    }
    assert_eq!(store.get(&a, &to_a.id).await.unwrap().unwrap(), to_a);
    // The record comes back whole, fingerprint included, though neither is stored in clear.
    assert_eq!(
        store.idempotency(&a, &answer.key).await.unwrap().unwrap(),
        answer
    );
    // The filter by number finds the tenant's own message to it, by tag.
    let page = store
        .list(
            &a,
            &ListQuery {
                to: Some(phone("+380501112233")),
                limit: 10,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.messages, vec![to_a.clone()]);
    // Tags differ between tenants: the same number has another tag under another key.
    let tags: Vec<Vec<u8>> = db
        .raw()
        .prepare("SELECT to_tag FROM messages WHERE id IN (?1, ?2)")
        .unwrap()
        .query_map([to_a.id.to_string(), to_b.id.to_string()], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tags.len(), 2);
    assert_ne!(tags[0], tags[1]);
    store.close().await;

    // Reopened, with the master key from the secrets file beside the database.
    let store = db.open();
    assert_eq!(store.get(&b, &to_b.id).await.unwrap().unwrap(), to_b);
    store.close().await;

    // Without that file, nothing opens: the database alone does not give the data away.
    std::fs::remove_file(db.dir.join(crate::adapters::file_secrets::SECRETS_FILE)).unwrap();
    let store = db.open();
    assert!(matches!(
        store.get(&a, &to_a.id).await,
        Err(StoreError::Corrupt(_))
    ));
    store.close().await;
}

#[tokio::test]
async fn an_erased_tenant_can_never_be_read_again_and_its_rows_go() {
    let db = TempDb::new("erase");
    let store = db.open();
    let (gone, kept) = (stored_tenant(&store).await, stored_tenant(&store).await);
    let mut delivered = message(&gone, at(0));
    delivered.status = Delivered;
    let queued = message(&gone, at(1));
    let mut scheduled = message(&gone, at(2));
    scheduled.status = Scheduled;
    let other = message(&kept, at(3));
    store
        .insert(
            &[delivered.clone(), queued.clone(), scheduled.clone()],
            Some(&record(&gone, "erase-key")),
        )
        .await
        .unwrap();
    store
        .insert(std::slice::from_ref(&other), None)
        .await
        .unwrap();

    let audit = Origin::operator().entry(&gone, at(9), AuditAction::TenantErase, "t", None, None);
    assert!(store.erase_tenant(&gone, at(9), &audit).await.unwrap());
    // Erasing twice finds nothing more to erase; an unknown tenant is not found.
    let again = Origin::operator().entry(&gone, at(9), AuditAction::TenantErase, "t", None, None);
    assert!(!store.erase_tenant(&gone, at(9), &again).await.unwrap());
    let unknown = tenant();
    let audit =
        Origin::operator().entry(&unknown, at(9), AuditAction::TenantErase, "t", None, None);
    assert!(matches!(
        store.erase_tenant(&unknown, at(9), &audit).await,
        Err(StoreError::NotFound)
    ));

    assert!(matches!(
        store.get(&gone, &delivered.id).await,
        Err(StoreError::Erased)
    ));
    assert!(matches!(
        store
            .list(
                &gone,
                &ListQuery {
                    limit: 10,
                    ..ListQuery::default()
                }
            )
            .await,
        Err(StoreError::Erased)
    ));
    // A change still lands (so the message ends) but reads back as nothing.
    let ended = store
        .transition(&[step(&queued, &[Accepted], Failed, 10)])
        .await
        .unwrap();
    assert_eq!(ended, vec![None]);
    assert!(matches!(
        store.insert(&[message(&gone, at(11))], None).await,
        Err(StoreError::Erased)
    ));
    // Its keys are revoked, in the same write, and the erasure is audited.
    let keys = store.list_keys(&gone).await.unwrap();
    assert!(keys.iter().all(|k| k.revoked_at.is_some()));
    let log = store.audit_log(&gone, None, 10).await.unwrap();
    assert_eq!(log[0].action, AuditAction::TenantErase);
    // The other tenant is untouched.
    assert_eq!(store.get(&kept, &other.id).await.unwrap().unwrap(), other);

    // The retention sweep deletes every row of the erased tenant, final or not.
    let everyone = Retention {
        before: at(-1000),
        tenants: Vec::new(),
    };
    assert_eq!(
        store.forget_old(&everyone, at(-1000), 1_000).await.unwrap(),
        4
    );
    let left: i64 = db
        .raw()
        .query_row(
            "SELECT count(*) FROM messages WHERE tenant_id = ?1",
            [gone.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(store.get(&kept, &other.id).await.unwrap().unwrap(), other);
    store.close().await;
}

#[tokio::test]
async fn each_tenant_keeps_its_messages_as_long_as_its_limits_say() {
    let db = TempDb::new("retention-per-tenant");
    let store = db.open();
    let (short, long, usual) = (tenant(), tenant(), tenant());
    let old = |t: &TenantId| {
        let mut m = message(t, at(0));
        m.status = Delivered;
        m
    };
    let (short_m, long_m, usual_m) = (old(&short), old(&long), old(&usual));
    for m in [&short_m, &long_m, &usual_m] {
        store.insert(std::slice::from_ref(m), None).await.unwrap();
    }
    // Default: gone after 100 s; `short` after 10 s; `long` after 1000 s. At 200 s:
    let retention = Retention {
        before: at(100),
        tenants: vec![(short.clone(), at(190)), (long.clone(), at(-800))],
    };
    assert_eq!(store.forget_old(&retention, at(0), 1_000).await.unwrap(), 2);
    assert!(store.get(&short, &short_m.id).await.unwrap().is_none());
    assert!(store.get(&usual, &usual_m.id).await.unwrap().is_none());
    assert!(store.get(&long, &long_m.id).await.unwrap().is_some());
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// The callback outbox
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_change_writes_its_callback_job_in_the_same_write() {
    use crate::domain::StatusSet;
    use crate::services::jobs::{self, CallbackJob};

    let db = TempDb::new("outbox");
    let store = db.open();
    let t = tenant();
    let hook = "https://shop.example.com/hook";
    let mut a = message(&t, at(0));
    a.callback_url = Some(hook.into());
    a.reference = Some("r-1".into());
    let mut b = message(&t, at(1));
    b.callback_url = Some(hook.into());
    b.callback_statuses = StatusSet::of([Delivered]);
    let mut other = message(&t, at(2));
    other.callback_url = Some("https://other.example.com/hook".into());
    let silent = message(&t, at(3));
    store
        .insert(&[a.clone(), b.clone(), other.clone(), silent.clone()], None)
        .await
        .unwrap();
    // Storing tells nobody: the answer to the request did.
    let none = store
        .receive(QueueName::Callbacks, 10, LONG, Duration::ZERO)
        .await
        .unwrap();
    assert!(none.is_empty());

    let claim = |m: &Message| step(m, &[Accepted, Queued], Sending, 5);
    store
        .transition(&[claim(&a), claim(&b), claim(&other), claim(&silent)])
        .await
        .unwrap();
    // One job per URL; `b` asked for `delivered` only, `silent` for nothing.
    let got = store
        .receive(QueueName::Callbacks, 10, LONG, Duration::ZERO)
        .await
        .unwrap();
    let mut jobs: Vec<CallbackJob> = got
        .iter()
        .map(|d| jobs::parse::<CallbackJob>(&d.body).unwrap())
        .collect();
    jobs.sort_by(|x, y| x.url.cmp(&y.url));
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[0].url, "https://other.example.com/hook");
    assert_eq!(jobs[1].url, hook);
    assert_eq!(jobs[1].events.len(), 1);
    let event = &jobs[1].events[0];
    assert_eq!((event.message_id, event.status), (a.id, Sending));
    assert_eq!(event.at, at(5));
    assert_eq!(event.reference.as_deref(), Some("r-1"));

    // A change that does not apply writes nothing.
    store.transition(&[claim(&a)]).await.unwrap();
    let delivered = |m: &Message| step(m, &[Sending], Delivered, 9);
    store.transition(&[delivered(&b)]).await.unwrap();
    let got = store
        .receive(QueueName::Callbacks, 10, LONG, Duration::ZERO)
        .await
        .unwrap();
    let job = jobs::parse::<CallbackJob>(&got[0].body).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (job.events[0].message_id, job.events[0].status),
        (b.id, Delivered)
    );

    // The statuses asked for survive a read.
    let read = store.get(&t, &b.id).await.unwrap().unwrap();
    assert_eq!(read.callback_statuses, StatusSet::of([Delivered]));
}
