//! The simulator's memory across restarts: every message it accepted, one JSON line each,
//! written before the send request is answered.
//!
//! A real provider does not forget a message because the client crashed, and neither may
//! the simulator that `holub serve` runs in its own process: after a `SIGKILL` and a restart
//! it must still answer a lookup by client id (so a message left in `sending` is found, not
//! sent again) and a status query (so a receipt pushed while Holub was down is settled).
//! The write goes to the page cache with one `write` per request, so it survives the
//! process being killed (not the machine losing power, which a simulator need not survive).
//!
//! On open, entries older than [`KEEP`] (longer than any validity) are dropped and the file
//! is rewritten without them; a torn last line (the process died inside a `write`) is
//! skipped: its send was never answered, so the client will look it up or send it again.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long an accepted message is remembered: three days, the longest validity any
/// provider takes.
pub const KEEP: chrono::TimeDelta = chrono::TimeDelta::days(3);

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The canonical client id.
    #[serde(rename = "c")]
    pub client_id: String,
    #[serde(rename = "m")]
    pub message_id: String,
    /// Kopiykas.
    pub cost: i64,
    pub parts: u16,
    /// The final state it reaches (`DELIVRD`, `UNDELIV`, `EXPIRED`).
    #[serde(rename = "o")]
    pub outcome: String,
    /// When it reaches it.
    pub done: DateTime<Utc>,
}

/// An append-only file of [`Entry`] lines.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns what it remembers that is
    /// younger than [`KEEP`] at `now`, oldest first.
    pub fn open(path: &Path, now: DateTime<Utc>) -> io::Result<(Journal, Vec<Entry>)> {
        let kept = match File::open(path) {
            Ok(file) => read(file, now)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // Rewritten whole, then renamed over the old one: a crash here leaves one or the
        // other, never half of each.
        let fresh = path.with_extension("compacting");
        {
            let mut out = io::BufWriter::new(File::create(&fresh)?);
            for entry in &kept {
                serde_json::to_writer(&mut out, entry)?;
                out.write_all(b"\n")?;
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&fresh, path)?;
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
            kept,
        ))
    }

    /// Appends `entries` with one write.
    pub fn append(&self, entries: &[Entry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::with_capacity(entries.len() * 160);
        for entry in entries {
            serde_json::to_writer(&mut buffer, entry)?;
            buffer.push(b'\n');
        }
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(&buffer)
    }
}

fn read(file: File, now: DateTime<Utc>) -> io::Result<Vec<Entry>> {
    let oldest = now - KEEP;
    let mut kept = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(entry) if entry.done >= oldest => kept.push(entry),
            Ok(_) => {}
            Err(_) if line.is_empty() => {}
            Err(e) => tracing::warn!(error = %e, "simulator journal: an unreadable line skipped"),
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client_id: &str, done: DateTime<Utc>) -> Entry {
        Entry {
            client_id: client_id.to_owned(),
            message_id: format!("sim-{client_id}"),
            cost: 85,
            parts: 1,
            outcome: "DELIVRD".to_owned(),
            done,
        }
    }

    #[test]
    fn what_was_appended_is_read_back_and_old_or_torn_lines_are_dropped() -> io::Result<()> {
        let now = Utc::now();
        let dir = std::env::temp_dir().join(format!(
            "holub-sim-journal-{}",
            holub_shared::domain::MessageId::generate(now)
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("sim.journal");
        let (journal, found) = Journal::open(&path, now)?;
        assert!(found.is_empty());
        let (fresh, stale) = (entry("A", now), entry("B", now - KEEP - KEEP));
        journal.append(&[fresh.clone(), stale])?;
        journal.append(&[])?;
        drop(journal);
        // A write the process died inside.
        OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(br#"{"c":"C","m":"sim-C","co"#)?;

        let (journal, found) = Journal::open(&path, now)?;
        assert_eq!(found, std::slice::from_ref(&fresh));
        let later = entry("D", now);
        journal.append(std::slice::from_ref(&later))?;
        let (_, found) = Journal::open(&path, now)?;
        assert_eq!(
            found,
            [fresh, later],
            "the torn line is gone, the next one kept"
        );
        std::fs::remove_dir_all(&dir)
    }
}
