//! The embedded backend of the single binary: one SQLite file and a secrets file in the data
//! directory.

use std::path::Path;
use std::sync::Arc;

use holub_shared::adapters::file_secrets::FileSecretStore;
use holub_shared::adapters::sqlite::{SqliteBackend, SqliteConfig};
use holub_shared::ports::StoreError;
use holub_shared::runtime::Ports;

pub struct Backend {
    sqlite: SqliteBackend,
    secrets: Arc<FileSecretStore>,
}

impl Backend {
    pub fn open(data_dir: &Path, config: SqliteConfig) -> Result<Self, StoreError> {
        let sqlite = SqliteBackend::open(&data_dir.join("holub.db"), config)?;
        let secrets = Arc::new(FileSecretStore::in_dir(data_dir));
        Ok(Backend { sqlite, secrets })
    }

    /// The ports over this backend, for the composition root.
    pub fn ports(&self) -> Ports {
        Ports::sqlite(&self.sqlite, self.secrets.clone())
    }

    pub async fn close(self) {
        self.sqlite.close().await;
    }
}
