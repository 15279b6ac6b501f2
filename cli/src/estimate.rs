//! `holub estimate [--transliterate] TEXT`

use std::process::ExitCode;

use holub_shared::domain::TextEstimate;

#[derive(clap::Args)]
pub struct Args {
    /// Turn Ukrainian Cyrillic into Latin (official table of 2010) so the text can go as GSM-7.
    #[arg(long)]
    transliterate: bool,
    /// The message text (quote it).
    text: String,
}

pub fn run(args: Args) -> ExitCode {
    let estimate = TextEstimate::of(&args.text, args.transliterate);
    match serde_json::to_string(&estimate) {
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
