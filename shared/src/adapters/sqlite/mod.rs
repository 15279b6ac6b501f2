//! The embedded backend on one SQLite file (WAL): the message store, the tenant store and a
//! queue with SQS semantics. (Its secrets live beside it, in
//! [`file_secrets`](crate::adapters::file_secrets).)
//!
//! # Why it is built this way
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every commit waits for an
//! `fsync`. A connection per request would serialise on the lock and pay one `fsync` per
//! request, far below the throughput Holub needs. So:
//!
//! - **One writer thread** owns the only read-write connection. Every write is a request on a
//!   channel; the thread takes the first pending request, drains what else is queued (up to
//!   1000 requests), runs each inside its own `SAVEPOINT` (a failing request
//!   is rolled back alone and gets its own error) and commits them all at once: one `fsync`
//!   for the whole group (*group commit*). Callers are answered only after the commit, so an
//!   `Ok` always means durable (with [`SyncMode::Full`]).
//! - **Reads** use a small pool of read-only connections on the blocking thread pool; in WAL
//!   mode they never wait for the writer and always see the last commit.
//! - Writes that must read what they change (conditional transitions, queue receives, receipt
//!   lists) run entirely inside the writer (`UPDATE … RETURNING`), so they are atomic without
//!   locks in Rust. Batch APIs are one request per call, never one per item.
//! - Rows are turned into domain values (phone parsing, JSON) outside the writer thread, so
//!   the single thread that everything funnels through spends its time on SQLite only.
//!
//! Timestamps of messages are stored as integer nanoseconds since the Unix epoch (exact round
//! trips, cheap comparisons; the years 1677–2262 are representable). The queue keeps its own
//! clock in milliseconds of wall time.
//!
//! A database file must not be shared by two [`SqliteBackend`]s that both write (each would
//! have a writer thread; SQLite would keep them correct but they would wait on each other's
//! lock). `:memory:` databases are not supported: the readers need the same file.

mod campaigns;
mod codec;
mod consent;
mod contacts;
mod counters;
mod db;
mod error;
mod keys;
mod provider_limits;
mod queue;
mod replays;
mod schema;
mod stats;
mod store;
mod templates;
mod tenants;
#[cfg(test)]
mod tests;
mod users;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use queue::MAX_QUEUE_BODY_BYTES;

use crate::adapters::file_secrets::FileSecretStore;
use crate::adapters::vault::{KeyWrapper, LocalMasterKey, Vault};
use crate::ports::StoreError;

/// How hard SQLite works to make a commit survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=FULL`: a commit is on disk when it returns; survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, but the last commits may be
    /// lost on power loss. Faster; for tests and benchmarks of the code rather than the disk.
    Normal,
}

/// Settings of a [`SqliteBackend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    pub sync: SyncMode,
    /// A queue message that has already been received this many times is moved to the
    /// dead-letter table instead of being delivered again (SQS's `maxReceiveCount`). At
    /// least 1.
    pub max_receives: u32,
    /// Read-only connections in the pool (at least 1).
    pub readers: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            sync: SyncMode::Full,
            max_receives: 5,
            readers: 4,
        }
    }
}

/// The SQLite backend: [`MessageStore`](crate::ports::MessageStore),
/// [`TenantStore`](crate::ports::TenantStore) and [`Queue`](crate::ports::Queue) over one
/// database file. Cheap to clone; all clones share the writer thread and the readers. The
/// writer thread stops (after finishing what it was given) when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteBackend {
    db: Arc<db::Db>,
    /// The tenants' data keys, wrapped in `tenant_keys`.
    vault: Arc<Vault>,
}

impl SqliteBackend {
    /// Opens (creating it if needed, with its parent directory) the database at `path`,
    /// migrates its schema, and starts the writer thread. Numbers and texts are sealed under
    /// data keys wrapped by the master key in the secrets file of the same directory (see
    /// [`LocalMasterKey`]).
    pub fn open(path: &Path, config: SqliteConfig) -> Result<Self, StoreError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let master = LocalMasterKey::new(FileSecretStore::in_dir(dir));
        Self::open_with(path, config, Arc::new(master))
    }

    /// As [`SqliteBackend::open`], with data keys wrapped by `master`.
    pub fn open_with(
        path: &Path,
        config: SqliteConfig,
        master: Arc<dyn KeyWrapper>,
    ) -> Result<Self, StoreError> {
        let db = Arc::new(db::Db::open(path, config)?);
        let vault = Arc::new(Vault::new(
            master,
            Arc::new(keys::Shelf(Arc::downgrade(&db))),
        ));
        Ok(SqliteBackend { db, vault })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    pub fn config(&self) -> &SqliteConfig {
        self.db.config()
    }

    /// Drops this handle; if it was the last one, waits (off the async threads) until the
    /// writer has finished its pending requests and closed the database.
    pub async fn close(self) {
        if let Ok(db) = Arc::try_unwrap(self.db) {
            // Joining the writer thread blocks, so it happens on the blocking pool.
            let _ = tokio::task::spawn_blocking(move || drop(db)).await;
        }
    }
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.db.path())
            .field("config", self.db.config())
            .finish()
    }
}
