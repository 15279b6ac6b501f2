//! `holub simulator`: the provider simulator as a process of its own, so that it outlives a
//! `holub serve` that is killed and restarted (the crash tests count sends across restarts).

use std::process::ExitCode;

use crate::serve::SimulatorArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, env = "HOLUB_SIMULATOR_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Where to POST delivery receipts: Holub's `/v1/receipts/simulator`.
    #[arg(long, env = "HOLUB_SIMULATOR_RECEIPTS_URL")]
    receipts_url: String,
    #[arg(long, env = "HOLUB_SIMULATOR_API_TOKEN")]
    api_token: String,
    #[arg(long, env = "HOLUB_SIMULATOR_RECEIPT_TOKEN")]
    receipt_token: String,
    /// A file that keeps what the simulator accepted across its restarts.
    #[arg(long, env = "HOLUB_SIMULATOR_JOURNAL")]
    journal: Option<std::path::PathBuf>,
    #[command(flatten)]
    sim: SimulatorArgs,
}

pub async fn run(args: Args) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("holub: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("{}", serde_json::json!({ "listening": addr }));
    let config = holub_simulator::SimulatorConfig {
        journal: args.journal,
        ..args
            .sim
            .config(args.receipts_url, args.api_token, args.receipt_token)
    };
    match holub_simulator::serve(listener, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holub: the simulator failed: {e}");
            ExitCode::FAILURE
        }
    }
}
