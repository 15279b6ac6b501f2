//! `holub`: Holub on one machine, and its command-line tools.

mod estimate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Estimate(args) => estimate::run(args),
    }
}
