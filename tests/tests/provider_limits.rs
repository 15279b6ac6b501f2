//! A provider's messages-per-second limit held across several dispatch instances at once:
//! each instance has its own gateway, its own store client (its own connections) and its own
//! breaker cache, as separate Lambda instances do, and shares only the store (DynamoDB in
//! moto, or one SQLite file opened by several backends as several `holub serve` would). The
//! provider is a TurboSMS simulator that records when every message reached it; in no
//! one-second window may it see more than the limit, and a backlog must use the limit.
//!
//! The instances are tasks of this process rather than processes: what they share is only
//! what separate processes would share (the store and the provider), and tasks start in
//! milliseconds on a busy machine where a fleet of processes under the Lambda harness takes
//! seconds. (Only the DynamoDB adapter's guess of a slot's state is per process; a wrong
//! guess costs a second write, never a grant.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use holub_shared::adapters::aws::{
    AwsBackend, AwsClients, AwsConfig, Credentials, Region, sdk_config_loader,
};
use holub_shared::adapters::dynamo::{DynamoConfig, create_tables};
use holub_shared::adapters::kms::create_master_key;
use holub_shared::adapters::providers;
use holub_shared::adapters::secrets_manager::SecretsConfig;
use holub_shared::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
use holub_shared::adapters::sqs::create_queues;
use holub_shared::domain::{Encoding, MessageId, PhoneNumber, SenderId, TenantId};
use holub_shared::ports::{OutboundSms, ProviderLimits, Secret};
use holub_shared::services::gateway::{BreakerConfig, Gateway, Member, Routed};
use holub_simulator::providers::core::Submissions;
use holub_simulator::providers::{self as sims, SimSettings};
use holub_tests::TempDir;
use serde_json::json;

const TOKEN: &str = "turbo-limits-token";
/// The provider's limit, messages a second.
const LIMIT: u32 = 20;
/// The backlog: enough for several seconds at the limit.
const BACKLOG: usize = 200;
const INSTANCES: usize = 4;
/// Messages one instance takes at a time (an SQS batch).
const BATCH: usize = 10;

async fn simulator() -> String {
    let settings = SimSettings {
        credentials: json!({"token": TOKEN}),
        receipt_delay: Duration::from_secs(3600),
        delivered_ratio: 1.0,
        ..SimSettings::default()
    };
    let addr = sims::start("turbosms", settings)
        .await
        .expect("the simulator starts");
    format!("http://{addr}")
}

/// One instance's gateway to the simulator, its limits held in `limits`.
fn gateway(sim: &str, limits: Arc<dyn ProviderLimits>) -> Gateway {
    let built = providers::build(
        "turbosms",
        "turbo",
        json!({"base_url": sim, "timeout_ms": 10000}),
        &Secret::new(json!({"token": TOKEN}).to_string()),
    )
    .expect("the adapter");
    Gateway::new(
        vec![Member {
            name: "turbo".into(),
            provider: built.provider,
            messages_per_second: Some(LIMIT),
            price_per_part: None,
        }],
        Vec::new(),
        BreakerConfig::default(),
    )
    .expect("a gateway")
    .with_limits(limits)
}

fn routed(n: usize) -> Routed {
    Routed {
        tenant_id: TenantId::generate(Utc::now()),
        sms: OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse(&format!("+38067{:07}", 1_000_000 + n)).unwrap(),
            from: SenderId::parse("Holub").unwrap(),
            text: "Знижка 10% до неділі".into(),
            encoding: Encoding::Ucs2,
            segments: 1,
            validity_seconds: 3600,
        },
    }
}

/// Every instance takes batches off one backlog until it is gone; then the simulator's
/// record is checked: at most the limit in any one-second window, and the backlog done at
/// close to the limit.
async fn run(sim: &str, instances: Vec<Gateway>) {
    let backlog = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = instances
        .into_iter()
        .map(|g| {
            let backlog = backlog.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                loop {
                    let first = backlog.fetch_add(BATCH, Ordering::SeqCst);
                    if first >= BACKLOG {
                        return sent;
                    }
                    let batch: Vec<Routed> =
                        (first..(first + BATCH).min(BACKLOG)).map(routed).collect();
                    for answer in g.send_many(&batch).await {
                        assert!(answer.is_ok(), "{answer:?}");
                        sent += 1;
                    }
                }
            })
        })
        .collect();
    let mut per_instance = Vec::new();
    for w in workers {
        per_instance.push(w.await.expect("an instance"));
    }
    let took = started.elapsed();
    let submissions: Submissions = reqwest::get(format!("{sim}/__sim/submissions"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(submissions.at_us.len(), BACKLOG);
    let most = submissions.most_in(Duration::from_secs(1));
    let (first, last) = (
        submissions.at_us.iter().min().unwrap(),
        submissions.at_us.iter().max().unwrap(),
    );
    let span = Duration::from_micros(u64::try_from(last - first).unwrap());
    // At the limit, the last of the backlog goes (BACKLOG / LIMIT − 1) seconds after the
    // first; the utilisation is that over the time it took.
    let ideal = Duration::from_secs_f64(BACKLOG as f64 / f64::from(LIMIT) - 1.0);
    let utilisation = ideal.as_secs_f64() / span.as_secs_f64();
    eprintln!(
        "{INSTANCES} instances, {BACKLOG} messages at {LIMIT}/s: at most {most} in any second, \
         first to last {span:.2?} (ideal {ideal:.2?}, utilisation {:.0}%), per instance \
         {per_instance:?}, {took:.2?} in all",
        utilisation * 100.0
    );
    assert!(most <= LIMIT as usize, "{most} in one second");
    assert!(utilisation > 0.8, "the backlog took {span:?} at {LIMIT}/s");
    assert!(
        per_instance.iter().filter(|&&n| n > 0).count() > 1,
        "the instances shared the work: {per_instance:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_instances_share_a_providers_limit_on_dynamodb() {
    let endpoint = match std::env::var("HOLUB_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "HOLUB_TEST_AWS_ENDPOINT is not set: scripts/test starts moto and sets it"
            );
            eprintln!("skipping: HOLUB_TEST_AWS_ENDPOINT is not set");
            return;
        }
    };
    let sdk = || {
        sdk_config_loader()
            .endpoint_url(&endpoint)
            .region(Region::new("eu-central-1"))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "holub-limits",
            ))
            .load()
    };
    let clients = AwsClients::new(&sdk().await);
    let prefix = format!(
        "limits-{}-{:x}",
        std::process::id(),
        Utc::now().timestamp_micros()
    );
    let dynamo = DynamoConfig::with_prefix(&prefix);
    create_tables(&clients.dynamodb, &dynamo).await.unwrap();
    let queues = create_queues(&clients.sqs, &prefix, 5).await.unwrap();
    let kms_key_id = create_master_key(&clients.kms, &prefix).await.unwrap();
    let config = AwsConfig {
        dynamo,
        queues,
        secrets: SecretsConfig::with_prefix(format!("{prefix}/")),
        kms_key_id,
    };
    let sim = simulator().await;
    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        // Clients of its own, as a cold start makes them.
        let backend = AwsBackend::with_clients(AwsClients::new(&sdk().await), config.clone());
        instances.push(gateway(&sim, Arc::new(backend.store)));
    }
    run(&sim, instances).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_instances_share_a_providers_limit_on_one_sqlite_file() {
    let dir = TempDir::new("provider-limits");
    let sim = simulator().await;
    let mut instances = Vec::new();
    let mut backends = Vec::new();
    for _ in 0..INSTANCES {
        // A backend of its own on the same file, as another `holub serve` would open it.
        let db = SqliteBackend::open(
            &dir.path().join("holub.db"),
            SqliteConfig {
                sync: SyncMode::Normal,
                ..SqliteConfig::default()
            },
        )
        .expect("the database opens");
        instances.push(gateway(&sim, Arc::new(db.clone())));
        backends.push(db);
    }
    run(&sim, instances).await;
    for db in backends {
        db.close().await;
    }
}
