//! `holub-aws-cost`: what a message costs on AWS. Runs the Lambda functions' own code paths
//! (the API Router, the dispatch handler's Dispatcher, the receipts Router) in one process
//! over the AWS adapters, against moto behind a capacity meter ([`holub_tests::capacity`]),
//! for one single send and for one batch, and prints per phase the AWS requests (counted by
//! the SDK interceptor), DynamoDB read and write units (by DynamoDB's published rules) and
//! the cost per million messages at public prices.
//!
//! `scripts/aws-cost` starts moto and runs it; by hand:
//! `cargo run -p holub-tests --bin holub-aws-cost -- --endpoint http://127.0.0.1:5000`

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::response::IntoResponse;
use clap::Parser;
use holub_shared::adapters::aws::{
    AwsBackend, AwsClients, AwsConfig, Credentials, Region, sdk_config_loader,
};
use holub_shared::adapters::dynamo::{DynamoConfig, create_tables};
use holub_shared::adapters::kms::create_master_key;
use holub_shared::adapters::request_counter::RequestCounter;
use holub_shared::adapters::secrets_manager::SecretsConfig;
use holub_shared::adapters::sqs::create_queues;
use holub_shared::domain::Origin;
use holub_shared::ports::{Queue, QueueName, ReceiptWebhook, Secret};
use holub_shared::runtime::{Consumer, Finished, Holub, Ports, Settings, Target, settle};
use holub_shared::services::Dispatcher;
use holub_shared::services::gateway::{BreakerConfig, Gateway, Member};
use holub_tests::capacity::{self, Meter, Units};
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Parser, Debug)]
#[command(about = "Count the AWS requests and DynamoDB units of a message, and their price")]
struct Args {
    /// The AWS emulator (moto_server).
    #[arg(
        long,
        env = "HOLUB_TEST_AWS_ENDPOINT",
        default_value = "http://127.0.0.1:5000"
    )]
    endpoint: String,
    /// Recipients of the batch scenario.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Single sends of the scenario that measures one tenant's hottest partition under
    /// single sends (the rate, spend and number counters included).
    #[arg(long, default_value_t = 300)]
    singles: usize,
    /// Write shards per tenant and sweep-index shards, as deployed (`template.yaml`).
    #[arg(long, default_value_t = DynamoConfig::DEPLOYED_WRITE_SHARDS)]
    write_shards: u16,
    #[arg(long, default_value_t = DynamoConfig::DEPLOYED_INDEX_SHARDS)]
    index_shards: u16,
}

/// What one partition key takes in write units a second (DynamoDB's per-partition limit).
const PARTITION_WRITE_UNITS: f64 = 1000.0;

/// Public on-demand prices, USD, eu-central-1 (Frankfurt), as listed on the AWS pricing
/// pages for DynamoDB, SQS, Secrets Manager and Lambda.
mod price {
    pub const DYNAMO_WRITE_UNIT: f64 = 0.7625 / 1e6;
    pub const DYNAMO_READ_UNIT: f64 = 0.1525 / 1e6;
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    pub const SECRETS_CALL: f64 = 0.05 / 1e4;
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
}

#[derive(Default, Clone)]
struct Phase {
    name: &'static str,
    units: Units,
    /// Write units by partition key (see [`Meter::partitions`]).
    partitions: HashMap<String, f64>,
    requests: BTreeMap<String, u64>,
    /// Lambda invocations the phase stands for.
    invocations: u64,
}

impl Phase {
    fn of(&self, prefix: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(op, _)| op.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }
}

struct Rig {
    app: axum::Router,
    queue: AwsBackend,
    dispatcher: Arc<Dispatcher>,
    requests: RequestCounter,
    meter: Meter,
    api_key: String,
    receipt_posts: Arc<AtomicU64>,
    hold: Arc<AtomicBool>,
    sim: holub_simulator::Simulator,
}

impl Rig {
    fn reset(&self) {
        self.requests.reset();
        self.meter.reset();
    }

    fn phase(&self, name: &'static str, invocations: u64) -> Phase {
        let phase = Phase {
            name,
            units: self.meter.total(),
            partitions: self.meter.partitions(),
            requests: self.requests.snapshot(),
            invocations,
        };
        self.reset();
        phase
    }

    /// GETs from the API Router (a short link as a phone's browser follows it).
    async fn get(&self, path: &str) -> (u16, Value) {
        let request = Request::get(path)
            .header("authorization", format!("Bearer {}", self.api_key))
            .header(
                "user-agent",
                "Mozilla/5.0 (Linux; Android 14) Mobile Safari/537.36",
            )
            .body(Body::empty())
            .expect("a request");
        self.answer(request).await
    }

    /// What the API Router answers: the status and the body as JSON (`Null` if none).
    async fn answer(&self, request: Request<Body>) -> (u16, Value) {
        let response = self.app.clone().oneshot(request).await.expect("an answer");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The codes of a batch's tracked links, from the message list.
    async fn codes(&self, batch: &str) -> Vec<String> {
        let mut codes = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/messages?batch_id={batch}&limit=500&cursor={c}"),
                None => format!("/v1/messages?batch_id={batch}&limit=500"),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, 200, "{page}");
            for m in page["messages"].as_array().into_iter().flatten() {
                for l in m["links"].as_array().into_iter().flatten() {
                    codes.extend(l["code"].as_str().map(str::to_owned));
                }
            }
            match page["next"].as_str() {
                Some(n) => cursor = Some(n.to_owned()),
                None => return codes,
            }
        }
    }

    /// POSTs to the API Router as API Gateway hands a request to the API function.
    async fn post(&self, path: &str, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut request = Request::post(path)
            .header("authorization", format!("Bearer {}", self.api_key))
            .header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = request
            .body(Body::from(body.to_string()))
            .expect("a request");
        self.answer(request).await
    }

    /// Takes every dispatch job as the event source mapping hands them to the function
    /// (batches of 10), runs the handler's Dispatcher, deletes the done ones. Returns the
    /// number of batches (invocations).
    async fn dispatch_all(&self, messages: usize) -> u64 {
        let mut done = 0;
        let mut batches = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while done < messages && Instant::now() < deadline {
            let got = self
                .queue
                .queue
                .receive(
                    QueueName::Dispatch,
                    10,
                    Duration::from_secs(30),
                    Duration::from_secs(1),
                )
                .await
                .expect("the dispatch queue answers");
            if got.is_empty() {
                continue;
            }
            batches += 1;
            let outcomes = self.dispatcher.consume(&got).await;
            let unfinished = settle(
                &self.queue.queue,
                QueueName::Dispatch,
                &got,
                &outcomes,
                Finished::Delete,
            )
            .await;
            done += got.len() - unfinished.len();
        }
        batches
    }

    /// Waits until the simulator has posted `n` more receipts than `before` and they were
    /// taken.
    async fn receipts(&self, before: u64, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            if self.sim.stats().receipts_posted >= before + n as u64 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let (meter_url, meter) = capacity::start(&args.endpoint)
        .await
        .expect("the meter listens");
    let sdk = sdk_config_loader()
        .endpoint_url(&meter_url)
        .region(Region::new("eu-central-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "holub-cost",
        ))
        .load()
        .await;
    let clients = AwsClients::new(&sdk);
    let prefix = format!("holub-cost-{}", std::process::id());
    let mut dynamo = DynamoConfig::with_prefix(&prefix);
    dynamo.write_shards = args.write_shards;
    dynamo.index_shards = args.index_shards;
    create_tables(&clients.dynamodb, &dynamo)
        .await
        .expect("tables are created (is moto running at --endpoint?)");
    let queues = create_queues(&clients.sqs, &prefix, 5)
        .await
        .expect("queues are created");
    let requests = clients.requests.clone();
    let kms_key_id = create_master_key(&clients.kms, &prefix)
        .await
        .expect("a KMS key is created");
    let aws = AwsBackend::with_clients(
        clients,
        AwsConfig {
            dynamo,
            queues,
            secrets: SecretsConfig::with_prefix(format!("{prefix}/")),
            kms_key_id,
        },
    );
    let settings = Settings::from_values(["--short-link-base", "https://s.holub.example"])
        .expect("default settings, and a short link base");
    let holub = Holub::new(Ports::aws(&aws), settings, Target::Aws);
    let tenant = holub
        .accounts
        .create_tenant("Cost", &Origin::operator())
        .await
        .expect("a tenant");
    let tenant_id: holub_shared::domain::TenantId = tenant.tenant_id.parse().expect("an id");
    for sender in holub_tests::TEST_SENDERS {
        let sender = holub_shared::domain::SenderId::parse(sender).expect("a sender");
        holub
            .senders
            .grant(
                &tenant_id,
                &sender,
                &holub_shared::domain::Network::ALL,
                holub_shared::domain::Registration::Active,
                &Origin::operator(),
            )
            .await
            .expect("an active sender");
    }
    holub
        .limits
        .set(&tenant_id, &holub_tests::wide_limits(), &Origin::operator())
        .await
        .expect("wide limits");

    // The receipts function's Router, on a loopback port the simulator posts to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let receipts_addr = listener.local_addr().expect("an address");
    let mut webhooks: HashMap<String, Arc<dyn ReceiptWebhook>> = HashMap::new();
    webhooks.insert(
        "sim".into(),
        Arc::new(holub_simulator::SimulatorReceipts::new(Secret::new(
            "receipt-token",
        ))),
    );
    // Receipts are held back (503: the simulator posts them again later) until dispatch is
    // done, so each phase counts only its own requests.
    let receipt_posts = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(AtomicBool::new(true));
    let (posts, held) = (receipt_posts.clone(), hold.clone());
    let receipts_app = holub_receipts::router(holub_receipts::ReceiptsState::new(&holub, webhooks))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (posts, held) = (posts.clone(), held.clone());
                async move {
                    if held.load(Ordering::Relaxed) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    posts.fetch_add(1, Ordering::Relaxed);
                    next.run(request).await
                }
            },
        ));
    tokio::spawn(async move {
        let _ = axum::serve(listener, receipts_app).await;
    });
    let sim = holub_simulator::Simulator::start(holub_simulator::SimulatorConfig {
        api_token: "api-token".into(),
        receipt_token: "receipt-token".into(),
        receipts_url: format!("http://{receipts_addr}/v1/receipts/sim"),
        receipt_delay: Duration::from_millis(100),
        // Small posts, as providers push them: each is answered well within the
        // simulator's timeout even on a slow emulator.
        receipt_batch_size: 50,
        delivered_ratio: 1.0,
        ..holub_simulator::SimulatorConfig::default()
    })
    .await
    .expect("the simulator starts");
    let provider = holub_simulator::SimulatorProvider::new(&sim.base_url(), "api-token", "sim")
        .expect("a provider");
    let gateway = Gateway::new(
        vec![Member {
            name: "sim".into(),
            provider: Arc::new(provider),
            messages_per_second: None,
            price_per_part: None,
        }],
        Vec::new(),
        BreakerConfig::default(),
    )
    .expect("a gateway");
    let dispatcher = holub.dispatcher(Arc::new(gateway));
    let app = holub_api::router(holub_api::AppState::new(&holub));
    let rig = Rig {
        app,
        queue: aws,
        dispatcher,
        requests,
        meter,
        api_key: tenant.api_key,
        receipt_posts,
        hold,
        sim,
    };

    let mut scenarios = Vec::new();
    // The batch again with its link tracked, then each short link followed once.
    let scenario_list: [(&str, usize, &[bool]); 4] = [
        ("single", 1, &[false, true]),
        ("singles", args.singles, &[false, true]),
        ("batch", args.batch, &[false, true]),
        ("links", args.batch, &[false]),
    ];
    for (name, n, keys) in scenario_list {
        for &with_key in keys {
            rig.reset();
            let key = with_key.then(|| format!("{name}-{}", std::process::id()));
            let mut phases = Vec::new();
            let (status, body) = if name == "single" || name == "singles" {
                let mut answer = (200, Value::Null);
                for i in 0..n {
                    let request = json!({ "to": format!("+38067{:07}", 2_000_000 + i),
                        "from": "Holub", "text": "Код: 4821" });
                    let key = key.as_ref().map(|k| format!("{k}-{i}"));
                    answer = rig.post("/v1/messages", request, key.as_deref()).await;
                    if answer.0 >= 300 {
                        break;
                    }
                }
                answer
            } else {
                let recipients: Vec<Value> = (0..n)
                    .map(|i| json!({ "to": format!("+38067{:07}", 1_000_000 + i) }))
                    .collect();
                let request = if name == "links" {
                    json!({ "from": "Holub", "text": "Знижка 20% до неділі: https://shop.example.ua/sale",
                        "track_links": true, "recipients": recipients })
                } else {
                    json!({ "from": "Holub", "text": "Знижка 20% до неділі", "recipients": recipients })
                };
                rig.post("/v1/messages/batch", request, key.as_deref())
                    .await
            };
            assert!(status < 300, "intake answered {status}: {body}");
            rig.hold.store(true, Ordering::Relaxed);
            let requests = if name.starts_with("single") {
                n as u64
            } else {
                1
            };
            phases.push(rig.phase("intake (api)", requests));
            let before = rig.sim.stats().receipts_posted;
            let batches = rig.dispatch_all(n).await;
            phases.push(rig.phase("dispatch", batches));
            let posts_before = rig.receipt_posts.load(Ordering::Relaxed);
            rig.hold.store(false, Ordering::Relaxed);
            if !rig.receipts(before, n).await {
                eprintln!("warning: not every receipt of the {name} scenario was taken in time");
            }
            let posts = rig.receipt_posts.load(Ordering::Relaxed) - posts_before;
            phases.push(rig.phase("receipts", posts));
            // One run of the rollup function over the scenario's status changes.
            let rolled = holub_shared::ports::StatsStore::roll_up(&rig.queue.store, usize::MAX)
                .await
                .expect("the rollup runs");
            assert!(rolled.events >= n, "the rollup folded {rolled:?}");
            phases.push(rig.phase("rollup", 1));
            if name == "links" {
                let batch = body["batch_id"].as_str().expect("a batch id");
                let codes = rig.codes(batch).await;
                assert_eq!(codes.len(), n, "one short link per message");
                rig.reset();
                for code in &codes {
                    let (status, _) = rig.get(&format!("/{code}")).await;
                    assert_eq!(status, 302);
                }
                phases.push(rig.phase("clicks (api)", n as u64));
                let rolled = holub_shared::ports::StatsStore::roll_up(&rig.queue.store, usize::MAX)
                    .await
                    .expect("the rollup runs");
                assert!(rolled.events >= n, "the rollup folded {rolled:?}");
                phases.push(rig.phase("click rollup", 1));
            }
            scenarios.push((name, n, with_key, phases));
        }
    }
    report(&scenarios);
    hot_partitions(&scenarios, &tenant_id.to_string(), &args);
}

/// Per scenario: the partition key (of every table and index) that took the most write
/// units per message, and the ceiling that puts on one tenant; and the same for keys every
/// tenant shares (sweep-index shards, the batch markers' partition), which cap the table.
fn hot_partitions(scenarios: &[(&str, usize, bool, Vec<Phase>)], tenant: &str, args: &Args) {
    println!();
    println!(
        "Hottest partition keys (write shards {}, index shards {}; a partition key takes {} write units a second):",
        args.write_shards, args.index_shards, PARTITION_WRITE_UNITS
    );
    println!(
        "{:<8} {:>5} {:<4} {:<7} {:<44} {:>9} {:>7} {:>12} {:>12}",
        "scenario",
        "msgs",
        "key",
        "scope",
        "hottest partition key",
        "WCU/msg",
        "spread",
        "ceiling msg/s",
        "(mean shard)"
    );
    for (name, n, with_key, phases) in scenarios {
        if *n < 100 {
            continue;
        }
        let mut partitions: HashMap<String, f64> = HashMap::new();
        for p in phases {
            for (k, w) in &p.partitions {
                *partitions.entry(k.clone()).or_default() += w;
            }
        }
        // One tenant's ceiling: every key its messages touch. The table's: the keys every
        // tenant shares (those that name no tenant; a link code's key is its message's own).
        let every = |_: &str| true;
        let shared = |k: &str| !k.contains(tenant) && !k.contains("#link#");
        for (scope, keep) in [
            ("tenant", &every as &dyn Fn(&str) -> bool),
            ("table", &shared),
        ] {
            let Some((key, write)) = partitions
                .iter()
                .filter(|(k, _)| keep(k))
                .max_by(|a, b| a.1.total_cmp(b.1))
            else {
                continue;
            };
            // Where that key lives (a table or an index), and how its writes spread there.
            let place = key.split(' ').next().unwrap_or("");
            let (sum, spread) = partitions
                .iter()
                .filter(|(k, _)| keep(k) && k.split(' ').next() == Some(place))
                .fold((0.0, 0usize), |(s, c), (_, w)| (s + w, c + 1));
            let per = write / *n as f64;
            let mean = sum / spread.max(1) as f64 / *n as f64;
            println!(
                "{:<8} {:>5} {:<4} {:<7} {:<44} {:>9.4} {:>7} {:>12.0} {:>12.0}",
                name,
                n,
                yes(*with_key),
                scope,
                key.replace(tenant, "<tenant>"),
                per,
                spread,
                PARTITION_WRITE_UNITS / per,
                PARTITION_WRITE_UNITS / mean,
            );
        }
    }
    println!(
        "(ceiling: {} / the hottest key's WCU per message; mean shard: the same over the mean of the shards of that table or index, which the hottest approaches as volume grows)",
        PARTITION_WRITE_UNITS
    );
}

fn report(scenarios: &[(&str, usize, bool, Vec<Phase>)]) {
    println!(
        "{:<8} {:>5} {:<4} {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "scenario",
        "msgs",
        "key",
        "phase",
        "DDB req",
        "RCU",
        "WCU",
        "(index)",
        "SQS req",
        "SM calls"
    );
    for (name, n, with_key, phases) in scenarios {
        let per = *n as f64;
        let mut total = Phase {
            name: "total",
            ..Phase::default()
        };
        for p in phases {
            print_row(name, *n, *with_key, p, per);
            total.units.read += p.units.read;
            total.units.write += p.units.write;
            total.units.index_write += p.units.index_write;
            total.invocations += p.invocations;
            for (op, c) in &p.requests {
                *total.requests.entry(op.clone()).or_default() += c;
            }
        }
        print_row(name, *n, *with_key, &total, per);
        let cost = total.units.write * price::DYNAMO_WRITE_UNIT
            + total.units.read * price::DYNAMO_READ_UNIT
            + total.of("SQS") as f64 * price::SQS_REQUEST
            + total.of("Secrets") as f64 * price::SECRETS_CALL
            + total.invocations as f64 * price::LAMBDA_REQUEST;
        println!(
            "{:<8} {:>5} {:<4} per 1M messages: ${:.2} (DynamoDB ${:.2}, SQS ${:.2}, Lambda requests ${:.2}; Lambda duration not included)",
            name,
            n,
            yes(*with_key),
            cost / per * 1e6,
            (total.units.write * price::DYNAMO_WRITE_UNIT
                + total.units.read * price::DYNAMO_READ_UNIT)
                / per
                * 1e6,
            total.of("SQS") as f64 * price::SQS_REQUEST / per * 1e6,
            total.invocations as f64 * price::LAMBDA_REQUEST / per * 1e6,
        );
    }
    println!(
        "(per message; requests by the SDK interceptor, units by DynamoDB's published rules at the capacity meter)"
    );
    for (name, n, with_key, phases) in scenarios {
        for p in phases {
            let ops: Vec<String> = p
                .requests
                .iter()
                .map(|(op, c)| format!("{op}×{c}"))
                .collect();
            println!(
                "  {name} {n} key={} {}: {}",
                yes(*with_key),
                p.name,
                ops.join(", ")
            );
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn print_row(name: &str, n: usize, with_key: bool, p: &Phase, per: f64) {
    println!(
        "{:<8} {:>5} {:<4} {:<13} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8.4}",
        name,
        n,
        yes(with_key),
        p.name,
        p.of("DynamoDB") as f64 / per,
        p.units.read / per,
        p.units.write / per,
        p.units.index_write / per,
        p.of("SQS") as f64 / per,
        p.of("Secrets") as f64 / per,
    );
}
