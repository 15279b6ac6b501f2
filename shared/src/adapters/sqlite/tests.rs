//! Tests of the SQLite backend, each on its own temporary database file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::domain::status::{PartReceipt, ReceiptState};
use crate::domain::{
    BatchId, Encoding, IdempotencyKey, Kopiyky, Message, MessageError, MessageId, MessageStatus,
    PhoneNumber, SenderId, StatusChange, TenantId,
};
use crate::ports::{
    IdempotencyRecord, ListQuery, MessageRef, MessageStore, Outgoing, Patch, Queue, QueueError,
    QueueName, ReceiptHandle, ReceiptTarget, Secret, SecretError, SecretStore, StoreError, Tenant,
    TenantStore, Transition,
};

use MessageStatus::*;

/// A database file in the temp directory, removed (with its WAL files) when dropped.
struct TempDb {
    path: PathBuf,
}

impl TempDb {
    fn new(name: &str) -> TempDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "holub-sqlite-test-{name}-{}-{nanos}-{n}.db",
            std::process::id()
        ));
        TempDb { path }
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
        let conn = rusqlite::Connection::open(&self.path).expect("open a raw connection");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
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
// Messages
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_message_round_trips_with_every_field() {
    let db = TempDb::new("round-trip");
    let store = db.open();
    let t = tenant();
    let mut m = message(&t, at(0));
    m.batch_id = Some(BatchId::generate(at(0)));
    m.from = SenderId::parse("+380501234567").expect("a phone sender");
    m.encoding = Encoding::Gsm7;
    m.segments = 3;
    m.status = Sent;
    m.updated_at = at(5);
    m.send_at = Some(at(3));
    m.callback_url = Some("https://example.com/hook".into());
    m.reference = Some("order-42".into());
    m.metadata =
        Some(json!({"order": 42, "tags": ["a", "b"], "price": 1.5, "nested": {"x": null}}));
    m.provider = Some("kyivstar".into());
    m.provider_message_id = Some("ks-1".into());
    m.cost = Some(Kopiyky(-85));
    m.error = Some(MessageError {
        code: "temporary".into(),
        message: "try later".into(),
    });
    m.attempts = 2;
    m.history.push(StatusChange {
        status: Queued,
        at: at(4),
    });
    m.history.push(StatusChange {
        status: Sent,
        at: at(5),
    });
    store.insert(std::slice::from_ref(&m), None).await.unwrap();

    assert_eq!(store.get(&t, &m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(
        store.get(&tenant(), &m.id).await.unwrap(),
        None,
        "another tenant"
    );
    assert_eq!(
        store.get(&t, &MessageId::generate(at(0))).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn an_empty_insert_is_a_no_op() {
    let db = TempDb::new("empty");
    let store = db.open();
    store.insert(&[], None).await.unwrap();
    assert!(store.transition(&[]).await.unwrap().is_empty());
    assert!(store.add_receipts(&[]).await.unwrap().is_empty());
    assert!(
        store
            .find_by_provider_ids("p", &[])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_idempotency_key_is_taken_atomically_with_its_messages() {
    let db = TempDb::new("idempotency");
    let store = db.open();
    let t = tenant();
    let first = message(&t, at(0));
    let rec = record(&t, "order-42");
    store
        .insert(std::slice::from_ref(&first), Some(&rec))
        .await
        .unwrap();
    assert_eq!(
        store.idempotency(&t, &rec.key).await.unwrap(),
        Some(rec.clone())
    );

    // The same key again: refused, and none of the new messages is written.
    let second = message(&t, at(1));
    let third = message(&t, at(2));
    let mut other = record(&t, "order-42");
    other.fingerprint = "different".into();
    let err = store
        .insert(&[second.clone(), third.clone()], Some(&other))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyKeyTaken), "{err:?}");
    assert_eq!(store.get(&t, &second.id).await.unwrap(), None);
    assert_eq!(store.get(&t, &third.id).await.unwrap(), None);
    assert_eq!(
        store.idempotency(&t, &rec.key).await.unwrap(),
        Some(rec.clone()),
        "the first record stands"
    );

    // Keys are per tenant.
    let u = tenant();
    store
        .insert(&[message(&u, at(3))], Some(&record(&u, "order-42")))
        .await
        .unwrap();
    assert_eq!(
        store
            .idempotency(&t, &IdempotencyKey::parse("unknown").unwrap())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_duplicate_message_id_writes_nothing() {
    let db = TempDb::new("duplicate");
    let store = db.open();
    let t = tenant();
    let existing = message(&t, at(0));
    store
        .insert(std::slice::from_ref(&existing), None)
        .await
        .unwrap();

    let fresh = message(&t, at(1));
    let rec = record(&t, "retry");
    let err = store
        .insert(&[fresh.clone(), existing.clone()], Some(&rec))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(store.get(&t, &fresh.id).await.unwrap(), None);
    assert_eq!(store.idempotency(&t, &rec.key).await.unwrap(), None);
    // Twice in one call is a duplicate too.
    let twice = message(&t, at(2));
    let err = store
        .insert(&[twice.clone(), twice.clone()], None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(store.get(&t, &twice.id).await.unwrap(), None);
}

#[tokio::test]
async fn an_unstorable_timestamp_is_refused_not_truncated() {
    let db = TempDb::new("range");
    let store = db.open();
    let t = tenant();
    let mut m = message(&t, at(0));
    m.expires_at = Utc.with_ymd_and_hms(3000, 1, 1, 0, 0, 0).unwrap();
    let err = store
        .insert(std::slice::from_ref(&m), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(store.get(&t, &m.id).await.unwrap(), None);
}

#[tokio::test]
async fn transitions_apply_only_from_the_expected_states_of_the_right_tenant() {
    let db = TempDb::new("transitions");
    let store = db.open();
    let t = tenant();
    let m = message(&t, at(0));
    store.insert(std::slice::from_ref(&m), None).await.unwrap();

    let mut wrong_tenant = step(&m, &[Accepted], Queued, 1);
    wrong_tenant.tenant_id = tenant();
    let mut claim = step(&m, &[Queued], Sending, 2);
    claim.patch.count_attempt = true;
    let mut sent = step(&m, &[Sending], Sent, 3);
    sent.patch = Patch {
        provider: Some("kyivstar".into()),
        provider_message_id: Some("ks-9".into()),
        cost: Some(Kopiyky(85)),
        ..Patch::default()
    };
    let results = store
        .transition(&[
            wrong_tenant,
            step(&m, &[Queued], Sending, 1), // not queued yet
            step(&m, &[Accepted, Scheduled], Queued, 1),
            claim,
            sent,
            step(&m, &[], Cancelled, 4), // no state allows it
            step(&message(&t, at(0)), &[Accepted], Queued, 4), // unknown message
        ])
        .await
        .unwrap();
    let statuses: Vec<Option<MessageStatus>> = results
        .iter()
        .map(|r| r.as_ref().map(|m| m.status))
        .collect();
    assert_eq!(
        statuses,
        [
            None,
            None,
            Some(Queued),
            Some(Sending),
            Some(Sent),
            None,
            None
        ]
    );

    let now = store.get(&t, &m.id).await.unwrap().unwrap();
    assert_eq!(
        Some(&now),
        results[4].as_ref(),
        "the answer is what is stored"
    );
    assert_eq!(now.status, Sent);
    assert_eq!(now.updated_at, at(3));
    assert_eq!(now.attempts, 1);
    assert_eq!(now.provider.as_deref(), Some("kyivstar"));
    assert_eq!(now.provider_message_id.as_deref(), Some("ks-9"));
    assert_eq!(now.cost, Some(Kopiyky(85)));
    assert_eq!(
        now.history,
        vec![
            StatusChange {
                status: Accepted,
                at: at(0)
            },
            StatusChange {
                status: Queued,
                at: at(1)
            },
            StatusChange {
                status: Sending,
                at: at(2)
            },
            StatusChange {
                status: Sent,
                at: at(3)
            },
        ]
    );

    // A patch overwrites only what it sets.
    let mut fail = step(&m, &[Sent], Failed, 5);
    fail.patch.error = Some(MessageError {
        code: "no_route".into(),
        message: "no provider took it".into(),
    });
    let failed = store.transition(&[fail]).await.unwrap().remove(0).unwrap();
    assert_eq!(failed.status, Failed);
    assert_eq!(
        failed.error.as_ref().map(|e| e.code.as_str()),
        Some("no_route")
    );
    assert_eq!(failed.provider.as_deref(), Some("kyivstar"));
    assert_eq!(failed.cost, Some(Kopiyky(85)));
    assert_eq!(failed.history.len(), 5);
    assert_eq!(failed.history.last().map(|c| c.status), Some(Failed));
    // The other fields are untouched.
    assert_eq!(failed.text, m.text);
    assert_eq!(failed.created_at, m.created_at);
}

#[tokio::test]
async fn lists_filter_newest_first_and_page_with_a_cursor() {
    let db = TempDb::new("list");
    let store = db.open();
    let t = tenant();
    let batch = BatchId::generate(at(0));
    let mut mine = Vec::new();
    for i in 0..7 {
        let mut m = message(&t, at(i * 10));
        if i % 2 == 0 {
            m.to = phone("+380501112233");
        }
        if i >= 4 {
            m.batch_id = Some(batch.clone());
            m.from = SenderId::parse("Shop").unwrap();
        }
        if i == 1 || i == 5 {
            m.status = Queued;
        }
        mine.push(m);
    }
    store.insert(&mine, None).await.unwrap();
    store
        .insert(
            &[message(&tenant(), at(100)), message(&tenant(), at(5))],
            None,
        )
        .await
        .unwrap();
    let ids = |page: &crate::ports::Page| page.messages.iter().map(|m| m.id).collect::<Vec<_>>();
    let newest_first: Vec<MessageId> = mine.iter().rev().map(|m| m.id).collect();

    // Pages of 3: 3, 3, 1.
    let mut query = ListQuery {
        limit: 3,
        ..ListQuery::default()
    };
    let first = store.list(&t, &query).await.unwrap();
    assert_eq!(ids(&first), newest_first[0..3]);
    assert_eq!(first.next, Some(newest_first[2]));
    query.after = first.next;
    let second = store.list(&t, &query).await.unwrap();
    assert_eq!(ids(&second), newest_first[3..6]);
    query.after = second.next;
    let third = store.list(&t, &query).await.unwrap();
    assert_eq!(ids(&third), newest_first[6..7]);
    assert_eq!(third.next, None);

    // Filters, combined with AND.
    let only = |f: fn(&mut ListQuery)| {
        let mut q = ListQuery {
            limit: 100,
            ..ListQuery::default()
        };
        f(&mut q);
        q
    };
    let expect = |pred: &dyn Fn(&Message) -> bool| -> Vec<MessageId> {
        mine.iter()
            .rev()
            .filter(|m| pred(m))
            .map(|m| m.id)
            .collect()
    };
    let page = store
        .list(&t, &only(|q| q.status = Some(Queued)))
        .await
        .unwrap();
    assert_eq!(ids(&page), expect(&|m| m.status == Queued));
    assert_eq!(page.next, None);
    let page = store
        .list(&t, &only(|q| q.to = Some(phone("+380501112233"))))
        .await
        .unwrap();
    assert_eq!(ids(&page), expect(&|m| m.to.as_e164() == "+380501112233"));
    let page = store
        .list(
            &t,
            &only(|q| q.from = Some(SenderId::parse("Shop").unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(ids(&page), expect(&|m| m.from.as_str() == "Shop"));
    let mut q = only(|_| {});
    q.batch_id = Some(batch.clone());
    q.status = Some(Queued);
    let page = store.list(&t, &q).await.unwrap();
    assert_eq!(ids(&page), vec![mine[5].id]);
    let page = store
        .list(
            &t,
            &only(|q| {
                q.created_after = Some(at(20));
                q.created_before = Some(at(50));
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        vec![mine[4].id, mine[3].id, mine[2].id],
        "[after, before)"
    );
    let page = store
        .list(&t, &only(|q| q.created_after = Some(at(1_000_000_000_000))))
        .await
        .unwrap();
    assert!(
        page.messages.is_empty(),
        "an out-of-range bound still compares"
    );

    // A full last page says there may be more; the next one is empty.
    let mut q = only(|q| q.to = Some(phone("+380501112233")));
    q.limit = 2;
    let page = store.list(&t, &q).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    q.after = page.next;
    let page = store.list(&t, &q).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    q.after = page.next;
    let page = store.list(&t, &q).await.unwrap();
    assert!(page.messages.is_empty());
    assert_eq!(page.next, None);

    // A limit of 0 reads nothing.
    let page = store.list(&t, &only(|q| q.limit = 0)).await.unwrap();
    assert!(page.messages.is_empty() && page.next.is_none());
}

#[tokio::test]
async fn provider_ids_are_resolved_in_the_order_asked() {
    let db = TempDb::new("provider-ids");
    let store = db.open();
    let t = tenant();
    let u = tenant();
    let mut a = message(&t, at(0));
    a.segments = 2;
    let b = message(&t, at(1));
    let c = message(&u, at(2));
    store
        .insert(&[a.clone(), b.clone(), c.clone()], None)
        .await
        .unwrap();
    let mut changes = Vec::new();
    for (m, provider, pid) in [
        (&a, "kyivstar", "p1"),
        (&b, "kyivstar", "p2"),
        (&c, "lifecell", "p1"),
    ] {
        let mut s = step(m, &[Accepted], Sent, 1);
        s.patch.provider = Some(provider.into());
        s.patch.provider_message_id = Some(pid.into());
        changes.push(s);
    }
    store.transition(&changes).await.unwrap();

    let found = store
        .find_by_provider_ids(
            "kyivstar",
            &[
                "p2".to_owned(),
                "missing".to_owned(),
                "p1".to_owned(),
                "p2".to_owned(),
            ],
        )
        .await
        .unwrap();
    let target = |m: &Message| ReceiptTarget {
        message: reference(m),
        segments: m.segments,
    };
    assert_eq!(
        found,
        vec![Some(target(&b)), None, Some(target(&a)), Some(target(&b))]
    );
    assert_eq!(
        store
            .find_by_provider_ids("lifecell", &["p1".to_owned(), "p2".to_owned()])
            .await
            .unwrap(),
        vec![Some(target(&c)), None]
    );
}

#[tokio::test]
async fn receipts_are_kept_once_and_listed_per_message() {
    use ReceiptState::*;
    let db = TempDb::new("receipts");
    let store = db.open();
    let t = tenant();
    let mut a = message(&t, at(0));
    a.segments = 2;
    let b = message(&t, at(1));
    store.insert(&[a.clone(), b.clone()], None).await.unwrap();
    let unknown = reference(&message(&t, at(2)));
    let mut foreign = reference(&a);
    foreign.tenant_id = tenant();

    let lists = store
        .add_receipts(&[
            (reference(&a), receipt(1, Delivered, 10)),
            (reference(&a), receipt(1, Delivered, 10)),
            (reference(&b), receipt(1, Enroute, 11)),
            (unknown, receipt(1, Delivered, 12)),
            (foreign, receipt(2, Undelivered, 12)),
        ])
        .await
        .unwrap();
    assert_eq!(
        lists,
        vec![
            vec![receipt(1, Delivered, 10)],
            vec![receipt(1, Delivered, 10)],
            vec![receipt(1, Enroute, 11)],
            vec![],
            vec![],
        ]
    );

    // A later batch sees the earlier receipts, in time order, each once.
    let lists = store
        .add_receipts(&[
            (reference(&a), receipt(2, Delivered, 9)),
            (reference(&a), receipt(1, Delivered, 10)),
            (reference(&a), receipt(1, Expired, 10)),
        ])
        .await
        .unwrap();
    let all = vec![
        receipt(2, Delivered, 9),
        receipt(1, Delivered, 10),
        receipt(1, Expired, 10),
    ];
    assert_eq!(lists, vec![all.clone(), all.clone(), all]);
}

#[tokio::test]
async fn tenants_are_found_by_key_hash() {
    let db = TempDb::new("tenants");
    let store = db.open();
    let acme = Tenant {
        id: tenant(),
        name: "Acme".into(),
        created_at: at(0),
    };
    store.create_tenant(&acme, "hash-acme").await.unwrap();
    assert_eq!(
        store.tenant_by_key_hash("hash-acme").await.unwrap(),
        Some(acme.id.clone())
    );
    assert_eq!(store.tenant_by_key_hash("nope").await.unwrap(), None);

    let err = store.create_tenant(&acme, "hash-other").await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(store.tenant_by_key_hash("hash-other").await.unwrap(), None);

    // A key hash already in use: the new tenant is not created either.
    let globex = Tenant {
        id: tenant(),
        name: "Globex".into(),
        created_at: at(1),
    };
    let err = store.create_tenant(&globex, "hash-acme").await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    store.create_tenant(&globex, "hash-globex").await.unwrap();
    assert_eq!(
        store.tenant_by_key_hash("hash-globex").await.unwrap(),
        Some(globex.id)
    );
}

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
// Group commit
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

    // 20 concurrent claims of one message: exactly one wins.
    let target = all.messages[0].clone();
    let mut claims = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let change = step(&target, &[Accepted], Queued, 100 + i);
        claims.push(tokio::spawn(
            async move { store.transition(&[change]).await },
        ));
    }
    let mut winners = 0;
    for claim in claims {
        if claim.await.unwrap().unwrap()[0].is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let claimed = store.get(&t, &target.id).await.unwrap().unwrap();
    assert_eq!(claimed.history.len(), 2);
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
async fn a_stopped_writer_makes_writes_unavailable_not_hang() {
    let db = TempDb::new("stopped");
    let mut store = db.open();
    let t = tenant();
    let m = message(&t, at(0));
    store.insert(std::slice::from_ref(&m), None).await.unwrap();
    std::sync::Arc::get_mut(&mut store.db)
        .expect("the only handle")
        .stop_writer();
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
    {
        let store = db.open_with(SqliteConfig::default());
        store
            .create_tenant(
                &Tenant {
                    id: t.clone(),
                    name: "Acme".into(),
                    created_at: at(0),
                },
                "hash",
            )
            .await
            .unwrap();
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
    assert_eq!(
        store.tenant_by_key_hash("hash").await.unwrap(),
        Some(t.clone())
    );
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
            "messages_tenant_to",
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
}

// ---------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_queue_delivers_hides_and_deletes() {
    let db = TempDb::new("queue");
    let queue = db.open();
    queue
        .send_batch(
            QueueName::Dispatch,
            vec![outgoing("a"), outgoing("b"), outgoing("c")],
        )
        .await
        .unwrap();
    queue
        .send_batch(QueueName::Callbacks, vec![outgoing("cb")])
        .await
        .unwrap();

    let got = queue
        .receive(QueueName::Dispatch, 10, LONG, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(bodies(&got), ["a", "b", "c"]);
    assert!(got.iter().all(|d| d.receive_count == 1));
    assert!(
        queue
            .receive(QueueName::Dispatch, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "received messages are hidden"
    );
    let handles: Vec<ReceiptHandle> = got[..2].iter().map(|d| d.handle.clone()).collect();
    // Deleting through the wrong queue does nothing.
    queue
        .delete_batch(QueueName::Callbacks, &handles)
        .await
        .unwrap();
    assert_eq!(queue.queue_depth(QueueName::Dispatch).await.unwrap(), 3);
    queue
        .delete_batch(QueueName::Dispatch, &handles)
        .await
        .unwrap();
    assert_eq!(queue.queue_depth(QueueName::Dispatch).await.unwrap(), 1);
    assert_eq!(queue.queue_depth(QueueName::Callbacks).await.unwrap(), 1);

    let cb = queue
        .receive(QueueName::Callbacks, 10, LONG, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(bodies(&cb), ["cb"]);
    // `max` is respected.
    queue
        .send_batch(
            QueueName::Dispatch,
            (0..5).map(|i| outgoing(&i.to_string())).collect(),
        )
        .await
        .unwrap();
    let got = queue
        .receive(QueueName::Dispatch, 2, LONG, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(bodies(&got), ["0", "1"]);
    assert!(
        queue
            .receive(QueueName::Dispatch, 0, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_unacknowledged_message_comes_back_with_a_new_handle() {
    let db = TempDb::new("visibility");
    let queue = db.open();
    let q = QueueName::Dispatch;
    queue.send_batch(q, vec![outgoing("job")]).await.unwrap();
    let short = Duration::from_millis(200);

    let first = queue.receive(q, 10, short, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    assert!(
        queue
            .receive(q, 10, short, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(260)).await;
    let second = queue.receive(q, 10, short, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&second), ["job"]);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].handle, first[0].handle);

    // The first handle is stale: deleting with it does nothing, delaying with it fails.
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
    let err = queue
        .change_visibility(q, &ReceiptHandle("garbage".into()), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::StaleHandle), "{err:?}");
    queue
        .delete_batch(q, &[ReceiptHandle("not-a-handle".into())])
        .await
        .unwrap();

    // The current handle can make it visible again at once.
    queue
        .change_visibility(q, &second[0].handle, Duration::ZERO)
        .await
        .unwrap();
    let third = queue.receive(q, 10, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(third[0].receive_count, 3);
    // Or hide it for longer (a backoff).
    queue
        .change_visibility(q, &third[0].handle, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        queue
            .receive(q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let fourth = queue
        .receive(q, 10, LONG, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(fourth[0].receive_count, 4);
    queue
        .delete_batch(q, &[fourth[0].handle.clone()])
        .await
        .unwrap();
    assert_eq!(queue.queue_depth(q).await.unwrap(), 0);
}

#[tokio::test]
async fn a_delayed_message_stays_hidden_until_due() {
    let db = TempDb::new("delay");
    let queue = db.open();
    let q = QueueName::Dispatch;
    queue
        .send_batch(
            q,
            vec![
                Outgoing {
                    body: "later".into(),
                    delay: Duration::from_millis(300),
                },
                outgoing("now"),
            ],
        )
        .await
        .unwrap();
    let got = queue.receive(q, 10, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&got), ["now"]);
    let started = Instant::now();
    let got = queue
        .receive(q, 10, LONG, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(bodies(&got), ["later"]);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
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

#[tokio::test]
async fn a_long_poll_wakes_when_a_message_is_sent() {
    let db = TempDb::new("long-poll");
    let queue = db.open();
    let q = QueueName::Callbacks;
    let poller = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = queue.receive(q, 10, LONG, Duration::from_secs(10)).await;
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    queue.send_batch(q, vec![outgoing("wake")]).await.unwrap();
    let (got, waited) = poller.await.unwrap();
    assert_eq!(bodies(&got.unwrap()), ["wake"]);
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // With nothing sent, it gives up after `wait`.
    let started = Instant::now();
    let got = queue
        .receive(q, 10, LONG, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let db = TempDb::new("too-large");
    let queue = db.open();
    let big = "x".repeat(MAX_QUEUE_BODY_BYTES + 1);
    let err = queue
        .send_batch(QueueName::Dispatch, vec![outgoing("fine"), outgoing(&big)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::TooLarge(n) if n == big.len()),
        "{err:?}"
    );
    assert_eq!(queue.queue_depth(QueueName::Dispatch).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let db = TempDb::new(name);
    TempDir(db.path.with_extension("d"))
}

#[tokio::test]
async fn secrets_are_kept_in_a_private_file() {
    let dir = temp_dir("secrets");
    let path: &Path = &dir.0.join("nested");
    let secrets = FileSecretStore::in_dir(path);
    let err = secrets.get("kyivstar").await.unwrap_err();
    assert!(
        matches!(err, SecretError::NotFound(ref n) if n == "kyivstar"),
        "{err:?}"
    );

    secrets
        .put("kyivstar", &Secret::new("s3cret"))
        .await
        .unwrap();
    secrets
        .put("lifecell", &Secret::new("other"))
        .await
        .unwrap();
    secrets
        .put("kyivstar", &Secret::new("rotated"))
        .await
        .unwrap();
    assert_eq!(secrets.get("kyivstar").await.unwrap().expose(), "rotated");

    let file = path.join(SECRETS_FILE);
    let stored: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored["lifecell"], "other");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [SECRETS_FILE]);

    // Another instance (a restart) reads the file.
    let again = FileSecretStore::new(&file);
    assert_eq!(again.get("lifecell").await.unwrap().expose(), "other");

    // A file that is not a JSON object of strings is an error, not an empty store.
    std::fs::write(&file, "not json").unwrap();
    let err = FileSecretStore::new(&file).get("x").await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable(_)), "{err:?}");
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
