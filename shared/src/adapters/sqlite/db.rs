//! The database handle: the writer thread's channel and the pool of read-only connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::error::{BackendError, Failure};
use super::writer::{self, Job, Request};
use super::{SqliteConfig, SyncMode, schema};
use crate::ports::QueueName;

/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection (the list query alone has many shapes).
const STATEMENT_CACHE: usize = 256;

pub(super) struct Db {
    path: PathBuf,
    config: SqliteConfig,
    /// `None` only while dropping.
    writer: Option<mpsc::Sender<Box<dyn Job>>>,
    writer_thread: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    /// Signalled when messages may have become visible on a queue, to end long polls early.
    wakeups: [Notify; 3],
}

/// Makes the database's directory (0700, when Holub creates it) and file (0600) readable by
/// this user alone, before SQLite opens it: SQLite gives the WAL and shared-memory files the
/// database file's mode. A database from before is tightened the same way.
fn private_files(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let name = path.as_os_str().to_owned();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = name.clone();
            file.push(suffix);
            let file = Path::new(&file);
            match std::fs::metadata(file) {
                Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl Db {
    pub(super) fn open(path: &Path, mut config: SqliteConfig) -> Result<Db, Failure> {
        config.max_receives = config.max_receives.max(1);
        config.readers = config.readers.max(1);
        private_files(path).map_err(|e| Failure::Unavailable(e.into()))?;

        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Failure::Unavailable(BackendError::Other(format!(
                "SQLite refused WAL mode (journal_mode is {mode})"
            ))));
        }
        let synchronous = match config.sync {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous};
             PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;
             PRAGMA cache_size = -32768;"
        ))?;
        schema::migrate(&conn)?;

        let mut idle = Vec::with_capacity(config.readers);
        for _ in 0..config.readers {
            idle.push(open_reader(path)?);
        }
        let readers = Arc::new(Readers {
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(config.readers)),
        });

        let (sender, receiver) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name("holub-sqlite-writer".into())
            .spawn(move || writer::run(conn, receiver))
            .map_err(|e| Failure::Unavailable(e.into()))?;

        Ok(Db {
            path: path.to_path_buf(),
            config,
            writer: Some(sender),
            writer_thread: Some(writer_thread),
            readers,
            wakeups: [Notify::new(), Notify::new(), Notify::new()],
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn config(&self) -> &SqliteConfig {
        &self.config
    }

    pub(super) fn wakeup(&self, queue: QueueName) -> &Notify {
        match queue {
            QueueName::Dispatch => &self.wakeups[0],
            QueueName::Callbacks => &self.wakeups[1],
            QueueName::Campaigns => &self.wakeups[2],
        }
    }

    /// Runs `work` on the writer thread, inside its own savepoint of the next group commit;
    /// answers after the commit.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Request::new(work, reply));
        self.writer
            .as_ref()
            .ok_or(Failure::Unavailable(BackendError::WriterStopped))?
            .send(job)
            .map_err(|_| Failure::Unavailable(BackendError::WriterStopped))?;
        answer
            .await
            .map_err(|_| Failure::Unavailable(BackendError::WriterStopped))?
    }

    /// Runs `work` on a read-only connection, on the blocking thread pool.
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Failure> + Send + 'static,
    {
        let permit = Arc::clone(&self.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| Failure::Unavailable(BackendError::WriterStopped))?;
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = readers.checkout(permit)?;
            work(&conn)
        })
        .await
        .map_err(|e| Failure::Unavailable(BackendError::Task(e.to_string())))?
    }
}

#[cfg(test)]
impl Db {
    /// Stops the writer thread as if it had died.
    pub(super) fn stop_writer(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what it holds and stop.
        self.writer.take();
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the SQLite writer thread panicked");
        }
    }
}

fn open_reader(path: &Path) -> Result<Connection, Failure> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Idle read-only connections; a semaphore permit guarantees one is there for its holder.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn checkout(&self, permit: OwnedSemaphorePermit) -> Result<Reader<'_>, Failure> {
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .ok_or_else(|| {
                Failure::Unavailable(BackendError::Other("no idle SQLite reader".into()))
            })?;
        Ok(Reader {
            conn: Some(conn),
            pool: self,
            _permit: permit,
        })
    }
}

/// A borrowed reader; goes back to the pool on drop (even if the work panicked), before its
/// permit is released.
struct Reader<'a> {
    conn: Option<Connection>,
    pool: &'a Readers,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Always `Some` until dropped.
        self.conn
            .as_ref()
            .expect("reader connection present until drop")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn);
        }
    }
}
