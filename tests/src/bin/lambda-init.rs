//! `lambda-init`: cold starts of the five Lambda functions, measured under the local Runtime
//! API emulator ([`holub_tests::lambda`]) against an AWS emulator (moto). Each function is
//! started `--runs` times, one process at a time; for each start it records the init time
//! (spawn → first `/next` poll, Lambda's "Init Duration"), the first invocation's duration
//! and the process's peak RSS, and prints p50/p95/max per function.
//!
//! The first invocations do real work: the API's takes a message (a fresh idempotency key
//! per run), the dispatch function's sends one of those to an AlphaSMS simulator, the
//! receipts function's delivers one of them, the callbacks and scheduler functions take their
//! fixtures from `events/`.
//!
//! ```sh
//! cargo build --release -p holub-api -p holub-receipts -p holub-dispatch -p holub-callbacks -p holub-scheduler
//! HOLUB_TEST_AWS_ENDPOINT=http://127.0.0.1:5000 cargo run -p holub-tests --bin lambda-init -- --bins target/release
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use holub_simulator::providers::{self, SimSettings};
use holub_tests::lambda::{Deployment, FUNCTIONS, LambdaFunction, SqsEventSource, profile_dir};
use serde_json::{Value, json};

const API_EVENT: &str = include_str!("../../../events/apigw-v2-send-message.json");
const RECEIPT_EVENT: &str = include_str!("../../../events/apigw-v2-receipt-alphasms.json");
const DISPATCH_EVENT: &str = include_str!("../../../events/sqs-dispatch-batch.json");
const CALLBACKS_EVENT: &str = include_str!("../../../events/sqs-callbacks-batch.json");
const SCHEDULED_EVENT: &str = include_str!("../../../events/eventbridge-scheduled.json");
/// The API key of `apigw-v2-send-message.json`.
const API_KEY: &str = "hk_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
/// The hook token and message id of `apigw-v2-receipt-alphasms.json`.
const RECEIPT_TOKEN: &str = "hook-token-7f3a9c1e5b2d4086";
const RECEIPT_ID: &str = "01JV7Q9A1B2C3D4E5F6G7H8J9K";
const ALPHA_API_KEY: &str = "lambda-init-alphasms-key";

#[derive(Parser, Debug)]
#[command(about = "Measure the Lambda functions' init time under a local Runtime API")]
struct Args {
    /// The binaries: `<DIR>/<name>/bootstrap` (`cargo lambda build`) or `<DIR>/<name>`.
    /// Default: `target/lambda` if its bootstraps run on this host, else `target/release`
    /// if all five are built, else `target/debug`.
    #[arg(long)]
    bins: Option<PathBuf>,
    /// Cold starts per function.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The AWS emulator (moto).
    #[arg(long, env = "HOLUB_TEST_AWS_ENDPOINT")]
    endpoint: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (only reported to the function: nothing here
    /// throttles CPU by memory as Lambda does).
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// `RUST_LOG` of the functions.
    #[arg(long, default_value = "info")]
    log: String,
    /// Only these functions (comma-separated binary names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// ELF `e_machine` of a file, if it is an ELF executable.
fn elf_machine(path: &Path) -> Option<u16> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    (head[..4] == *b"\x7fELF" && head[5] == 1).then(|| u16::from_le_bytes([head[18], head[19]]))
}

fn machine_name(machine: u16) -> &'static str {
    match machine {
        62 => "x86_64",
        183 => "aarch64",
        _ => "other",
    }
}

/// Whether a binary runs here: the host's architecture, or one binfmt hands to qemu-user.
fn runnable(path: &Path) -> Result<String, String> {
    let machine = elf_machine(path).ok_or_else(|| format!("{} is not an ELF", path.display()))?;
    let arch = machine_name(machine);
    if arch == std::env::consts::ARCH {
        return Ok(arch.to_owned());
    }
    if Path::new(&format!("/proc/sys/fs/binfmt_misc/qemu-{arch}")).exists() {
        return Ok(format!("{arch}, emulated by qemu-user"));
    }
    Err(format!(
        "{} is {arch}; this host is {} and has no qemu-user for it",
        path.display(),
        std::env::consts::ARCH
    ))
}

/// The five binaries under `dir`, in either layout.
fn bins_in(dir: &Path) -> Option<Vec<PathBuf>> {
    FUNCTIONS
        .iter()
        .map(|name| {
            let bootstrap = dir.join(name).join("bootstrap");
            let flat = dir.join(name);
            if bootstrap.is_file() {
                Some(bootstrap)
            } else if flat.is_file() {
                Some(flat)
            } else {
                None
            }
        })
        .collect()
}

fn choose_bins(args: &Args) -> Result<(PathBuf, Vec<PathBuf>), String> {
    if let Some(dir) = &args.bins {
        let bins = bins_in(dir)
            .ok_or_else(|| format!("{} does not hold all five functions", dir.display()))?;
        for b in &bins {
            runnable(b)?;
        }
        return Ok((dir.clone(), bins));
    }
    let target = profile_dir()
        .parent()
        .map(Path::to_owned)
        .ok_or("no target directory")?;
    let lambda = target.join("lambda");
    if let Some(bins) = bins_in(&lambda) {
        match bins.iter().try_for_each(|b| runnable(b).map(drop)) {
            Ok(()) => return Ok((lambda, bins)),
            Err(e) => eprintln!("lambda-init: not using {}: {e}", lambda.display()),
        }
    }
    for profile in ["release", "debug"] {
        let dir = target.join(profile);
        if let Some(bins) = bins_in(&dir) {
            return Ok((dir, bins));
        }
    }
    Err(format!(
        "no built functions under {}; run `cargo build --release -p holub-api -p holub-receipts \
         -p holub-dispatch -p holub-callbacks -p holub-scheduler`",
        target.display()
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// What the runs of one function measured.
#[derive(Default)]
struct Samples {
    init: Vec<Duration>,
    first: Vec<Duration>,
    rss_kib: Vec<u64>,
    failures: usize,
}

/// What the runs of one function leave for the next one's events.
struct Events {
    /// Messages the API runs took.
    messages: Vec<String>,
    /// Those a dispatch run has sent, for the receipts runs.
    sent: Vec<String>,
}

fn api_event() -> Value {
    let mut event: Value = serde_json::from_str(API_EVENT).expect("the API event is JSON");
    event["headers"]["idempotency-key"] = json!(format!("lambda-init-{}", rand::random::<u64>()));
    event
}

fn receipt_event(id: &str) -> Value {
    serde_json::from_str(&RECEIPT_EVENT.replace(RECEIPT_ID, id)).expect("the receipt event is JSON")
}

/// Whether an invocation's result is the success its function answers.
fn succeeded(name: &str, result: &Value) -> bool {
    match name {
        "holub-api" => result["statusCode"] == 202,
        "holub-receipts" => result["statusCode"] == 200,
        "holub-dispatch" => result["batchItemFailures"] == json!([]),
        "holub-scheduler" => result["errors"] == json!([]),
        // The callbacks fixture holds a record that is not a job, reported failed.
        _ => result.get("batchItemFailures").is_some(),
    }
}

async fn run_once(
    name: &str,
    bin: &Path,
    deployment: &Deployment,
    routes: &str,
    args: &Args,
    events: &mut Events,
    samples: &mut Samples,
) -> Result<(), String> {
    let mut config = deployment
        .config(name, routes)
        .env("RUST_LOG", args.log.clone());
    config.memory_mb = args.memory;
    let function = Arc::new(
        LambdaFunction::start(bin, config)
            .await
            .map_err(|e| format!("{name} not started: {e}"))?,
    );
    let init = function.ready().await.map_err(|e| format!("{name}: {e}"))?;
    let (result, duration) = match name {
        "holub-dispatch" => {
            let mut source = SqsEventSource::new(
                deployment.sqs.clone(),
                &deployment.queues.dispatch,
                function.clone(),
            )
            .await
            .map_err(|e| e.to_string())?;
            source.batch_size = 1;
            let records = source
                .receive(Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())?;
            if records.is_empty() {
                // No job left by the API's runs: the fixture (messages that do not exist).
                let event: Value = serde_json::from_str(DISPATCH_EVENT).expect("JSON");
                let i = function.invoke_timed(&event).await;
                (i.result, i.duration)
            } else {
                let body = records[0].body().unwrap_or_default().to_owned();
                let delivery = source.deliver(&records).await.map_err(|e| e.to_string())?;
                let sent = events.messages.iter().find(|id| body.contains(id.as_str()));
                if let (Ok(_), Some(id)) = (&delivery.result, sent) {
                    events.sent.push(id.clone());
                }
                (delivery.result, delivery.duration)
            }
        }
        _ => {
            let event = match name {
                "holub-api" => api_event(),
                "holub-receipts" => match events.sent.pop() {
                    Some(id) => receipt_event(&id),
                    None => receipt_event(RECEIPT_ID),
                },
                "holub-callbacks" => serde_json::from_str(CALLBACKS_EVENT).expect("JSON"),
                _ => serde_json::from_str(SCHEDULED_EVENT).expect("JSON"),
            };
            let i = function.invoke_timed(&event).await;
            (i.result, i.duration)
        }
    };
    samples.init.push(init);
    samples.first.push(duration);
    if let Some(rss) = function.peak_rss_kib() {
        samples.rss_kib.push(rss);
    }
    match &result {
        Ok(v) if succeeded(name, v) => {
            if name == "holub-api" {
                let body: Value = v["body"]
                    .as_str()
                    .and_then(|b| serde_json::from_str(b).ok())
                    .unwrap_or_default();
                if let Some(id) = body["id"].as_str() {
                    events.messages.push(id.to_owned());
                }
            }
        }
        other => {
            samples.failures += 1;
            if samples.failures == 1 {
                eprintln!("lambda-init: {name}: unexpected result {other:?}");
                eprintln!("{}", function.logs(20));
            }
        }
    }
    function.shut_down().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (dir, bins) = choose_bins(&args).unwrap_or_else(|e| {
        eprintln!("lambda-init: {e}");
        std::process::exit(2);
    });
    let deployment = Deployment::create(&args.endpoint, "init", API_KEY)
        .await
        .unwrap_or_else(|e| {
            eprintln!("lambda-init: {e}");
            std::process::exit(2);
        });
    // The simulator the dispatch runs send to; its receipts go to a sink.
    let sim = providers::start(
        "alphasms",
        SimSettings {
            credentials: json!({"api_key": ALPHA_API_KEY}),
            delivered_ratio: 1.0,
            ..SimSettings::default()
        },
    )
    .await
    .expect("the simulator starts");
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let sink_url = format!("http://{}", sink.local_addr().expect("an address"));
    tokio::spawn(async move {
        let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
        let _ = axum::serve(sink, app).await;
    });
    deployment
        .put_secret(
            "providers/alphasms",
            &json!({"api_key": ALPHA_API_KEY, "hook_token": RECEIPT_TOKEN}),
        )
        .await
        .unwrap_or_else(|e| {
            eprintln!("lambda-init: {e}");
            std::process::exit(2);
        });
    let routes = format!(
        r#"[[provider]]
name = "alphasms"
kind = "alphasms"
credentials = "providers/alphasms"
settings = {{ base_url = "http://{sim}", hook_url = "{sink_url}/v1/receipts/alphasms" }}
"#
    );

    let arch = runnable(&bins[0]).unwrap_or_else(|e| e);
    println!(
        "lambda-init: {} cold starts per function, binaries from {} ({arch}), AWS at {}",
        args.runs,
        dir.display(),
        args.endpoint
    );
    println!(
        "{:<16} {:>8} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9} | failed",
        "function", "size MB", "init p50", "p95", "max", "1st p50", "p95", "max", "peak RSS",
    );
    let mut events = Events {
        messages: Vec::new(),
        sent: Vec::new(),
    };
    // The API's runs leave jobs for the dispatch runs, which leave sent messages for the
    // receipts runs.
    let order = [
        "holub-api",
        "holub-dispatch",
        "holub-receipts",
        "holub-callbacks",
        "holub-scheduler",
    ];
    for name in order {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        let Some(bin) = FUNCTIONS.iter().position(|f| *f == name).map(|i| &bins[i]) else {
            continue;
        };
        let mut samples = Samples::default();
        for _ in 0..args.runs {
            if let Err(e) = run_once(
                name,
                bin,
                &deployment,
                &routes,
                &args,
                &mut events,
                &mut samples,
            )
            .await
            {
                eprintln!("lambda-init: {e}");
                samples.failures += 1;
            }
        }
        samples.init.sort();
        samples.first.sort();
        let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or_default();
        println!(
            "{:<16} {:>8.1} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>6} MB | {}",
            name,
            size as f64 / 1_048_576.0,
            ms(percentile(&samples.init, 0.5)),
            ms(percentile(&samples.init, 0.95)),
            ms(samples.init.last().copied().unwrap_or_default()),
            ms(percentile(&samples.first, 0.5)),
            ms(percentile(&samples.first, 0.95)),
            ms(samples.first.last().copied().unwrap_or_default()),
            samples.rss_kib.iter().max().copied().unwrap_or_default() / 1024,
            samples.failures
        );
    }
    println!("(times in ms; init = spawn → first /next; 1st = the first invocation's duration)");
}
