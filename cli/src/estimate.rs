//! `holub estimate [--transliterate] TEXT`

use std::process::ExitCode;

use holub_shared::domain::{segments, transliteration};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Turn Ukrainian Cyrillic into Latin (official table of 2010) so the text can go as GSM-7.
    #[arg(long)]
    transliterate: bool,
    /// The message text (quote it).
    text: String,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    estimate: &'a segments::Estimate,
    text: &'a str,
}

pub fn run(args: Args) -> ExitCode {
    let text = if args.transliterate {
        transliteration::transliterate(&args.text)
    } else {
        args.text
    };
    let estimate = segments::estimate(&text);
    let output = Output {
        estimate: &estimate,
        text: &text,
    };
    match serde_json::to_string(&output) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("holub: cannot print the estimate: {e}");
            ExitCode::FAILURE
        }
    }
}
