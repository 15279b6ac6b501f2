//! The log: `tracing` to standard error, written so that a failing standard error never
//! fails anything else.
//!
//! Standard error is often a file on the data disk (`holub serve >> holub-data/holub.log`).
//! When that disk is full, every write to it fails. `tracing-subscriber` reports a failed
//! write with `eprintln!`, and `eprintln!` panics when standard error fails — in whichever
//! thread logged: a request handler lost its connection without an answer, and the SQLite
//! writer thread, logging its failed commit, died and left the store unavailable until a
//! restart. So a line that cannot be written is dropped and counted, and the count is
//! written first once standard error takes lines again.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

/// Lines that could not be written since the last one that could.
static LOST: AtomicU64 = AtomicU64::new(0);

/// Installs the global subscriber: the `RUST_LOG` filter (default `info`) to standard error.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(|| LossyStderr)
        // Its own report of a failed write is an `eprintln!`, the very panic to avoid.
        .log_internal_errors(false)
        .init();
}

/// Standard error that takes every line, writing what it can.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut stderr = io::stderr().lock();
        let lost = LOST.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let notice = format!(
                "holub: {lost} log lines were lost while standard error could not be written\n"
            );
            if stderr.write_all(notice.as_bytes()).is_err() {
                LOST.fetch_add(lost + 1, Ordering::Relaxed);
                return Ok(line.len());
            }
        }
        if stderr.write_all(line).is_err() {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Standard error is unbuffered; a failed flush would only be another lost line.
        let _ = io::stderr().flush();
        Ok(())
    }
}
