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

fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

impl Backend {
    /// Opens (or makes) the data directory, readable by this user alone (0700; its files are
    /// 0600).
    pub fn open(data_dir: &Path, config: SqliteConfig) -> Result<Self, StoreError> {
        private_dir(data_dir).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
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

/// The ports a command acts through: a deployment on AWS (named by the HOLUB_* environment
/// variables the functions read), or this machine's data directory, whose backend the
/// command closes when done.
pub async fn ports(
    aws: bool,
    data_dir: &Path,
    config: SqliteConfig,
) -> Result<(Ports, Option<Backend>), String> {
    if aws {
        let aws = holub_shared::adapters::aws::backend_from_env()
            .await
            .map_err(|e| e.to_string())?;
        Ok((Ports::aws(&aws), None))
    } else {
        let local = Backend::open(data_dir, config).map_err(|e| e.to_string())?;
        Ok((local.ports(), Some(local)))
    }
}

/// Closes what [`ports`] opened on this machine (nothing for AWS), once the command let go
/// of its ports.
pub async fn close(local: Option<Backend>) {
    if let Some(backend) = local {
        backend.close().await;
    }
}
