//! The contract suite: one set of tests over the ports (`&dyn MessageStore`, `&dyn
//! TenantStore`, `&dyn Queue`, `&dyn SecretStore`), run against both backends:
//!
//! - `sqlite::*`: the embedded backend on a fresh database file per test;
//! - `aws::*`: DynamoDB, SQS and Secrets Manager served by moto at `HOLUB_TEST_AWS_ENDPOINT`
//!   (`scripts/test` starts it), with tables, queues and secrets of its own per test so the
//!   tests run in parallel. Without the variable the AWS half fails when `CI` is set and is
//!   skipped with a notice otherwise.
//!
//! What the backends may do differently is left out on purpose and said where: SQS counts
//! time in whole seconds (so visibility timeouts and delays here are whole seconds) and
//! does not promise order (so deliveries are compared as sets); what an *older* receipt
//! handle does is up to SQS.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use holub_shared::adapters::aws::{
    AwsBackend, AwsClients, AwsConfig, Credentials, Region, sdk_config_loader,
};
use holub_shared::adapters::dynamo::{CLAIM_WINDOW, DynamoConfig, DynamoStore, create_tables};
use holub_shared::adapters::file_secrets::FileSecretStore;
use holub_shared::adapters::kms::create_master_key;
use holub_shared::adapters::request_counter::RequestCounter;
use holub_shared::adapters::secrets_manager::{SecretsConfig, SecretsManagerStore};
use holub_shared::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
use holub_shared::adapters::sqs::create_queues;
use holub_shared::domain::stats::{Counters, Deltas, Hour, Snapshot, StatsKey};
use holub_shared::domain::status::{PartReceipt, ReceiptState};
use holub_shared::domain::{
    ApiKeyRecord, AuditAction, AuditEntry, BatchId, Campaign, CampaignId, CampaignName,
    CampaignState, Category, ConsentChange, ConsentEntry, ConsentSource, ConsentState, Contact,
    ContactId, Details, Encoding, Evidence, IdempotencyKey, KeyId, KeyName, Kopiyky, ListName,
    Message, MessageError, MessageId, MessageStatus, Network, Origin, Pace, PhoneNumber,
    RecordedBy, Registration, Scopes, SenderId, SenderRecord, ShortCode, StatusChange, TemplateId,
    TemplateName, TemplateText, TemplateVersion, TenantId, TenantLimits, TrackedLink, Visitor,
    WithdrawalChannel,
};
use holub_shared::domain::{ConsoleUser, Email, Invitation, PasswordHash, Role, UserId};
use holub_shared::ports::store::KeyEnd;
use holub_shared::ports::{
    Admission, Admitted, Bucket, CounterStore, SpendPeriod, SpendVerdict, Spent,
};
use holub_shared::ports::{
    CampaignStore, ConsentStore, ContactQuery, ContactStore, StatsStore, TemplateStore,
};
use holub_shared::ports::{
    Click, Delivery, IdempotencyRecord, ListQuery, MessageRef, MessageStore, Outgoing, Page, Patch,
    Queue, QueueError, QueueName, ReceiptHandle, ReceiptTarget, ReplayStore, Secret, SecretError,
    SecretStore, StoreError, Tenant, TenantStore, Transition,
};
use holub_shared::ports::{FailureWindow, SessionRecord, UserRecord, UserStore, UserWrite};
use holub_shared::ports::{Leased, Outage, OutageReason, ProviderLimits, ProviderRate};
use holub_tests::TempDir;
use serde_json::json;

use MessageStatus::*;

// ---------------------------------------------------------------------------------------
// The backends
// ---------------------------------------------------------------------------------------

/// The four ports of one backend, each test's own.
struct Backend {
    store: Arc<dyn MessageStore>,
    tenants: Arc<dyn TenantStore>,
    queue: Arc<dyn Queue>,
    secrets: Arc<dyn SecretStore>,
    replays: Arc<dyn ReplayStore>,
    counters: Arc<dyn CounterStore>,
    provider_limits: Arc<dyn ProviderLimits>,
    stats: Arc<dyn StatsStore>,
    consent: Arc<dyn ConsentStore>,
    contacts: Arc<dyn ContactStore>,
    templates: Arc<dyn TemplateStore>,
    campaigns: Arc<dyn CampaignStore>,
    users: Arc<dyn UserStore>,
    /// A second secret store over the same storage: what a restart (a cold start) reads.
    secrets_again: Arc<dyn SecretStore>,
    /// The AWS requests made so far (AWS only).
    requests: Option<RequestCounter>,
    /// The DynamoDB store itself, for AWS-only checks that reach past the port.
    dynamo: Option<DynamoStore>,
    /// Kept for the backend's lifetime; closed (SQLite) or dropped at the end.
    sqlite: Option<SqliteBackend>,
    _dir: Option<TempDir>,
}

impl Backend {
    fn store(&self) -> &dyn MessageStore {
        self.store.as_ref()
    }

    fn tenants(&self) -> &dyn TenantStore {
        self.tenants.as_ref()
    }

    fn queue(&self) -> &dyn Queue {
        self.queue.as_ref()
    }

    fn secrets(&self) -> &dyn SecretStore {
        self.secrets.as_ref()
    }

    fn replays(&self) -> &dyn ReplayStore {
        self.replays.as_ref()
    }

    async fn close(mut self) {
        let sqlite = self.sqlite.take();
        drop(self.store);
        drop(self.tenants);
        drop(self.queue);
        drop(self.replays);
        drop(self.stats);
        if let Some(sqlite) = sqlite {
            sqlite.close().await;
        }
    }
}

fn sqlite(name: &str) -> Backend {
    let dir = TempDir::new(&format!("contract-{name}"));
    let db = SqliteBackend::open(
        &dir.path().join("holub.db"),
        SqliteConfig {
            sync: SyncMode::Normal,
            ..SqliteConfig::default()
        },
    )
    .expect("open a fresh SQLite database");
    let secrets_dir = dir.path().join("secrets");
    Backend {
        store: Arc::new(db.clone()),
        tenants: Arc::new(db.clone()),
        queue: Arc::new(db.clone()),
        secrets: Arc::new(FileSecretStore::in_dir(&secrets_dir)),
        replays: Arc::new(db.clone()),
        counters: Arc::new(db.clone()),
        provider_limits: Arc::new(db.clone()),
        stats: Arc::new(db.clone()),
        consent: Arc::new(db.clone()),
        contacts: Arc::new(db.clone()),
        templates: Arc::new(db.clone()),
        campaigns: Arc::new(db.clone()),
        users: Arc::new(db.clone()),
        secrets_again: Arc::new(FileSecretStore::in_dir(&secrets_dir)),
        requests: None,
        dynamo: None,
        sqlite: Some(db),
        _dir: Some(dir),
    }
}

/// A name prefix no other test of any run uses: short, because SQS queue names (with
/// `-callbacks-dlq` appended) hold at most 80 characters.
fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let short: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    format!(
        "{short}-{}-{:x}-{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn aws(name: &str) -> Option<Backend> {
    let endpoint = match std::env::var("HOLUB_TEST_AWS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ => {
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
            assert!(
                !ci,
                "HOLUB_TEST_AWS_ENDPOINT is not set: CI must run the AWS half of the contract \
                 suite (scripts/test starts moto and sets it)"
            );
            eprintln!(
                "skipping aws::{name}: HOLUB_TEST_AWS_ENDPOINT is not set (scripts/test starts \
                 moto and sets it)"
            );
            return None;
        }
    };
    let sdk = sdk_config_loader()
        .endpoint_url(endpoint)
        .region(Region::new("eu-central-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "holub-contract",
        ))
        .load()
        .await;
    let clients = AwsClients::new(&sdk);
    let prefix = unique(name);
    let dynamo = DynamoConfig::with_prefix(&prefix);
    create_tables(&clients.dynamodb, &dynamo)
        .await
        .expect("create the tables");
    let queues = create_queues(&clients.sqs, &prefix, 5)
        .await
        .expect("create the queues");
    let secrets = SecretsConfig::with_prefix(format!("{prefix}/"));
    let secrets_again = SecretsManagerStore::new(clients.secrets_manager.clone(), secrets.clone());
    let kms_key_id = create_master_key(&clients.kms, &prefix)
        .await
        .expect("create the KMS key");
    let aws = AwsBackend::with_clients(
        clients,
        AwsConfig {
            dynamo,
            queues,
            secrets,
            kms_key_id,
        },
    );
    aws.requests.reset();
    Some(Backend {
        store: Arc::new(aws.store.clone()),
        tenants: Arc::new(aws.store.clone()),
        queue: Arc::new(aws.queue),
        secrets: Arc::new(aws.secrets),
        replays: Arc::new(aws.store.clone()),
        counters: Arc::new(aws.store.clone()),
        provider_limits: Arc::new(aws.store.clone()),
        stats: Arc::new(aws.store.clone()),
        consent: Arc::new(aws.store.clone()),
        contacts: Arc::new(aws.store.clone()),
        templates: Arc::new(aws.store.clone()),
        campaigns: Arc::new(aws.store.clone()),
        users: Arc::new(aws.store.clone()),
        secrets_again: Arc::new(secrets_again),
        requests: Some(aws.requests),
        dynamo: Some(aws.store),
        sqlite: None,
        _dir: None,
    })
}

/// Runs each listed test against both backends: `sqlite::<test>` and `aws::<test>`.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let backend = super::sqlite(stringify!($test));
                    super::$test(&backend).await;
                    backend.close().await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(backend) = super::aws(stringify!($test)).await else {
                        return;
                    };
                    super::$test(&backend).await;
                    backend.close().await;
                }
            )*
        }
    };
}

contract!(
    a_message_round_trips_with_every_field,
    empty_calls_are_no_ops,
    an_idempotency_key_is_taken_atomically_with_its_messages,
    a_large_batch_with_an_idempotency_key_is_all_or_nothing,
    a_large_idempotency_reply_round_trips,
    a_duplicate_message_id_writes_nothing,
    an_unstorable_timestamp_is_refused_not_truncated,
    transitions_apply_only_from_the_expected_states_of_the_right_tenant,
    changes_of_several_messages_in_one_call,
    each_change_of_a_batch_is_answered_for_itself,
    lists_filter_newest_first_and_page_with_a_cursor,
    a_long_list_pages_newest_first_without_a_gap_or_a_repeat,
    provider_ids_are_resolved_in_the_order_asked,
    receipts_are_kept_once_and_listed_per_message,
    sweeps_find_due_stale_and_expired_messages_oldest_first,
    queued_messages_stored_together_turn_stale_together,
    sent_messages_await_receipts_per_provider,
    receipts_ride_along_with_a_status_change,
    tenants_are_created_with_their_first_key,
    keys_are_added_revoked_and_rotated,
    senders_are_registered_changed_and_removed,
    replays_are_remembered_until_they_expire,
    limits_are_kept_with_their_audit_entry,
    an_erased_tenant_is_unreadable_and_takes_nothing_new,
    numbers_are_counted_under_keys_of_their_tenant,
    a_bucket_grants_its_burst_then_its_rate,
    spend_is_charged_within_both_caps_and_refunded,
    numbers_are_counted_up_to_their_limit,
    a_request_is_admitted_by_rate_number_and_spend_at_once,
    provider_grants_fill_each_slot_and_never_pass_the_limit,
    a_provider_breaker_is_shared_tried_once_and_closed,
    the_queue_delivers_hides_and_deletes,
    an_unacknowledged_message_comes_back_with_a_new_handle,
    a_dead_lettered_job_is_redriven_with_a_fresh_count,
    a_delayed_message_stays_hidden_until_due,
    a_receive_can_take_more_than_ten,
    a_long_poll_wakes_when_a_message_is_sent,
    an_oversized_body_is_refused,
    secrets_are_stored_read_and_rotated,
    statistics_equal_a_recomputation_and_count_each_change_once,
    tracked_links_are_followed_and_their_clicks_counted,
    consent_is_a_ledger_whose_latest_entry_decides,
    a_message_waits_again_for_its_window,
    contacts_are_unique_per_number_and_paged_by_list,
    templates_are_versioned_and_named_uniquely,
    campaigns_are_stored_over_their_version_and_listed_newest_first,
    a_campaign_expands_each_contact_once_whatever_is_repeated,
    users_are_unique_by_email_across_tenants,
    users_are_found_and_listed_within_their_tenant,
    users_change_over_their_version_and_keep_an_active_owner,
    users_sessions_are_kept_until_they_expire_or_end,
    an_erased_tenants_users_are_removed_and_their_addresses_freed,
    users_failed_sign_ins_are_counted_in_a_window,
);

/// Races: run on SQLite only. Both DynamoDB and SQLite make each conditional write atomic,
/// but moto does not (its conditional checks and transactions are plain Python on
/// threads, and a failed transaction restores a snapshot of the whole table), so a race
/// run against moto would test moto.
mod races {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_and_keys_have_one_winner() {
        let backend = super::sqlite("races");
        super::concurrent_claims_and_keys_have_one_winner(&backend).await;
        backend.close().await;
    }
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

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

/// Bodies as a set: SQS does not promise order.
fn bodies(deliveries: &[Delivery]) -> BTreeSet<&str> {
    deliveries.iter().map(|d| d.body.as_str()).collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

fn ids(page: &Page) -> Vec<MessageId> {
    page.messages.iter().map(|m| m.id).collect()
}

fn everything(limit: usize) -> ListQuery {
    ListQuery {
        limit,
        ..ListQuery::default()
    }
}

const LONG: Duration = Duration::from_secs(30);
const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

/// What the statistics of `tenant` must be: every message of the log folded in afresh.
async fn recomputed(b: &Backend, tenant: &TenantId) -> Vec<(StatsKey, Counters)> {
    let mut deltas = Deltas::default();
    let mut query = everything(1000);
    loop {
        let page = b.store().list(tenant, &query).await.expect("list");
        for m in &page.messages {
            deltas.change(None, Some(&Snapshot::of(m)));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    deltas.into_cells().map(|((_, key), c)| (key, c)).collect()
}

async fn stored(b: &Backend, tenant: &TenantId) -> Vec<(StatsKey, Counters)> {
    let mut cells = b
        .stats
        .stats(tenant, Hour(0), Hour(1_000_000))
        .await
        .expect("read the statistics");
    cells.sort_by(|a, c| a.0.cmp(&c.0));
    cells
}

/// Runs the rollup until it finds nothing more; the events it folded.
async fn roll_up(b: &Backend, budget: usize) -> usize {
    let mut events = 0;
    loop {
        let rolled = b.stats.roll_up(budget).await.expect("roll up");
        assert_eq!(rolled.unreadable, 0);
        events += rolled.events;
        if rolled.events == 0 || budget == usize::MAX {
            return events;
        }
    }
}

async fn statistics_equal_a_recomputation_and_count_each_change_once(b: &Backend) {
    let (t, other) = (tenant(), tenant());
    let mut batch = Vec::new();
    let batch_id = BatchId::generate(at(0));
    for (i, number) in [
        "+380671234567",
        "+380501234567",
        "+380931234567",
        "+48501234567",
    ]
    .iter()
    .enumerate()
    {
        let mut m = message(&t, at(i as i64) + TimeDelta::hours(i as i64 % 2));
        m.to = phone(number);
        m.batch_id = Some(batch_id.clone());
        m.status = Queued;
        m.segments = 1 + i as u16;
        batch.push(m);
    }
    let mut single = message(&t, at(10));
    single.from = SenderId::parse("Shop").unwrap();
    single.encoding = Encoding::Gsm7;
    b.store()
        .insert(&batch, None)
        .await
        .expect("insert a batch");
    b.store()
        .insert(std::slice::from_ref(&single), None)
        .await
        .expect("insert one");
    let theirs = message(&other, at(11));
    b.store()
        .insert(std::slice::from_ref(&theirs), None)
        .await
        .expect("insert another tenant's");
    assert!(roll_up(b, usize::MAX).await >= 6);
    assert_eq!(stored(b, &t).await, recomputed(b, &t).await);

    // Walks: delivered, failed after a failover, undelivered; one receipt twice.
    let sent = |m: &Message, provider: &str, second: i64| {
        step(m, &[Sending], Sent, second).with(Patch {
            provider: Some(provider.into()),
            provider_message_id: Some(format!("p-{}", m.id)),
            cost: Some(Kopiyky(85 * i64::from(m.segments))),
            ..Patch::default()
        })
    };
    let sending = |m: &Message, provider: &str, second: i64| {
        step(m, &[Queued], Sending, second).with(Patch {
            provider: Some(provider.into()),
            ..Patch::default()
        })
    };
    let changes = vec![
        sending(&batch[0], "turbosms", 20),
        sent(&batch[0], "turbosms", 21),
        step(&batch[0], &[Sent], Delivered, 25),
        sending(&batch[1], "turbosms", 20),
        step(&batch[1], &[Sending], Queued, 21),
        sending(&batch[1], "smsfly", 22),
        step(&batch[1], &[Sending], Failed, 23),
        sending(&batch[2], "alphasms", 20),
        sent(&batch[2], "alphasms", 22),
    ];
    b.store().transition(&changes).await.expect("walk");
    // A rollup between two changes of one message, with the smallest budget.
    roll_up(b, 1).await;
    assert_eq!(stored(b, &t).await, recomputed(b, &t).await);
    let late = vec![
        step(&batch[2], &[Sent], Undelivered, 90),
        step(&batch[2], &[Sent], Undelivered, 91),
        step(&single, &[Accepted], Cancelled, 30),
    ];
    b.store().transition(&late).await.expect("late changes");
    roll_up(b, usize::MAX).await;
    let cells = stored(b, &t).await;
    assert_eq!(cells, recomputed(b, &t).await);
    assert_eq!(roll_up(b, usize::MAX).await, 0, "nothing is folded twice");
    assert_eq!(stored(b, &t).await, cells);

    let total = cells.iter().fold(Counters::default(), |mut all, (_, c)| {
        all.add(c, 1);
        all
    });
    assert_eq!(total.messages(), 5);
    assert_eq!(
        (
            total.count(Delivered),
            total.count(Failed),
            total.count(Undelivered),
            total.count(Cancelled),
            total.count(Queued),
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(total.parts, 1 + 2 + 3 + 4 + 1);
    assert_eq!(total.cost, 85 + 85 * 3);
    assert_eq!(total.accepted_to_delivered.count(), 1);
    assert_eq!(total.sent_to_delivered.count(), 1);
    let failed: Vec<_> = cells
        .iter()
        .filter(|(_, c)| c.count(Failed) == 1)
        .map(|(k, _)| k.provider.as_deref())
        .collect();
    assert_eq!(
        failed,
        [Some("smsfly")],
        "a cell has the provider it ended with"
    );

    // The hours that hold statistics, for reports to read no others.
    let (first, last) = b.stats.extent(&t).await.expect("extent").expect("some");
    assert_eq!(first, cells.iter().map(|(k, _)| k.hour).min().unwrap());
    assert_eq!(last, cells.iter().map(|(k, _)| k.hour).max().unwrap());
    assert_eq!(b.stats.extent(&tenant()).await.expect("extent"), None);

    // Each tenant sees its own; a range sees its hours.
    assert_eq!(stored(b, &other).await, recomputed(b, &other).await);
    assert_eq!(stored(b, &other).await.len(), 1);
    let first_hour = Hour::of(at(0));
    let early = b
        .stats
        .stats(&t, first_hour, Hour(first_hour.0 + 1))
        .await
        .expect("a range");
    assert!(early.iter().all(|(k, _)| k.hour == first_hour));
    assert!(!early.is_empty() && early.len() < cells.len());
}

async fn tracked_links_are_followed_and_their_clicks_counted(b: &Backend) {
    let t = tenant();
    let mut m = message(&t, at(0));
    m.links = vec![
        TrackedLink {
            code: ShortCode::random(),
            url: "https://shop.ua/sale?id=7".into(),
        },
        TrackedLink {
            code: ShortCode::random(),
            url: "https://магазин.укр/знижки".into(),
        },
    ];
    m.status = Queued;
    let plain = message(&t, at(1));
    b.store()
        .insert(&[m.clone(), plain.clone()], None)
        .await
        .expect("insert");
    for link in &m.links {
        let found = b.store().follow(&link.code).await.expect("follow");
        assert_eq!(
            found.as_ref(),
            Some(&m),
            "each code finds its message whole"
        );
    }
    assert_eq!(
        b.store().get(&t, &plain.id).await.unwrap().unwrap().links,
        []
    );
    assert_eq!(b.store().follow(&ShortCode::random()).await.unwrap(), None);

    let click = |second: i64, visitor: Visitor| Click {
        message: reference(&m),
        at: at(second),
        visitor,
    };
    let after = b
        .store()
        .click(&click(40, Visitor::Bot))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.clicks, after.bot_clicks, after.clicked_at),
        (0, 1, None)
    );
    let after = b
        .store()
        .click(&click(50, Visitor::Human))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.clicks, after.bot_clicks), (1, 1));
    assert_eq!(after.clicked_at, Some(at(50)));
    let after = b
        .store()
        .click(&click(60, Visitor::Human))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.clicks, after.clicked_at),
        (2, Some(at(50))),
        "the first stays"
    );
    assert_eq!(after.status, Queued, "a click changes no status");
    assert_eq!(after.updated_at, m.updated_at);
    let nobody = Click {
        message: reference(&message(&t, at(2))),
        ..click(70, Visitor::Human)
    };
    assert!(b.store().click(&nobody).await.unwrap().is_none());
    assert_eq!(
        b.store().get(&t, &m.id).await.unwrap().as_ref(),
        Some(&after)
    );

    // The statistics count them: a message clicked, two clicks by a person, one by a bot.
    roll_up(b, usize::MAX).await;
    let cells = stored(b, &t).await;
    assert_eq!(cells, recomputed(b, &t).await);
    let total = cells.iter().fold(Counters::default(), |mut all, (_, c)| {
        all.add(c, 1);
        all
    });
    assert_eq!((total.clicked, total.clicks, total.bot_clicks), (1, 2, 1));
}

fn consent(at_s: i64, recorded_s: i64, given: bool) -> ConsentEntry {
    ConsentEntry {
        at: at(at_s),
        recorded_at: at(recorded_s),
        change: if given {
            ConsentChange::Given {
                source: ConsentSource::WebForm,
                evidence: Evidence::parse(&format!("Форма №{at_s}, Іван Петренко")).unwrap(),
            }
        } else {
            ConsentChange::Withdrawn {
                channel: WithdrawalChannel::OptOutLink,
            }
        },
        recorded_by: if given {
            RecordedBy::ApiKey {
                key_id: Some(KeyId::generate(at(0))),
            }
        } else {
            RecordedBy::Subscriber
        },
    }
}

async fn consent_is_a_ledger_whose_latest_entry_decides(b: &Backend) {
    let c = b.consent.as_ref();
    let (t, other) = (tenant(), tenant());
    let (n1, n2, n3) = (
        phone("+380671110001"),
        phone("+380671110002"),
        phone("+380671110003"),
    );
    assert_eq!(
        c.states(&t, &[&n1, &n2]).await.unwrap(),
        vec![ConsentState::None, ConsentState::None]
    );
    assert!(c.ledger(&t, &n1).await.unwrap().is_empty());
    assert!(c.states(&t, &[]).await.unwrap().is_empty());

    let given = consent(10, 10, true);
    assert_eq!(
        c.record(&t, &n1, &given).await.unwrap(),
        ConsentState::Given
    );
    let withdrawn = consent(20, 20, false);
    assert_eq!(
        c.record(&t, &n1, &withdrawn).await.unwrap(),
        ConsentState::Withdrawn
    );
    // Recorded later for an earlier date: kept in the ledger, but the opt-out stands.
    let late = consent(15, 30, true);
    assert_eq!(
        c.record(&t, &n1, &late).await.unwrap(),
        ConsentState::Withdrawn
    );
    assert_eq!(
        c.record(&t, &n2, &given).await.unwrap(),
        ConsentState::Given
    );
    assert_eq!(
        c.states(&t, &[&n1, &n2, &n3, &n2]).await.unwrap(),
        vec![
            ConsentState::Withdrawn,
            ConsentState::Given,
            ConsentState::None,
            ConsentState::Given
        ]
    );
    // The ledger in the order recorded, every field back (evidence unsealed).
    assert_eq!(
        c.ledger(&t, &n1).await.unwrap(),
        vec![given.clone(), withdrawn, late]
    );
    // Another tenant sees nothing of it.
    assert_eq!(
        c.states(&other, &[&n1, &n2]).await.unwrap(),
        vec![ConsentState::None, ConsentState::None]
    );
    assert!(c.ledger(&other, &n1).await.unwrap().is_empty());
    // Renewed later: given again.
    assert_eq!(
        c.record(&t, &n1, &consent(40, 40, true)).await.unwrap(),
        ConsentState::Given
    );
    assert_eq!(c.ledger(&t, &n1).await.unwrap().len(), 4);
    // Many numbers in one call (more than one request's worth on DynamoDB).
    let many: Vec<PhoneNumber> = (0..250)
        .map(|i| phone(&format!("+38067200{i:04}")))
        .collect();
    for n in many.iter().step_by(7) {
        c.record(&t, n, &given).await.unwrap();
    }
    let refs: Vec<&PhoneNumber> = many.iter().collect();
    let states = c.states(&t, &refs).await.unwrap();
    for (i, state) in states.iter().enumerate() {
        let want = if i % 7 == 0 {
            ConsentState::Given
        } else {
            ConsentState::None
        };
        assert_eq!(*state, want, "number {i}");
    }
}

fn contact(t: &TenantId, n: u32, lists: &[&str]) -> Contact {
    Contact {
        id: ContactId::generate(at(i64::from(n))),
        tenant_id: t.clone(),
        phone: phone(&format!("+38067300{n:04}")),
        details: Details::new(
            Some(&format!("Олена {n}")),
            [("city".to_owned(), "Київ".to_owned())].into(),
        )
        .unwrap(),
        lists: lists.iter().map(|l| ListName::parse(l).unwrap()).collect(),
        created_at: at(i64::from(n)),
        updated_at: at(i64::from(n)),
        version: 1,
    }
}

async fn contacts_are_unique_per_number_and_paged_by_list(b: &Backend) {
    let c = b.contacts.as_ref();
    let (t, other) = (tenant(), tenant());
    assert!(c.find(&t, &[]).await.unwrap().is_empty());
    assert_eq!(
        c.find(&t, &[&phone("+380673000001")]).await.unwrap(),
        vec![None]
    );
    assert!(c.lists(&t).await.unwrap().is_empty());

    let mut all = Vec::new();
    for n in 0..7 {
        let lists: &[&str] = match n % 3 {
            0 => &["VIP", "Клієнти Київ"],
            1 => &["Клієнти Київ"],
            _ => &[],
        };
        let one = contact(&t, n, lists);
        c.put(&one).await.unwrap();
        all.push(one);
    }
    // Every field back; by id and by number (in the order asked).
    assert_eq!(c.get(&t, &all[0].id).await.unwrap(), Some(all[0].clone()));
    assert_eq!(
        c.find(&t, &[&all[3].phone, &phone("+380679999999"), &all[1].phone])
            .await
            .unwrap(),
        vec![Some(all[3].clone()), None, Some(all[1].clone())]
    );
    // A second contact with a taken number, or a taken id: refused, nothing changed.
    let mut twin = contact(&t, 100, &["VIP"]);
    twin.phone = all[2].phone.clone();
    assert!(matches!(c.put(&twin).await, Err(StoreError::AlreadyExists)));
    let mut same_id = contact(&t, 101, &[]);
    same_id.id = all[2].id.clone();
    assert!(matches!(
        c.put(&same_id).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(c.get(&t, &twin.id).await.unwrap(), None);
    // Another tenant may have the same number.
    let theirs = contact(&other, 0, &["VIP"]);
    c.put(&theirs).await.unwrap();
    assert_eq!(c.get(&t, &theirs.id).await.unwrap(), None);
    assert_eq!(c.get(&other, &all[0].id).await.unwrap(), None);

    // A change over the version it was made from; a stale one is refused.
    let mut changed = all[1].clone();
    changed.version = 2;
    changed.updated_at = at(50);
    changed.details = Details::new(Some("Олена Петрівна"), Default::default()).unwrap();
    changed.lists = [ListName::parse("VIP").unwrap()].into();
    c.put(&changed).await.unwrap();
    assert!(matches!(
        c.put(&changed).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(c.get(&t, &changed.id).await.unwrap(), Some(changed.clone()));
    all[1] = changed;

    // Pages, oldest first; by list.
    let page = |list: Option<&str>, after: Option<ContactId>, limit| ContactQuery {
        list: list.map(|l| ListName::parse(l).unwrap()),
        after,
        limit,
    };
    let first = c.list(&t, &page(None, None, 4)).await.unwrap();
    assert_eq!(
        first.contacts.iter().map(|x| &x.id).collect::<Vec<_>>(),
        all[..4].iter().map(|x| &x.id).collect::<Vec<_>>()
    );
    let rest = c
        .list(&t, &page(None, first.next.clone(), 4))
        .await
        .unwrap();
    assert_eq!(rest.contacts.len(), 3);
    assert_eq!(rest.next, None);
    let vip = c.list(&t, &page(Some("VIP"), None, 100)).await.unwrap();
    let want: Vec<&ContactId> = [0, 1, 3, 6].iter().map(|i| &all[*i].id).collect();
    assert_eq!(vip.contacts.iter().map(|x| &x.id).collect::<Vec<_>>(), want);
    let kyiv = c
        .list(&t, &page(Some("Клієнти Київ"), None, 2))
        .await
        .unwrap();
    assert_eq!(kyiv.contacts.len(), 2);
    assert_eq!(
        c.lists(&t).await.unwrap(),
        vec![
            ListName::parse("VIP").unwrap(),
            ListName::parse("Клієнти Київ").unwrap()
        ]
    );

    // Deleted: gone from its lists too; its number free again.
    assert!(c.delete(&t, &all[0].id).await.unwrap());
    assert!(!c.delete(&t, &all[0].id).await.unwrap());
    assert_eq!(c.get(&t, &all[0].id).await.unwrap(), None);
    let vip = c.list(&t, &page(Some("VIP"), None, 100)).await.unwrap();
    assert_eq!(vip.contacts.len(), 3);
    let mut again = contact(&t, 200, &[]);
    again.phone = all[0].phone.clone();
    c.put(&again).await.unwrap();
    assert_eq!(
        c.find(&t, &[&all[0].phone]).await.unwrap(),
        vec![Some(again)]
    );
    let mut gone = all[0].clone();
    gone.version = 2;
    assert!(matches!(c.put(&gone).await, Err(StoreError::NotFound)));

    // Several at once: each answered as its own put, a refusal costing only itself.
    let (x, y) = (contact(&t, 300, &["Опт"]), contact(&t, 301, &[]));
    let mut taken = contact(&t, 302, &[]);
    taken.phone = all[1].phone.clone();
    let mut stale = all[1].clone();
    stale.version = 9;
    let answers = c.put_many(&[x.clone(), taken, stale, y.clone()]).await;
    assert!(answers[0].is_ok() && answers[3].is_ok(), "{answers:?}");
    assert!(
        matches!(answers[1], Err(StoreError::AlreadyExists)),
        "{answers:?}"
    );
    assert!(
        matches!(answers[2], Err(StoreError::AlreadyExists)),
        "{answers:?}"
    );
    assert_eq!(
        c.find(&t, &[&x.phone, &y.phone, &all[1].phone])
            .await
            .unwrap(),
        vec![Some(x.clone()), Some(y), Some(all[1].clone())]
    );
    let opt = c.list(&t, &page(Some("Опт"), None, 10)).await.unwrap();
    assert_eq!(opt.contacts, vec![x]);
    assert!(c.put_many(&[]).await.is_empty());
}

fn template(t: &TenantId, n: u32, name: &str) -> TemplateVersion {
    TemplateVersion {
        id: TemplateId::generate(at(i64::from(n))),
        tenant_id: t.clone(),
        version: 1,
        name: TemplateName::parse(name).unwrap(),
        text: TemplateText::parse(&format!("Вітаємо, {{{{name}}}}! Пропозиція {n}")).unwrap(),
        category: if n.is_multiple_of(2) {
            Category::Marketing
        } else {
            Category::Transactional
        },
        created_at: at(i64::from(n)),
    }
}

/// The next version of `v`: its name and text as given.
fn next_version(v: &TemplateVersion, name: &str, second: i64) -> TemplateVersion {
    TemplateVersion {
        version: v.version + 1,
        name: TemplateName::parse(name).unwrap(),
        text: TemplateText::parse(&format!("Версія {}: {{{{code}}}}", v.version + 1)).unwrap(),
        category: Category::Transactional,
        created_at: at(second),
        ..v.clone()
    }
}

async fn templates_are_versioned_and_named_uniquely(b: &Backend) {
    let s = b.templates.as_ref();
    let (t, other) = (tenant(), tenant());
    let empty = s.list(&t, None, 10).await.unwrap();
    assert!(empty.templates.is_empty());
    assert_eq!(empty.next, None);

    let mut all = Vec::new();
    for n in 0..5 {
        let one = template(&t, n, &format!("Акція {n}"));
        s.put(&one).await.unwrap();
        all.push(one);
    }
    // Every field back, the category included (both kinds).
    assert_eq!(
        s.get(&t, &all[0].id, None).await.unwrap(),
        Some(all[0].clone())
    );
    assert_eq!(
        s.get(&t, &all[1].id, Some(1)).await.unwrap(),
        Some(all[1].clone())
    );
    assert_eq!(all[0].category, Category::Marketing);
    assert_eq!(all[1].category, Category::Transactional);

    // A second template with a taken name (in another case), or a taken id: refused.
    let twin = template(&t, 100, "  акція 2 ");
    assert!(matches!(s.put(&twin).await, Err(StoreError::AlreadyExists)));
    assert_eq!(s.get(&t, &twin.id, None).await.unwrap(), None);
    let mut same_id = template(&t, 101, "Інша");
    same_id.id = all[2].id.clone();
    assert!(matches!(
        s.put(&same_id).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        s.get(&t, &all[2].id, None).await.unwrap(),
        Some(all[2].clone())
    );
    // Another tenant may have the same name; neither sees the other's.
    let theirs = template(&other, 0, "АКЦІЯ 2");
    s.put(&theirs).await.unwrap();
    assert_eq!(s.get(&t, &theirs.id, None).await.unwrap(), None);
    assert_eq!(s.get(&t, &theirs.id, Some(1)).await.unwrap(), None);
    assert_eq!(s.get(&other, &all[0].id, None).await.unwrap(), None);
    assert_eq!(s.get(&other, &all[0].id, Some(1)).await.unwrap(), None);

    // Version 2 over version 1; a stale version 2 again is refused, the first one kept.
    let v2 = next_version(&all[1], "Акція 1", 60);
    s.put(&v2).await.unwrap();
    let mut stale = next_version(&all[1], "Акція 1 інша", 61);
    stale.text = TemplateText::parse("Не та").unwrap();
    assert!(matches!(
        s.put(&stale).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(s.get(&t, &v2.id, None).await.unwrap(), Some(v2.clone()));
    // A version that skips one is refused too.
    let mut skip = next_version(&v2, "Акція 1", 62);
    skip.version = 4;
    assert!(matches!(s.put(&skip).await, Err(StoreError::AlreadyExists)));
    // A new version may not take another live template's name.
    let taken = next_version(&v2, "акція 3", 63);
    assert!(matches!(
        s.put(&taken).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(s.get(&t, &v2.id, None).await.unwrap(), Some(v2.clone()));
    // Version 3 renames it: the old name is free for a new template.
    let v3 = next_version(&v2, "Нагадування", 64);
    s.put(&v3).await.unwrap();
    let heir = template(&t, 5, "акція 1");
    s.put(&heir).await.unwrap();
    // Its old name is not free twice, and its new one is taken.
    assert!(matches!(
        s.put(&template(&t, 102, "Акція 1")).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        s.put(&template(&t, 103, "НАГАДУВАННЯ")).await,
        Err(StoreError::AlreadyExists)
    ));
    all[1] = v3.clone();
    all.push(heir.clone());

    // Any version by number; the latest without one; none past it.
    assert_eq!(s.get(&t, &v3.id, None).await.unwrap(), Some(v3.clone()));
    assert_eq!(s.get(&t, &v3.id, Some(2)).await.unwrap(), Some(v2.clone()));
    assert_eq!(
        s.get(&t, &v3.id, Some(1))
            .await
            .unwrap()
            .unwrap()
            .name
            .as_str(),
        "Акція 1"
    );
    assert_eq!(s.get(&t, &v3.id, Some(4)).await.unwrap(), None);
    assert_eq!(s.get(&t, &v3.id, Some(0)).await.unwrap(), None);
    let nobody = TemplateId::generate(at(999));
    assert_eq!(s.get(&t, &nobody, None).await.unwrap(), None);
    assert_eq!(s.get(&t, &nobody, Some(1)).await.unwrap(), None);
    assert!(matches!(
        s.put(&next_version(&template(&t, 104, "Ніде"), "Ніде", 65))
            .await,
        Err(StoreError::NotFound)
    ));

    // Pages of latest versions, oldest first; `next` while a page is full.
    let first = s.list(&t, None, 4).await.unwrap();
    assert_eq!(first.templates, all[..4].to_vec());
    assert_eq!(first.next, Some(all[3].id.clone()));
    let rest = s.list(&t, first.next.as_ref(), 4).await.unwrap();
    assert_eq!(rest.templates, all[4..].to_vec());
    assert_eq!(rest.next, None);
    let exact = s.list(&t, None, 6).await.unwrap();
    assert_eq!(exact.templates, all);
    assert_eq!(exact.next, Some(all[5].id.clone()));
    let past = s.list(&t, exact.next.as_ref(), 6).await.unwrap();
    assert!(past.templates.is_empty());
    assert_eq!(past.next, None);
    assert_eq!(
        s.list(&other, None, 10).await.unwrap().templates,
        vec![theirs]
    );

    // Deleted: gone from the list and as the latest; its versions still readable by number;
    // its name free again; its id never taken again.
    assert!(s.delete(&t, &v3.id).await.unwrap());
    assert!(!s.delete(&t, &v3.id).await.unwrap());
    assert!(!s.delete(&other, &all[0].id).await.unwrap());
    assert!(!s.delete(&t, &nobody).await.unwrap());
    assert_eq!(s.get(&t, &v3.id, None).await.unwrap(), None);
    assert_eq!(s.get(&t, &v3.id, Some(3)).await.unwrap(), Some(v3.clone()));
    assert_eq!(
        s.get(&t, &v3.id, Some(1)).await.unwrap().unwrap().version,
        1
    );
    let live = s.list(&t, None, 100).await.unwrap();
    let want: Vec<TemplateVersion> = all.iter().filter(|v| v.id != v3.id).cloned().collect();
    assert_eq!(live.templates, want);
    assert_eq!(live.next, None);
    let page = s.list(&t, Some(&all[0].id), 1).await.unwrap();
    assert_eq!(page.templates, vec![all[2].clone()]);
    assert_eq!(page.next, Some(all[2].id.clone()));
    let reborn = template(&t, 6, "нагадування");
    s.put(&reborn).await.unwrap();
    let mut revived = template(&t, 105, "Воскресла");
    revived.id = v3.id.clone();
    assert!(matches!(
        s.put(&revived).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        s.put(&next_version(&v3, "Нагадування 2", 66)).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.get(&t, &v3.id, Some(4)).await.unwrap(), None);
    // The other template's renaming over a deleted one's: fine.
    let renamed = next_version(&all[0], "Нагадування 2", 67);
    s.put(&renamed).await.unwrap();
    assert_eq!(s.get(&t, &all[0].id, None).await.unwrap(), Some(renamed));
}

async fn a_message_waits_again_for_its_window(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let mut m = message(&t, at(0));
    m.status = Queued;
    store.insert(std::slice::from_ref(&m), None).await.unwrap();
    let mut claim = step(&m, &[Queued], Sending, 1);
    claim.patch.count_attempt = true;
    let claimed = store.transition(&[claim]).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(claimed.attempts, 1);
    // Claimed outside its window: scheduled again for when it opens, the attempt taken back.
    let mut wait = step(&claimed, &[Sending], Scheduled, 2);
    wait.patch.uncount_attempt = true;
    wait.patch.send_at = Some(at(100));
    let waiting = store.transition(&[wait]).await.unwrap()[0].clone().unwrap();
    assert_eq!((waiting.status, waiting.attempts), (Scheduled, 0));
    assert_eq!(waiting.send_at, Some(at(100)));
    assert!(store.due_scheduled(at(99), 10).await.unwrap().is_empty());
    assert_eq!(
        store.due_scheduled(at(100), 10).await.unwrap(),
        vec![reference(&m)]
    );
}

async fn a_message_round_trips_with_every_field(b: &Backend) {
    let store = b.store();
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
    m.category = Category::Marketing;
    m.opt_out = Some(ShortCode::random());
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
    // The smallest message too.
    let plain = message(&t, at(1));
    store
        .insert(std::slice::from_ref(&plain), None)
        .await
        .unwrap();
    assert_eq!(store.get(&t, &plain.id).await.unwrap(), Some(plain));
}

async fn empty_calls_are_no_ops(b: &Backend) {
    let store = b.store();
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
    assert!(store.due_scheduled(at(0), 0).await.unwrap().is_empty());
    assert!(
        store
            .sent_past_validity(at(0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .awaiting_receipts("p", at(1000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    b.queue()
        .send_batch(QueueName::Dispatch, Vec::new())
        .await
        .unwrap();
    b.queue()
        .delete_batch(QueueName::Dispatch, &[])
        .await
        .unwrap();
    assert!(
        b.queue()
            .receive(QueueName::Dispatch, 0, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_idempotency_key_is_taken_atomically_with_its_messages(b: &Backend) {
    let store = b.store();
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
    assert_eq!(store.get(&t, &first.id).await.unwrap(), Some(first));

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
    let theirs = record(&u, "order-42");
    store
        .insert(&[message(&u, at(3))], Some(&theirs))
        .await
        .unwrap();
    assert_eq!(
        store.idempotency(&u, &theirs.key).await.unwrap(),
        Some(theirs)
    );
    assert_eq!(
        store
            .idempotency(&t, &IdempotencyKey::parse("unknown").unwrap())
            .await
            .unwrap(),
        None
    );
    // A key may also stand alone (a request that stored no message).
    let alone = record(&t, "nothing-to-send");
    store.insert(&[], Some(&alone)).await.unwrap();
    assert_eq!(
        store.idempotency(&t, &alone.key).await.unwrap(),
        Some(alone)
    );
}

async fn a_large_batch_with_an_idempotency_key_is_all_or_nothing(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let batch = |n: usize, second: i64| -> Vec<Message> {
        (0..n).map(|_| message(&t, at(second))).collect()
    };
    let first = batch(250, 0);
    store
        .insert(&first, Some(&record(&t, "campaign")))
        .await
        .unwrap();
    let all = store.list(&t, &everything(1000)).await.unwrap();
    assert_eq!(all.messages.len(), 250);
    assert_eq!(
        store.get(&t, &first[0].id).await.unwrap().as_ref(),
        Some(&first[0])
    );

    // The same key with another 250: none of them is stored.
    let second = batch(250, 1);
    let err = store
        .insert(&second, Some(&record(&t, "campaign")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyKeyTaken), "{err:?}");
    assert_eq!(
        store
            .list(&t, &everything(1000))
            .await
            .unwrap()
            .messages
            .len(),
        250
    );
    assert_eq!(store.get(&t, &second[0].id).await.unwrap(), None);

    // A repeated id among many: none of them is stored, and the key stays free.
    let mut third = batch(150, 2);
    third.push(first[100].clone());
    let err = store
        .insert(&third, Some(&record(&t, "again")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(
        store
            .list(&t, &everything(1000))
            .await
            .unwrap()
            .messages
            .len(),
        250
    );
    assert_eq!(
        store
            .idempotency(&t, &IdempotencyKey::parse("again").unwrap())
            .await
            .unwrap(),
        None
    );
}

async fn a_large_idempotency_reply_round_trips(b: &Backend) {
    let store = b.store();
    let t = tenant();
    // The reply to a batch of 10,000 recipients is about this large.
    let results: Vec<serde_json::Value> = (0..10_000)
        .map(|i| json!({"index": i, "status": "accepted", "id": MessageId::generate(at(0)).to_string(), "segments": 1}))
        .collect();
    let mut rec = record(&t, "big-batch");
    rec.body = json!({"batch_id": "bat_x", "accepted": 10_000, "results": results});
    assert!(rec.body.to_string().len() > 700_000);
    store
        .insert(&[message(&t, at(0))], Some(&rec))
        .await
        .unwrap();
    assert_eq!(store.idempotency(&t, &rec.key).await.unwrap(), Some(rec));
}

async fn a_duplicate_message_id_writes_nothing(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let existing = message(&t, at(0));
    store
        .insert(std::slice::from_ref(&existing), None)
        .await
        .unwrap();

    // Alone.
    let err = store
        .insert(std::slice::from_ref(&existing), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");

    // With an idempotency key and a fresh message.
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

async fn an_unstorable_timestamp_is_refused_not_truncated(b: &Backend) {
    let store = b.store();
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

async fn transitions_apply_only_from_the_expected_states_of_the_right_tenant(b: &Backend) {
    let store = b.store();
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
        error: None,
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
    let walk: Vec<(MessageStatus, DateTime<Utc>)> =
        now.history.iter().map(|c| (c.status, c.at)).collect();
    assert_eq!(
        walk,
        [
            (Accepted, at(0)),
            (Queued, at(1)),
            (Sending, at(2)),
            (Sent, at(3))
        ],
        "the history, in order"
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
    assert_eq!(failed.text, m.text);
    assert_eq!(failed.created_at, m.created_at);

    // Terminal is terminal for anyone who expects a live state.
    let late = store
        .transition(&[step(&m, &[Sent, Sending], Delivered, 6)])
        .await
        .unwrap();
    assert_eq!(late, vec![None]);
    assert_eq!(
        store.get(&t, &m.id).await.unwrap().map(|m| m.status),
        Some(Failed)
    );
}

async fn changes_of_several_messages_in_one_call(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let messages: Vec<Message> = (0..30)
        .map(|i| {
            let mut m = message(&t, at(i));
            m.status = Queued;
            m
        })
        .collect();
    store.insert(&messages, None).await.unwrap();
    // Every other message is claimed twice in one call: the second claim finds it taken.
    let mut changes = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        changes.push(step(m, &[Queued], Sending, 100));
        if i % 2 == 0 {
            changes.push(step(m, &[Queued], Sending, 101));
        }
    }
    let results = store.transition(&changes).await.unwrap();
    assert_eq!(results.len(), changes.len());
    for (change, result) in changes.iter().zip(&results) {
        match result {
            Some(m) => {
                assert_eq!(
                    (m.id, m.status, m.updated_at),
                    (change.id, Sending, at(100))
                );
            }
            None => assert_eq!(change.at, at(101), "only the repeated claims lose"),
        }
    }
    assert_eq!(results.iter().flatten().count(), 30);
}

/// What `transition_each` answers for each change is what the store then holds, also when
/// a change of the batch cannot be stored (its time is past what the stores hold): a store
/// that applies changes one by one fails that one alone, an all-or-nothing one the batch.
async fn each_change_of_a_batch_is_answered_for_itself(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let messages: Vec<Message> = (0..10)
        .map(|i| {
            let mut m = message(&t, at(i));
            m.status = Queued;
            m
        })
        .collect();
    store.insert(&messages, None).await.unwrap();
    let changes: Vec<Transition> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut claim = step(m, &[Queued], Sending, 100);
            if i == 3 {
                claim.at = Utc.with_ymd_and_hms(2300, 1, 1, 0, 0, 0).unwrap();
            }
            claim
        })
        .collect();
    let results = store.transition_each(&changes).await;
    assert_eq!(results.len(), changes.len());
    let mut applied = 0;
    for (m, result) in messages.iter().zip(&results) {
        let stored = store.get(&t, &m.id).await.unwrap().unwrap();
        match result {
            Ok(Some(after)) => {
                applied += 1;
                assert_eq!((after.status, stored.status), (Sending, Sending));
            }
            Ok(None) => panic!("every claim's condition held"),
            Err(_) => assert_eq!(stored.status, Queued, "a failed change is not applied"),
        }
    }
    assert!(
        applied == 9 || applied == 0,
        "the unstorable change fails alone, or with its batch: {applied}"
    );
    assert!(results[3].is_err());
}

/// Many messages of one tenant (on DynamoDB spread over its write shards, which a list
/// merges): every page size walks them all newest first, none missed or repeated, filtered
/// or not.
async fn a_long_list_pages_newest_first_without_a_gap_or_a_repeat(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let mut mine = Vec::new();
    for i in 0..240 {
        let mut m = message(&t, at(i));
        if i % 3 == 0 {
            m.status = Queued;
        }
        mine.push(m);
    }
    for chunk in mine.chunks(80) {
        store.insert(chunk, None).await.unwrap();
    }
    store
        .insert(&[message(&tenant(), at(7))], None)
        .await
        .unwrap();
    let newest_first: Vec<MessageId> = mine.iter().rev().map(|m| m.id).collect();
    let queued: Vec<MessageId> = mine
        .iter()
        .rev()
        .filter(|m| m.status == Queued)
        .map(|m| m.id)
        .collect();
    for (limit, status, want) in [
        (1, None, &newest_first),
        (7, None, &newest_first),
        (50, None, &newest_first),
        (100, None, &newest_first),
        (13, Some(Queued), &queued),
    ] {
        let mut query = everything(limit);
        query.status = status;
        let mut seen = Vec::new();
        loop {
            let page = store.list(&t, &query).await.unwrap();
            assert!(page.messages.len() <= limit);
            seen.extend(ids(&page));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
            assert!(
                seen.len() <= want.len(),
                "limit {limit}: more than there are"
            );
        }
        assert_eq!(&seen, want, "limit {limit}, status {status:?}");
    }
}

async fn lists_filter_newest_first_and_page_with_a_cursor(b: &Backend) {
    let store = b.store();
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
    let newest_first: Vec<MessageId> = mine.iter().rev().map(|m| m.id).collect();

    // Pages of 3: 3, 3, 1.
    let mut query = everything(3);
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
    assert_eq!(third.messages[0], mine[0], "listed messages are whole");

    // Filters, combined with AND.
    let only = |f: fn(&mut ListQuery)| {
        let mut q = everything(100);
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

async fn provider_ids_are_resolved_in_the_order_asked(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let u = tenant();
    let mut a = message(&t, at(0));
    a.segments = 2;
    let bb = message(&t, at(1));
    let c = message(&u, at(2));
    let d = message(&u, at(3));
    store
        .insert(&[a.clone(), bb.clone(), c.clone(), d.clone()], None)
        .await
        .unwrap();
    let mut changes = Vec::new();
    for (m, provider, pid) in [
        (&a, "kyivstar", "p1"),
        (&bb, "kyivstar", "p2"),
        (&c, "lifecell", "p1"),
    ] {
        let mut s = step(m, &[Accepted], Sent, 1);
        s.patch.provider = Some(provider.into());
        s.patch.provider_message_id = Some(pid.into());
        changes.push(s);
    }
    store.transition(&changes).await.unwrap();
    // Provider and id set in two steps: the id is found all the same.
    let mut chosen = step(&d, &[Accepted], Sending, 1);
    chosen.patch.provider = Some("vodafone".into());
    let mut submitted = step(&d, &[Sending], Sent, 2);
    submitted.patch.provider_message_id = Some("v-7".into());
    store.transition(&[chosen, submitted]).await.unwrap();

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
        vec![Some(target(&bb)), None, Some(target(&a)), Some(target(&bb))]
    );
    assert_eq!(
        store
            .find_by_provider_ids("lifecell", &["p1".to_owned(), "p2".to_owned()])
            .await
            .unwrap(),
        vec![Some(target(&c)), None]
    );
    assert_eq!(
        store
            .find_by_provider_ids("vodafone", &["v-7".to_owned()])
            .await
            .unwrap(),
        vec![Some(target(&d))]
    );
    // A message that ended is still found (a late receipt must be recognised, not pending).
    store
        .transition(&[step(&a, &[Sent], Delivered, 3)])
        .await
        .unwrap();
    assert_eq!(
        store
            .find_by_provider_ids("kyivstar", &["p1".to_owned()])
            .await
            .unwrap(),
        vec![Some(target(&a))]
    );
}

async fn receipts_are_kept_once_and_listed_per_message(b: &Backend) {
    use ReceiptState::*;
    let store = b.store();
    let t = tenant();
    let mut a = message(&t, at(0));
    a.segments = 2;
    let bb = message(&t, at(1));
    store.insert(&[a.clone(), bb.clone()], None).await.unwrap();
    let unknown = reference(&message(&t, at(2)));
    let mut foreign = reference(&a);
    foreign.tenant_id = tenant();

    let lists = store
        .add_receipts(&[
            (reference(&a), receipt(1, Delivered, 10)),
            (reference(&a), receipt(1, Delivered, 10)),
            (reference(&bb), receipt(1, Enroute, 11)),
            (unknown.clone(), receipt(1, Delivered, 12)),
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
    assert_eq!(
        store.get(&t, &unknown.id).await.unwrap(),
        None,
        "a receipt creates no message"
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
    // Receipts leave the message itself as it was.
    assert_eq!(store.get(&t, &a.id).await.unwrap(), Some(a));
}

async fn sweeps_find_due_stale_and_expired_messages_oldest_first(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let u = tenant();
    let scheduled = |tenant: &TenantId, second: i64| {
        let mut m = message(tenant, at(0));
        m.status = Scheduled;
        m.send_at = Some(at(second));
        m
    };
    // Sweeps cross tenants.
    let (s10, s5, s20) = (scheduled(&t, 10), scheduled(&u, 5), scheduled(&t, 20));
    let mut queued_old = message(&t, at(0));
    queued_old.status = Queued;
    queued_old.updated_at = at(1);
    let mut queued_new = message(&u, at(0));
    queued_new.status = Queued;
    queued_new.updated_at = at(50);
    let mut delivered_expired = message(&t, at(0));
    delivered_expired.status = Delivered;
    delivered_expired.expires_at = at(2);
    let mut sent_expired = message(&t, at(0));
    sent_expired.status = Sending;
    sent_expired.expires_at = at(3);
    let mut accepted_expired = message(&u, at(0));
    accepted_expired.expires_at = at(1);
    for m in [
        &s10,
        &s5,
        &s20,
        &queued_old,
        &queued_new,
        &delivered_expired,
        &sent_expired,
        &accepted_expired,
    ] {
        store.insert(std::slice::from_ref(m), None).await.unwrap();
    }

    assert_eq!(
        store.due_scheduled(at(15), 10).await.unwrap(),
        vec![reference(&s5), reference(&s10)]
    );
    assert_eq!(
        store.due_scheduled(at(15), 1).await.unwrap(),
        vec![reference(&s5)]
    );
    assert_eq!(store.due_scheduled(at(4), 10).await.unwrap(), vec![]);
    assert_eq!(
        store.due_scheduled(at(20), 10).await.unwrap().len(),
        3,
        "send_at equal to now is due"
    );

    assert_eq!(
        store.stale_queued(at(10), 10).await.unwrap(),
        vec![reference(&queued_old)]
    );
    assert_eq!(
        store.stale_queued(at(50), 10).await.unwrap(),
        vec![reference(&queued_old), reference(&queued_new)]
    );

    // Only sent messages are swept for validity (dispatch expires waiting ones).
    let mut sent = step(&sent_expired, &[Sending], Sent, 2);
    sent.patch.provider = Some("turbosms".into());
    sent.patch.provider_message_id = Some("t-1".into());
    store.transition(&[sent]).await.unwrap();
    assert_eq!(
        store.sent_past_validity(at(3), 10).await.unwrap(),
        vec![reference(&sent_expired)]
    );
    assert_eq!(store.sent_past_validity(at(3), 0).await.unwrap(), vec![]);
    assert_eq!(store.sent_past_validity(at(2), 10).await.unwrap(), vec![]);

    // Leaving a state leaves its sweep: a released message is no longer due, a claimed one
    // no longer stale; touching a queued message makes it fresh again.
    store
        .transition(&[
            step(&s5, &[Scheduled], Queued, 60),
            step(&queued_old, &[Queued], Sending, 60),
            step(&queued_new, &[Queued], Queued, 61),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.due_scheduled(at(15), 10).await.unwrap(),
        vec![reference(&s10)]
    );
    assert_eq!(store.stale_queued(at(59), 10).await.unwrap(), vec![]);
    assert_eq!(
        store.stale_queued(at(61), 10).await.unwrap(),
        vec![reference(&s5), reference(&queued_new)]
    );

    // A message that ends leaves the validity sweep.
    store
        .transition(&[step(&sent_expired, &[Sent], Delivered, 4)])
        .await
        .unwrap();
    assert_eq!(store.sent_past_validity(at(3), 10).await.unwrap(), vec![]);
}

async fn receipts_ride_along_with_a_status_change(b: &Backend) {
    let store = b.store();
    let m = message(&tenant(), at(0));
    store.insert(std::slice::from_ref(&m), None).await.unwrap();
    let delivered = receipt(1, ReceiptState::Delivered, 5);
    let mut change = step(&m, &[Accepted], Delivered, 6);
    change.patch.receipts = vec![delivered, delivered];
    let after = store
        .transition(std::slice::from_ref(&change))
        .await
        .unwrap();
    assert_eq!(after[0].as_ref().map(|m| m.status), Some(Delivered));
    // A change whose condition fails records nothing.
    let mut refused = step(&m, &[Accepted], Undelivered, 7);
    refused.patch.receipts = vec![receipt(1, ReceiptState::Undelivered, 7)];
    assert!(store.transition(&[refused]).await.unwrap()[0].is_none());
    // Recorded once, with the change, and seen by the receipts that follow.
    let all = store
        .add_receipts(&[(reference(&m), delivered)])
        .await
        .unwrap();
    assert_eq!(all, vec![vec![delivered]]);
}

async fn queued_messages_stored_together_turn_stale_together(b: &Backend) {
    let store = b.store();
    let (t, u) = (tenant(), tenant());
    let queued = |tenant: &TenantId, second: i64| {
        let mut m = message(tenant, at(0));
        m.status = Queued;
        m.updated_at = at(second);
        m
    };
    // One call, two tenants, and a scheduled message that is no business of this sweep.
    let (a, b2, c, d) = (queued(&t, 1), queued(&t, 2), queued(&u, 3), queued(&t, 40));
    let mut later = message(&t, at(0));
    later.status = Scheduled;
    later.send_at = Some(at(100));
    store
        .insert(&[a.clone(), b2.clone(), c.clone(), d.clone(), later], None)
        .await
        .unwrap();
    let stale = |cutoff: i64| async move {
        let mut found = store.stale_queued(at(cutoff), 100).await.unwrap();
        found.sort_by_key(|r| r.id);
        found
    };
    assert_eq!(stale(0).await, vec![]);
    assert_eq!(stale(2).await, vec![reference(&a), reference(&b2)]);
    assert_eq!(
        stale(10).await,
        vec![reference(&a), reference(&b2), reference(&c)]
    );
    // Claimed ones leave; a touched one is fresh again until it is stale once more.
    store
        .transition(&[
            step(&a, &[Queued], Sending, 50),
            step(&b2, &[Queued], Queued, 60),
            step(&c, &[Queued], Sending, 50),
        ])
        .await
        .unwrap();
    assert_eq!(stale(45).await, vec![reference(&d)]);
    assert_eq!(stale(60).await, vec![reference(&b2), reference(&d)]);
    // Once none is queued, none is found.
    store
        .transition(&[
            step(&b2, &[Queued], Sending, 70),
            step(&d, &[Queued], Sending, 70),
        ])
        .await
        .unwrap();
    assert_eq!(stale(1000).await, vec![]);
    assert_eq!(stale(1000).await, vec![]);
}

async fn sent_messages_await_receipts_per_provider(b: &Backend) {
    let store = b.store();
    let t = tenant();
    let messages: Vec<Message> = (0..5).map(|i| message(&t, at(i))).collect();
    store.insert(&messages, None).await.unwrap();
    let send = |m: &Message, provider: &str, pid: &str, second: i64| {
        let mut s = step(m, &[Accepted], Sent, second);
        s.patch.provider = Some(provider.into());
        s.patch.provider_message_id = Some(pid.into());
        s
    };
    store
        .transition(&[
            send(&messages[0], "turbosms", "t-late", 30),
            send(&messages[1], "turbosms", "t-early", 10),
            send(&messages[2], "smsfly", "f-1", 5),
            send(&messages[3], "turbosms", "t-done", 1),
            send(&messages[4], "turbosms", "t-middle", 20),
        ])
        .await
        .unwrap();
    store
        .transition(&[step(&messages[3], &[Sent], Delivered, 40)])
        .await
        .unwrap();

    assert_eq!(
        store
            .awaiting_receipts("turbosms", at(1000), 10)
            .await
            .unwrap(),
        ["t-late", "t-early", "t-middle"],
        "earliest validity end first; a delivered message no longer waits"
    );
    assert_eq!(
        store
            .awaiting_receipts("turbosms", at(1000), 2)
            .await
            .unwrap(),
        ["t-late", "t-early"]
    );
    assert_eq!(
        store
            .awaiting_receipts("smsfly", at(1000), 10)
            .await
            .unwrap(),
        ["f-1"]
    );
    assert_eq!(
        store
            .awaiting_receipts("turbosms", at(20), 10)
            .await
            .unwrap(),
        ["t-early", "t-middle"],
        "only those sent by the cutoff: a reconciliation asks for overdue receipts only"
    );
    assert!(
        store
            .awaiting_receipts("alphasms", at(1000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .awaiting_receipts("turbosms", at(1000), 0)
            .await
            .unwrap()
            .is_empty()
    );

    // Back to the queue (a retry elsewhere): no longer awaited here.
    store
        .transition(&[step(&messages[1], &[Sent], Queued, 50)])
        .await
        .unwrap();
    assert_eq!(
        store
            .awaiting_receipts("turbosms", at(1000), 10)
            .await
            .unwrap(),
        ["t-late", "t-middle"]
    );
}

// ---------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------

fn key(tenant: &TenantId, hash: &str, n: i64) -> ApiKeyRecord {
    ApiKeyRecord {
        id: Some(KeyId::generate(at(n))),
        tenant_id: tenant.clone(),
        hash: hash.into(),
        name: Some(KeyName::parse(&format!("key {n}")).unwrap()),
        scopes: Scopes::parse("messages:send,messages:read").unwrap(),
        created_at: Some(at(n)),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    }
}

fn audit(tenant: &TenantId, n: i64, action: AuditAction) -> AuditEntry {
    // Entries made in one second sort by their random part: a test that orders them makes
    // them seconds apart.
    Origin::operator().entry(tenant, at(n), action, format!("target {n}"), None, None)
}

async fn tenants_are_created_with_their_first_key(b: &Backend) {
    let store = b.tenants();
    let acme = Tenant {
        id: tenant(),
        name: "Acme".into(),
        created_at: at(0),
    };
    let first = key(&acme.id, "hash-acme", 0);
    let created = audit(&acme.id, 0, AuditAction::TenantCreate);
    store.create_tenant(&acme, &first, &created).await.unwrap();
    assert_eq!(
        store.api_key(first.id.as_ref(), "hash-acme").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .api_key(Some(&KeyId::generate(at(0))), "hash-acme")
            .await
            .unwrap(),
        None
    );

    // The same tenant again: refused, and nothing of it is written.
    let again = key(&acme.id, "hash-other", 1);
    let err = store
        .create_tenant(
            &acme,
            &again,
            &audit(&acme.id, 1, AuditAction::TenantCreate),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(
        store
            .api_key(again.id.as_ref(), "hash-other")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.audit_log(&acme.id, None, 10).await.unwrap(),
        std::slice::from_ref(&created)
    );

    // An entry of a change kept outside the store (a secret's rotation): the tenant's
    // only, and none for a tenant that does not exist.
    let rotated = audit(&acme.id, 1, AuditAction::WebhookSecretRotate);
    store.record_audit(&rotated).await.unwrap();
    assert_eq!(
        store.audit_log(&acme.id, None, 10).await.unwrap(),
        [rotated, created.clone()]
    );
    let nobody = audit(&tenant(), 1, AuditAction::WebhookSecretRotate);
    let err = store.record_audit(&nobody).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(
        store
            .audit_log(&nobody.tenant_id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A key from before key ids is found by its hash, with every scope.
    let mut legacy = key(&acme.id, "hash-legacy", 2);
    legacy.id = None;
    legacy.name = None;
    legacy.created_at = None;
    legacy.scopes = Scopes::ADMIN;
    store
        .add_key(&legacy, &audit(&acme.id, 2, AuditAction::KeyCreate))
        .await
        .unwrap();
    assert_eq!(
        store.api_key(None, "hash-legacy").await.unwrap(),
        Some(legacy)
    );
    assert_eq!(store.api_key(None, "hash-never").await.unwrap(), None);
    assert!(
        store
            .revoke_legacy_key(
                "hash-legacy",
                at(3),
                &audit(&acme.id, 3, AuditAction::KeyRevoke)
            )
            .await
            .unwrap()
    );
    let revoked = store.api_key(None, "hash-legacy").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(3)));
    assert!(
        !store
            .revoke_legacy_key(
                "hash-legacy",
                at(4),
                &audit(&acme.id, 4, AuditAction::KeyRevoke)
            )
            .await
            .unwrap()
    );
    // Listings hold the keys with ids only.
    assert_eq!(store.list_keys(&acme.id).await.unwrap(), [first]);
}

async fn keys_are_added_revoked_and_rotated(b: &Backend) {
    let store = b.tenants();
    let acme = Tenant {
        id: tenant(),
        name: "Acme".into(),
        created_at: at(0),
    };
    let first = key(&acme.id, "hash-first", 0);
    store
        .create_tenant(
            &acme,
            &first,
            &audit(&acme.id, 0, AuditAction::TenantCreate),
        )
        .await
        .unwrap();
    let second = key(&acme.id, "hash-second", 1);
    store
        .add_key(&second, &audit(&acme.id, 1, AuditAction::KeyCreate))
        .await
        .unwrap();
    let orphan = key(&tenant(), "hash-orphan", 2);
    let err = store
        .add_key(
            &orphan,
            &audit(&orphan.tenant_id, 2, AuditAction::KeyCreate),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(
        store
            .api_key(orphan.id.as_ref(), "hash-orphan")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .audit_log(&orphan.tenant_id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Last use is recorded, and never moves back.
    let first_id = first.id.clone().unwrap();
    store.touch_key(&acme.id, &first_id, at(10)).await.unwrap();
    store.touch_key(&acme.id, &first_id, at(5)).await.unwrap();
    // Another tenant cannot touch it.
    store.touch_key(&tenant(), &first_id, at(20)).await.unwrap();
    let listed = store.list_keys(&acme.id).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, first.id, "oldest first");
    assert_eq!(listed[0].last_used_at, Some(at(10)));

    // Revoked: once, by its own tenant only.
    let other = tenant();
    let ended = store
        .end_key(
            &other,
            &first_id,
            KeyEnd::Revoke(at(11)),
            &audit(&other, 11, AuditAction::KeyRevoke),
        )
        .await
        .unwrap();
    assert_eq!(ended, None);
    assert!(store.audit_log(&other, None, 10).await.unwrap().is_empty());
    let ended = store
        .end_key(
            &acme.id,
            &first_id,
            KeyEnd::Revoke(at(12)),
            &audit(&acme.id, 12, AuditAction::KeyRevoke),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.revoked_at, Some(at(12)));
    let stored = store
        .api_key(Some(&first_id), "hash-first")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revoked_at, Some(at(12)));
    let again = store
        .end_key(
            &acme.id,
            &first_id,
            KeyEnd::Revoke(at(13)),
            &audit(&acme.id, 13, AuditAction::KeyRevoke),
        )
        .await
        .unwrap();
    assert_eq!(again, None);

    // Rotated: the new key is stored and the old one ends at the earlier of its expiry and
    // the grace period's end.
    let second_id = second.id.clone().unwrap();
    let new = key(&acme.id, "hash-third", 14);
    let rotate = KeyEnd::Rotate {
        new: Box::new(new.clone()),
        old_until: at(100),
    };
    let ended = store
        .end_key(
            &acme.id,
            &second_id,
            rotate,
            &audit(&acme.id, 14, AuditAction::KeyRotate),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ended.expires_at, ended.revoked_at), (Some(at(100)), None));
    assert_eq!(
        store.api_key(new.id.as_ref(), "hash-third").await.unwrap(),
        Some(new.clone())
    );
    let rotate = KeyEnd::Rotate {
        new: Box::new(key(&acme.id, "hash-fourth", 15)),
        old_until: at(200),
    };
    let ended = store
        .end_key(
            &acme.id,
            &second_id,
            rotate,
            &audit(&acme.id, 15, AuditAction::KeyRotate),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ended.expires_at,
        Some(at(100)),
        "a rotation never lengthens a key's life"
    );
    assert_eq!(store.list_keys(&acme.id).await.unwrap().len(), 4);

    // The audit log, newest first, in pages.
    let log = store.audit_log(&acme.id, None, 3).await.unwrap();
    let times: Vec<_> = log.iter().map(|e| e.at).collect();
    assert_eq!(times, [at(15), at(14), at(12)]);
    let rest = store
        .audit_log(&acme.id, Some(&log[2].id), 10)
        .await
        .unwrap();
    let times: Vec<_> = rest.iter().map(|e| e.at).collect();
    assert_eq!(times, [at(1), at(0)]);
}

async fn senders_are_registered_changed_and_removed(b: &Backend) {
    let store = b.tenants();
    let acme = Tenant {
        id: tenant(),
        name: "Acme".into(),
        created_at: at(0),
    };
    store
        .create_tenant(
            &acme,
            &key(&acme.id, "hash-senders", 0),
            &audit(&acme.id, 0, AuditAction::TenantCreate),
        )
        .await
        .unwrap();
    let shop = SenderId::parse("Shop24").unwrap();
    let mut record = SenderRecord::requested(acme.id.clone(), shop.clone(), at(1));
    store
        .put_sender(
            &record,
            true,
            &audit(&acme.id, 1, AuditAction::SenderRequest),
        )
        .await
        .unwrap();
    let err = store
        .put_sender(
            &record,
            true,
            &audit(&acme.id, 2, AuditAction::SenderRequest),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    let orphan = SenderRecord::requested(tenant(), shop.clone(), at(1));
    let err = store
        .put_sender(
            &orphan,
            true,
            &audit(&orphan.tenant_id, 2, AuditAction::SenderRequest),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(store.senders(&orphan.tenant_id).await.unwrap().is_empty());

    record
        .networks
        .insert(Network::Kyivstar, Registration::Active);
    record
        .networks
        .insert(Network::Lifecell, Registration::Rejected);
    record.updated_at = at(3);
    store
        .put_sender(
            &record,
            false,
            &audit(&acme.id, 3, AuditAction::SenderStatus),
        )
        .await
        .unwrap();
    assert_eq!(store.senders(&acme.id).await.unwrap(), [record.clone()]);
    let phone = SenderRecord::requested(
        acme.id.clone(),
        SenderId::parse("+380671234567").unwrap(),
        at(4),
    );
    let err = store
        .put_sender(
            &phone,
            false,
            &audit(&acme.id, 4, AuditAction::SenderStatus),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    assert!(
        store
            .remove_sender(
                &acme.id,
                &shop,
                &audit(&acme.id, 5, AuditAction::SenderRemove)
            )
            .await
            .unwrap()
    );
    assert!(store.senders(&acme.id).await.unwrap().is_empty());
    assert!(
        !store
            .remove_sender(
                &acme.id,
                &shop,
                &audit(&acme.id, 6, AuditAction::SenderRemove)
            )
            .await
            .unwrap()
    );
    // Every change that applied is in the log; the refused ones are not.
    let actions: Vec<_> = store
        .audit_log(&acme.id, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            AuditAction::SenderRemove,
            AuditAction::SenderStatus,
            AuditAction::SenderRequest,
            AuditAction::TenantCreate
        ]
    );
}

async fn replays_are_remembered_until_they_expire(b: &Backend) {
    let replays = b.replays();
    // Digests of this test alone: the AWS half shares a table prefix per test, not a table.
    let digest = |n: u8| {
        let mut d = [n; 32];
        d[..8].copy_from_slice(&Utc::now().timestamp_nanos_opt().unwrap_or(0).to_be_bytes());
        d
    };
    let (a, c) = (digest(1), digest(3));
    let now = Utc::now();
    assert!(!replays.seen(&a, now).await.unwrap());
    replays
        .remember(&a, now + TimeDelta::seconds(60))
        .await
        .unwrap();
    assert!(replays.seen(&a, now).await.unwrap());
    assert!(
        replays
            .seen(&a, now + TimeDelta::seconds(59))
            .await
            .unwrap()
    );
    assert!(
        !replays
            .seen(&a, now + TimeDelta::seconds(61))
            .await
            .unwrap(),
        "an expired digest counts as absent before it is deleted"
    );
    // Remembered again later: the later time holds.
    replays
        .remember(&a, now + TimeDelta::seconds(120))
        .await
        .unwrap();
    assert!(
        replays
            .seen(&a, now + TimeDelta::seconds(90))
            .await
            .unwrap()
    );

    replays
        .remember(&c, now - TimeDelta::seconds(1))
        .await
        .unwrap();
    assert!(!replays.seen(&c, now).await.unwrap());
    let forgotten = replays.forget_expired(now, 100).await.unwrap();
    assert!(forgotten <= 1, "{forgotten}");
    assert!(!replays.seen(&c, now).await.unwrap());
    assert!(
        replays.seen(&a, now).await.unwrap(),
        "a live digest is kept"
    );
}

async fn limits_are_kept_with_their_audit_entry(b: &Backend) {
    let store = b.tenants();
    let acme = Tenant {
        id: tenant(),
        name: "Acme".into(),
        created_at: at(0),
    };
    assert!(store.limits(&acme.id).await.unwrap().is_none());
    let mut limits = TenantLimits::default();
    limits.set("rate_per_second", "7").unwrap();
    let err = store
        .put_limits(
            &acme.id,
            &limits,
            &audit(&acme.id, 1, AuditAction::SettingsUpdate),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound),
        "no such tenant: {err:?}"
    );
    store
        .create_tenant(
            &acme,
            &key(&acme.id, "hash-limits", 0),
            &audit(&acme.id, 0, AuditAction::TenantCreate),
        )
        .await
        .unwrap();
    assert!(
        store.limits(&acme.id).await.unwrap().is_none(),
        "defaults hold"
    );
    store
        .put_limits(
            &acme.id,
            &limits,
            &audit(&acme.id, 2, AuditAction::SettingsUpdate),
        )
        .await
        .unwrap();
    assert_eq!(store.limits(&acme.id).await.unwrap(), Some(limits.clone()));
    limits.set("countries", "UA,PL").unwrap();
    store
        .put_limits(
            &acme.id,
            &limits,
            &audit(&acme.id, 3, AuditAction::SettingsUpdate),
        )
        .await
        .unwrap();
    assert_eq!(store.limits(&acme.id).await.unwrap(), Some(limits));
    let log = store.audit_log(&acme.id, None, 10).await.unwrap();
    let settings = log
        .iter()
        .filter(|e| e.action == AuditAction::SettingsUpdate)
        .count();
    assert_eq!(
        settings, 2,
        "one entry per change, none for the refused one"
    );
}

async fn an_erased_tenant_is_unreadable_and_takes_nothing_new(b: &Backend) {
    let (store, tenants) = (b.store.as_ref(), b.tenants.as_ref());
    let mut ids = Vec::new();
    for (n, name) in ["Gone", "Kept"].into_iter().enumerate() {
        let t = Tenant {
            id: tenant(),
            name: name.into(),
            created_at: at(0),
        };
        tenants
            .create_tenant(
                &t,
                &key(&t.id, &format!("hash-erase-{n}-{}", t.id), 0),
                &audit(&t.id, 0, AuditAction::TenantCreate),
            )
            .await
            .unwrap();
        ids.push(t.id);
    }
    let (gone, kept) = (&ids[0], &ids[1]);
    let mut sent = message(gone, at(1));
    sent.to = phone("+380501112233");
    sent.text = "Код 739164".into();
    let mut other = message(kept, at(2));
    other.to = sent.to.clone();
    store
        .insert(std::slice::from_ref(&sent), None)
        .await
        .unwrap();
    store
        .insert(std::slice::from_ref(&other), None)
        .await
        .unwrap();
    // Found by number (a keyed tag), each tenant its own.
    let by_number = || ListQuery {
        to: Some(phone("+380501112233")),
        limit: 10,
        ..ListQuery::default()
    };
    let page = store.list(kept, &by_number()).await.unwrap();
    assert_eq!(page.messages, vec![other.clone()]);

    let erased = tenants
        .erase_tenant(gone, at(3), &audit(gone, 3, AuditAction::TenantErase))
        .await
        .unwrap();
    assert!(erased);
    assert!(matches!(
        store.get(gone, &sent.id).await,
        Err(StoreError::Erased)
    ));
    assert!(matches!(
        store.list(gone, &by_number()).await,
        Err(StoreError::Erased)
    ));
    assert!(matches!(
        store.insert(&[message(gone, at(4))], None).await,
        Err(StoreError::Erased)
    ));
    let claim = Transition::new(
        gone.clone(),
        sent.id,
        &[MessageStatus::Accepted],
        MessageStatus::Failed,
        at(5),
    );
    assert_eq!(store.transition(&[claim]).await.unwrap(), vec![None]);
    for k in tenants.list_keys(gone).await.unwrap() {
        assert!(k.revoked_at.is_some(), "{k:?}");
    }
    assert!(matches!(
        tenants
            .erase_tenant(&tenant(), at(6), &audit(gone, 6, AuditAction::TenantErase))
            .await,
        Err(StoreError::NotFound)
    ));
    // The other tenant reads as before.
    assert_eq!(store.get(kept, &other.id).await.unwrap(), Some(other));
}

async fn numbers_are_counted_under_keys_of_their_tenant(b: &Backend) {
    let counters = b.counters.as_ref();
    let (a, c) = (counter_tenant(), counter_tenant());
    let (x, y) = (phone("0671234567"), phone("0671234568"));
    let keys = counters.number_keys(&a, &[&x, &y, &x]).await.unwrap();
    assert_eq!(keys[0], keys[2]);
    assert_ne!(keys[0], keys[1]);
    assert_eq!(
        counters.number_keys(&a, &[&x]).await.unwrap(),
        vec![keys[0]]
    );
    assert_ne!(
        counters.number_keys(&c, &[&x]).await.unwrap(),
        vec![keys[0]]
    );
}

/// Counter keys of this test alone: the AWS half shares a table prefix per test, not a
/// table, and a tenant id names every key.
fn counter_tenant() -> TenantId {
    TenantId::generate(Utc::now())
}

async fn a_bucket_grants_its_burst_then_its_rate(b: &Backend) {
    let counters = b.counters.as_ref();
    let t = counter_tenant();
    let bucket = Bucket::per_second(10, 5);
    let now = Utc::now();
    for _ in 0..5 {
        assert_eq!(
            counters.take_tokens(&t, bucket, 1, now).await.unwrap(),
            Ok(())
        );
    }
    let wait = counters
        .take_tokens(&t, bucket, 1, now)
        .await
        .unwrap()
        .unwrap_err()
        .expect("tokens come back");
    assert!(wait <= std::time::Duration::from_millis(100), "{wait:?}");
    let later = now + TimeDelta::milliseconds(100);
    assert_eq!(
        counters.take_tokens(&t, bucket, 1, later).await.unwrap(),
        Ok(())
    );
    assert!(
        counters
            .take_tokens(&t, bucket, 1, later)
            .await
            .unwrap()
            .is_err()
    );
    // Idle long enough, the bucket is full again, and no fuller.
    let idle = now + TimeDelta::seconds(60);
    assert_eq!(
        counters.take_tokens(&t, bucket, 5, idle).await.unwrap(),
        Ok(())
    );
    assert!(
        counters
            .take_tokens(&t, bucket, 1, idle)
            .await
            .unwrap()
            .is_err()
    );
    assert_eq!(
        counters.take_tokens(&t, bucket, 6, idle).await.unwrap(),
        Err(None),
        "more than the burst: never"
    );
    // Another tenant's bucket is its own.
    let other = counter_tenant();
    assert_eq!(
        counters.take_tokens(&other, bucket, 5, now).await.unwrap(),
        Ok(())
    );
}

async fn spend_is_charged_within_both_caps_and_refunded(b: &Backend) {
    let counters = b.counters.as_ref();
    let t = counter_tenant();
    let day = |d: u32| SpendPeriod {
        month: "2026-12".into(),
        day: d,
        forget_after: Utc::now() + TimeDelta::days(40),
    };
    let charge = |d: u32, amount: i64| {
        let period = day(d);
        let t = t.clone();
        async move {
            counters
                .charge(&t, &period, amount, 1_000, 2_500)
                .await
                .unwrap()
        }
    };
    assert_eq!(charge(1, 600).await, SpendVerdict::Charged);
    assert_eq!(
        charge(1, 400).await,
        SpendVerdict::Charged,
        "exactly the cap"
    );
    assert_eq!(charge(1, 1).await, SpendVerdict::DayCapReached);
    assert_eq!(charge(2, 1_000).await, SpendVerdict::Charged, "a new day");
    assert_eq!(charge(3, 600).await, SpendVerdict::MonthCapReached);
    assert_eq!(charge(3, 2_000).await, SpendVerdict::DayCapReached);
    assert_eq!(
        counters.spent(&t, &day(1)).await.unwrap(),
        Spent {
            day: 1_000,
            month: 2_000
        }
    );
    counters.refund(&t, &day(2), 300).await.unwrap();
    assert_eq!(
        counters.spent(&t, &day(2)).await.unwrap(),
        Spent {
            day: 700,
            month: 1_700
        }
    );
    assert_eq!(
        charge(3, 500).await,
        SpendVerdict::Charged,
        "room after the refund"
    );
    let other = counter_tenant();
    assert_eq!(
        counters.spent(&other, &day(1)).await.unwrap(),
        Spent::default()
    );
}

async fn numbers_are_counted_up_to_their_limit(b: &Backend) {
    let counters = b.counters.as_ref();
    let t = counter_tenant();
    let until = Utc::now() + TimeDelta::hours(2);
    let (x, y) = ([1u8; 16], [2u8; 16]);
    let counted = counters
        .count_numbers(&t, &[x, x, y, x, y], "2026120110", 2, until)
        .await
        .unwrap();
    // Each number up to its limit (which of one number's repeats wins is the store's choice).
    let of = |n: [u8; 16]| {
        [x, x, y, x, y]
            .iter()
            .zip(&counted)
            .filter(|(m, ok)| **m == n && **ok)
            .count()
    };
    assert_eq!((of(x), of(y)), (2, 2), "{counted:?}");
    let counted = counters
        .count_numbers(&t, &[y, x], "2026120110", 2, until)
        .await
        .unwrap();
    assert_eq!(counted, [false, false]);
    let counted = counters
        .count_numbers(&t, &[x], "2026120111", 2, until)
        .await
        .unwrap();
    assert_eq!(counted, [true], "a new hour");
    // A count taken back (a refused message's) frees its place, once; none goes below zero.
    counters
        .uncount_numbers(&t, &[y], "2026120110")
        .await
        .unwrap();
    let counted = counters
        .count_numbers(&t, &[y, y], "2026120110", 2, until)
        .await
        .unwrap();
    assert_eq!(counted.iter().filter(|ok| **ok).count(), 1, "{counted:?}");
    counters
        .uncount_numbers(&t, &[y, y, y], "2026120112")
        .await
        .unwrap();
    let counted = counters
        .count_numbers(&t, &[y, y, y], "2026120112", 2, until)
        .await
        .unwrap();
    assert_eq!(counted.iter().filter(|ok| **ok).count(), 2);
    assert_eq!(
        counters
            .count_numbers(&t, &[], "2026120111", 2, until)
            .await
            .unwrap(),
        Vec::<bool>::new()
    );
}

async fn a_request_is_admitted_by_rate_number_and_spend_at_once(b: &Backend) {
    let counters = b.counters.as_ref();
    let t = counter_tenant();
    let now = Utc::now();
    let (x, y) = ([7u8; 16], [8u8; 16]);
    let admission = |messages: Vec<([u8; 16], i64)>| Admission {
        bucket: Bucket::per_second(1, 5),
        messages,
        window: "2026120112".into(),
        per_number: 2,
        numbers_forget_after: now + TimeDelta::hours(2),
        period: SpendPeriod {
            month: "2026-12".into(),
            day: 1,
            forget_after: now + TimeDelta::days(40),
        },
        day_cap: 1_000,
        month_cap: 10_000,
    };
    // x three times: the third is over its number's limit and not charged.
    let admitted = counters
        .admit(
            &t,
            &admission(vec![(x, 100), (x, 100), (x, 100), (y, 300)]),
            now,
        )
        .await
        .unwrap();
    let Admitted::Counted {
        counted,
        amount,
        spend,
    } = admitted
    else {
        panic!("rate limited: {admitted:?}");
    };
    assert_eq!(counted.iter().filter(|ok| **ok).count(), 3, "{counted:?}");
    assert_eq!((amount, spend), (500, SpendVerdict::Charged));
    let period = admission(vec![]).period;
    assert_eq!(counters.spent(&t, &period).await.unwrap().day, 500);
    // Over the day's cap: refused, and nothing charged.
    let admitted = counters
        .admit(&t, &admission(vec![(y, 600)]), now)
        .await
        .unwrap();
    assert!(
        matches!(
            admitted,
            Admitted::Counted {
                spend: SpendVerdict::DayCapReached,
                ..
            }
        ),
        "{admitted:?}"
    );
    assert_eq!(counters.spent(&t, &period).await.unwrap().day, 500);
    // ... nor counted against its number: y has one message of its two this hour.
    let window = admission(vec![]).window;
    let counted = counters
        .count_numbers(&t, &[y, y], &window, 2, now + TimeDelta::hours(2))
        .await
        .unwrap();
    // (Which of the two repeats wins is the store's choice.)
    assert_eq!(counted.iter().filter(|ok| **ok).count(), 1, "{counted:?}");
    // The bucket (5 tokens, 4 + 1 taken) is empty now; more than its burst never fits.
    let admitted = counters
        .admit(&t, &admission(vec![(y, 1)]), now)
        .await
        .unwrap();
    assert!(
        matches!(admitted, Admitted::RateLimited(Some(_))),
        "{admitted:?}"
    );
    let admitted = counters
        .admit(&t, &admission(vec![(y, 1); 6]), now + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(admitted, Admitted::RateLimited(None));
}

// ---------------------------------------------------------------------------------------
// Races (SQLite only; see `races`)
// ---------------------------------------------------------------------------------------

async fn concurrent_claims_and_keys_have_one_winner(b: &Backend) {
    let t = tenant();
    let target = message(&t, at(0));
    b.store()
        .insert(std::slice::from_ref(&target), None)
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = b.store.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let m = message(&t, at(i));
            let key = if i < 2 { "raced" } else { "own" };
            let key = format!("{key}-{}", if i < 2 { 0 } else { i });
            let inserted = store
                .insert(std::slice::from_ref(&m), Some(&record(&t, &key)))
                .await;
            (m, inserted)
        }));
    }
    let mut claims = Vec::new();
    for i in 0..20 {
        let store = b.store.clone();
        let change = step(&target, &[Accepted], Queued, 100 + i);
        claims.push(tokio::spawn(
            async move { store.transition(&[change]).await },
        ));
    }
    let mut landed = 0;
    for task in tasks {
        let (m, inserted) = task.await.unwrap();
        let stored = b.store().get(&t, &m.id).await.unwrap();
        match inserted {
            Ok(()) => {
                landed += 1;
                assert_eq!(stored, Some(m));
            }
            Err(StoreError::IdempotencyKeyTaken) => assert_eq!(stored, None),
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(landed, 19, "one of the two racing for one key loses");
    let mut winners = 0;
    for claim in claims {
        if claim.await.unwrap().unwrap()[0].is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let claimed = b.store().get(&t, &target.id).await.unwrap().unwrap();
    assert_eq!(claimed.history.len(), 2);
}

// ---------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------

async fn the_queue_delivers_hides_and_deletes(b: &Backend) {
    let queue = b.queue();
    let q = QueueName::Dispatch;
    queue
        .send_batch(q, vec![outgoing("a"), outgoing("b"), outgoing("c")])
        .await
        .unwrap();
    queue
        .send_batch(QueueName::Callbacks, vec![outgoing("cb")])
        .await
        .unwrap();

    let got = queue.receive(q, 10, LONG, SECOND).await.unwrap();
    assert_eq!(bodies(&got), set(&["a", "b", "c"]));
    assert!(got.iter().all(|d| d.receive_count == 1));
    assert!(
        queue
            .receive(q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "received messages are hidden"
    );
    let (deleted, kept): (Vec<&Delivery>, Vec<&Delivery>) = got.iter().partition(|d| d.body != "c");
    let handles: Vec<ReceiptHandle> = deleted.iter().map(|d| d.handle.clone()).collect();
    // Deleting through the wrong queue deletes nothing.
    queue
        .delete_batch(QueueName::Callbacks, &handles)
        .await
        .unwrap();
    queue.delete_batch(q, &handles).await.unwrap();
    // What was not deleted comes back once its visibility ends.
    queue
        .change_visibility(q, &kept[0].handle, Duration::ZERO)
        .await
        .unwrap();
    let again = queue.receive(q, 10, LONG, SECOND).await.unwrap();
    assert_eq!(bodies(&again), set(&["c"]));
    assert_eq!(again[0].receive_count, 2);
    queue
        .delete_batch(q, &[again[0].handle.clone()])
        .await
        .unwrap();

    let cb = queue
        .receive(QueueName::Callbacks, 10, LONG, SECOND)
        .await
        .unwrap();
    assert_eq!(bodies(&cb), set(&["cb"]));

    // `max` is respected.
    queue
        .send_batch(q, (0..5).map(|i| outgoing(&i.to_string())).collect())
        .await
        .unwrap();
    let got = queue.receive(q, 2, LONG, SECOND).await.unwrap();
    assert_eq!(got.len(), 2);
    let rest = queue.receive(q, 10, LONG, SECOND).await.unwrap();
    assert_eq!(rest.len(), 3);
    let all: BTreeSet<&str> = bodies(&got).union(&bodies(&rest)).copied().collect();
    assert_eq!(all, set(&["0", "1", "2", "3", "4"]));
    // Nothing else was ever in the queue: the deletes above took.
    assert!(
        queue
            .receive(q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_dead_lettered_job_is_redriven_with_a_fresh_count(b: &Backend) {
    let queue = b.queue();
    let q = QueueName::Callbacks;
    queue.send_batch(q, vec![outgoing("poison")]).await.unwrap();
    // Received five times (both backends dead-letter after five) and never deleted.
    for n in 1..=5 {
        let got = queue.receive(q, 10, Duration::ZERO, SECOND).await.unwrap();
        assert_eq!(bodies(&got), set(&["poison"]), "receive {n}");
    }
    let mut gone = false;
    for _ in 0..3 {
        if queue
            .receive(q, 10, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
        {
            gone = true;
            break;
        }
    }
    assert!(gone, "dead-lettered after its fifth receive");

    assert_eq!(queue.redrive(q, 100).await.unwrap(), 1);
    let back = queue.receive(q, 10, LONG, SECOND).await.unwrap();
    assert_eq!(bodies(&back), set(&["poison"]));
    assert_eq!(back[0].receive_count, 1, "a fresh count");
    queue
        .delete_batch(q, &[back[0].handle.clone()])
        .await
        .unwrap();
    assert_eq!(
        queue.redrive(q, 100).await.unwrap(),
        0,
        "nothing left to move"
    );
}

async fn an_unacknowledged_message_comes_back_with_a_new_handle(b: &Backend) {
    let queue = b.queue();
    let q = QueueName::Dispatch;
    queue.send_batch(q, vec![outgoing("job")]).await.unwrap();

    let first = queue.receive(q, 10, SECOND, SECOND).await.unwrap();
    assert_eq!(bodies(&first), set(&["job"]));
    assert_eq!(first[0].receive_count, 1);
    assert!(
        queue
            .receive(q, 10, SECOND, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = queue.receive(q, 10, LONG, SECOND).await.unwrap();
    assert_eq!(bodies(&second), set(&["job"]));
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].handle, first[0].handle);

    // A handle that never was one: delaying with it fails, deleting with it does nothing.
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
    let third = queue.receive(q, 10, LONG, SECOND).await.unwrap();
    assert_eq!(third[0].receive_count, 3);
    // Or hide it for longer (a backoff).
    queue
        .change_visibility(q, &third[0].handle, SECOND)
        .await
        .unwrap();
    assert!(
        queue
            .receive(q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    // The wait is generous: moto under load is slow to notice a visibility ending.
    let fourth = queue
        .receive(q, 10, LONG, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(bodies(&fourth), set(&["job"]));
    assert_eq!(fourth[0].receive_count, 4);
    queue
        .delete_batch(q, &[fourth[0].handle.clone()])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        queue
            .receive(q, 10, LONG, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "deleted for good"
    );
}

async fn a_delayed_message_stays_hidden_until_due(b: &Backend) {
    let queue = b.queue();
    let q = QueueName::Dispatch;
    let started = Instant::now();
    queue
        .send_batch(
            q,
            vec![
                Outgoing {
                    body: "later".into(),
                    delay: SECOND,
                },
                outgoing("now"),
            ],
        )
        .await
        .unwrap();
    let got = queue.receive(q, 10, LONG, Duration::ZERO).await.unwrap();
    assert_eq!(bodies(&got), set(&["now"]));
    let got = queue
        .receive(q, 10, LONG, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(bodies(&got), set(&["later"]));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // Well before the 20 s wait ends (moto checks for messages once a second or so, and a
    // busy machine adds more).
    assert!(waited < Duration::from_secs(15), "{waited:?}");
}

async fn a_receive_can_take_more_than_ten(b: &Backend) {
    let queue = b.queue();
    let q = QueueName::Callbacks;
    let sent: Vec<String> = (0..25).map(|i| format!("job-{i}")).collect();
    queue
        .send_batch(q, sent.iter().map(|s| outgoing(s)).collect())
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.extend(queue.receive(q, 25, LONG, SECOND).await.unwrap());
        if got.len() >= 25 {
            break;
        }
    }
    assert_eq!(
        bodies(&got),
        sent.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    assert_eq!(got.len(), 25, "each once");
    let handles: Vec<ReceiptHandle> = got.iter().map(|d| d.handle.clone()).collect();
    queue.delete_batch(q, &handles).await.unwrap();
}

async fn a_long_poll_wakes_when_a_message_is_sent(b: &Backend) {
    let q = QueueName::Callbacks;
    let poller = {
        let queue = b.queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = queue.receive(q, 10, LONG, Duration::from_secs(20)).await;
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.queue()
        .send_batch(q, vec![outgoing("wake")])
        .await
        .unwrap();
    let (got, waited) = poller.await.unwrap();
    assert_eq!(bodies(&got.unwrap()), set(&["wake"]));
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    // Well before the 20 s wait ends (moto checks for messages once a second or so, and a
    // busy machine adds more).
    assert!(waited < Duration::from_secs(15), "{waited:?}");

    // With nothing sent, it gives up after `wait`.
    let started = Instant::now();
    let got = b.queue().receive(q, 10, LONG, SECOND).await.unwrap();
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

async fn an_oversized_body_is_refused(b: &Backend) {
    let queue = b.queue();
    let big = "x".repeat(256 * 1024 + 1);
    let err = queue
        .send_batch(QueueName::Dispatch, vec![outgoing("fine"), outgoing(&big)])
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::TooLarge(n) if n == big.len()),
        "{err:?}"
    );
    assert!(
        queue
            .receive(QueueName::Dispatch, 10, LONG, SECOND)
            .await
            .unwrap()
            .is_empty(),
        "nothing of a refused batch is sent"
    );
    // The largest allowed body goes through.
    let largest = "y".repeat(256 * 1024);
    queue
        .send_batch(QueueName::Dispatch, vec![outgoing(&largest)])
        .await
        .unwrap();
    let got = queue
        .receive(QueueName::Dispatch, 10, LONG, SECOND)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.len(), largest.len());
}

// ---------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------

async fn secrets_are_stored_read_and_rotated(b: &Backend) {
    let secrets = b.secrets();
    let err = secrets.get("providers/kyivstar").await.unwrap_err();
    assert!(
        matches!(err, SecretError::NotFound(ref n) if n == "providers/kyivstar"),
        "{err:?}"
    );

    secrets
        .put("providers/kyivstar", &Secret::new("s3cret"))
        .await
        .unwrap();
    secrets
        .put("providers/lifecell", &Secret::new("other"))
        .await
        .unwrap();
    assert_eq!(
        secrets.get("providers/kyivstar").await.unwrap().expose(),
        "s3cret"
    );
    secrets
        .put("providers/kyivstar", &Secret::new("rotated"))
        .await
        .unwrap();
    assert_eq!(
        secrets.get("providers/kyivstar").await.unwrap().expose(),
        "rotated",
        "a put replaces what was read before"
    );
    assert_eq!(
        secrets.get("providers/lifecell").await.unwrap().expose(),
        "other"
    );
    // Another instance (a cold start) reads what was stored.
    let again = b.secrets_again.as_ref();
    assert_eq!(
        again.get("providers/kyivstar").await.unwrap().expose(),
        "rotated"
    );
    assert!(matches!(
        again.get("providers/vodafone").await,
        Err(SecretError::NotFound(_))
    ));
}

// ---------------------------------------------------------------------------------------
// What the AWS adapters cost in requests (AWS only: the design's numbers, kept honest)
// ---------------------------------------------------------------------------------------

mod requests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    /// One message with a key is stored in two writes, the key first. Between them (a
    /// crash), the key answers "in progress" for a while, then frees itself for the retry;
    /// a message that cannot be stored releases its key at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_whose_message_never_landed_is_in_flight_then_free() {
        let Some(b) = aws("claims").await else {
            return;
        };
        let store = b.store();
        let dynamo = b.dynamo.clone().expect("an AWS backend");
        let t = tenant();
        let m = message(&t, at(0));
        let key = IdempotencyKey::parse("otp-1").unwrap();
        store
            .insert(std::slice::from_ref(&m), Some(&record(&t, "otp-1")))
            .await
            .unwrap();
        assert!(store.idempotency(&t, &key).await.unwrap().is_some());
        // The crash: the message is gone, the key stays.
        dynamo
            .client()
            .delete_item()
            .table_name(&dynamo.config().messages_table)
            .key(
                "t",
                AttributeValue::S(dynamo.config().message_partition(&t, &m.id)),
            )
            .key("id", AttributeValue::S(m.id.to_string()))
            .send()
            .await
            .unwrap();
        assert!(matches!(
            store.idempotency(&t, &key).await,
            Err(StoreError::IdempotencyKeyInFlight)
        ));
        // The claim window passes.
        let long_ago = (chrono::Utc::now() - TimeDelta::seconds(CLAIM_WINDOW.as_secs() as i64 + 1))
            .timestamp_nanos_opt()
            .unwrap();
        dynamo
            .client()
            .update_item()
            .table_name(&dynamo.config().idempotency_table)
            .key(
                "t",
                AttributeValue::S(dynamo.config().idempotency_partition(&t, "otp-1")),
            )
            .key("k", AttributeValue::S("otp-1".into()))
            .update_expression("SET cl = :c")
            .expression_attribute_values(":c", AttributeValue::N(long_ago.to_string()))
            .send()
            .await
            .unwrap();
        assert!(store.idempotency(&t, &key).await.unwrap().is_none());
        let retry = message(&t, at(1));
        store
            .insert(std::slice::from_ref(&retry), Some(&record(&t, "otp-1")))
            .await
            .unwrap();
        assert!(store.idempotency(&t, &key).await.unwrap().is_some());

        // A message that cannot be stored (its id exists) gives its key back.
        let taken = message(&t, at(2));
        store
            .insert(std::slice::from_ref(&taken), None)
            .await
            .unwrap();
        let err = store
            .insert(std::slice::from_ref(&taken), Some(&record(&t, "otp-2")))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
        let free = IdempotencyKey::parse("otp-2").unwrap();
        assert!(store.idempotency(&t, &free).await.unwrap().is_none());
        b.close().await;
    }

    /// The requests `f` makes, by operation.
    async fn cost<T>(
        counter: &RequestCounter,
        f: impl std::future::Future<Output = T>,
    ) -> (T, Vec<(String, u64)>) {
        counter.reset();
        let out = f.await;
        (out, counter.snapshot().into_iter().collect())
    }

    fn of(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    /// A tenant sending many single messages takes its bucket's tokens and its caps'
    /// allowance in growing blocks, so its two counter items are written a few times, not once
    /// per request; the caps still hold exactly, and an unused block is given back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_tenants_counters_are_written_in_blocks() {
        let Some(b) = aws("leases").await else {
            return;
        };
        let counter = b.requests.clone().expect("an AWS backend counts");
        let counters = b.counters.as_ref();
        let t = counter_tenant();
        let bucket = Bucket::per_second(10_000, 20_000);
        let period = SpendPeriod {
            month: "2026-12".into(),
            day: 3,
            forget_after: Utc::now() + TimeDelta::days(40),
        };
        let (granted, n) = cost(&counter, async {
            let mut granted = 0;
            for _ in 0..400 {
                let now = Utc::now();
                if counters
                    .take_tokens(&t, bucket, 1, now)
                    .await
                    .unwrap()
                    .is_ok()
                {
                    granted += 1;
                }
            }
            granted
        })
        .await;
        assert_eq!(granted, 400);
        let writes: u64 = n.iter().map(|(_, c)| *c).sum();
        assert!(writes < 40, "400 grants cost {n:?}");

        // Spend: 85 kopiykas a message under caps of 1,000,000 (a block grows to 10,000).
        let (charged, n) = cost(&counter, async {
            let mut charged = 0;
            for _ in 0..400 {
                if counters
                    .charge(&t, &period, 85, 1_000_000, 1_000_000)
                    .await
                    .unwrap()
                    == SpendVerdict::Charged
                {
                    charged += 1;
                }
            }
            charged
        })
        .await;
        assert_eq!(charged, 400);
        let writes: u64 = n.iter().map(|(_, c)| *c).sum();
        assert!(writes < 40, "400 charges cost {n:?}");
        let spent = counters.spent(&t, &period).await.unwrap();
        assert!(spent.day >= 400 * 85, "{spent:?}");
        // Once the lease lapses, what it held back is given back with the next charge.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(
            counters
                .charge(&t, &period, 85, 1_000_000, 1_000_000)
                .await
                .unwrap(),
            SpendVerdict::Charged
        );
        let spent = counters.spent(&t, &period).await.unwrap();
        assert_eq!(spent.day, 401 * 85, "{spent:?}");

        // Near a cap, blocks do not fit and each charge asks for exactly its amount: the cap
        // holds to the kopiyka.
        let other = counter_tenant();
        let mut charged = 0;
        loop {
            match counters
                .charge(&other, &period, 85, 8_500, 1_000_000)
                .await
                .unwrap()
            {
                SpendVerdict::Charged => charged += 1,
                verdict => {
                    assert_eq!(verdict, SpendVerdict::DayCapReached);
                    break;
                }
            }
            assert!(charged <= 100);
        }
        assert_eq!(charged, 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_port_call_costs_what_the_design_says() {
        let Some(b) = aws("requests").await else {
            return;
        };
        let counter = b.requests.clone().expect("an AWS backend counts");
        let store = b.store();
        let t = tenant();
        let one = message(&t, at(0));
        let queue = b.queue();

        // A tenant's first message also makes its data key (KMS), stores it wrapped, and
        // reads the tenant's retention: once per tenant, then from memory.
        let (r, n) = cost(&counter, store.insert(&[message(&t, at(0))], None)).await;
        r.unwrap();
        assert_eq!(
            n,
            of(&[
                ("DynamoDB.GetItem", 2),
                ("DynamoDB.PutItem", 2),
                ("KMS.GenerateDataKey", 1)
            ])
        );
        // Intake: one message is one write request, with or without a key.
        let (r, n) = cost(&counter, store.insert(std::slice::from_ref(&one), None)).await;
        r.unwrap();
        assert_eq!(n, of(&[("DynamoDB.PutItem", 1)]));
        let keyed = message(&t, at(0));
        let (r, n) = cost(
            &counter,
            store.insert(std::slice::from_ref(&keyed), Some(&record(&t, "k"))),
        )
        .await;
        r.unwrap();
        assert_eq!(
            n,
            of(&[("DynamoDB.PutItem", 2)]),
            "the key, then the message"
        );
        // A batch of 1,000 with a key: 99 in the closing transaction, the rest 25 a request.
        let batch: Vec<Message> = (0..1000)
            .map(|_| {
                let mut m = message(&t, at(1));
                m.status = Queued;
                m
            })
            .collect();
        let (r, n) = cost(&counter, store.insert(&batch, Some(&record(&t, "batch")))).await;
        r.unwrap();
        assert_eq!(
            n,
            of(&[
                ("DynamoDB.BatchWriteItem", 901usize.div_ceil(25) as u64),
                // The batch marker, in place of 1,000 entries in the `queued` index.
                ("DynamoDB.PutItem", 1),
                ("DynamoDB.TransactWriteItems", 1)
            ])
        );
        let (r, n) = cost(&counter, store.idempotency(&t, &record(&t, "batch").key)).await;
        assert!(r.unwrap().is_some());
        assert_eq!(n, of(&[("DynamoDB.GetItem", 1)]));
        // Ten jobs a request (moto is slow at SQS, so not all 1,000 here).
        let jobs: Vec<Outgoing> = batch[..100]
            .iter()
            .map(|m| outgoing(&m.id.to_string()))
            .collect();
        let (r, n) = cost(&counter, queue.send_batch(QueueName::Dispatch, jobs)).await;
        r.unwrap();
        assert_eq!(n, of(&[("SQS.SendMessageBatch", 10)]));

        // Dispatch: a claim and the provider's answer are one update each, with no read.
        let (got, n) = cost(
            &counter,
            queue.receive(QueueName::Dispatch, 25, LONG, SECOND),
        )
        .await;
        let got = got.unwrap();
        assert_eq!(got.len(), 25);
        assert_eq!(n, of(&[("SQS.ReceiveMessage", 3)]));
        let claims: Vec<Transition> = batch[..25]
            .iter()
            .map(|m| {
                let mut claim = step(m, &[Queued], Sending, 2);
                claim.patch.count_attempt = true;
                claim
            })
            .collect();
        let (r, n) = cost(&counter, store.transition(&claims)).await;
        assert!(r.unwrap().iter().all(Option::is_some));
        assert_eq!(n, of(&[("DynamoDB.UpdateItem", 25)]));
        let sent: Vec<Transition> = batch[..25]
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut sent = step(m, &[Sending], Sent, 3);
                sent.patch.provider = Some("kyivstar".into());
                sent.patch.provider_message_id = Some(format!("ks-{i}"));
                sent
            })
            .collect();
        let (r, n) = cost(&counter, store.transition(&sent)).await;
        assert!(r.unwrap().iter().all(Option::is_some));
        assert_eq!(n, of(&[("DynamoDB.UpdateItem", 25)]));
        let handles: Vec<ReceiptHandle> = got.iter().map(|d| d.handle.clone()).collect();
        let (r, n) = cost(&counter, queue.delete_batch(QueueName::Dispatch, &handles)).await;
        r.unwrap();
        assert_eq!(n, of(&[("SQS.DeleteMessageBatch", 3)]));

        // Receipts: one query per provider id, one update per message, one per change.
        let pids = ["ks-0".to_owned(), "ks-1".to_owned()];
        let (found, n) = cost(&counter, store.find_by_provider_ids("kyivstar", &pids)).await;
        let found = found.unwrap();
        assert!(found.iter().all(Option::is_some));
        assert_eq!(n, of(&[("DynamoDB.Query", 2)]));
        let receipts: Vec<(MessageRef, PartReceipt)> = found
            .iter()
            .flatten()
            .flat_map(|t| {
                [
                    (t.message.clone(), receipt(1, ReceiptState::Enroute, 4)),
                    (t.message.clone(), receipt(1, ReceiptState::Delivered, 5)),
                ]
            })
            .collect();
        let (r, n) = cost(&counter, store.add_receipts(&receipts)).await;
        assert_eq!(r.unwrap()[3].len(), 2);
        assert_eq!(n, of(&[("DynamoDB.UpdateItem", 2)]));
        let delivered = [step(&batch[0], &[Sent], Delivered, 6)];
        let (r, n) = cost(&counter, store.transition(&delivered)).await;
        assert!(r.unwrap()[0].is_some());
        assert_eq!(n, of(&[("DynamoDB.UpdateItem", 1)]));

        // Reads and sweeps: a sweep queries each shard of its index.
        let shards = u64::from(DynamoConfig::with_prefix("x").index_shards);
        let (r, n) = cost(&counter, store.get(&t, &one.id)).await;
        assert!(r.unwrap().is_some());
        assert_eq!(n, of(&[("DynamoDB.GetItem", 1)]));
        let (r, n) = cost(&counter, store.due_scheduled(at(10), 100)).await;
        assert!(r.unwrap().is_empty());
        assert_eq!(n, of(&[("DynamoDB.Query", shards)]));
        let (r, n) = cost(&counter, store.awaiting_receipts("kyivstar", at(1000), 100)).await;
        assert_eq!(r.unwrap().len(), 24);
        assert_eq!(n, of(&[("DynamoDB.Query", shards)]));
        let (r, n) = cost(
            &counter,
            store.sent_past_validity(at(0) + TimeDelta::days(2), 10),
        )
        .await;
        assert_eq!(r.unwrap().len(), 10);
        assert_eq!(n, of(&[("DynamoDB.Query", shards)]));
        // A list queries each of the tenant's write shards (a page of 50 over 8 shards asks
        // each for 9 and, spread as the hash spreads them, needs no second round here).
        let write_shards = u64::from(DynamoConfig::with_prefix("x").write_shards);
        let (r, n) = cost(&counter, store.list(&t, &everything(50))).await;
        assert_eq!(r.unwrap().messages.len(), 50);
        let queries = n.iter().map(|(_, c)| *c).sum::<u64>();
        assert!(
            (write_shards..=2 * write_shards).contains(&queries),
            "{n:?}"
        );
        let (r, n) = cost(&counter, b.tenants().api_key(None, "h")).await;
        assert!(r.unwrap().is_none());
        assert_eq!(n, of(&[("DynamoDB.GetItem", 1)]));

        // Secrets: read once, then served from memory.
        b.secrets().put("signing", &Secret::new("s")).await.unwrap();
        let again = b.secrets_again.as_ref();
        let (r, n) = cost(&counter, async {
            again.get("signing").await?;
            again.get("signing").await
        })
        .await;
        assert_eq!(r.unwrap().expose(), "s");
        assert_eq!(n, of(&[("Secrets Manager.GetSecretValue", 1)]));
        b.close().await;
    }

    /// The console's users: what `shared/src/adapters/dynamo/users.rs` says each call costs,
    /// and a signed-in request two reads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn users_calls_cost_what_their_module_says() {
        use holub_shared::ports::SystemClock;
        use holub_shared::services::Users;

        let Some(b) = aws("userscost").await else {
            return;
        };
        let counter = b.requests.clone().expect("an AWS backend counts");
        let s = b.users.as_ref();
        let t = user_tenant(&b, "Acme").await;
        let olena = console_user(&t, 1, "olena@acme.ua", Role::Owner, true);
        let (r, n) = cost(&counter, s.create(&olena)).await;
        r.unwrap();
        assert_eq!(n, of(&[("DynamoDB.TransactWriteItems", 1)]));
        let (r, n) = cost(&counter, s.get_by_email(&olena.user.email)).await;
        assert!(r.unwrap().is_some());
        assert_eq!(n, of(&[("DynamoDB.GetItem", 2)]));
        let (r, n) = cost(&counter, s.list(&t)).await;
        assert_eq!(r.unwrap().len(), 1);
        assert_eq!(n, of(&[("DynamoDB.Query", 1)]));
        let mut changed = olena.clone();
        changed.sessions_since = at(5);
        changed.version = 2;
        let (r, n) = cost(&counter, s.update(&changed)).await;
        assert_eq!(r.unwrap(), UserWrite::Done);
        assert_eq!(
            n,
            of(&[("DynamoDB.GetItem", 1), ("DynamoDB.TransactWriteItems", 1)])
        );

        let session = SessionRecord {
            token_hash: format!("{:064x}", 42),
            user: olena.user.id.clone(),
            tenant: t.clone(),
            created_at: Utc::now(),
            expires_at: Utc::now() + TimeDelta::hours(12),
        };
        let (r, n) = cost(&counter, s.put_session(&session)).await;
        r.unwrap();
        assert_eq!(n, of(&[("DynamoDB.PutItem", 1)]));
        let (r, n) = cost(&counter, s.session(&session.token_hash, Utc::now())).await;
        assert!(r.unwrap().is_some());
        assert_eq!(n, of(&[("DynamoDB.GetItem", 1)]));
        let (r, n) = cost(&counter, s.delete_session(&session.token_hash)).await;
        r.unwrap();
        assert_eq!(n, of(&[("DynamoDB.DeleteItem", 1)]));

        let window = Duration::from_secs(900);
        let email = &olena.user.email;
        let (r, n) = cost(&counter, s.record_failure(email, at(10), window)).await;
        assert_eq!(r.unwrap().count, 1);
        assert_eq!(
            n,
            of(&[("DynamoDB.PutItem", 1), ("DynamoDB.UpdateItem", 1)]),
            "the window opens"
        );
        let (r, n) = cost(&counter, s.record_failure(email, at(11), window)).await;
        assert_eq!(r.unwrap().count, 2);
        assert_eq!(n, of(&[("DynamoDB.UpdateItem", 1)]));
        let (r, n) = cost(&counter, s.failures(email, at(12))).await;
        assert_eq!(r.unwrap().map(|w| w.count), Some(2));
        assert_eq!(n, of(&[("DynamoDB.GetItem", 1)]));
        let (r, n) = cost(&counter, s.clear_failures(email)).await;
        r.unwrap();
        assert_eq!(n, of(&[("DynamoDB.DeleteItem", 1)]));

        // A console request reads its session and its user; a sign-in with no failures
        // behind it reads three items and writes the session.
        let users = Users::new(b.users.clone(), b.tenants.clone(), Arc::new(SystemClock));
        let taras = users
            .create(
                &t,
                Email::parse("taras@acme.ua").unwrap(),
                Role::Sender,
                "a long password",
                &Origin::operator(),
            )
            .await
            .unwrap();
        let (signed, n) = cost(&counter, users.sign_in("taras@acme.ua", "a long password")).await;
        let signed = signed.unwrap();
        assert_eq!(n, of(&[("DynamoDB.GetItem", 3), ("DynamoDB.PutItem", 1)]));
        let (r, n) = cost(&counter, users.session(&signed.token)).await;
        assert_eq!(r.unwrap().map(|s| s.user), Some(taras.id.clone()));
        assert_eq!(n, of(&[("DynamoDB.GetItem", 2)]));
        // Deleting a user who is not an active owner: a read and a transaction.
        let (r, n) = cost(&counter, s.delete(&t, &taras.id)).await;
        assert_eq!(r.unwrap(), UserWrite::Done);
        assert_eq!(
            n,
            of(&[("DynamoDB.GetItem", 1), ("DynamoDB.TransactWriteItems", 1)])
        );
    }
}

// ---------------------------------------------------------------------------------------
// Campaigns
// ---------------------------------------------------------------------------------------

fn campaign(t: &TenantId, n: i64) -> Campaign {
    use holub_shared::domain::campaign::{CampaignEstimate, Expansion};
    Campaign {
        id: CampaignId::generate(at(n)),
        tenant_id: t.clone(),
        name: CampaignName::parse(&format!("Розпродаж {n}")).unwrap(),
        template_id: TemplateId::generate(at(n)),
        template_version: 2,
        category: Category::Marketing,
        lists: vec![ListName::parse("VIP").unwrap()],
        from: SenderId::parse("Holub").unwrap(),
        start_at: Some(at(n + 3600)),
        pace: Some(Pace::per_minute(120).unwrap()),
        track_links: true,
        validity: Some(3600),
        estimate: CampaignEstimate {
            recipients: 10,
            segments: 2,
            cost_kopiyky: 1_500,
        },
        state: CampaignState::Draft,
        stopped_by: None,
        expansion: Expansion::default(),
        run: 0,
        opted_out: 0,
        created_at: at(n),
        updated_at: at(n),
        started_at: None,
        finished_at: None,
        version: 1,
    }
}

async fn campaigns_are_stored_over_their_version_and_listed_newest_first(b: &Backend) {
    let store = b.campaigns.as_ref();
    let (t, other) = (tenant(), tenant());
    assert!(store.list(&t, None, 10).await.unwrap().campaigns.is_empty());
    let mut all = Vec::new();
    for n in 0..5 {
        let c = campaign(&t, n);
        store.put(&c).await.unwrap();
        all.push(c);
    }
    assert_eq!(
        store.get(&t, &all[0].id).await.unwrap(),
        Some(all[0].clone())
    );
    assert_eq!(store.get(&other, &all[0].id).await.unwrap(), None);
    // The same id again: refused.
    assert!(matches!(
        store.put(&all[0]).await,
        Err(StoreError::AlreadyExists)
    ));

    // A change over the version it was made from; a stale one is refused, whatever it says.
    let mut started = all[1].clone();
    started.start(at(10)).unwrap();
    store.put(&started).await.unwrap();
    let mut stale = all[1].clone();
    stale.pause(at(11), None).unwrap_err();
    stale.cancel(at(11)).unwrap();
    assert!(matches!(
        store.put(&stale).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get(&t, &started.id).await.unwrap(),
        Some(started.clone())
    );
    let mut ghost = campaign(&t, 9);
    ghost.version = 2;
    assert!(matches!(store.put(&ghost).await, Err(StoreError::NotFound)));
    // Another tenant's campaign of the same id is another campaign.
    let mut theirs = all[2].clone();
    theirs.tenant_id = other.clone();
    theirs.version = 2;
    assert!(matches!(
        store.put(&theirs).await,
        Err(StoreError::NotFound)
    ));

    // Opt-outs are counted apart from the version, and kept by later changes.
    store.count_opt_out(&t, &started.id).await.unwrap();
    store.count_opt_out(&t, &started.id).await.unwrap();
    store.count_opt_out(&other, &started.id).await.unwrap();
    store
        .count_opt_out(&t, &CampaignId::generate(at(0)))
        .await
        .unwrap();
    let mut paused = store.get(&t, &started.id).await.unwrap().unwrap();
    assert_eq!((paused.opted_out, paused.version), (2, 2));
    paused
        .pause(at(12), Some("daily_spend_cap_reached"))
        .unwrap();
    store.put(&paused).await.unwrap();
    let read = store.get(&t, &started.id).await.unwrap().unwrap();
    assert_eq!(read.opted_out, 2);
    assert_eq!(read.stopped_by.as_deref(), Some("daily_spend_cap_reached"));
    all[1] = read;

    // Pages, newest first (the index may lag a moment on DynamoDB).
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.clear();
        let mut before = None;
        loop {
            let page = store.list(&t, before.as_ref(), 2).await.unwrap();
            ids.extend(page.campaigns.iter().map(|c| c.id.clone()));
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        if ids.len() == all.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let newest_first: Vec<CampaignId> = all.iter().rev().map(|c| c.id.clone()).collect();
    assert_eq!(ids, newest_first);
    let page = store.list(&t, None, 100).await.unwrap();
    assert_eq!(page.campaigns[3], all[1]);
    assert!(
        store
            .list(&other, None, 10)
            .await
            .unwrap()
            .campaigns
            .is_empty()
    );

    // The contacts on a list, counted (for a campaign's estimate).
    let c = b.contacts.as_ref();
    for n in 0..3 {
        c.put(&contact(&t, n, &["VIP"])).await.unwrap();
    }
    c.put(&contact(&t, 5, &["Інші"])).await.unwrap();
    let vip = ListName::parse("VIP").unwrap();
    let mut counted = 0;
    for _ in 0..20 {
        counted = c.count(&t, &vip).await.unwrap();
        if counted == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 3);
    assert_eq!(c.count(&other, &vip).await.unwrap(), 0);
}

/// Leases of a provider's grants from two callers at once, at times a little apart: each
/// slot is filled and never overfilled, grants in any window of a second and the margin
/// never pass the limit, a second's grants are booked at most, and providers are apart.
async fn provider_grants_fill_each_slot_and_never_pass_the_limit(b: &Backend) {
    let limits = b.provider_limits.as_ref();
    let rate = ProviderRate::per_second(20);
    let provider = format!("p-{}", unique("grants"));
    let start = Utc::now();
    let mut grants: Vec<(DateTime<Utc>, u32)> = Vec::new();
    let mut waited = false;
    for step in 0..30i64 {
        let now = start + TimeDelta::milliseconds(step * 40);
        let (x, y) = tokio::join!(
            limits.lease(&provider, rate, 3, now),
            limits.lease(&provider, rate, 1, now),
        );
        for leased in [x.unwrap(), y.unwrap()] {
            match leased {
                Leased::Granted {
                    grants: n,
                    from,
                    until,
                } => {
                    assert!((1..=3).contains(&n), "{n}");
                    assert!(until > from && until >= now, "{from} {until} {now}");
                    assert!(
                        from <= now + TimeDelta::seconds(1),
                        "booked {from} at {now}"
                    );
                    grants.push((from, n));
                }
                Leased::Wait(wait) => {
                    assert!(wait <= Duration::from_secs(2), "{wait:?}");
                    waited = true;
                }
            }
        }
    }
    assert!(waited, "booking stops at the horizon");
    grants.sort();
    let window = TimeDelta::milliseconds(1050);
    for (i, (from, _)) in grants.iter().enumerate() {
        let n: u32 = grants[i..]
            .iter()
            .take_while(|(t, _)| *t - *from < window)
            .map(|(_, n)| n)
            .sum();
        assert!(n <= 20, "{n} grants within a window from {from}");
    }
    // Both callers together booked every slot they reached: 20 a window.
    let total: u32 = grants.iter().map(|(_, n)| n).sum();
    let span = grants.last().unwrap().0 - grants[0].0;
    let expected = 20.0 * (span.num_milliseconds() as f64 / 1050.0);
    assert!(f64::from(total) >= expected, "{total} grants over {span}");
    // Another provider has its own.
    assert!(matches!(
        limits
            .lease(&format!("{provider}-other"), rate, 2, start)
            .await
            .unwrap(),
        Leased::Granted { grants: 2, .. }
    ));
}

/// A breaker opened by one instance is seen by all, later openings win, one caller takes
/// the trial, and it is closed only under the opening it was tried for.
async fn a_provider_breaker_is_shared_tried_once_and_closed(b: &Backend) {
    let limits = b.provider_limits.as_ref();
    let provider = format!("p-{}", unique("breaker"));
    let now = Utc::now();
    let at = |s: i64| now + TimeDelta::seconds(s);
    assert_eq!(limits.breaker(&provider).await.unwrap(), Outage::default());
    assert!(!limits.take_trial(&provider, now, at(30)).await.unwrap());
    let broke = OutageReason {
        code: holub_shared::domain::FailureCode::InsufficientBalance,
        message: "TurboSMS answered 203 REQUIRED_BALANCE".into(),
    };
    limits
        .open(&provider, at(60), Some(broke.clone()))
        .await
        .unwrap();
    // A transient failure elsewhere does not cut the account's cooldown short.
    limits.open(&provider, at(10), None).await.unwrap();
    let outage = limits.breaker(&provider).await.unwrap();
    assert_eq!(outage.open_until, Some(at(60)));
    assert_eq!(outage.reason, Some(broke));
    assert!(outage.is_open(at(59)));
    // Its time up, one of two callers takes the trial.
    assert!(!limits.take_trial(&provider, at(59), at(90)).await.unwrap());
    let (x, y) = tokio::join!(
        limits.take_trial(&provider, at(61), at(90)),
        limits.take_trial(&provider, at(61), at(90)),
    );
    assert_eq!(u8::from(x.unwrap()) + u8::from(y.unwrap()), 1, "one trial");
    assert_eq!(
        limits.breaker(&provider).await.unwrap().trial_until,
        Some(at(90))
    );
    // A trial holder that vanished: another takes it after the hold.
    assert!(!limits.take_trial(&provider, at(80), at(120)).await.unwrap());
    assert!(limits.take_trial(&provider, at(91), at(120)).await.unwrap());
    // Closing under another opening changes nothing; under its own, it closes.
    limits.close(&provider, at(61)).await.unwrap();
    assert_eq!(
        limits.breaker(&provider).await.unwrap().open_until,
        Some(at(60))
    );
    limits.close(&provider, at(60)).await.unwrap();
    assert_eq!(limits.breaker(&provider).await.unwrap(), Outage::default());
    // A failed trial opens it again, with no reason left over.
    limits.open(&provider, at(100), None).await.unwrap();
    let outage = limits.breaker(&provider).await.unwrap();
    assert_eq!((outage.open_until, outage.reason), (Some(at(100)), None));
}

/// A campaign over the backend's real ports, its jobs taken from the real queue: every
/// contact with consent gets exactly one message, whatever is repeated — a job handed out
/// twice, an old job again, and a chunk whose messages were stored while the campaign's
/// record did not move on (a crash between the two).
async fn a_campaign_expands_each_contact_once_whatever_is_repeated(b: &Backend) {
    use holub_shared::runtime::{Consumer, Finished, Holub, Ports, Settings, Target, settle};
    use holub_shared::services::campaigns::CampaignRequest;
    use holub_shared::services::jobs::{self, CampaignJob};

    let ports = Ports {
        store: b.store.clone(),
        tenants: b.tenants.clone(),
        queue: b.queue.clone(),
        secrets: b.secrets.clone(),
        replays: b.replays.clone(),
        counters: b.counters.clone(),
        provider_limits: b.provider_limits.clone(),
        stats: b.stats.clone(),
        consent: b.consent.clone(),
        contacts: b.contacts.clone(),
        templates: b.templates.clone(),
        campaigns: b.campaigns.clone(),
        users: b.users.clone(),
        clock: Arc::new(holub_shared::ports::SystemClock),
    };
    let settings = Settings::from_values(["--short-link-base", "https://go.holub.ua"]).unwrap();
    let holub = Holub::new(ports, settings, Target::Embedded);
    let t = tenant();
    let acme = Tenant {
        id: t.clone(),
        name: "Acme".into(),
        created_at: Utc::now(),
    };
    b.tenants()
        .create_tenant(
            &acme,
            &key(&t, "hash-cmp", 0),
            &audit(&t, 0, AuditAction::TenantCreate),
        )
        .await
        .unwrap();
    // Chunks of 4 (the burst), marketing at any hour.
    let mut limits = TenantLimits::defaults_for(true);
    limits.set("burst", "4").unwrap();
    limits.set("marketing_window", "00:00-24:00").unwrap();
    b.tenants()
        .put_limits(&t, &limits, &audit(&t, 1, AuditAction::SettingsUpdate))
        .await
        .unwrap();
    let template = TemplateVersion {
        id: TemplateId::generate(Utc::now()),
        tenant_id: t.clone(),
        version: 1,
        name: TemplateName::parse("Розпродаж").unwrap(),
        text: TemplateText::parse("{{name}}, знижка 20% до неділі!").unwrap(),
        category: Category::Marketing,
        created_at: Utc::now(),
    };
    b.templates.put(&template).await.unwrap();
    // 10 on "A", 4 on "B" of which 2 are also on "A"; no consent for 2 of them.
    let mut contacts = Vec::new();
    for n in 0..12 {
        let lists: &[&str] = match n {
            0..=7 => &["A"],
            8 | 9 => &["A", "B"],
            _ => &["B"],
        };
        let mut one = contact(&t, n, lists);
        one.id = ContactId::generate(Utc::now());
        b.contacts.put(&one).await.unwrap();
        if n != 3 && n != 11 {
            b.consent
                .record(&t, &one.phone, &consent(0, 0, true))
                .await
                .unwrap();
        }
        contacts.push(one);
    }
    let request: CampaignRequest = serde_json::from_value(json!({
        "name": "Весна", "template_id": template.id.to_string(), "lists": ["A", "B"],
        "from": "Holub",
    }))
    .unwrap();
    let mut made = None;
    for _ in 0..20 {
        // The index of list places may lag a moment on DynamoDB.
        let view = holub.campaigns.create(&t, request.clone()).await.unwrap();
        if view.estimate.recipients == 14 {
            made = Some(view);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let made = made.expect("the estimate counts the contacts on both lists");
    assert_eq!(made.estimate.segments_per_message, 1);
    let id: CampaignId = made.id.parse().unwrap();
    holub.campaigns.start(&t, &id).await.unwrap();

    let consumer: Arc<dyn Consumer> = holub.campaigns.clone();
    let mut seen: Vec<Delivery> = Vec::new();
    let mut rewound = false;
    for _ in 0..100 {
        let deliveries = b
            .queue()
            .receive(
                QueueName::Campaigns,
                10,
                Duration::from_secs(30),
                Duration::ZERO,
            )
            .await
            .unwrap();
        if deliveries.is_empty() {
            let done = holub.campaigns.get(&t, &id).await.unwrap();
            if done.state == holub_shared::domain::CampaignState::Completed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // Each job twice (a redelivery), and every job seen so far again.
        let again: Vec<Delivery> = deliveries.iter().chain(seen.iter()).cloned().collect();
        let outcomes = consumer.consume(&deliveries).await;
        let replayed = consumer.consume(&again).await;
        assert!(
            replayed
                .iter()
                .all(|o| *o == holub_shared::services::JobOutcome::Done)
        );
        settle(
            b.queue(),
            QueueName::Campaigns,
            &deliveries,
            &outcomes,
            Finished::Delete,
        )
        .await;
        seen.extend(deliveries);
        // Once: the campaign's record set back over a chunk whose messages were stored,
        // as if the process died between the two; its job comes back.
        if !rewound && seen.len() == 2 {
            rewound = true;
            let mut back = b.campaigns.get(&t, &id).await.unwrap().unwrap();
            let job: CampaignJob = jobs::parse(&seen[1].body).unwrap();
            assert_eq!(back.expansion.chunk, 2);
            let before = back.clone();
            back.expansion.chunk = 1;
            back.expansion.list = 0;
            back.expansion.after = Some(contacts[3].id.clone());
            back.expansion.expanded = 3;
            back.expansion.skipped = [("consent_missing".to_owned(), 1)].into();
            back.version += 1;
            b.campaigns.put(&back).await.unwrap();
            assert_eq!(job.chunk, 1);
            b.queue()
                .send_batch(QueueName::Campaigns, vec![jobs::outgoing(&job)])
                .await
                .unwrap();
            assert_ne!(before.expansion, back.expansion);
        }
    }
    assert!(rewound, "the campaign ran at least two chunks");
    let done = holub.campaigns.get(&t, &id).await.unwrap();
    assert_eq!(done.state, holub_shared::domain::CampaignState::Completed);
    assert_eq!(done.progress.expanded, 10, "{done:?}");
    assert_eq!(done.progress.skipped_no_consent, 2);
    assert_eq!(done.progress.skipped.get("consent_missing"), Some(&2));

    // Exactly one message per contact with consent, its placeholder filled.
    let mut messages = Vec::new();
    let mut after = None;
    loop {
        let page = b
            .store()
            .list(
                &t,
                &ListQuery {
                    batch_id: Some(id.batch()),
                    after,
                    limit: 100,
                    ..ListQuery::default()
                },
            )
            .await
            .unwrap();
        messages.extend(page.messages);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut to: Vec<&str> = messages.iter().map(|m| m.to.as_e164()).collect();
    to.sort_unstable();
    let mut expected: Vec<&str> = contacts
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != 3 && *n != 11)
        .map(|(_, c)| c.phone.as_e164())
        .collect();
    expected.sort_unstable();
    assert_eq!(to, expected);
    for m in &messages {
        assert!(m.text.contains(", знижка 20% до неділі!"), "{}", m.text);
        assert!(m.opt_out.is_some());
        assert_eq!(m.status, MessageStatus::Queued);
    }
    // A started campaign cannot start again.
    assert!(holub.campaigns.start(&t, &id).await.is_err());
}

// ---------------------------------------------------------------------------------------
// Console users
// ---------------------------------------------------------------------------------------

/// A tenant of its own for a users test, stored (users need their tenant to exist).
async fn user_tenant(b: &Backend, name: &str) -> TenantId {
    let t = tenant();
    let record = Tenant {
        id: t.clone(),
        name: name.into(),
        created_at: at(0),
    };
    let hash = format!("hash-users-{t}");
    b.tenants()
        .create_tenant(
            &record,
            &key(&t, &hash, 0),
            &audit(&t, 0, AuditAction::TenantCreate),
        )
        .await
        .unwrap();
    t
}

/// A user of `t` made at second `n`: an owner or another role, with a password or invited.
fn console_user(t: &TenantId, n: i64, email: &str, role: Role, password: bool) -> UserRecord {
    UserRecord {
        user: ConsoleUser {
            id: UserId::generate(at(n)),
            tenant: t.clone(),
            email: Email::parse(email).unwrap(),
            role,
            created_at: at(n),
            pending: !password,
        },
        password: password.then(|| {
            PasswordHash::from_phc(format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash{n}"))
        }),
        invitation: (!password).then(|| Invitation {
            token_hash: format!("{n:064x}"),
            expires_at: at(n + 7 * 24 * 3600),
        }),
        sessions_since: at(n),
        version: 1,
    }
}

async fn users_are_unique_by_email_across_tenants(b: &Backend) {
    let s = b.users.as_ref();
    let (acme, other) = (user_tenant(b, "Acme").await, user_tenant(b, "Other").await);
    let olena = console_user(&acme, 1, "olena@acme.ua", Role::Owner, true);
    s.create(&olena).await.unwrap();
    // Every field back, by address and by id.
    let address = Email::parse("olena@acme.ua").unwrap();
    assert_eq!(s.get_by_email(&address).await.unwrap(), Some(olena.clone()));
    assert_eq!(
        s.get(&acme, &olena.user.id).await.unwrap(),
        Some(olena.clone())
    );

    // The address again, in this tenant or another, or the id again: refused, nothing
    // written.
    for twin in [
        console_user(&acme, 2, "olena@acme.ua", Role::Viewer, false),
        console_user(&other, 3, "olena@acme.ua", Role::Owner, true),
        UserRecord {
            user: ConsoleUser {
                email: Email::parse("another@acme.ua").unwrap(),
                ..olena.user.clone()
            },
            ..olena.clone()
        },
    ] {
        assert!(matches!(
            s.create(&twin).await,
            Err(StoreError::AlreadyExists)
        ));
    }
    assert_eq!(s.get_by_email(&address).await.unwrap(), Some(olena.clone()));
    let another = Email::parse("another@acme.ua").unwrap();
    assert_eq!(s.get_by_email(&another).await.unwrap(), None);
    assert_eq!(s.list(&other).await.unwrap(), Vec::new());

    // A tenant that does not exist takes no user.
    let nowhere = console_user(&tenant(), 4, "nobody@acme.ua", Role::Owner, true);
    assert!(matches!(
        s.create(&nowhere).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.get_by_email(&nowhere.user.email).await.unwrap(), None);
    // An invited user round-trips too: pending, with the invitation.
    let invited = console_user(&other, 5, "Taras@Other.ua", Role::Sender, false);
    s.create(&invited).await.unwrap();
    let found = s.get_by_email(&invited.user.email).await.unwrap().unwrap();
    assert!(found.user.pending);
    assert_eq!(found, invited);
}

async fn users_are_found_and_listed_within_their_tenant(b: &Backend) {
    let s = b.users.as_ref();
    let (acme, other) = (user_tenant(b, "Acme").await, user_tenant(b, "Other").await);
    let mut ours = Vec::new();
    for (n, role) in [Role::Owner, Role::Sender, Role::Viewer]
        .into_iter()
        .enumerate()
    {
        let n = i64::try_from(n).unwrap();
        let user = console_user(&acme, n, &format!("user{n}@acme.ua"), role, n != 2);
        s.create(&user).await.unwrap();
        ours.push(user);
    }
    let theirs = console_user(&other, 10, "boss@other.ua", Role::Owner, true);
    s.create(&theirs).await.unwrap();

    // Oldest first; each tenant its own.
    assert_eq!(s.list(&acme).await.unwrap(), ours);
    assert_eq!(s.list(&other).await.unwrap(), vec![theirs.clone()]);
    assert_eq!(s.list(&tenant()).await.unwrap(), Vec::new());
    // By id only within the tenant; by address from anywhere (sign-in names no tenant).
    assert_eq!(s.get(&acme, &theirs.user.id).await.unwrap(), None);
    assert_eq!(s.get(&other, &ours[0].user.id).await.unwrap(), None);
    assert_eq!(s.get(&acme, &UserId::generate(at(0))).await.unwrap(), None);
    assert_eq!(
        s.get_by_email(&theirs.user.email).await.unwrap(),
        Some(theirs)
    );
}

async fn users_change_over_their_version_and_keep_an_active_owner(b: &Backend) {
    let s = b.users.as_ref();
    let acme = user_tenant(b, "Acme").await;
    let olena = console_user(&acme, 1, "olena@acme.ua", Role::Owner, true);
    let taras = console_user(&acme, 2, "taras@acme.ua", Role::Owner, false);
    s.create(&olena).await.unwrap();
    s.create(&taras).await.unwrap();

    // The only active owner stays one (an invited owner does not count).
    let mut demoted = olena.clone();
    demoted.user.role = Role::Viewer;
    demoted.version = 2;
    assert_eq!(s.update(&demoted).await.unwrap(), UserWrite::LastOwner);
    assert_eq!(
        s.delete(&acme, &olena.user.id).await.unwrap(),
        UserWrite::LastOwner
    );
    assert_eq!(
        s.get(&acme, &olena.user.id).await.unwrap(),
        Some(olena.clone())
    );

    // Taras accepts: a password, no invitation. Every changeable field is stored; the
    // address and the creation are not changed by an update.
    let mut accepted = taras.clone();
    accepted.password = Some(PasswordHash::from_phc(
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$new",
    ));
    accepted.invitation = None;
    accepted.user.pending = false;
    accepted.sessions_since = at(50);
    accepted.version = 2;
    let mut sneaky = accepted.clone();
    sneaky.user.email = Email::parse("elsewhere@acme.ua").unwrap();
    sneaky.user.created_at = at(99);
    assert_eq!(s.update(&sneaky).await.unwrap(), UserWrite::Done);
    assert_eq!(
        s.get(&acme, &taras.user.id).await.unwrap(),
        Some(accepted.clone())
    );
    let elsewhere = Email::parse("elsewhere@acme.ua").unwrap();
    assert_eq!(s.get_by_email(&elsewhere).await.unwrap(), None);
    // The same version again: stale, nothing written.
    let mut stale = accepted.clone();
    stale.user.role = Role::Sender;
    assert_eq!(s.update(&stale).await.unwrap(), UserWrite::Stale);
    assert_eq!(
        s.get(&acme, &taras.user.id).await.unwrap(),
        Some(accepted.clone())
    );

    // Two active owners now: either may go, not both.
    assert_eq!(s.update(&demoted).await.unwrap(), UserWrite::Done);
    assert_eq!(
        s.get(&acme, &olena.user.id).await.unwrap(),
        Some(demoted.clone())
    );
    let mut last = accepted.clone();
    last.user.role = Role::Sender;
    last.version = 3;
    assert_eq!(s.update(&last).await.unwrap(), UserWrite::LastOwner);
    assert_eq!(
        s.delete(&acme, &taras.user.id).await.unwrap(),
        UserWrite::LastOwner
    );
    // Olena an owner again; then Taras may go, and his address is free.
    let mut promoted = demoted.clone();
    promoted.user.role = Role::Owner;
    promoted.version = 3;
    assert_eq!(s.update(&promoted).await.unwrap(), UserWrite::Done);
    assert_eq!(
        s.delete(&acme, &taras.user.id).await.unwrap(),
        UserWrite::Done
    );
    assert_eq!(s.get(&acme, &taras.user.id).await.unwrap(), None);
    assert_eq!(s.get_by_email(&taras.user.email).await.unwrap(), None);
    assert_eq!(s.list(&acme).await.unwrap(), vec![promoted.clone()]);
    assert_eq!(
        s.delete(&acme, &taras.user.id).await.unwrap(),
        UserWrite::NotFound
    );
    let mut gone = accepted.clone();
    gone.version = 3;
    assert_eq!(s.update(&gone).await.unwrap(), UserWrite::NotFound);
    let again = console_user(&acme, 3, "taras@acme.ua", Role::Viewer, true);
    s.create(&again).await.unwrap();

    // Another tenant cannot reach them.
    let other = user_tenant(b, "Other").await;
    assert_eq!(
        s.delete(&other, &promoted.user.id).await.unwrap(),
        UserWrite::NotFound
    );
    let mut foreign = promoted.clone();
    foreign.user.tenant = other.clone();
    foreign.version = 4;
    assert_eq!(s.update(&foreign).await.unwrap(), UserWrite::NotFound);
    assert_eq!(s.list(&other).await.unwrap(), Vec::new());
    // A user who is not an active owner goes without a count to check.
    assert_eq!(
        s.delete(&acme, &again.user.id).await.unwrap(),
        UserWrite::Done
    );
}

async fn an_erased_tenants_users_are_removed_and_their_addresses_freed(b: &Backend) {
    let s = b.users.as_ref();
    let (acme, other) = (user_tenant(b, "Acme").await, user_tenant(b, "Other").await);
    let olena = console_user(&acme, 1, "olena@acme.ua", Role::Owner, true);
    let taras = console_user(&acme, 2, "taras@acme.ua", Role::Sender, false);
    let ivan = console_user(&other, 3, "ivan@other.ua", Role::Owner, true);
    for user in [&olena, &taras, &ivan] {
        s.create(user).await.unwrap();
    }
    assert_eq!(s.erase_tenant(&acme).await.unwrap(), 2);
    assert_eq!(s.list(&acme).await.unwrap(), Vec::new());
    for gone in [&olena, &taras] {
        assert_eq!(s.get_by_email(&gone.user.email).await.unwrap(), None);
        assert_eq!(s.get(&acme, &gone.user.id).await.unwrap(), None);
    }
    // The other tenant keeps its own; an address freed can be anyone's again.
    assert_eq!(s.list(&other).await.unwrap(), vec![ivan.clone()]);
    assert_eq!(
        s.get_by_email(&ivan.user.email).await.unwrap(),
        Some(ivan.clone())
    );
    let again = console_user(&other, 4, "olena@acme.ua", Role::Viewer, false);
    s.create(&again).await.unwrap();
    // Nothing left to erase the second time.
    assert_eq!(s.erase_tenant(&acme).await.unwrap(), 0);
}

async fn users_sessions_are_kept_until_they_expire_or_end(b: &Backend) {
    let s = b.users.as_ref();
    let acme = user_tenant(b, "Acme").await;
    let olena = console_user(&acme, 1, "olena@acme.ua", Role::Owner, true);
    s.create(&olena).await.unwrap();
    let session = |n: i64, hours: i64| SessionRecord {
        token_hash: format!("{:064x}", 1000 + n),
        user: olena.user.id.clone(),
        tenant: acme.clone(),
        created_at: at(n),
        expires_at: at(n + hours * 3600),
    };
    let first = session(10, 12);
    let second = session(20, 12);
    s.put_session(&first).await.unwrap();
    s.put_session(&second).await.unwrap();
    assert!(matches!(
        s.put_session(&first).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        s.session(&first.token_hash, at(11)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        s.session(&format!("{:064x}", 7), at(11)).await.unwrap(),
        None
    );

    // Expired: absent, whether or not the store has deleted it yet.
    let end = first.expires_at;
    assert_eq!(
        s.session(&first.token_hash, end - TimeDelta::nanoseconds(1))
            .await
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(s.session(&first.token_hash, end).await.unwrap(), None);
    assert_eq!(
        s.session(&second.token_hash, end).await.unwrap(),
        Some(second.clone())
    );
    // A session made after the first expired (a store may sweep that one then; when is
    // its own) leaves the second alone.
    let third = session(12 * 3600 + 15, 12);
    s.put_session(&third).await.unwrap();
    assert_eq!(
        s.session(&second.token_hash, at(12 * 3600 + 19))
            .await
            .unwrap(),
        Some(second.clone())
    );

    // Ended: gone at once; ending it again is fine.
    s.delete_session(&second.token_hash).await.unwrap();
    assert_eq!(s.session(&second.token_hash, at(21)).await.unwrap(), None);
    s.delete_session(&second.token_hash).await.unwrap();
    assert_eq!(
        s.session(&third.token_hash, at(12 * 3600 + 16))
            .await
            .unwrap(),
        Some(third)
    );
}

async fn users_failed_sign_ins_are_counted_in_a_window(b: &Backend) {
    let s = b.users.as_ref();
    let window = Duration::from_secs(15 * 60);
    let olena = Email::parse(&format!("olena-{}@acme.ua", unique("f"))).unwrap();
    let other = Email::parse(&format!("other-{}@acme.ua", unique("f"))).unwrap();
    assert_eq!(s.failures(&olena, at(0)).await.unwrap(), None);

    // The first failure opens a window of 15 minutes; the next ones count in it.
    let ends = at(100) + TimeDelta::minutes(15);
    for (n, second) in [100, 160, 400].into_iter().enumerate() {
        let counted = s.record_failure(&olena, at(second), window).await.unwrap();
        let want = FailureWindow {
            count: u32::try_from(n + 1).unwrap(),
            ends_at: ends,
        };
        assert_eq!(counted, want);
        assert_eq!(s.failures(&olena, at(second)).await.unwrap(), Some(want));
    }
    assert_eq!(s.failures(&other, at(400)).await.unwrap(), None);
    assert_eq!(
        s.failures(&olena, ends - TimeDelta::nanoseconds(1))
            .await
            .unwrap()
            .map(|w| w.count),
        Some(3)
    );
    // Closed: nothing counted; the next failure opens a new window.
    assert_eq!(s.failures(&olena, ends).await.unwrap(), None);
    let reopened = s.record_failure(&olena, ends, window).await.unwrap();
    assert_eq!(
        reopened,
        FailureWindow {
            count: 1,
            ends_at: ends + TimeDelta::minutes(15),
        }
    );

    // Cleared (a sign-in succeeded): nothing counted; the address's next failure is the
    // first of a new window. Another address's count is its own.
    s.record_failure(&other, at(500), window).await.unwrap();
    s.clear_failures(&olena).await.unwrap();
    assert_eq!(s.failures(&olena, ends).await.unwrap(), None);
    s.clear_failures(&olena).await.unwrap();
    let fresh = s
        .record_failure(&olena, ends + TimeDelta::seconds(1), window)
        .await
        .unwrap();
    assert_eq!(fresh.count, 1);
    assert_eq!(
        s.failures(&other, at(500)).await.unwrap().map(|w| w.count),
        Some(1)
    );
}
