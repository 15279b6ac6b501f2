//! `holub serve`: all of Holub in one process over one SQLite file — the API, the queue
//! consumers, the timers, the receipt endpoints and (by default) the provider simulator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use holub_shared::adapters::sqlite::{SqliteConfig, SyncMode};
use holub_shared::domain::ShortBase;
use holub_shared::ports::{ProviderLimits, ReceiptWebhook, Secret, SecretStore, SmsProvider};
use holub_shared::runtime::{
    CALLBACK_VISIBILITY, CAMPAIGN_VISIBILITY, Consumer, Holub, Settings, Target,
    consume_until_stopped,
};
use holub_shared::services::gateway::{BreakerConfig, Gateway, Member};
use holub_simulator::{SimulatorConfig, SimulatorProvider, SimulatorReceipts};
use std::collections::HashMap;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::routes;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address of the HTTP API.
    #[arg(long, env = "HOLUB_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Where the database and the local secrets file live.
    #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
    data_dir: PathBuf,
    /// `full`: every accepted message is on disk before the answer (survives power loss);
    /// `normal`: survives a crash of the process, not of the machine.
    #[arg(long, env = "HOLUB_SQLITE_SYNC", default_value = "full", value_parser = ["full", "normal"])]
    sync: String,
    /// Concurrent dispatch consumers.
    #[arg(long, env = "HOLUB_DISPATCH_WORKERS", default_value_t = 4)]
    dispatch_workers: usize,
    /// Jobs per dispatch receive.
    #[arg(long, env = "HOLUB_DISPATCH_BATCH", default_value_t = 200)]
    dispatch_batch: usize,
    /// Concurrent callback consumers (each delivers up to 10 callbacks at once).
    #[arg(long, env = "HOLUB_CALLBACK_WORKERS", default_value_t = 4)]
    callback_workers: usize,
    /// Seconds a received dispatch job stays hidden from other consumers. Far above a
    /// provider call's timeout, so a job is seen again only if its consumer died.
    #[arg(long, env = "HOLUB_DISPATCH_VISIBILITY", default_value_t = 60)]
    dispatch_visibility: u64,
    /// A bearer token `GET /metrics` asks for. Without one, `/metrics` answers anyone who
    /// can reach the listen address (it holds counts per status, provider and operator,
    /// never a number or a text).
    #[arg(long, env = "HOLUB_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Queue receives before a job goes to the dead letters.
    #[arg(long, env = "HOLUB_MAX_RECEIVES", default_value_t = 10)]
    max_receives: u32,

    /// The route table (TOML): providers, their credentials, limits and prices, and which
    /// messages go where. Without it, Holub sends through its built-in simulator.
    #[arg(long, env = "HOLUB_ROUTES")]
    routes: Option<PathBuf>,

    /// Use a simulator running elsewhere (`holub simulator`) instead of the built-in one.
    #[arg(long, env = "HOLUB_SIMULATOR_URL")]
    simulator_url: Option<String>,
    /// Token for the external simulator's API (with --simulator-url).
    #[arg(long, env = "HOLUB_SIMULATOR_API_TOKEN")]
    simulator_api_token: Option<String>,
    /// Token the external simulator signs receipts with (with --simulator-url).
    #[arg(long, env = "HOLUB_SIMULATOR_RECEIPT_TOKEN")]
    simulator_receipt_token: Option<String>,

    /// What Holub's services do, the same names as the Lambda functions read.
    #[command(flatten)]
    settings: Settings,

    #[command(flatten)]
    sim: SimulatorArgs,
}

/// Behaviour of the built-in simulator.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulatorArgs {
    /// Milliseconds from an accepted send to its delivery receipt.
    #[arg(long, env = "HOLUB_SIM_RECEIPT_DELAY_MS", default_value_t = 1000)]
    pub sim_receipt_delay_ms: u64,
    /// Share of messages delivered (the rest undelivered or expired).
    #[arg(long, env = "HOLUB_SIM_DELIVERED_RATIO", default_value_t = 0.95)]
    pub sim_delivered_ratio: f64,
    /// Of the messages not delivered, the share that expire at the operator (the rest are
    /// undelivered).
    #[arg(long, env = "HOLUB_SIM_EXPIRED_RATIO", default_value_t = 0.0)]
    pub sim_expired_ratio: f64,
    /// Share of send requests answered 503 (failure injection).
    #[arg(long, env = "HOLUB_SIM_FAIL_RATIO", default_value_t = 0.0)]
    pub sim_fail_ratio: f64,
    /// Share of messages refused for good (failure injection).
    #[arg(long, env = "HOLUB_SIM_REJECT_RATIO", default_value_t = 0.0)]
    pub sim_reject_ratio: f64,
    /// Share of send requests whose messages are taken but answered 503 (a provider that
    /// loses its answers; failure injection).
    #[arg(long, env = "HOLUB_SIM_LOST_ANSWER_RATIO", default_value_t = 0.0)]
    pub sim_lost_answer_ratio: f64,
    /// Milliseconds added to every send request.
    #[arg(long, env = "HOLUB_SIM_LATENCY_MS", default_value_t = 0)]
    pub sim_latency_ms: u64,
}

impl SimulatorArgs {
    pub fn config(
        &self,
        receipts_url: String,
        api_token: String,
        receipt_token: String,
    ) -> SimulatorConfig {
        SimulatorConfig {
            receipts_url,
            api_token,
            receipt_token,
            receipt_delay: Duration::from_millis(self.sim_receipt_delay_ms),
            delivered_ratio: self.sim_delivered_ratio,
            expired_ratio: self.sim_expired_ratio,
            fail_ratio: self.sim_fail_ratio,
            reject_ratio: self.sim_reject_ratio,
            lost_answer_ratio: self.sim_lost_answer_ratio,
            latency: Duration::from_millis(self.sim_latency_ms),
            ..SimulatorConfig::default()
        }
    }
}

/// A token kept in the secret store, made on first use.
async fn token(secrets: &dyn SecretStore, name: &str) -> Result<Secret, String> {
    match secrets.get(name).await {
        Ok(s) => Ok(s),
        Err(holub_shared::ports::SecretError::NotFound(_)) => {
            let mut bytes = [0u8; 24];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let secret = Secret::new(hex::encode(bytes));
            secrets
                .put(name, &secret)
                .await
                .map_err(|e| e.to_string())?;
            Ok(secret)
        }
        Err(e) => Err(e.to_string()),
    }
}

pub async fn run(args: Args) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holub: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), String> {
    let sqlite = SqliteConfig {
        sync: if args.sync == "normal" {
            SyncMode::Normal
        } else {
            SyncMode::Full
        },
        max_receives: args.max_receives.max(1),
        ..SqliteConfig::default()
    };
    let backend = Backend::open(&args.data_dir, sqlite).map_err(|e| {
        format!(
            "cannot open the database in {}: {e}",
            args.data_dir.display()
        )
    })?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;

    let mut settings = args.settings.clone();
    if settings.short_link_base.is_none() {
        settings.short_link_base = ShortBase::parse(&format!("http://{}", reachable(addr))).ok();
    }
    let holub = Holub::new(backend.ports(), settings, Target::Embedded);
    let secrets = holub.ports.secrets.clone();

    // The providers: a route table, or the one built-in (or external) simulator.
    let providers = match &args.routes {
        Some(path) => {
            let file = routes::read(path)?;
            let limits = holub.ports.provider_limits.clone();
            routes::build(file, secrets.clone(), limits, &format!("http://{addr}")).await?
        }
        None => {
            let limits = holub.ports.provider_limits.clone();
            default_simulator(&args, secrets.as_ref(), limits, addr).await?
        }
    };
    let simulators: serde_json::Map<String, serde_json::Value> = providers
        .simulators
        .into_iter()
        .map(|(name, addr)| (name, addr.into()))
        .collect();

    // The triggers: queue loops and timers where Lambda has event sources and schedules.
    let queue = holub.ports.queue.clone();
    let dispatcher: Arc<dyn Consumer> = holub.dispatcher(providers.gateway.clone());
    let callbacks: Arc<dyn Consumer> = holub.callbacks.clone();
    let campaigns: Arc<dyn Consumer> = holub.campaigns.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let consumers = [
        (
            dispatcher,
            args.dispatch_workers,
            args.dispatch_batch.clamp(1, 1000),
            Duration::from_secs(args.dispatch_visibility.max(1)),
        ),
        (callbacks, args.callback_workers, 10, CALLBACK_VISIBILITY),
        (campaigns, 2, 1, CAMPAIGN_VISIBILITY),
    ];
    for (consumer, workers, batch, visibility) in consumers {
        for _ in 0..workers.max(1) {
            tasks.push(tokio::spawn(consume_until_stopped(
                queue.clone(),
                consumer.clone(),
                batch,
                visibility,
                stop_rx.clone(),
            )));
        }
    }
    // One process does it all here, the analytics rollup too.
    let table = holub.tasks(providers.gateway).with(holub.rollup());
    let stopped = stop_rx.clone();
    tasks.push(tokio::spawn(
        async move { table.run_on_timers(stopped).await },
    ));

    let app = holub_api::router(holub_api::AppState::new(&holub))
        .merge(holub_receipts::router(holub_receipts::ReceiptsState::new(
            &holub,
            providers.webhooks,
        )))
        .merge(metrics_route(args.metrics_token.clone()));

    // The first line on stdout says where Holub listens (tests and scripts read it).
    println!(
        "{}",
        serde_json::json!({
            "listening": addr.to_string(),
            "simulators": simulators,
            "data_dir": args.data_dir.display().to_string(),
        })
    );
    tracing::info!(%addr, "holub is serving");

    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    // The services hold the backend's handles: the database closes with the last one.
    drop((holub, queue));
    backend.close().await;
    served.map_err(|e| format!("the HTTP server failed: {e}"))
}

/// The address to give out for `addr`: a wildcard listen address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Without a route table: one provider named `simulator`, the built-in simulator (tokens
/// made on first run and kept in the secret store), or one running elsewhere.
async fn default_simulator(
    args: &Args,
    secrets: &dyn SecretStore,
    limits: Arc<dyn ProviderLimits>,
    addr: SocketAddr,
) -> Result<routes::Providers, String> {
    let receipts_url = format!("http://{addr}/v1/receipts/{DEFAULT_PROVIDER}");
    let (api, receipt, base_url, sim_addr) = match &args.simulator_url {
        Some(url) => {
            let api = args
                .simulator_api_token
                .clone()
                .ok_or("--simulator-url needs --simulator-api-token")?;
            let receipt = args
                .simulator_receipt_token
                .clone()
                .ok_or("--simulator-url needs --simulator-receipt-token")?;
            (Secret::new(api), Secret::new(receipt), url.clone(), None)
        }
        None => {
            let api = token(secrets, "providers/simulator/api-token").await?;
            let receipt = token(secrets, "providers/simulator/receipt-token").await?;
            let config = SimulatorConfig {
                // What it accepted outlives a crash of this process, as at a real provider.
                journal: Some(args.data_dir.join(SIMULATOR_JOURNAL)),
                ..args.sim.config(
                    receipts_url,
                    api.expose().to_owned(),
                    receipt.expose().to_owned(),
                )
            };
            let sim = holub_simulator::Simulator::start(config)
                .await
                .map_err(|e| format!("cannot start the simulator: {e}"))?;
            (api, receipt, sim.base_url(), Some(sim.addr().to_string()))
        }
    };
    let provider: Arc<dyn SmsProvider> = Arc::new(
        SimulatorProvider::new(&base_url, api.expose(), DEFAULT_PROVIDER)
            .map_err(|e| format!("bad simulator URL {base_url}: {e}"))?,
    );
    let gateway = Gateway::new(
        vec![Member {
            name: DEFAULT_PROVIDER.to_owned(),
            provider,
            messages_per_second: None,
            price_per_part: None,
        }],
        Vec::new(),
        BreakerConfig::default(),
    )
    .map_err(|e| e.to_string())?
    .with_limits(limits);
    let mut webhooks: HashMap<String, Arc<dyn ReceiptWebhook>> = HashMap::new();
    webhooks.insert(
        DEFAULT_PROVIDER.to_owned(),
        Arc::new(SimulatorReceipts::new(receipt)),
    );
    Ok(routes::Providers {
        gateway: Arc::new(gateway),
        webhooks,
        simulators: sim_addr
            .map(|a| vec![(DEFAULT_PROVIDER.to_owned(), a)])
            .unwrap_or_default(),
    })
}

/// The provider name of the built-in simulator when there is no route table.
const DEFAULT_PROVIDER: &str = "simulator";
/// The built-in simulator's memory of accepted messages, in the data directory.
const SIMULATOR_JOURNAL: &str = "simulator.journal";

/// `GET /metrics`: the process's counters and latency histograms in Prometheus' text format
/// ([`holub_shared::services::metrics`]), behind `token` if one is set.
fn metrics_route(token: Option<String>) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let token = std::sync::Arc::new(token);
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let token = token.clone();
            async move {
                if let Some(expected) = token.as_deref() {
                    let given = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    let same = given.len() == expected.len()
                        && given
                            .bytes()
                            .zip(expected.bytes())
                            .fold(0u8, |d, (a, b)| d | (a ^ b))
                            == 0;
                    if !same {
                        return (StatusCode::UNAUTHORIZED, "a metrics token is needed\n")
                            .into_response();
                    }
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    holub_shared::services::metrics::global().prometheus(),
                )
                    .into_response()
            }
        }),
    )
}
