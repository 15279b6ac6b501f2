//! `holub`: Holub on one machine, and its command-line tools.

mod backend;
mod contacts;
mod dlq;
mod estimate;
mod logging;
mod report;
mod routes;
mod secret;
mod serve;
mod simulator;
mod tenant;
mod user;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: under `holub serve`'s load (many small allocations
/// freed on other threads) glibc's arenas spent about a fifth of the CPU in malloc, free and
/// the locks between them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "holub", version, about = "Holub: SMS for Ukrainian businesses")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show how a text travels: encoding, characters, units, segments and parts.
    Estimate(estimate::Args),
    /// Run all of Holub on this machine: API, queue, dispatch, receipts, scheduler, callbacks.
    Serve(Box<serve::Args>),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(tenant::Command),
    /// Manage the local secret store (provider credentials).
    #[command(subcommand)]
    Secret(secret::Command),
    /// Run the provider simulator on its own (for `holub serve --simulator-url`).
    Simulator(simulator::Args),
    /// Dead-lettered queue jobs.
    #[command(subcommand)]
    Dlq(dlq::Command),
    /// A tenant's delivery rate, counts, cost and latencies over a range (from the statistics).
    Report(report::Args),
    /// A tenant's contacts: import a CSV file.
    #[command(subcommand)]
    Contacts(contacts::Command),
    /// A tenant's web-console users: make the first owner, list them.
    #[command(subcommand)]
    User(user::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Estimate(args) = cli.command {
        return estimate::run(args);
    }
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("holub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Estimate(_) => ExitCode::SUCCESS,
            Command::Serve(args) => serve::run(*args).await,
            Command::Tenant(command) => tenant::run(command).await,
            Command::Secret(command) => secret::run(command).await,
            Command::Simulator(args) => simulator::run(args).await,
            Command::Dlq(command) => dlq::run(command).await,
            Command::Report(args) => report::run(args).await,
            Command::Contacts(command) => contacts::run(command).await,
            Command::User(command) => user::run(command).await,
        }
    })
}
