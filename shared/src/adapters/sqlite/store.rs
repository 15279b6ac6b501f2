//! [`MessageStore`] on SQLite.
//!
//! Writes are one writer request per call, whatever the slice length; reads are one query
//! (or one per distinct message) on a reader. Every statement is prepared once per connection
//! and cached.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};

use super::SqliteBackend;
use super::codec::{
    INSERT_MESSAGE, MessageRow, RawMessage, RawReceipt, column, from_nanos, live, message_columns,
    nanos, nanos_bound, parse, receipt_state_str, sql_int,
};
use super::error::{BackendError, Failure, is_constraint};
use super::queue;
use crate::adapters::vault::OpeningKeys;
use crate::domain::status::PartReceipt;
use crate::domain::{
    DataKey, IdempotencyKey, Message, MessageId, ShortCode, StatusChange, TenantId, Visitor,
};
use crate::ports::{
    Click, IdempotencyRecord, ListQuery, MessageRef, MessageStore, Page, QueueName, ReceiptTarget,
    Retention, StoreError, Transition,
};
use crate::services::jobs::CallbackJobs;

const SELECT_MESSAGE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE tenant_id = ?1 AND id = ?2"
);

/// The conditional transition for a patch whose set fields are the bits of `shape` (see
/// [`TransitionRow::shape`]). It applies only if the current status is in the comma-framed
/// list `?12` (`,queued,sending,`), appends to the history in SQL, and returns the row.
///
/// Only the columns the change sets appear in the `SET` list, so SQLite leaves the indexes
/// on the others (the provider id index, the validity index through `live`) alone. Every
/// shape numbers its parameters alike, so one binding fits them all.
fn transition_sql(shape: usize) -> &'static str {
    const SETS: [&str; 7] = [
        ", provider = ?4",
        ", provider_message_id = ?5",
        ", cost = ?6",
        ", error_code = ?7, error_message = ?8",
        ", attempts = attempts + ?9",
        ", live = NULL",
        ", live = 1",
    ];
    static SHAPES: [OnceLock<String>; 1 << SETS.len()] =
        [const { OnceLock::new() }; 1 << SETS.len()];
    let shape = shape % SHAPES.len();
    SHAPES[shape].get_or_init(|| {
        let mut sql = String::from(
            "UPDATE messages SET status = ?1, updated_at = ?2, \
             history = json_insert(history, '$[#]', json(?3)), send_at = coalesce(?13, send_at)",
        );
        for (bit, set) in SETS.iter().enumerate() {
            if shape & (1 << bit) != 0 {
                sql.push_str(set);
            }
        }
        sql.push_str(concat!(
            " WHERE tenant_id = ?10 AND id = ?11 AND instr(?12, ',' || status || ',') > 0",
            " RETURNING ",
            message_columns!(),
            ", seq"
        ));
        sql
    })
}

/// The analytics outbox (see `stats.rs`): the messages an insert added, and one a change moved.
const NEW_SPAN: &str = "INSERT INTO stats_new (first, last) VALUES (?1, ?2)";
const INSERT_LINK: &str = "INSERT INTO links (code, message) VALUES (?1, ?2)";
const FOLLOW: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM links JOIN messages ON messages.seq = links.message WHERE links.code = ?1"
);
/// A click: by a person (`?1` = 1, `?3` its time) or a preview fetcher (`?2` = 1).
const CLICK: &str = concat!(
    "UPDATE messages SET clicks = clicks + ?1, bot_clicks = bot_clicks + ?2, \
     clicked_at = coalesce(clicked_at, ?3) WHERE tenant_id = ?4 AND id = ?5 RETURNING ",
    message_columns!(),
    ", seq"
);
const CHANGED: &str = "INSERT OR IGNORE INTO stats_pending (message) VALUES (?1)";

const INSERT_IDEMPOTENCY: &str = "INSERT INTO idempotency \
     (tenant_id, key, fingerprint, status_code, body, created_at, sealed) \
     VALUES (?1, ?2, ?3, ?4, '', ?6, ?5)";

const INSERT_RECEIPT: &str = "INSERT OR IGNORE INTO receipts (message, at, part, state) \
     SELECT seq, ?3, ?4, ?5 FROM messages WHERE tenant_id = ?1 AND id = ?2";

const RECEIPTS_OF: &str = "SELECT r.part, r.state, r.at \
     FROM messages AS m JOIN receipts AS r ON r.message = m.seq \
     WHERE m.tenant_id = ?1 AND m.id = ?2 \
     ORDER BY r.at, r.part, r.state";

const BY_PROVIDER_IDS: &str = "SELECT provider_message_id, tenant_id, id, segments \
     FROM messages \
     WHERE provider = ?1 AND provider_message_id IN (SELECT value FROM json_each(?2))";

const DUE_SCHEDULED: &str = "SELECT tenant_id, id FROM messages \
     WHERE status = 'scheduled' AND send_at <= ?1 ORDER BY send_at LIMIT ?2";

const STALE_QUEUED: &str = "SELECT tenant_id, id FROM messages \
     WHERE status = 'queued' AND updated_at <= ?1 ORDER BY updated_at LIMIT ?2";

const AWAITING_RECEIPTS: &str = "SELECT provider_message_id FROM messages \
     WHERE provider = ?1 AND provider_message_id IS NOT NULL AND status = 'sent' \
     AND updated_at <= ?2 ORDER BY expires_at LIMIT ?3";

const PAST_VALIDITY: &str = "SELECT tenant_id, id FROM messages \
     WHERE live = 1 AND status = 'sent' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2";

/// A transition with its values encoded, ready for the writer.
struct TransitionRow {
    tenant_id: String,
    id: String,
    from: String,
    to: &'static str,
    at: i64,
    history_entry: String,
    provider: Option<String>,
    provider_message_id: Option<String>,
    cost: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    send_at: Option<i64>,
    /// `(at, part, state)` of the receipts recorded with the change.
    receipts: Vec<(i64, i64, &'static str)>,
    /// The message becomes terminal: `live` is cleared.
    ends: bool,
    /// The message may leave a terminal state for a live one: `live` is set. (A step
    /// between live states touches neither.)
    revives: bool,
}

impl TransitionRow {
    fn new(t: &Transition) -> Result<Self, Failure> {
        let mut from = String::from(",");
        for status in &t.from {
            from.push_str(status.as_str());
            from.push(',');
        }
        let entry = StatusChange {
            status: t.to,
            at: t.at,
        };
        Ok(TransitionRow {
            tenant_id: t.tenant_id.as_str().to_owned(),
            id: t.id.to_string(),
            from,
            to: t.to.as_str(),
            at: nanos(t.at)?,
            history_entry: serde_json::to_string(&entry)
                .map_err(|e| Failure::Corrupt(format!("cannot encode JSON: {e}")))?,
            provider: t.patch.provider.clone(),
            provider_message_id: t.patch.provider_message_id.clone(),
            cost: t.patch.cost.map(|c| c.0),
            error_code: t.patch.error.as_ref().map(|e| e.code.clone()),
            error_message: t.patch.error.as_ref().map(|e| e.message.clone()),
            attempts: i64::from(t.patch.count_attempt) - i64::from(t.patch.uncount_attempt),
            send_at: t.patch.send_at.map(nanos).transpose()?,
            receipts: t
                .patch
                .receipts
                .iter()
                .map(|r| Ok((nanos(r.at)?, i64::from(r.part), receipt_state_str(r.state))))
                .collect::<Result<_, Failure>>()?,
            ends: live(t.to).is_none(),
            revives: live(t.to).is_some() && t.from.iter().any(|s| s.is_terminal()),
        })
    }

    /// Which patch fields are set, as the bits of [`transition_sql`]'s shape.
    fn shape(&self) -> usize {
        usize::from(self.provider.is_some())
            | usize::from(self.provider_message_id.is_some()) << 1
            | usize::from(self.cost.is_some()) << 2
            | usize::from(self.error_code.is_some()) << 3
            | usize::from(self.attempts != 0) << 4
            | usize::from(self.ends) << 5
            | usize::from(self.revives) << 6
    }

    fn apply(&self, conn: &Connection) -> Result<Option<RawMessage>, Failure> {
        let mut stmt = conn.prepare_cached(transition_sql(self.shape()))?;
        let mut rows = stmt.query(params![
            self.to,
            self.at,
            self.history_entry,
            self.provider,
            self.provider_message_id,
            self.cost,
            self.error_code,
            self.error_message,
            self.attempts,
            self.tenant_id,
            self.id,
            self.from,
            self.send_at,
        ])?;
        let (raw, seq) = match rows.next()? {
            Some(row) => (
                Some(RawMessage::from_row(row)?),
                Some(column::<i64>(row, RawMessage::COLUMNS, "seq")?),
            ),
            None => (None, None),
        };
        drop(rows);
        // The analytics outbox, in the change's own write.
        if let Some(seq) = seq {
            conn.prepare_cached(CHANGED)?.execute(params![seq])?;
        }
        if raw.is_some() && !self.receipts.is_empty() {
            let mut insert = conn.prepare_cached(INSERT_RECEIPT)?;
            for (at, part, state) in &self.receipts {
                insert.execute(params![self.tenant_id, self.id, at, part, state])?;
            }
        }
        Ok(raw)
    }
}

fn message_ref(tenant: &str, id: &str) -> Result<MessageRef, Failure> {
    Ok(MessageRef {
        tenant_id: parse::<TenantId>(tenant, "tenant id")?,
        id: parse::<MessageId>(id, "message id")?,
    })
}

/// Builds the list query for `query`'s filters; the statement's shape depends only on
/// which filters are set, so it stays in the statement cache.
fn list_sql(tenant: &TenantId, query: &ListQuery, to_tag: Option<&[u8]>) -> (String, Vec<Value>) {
    let mut sql = String::from(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE tenant_id = ?"
    ));
    let mut values = vec![Value::Text(tenant.as_str().to_owned())];
    let mut filter = |clause: &str, value: Value| {
        sql.push_str(clause);
        values.push(value);
    };
    if let Some(after) = &query.after {
        filter(" AND id < ?", Value::Text(after.to_string()));
    }
    if let Some(status) = query.status {
        filter(" AND status = ?", Value::Text(status.as_str().to_owned()));
    }
    if query.to.is_some() {
        let tag = to_tag.map(<[u8]>::to_vec).unwrap_or_default();
        filter(" AND to_tag = ?", Value::Blob(tag));
    }
    if let Some(from) = &query.from {
        filter(" AND sender = ?", Value::Text(from.as_str().to_owned()));
    }
    if let Some(batch) = &query.batch_id {
        filter(" AND batch_id = ?", Value::Text(batch.as_str().to_owned()));
    }
    if let Some(after) = query.created_after {
        filter(" AND created_at >= ?", Value::Integer(nanos_bound(after)));
    }
    if let Some(before) = query.created_before {
        filter(" AND created_at < ?", Value::Integer(nanos_bound(before)));
    }
    filter(
        " ORDER BY id DESC LIMIT ?",
        Value::Integer(sql_int(query.limit)),
    );
    (sql, values)
}

impl SqliteBackend {
    /// The keys that open the sealed rows among `raws`.
    async fn opening_keys<'a>(
        &self,
        raws: impl IntoIterator<Item = &'a RawMessage>,
    ) -> Result<OpeningKeys, StoreError> {
        self.vault
            .opening_keys(raws.into_iter().filter_map(RawMessage::sealed_tenant))
            .await
    }

    /// The one message row `sql` (selecting [`message_columns!`]) finds with `values`.
    async fn read_one(
        &self,
        sql: &'static str,
        values: Vec<Value>,
    ) -> Result<Option<RawMessage>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(row) => RawMessage::from_row(row).map(Some),
                    None => Ok(None),
                }
            })
            .await
            .map_err(Into::into)
    }

    /// The message of a row, opened; `None` for no row or one whose tenant's data was
    /// erased (it can no longer be read).
    async fn readable(&self, raw: Option<RawMessage>) -> Result<Option<Message>, StoreError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let keys = self.opening_keys([&raw]).await?;
        match raw.into_message(&keys) {
            Err(Failure::Erased) => Ok(None),
            other => other.map(Some).map_err(Into::into),
        }
    }

    /// Runs a sweep query (`?1` a time bound, `?2` the limit) returning `tenant_id, id`.
    async fn sweep(
        &self,
        sql: &'static str,
        bound: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        let (bound, limit) = (nanos_bound(bound), sql_int(limit));
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![bound, limit])?;
                let mut refs = Vec::new();
                while let Some(row) = rows.next()? {
                    let tenant: String = column(row, 0, "tenant_id")?;
                    let id: String = column(row, 1, "id")?;
                    refs.push(message_ref(&tenant, &id)?);
                }
                Ok(refs)
            })
            .await
            .map_err(Into::into)
    }
}

#[async_trait]
impl MessageStore for SqliteBackend {
    async fn insert(
        &self,
        messages: &[Message],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        // Almost always one tenant: its key, looked up once.
        let mut key: Option<(TenantId, Arc<DataKey>)> = None;
        let mut rows = Vec::with_capacity(messages.len());
        for m in messages {
            if key.as_ref().is_none_or(|(t, _)| *t != m.tenant_id) {
                key = Some((
                    m.tenant_id.clone(),
                    self.vault.sealing_key(&m.tenant_id).await?,
                ));
            }
            let (_, k) = key.as_ref().expect("set above");
            rows.push(MessageRow::new(m, k)?);
        }
        let record = match idempotency {
            Some(r) => {
                let k = self.vault.sealing_key(&r.tenant_id).await?;
                let sealed = k.seal_answer(&r.tenant_id, r.key.as_str(), &r.fingerprint, &r.body);
                Some((
                    r.tenant_id.as_str().to_owned(),
                    r.key.as_str().to_owned(),
                    k.fingerprint_tag(&r.fingerprint),
                    i64::from(r.status_code),
                    sealed,
                    nanos(r.created_at)?,
                ))
            }
            None => None,
        };
        if rows.is_empty() && record.is_none() {
            return Ok(());
        }
        self.db
            .write(move |conn| {
                // The key first: if it is taken, nothing else is even tried.
                if let Some((tenant, key, fingerprint, status, body, at)) = &record {
                    conn.prepare_cached(INSERT_IDEMPOTENCY)?
                        .execute(params![tenant, key, fingerprint, status, body, at])
                        .map_err(|e| {
                            if is_constraint(&e) {
                                Failure::IdempotencyKeyTaken
                            } else {
                                e.into()
                            }
                        })?;
                }
                let mut stmt = conn.prepare_cached(INSERT_MESSAGE)?;
                let mut first = None;
                for row in &rows {
                    row.insert(&mut stmt).map_err(|e| {
                        if is_constraint(&e) {
                            Failure::AlreadyExists
                        } else {
                            e.into()
                        }
                    })?;
                    let seq = conn.last_insert_rowid();
                    first.get_or_insert(seq);
                    if !row.codes.is_empty() {
                        let mut link = conn.prepare_cached(INSERT_LINK)?;
                        for code in &row.codes {
                            link.execute(params![code, seq]).map_err(|e| {
                                if is_constraint(&e) {
                                    // Drawn twice (see `domain::links`): the request may be
                                    // tried again, and draws new codes.
                                    Failure::Unavailable(BackendError::Other(
                                        "a short link code is taken".into(),
                                    ))
                                } else {
                                    e.into()
                                }
                            })?;
                        }
                    }
                }
                // The analytics outbox: the rows of one request are consecutive (one writer).
                if let Some(first) = first {
                    conn.prepare_cached(NEW_SPAN)?
                        .execute(params![first, conn.last_insert_rowid()])?;
                }
                Ok(())
            })
            .await
            .map_err(Into::into)
    }

    async fn idempotency(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (name, idem) = (tenant.as_str().to_owned(), key.as_str().to_owned());
        let found = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT fingerprint, status_code, body, created_at, sealed FROM idempotency \
                     WHERE tenant_id = ?1 AND key = ?2",
                )?;
                let mut rows = stmt.query(params![name, idem])?;
                let Some(row) = rows.next()? else {
                    return Ok(None);
                };
                let status: i64 = column(row, 1, "status_code")?;
                Ok(Some((
                    column::<String>(row, 0, "fingerprint")?,
                    u16::try_from(status).map_err(|_| {
                        Failure::Corrupt(format!("idempotency status code {status}"))
                    })?,
                    column::<String>(row, 2, "body")?,
                    from_nanos(column(row, 3, "created_at")?),
                    column::<Option<Vec<u8>>>(row, 4, "sealed")?,
                )))
            })
            .await?;
        let Some((fingerprint, status_code, body, created_at, sealed)) = found else {
            return Ok(None);
        };
        let (fingerprint, body) = match sealed {
            Some(sealed) => {
                let k = self.vault.opening_key(tenant).await?;
                k.open_answer(tenant, key.as_str(), &sealed).map_err(|e| {
                    StoreError::Corrupt(format!("idempotency record {}: {e}", key.as_str()))
                })?
            }
            // A record from before sealing (until `seal_legacy` reaches it).
            None => (
                fingerprint,
                serde_json::from_str(&body)
                    .map_err(|e| StoreError::Corrupt(format!("idempotency body: {e}")))?,
            ),
        };
        Ok(Some(IdempotencyRecord {
            tenant_id: tenant.clone(),
            key: key.clone(),
            fingerprint,
            status_code,
            body,
            created_at,
        }))
    }

    async fn get(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<Message>, StoreError> {
        let values = vec![
            Value::Text(tenant.as_str().to_owned()),
            Value::Text(id.to_string()),
        ];
        let Some(raw) = self.read_one(SELECT_MESSAGE, values).await? else {
            return Ok(None);
        };
        let keys = self.opening_keys([&raw]).await?;
        Ok(Some(raw.into_message(&keys)?))
    }

    async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit;
        if limit == 0 {
            return Ok(Page {
                messages: Vec::new(),
                next: None,
            });
        }
        let tag = match &query.to {
            Some(to) => match self.vault.held_key(tenant).await? {
                Some(key) => Some(key.number_tag(to)),
                // No key, so nothing sealed: no message to that number.
                None => {
                    return Ok(Page {
                        messages: Vec::new(),
                        next: None,
                    });
                }
            },
            None => None,
        };
        let (sql, values) = list_sql(tenant, query, tag.as_ref().map(|t| &t[..]));
        let raws = self
            .db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query(params_from_iter(values.iter()))?;
                let mut raws = Vec::with_capacity(limit.min(1000));
                while let Some(row) = rows.next()? {
                    raws.push(RawMessage::from_row(row)?);
                }
                Ok(raws)
            })
            .await?;
        let keys = self.opening_keys(&raws).await?;
        let messages = raws
            .into_iter()
            .map(|raw| raw.into_message(&keys))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if messages.len() == limit {
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(Page { messages, next })
    }

    async fn transition(&self, changes: &[Transition]) -> Result<Vec<Option<Message>>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let rows = changes
            .iter()
            .map(TransitionRow::new)
            .collect::<Result<Vec<_>, _>>()?;
        // The callback jobs of the changes are written with them (the outbox): a change that
        // is committed has its callback queued, whatever happens next.
        let (raws, callbacks): (Vec<Option<RawMessage>>, bool) = self
            .db
            .write(move |conn| {
                let raws = rows
                    .iter()
                    .map(|row| row.apply(conn))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut jobs = CallbackJobs::default();
                for raw in raws.iter().flatten() {
                    raw.push_callback(&mut jobs)?;
                }
                let callbacks = !jobs.is_empty();
                if callbacks {
                    queue::enqueue(conn, QueueName::Callbacks, &jobs.into_outgoing())?;
                }
                Ok((raws, callbacks))
            })
            .await?;
        if callbacks {
            self.db.wakeup(QueueName::Callbacks).notify_waiters();
        }
        // Parsed here, off the writer thread. A message whose tenant's data was erased changed
        // but cannot be read back: `None`, as if the change had not applied, so no callback
        // or follow-up acts on it.
        let keys = self.opening_keys(raws.iter().flatten()).await?;
        raws.into_iter()
            .map(|raw| match raw.map(|r| r.into_message(&keys)).transpose() {
                Err(Failure::Erased) => Ok(None),
                other => other,
            })
            .collect::<Result<Vec<_>, Failure>>()
            .map_err(Into::into)
    }

    async fn follow(&self, code: &ShortCode) -> Result<Option<Message>, StoreError> {
        let raw = self
            .read_one(FOLLOW, vec![Value::Text(code.as_str().to_owned())])
            .await?;
        self.readable(raw).await
    }

    async fn click(&self, click: &Click) -> Result<Option<Message>, StoreError> {
        let human = click.visitor == Visitor::Human;
        let at = nanos(click.at)?;
        let (tenant, id) = (
            click.message.tenant_id.as_str().to_owned(),
            click.message.id.to_string(),
        );
        let (raw, callbacks) = self
            .db
            .write(move |conn| {
                let mut stmt = conn.prepare_cached(CLICK)?;
                let mut rows = stmt.query(params![
                    i64::from(human),
                    i64::from(!human),
                    human.then_some(at),
                    tenant,
                    id
                ])?;
                let Some(row) = rows.next()? else {
                    return Ok((None, false));
                };
                let raw = RawMessage::from_row(row)?;
                let seq = column::<i64>(row, RawMessage::COLUMNS, "seq")?;
                drop(rows);
                // The statistics' outbox, and the first click's callback: the same write.
                conn.prepare_cached(CHANGED)?.execute(params![seq])?;
                let mut jobs = CallbackJobs::default();
                if human && raw.first_click() {
                    raw.push_clicked(&mut jobs)?;
                }
                let callbacks = !jobs.is_empty();
                if callbacks {
                    queue::enqueue(conn, QueueName::Callbacks, &jobs.into_outgoing())?;
                }
                Ok((Some(raw), callbacks))
            })
            .await?;
        if callbacks {
            self.db.wakeup(QueueName::Callbacks).notify_waiters();
        }
        self.readable(raw).await
    }

    async fn find_by_provider_ids(
        &self,
        provider: &str,
        provider_message_ids: &[String],
    ) -> Result<Vec<Option<ReceiptTarget>>, StoreError> {
        if provider_message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let provider = provider.to_owned();
        let ids = provider_message_ids.to_vec();
        self.db
            .read(move |conn| {
                let wanted = serde_json::to_string(&ids)
                    .map_err(|e| Failure::Corrupt(format!("cannot encode JSON: {e}")))?;
                let mut stmt = conn.prepare_cached(BY_PROVIDER_IDS)?;
                let mut rows = stmt.query(params![provider, wanted])?;
                let mut found: HashMap<String, ReceiptTarget> = HashMap::new();
                while let Some(row) = rows.next()? {
                    let provider_id: String = column(row, 0, "provider_message_id")?;
                    let tenant: String = column(row, 1, "tenant_id")?;
                    let id: String = column(row, 2, "id")?;
                    let segments: i64 = column(row, 3, "segments")?;
                    let target = ReceiptTarget {
                        message: message_ref(&tenant, &id)?,
                        segments: u16::try_from(segments).map_err(|_| {
                            Failure::Corrupt(format!("message {id}: segments {segments}"))
                        })?,
                    };
                    // Should two messages ever carry one provider id, the first found wins.
                    found.entry(provider_id).or_insert(target);
                }
                Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
            })
            .await
            .map_err(Into::into)
    }

    async fn add_receipts(
        &self,
        receipts: &[(MessageRef, PartReceipt)],
    ) -> Result<Vec<Vec<PartReceipt>>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let rows = receipts
            .iter()
            .map(|(target, r)| -> Result<_, Failure> {
                Ok((
                    target.tenant_id.as_str().to_owned(),
                    target.id.to_string(),
                    nanos(r.at)?,
                    i64::from(r.part),
                    receipt_state_str(r.state),
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lists = self
            .db
            .write(move |conn| {
                // A receipt for a message that does not exist (in that tenant) inserts nothing.
                let mut insert = conn.prepare_cached(INSERT_RECEIPT)?;
                for (tenant, id, at, part, state) in &rows {
                    insert.execute(params![tenant, id, at, part, state])?;
                }
                let mut select = conn.prepare_cached(RECEIPTS_OF)?;
                let mut seen: HashMap<(&str, &str), Vec<RawReceipt>> = HashMap::new();
                let mut lists = Vec::with_capacity(rows.len());
                for (tenant, id, ..) in &rows {
                    let key = (tenant.as_str(), id.as_str());
                    if let Some(list) = seen.get(&key) {
                        lists.push(list.clone());
                        continue;
                    }
                    let mut list = Vec::new();
                    let mut found = select.query(params![tenant, id])?;
                    while let Some(row) = found.next()? {
                        list.push(RawReceipt {
                            part: column(row, 0, "part")?,
                            state: column(row, 1, "state")?,
                            at: column(row, 2, "at")?,
                        });
                    }
                    seen.insert(key, list.clone());
                    lists.push(list);
                }
                Ok(lists)
            })
            .await?;
        lists
            .into_iter()
            .map(|list| list.into_iter().map(RawReceipt::into_receipt).collect())
            .collect::<Result<Vec<_>, Failure>>()
            .map_err(Into::into)
    }

    async fn due_scheduled(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        self.sweep(DUE_SCHEDULED, now, limit).await
    }

    async fn stale_queued(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        self.sweep(STALE_QUEUED, cutoff, limit).await
    }

    async fn awaiting_receipts(
        &self,
        provider: &str,
        sent_by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let (provider, sent_by, limit) = (provider.to_owned(), nanos(sent_by)?, sql_int(limit));
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(AWAITING_RECEIPTS)?;
                let mut rows = stmt.query(params![provider, sent_by, limit])?;
                let mut ids = Vec::new();
                while let Some(row) = rows.next()? {
                    ids.push(column::<String>(row, 0, "provider_message_id")?);
                }
                Ok(ids)
            })
            .await
            .map_err(Into::into)
    }

    async fn sent_past_validity(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        self.sweep(PAST_VALIDITY, cutoff, limit).await
    }

    async fn seal_legacy(&self) -> Result<usize, StoreError> {
        self.seal_legacy_batch().await
    }

    async fn forget_old(
        &self,
        messages: &Retention,
        idempotency_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let idempotency_before = nanos_bound(idempotency_before);
        let limit = sql_int(limit);
        // Each tenant's own cutoff, the default for the others; and every message of a tenant
        // whose data was erased.
        let mut cutoff = String::from("CASE tenant_id");
        let mut values = Vec::with_capacity(2 * messages.tenants.len() + 2);
        for (tenant, before) in &messages.tenants {
            cutoff.push_str(" WHEN ? THEN ?");
            values.push(Value::Text(tenant.as_str().to_owned()));
            values.push(Value::Integer(nanos_bound(*before)));
        }
        cutoff.push_str(" ELSE ? END");
        if messages.tenants.is_empty() {
            cutoff = "?".to_owned();
        }
        values.push(Value::Integer(nanos_bound(messages.before)));
        values.push(Value::Integer(limit));
        let sql = format!(
            "SELECT seq FROM messages WHERE (live IS NULL AND created_at < {cutoff}) \
             OR tenant_id IN (SELECT tenant_id FROM tenant_keys WHERE erased_at IS NOT NULL) \
             ORDER BY seq LIMIT ?"
        );
        // Found on a reader (a scan, in insertion order, that must not hold up the writer),
        // deleted by key in the writer.
        let (seqs, keys) = self
            .db
            .read(move |conn| {
                let seqs = conn
                    .prepare(&sql)?
                    .query_map(params_from_iter(values.iter()), |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let keys = conn
                    .prepare_cached(
                        "SELECT tenant_id, key FROM idempotency WHERE created_at < ?1 \
                         OR tenant_id IN (SELECT tenant_id FROM tenant_keys \
                         WHERE erased_at IS NOT NULL) LIMIT ?2",
                    )?
                    .query_map(params![idempotency_before, limit], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((seqs, keys))
            })
            .await?;
        if seqs.is_empty() && keys.is_empty() {
            return Ok(0);
        }
        self.db
            .write(move |conn| {
                let mut deleted = 0;
                // Checked again: a message is deleted only if it is still final, or its
                // tenant's data was erased.
                let mut message = conn.prepare_cached(
                    "DELETE FROM messages WHERE seq = ?1 AND (live IS NULL OR tenant_id IN \
                     (SELECT tenant_id FROM tenant_keys WHERE erased_at IS NOT NULL))",
                )?;
                for seq in &seqs {
                    deleted += message.execute([seq])?;
                }
                let mut record = conn.prepare_cached(
                    "DELETE FROM idempotency WHERE tenant_id = ?1 AND key = ?2 AND (created_at < ?3 \
                     OR tenant_id IN (SELECT tenant_id FROM tenant_keys WHERE erased_at IS NOT NULL))",
                )?;
                for (tenant, key) in &keys {
                    deleted += record.execute(params![tenant, key, idempotency_before])?;
                }
                Ok(deleted)
            })
            .await
            .map_err(Into::into)
    }
}

#[cfg(test)]
pub(super) fn list_sql_for_tests(tenant: &TenantId, query: &ListQuery) -> String {
    list_sql(tenant, query, Some(&[0; 16])).0
}

#[cfg(test)]
pub(super) const QUERIES_FOR_TESTS: &[(&str, &str)] = &[
    ("due_scheduled", DUE_SCHEDULED),
    ("stale_queued", STALE_QUEUED),
    ("sent_past_validity", PAST_VALIDITY),
    ("find_by_provider_ids", BY_PROVIDER_IDS),
    ("receipts", RECEIPTS_OF),
    ("get", SELECT_MESSAGE),
];
