//! `holub tenant create --name NAME [--data-dir DIR]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use holub_shared::ports::SystemClock;
use holub_shared::services::Accounts;

use crate::backend::Backend;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a tenant and print its id, API key and webhook signing secret (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
        data_dir: PathBuf,
    },
}

pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Create { name, data_dir } => {
            let backend = match Backend::open(&data_dir, Default::default()) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("holub: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let accounts =
                Accounts::new(backend.tenants(), backend.secrets(), Arc::new(SystemClock));
            let created = accounts.create_tenant(&name).await;
            backend.close().await;
            match created {
                Ok(t) => {
                    println!("{}", serde_json::to_string(&t).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("holub: cannot create the tenant: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
