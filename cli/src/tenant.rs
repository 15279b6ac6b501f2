//! `holub tenant create --name NAME [--data-dir DIR | --aws]`

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
        /// Create it in a deployment on AWS instead: DynamoDB and Secrets Manager named by the
        /// same HOLUB_* environment variables the functions read (see docs/deploy.md).
        #[arg(long)]
        aws: bool,
    },
}

pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Create {
            name, aws: true, ..
        } => {
            let aws = match holub_shared::adapters::aws::backend_from_env().await {
                Ok(aws) => aws,
                Err(e) => {
                    eprintln!("holub: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let accounts = Accounts::new(
                Arc::new(aws.store),
                Arc::new(aws.secrets),
                Arc::new(SystemClock),
            );
            print_created(accounts.create_tenant(&name).await)
        }
        Command::Create { name, data_dir, .. } => {
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
            print_created(created)
        }
    }
}

fn print_created(
    created: Result<holub_shared::services::accounts::NewTenant, impl std::fmt::Display>,
) -> ExitCode {
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
