//! `holub tenant create | add-key | revoke-key`, on this machine's data directory or, with
//! `--aws`, in a deployment on AWS.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use holub_shared::domain::TenantId;
use holub_shared::runtime::Ports;
use holub_shared::services::Accounts;

use crate::backend::Backend;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a tenant and print its id, API key and webhook signing secret (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        at: Where,
    },
    /// Give a tenant another API key (printed once), e.g. to rotate one: add, switch, revoke.
    AddKey {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        at: Where,
    },
    /// Revoke an API key, read from standard input (so it stays out of shell history) unless
    /// given with --key. Refused at once here, and everywhere within 30 seconds.
    RevokeKey {
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        at: Where,
    },
}

/// Which Holub the command acts on.
#[derive(clap::Args)]
pub struct Where {
    #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
    data_dir: PathBuf,
    /// A deployment on AWS instead: DynamoDB and Secrets Manager named by the same HOLUB_*
    /// environment variables the functions read (see docs/deploy.md).
    #[arg(long)]
    aws: bool,
}

pub async fn run(command: Command) -> ExitCode {
    let at = match &command {
        Command::Create { at, .. } | Command::AddKey { at, .. } | Command::RevokeKey { at, .. } => {
            at
        }
    };
    let (ports, local) = if at.aws {
        match holub_shared::adapters::aws::backend_from_env().await {
            Ok(aws) => (Ports::aws(&aws), None),
            Err(e) => return fail(e),
        }
    } else {
        match Backend::open(&at.data_dir, Default::default()) {
            Ok(b) => (b.ports(), Some(b)),
            Err(e) => return fail(e),
        }
    };
    let accounts = Accounts::new(
        ports.tenants.clone(),
        ports.secrets.clone(),
        ports.clock.clone(),
    );
    let code = act(&accounts, command).await;
    drop((accounts, ports));
    if let Some(backend) = local {
        backend.close().await;
    }
    code
}

async fn act(accounts: &Accounts, command: Command) -> ExitCode {
    match command {
        Command::Create { name, .. } => match accounts.create_tenant(&name).await {
            Ok(t) => print(&t),
            Err(e) => fail(format!("cannot create the tenant: {e}")),
        },
        Command::AddKey { tenant, .. } => {
            let Ok(tenant) = tenant.parse::<TenantId>() else {
                return fail(format!("{tenant:?} is not a tenant id"));
            };
            match accounts.add_key(&tenant).await {
                Ok(api_key) => {
                    print(&serde_json::json!({"tenant_id": tenant.as_str(), "api_key": api_key}))
                }
                Err(e) => fail(format!("cannot add a key: {e}")),
            }
        }
        Command::RevokeKey { key, .. } => {
            let key = match key {
                Some(key) => key,
                None => {
                    let mut key = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut key) {
                        return fail(format!("cannot read the key from standard input: {e}"));
                    }
                    key
                }
            };
            match accounts.revoke_key(&key).await {
                Ok(revoked) => print(&serde_json::json!({"revoked": revoked})),
                Err(e) => fail(format!("cannot revoke the key: {e}")),
            }
        }
    }
}

fn print(value: &impl serde::Serialize) -> ExitCode {
    println!("{}", serde_json::to_string(value).unwrap_or_default());
    ExitCode::SUCCESS
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("holub: {e}");
    ExitCode::FAILURE
}
