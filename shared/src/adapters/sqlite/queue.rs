//! [`Queue`] on SQLite, with SQS semantics: at-least-once delivery, a visibility timeout,
//! a receive count, delays, and a dead-letter table after `max_receives` receives.
//!
//! A receipt handle is `<row id>-<128 random bits in hex>`: the row id finds the message by
//! its primary key (no index on handles to maintain), the random part is what a later
//! receive replaces, which makes earlier handles stale.
//!
//! Long polling: a receive that finds nothing waits on a [`Notify`](tokio::sync::Notify)
//! that `send_batch` and `change_visibility` signal in this process, and re-checks every
//! [`RECHECK`] for messages whose delay or visibility timeout has run out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::SqliteBackend;
use super::codec::{column, sql_int};
use super::error::Failure;
use crate::ports::{Delivery, Outgoing, Queue, QueueError, QueueName, ReceiptHandle};

/// The largest body accepted, as on SQS.
pub const MAX_QUEUE_BODY_BYTES: usize = 256 * 1024;

/// How often an idle long poll looks again without being woken.
const RECHECK: Duration = Duration::from_millis(50);

const INSERT: &str = "INSERT INTO queue_messages \
     (queue, body, visible_at, receive_count, receipt, sent_at) VALUES (?1, ?2, ?3, 0, NULL, ?4)";

pub(super) const VISIBLE: &str = "SELECT id, body, receive_count FROM queue_messages \
     WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, id LIMIT ?3";

const TAKE: &str = "UPDATE queue_messages \
     SET visible_at = ?2, receive_count = receive_count + 1, receipt = ?3 WHERE id = ?1";

const BURY: &str = "INSERT INTO dead_letters (queue, body, receive_count, sent_at, dead_at) \
     SELECT queue, body, receive_count, sent_at, ?2 FROM queue_messages WHERE id = ?1";

const DELETE_ONE: &str = "DELETE FROM queue_messages WHERE id = ?1";

const DELETE_BY_HANDLE: &str =
    "DELETE FROM queue_messages WHERE id = ?1 AND queue = ?2 AND receipt = ?3";

const CHANGE_VISIBILITY: &str =
    "UPDATE queue_messages SET visible_at = ?4 WHERE id = ?1 AND queue = ?2 AND receipt = ?3";

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Puts messages on a queue inside the caller's write (the store's outbox uses it, so a job
/// lands with the change it is about). The caller wakes the queue's consumers after the
/// commit.
pub(super) fn enqueue(
    conn: &Connection,
    queue: QueueName,
    messages: &[Outgoing],
) -> Result<(), Failure> {
    let now = now_ms();
    let mut insert = conn.prepare_cached(INSERT)?;
    for m in messages {
        let visible_at = now.saturating_add(duration_ms(m.delay));
        insert.execute(params![queue.as_str(), m.body, visible_at, now])?;
    }
    Ok(())
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_handle(handle: &ReceiptHandle) -> Option<(i64, &str)> {
    let (id, token) = handle.0.split_once('-')?;
    Some((id.parse().ok()?, token))
}

/// Picks up to `max` visible messages of `queue`, burying those received `max_receives`
/// times already. Runs on the writer, so it is atomic.
fn take_visible(
    conn: &Connection,
    queue: &str,
    max: usize,
    visibility_ms: i64,
    max_receives: u32,
) -> Result<Vec<Delivery>, Failure> {
    let now = now_ms();
    let hidden_until = now.saturating_add(visibility_ms);
    let mut taken = Vec::new();
    let mut select = conn.prepare_cached(VISIBLE)?;
    let mut take = conn.prepare_cached(TAKE)?;
    loop {
        let want = max - taken.len();
        let mut candidates: Vec<(i64, String, i64)> = Vec::with_capacity(want.min(1000));
        let mut rows = select.query(params![queue, now, sql_int(want)])?;
        while let Some(row) = rows.next()? {
            candidates.push((
                column(row, 0, "id")?,
                column(row, 1, "body")?,
                column(row, 2, "receive_count")?,
            ));
        }
        drop(rows);
        if candidates.is_empty() {
            break;
        }
        let mut buried = 0;
        for (id, body, count) in candidates {
            if count >= i64::from(max_receives) {
                conn.prepare_cached(BURY)?.execute(params![id, now])?;
                conn.prepare_cached(DELETE_ONE)?.execute([id])?;
                tracing::warn!(
                    queue,
                    id,
                    receive_count = count,
                    "queue message dead-lettered"
                );
                buried += 1;
                continue;
            }
            let token = format!("{:032x}", rand::random::<u128>());
            take.execute(params![id, hidden_until, token])?;
            taken.push(Delivery {
                handle: ReceiptHandle(format!("{id}-{token}")),
                body,
                receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
            });
        }
        // Without burials the page held every visible message there was (or filled `max`);
        // burials left room that the next messages in line may take.
        if buried == 0 || taken.len() == max {
            break;
        }
    }
    Ok(taken)
}

impl SqliteBackend {
    /// The bodies of the messages dead-lettered from `queue`, oldest first.
    pub async fn dead_letters(&self, queue: QueueName) -> Result<Vec<String>, QueueError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT body FROM dead_letters WHERE queue = ?1 ORDER BY id")?;
                let mut rows = stmt.query([queue.as_str()])?;
                let mut bodies = Vec::new();
                while let Some(row) = rows.next()? {
                    bodies.push(column(row, 0, "body")?);
                }
                Ok(bodies)
            })
            .await
            .map_err(Into::into)
    }

    /// How many messages `queue` holds, visible or not (dead letters excluded).
    pub async fn queue_depth(&self, queue: QueueName) -> Result<u64, QueueError> {
        self.db
            .read(move |conn| {
                let count: i64 = conn
                    .prepare_cached("SELECT count(*) FROM queue_messages WHERE queue = ?1")?
                    .query_row([queue.as_str()], |row| row.get(0))?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
            .map_err(Into::into)
    }

    /// One attempt at receiving, without waiting.
    async fn receive_now(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let visibility_ms = duration_ms(visibility);
        let max_receives = self.db.config().max_receives;
        self.db
            .write(move |conn| take_visible(conn, queue.as_str(), max, visibility_ms, max_receives))
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl Queue for SqliteBackend {
    async fn redrive(&self, queue: QueueName, limit: usize) -> Result<usize, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let moved = self
            .db
            .write(move |conn| {
                let ids = conn
                    .prepare_cached(
                        "SELECT id FROM dead_letters WHERE queue = ?1 ORDER BY id LIMIT ?2",
                    )?
                    .query_map(params![queue.as_str(), limit], |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let now = now_ms();
                let mut back = conn.prepare_cached(
                    "INSERT INTO queue_messages \
                     (queue, body, visible_at, receive_count, receipt, sent_at) \
                     SELECT queue, body, ?2, 0, NULL, sent_at FROM dead_letters WHERE id = ?1",
                )?;
                let mut gone = conn.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
                for id in &ids {
                    back.execute(params![id, now])?;
                    gone.execute(params![id])?;
                }
                Ok(ids.len())
            })
            .await?;
        if moved > 0 {
            self.db.wakeup(queue).notify_waiters();
        }
        Ok(moved)
    }

    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<Outgoing>,
    ) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        if let Some(big) = messages
            .iter()
            .find(|m| m.body.len() > MAX_QUEUE_BODY_BYTES)
        {
            return Err(QueueError::TooLarge(big.body.len()));
        }
        self.db
            .write(move |conn| enqueue(conn, queue, &messages))
            .await?;
        self.db.wakeup(queue).notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let woken = self.db.wakeup(queue).notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let deliveries = self.receive_now(queue, max, visibility).await?;
            let now = Instant::now();
            if !deliveries.is_empty() || now >= deadline {
                return Ok(deliveries);
            }
            let _ = tokio::time::timeout((deadline - now).min(RECHECK), woken).await;
        }
    }

    async fn delete_batch(
        &self,
        queue: QueueName,
        handles: &[ReceiptHandle],
    ) -> Result<(), QueueError> {
        // Malformed handles cannot be current: like stale ones, they delete nothing.
        let targets: Vec<(i64, String)> = handles
            .iter()
            .filter_map(parse_handle)
            .map(|(id, token)| (id, token.to_owned()))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        self.db
            .write(move |conn| {
                let mut delete = conn.prepare_cached(DELETE_BY_HANDLE)?;
                for (id, token) in &targets {
                    delete.execute(params![id, queue.as_str(), token])?;
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        handle: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let (id, token) = parse_handle(handle).ok_or(QueueError::StaleHandle)?;
        let token = token.to_owned();
        let timeout_ms = duration_ms(timeout);
        self.db
            .write(move |conn| {
                let visible_at = now_ms().saturating_add(timeout_ms);
                let changed = conn.prepare_cached(CHANGE_VISIBILITY)?.execute(params![
                    id,
                    queue.as_str(),
                    token,
                    visible_at
                ])?;
                if changed == 0 {
                    Err(Failure::StaleHandle)
                } else {
                    Ok(())
                }
            })
            .await?;
        self.db.wakeup(queue).notify_waiters();
        Ok(())
    }
}
