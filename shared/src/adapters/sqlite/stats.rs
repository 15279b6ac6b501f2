//! [`StatsStore`] on SQLite: the rollup folds the outbox into `stats`. The outbox is written
//! in the same write as what it tells of: `stats_new` holds one span of `messages.seq` per
//! insert (the rows of one writer request are consecutive), `stats_pending` the messages a
//! transition changed (see `store.rs`). A row per inserted message would cost every insert
//! a second B-tree write; a span costs a batch one.
//!
//! A run takes the oldest span or pending messages, and for each message subtracts the
//! contribution last folded in (kept in `messages.rolled`) and adds its current one; the
//! cells, the new `rolled` values and the outbox rows taken are one write. A run that dies
//! changes nothing; a message seen twice (in a span and pending, or pending again after a
//! run) is folded from what was last folded, so nothing is ever counted twice. Storing what
//! was added, rather than recomputing it, also keeps the subtraction exact if the way
//! contributions are computed ever changes.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteBackend;
use super::codec::{column, encoding_from, from_nanos, parse, sql_int, to_u16};
use super::error::Failure;
use crate::domain::stats::{Contribution, Counters, Deltas, Hour, Snapshot, StatsKey};
use crate::domain::{BatchId, MessageStatus, Operator, SenderId, StatusChange, TenantId};
use crate::ports::{Rolled, StatsStore, StoreError};

/// The columns a contribution is made of, after the message's `seq` (see [`snapshot`]).
macro_rules! folded_columns {
    () => {
        "m.tenant_id, m.created_at, m.provider, m.operator, m.sender, m.batch_id, m.encoding, \
         m.segments, m.status, m.cost, m.history, m.rolled, m.clicks, m.bot_clicks"
    };
}

const PENDING: &str = concat!(
    "SELECT p.message, ",
    folded_columns!(),
    " FROM stats_pending AS p LEFT JOIN messages AS m ON m.seq = p.message \
     ORDER BY p.message LIMIT ?1"
);

const OLDEST_SPAN: &str = "SELECT rowid, first, last FROM stats_new ORDER BY rowid LIMIT 1";
const SPAN: &str = concat!(
    "SELECT m.seq, ",
    folded_columns!(),
    " FROM messages AS m WHERE m.seq BETWEEN ?1 AND ?2 ORDER BY m.seq"
);
const SHRINK_SPAN: &str = "UPDATE stats_new SET first = ?2 WHERE rowid = ?1";
const SPAN_DONE: &str = "DELETE FROM stats_new WHERE rowid = ?1";

const SET_ROLLED: &str = "UPDATE messages SET rolled = ?2 WHERE seq = ?1";
const DONE: &str = "DELETE FROM stats_pending WHERE message = ?1";
const CELL: &str = "SELECT counters FROM stats WHERE tenant_id = ?1 AND cell = ?2";
const PUT_CELL: &str = "INSERT INTO stats (tenant_id, cell, counters) VALUES (?1, ?2, ?3) \
     ON CONFLICT (tenant_id, cell) DO UPDATE SET counters = excluded.counters";
const DROP_CELL: &str = "DELETE FROM stats WHERE tenant_id = ?1 AND cell = ?2";
const FIRST_CELL: &str = "SELECT cell FROM stats WHERE tenant_id = ?1 ORDER BY cell LIMIT 1";
const LAST_CELL: &str = "SELECT cell FROM stats WHERE tenant_id = ?1 ORDER BY cell DESC LIMIT 1";
const CELLS: &str = "SELECT cell, counters FROM stats \
     WHERE tenant_id = ?1 AND cell >= ?2 AND cell < ?3 ORDER BY cell";

/// The rollup's and the reports' queries, for the test that checks their plans.
#[cfg(test)]
pub(super) const QUERIES_FOR_TESTS: [&str; 6] = [PENDING, SPAN, CELLS, CELL, FIRST_CELL, LAST_CELL];

/// Pending messages folded per write: the writer is held for one chunk at a time.
const CHUNK: usize = 1000;

fn corrupt(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Corrupt(format!("{what}: {e}"))
}

/// A contribution as `messages.rolled` keeps it: `<cell>\t<counters JSON>`.
fn encode_rolled(c: &Contribution) -> Result<String, Failure> {
    let counters = serde_json::to_string(&c.counters).map_err(|e| corrupt("counters", e))?;
    Ok(format!("{}\t{counters}", c.key.encode()))
}

fn decode_rolled(tenant: &TenantId, s: &str) -> Result<Contribution, Failure> {
    let (cell, counters) = s
        .split_once('\t')
        .ok_or_else(|| corrupt("rolled", "no tab"))?;
    Ok(Contribution {
        tenant_id: tenant.clone(),
        key: StatsKey::decode(cell).map_err(|e| corrupt("rolled", e))?,
        counters: serde_json::from_str(counters).map_err(|e| corrupt("rolled", e))?,
    })
}

/// The snapshot of a pending row's message (columns 1 to 11, 13 and 14 of [`PENDING`]).
fn snapshot(row: &rusqlite::Row<'_>) -> Result<Snapshot, Failure> {
    let tenant: String = column(row, 1, "tenant_id")?;
    let operator: Option<String> = column(row, 4, "operator")?;
    let sender: String = column(row, 5, "sender")?;
    let batch: Option<String> = column(row, 6, "batch_id")?;
    let encoding: String = column(row, 7, "encoding")?;
    let status: String = column(row, 9, "status")?;
    let history: String = column(row, 11, "history")?;
    let history: Vec<StatusChange> =
        serde_json::from_str(&history).map_err(|e| corrupt("history", e))?;
    let (sent_at, delivered_at) = Snapshot::moments(history.iter().map(|c| (c.status, c.at)));
    Ok(Snapshot {
        tenant_id: parse::<TenantId>(&tenant, "tenant id")?,
        created_at: from_nanos(column(row, 2, "created_at")?),
        provider: column(row, 3, "provider")?,
        operator: operator
            .as_deref()
            .map(|o| parse::<Operator>(o, "operator"))
            .transpose()?,
        sender: SenderId::parse(&sender).map_err(|e| corrupt("sender", e))?,
        batch_id: batch
            .as_deref()
            .map(|b| parse::<BatchId>(b, "batch id"))
            .transpose()?,
        encoding: encoding_from(&encoding)?,
        segments: to_u16(column(row, 8, "segments")?, "segments")?,
        status: parse::<MessageStatus>(&status, "status")?,
        cost: column(row, 10, "cost")?,
        sent_at,
        delivered_at,
        clicks: u32::try_from(column::<i64>(row, 13, "clicks")?)
            .map_err(|e| corrupt("clicks", e))?,
        bot_clicks: u32::try_from(column::<i64>(row, 14, "bot_clicks")?)
            .map_err(|e| corrupt("bot clicks", e))?,
    })
}

/// What [`fold_rows`] read: every `seq`, and the `rolled` values to store by `seq`.
struct Folded {
    seen: Vec<i64>,
    updates: Vec<(i64, String)>,
}

/// Folds the rows of a query of `seq` and [`folded_columns!`] into `deltas`.
fn fold_rows(
    mut rows: rusqlite::Rows<'_>,
    deltas: &mut Deltas,
    rolled: &mut Rolled,
) -> Result<Folded, Failure> {
    let mut seen = Vec::new();
    let mut updates = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = column(row, 0, "message")?;
        seen.push(seq);
        // A message forgotten since (retention): its contribution stays in the totals.
        let tenant: Option<String> = column(row, 1, "tenant_id")?;
        if tenant.is_none() {
            continue;
        }
        let folded = snapshot(row).and_then(|now| {
            let old: Option<String> = column(row, 12, "rolled")?;
            let old = old
                .as_deref()
                .map(|o| decode_rolled(&now.tenant_id, o))
                .transpose()?;
            Ok((old, now.contribution()))
        });
        match folded {
            Ok((old, new)) => {
                if old.as_ref() != Some(&new) {
                    if let Some(old) = &old {
                        deltas.add(old, -1);
                    }
                    deltas.add(&new, 1);
                    updates.push((seq, encode_rolled(&new)?));
                }
                rolled.events += 1;
            }
            Err(e) => {
                // A retry would not make it readable; counted and logged, not stuck.
                tracing::warn!(message_seq = seq, error = ?e, "an unreadable message skipped by the rollup");
                rolled.unreadable += 1;
            }
        }
    }
    Ok(Folded { seen, updates })
}

/// One chunk of the rollup, inside the writer: the oldest span of new messages, else the
/// oldest pending ones. What it folded, and whether more may be waiting.
fn roll_chunk(conn: &Connection, limit: usize) -> Result<(Rolled, bool), Failure> {
    let mut rolled = Rolled::default();
    let mut deltas = Deltas::default();
    let span: Option<(i64, i64, i64)> = conn
        .prepare_cached(OLDEST_SPAN)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (updates, more) = match span {
        Some((rowid, first, last)) => {
            let end = last.min(first.saturating_add(sql_int(limit) - 1));
            let mut stmt = conn.prepare_cached(SPAN)?;
            let folded = fold_rows(stmt.query(params![first, end])?, &mut deltas, &mut rolled)?;
            if end >= last {
                conn.prepare_cached(SPAN_DONE)?.execute(params![rowid])?;
            } else {
                conn.prepare_cached(SHRINK_SPAN)?
                    .execute(params![rowid, end + 1])?;
            }
            (folded.updates, true)
        }
        None => {
            let mut stmt = conn.prepare_cached(PENDING)?;
            let folded = fold_rows(
                stmt.query(params![sql_int(limit)])?,
                &mut deltas,
                &mut rolled,
            )?;
            // Every pending row read is done, whether its message changed or still exists.
            let mut done = conn.prepare_cached(DONE)?;
            for seq in &folded.seen {
                done.execute(params![seq])?;
            }
            (folded.updates, folded.seen.len() == limit)
        }
    };
    let mut set_rolled = conn.prepare_cached(SET_ROLLED)?;
    for (seq, value) in &updates {
        set_rolled.execute(params![seq, value])?;
    }
    let mut read = conn.prepare_cached(CELL)?;
    let mut put = conn.prepare_cached(PUT_CELL)?;
    let mut drop_cell = conn.prepare_cached(DROP_CELL)?;
    for ((tenant, key), delta) in deltas.into_cells() {
        let cell = key.encode();
        let stored: Option<String> = read
            .query_row(params![tenant.as_str(), cell], |r| r.get(0))
            .optional()?;
        let mut counters: Counters = match stored {
            Some(json) => serde_json::from_str(&json).map_err(|e| corrupt("stats", e))?,
            None => Counters::default(),
        };
        counters.add(&delta, 1);
        if counters.is_zero() {
            drop_cell.execute(params![tenant.as_str(), cell])?;
        } else {
            let json = serde_json::to_string(&counters).map_err(|e| corrupt("stats", e))?;
            put.execute(params![tenant.as_str(), cell, json])?;
        }
    }
    Ok((rolled, more))
}

#[async_trait]
impl StatsStore for SqliteBackend {
    async fn roll_up(&self, budget: usize) -> Result<Rolled, StoreError> {
        let mut total = Rolled::default();
        let mut left = budget.max(1);
        loop {
            let limit = left.min(CHUNK);
            let (rolled, more) = self.db.write(move |conn| roll_chunk(conn, limit)).await?;
            total.events += rolled.events;
            total.unreadable += rolled.unreadable;
            left = left.saturating_sub(limit);
            if !more || left == 0 {
                return Ok(total);
            }
        }
    }

    async fn extent(&self, tenant: &TenantId) -> Result<Option<(Hour, Hour)>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        let cells: Option<(String, String)> = self
            .db
            .read(move |conn| {
                let first: Option<String> = conn
                    .prepare_cached(FIRST_CELL)?
                    .query_row(params![tenant], |r| r.get(0))
                    .optional()?;
                let last: Option<String> = conn
                    .prepare_cached(LAST_CELL)?
                    .query_row(params![tenant], |r| r.get(0))
                    .optional()?;
                Ok(first.zip(last))
            })
            .await?;
        let hour = |cell: &str| StatsKey::hour_of(cell).map_err(|e| corrupt("stats", e));
        cells
            .map(|(first, last)| Ok((hour(&first)?, hour(&last)?)))
            .transpose()
            .map_err(|e: Failure| e.into())
    }

    async fn stats(
        &self,
        tenant: &TenantId,
        from: Hour,
        to: Hour,
    ) -> Result<Vec<(StatsKey, Counters)>, StoreError> {
        if to <= from {
            return Ok(Vec::new());
        }
        let (tenant, low, high) = (
            tenant.as_str().to_owned(),
            StatsKey::hour_prefix(from),
            StatsKey::hour_prefix(to),
        );
        let rows: Vec<(String, String)> = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(CELLS)?;
                let rows = stmt
                    .query_map(params![tenant, low, high], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter()
            .map(|(cell, counters)| {
                let key = StatsKey::decode(&cell).map_err(|e| corrupt("stats", e))?;
                let counters = serde_json::from_str(&counters).map_err(|e| corrupt("stats", e))?;
                Ok((key, counters))
            })
            .collect::<Result<_, Failure>>()
            .map_err(Into::into)
    }
}
