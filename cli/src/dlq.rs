//! `holub dlq redrive`: jobs that failed too often are kept in a dead-letter queue (and, on
//! AWS, raise an alarm); once the cause is fixed, this puts them back on their queue.

use std::path::PathBuf;
use std::process::ExitCode;

use holub_shared::ports::QueueName;

use crate::backend;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Move dead-lettered jobs back onto their queue, each with its receive count started
    /// afresh, and print how many moved.
    Redrive {
        /// `dispatch` or `callbacks`.
        #[arg(long, value_parser = ["dispatch", "callbacks", "campaigns"])]
        queue: String,
        /// Move at most this many.
        #[arg(long, default_value_t = 100_000,
              value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        limit: u64,
        #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
        data_dir: PathBuf,
        /// A deployment on AWS instead: the queues named by the same HOLUB_* environment
        /// variables the functions read (see docs/deploy.md).
        #[arg(long)]
        aws: bool,
    },
}

pub async fn run(command: Command) -> ExitCode {
    let Command::Redrive {
        queue,
        limit,
        data_dir,
        aws,
    } = command;
    let queue = match queue.as_str() {
        "callbacks" => QueueName::Callbacks,
        "campaigns" => QueueName::Campaigns,
        _ => QueueName::Dispatch,
    };
    let (ports, local) = match backend::ports(aws, &data_dir, Default::default()).await {
        Ok(opened) => opened,
        Err(e) => return fail(e),
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let code = match ports.queue.redrive(queue, limit).await {
        Ok(moved) => {
            println!(
                "{}",
                serde_json::json!({"queue": queue.as_str(), "moved": moved})
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("cannot redrive the {} queue: {e}", queue.as_str())),
    };
    drop(ports);
    backend::close(local).await;
    code
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("holub: {e}");
    ExitCode::FAILURE
}
