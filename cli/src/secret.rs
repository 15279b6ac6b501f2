//! `holub secret set NAME VALUE [--data-dir DIR]`: puts a secret (provider credentials) in
//! the local secret store, `<data-dir>/secrets.json`, so it never has to be in a config file.

use std::path::PathBuf;
use std::process::ExitCode;

use holub_shared::adapters::file_secrets::FileSecretStore;
use holub_shared::ports::{Secret, SecretStore};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Store (or replace) a secret. The value is read from VALUE, or from standard input
    /// when VALUE is `-` (so it stays out of the shell history).
    Set {
        name: String,
        value: String,
        #[arg(long, env = "HOLUB_DATA_DIR", default_value = "./holub-data")]
        data_dir: PathBuf,
    },
}

pub async fn run(command: Command) -> ExitCode {
    match command {
        Command::Set {
            name,
            value,
            data_dir,
        } => {
            let value = if value == "-" {
                let mut buf = String::new();
                if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf) {
                    eprintln!("holub: cannot read the secret from standard input: {e}");
                    return ExitCode::FAILURE;
                }
                buf.trim_end_matches(['\n', '\r']).to_owned()
            } else {
                value
            };
            if name.is_empty() || value.is_empty() {
                eprintln!("holub: a secret needs a name and a value");
                return ExitCode::FAILURE;
            }
            if let Err(e) = std::fs::create_dir_all(&data_dir) {
                eprintln!("holub: cannot create {}: {e}", data_dir.display());
                return ExitCode::FAILURE;
            }
            let store = FileSecretStore::in_dir(&data_dir);
            match store.put(&name, &Secret::new(value)).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("holub: cannot store the secret: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
