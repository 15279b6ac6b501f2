//! The writer thread and its group commit.
//!
//! Each write request is a closure over the write connection. The thread blocks for the first
//! request, drains whatever else is already queued (up to [`MAX_GROUP`]), and runs them in one
//! transaction, each inside its own savepoint: a request that fails is rolled back to its
//! savepoint and answered with its error, the others go on. One `COMMIT` (one `fsync` with
//! `synchronous=FULL`) then covers the whole group, and only after it are the callers
//! answered. If the commit itself fails, every request of the group gets the error: none of
//! them was applied.
//!
//! A failed group (a full disk, an I/O error) must not outlive itself: the next group starts
//! from a clean connection, and nothing that happens while a group runs — not even a panic —
//! ends the thread, since every later write would then find the writer gone and the store
//! would stay unavailable until a restart.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::error::{BackendError, Failure};

/// The most requests committed together.
pub(super) const MAX_GROUP: usize = 1000;

/// One write request, type-erased so that requests of all result types share the channel.
pub(super) trait Job: Send {
    /// Runs the work inside the request's savepoint; `false` if it failed (the savepoint is
    /// then rolled back).
    fn run(&mut self, conn: &Connection) -> bool;

    /// Answers the caller once the group's fate is known: `None` if it was committed, else
    /// why the group as a whole failed.
    fn finish(self: Box<Self>, group_failure: Option<&str>);
}

/// A request whose closure produces a `T`.
pub(super) struct Request<T, F> {
    work: Option<F>,
    outcome: Option<Result<T, Failure>>,
    reply: oneshot::Sender<Result<T, Failure>>,
}

impl<T, F> Request<T, F> {
    pub(super) fn new(work: F, reply: oneshot::Sender<Result<T, Failure>>) -> Self {
        Request {
            work: Some(work),
            outcome: None,
            reply,
        }
    }
}

impl<T, F> Job for Request<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, Failure> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = match self.work.take() {
            // A panic in a request must not take the writer (and every other caller) down.
            Some(work) => catch_unwind(AssertUnwindSafe(|| work(conn)))
                .unwrap_or_else(|_| Err(Failure::Unavailable(BackendError::Panicked))),
            None => Err(Failure::Unavailable(BackendError::Panicked)),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, group_failure: Option<&str>) {
        let answer = match (self.outcome, group_failure) {
            // Its own failure stands: it was rolled back whatever happened to the group.
            (Some(Err(failure)), _) => Err(failure),
            (_, Some(why)) => Err(Failure::Unavailable(BackendError::Commit(why.to_owned()))),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(Failure::Unavailable(BackendError::Commit(
                "the request was not run".to_owned(),
            ))),
        };
        // The caller may have gone away (a dropped future); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// The writer thread's body: runs groups until every sender is gone, then closes.
pub(super) fn run(conn: Connection, requests: mpsc::Receiver<Box<dyn Job>>) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(64);
    while let Ok(first) = requests.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match requests.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if catch_unwind(AssertUnwindSafe(|| run_group(&conn, &mut group))).is_err() {
            // Those not answered yet are answered by dropping their reply channels: the
            // write is unavailable, and the caller may try again.
            group.clear();
            // Not logged: the panic may have come from the log itself.
            let _ = end_transaction(&conn);
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!(error = %e, "PRAGMA optimize failed at close");
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(error = %e, "closing the SQLite write connection failed");
    }
}

/// Runs one group and answers each of its callers.
fn run_group(conn: &Connection, group: &mut Vec<Box<dyn Job>>) {
    let failure = commit_group(conn, group).err();
    if let Some(why) = &failure {
        tracing::warn!(requests = group.len(), error = %why, "SQLite group commit failed");
    }
    for job in group.drain(..) {
        job.finish(failure.as_deref());
    }
}

/// Rolls back a transaction that is still open, so the next `BEGIN` can start.
fn end_transaction(conn: &Connection) -> rusqlite::Result<()> {
    if conn.is_autocommit() {
        return Ok(());
    }
    conn.execute_batch("ROLLBACK")
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs every job of the group in one transaction; `Err` if the group could not be committed.
fn commit_group(conn: &Connection, group: &mut [Box<dyn Job>]) -> Result<(), String> {
    // A ROLLBACK that failed last time (the disk was full for it too) left a transaction
    // open; without this, every BEGIN from now on would fail.
    end_transaction(conn).map_err(|e| format!("a failed transaction is still open: {e}"))?;
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| e.to_string())?;
    let abort = |why: String| match end_transaction(conn) {
        Ok(()) => why,
        Err(e) => format!("{why}; rolling back failed too: {e}"),
    };
    for job in group.iter_mut() {
        exec(conn, "SAVEPOINT request").map_err(|e| abort(e.to_string()))?;
        let ended = if job.run(conn) {
            exec(conn, "RELEASE request")
        } else {
            exec(conn, "ROLLBACK TO request").and_then(|()| exec(conn, "RELEASE request"))
        };
        ended.map_err(|e| abort(e.to_string()))?;
        // Some errors (disk full, I/O) make SQLite roll back the whole transaction by itself;
        // then what the earlier requests did is gone too, and the group must fail.
        if conn.is_autocommit() {
            return Err("the transaction was rolled back by SQLite".to_owned());
        }
    }
    exec(conn, "COMMIT").map_err(|e| abort(e.to_string()))
}
