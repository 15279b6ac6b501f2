//! The errors below the ports and how they become the ports' errors. A leaf: it imports
//! nothing from the other modules of the adapter, so each of them can import it.

use crate::ports::{QueueError, StoreError};

/// What went wrong below the ports, as the boxed source of their `Unavailable` errors.
#[derive(Debug, thiserror::Error)]
pub(super) enum BackendError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("the SQLite writer thread has stopped")]
    WriterStopped,
    #[error("the group commit failed: {0}")]
    Commit(String),
    #[error("a database request panicked")]
    Panicked,
    #[error("a database task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// The outcome of a database request, mapped to [`StoreError`] or [`QueueError`] at the port.
#[derive(Debug)]
pub(super) enum Failure {
    Unavailable(BackendError),
    IdempotencyKeyTaken,
    AlreadyExists,
    NotFound,
    Corrupt(String),
    StaleHandle,
    /// A sealed row of a tenant whose data key was erased.
    Erased,
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Unavailable(BackendError::Sqlite(e))
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable(e) => StoreError::Unavailable(Box::new(e)),
            Failure::IdempotencyKeyTaken => StoreError::IdempotencyKeyTaken,
            Failure::AlreadyExists => StoreError::AlreadyExists,
            Failure::NotFound => StoreError::NotFound,
            Failure::Corrupt(why) => StoreError::Corrupt(why),
            Failure::StaleHandle => StoreError::Corrupt("unexpected stale queue handle".into()),
            Failure::Erased => StoreError::Erased,
        }
    }
}

impl From<Failure> for QueueError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Unavailable(e) => QueueError::Unavailable(Box::new(e)),
            Failure::StaleHandle => QueueError::StaleHandle,
            Failure::Corrupt(why) => QueueError::Unavailable(Box::new(BackendError::Other(
                format!("stored queue data is corrupt: {why}"),
            ))),
            Failure::IdempotencyKeyTaken
            | Failure::AlreadyExists
            | Failure::NotFound
            | Failure::Erased => QueueError::Unavailable(Box::new(BackendError::Other(
                "unexpected constraint violation in the queue".into(),
            ))),
        }
    }
}

/// Whether `e` is a constraint violation (a unique or primary key taken).
pub(super) fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}
