//! Conversions between domain values and SQLite columns.
//!
//! Rows come out of SQLite as [`RawMessage`] (plain column values) and are parsed into
//! domain values afterwards, outside the writer thread: a row that cannot be parsed is
//! [`Failure::Corrupt`], never a panic.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::FromSql;

use super::error::Failure;
use crate::adapters::vault::OpeningKeys;
use crate::domain::status::{PartReceipt, ReceiptState};
use crate::domain::{
    BatchId, Category, DataKey, Encoding, Kopiyky, Message, MessageError, MessageId, MessageStatus,
    PhoneNumber, SenderId, ShortCode, StatusChange, StatusSet, TenantId,
};
use crate::services::jobs::{CallbackEvent, CallbackJobs};

/// The columns of `messages` that make a [`Message`], in the order [`RawMessage::from_row`]
/// reads them.
macro_rules! message_columns {
    () => {
        "tenant_id, id, batch_id, to_number, sender, text, encoding, segments, status, \
         created_at, updated_at, send_at, expires_at, callback_url, reference, metadata, \
         provider, provider_message_id, cost, error_code, error_message, attempts, history, \
         sealed, callback_statuses, links, clicks, bot_clicks, clicked_at, category, opt_out"
    };
}
pub(super) use message_columns;

/// A timestamp as stored: nanoseconds since the epoch. Instants outside 1677–2262 cannot be
/// stored exactly and are refused.
pub(super) fn nanos(at: DateTime<Utc>) -> Result<i64, Failure> {
    at.timestamp_nanos_opt().ok_or_else(|| {
        Failure::Corrupt(format!(
            "{at} is outside the years 1677 to 2262 that the store can hold"
        ))
    })
}

/// A timestamp as a bound of a comparison: instants out of range clamp to the extremes,
/// which compares the same way.
pub(super) fn nanos_bound(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub(super) fn from_nanos(nanos: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(nanos)
}

/// A count or limit as an SQLite integer.
pub(super) fn sql_int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads column `index`, calling a value of the wrong type corruption.
pub(super) fn column<T: FromSql>(row: &Row<'_>, index: usize, name: &str) -> Result<T, Failure> {
    row.get(index).map_err(|e| match e {
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            Failure::Corrupt(format!("column {name}: {e}"))
        }
        other => Failure::from(other),
    })
}

pub(super) fn parse<T: FromStr>(value: &str, what: &str) -> Result<T, Failure> {
    value
        .parse()
        .map_err(|_| Failure::Corrupt(format!("{what} {value:?} cannot be parsed")))
}

pub(super) fn encoding_str(encoding: Encoding) -> &'static str {
    encoding.as_str()
}

pub(super) fn encoding_from(s: &str) -> Result<Encoding, Failure> {
    [Encoding::Gsm7, Encoding::Ucs2]
        .into_iter()
        .find(|e| e.as_str() == s)
        .ok_or_else(|| Failure::Corrupt(format!("unknown encoding {s:?}")))
}

pub(super) fn receipt_state_str(state: ReceiptState) -> &'static str {
    match state {
        ReceiptState::Enroute => "enroute",
        ReceiptState::Delivered => "delivered",
        ReceiptState::Undelivered => "undelivered",
        ReceiptState::Expired => "expired",
        ReceiptState::Rejected => "rejected",
    }
}

fn receipt_state_from(s: &str) -> Result<ReceiptState, Failure> {
    [
        ReceiptState::Enroute,
        ReceiptState::Delivered,
        ReceiptState::Undelivered,
        ReceiptState::Expired,
        ReceiptState::Rejected,
    ]
    .into_iter()
    .find(|state| receipt_state_str(*state) == s)
    .ok_or_else(|| Failure::Corrupt(format!("unknown receipt state {s:?}")))
}

pub(super) fn to_u16(n: i64, what: &str) -> Result<u16, Failure> {
    u16::try_from(n).map_err(|_| Failure::Corrupt(format!("{what} {n} is out of range")))
}

/// A message's columns, ready to insert.
pub(super) struct MessageRow {
    tenant_id: String,
    id: String,
    batch_id: Option<String>,
    sealed: Vec<u8>,
    to_tag: Vec<u8>,
    from: String,
    encoding: &'static str,
    segments: i64,
    status: &'static str,
    created_at: i64,
    updated_at: i64,
    send_at: Option<i64>,
    expires_at: i64,
    callback_url: Option<String>,
    reference: Option<String>,
    metadata: Option<String>,
    provider: Option<String>,
    provider_message_id: Option<String>,
    cost: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    history: String,
    live: Option<i64>,
    /// NULL for every status.
    callback_statuses: Option<i64>,
    operator: &'static str,
    /// The sealed links (NULL: none).
    links: Option<Vec<u8>>,
    clicks: i64,
    bot_clicks: i64,
    clicked_at: Option<i64>,
    /// NULL: transactional.
    category: Option<&'static str>,
    opt_out: Option<String>,
    /// The short codes (tracked links', opt-out link's), for the `links` table.
    pub(super) codes: Vec<String>,
}

/// The `live` column for a status: 1 unless terminal.
pub(super) fn live(status: MessageStatus) -> Option<i64> {
    (!status.is_terminal()).then_some(1)
}

impl MessageRow {
    /// The row of `m`, its number and text sealed under its tenant's `key`.
    pub(super) fn new(m: &Message, key: &DataKey) -> Result<Self, Failure> {
        let json = |e: serde_json::Error| Failure::Corrupt(format!("cannot encode JSON: {e}"));
        Ok(MessageRow {
            tenant_id: m.tenant_id.as_str().to_owned(),
            id: m.id.to_string(),
            batch_id: m.batch_id.as_ref().map(|b| b.as_str().to_owned()),
            sealed: key.seal_message(&m.tenant_id, &m.id, &m.to, &m.text),
            to_tag: key.number_tag(&m.to).to_vec(),
            from: m.from.as_str().to_owned(),
            encoding: encoding_str(m.encoding),
            segments: i64::from(m.segments),
            status: m.status.as_str(),
            created_at: nanos(m.created_at)?,
            updated_at: nanos(m.updated_at)?,
            send_at: m.send_at.map(nanos).transpose()?,
            expires_at: nanos(m.expires_at)?,
            callback_url: m.callback_url.clone(),
            reference: m.reference.clone(),
            metadata: m
                .metadata
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(json)?,
            provider: m.provider.clone(),
            provider_message_id: m.provider_message_id.clone(),
            cost: m.cost.map(|c| c.0),
            error_code: m.error.as_ref().map(|e| e.code.clone()),
            error_message: m.error.as_ref().map(|e| e.message.clone()),
            attempts: i64::from(m.attempts),
            history: serde_json::to_string(&m.history).map_err(json)?,
            live: live(m.status),
            callback_statuses: (!m.callback_statuses.is_all())
                .then(|| i64::from(m.callback_statuses.bits())),
            operator: m.to.operator().as_str(),
            links: (!m.links.is_empty()).then(|| key.seal_links(&m.tenant_id, &m.id, &m.links)),
            clicks: i64::from(m.clicks),
            bot_clicks: i64::from(m.bot_clicks),
            clicked_at: m.clicked_at.map(nanos).transpose()?,
            category: m.category.is_marketing().then_some("marketing"),
            opt_out: m.opt_out.as_ref().map(|c| c.as_str().to_owned()),
            codes: m.codes().map(|c| c.as_str().to_owned()).collect(),
        })
    }

    /// Inserts with a statement prepared from [`INSERT_MESSAGE`].
    pub(super) fn insert(&self, stmt: &mut rusqlite::Statement<'_>) -> rusqlite::Result<usize> {
        stmt.execute(rusqlite::params![
            self.tenant_id,
            self.id,
            self.batch_id,
            "",
            self.from,
            "",
            self.encoding,
            self.segments,
            self.status,
            self.created_at,
            self.updated_at,
            self.send_at,
            self.expires_at,
            self.callback_url,
            self.reference,
            self.metadata,
            self.provider,
            self.provider_message_id,
            self.cost,
            self.error_code,
            self.error_message,
            self.attempts,
            self.history,
            self.sealed,
            self.callback_statuses,
            self.links,
            self.clicks,
            self.bot_clicks,
            self.clicked_at,
            self.category,
            self.opt_out,
            self.live,
            self.to_tag,
            self.operator,
        ])
    }
}

pub(super) const INSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ", live, to_tag, operator) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
     ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, \
     ?31, ?32, ?33, ?34)"
);

/// A message's columns as read, not yet parsed.
#[derive(Debug, Clone)]
pub(super) struct RawMessage {
    tenant_id: String,
    id: String,
    batch_id: Option<String>,
    to: String,
    from: String,
    text: String,
    encoding: String,
    segments: i64,
    status: String,
    created_at: i64,
    updated_at: i64,
    send_at: Option<i64>,
    expires_at: i64,
    callback_url: Option<String>,
    reference: Option<String>,
    metadata: Option<String>,
    provider: Option<String>,
    provider_message_id: Option<String>,
    cost: Option<i64>,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    history: String,
    sealed: Option<Vec<u8>>,
    callback_statuses: Option<i64>,
    links: Option<Vec<u8>>,
    clicks: i64,
    bot_clicks: i64,
    clicked_at: Option<i64>,
    category: Option<String>,
    opt_out: Option<String>,
}

impl RawMessage {
    /// How many columns [`message_columns!`] names.
    pub(super) const COLUMNS: usize = 31;

    /// The tenant, if the row is sealed (and so needs the tenant's key to be opened).
    pub(super) fn sealed_tenant(&self) -> Option<&str> {
        self.sealed
            .as_ref()
            .or(self.links.as_ref())
            .map(|_| self.tenant_id.as_str())
    }

    /// Reads the columns of [`message_columns!`] starting at column 0.
    pub(super) fn from_row(row: &Row<'_>) -> Result<Self, Failure> {
        Ok(RawMessage {
            tenant_id: column(row, 0, "tenant_id")?,
            id: column(row, 1, "id")?,
            batch_id: column(row, 2, "batch_id")?,
            to: column(row, 3, "to_number")?,
            from: column(row, 4, "sender")?,
            text: column(row, 5, "text")?,
            encoding: column(row, 6, "encoding")?,
            segments: column(row, 7, "segments")?,
            status: column(row, 8, "status")?,
            created_at: column(row, 9, "created_at")?,
            updated_at: column(row, 10, "updated_at")?,
            send_at: column(row, 11, "send_at")?,
            expires_at: column(row, 12, "expires_at")?,
            callback_url: column(row, 13, "callback_url")?,
            reference: column(row, 14, "reference")?,
            metadata: column(row, 15, "metadata")?,
            provider: column(row, 16, "provider")?,
            provider_message_id: column(row, 17, "provider_message_id")?,
            cost: column(row, 18, "cost")?,
            error_code: column(row, 19, "error_code")?,
            error_message: column(row, 20, "error_message")?,
            attempts: column(row, 21, "attempts")?,
            history: column(row, 22, "history")?,
            sealed: column(row, 23, "sealed")?,
            callback_statuses: column(row, 24, "callback_statuses")?,
            links: column(row, 25, "links")?,
            clicks: column(row, 26, "clicks")?,
            bot_clicks: column(row, 27, "bot_clicks")?,
            clicked_at: column(row, 28, "clicked_at")?,
            category: column(row, 29, "category")?,
            opt_out: column(row, 30, "opt_out")?,
        })
    }

    /// Adds the callback event of this row's status to `jobs`, if it has a callback URL
    /// that asked for it. Runs in the writer (the outbox is part of the change's write), so
    /// it reads the plain columns only: nothing sealed is opened there.
    pub(super) fn push_callback(&self, jobs: &mut CallbackJobs) -> Result<(), Failure> {
        self.push_event(jobs, false)
    }

    /// Adds the `message.clicked` event of this row to `jobs`, if it has a callback URL and
    /// a person clicked it (as [`RawMessage::push_callback`]).
    pub(super) fn push_clicked(&self, jobs: &mut CallbackJobs) -> Result<(), Failure> {
        self.push_event(jobs, true)
    }

    /// Whether a person clicked this message once, and only once: the click that tells.
    pub(super) fn first_click(&self) -> bool {
        self.clicks == 1 && self.clicked_at.is_some()
    }

    fn push_event(&self, jobs: &mut CallbackJobs, clicked: bool) -> Result<(), Failure> {
        let Some(url) = &self.callback_url else {
            return Ok(());
        };
        let at = match (clicked, self.clicked_at) {
            (false, _) => self.updated_at,
            (true, Some(at)) => at,
            (true, None) => return Ok(()),
        };
        let tenant = parse::<TenantId>(&self.tenant_id, "tenant id")?;
        let event = CallbackEvent {
            message_id: parse::<MessageId>(&self.id, "message id")?,
            status: parse::<MessageStatus>(&self.status, "status")?,
            at: from_nanos(at),
            reference: self.reference.clone(),
            metadata: self
                .metadata
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| Failure::Corrupt(format!("message {}: metadata: {e}", self.id)))?,
            batch_id: self
                .batch_id
                .as_deref()
                .map(|b| parse::<BatchId>(b, "batch id"))
                .transpose()?,
            segments: to_u16(self.segments, "segments")?,
            provider: self.provider.clone(),
            cost_kopiyky: self.cost,
            error: self.error()?,
            clicked,
        };
        jobs.push(&tenant, url, self.statuses()?, event);
        Ok(())
    }

    fn statuses(&self) -> Result<StatusSet, Failure> {
        match self.callback_statuses {
            None => Ok(StatusSet::ALL),
            Some(bits) => u16::try_from(bits)
                .ok()
                .and_then(StatusSet::from_bits)
                .ok_or_else(|| {
                    Failure::Corrupt(format!("message {}: callback statuses {bits}", self.id))
                }),
        }
    }

    fn error(&self) -> Result<Option<MessageError>, Failure> {
        match (&self.error_code, &self.error_message) {
            (Some(code), Some(message)) => Ok(Some(MessageError {
                code: code.clone(),
                message: message.clone(),
            })),
            (None, None) => Ok(None),
            _ => Err(Failure::Corrupt(format!(
                "message {}: error: code and message must be set together",
                self.id
            ))),
        }
    }

    /// The message, opened with its tenant's key from `keys` if it is sealed
    /// ([`Failure::Erased`] if that key was erased).
    pub(super) fn into_message(self, keys: &OpeningKeys) -> Result<Message, Failure> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| {
            Failure::Corrupt(format!("message {}: {what}: {e}", self.id))
        };
        let id = parse::<MessageId>(&self.id, "message id")?;
        let tenant_id = parse::<TenantId>(&self.tenant_id, "tenant id")?;
        let error = self.error()?;
        let callback_statuses = self.statuses()?;
        let key = || match keys.get(&self.tenant_id) {
            Some(Some(key)) => Ok(key),
            Some(None) => Err(Failure::Erased),
            None => Err(corrupt("sealed", &"no key was fetched for the tenant")),
        };
        let links = match &self.links {
            Some(sealed) => key()?
                .open_links(&tenant_id, &id, sealed)
                .map_err(|e| corrupt("links", &e))?,
            None => Vec::new(),
        };
        let (to, text) = match &self.sealed {
            Some(sealed) => match keys.get(&self.tenant_id) {
                Some(Some(key)) => key
                    .open_message(&tenant_id, &id, sealed)
                    .map_err(|e| corrupt("sealed", &e))?,
                Some(None) => return Err(Failure::Erased),
                None => return Err(corrupt("sealed", &"no key was fetched for the tenant")),
            },
            // A row from before sealing (until `seal_legacy` reaches it).
            None => (
                PhoneNumber::parse(&self.to).map_err(|e| corrupt("to", &e))?,
                self.text,
            ),
        };
        Ok(Message {
            id,
            tenant_id,
            batch_id: self
                .batch_id
                .as_deref()
                .map(|b| parse::<BatchId>(b, "batch id"))
                .transpose()?,
            to,
            from: SenderId::parse(&self.from).map_err(|e| corrupt("from", &e))?,
            text,
            encoding: encoding_from(&self.encoding)?,
            segments: to_u16(self.segments, "segments")?,
            status: parse::<MessageStatus>(&self.status, "status")?,
            created_at: from_nanos(self.created_at),
            updated_at: from_nanos(self.updated_at),
            send_at: self.send_at.map(from_nanos),
            expires_at: from_nanos(self.expires_at),
            callback_url: self.callback_url,
            callback_statuses,
            reference: self.reference,
            metadata: self
                .metadata
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("metadata", &e))?,
            provider: self.provider,
            provider_message_id: self.provider_message_id,
            cost: self.cost.map(Kopiyky),
            error,
            attempts: u32::try_from(self.attempts).map_err(|e| corrupt("attempts", &e))?,
            history: serde_json::from_str::<Vec<StatusChange>>(&self.history)
                .map_err(|e| corrupt("history", &e))?,
            links,
            clicks: u32::try_from(self.clicks).map_err(|e| corrupt("clicks", &e))?,
            bot_clicks: u32::try_from(self.bot_clicks).map_err(|e| corrupt("bot clicks", &e))?,
            clicked_at: self.clicked_at.map(from_nanos),
            category: match self.category.as_deref() {
                None => Category::Transactional,
                Some(c) => parse::<Category>(c, "category")?,
            },
            opt_out: self
                .opt_out
                .as_deref()
                .map(|c| ShortCode::parse(c).ok_or_else(|| corrupt("opt_out", &c)))
                .transpose()?,
        })
    }
}

/// A part receipt's columns as read.
#[derive(Debug, Clone)]
pub(super) struct RawReceipt {
    pub(super) part: i64,
    pub(super) state: String,
    pub(super) at: i64,
}

impl RawReceipt {
    pub(super) fn into_receipt(self) -> Result<PartReceipt, Failure> {
        Ok(PartReceipt {
            part: to_u16(self.part, "receipt part")?,
            state: receipt_state_from(&self.state)?,
            at: from_nanos(self.at),
        })
    }
}
