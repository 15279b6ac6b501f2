//! Conversions between domain values and DynamoDB items.
//!
//! Attribute names are one to three letters (see the table in the module doc): DynamoDB
//! bills a write per started kilobyte of the item, names included, and short names keep a
//! message with its history and receipts under one kilobyte. An item that cannot be read
//! back into valid values is [`StoreError::Corrupt`], never a panic.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::DynamoConfig;
use crate::adapters::vault::OpeningKeys;
use crate::domain::stats::Snapshot;
use crate::domain::status::{PartReceipt, ReceiptState};
use crate::domain::{
    BatchId, Category, DataKey, Encoding, IdempotencyKey, Kopiyky, Message, MessageError,
    MessageId, MessageStatus, Operator, PhoneNumber, SenderId, ShortCode, StatusChange, StatusSet,
    TenantId,
};
use crate::ports::{IdempotencyRecord, StoreError};
use crate::services::jobs::CallbackEvent;

pub(super) type Item = HashMap<String, AttributeValue>;

/// Attribute names of the messages table.
pub(super) mod msg {
    pub const TENANT: &str = "t";
    pub const ID: &str = "id";
    pub const BATCH: &str = "b";
    /// The number, in items from before sealing.
    pub const TO: &str = "to";
    /// The number and text, sealed under the tenant's data key (binary).
    pub const SEALED: &str = "sl";
    /// The number's tag under the tenant's data key (binary): what `list` filters on.
    pub const TO_TAG: &str = "tt";
    pub const FROM: &str = "fr";
    /// The text, in items from before sealing.
    pub const TEXT: &str = "tx";
    pub const ENCODING: &str = "en";
    pub const SEGMENTS: &str = "sg";
    pub const STATUS: &str = "st";
    pub const CREATED: &str = "c";
    pub const UPDATED: &str = "u";
    pub const SEND_AT: &str = "sa";
    pub const EXPIRES: &str = "x";
    pub const CALLBACK: &str = "cb";
    /// The statuses the callback URL asked for (bits of `StatusSet`); absent: all.
    pub const CALLBACK_STATUSES: &str = "cs";
    pub const REFERENCE: &str = "rf";
    pub const METADATA: &str = "md";
    pub const PROVIDER: &str = "pv";
    pub const PROVIDER_ID: &str = "pm";
    pub const COST: &str = "co";
    pub const ERROR_CODE: &str = "ec";
    pub const ERROR_MESSAGE: &str = "em";
    pub const ATTEMPTS: &str = "at";
    pub const HISTORY: &str = "h";
    pub const RECEIPTS: &str = "rc";
    pub const TTL: &str = "ttl";
    /// Index keys: present only while the message belongs in that index.
    pub const BY_PROVIDER: &str = "pp";
    pub const DUE: &str = "dq";
    pub const QUEUED: &str = "qq";
    pub const AWAITING: &str = "ap";
    /// The operator of the recipient's prefix (plain: it names a network, not a person).
    pub const OPERATOR: &str = "op";
    /// The tracked links, sealed under the tenant's data key (binary; absent: none).
    pub const LINKS: &str = "ln";
    /// Clicks on them by people, by preview fetchers; the first by a person (nanoseconds).
    pub const CLICKS: &str = "hc";
    pub const BOT_CLICKS: &str = "bc";
    pub const CLICKED: &str = "fc";
    /// `m` for a marketing message (absent: transactional).
    pub const CATEGORY: &str = "cg";
    /// The code of a marketing message's opt-out link.
    pub const OPT_OUT: &str = "oo";
}

/// A tracked link's code, as an item of the messages table in a partition of its own,
/// `"#link#<code>"` (never a tenant id), pointing at its message; expires with it.
pub(super) mod link {
    pub const PREFIX: &str = "#link#";
    /// The sort key of every link item.
    pub const ID: &str = "#link";
    pub const TENANT: &str = "lt";
    pub const MESSAGE: &str = "lm";
}

/// Attribute names of the idempotency table.
/// Batch markers: items of the messages table in partition [`marker::PARTITION`], with id
/// `"<tenant>#<first message id>#<last message id>"` (see `DynamoStore::stale_queued`).
pub(super) mod marker {
    /// Never a tenant id (those start with `ten_`), so no tenant's query sees markers.
    pub const PARTITION: &str = "#batches";
}

pub(super) mod idem {
    pub const TENANT: &str = "t";
    pub const KEY: &str = "k";
    pub const FINGERPRINT: &str = "fp";
    pub const STATUS_CODE: &str = "sc";
    pub const BODY: &str = "bd";
    pub const CREATED: &str = "c";
    /// Number of items the body is split over (absent: 1).
    pub const PARTS: &str = "np";
    pub const TTL: &str = "ttl";
    /// The id of the one message a record was claimed for before the message was stored
    /// (see `DynamoStore::claim_then_put`).
    pub const MESSAGE: &str = "ms";
    /// When that claim was made (nanoseconds, this store's clock).
    pub const CLAIMED: &str = "cl";
}

/// Attribute names of the tenants table.
pub(super) mod tenant {
    pub const KEY: &str = "pk";
    pub const NAME: &str = "n";
    pub const CREATED: &str = "c";
    pub const TENANT: &str = "t";
    /// When a key was revoked (nanoseconds); absent while it is live.
    pub const REVOKED: &str = "rv";
    pub const HASH: &str = "h";
    pub const SCOPES: &str = "sc";
    pub const EXPIRES: &str = "x";
    pub const LAST_USED: &str = "lu";
    pub const SENDER: &str = "s";
    pub const NETWORKS: &str = "nw";
    pub const UPDATED: &str = "u";
    pub const ENTRY: &str = "e";
    /// A tenant's limits, as JSON.
    pub const LIMITS: &str = "lm";
    /// A tenant's data key, wrapped by KMS (binary); absent once erased.
    pub const WRAPPED: &str = "wk";
    /// When a tenant's data key was erased (nanoseconds).
    pub const ERASED: &str = "er";
    /// The `by_tenant` index: `<tenant id>#<kind>` and an id that orders the kind's items.
    pub const GROUP: &str = "gp";
    pub const GROUP_SORT: &str = "gs";
    /// When DynamoDB may delete the item (seconds): console sessions and sign-in failures.
    pub const TTL: &str = "ttl";
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A timestamp as stored: nanoseconds since the epoch. Instants outside 1677–2262 cannot be
/// stored exactly and are refused.
pub(super) fn nanos(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt().ok_or_else(|| {
        corrupt(format!(
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

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Seconds since the epoch at which DynamoDB's TTL may delete an item written at `at`.
pub(super) fn ttl(at: DateTime<Utc>, keep: std::time::Duration) -> AttributeValue {
    let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
    n(at.timestamp().saturating_add(keep))
}

/// Which of `shards` partitions a message's sweep-index entries go to: a stable hash of its
/// id (FNV-1a), so every index entry of one message lands in the same shard, in any process.
pub(super) fn shard(id: &MessageId, shards: u16) -> String {
    spread(&id.to_string(), shards).to_string()
}

/// The partition of a message in the messages table: its tenant and one of `shards` write
/// shards (`"<tenant>#<n>"`, n a stable hash of the id), so that one tenant's writes spread
/// over `shards` partition keys instead of landing on one. A message's id alone says which.
pub(super) fn home(tenant: &TenantId, id: &MessageId, shards: u16) -> String {
    format!("{tenant}#{}", spread(&id.to_string(), shards))
}

/// Every partition of one tenant's messages, as [`home`] names them.
pub(super) fn homes(tenant: &TenantId, shards: u16) -> impl Iterator<Item = String> + '_ {
    (0..shards.max(1)).map(move |n| format!("{tenant}#{n}"))
}

/// The partition of an idempotency record (`"<tenant>#<n>"`, n a stable hash of the key), so
/// that keyed requests of one tenant spread as its messages do.
pub(super) fn idempotency_home(tenant: &TenantId, key: &str, shards: u16) -> String {
    format!("{tenant}#{}", spread(key, shards))
}

/// The tenant of a message item: its partition up to the shard (`"<tenant>#<n>"`).
pub(super) fn item_tenant(item: &Item) -> Result<TenantId, StoreError> {
    let home = req_s(item, msg::TENANT)?;
    let tenant = home.split_once('#').map_or(home, |(tenant, _)| tenant);
    parse::<TenantId>(tenant, "tenant id")
}

/// FNV-1a of `key`, modulo `shards`.
fn spread(key: &str, shards: u16) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % u64::from(shards.max(1))
}

/// The by-provider index key of a provider's message id.
pub(super) fn provider_key(provider: &str, provider_message_id: &str) -> String {
    format!("{provider}#{provider_message_id}")
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

fn receipt_state_from(s: &str) -> Result<ReceiptState, StoreError> {
    [
        ReceiptState::Enroute,
        ReceiptState::Delivered,
        ReceiptState::Undelivered,
        ReceiptState::Expired,
        ReceiptState::Rejected,
    ]
    .into_iter()
    .find(|state| receipt_state_str(*state) == s)
    .ok_or_else(|| corrupt(format!("unknown receipt state {s:?}")))
}

/// A part receipt as one member of the message's string set: `<nanos>|<part>|<state>`.
/// Being a set member is what keeps a duplicate report once.
pub(super) fn receipt_str(r: &PartReceipt) -> Result<String, StoreError> {
    Ok(format!(
        "{}|{}|{}",
        nanos(r.at)?,
        r.part,
        receipt_state_str(r.state)
    ))
}

fn receipt_from(s: &str) -> Result<PartReceipt, StoreError> {
    let bad = || corrupt(format!("receipt {s:?} cannot be parsed"));
    let mut fields = s.splitn(3, '|');
    let (Some(at), Some(part), Some(state)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(bad());
    };
    Ok(PartReceipt {
        at: DateTime::from_timestamp_nanos(at.parse().map_err(|_| bad())?),
        part: part.parse().map_err(|_| bad())?,
        state: receipt_state_from(state)?,
    })
}

/// A message's receipts, in the order the SQLite store lists them: by time, part, state.
pub(super) fn receipts_from(item: &Item) -> Result<Vec<PartReceipt>, StoreError> {
    let mut receipts = match item.get(msg::RECEIPTS) {
        None => Vec::new(),
        Some(AttributeValue::Ss(set)) => set
            .iter()
            .map(|r| receipt_from(r))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(corrupt("receipts are not a string set")),
    };
    receipts.sort_by(|a, b| {
        (a.at, a.part, receipt_state_str(a.state)).cmp(&(b.at, b.part, receipt_state_str(b.state)))
    });
    Ok(receipts)
}

/// A history entry: `<status> <nanos>`.
pub(super) fn history_entry(
    status: MessageStatus,
    at: DateTime<Utc>,
) -> Result<String, StoreError> {
    Ok(format!("{status} {}", nanos(at)?))
}

fn history_from(entry: &str) -> Result<StatusChange, StoreError> {
    let bad = || corrupt(format!("history entry {entry:?} cannot be parsed"));
    let (status, at) = entry.split_once(' ').ok_or_else(bad)?;
    Ok(StatusChange {
        status: status.parse().map_err(|_| bad())?,
        at: DateTime::from_timestamp_nanos(at.parse().map_err(|_| bad())?),
    })
}

fn encoding_from(s: &str) -> Result<Encoding, StoreError> {
    [Encoding::Gsm7, Encoding::Ucs2]
        .into_iter()
        .find(|e| e.as_str() == s)
        .ok_or_else(|| corrupt(format!("unknown encoding {s:?}")))
}

/// The index keys a message in `status` carries, given its provider and provider id. A key
/// that is `None` must be absent from the item.
pub(super) struct IndexKeys {
    pub by_provider: Option<String>,
    pub due: Option<String>,
    pub queued: Option<String>,
    pub awaiting: Option<String>,
}

impl IndexKeys {
    pub(super) fn of(
        id: &MessageId,
        status: MessageStatus,
        provider: Option<&str>,
        provider_message_id: Option<&str>,
        shards: u16,
    ) -> IndexKeys {
        let shard = shard(id, shards);
        let both = provider.zip(provider_message_id);
        IndexKeys {
            by_provider: both.map(|(p, id)| provider_key(p, id)),
            due: (status == MessageStatus::Scheduled).then(|| shard.clone()),
            queued: (status == MessageStatus::Queued).then(|| shard.clone()),
            awaiting: both
                .filter(|_| status == MessageStatus::Sent)
                .map(|_| shard),
        }
    }

    /// Whether `item` carries exactly these keys.
    pub(super) fn matches(&self, item: &Item) -> bool {
        self.pairs()
            .iter()
            .all(|(attr, want)| get_s(item, attr).ok().flatten() == want.as_deref())
    }

    pub(super) fn pairs(&self) -> [(&'static str, &Option<String>); 4] {
        [
            (msg::BY_PROVIDER, &self.by_provider),
            (msg::DUE, &self.due),
            (msg::QUEUED, &self.queued),
            (msg::AWAITING, &self.awaiting),
        ]
    }
}

/// The batch markers of several new messages, one per tenant with queued messages among
/// them, and those messages' items without their `queued` index entry: the marker stands for
/// them in that index until none of them is queued any more. Its `u` is the oldest of their
/// `u`, so a sweep finds it when the first of them would have turned stale.
pub(super) fn batch_markers(
    messages: &[Message],
    items: &mut [Item],
    config: &DynamoConfig,
) -> Result<Vec<Item>, StoreError> {
    let mut spans: std::collections::BTreeMap<&str, (MessageId, MessageId, DateTime<Utc>)> =
        Default::default();
    for (m, item) in messages.iter().zip(items.iter_mut()) {
        if m.status != MessageStatus::Queued {
            continue;
        }
        item.remove(msg::QUEUED);
        let span = spans
            .entry(m.tenant_id.as_str())
            .or_insert((m.id, m.id, m.updated_at));
        span.0 = span.0.min(m.id);
        span.1 = span.1.max(m.id);
        span.2 = span.2.min(m.updated_at);
    }
    spans
        .into_iter()
        .map(|(tenant, (lo, hi, updated))| {
            Ok(Item::from([
                (msg::TENANT.to_owned(), s(marker::PARTITION)),
                (msg::ID.to_owned(), s(format!("{tenant}#{lo}#{hi}"))),
                (msg::QUEUED.to_owned(), s(shard(&lo, config.index_shards))),
                (msg::UPDATED.to_owned(), n(nanos(updated)?)),
                (
                    msg::TTL.to_owned(),
                    ttl(Utc::now(), config.message_retention),
                ),
            ]))
        })
        .collect()
}

/// The item of a new message, index keys and TTL included.
/// The item of a new message, its number and text sealed under its tenant's `key`, kept for
/// `retention` after the later of its creation and the end of its validity.
pub(super) fn message_item(
    m: &Message,
    config: &DynamoConfig,
    key: &DataKey,
    retention: std::time::Duration,
) -> Result<Item, StoreError> {
    let json = |e: serde_json::Error| corrupt(format!("cannot encode JSON: {e}"));
    let mut item = Item::new();
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put(
        msg::TENANT,
        s(home(&m.tenant_id, &m.id, config.write_shards)),
    );
    put(msg::ID, s(m.id.to_string()));
    if let Some(batch) = &m.batch_id {
        put(msg::BATCH, s(batch.as_str()));
    }
    put(
        msg::SEALED,
        AttributeValue::B(Blob::new(key.seal_message(
            &m.tenant_id,
            &m.id,
            &m.to,
            &m.text,
        ))),
    );
    put(
        msg::TO_TAG,
        AttributeValue::B(Blob::new(key.number_tag(&m.to).to_vec())),
    );
    put(msg::FROM, s(m.from.as_str()));
    put(msg::OPERATOR, s(m.to.operator().as_str()));
    put(msg::ENCODING, s(m.encoding.as_str()));
    put(msg::SEGMENTS, n(m.segments));
    put(msg::STATUS, s(m.status.as_str()));
    put(msg::CREATED, n(nanos(m.created_at)?));
    put(msg::UPDATED, n(nanos(m.updated_at)?));
    if let Some(send_at) = m.send_at {
        put(msg::SEND_AT, n(nanos(send_at)?));
    }
    put(msg::EXPIRES, n(nanos(m.expires_at)?));
    if let Some(url) = &m.callback_url {
        put(msg::CALLBACK, s(url.clone()));
    }
    if !m.callback_statuses.is_all() {
        put(msg::CALLBACK_STATUSES, n(m.callback_statuses.bits()));
    }
    if let Some(reference) = &m.reference {
        put(msg::REFERENCE, s(reference.clone()));
    }
    if let Some(metadata) = &m.metadata {
        put(
            msg::METADATA,
            s(serde_json::to_string(metadata).map_err(json)?),
        );
    }
    if let Some(provider) = &m.provider {
        put(msg::PROVIDER, s(provider.clone()));
    }
    if let Some(id) = &m.provider_message_id {
        put(msg::PROVIDER_ID, s(id.clone()));
    }
    if let Some(cost) = m.cost {
        put(msg::COST, n(cost.0));
    }
    if let Some(error) = &m.error {
        put(msg::ERROR_CODE, s(error.code.clone()));
        put(msg::ERROR_MESSAGE, s(error.message.clone()));
    }
    put(msg::ATTEMPTS, n(m.attempts));
    if !m.links.is_empty() {
        put(
            msg::LINKS,
            AttributeValue::B(Blob::new(key.seal_links(&m.tenant_id, &m.id, &m.links))),
        );
    }
    if m.clicks > 0 {
        put(msg::CLICKS, n(m.clicks));
    }
    if m.bot_clicks > 0 {
        put(msg::BOT_CLICKS, n(m.bot_clicks));
    }
    if let Some(at) = m.clicked_at {
        put(msg::CLICKED, n(nanos(at)?));
    }
    if m.category.is_marketing() {
        put(msg::CATEGORY, s("m"));
    }
    if let Some(code) = &m.opt_out {
        put(msg::OPT_OUT, s(code.as_str()));
    }
    let history = m
        .history
        .iter()
        .map(|c| history_entry(c.status, c.at).map(AttributeValue::S))
        .collect::<Result<Vec<_>, _>>()?;
    put(msg::HISTORY, AttributeValue::L(history));
    // From the later of its creation and the end of its validity: a message scheduled far
    // ahead is kept until it has been sent and the retention has passed.
    put(msg::TTL, ttl(m.created_at.max(m.expires_at), retention));
    let keys = IndexKeys::of(
        &m.id,
        m.status,
        m.provider.as_deref(),
        m.provider_message_id.as_deref(),
        config.index_shards,
    );
    for (name, value) in keys.pairs() {
        if let Some(value) = value {
            put(name, s(value.clone()));
        }
    }
    Ok(item)
}

/// The items that find a message's short codes (tracked links, opt-out), expiring with it.
pub(super) fn link_items(m: &Message, message: &Item) -> Vec<Item> {
    m.codes()
        .map(|code| {
            let mut item = Item::from([
                (
                    msg::TENANT.to_owned(),
                    s(format!("{}{}", link::PREFIX, code)),
                ),
                (msg::ID.to_owned(), s(link::ID)),
                (link::TENANT.to_owned(), s(m.tenant_id.as_str())),
                (link::MESSAGE.to_owned(), s(m.id.to_string())),
            ]);
            if let Some(ttl) = message.get(msg::TTL) {
                item.insert(msg::TTL.to_owned(), ttl.clone());
            }
            item
        })
        .collect()
}

/// The key of a code's link item.
pub(super) fn link_key(code: &ShortCode) -> Item {
    Item::from([
        (
            msg::TENANT.to_owned(),
            s(format!("{}{}", link::PREFIX, code)),
        ),
        (msg::ID.to_owned(), s(link::ID)),
    ])
}

/// The message a link item points at.
pub(super) fn link_target(item: &Item) -> Result<(TenantId, MessageId), StoreError> {
    Ok((
        parse::<TenantId>(req_s(item, link::TENANT)?, "tenant id")?,
        parse::<MessageId>(req_s(item, link::MESSAGE)?, "message id")?,
    ))
}

/// The primary key of a message.
pub(super) fn message_key(tenant: &TenantId, id: &MessageId, shards: u16) -> Item {
    Item::from([
        (msg::TENANT.to_owned(), s(home(tenant, id, shards))),
        (msg::ID.to_owned(), s(id.to_string())),
    ])
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(corrupt(format!("attribute {name} is not a string"))),
    }
}

pub(super) fn req_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    get_s(item, name)?.ok_or_else(|| corrupt(format!("attribute {name} is missing")))
}

pub(super) fn get_n<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| corrupt(format!("attribute {name} = {value} is out of range"))),
        Some(_) => Err(corrupt(format!("attribute {name} is not a number"))),
    }
}

pub(super) fn req_n<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    get_n(item, name)?.ok_or_else(|| corrupt(format!("attribute {name} is missing")))
}

pub(super) fn parse<T: FromStr>(value: &str, what: &str) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| corrupt(format!("{what} {value:?} cannot be parsed")))
}

fn time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    Ok(DateTime::from_timestamp_nanos(req_n(item, name)?))
}

/// When a message item was last changed (nanoseconds, as stored).
pub(super) fn updated_nanos(item: &Item) -> Result<i64, StoreError> {
    req_n(item, msg::UPDATED)
}

/// The tenant of a sealed item (whose key opening it needs).
pub(super) fn sealed_tenant(item: &Item) -> Option<&str> {
    match (
        item.get(msg::SEALED).or(item.get(msg::LINKS)),
        item.get(msg::TENANT),
    ) {
        (Some(_), Some(AttributeValue::S(home))) => Some(
            home.split_once('#')
                .map_or(home.as_str(), |(tenant, _)| tenant),
        ),
        _ => None,
    }
}

/// The message of an item, opened with its tenant's key from `keys` if it is sealed
/// ([`StoreError::Erased`] if that key was erased).
pub(super) fn message_from(item: &Item, keys: &OpeningKeys) -> Result<Message, StoreError> {
    let id = req_s(item, msg::ID)?;
    let bad = |what: &str, e: &dyn std::fmt::Display| corrupt(format!("message {id}: {what}: {e}"));
    let message_id = parse::<MessageId>(id, "message id")?;
    let tenant_id = item_tenant(item)?;
    let (to, text) = match item.get(msg::SEALED) {
        Some(AttributeValue::B(sealed)) => match keys.get(tenant_id.as_str()) {
            Some(Some(key)) => key
                .open_message(&tenant_id, &message_id, sealed.as_ref())
                .map_err(|e| bad("sealed", &e))?,
            Some(None) => return Err(StoreError::Erased),
            None => return Err(bad("sealed", &"no key was fetched for the tenant")),
        },
        Some(_) => return Err(bad("sealed", &"not binary")),
        // An item from before sealing.
        None => (
            PhoneNumber::parse(req_s(item, msg::TO)?).map_err(|e| bad("to", &e))?,
            req_s(item, msg::TEXT)?.to_owned(),
        ),
    };
    let links = match item.get(msg::LINKS) {
        Some(AttributeValue::B(sealed)) => match keys.get(tenant_id.as_str()) {
            Some(Some(key)) => key
                .open_links(&tenant_id, &message_id, sealed.as_ref())
                .map_err(|e| bad("links", &e))?,
            Some(None) => return Err(StoreError::Erased),
            None => return Err(bad("links", &"no key was fetched for the tenant")),
        },
        Some(_) => return Err(bad("links", &"not binary")),
        None => Vec::new(),
    };
    let error = message_error(item, id)?;
    let history = match item.get(msg::HISTORY) {
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|e| match e {
                AttributeValue::S(entry) => history_from(entry),
                _ => Err(bad("history", &"an entry is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad("history", &"missing or not a list")),
    };
    Ok(Message {
        id: message_id,
        tenant_id,
        batch_id: get_s(item, msg::BATCH)?
            .map(|b| parse::<BatchId>(b, "batch id"))
            .transpose()?,
        to,
        from: SenderId::parse(req_s(item, msg::FROM)?).map_err(|e| bad("from", &e))?,
        text,
        encoding: encoding_from(req_s(item, msg::ENCODING)?)?,
        segments: req_n(item, msg::SEGMENTS)?,
        status: parse::<MessageStatus>(req_s(item, msg::STATUS)?, "status")?,
        created_at: time(item, msg::CREATED)?,
        updated_at: time(item, msg::UPDATED)?,
        send_at: get_n::<i64>(item, msg::SEND_AT)?.map(DateTime::from_timestamp_nanos),
        expires_at: time(item, msg::EXPIRES)?,
        callback_url: get_s(item, msg::CALLBACK)?.map(str::to_owned),
        callback_statuses: callback_statuses(item)?,
        reference: get_s(item, msg::REFERENCE)?.map(str::to_owned),
        metadata: get_s(item, msg::METADATA)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad("metadata", &e))?,
        provider: get_s(item, msg::PROVIDER)?.map(str::to_owned),
        provider_message_id: get_s(item, msg::PROVIDER_ID)?.map(str::to_owned),
        cost: get_n(item, msg::COST)?.map(Kopiyky),
        error,
        attempts: req_n(item, msg::ATTEMPTS)?,
        history,
        links,
        clicks: get_n(item, msg::CLICKS)?.unwrap_or(0),
        bot_clicks: get_n(item, msg::BOT_CLICKS)?.unwrap_or(0),
        clicked_at: get_n::<i64>(item, msg::CLICKED)?.map(DateTime::from_timestamp_nanos),
        category: match get_s(item, msg::CATEGORY)? {
            None => Category::Transactional,
            Some("m") => Category::Marketing,
            Some(other) => return Err(bad("category", &other)),
        },
        opt_out: get_s(item, msg::OPT_OUT)?
            .map(|c| ShortCode::parse(c).ok_or_else(|| bad("opt-out code", &c)))
            .transpose()?,
    })
}

/// An item's error: code and message, both or neither.
fn message_error(item: &Item, id: &str) -> Result<Option<MessageError>, StoreError> {
    match (
        get_s(item, msg::ERROR_CODE)?,
        get_s(item, msg::ERROR_MESSAGE)?,
    ) {
        (Some(code), Some(message)) => Ok(Some(MessageError {
            code: code.to_owned(),
            message: message.to_owned(),
        })),
        (None, None) => Ok(None),
        _ => Err(corrupt(format!(
            "message {id}: error: code and message must be set together"
        ))),
    }
}

/// The statuses an item's callback URL asked for.
fn callback_statuses(item: &Item) -> Result<StatusSet, StoreError> {
    match get_n::<u16>(item, msg::CALLBACK_STATUSES)? {
        None => Ok(StatusSet::ALL),
        Some(bits) => StatusSet::from_bits(bits)
            .ok_or_else(|| corrupt(format!("callback statuses {bits} name no status"))),
    }
}

/// The callback event of an item's status (or, with `clicked`, of its first click by a
/// person), if it has a callback URL: its tenant, URL, the statuses the URL asked for, and
/// the event. Reads the plain attributes only (what a stream record of the item carries),
/// never the sealed ones.
pub(super) fn callback_event(
    item: &Item,
    clicked: bool,
) -> Result<Option<(TenantId, String, StatusSet, CallbackEvent)>, StoreError> {
    let Some(url) = get_s(item, msg::CALLBACK)? else {
        return Ok(None);
    };
    let at = if clicked {
        match get_n::<i64>(item, msg::CLICKED)? {
            Some(at) => DateTime::from_timestamp_nanos(at),
            None => return Ok(None),
        }
    } else {
        time(item, msg::UPDATED)?
    };
    let id = req_s(item, msg::ID)?;
    let bad = |what: &str, e: &dyn std::fmt::Display| corrupt(format!("message {id}: {what}: {e}"));
    let error = message_error(item, id)?;
    let event = CallbackEvent {
        message_id: parse::<MessageId>(id, "message id")?,
        status: parse::<MessageStatus>(req_s(item, msg::STATUS)?, "status")?,
        at,
        reference: get_s(item, msg::REFERENCE)?.map(str::to_owned),
        metadata: get_s(item, msg::METADATA)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| bad("metadata", &e))?,
        batch_id: get_s(item, msg::BATCH)?
            .map(|b| parse::<BatchId>(b, "batch id"))
            .transpose()?,
        segments: req_n(item, msg::SEGMENTS)?,
        provider: get_s(item, msg::PROVIDER)?.map(str::to_owned),
        cost_kopiyky: get_n(item, msg::COST)?,
        error,
        clicked,
    };
    Ok(Some((
        item_tenant(item)?,
        url.to_owned(),
        callback_statuses(item)?,
        event,
    )))
}

/// The plain facts of a message item that its statistics depend on (nothing sealed is
/// opened); `None` for an item of the table that is no message (a batch marker).
pub(super) fn snapshot(item: &Item) -> Result<Option<Snapshot>, StoreError> {
    let tenant = req_s(item, msg::TENANT)?;
    if tenant == marker::PARTITION || tenant.starts_with(link::PREFIX) {
        return Ok(None);
    }
    let history = match item.get(msg::HISTORY) {
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|e| match e {
                AttributeValue::S(entry) => history_from(entry),
                _ => Err(corrupt("a history entry is not a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
        Some(_) => return Err(corrupt("the history is not a list")),
    };
    let (sent_at, delivered_at) = Snapshot::moments(history.iter().map(|c| (c.status, c.at)));
    Ok(Some(Snapshot {
        tenant_id: item_tenant(item)?,
        created_at: time(item, msg::CREATED)?,
        provider: get_s(item, msg::PROVIDER)?.map(str::to_owned),
        operator: get_s(item, msg::OPERATOR)?
            .map(|o| parse::<Operator>(o, "operator"))
            .transpose()?,
        sender: SenderId::parse(req_s(item, msg::FROM)?)
            .map_err(|e| corrupt(format!("sender: {e}")))?,
        batch_id: get_s(item, msg::BATCH)?
            .map(|b| parse::<BatchId>(b, "batch id"))
            .transpose()?,
        encoding: encoding_from(req_s(item, msg::ENCODING)?)?,
        segments: req_n(item, msg::SEGMENTS)?,
        status: parse::<MessageStatus>(req_s(item, msg::STATUS)?, "status")?,
        cost: get_n(item, msg::COST)?,
        sent_at,
        delivered_at,
        clicks: get_n(item, msg::CLICKS)?.unwrap_or(0),
        bot_clicks: get_n(item, msg::BOT_CLICKS)?.unwrap_or(0),
    }))
}

/// The largest slice of an idempotency body kept in one item: DynamoDB items hold at most
/// 400 KB, and the reply to a 10,000-recipient batch is larger than that.
pub(super) const BODY_PART_BYTES: usize = 300 * 1024;

/// The sort key of part `index` (from 1) of a body split over several items. A newline
/// cannot occur in an idempotency key, so these never collide with a client's key.
pub(super) fn body_part_key(key: &str, index: usize) -> String {
    format!("{key}\n{index}")
}

/// The items of an idempotency record: the record itself, then the further parts of its
/// body if it does not fit in one.
pub(super) fn idempotency_items(
    r: &IdempotencyRecord,
    config: &DynamoConfig,
) -> Result<Vec<Item>, StoreError> {
    let body = r.body.to_string();
    let mut parts = Vec::new();
    let mut rest = body.as_str();
    while !rest.is_empty() || parts.is_empty() {
        let mut cut = rest.len().min(BODY_PART_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (part, tail) = rest.split_at(cut);
        parts.push(part);
        rest = tail;
    }
    // Counted from when the key is stored, whatever clock stamped the record.
    let expires = ttl(Utc::now(), config.idempotency_retention);
    let key = r.key.as_str();
    let mut items = Vec::with_capacity(parts.len());
    for (index, part) in parts.iter().enumerate() {
        let mut item = Item::from([
            (
                idem::TENANT.to_owned(),
                s(idempotency_home(&r.tenant_id, key, config.write_shards)),
            ),
            (idem::BODY.to_owned(), s(*part)),
            (idem::TTL.to_owned(), expires.clone()),
        ]);
        if index == 0 {
            item.insert(idem::KEY.to_owned(), s(key));
            item.insert(idem::FINGERPRINT.to_owned(), s(r.fingerprint.clone()));
            item.insert(idem::STATUS_CODE.to_owned(), n(r.status_code));
            item.insert(idem::CREATED.to_owned(), n(nanos(r.created_at)?));
            if parts.len() > 1 {
                item.insert(idem::PARTS.to_owned(), n(parts.len()));
            }
        } else {
            item.insert(idem::KEY.to_owned(), s(body_part_key(key, index)));
        }
        items.push(item);
    }
    Ok(items)
}

/// The record from its first item and the bodies of the further parts, in order.
pub(super) fn idempotency_from(
    tenant: &TenantId,
    key: &IdempotencyKey,
    first: &Item,
    more: &[&str],
) -> Result<IdempotencyRecord, StoreError> {
    let mut body = req_s(first, idem::BODY)?.to_owned();
    for part in more {
        body.push_str(part);
    }
    let status: i64 = req_n(first, idem::STATUS_CODE)?;
    Ok(IdempotencyRecord {
        tenant_id: tenant.clone(),
        key: key.clone(),
        fingerprint: req_s(first, idem::FINGERPRINT)?.to_owned(),
        status_code: u16::try_from(status)
            .map_err(|_| corrupt(format!("idempotency status code {status}")))?,
        body: serde_json::from_str(&body).map_err(|e| corrupt(format!("idempotency body: {e}")))?,
        created_at: time(first, idem::CREATED)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config() -> DynamoConfig {
        DynamoConfig::with_prefix("codec")
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let id: MessageId = "01KQHG5N2C0000000000000000".parse().unwrap();
        assert_eq!(shard(&id, 4), shard(&id, 4));
        for _ in 0..100 {
            let id = MessageId::generate(Utc::now());
            let s: u16 = shard(&id, 4).parse().unwrap();
            assert!(s < 4);
            assert_eq!(shard(&id, 1), "0");
        }
    }

    /// An item's size as DynamoDB bills it: names and values in UTF-8, a number in about
    /// one byte per two digits plus one, three bytes per list and one per list element.
    fn billed_bytes(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(s) => s.len(),
                AttributeValue::B(b) => b.as_ref().len(),
                AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
                AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
                AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value(v)).sum::<usize>(),
                _ => 1,
            }
        }
        item.iter().map(|(name, v)| name.len() + value(v)).sum()
    }

    /// A message as intake makes it and the walk to `delivered` leaves it: a two-part
    /// Cyrillic text with a callback, a reference, metadata, a provider id, six history
    /// entries and two receipts. Every write of it must cost one unit (1 KB), not two.
    #[test]
    fn a_typical_message_fits_one_write_unit() {
        let at = Utc.timestamp_opt(1_777_636_800, 123_456_789).unwrap();
        let mut m = Message {
            id: MessageId::generate(at),
            tenant_id: TenantId::generate(at),
            batch_id: Some(BatchId::generate(at)),
            to: PhoneNumber::parse("+380671234567").unwrap(),
            from: SenderId::parse("HolubShop").unwrap(),
            text: "Ваше замовлення №48213 передано до служби доставки. Очікуйте SMS з \
                   номером накладної. Дякуємо!"
                .into(),
            encoding: Encoding::Ucs2,
            segments: 2,
            status: MessageStatus::Delivered,
            created_at: at,
            updated_at: at,
            send_at: None,
            expires_at: at,
            callback_url: Some("https://shop.example.com/hooks/holub/status".into()),
            callback_statuses: StatusSet::of([MessageStatus::Delivered, MessageStatus::Failed]),
            reference: Some("order-48213".into()),
            metadata: Some(serde_json::json!({"order": 48213, "channel": "web"})),
            provider: Some("kyivstar".into()),
            provider_message_id: Some("a1b2c3d4-e5f6-7890-abcd-ef1234567890".into()),
            cost: Some(Kopiyky(170)),
            error: None,
            attempts: 1,
            history: Vec::new(),
            links: Vec::new(),
            clicks: 0,
            bot_clicks: 0,
            clicked_at: None,
            category: Default::default(),
            opt_out: None,
        };
        for status in [
            MessageStatus::Accepted,
            MessageStatus::Queued,
            MessageStatus::Sending,
            MessageStatus::Sent,
            MessageStatus::Delivered,
        ] {
            m.history.push(StatusChange { status, at });
        }
        let key = DataKey::from_bytes(&[7; 32]);
        let retention = std::time::Duration::from_secs(90 * 24 * 3600);
        let mut item = message_item(&m, &config(), &key, retention).unwrap();
        // The keys it carries while it waits for its receipts.
        item.insert(msg::AWAITING.into(), s("3"));
        let receipts = (1..=2)
            .map(|part| {
                receipt_str(&PartReceipt {
                    part,
                    state: ReceiptState::Delivered,
                    at,
                })
                .unwrap()
            })
            .collect();
        item.insert(msg::RECEIPTS.into(), AttributeValue::Ss(receipts));
        let bytes = billed_bytes(&item);
        assert!(bytes <= 1024, "{bytes} bytes");
    }

    #[test]
    fn receipts_and_history_round_trip() {
        let at = Utc.timestamp_opt(1_777_636_800, 123_456_789).unwrap();
        let r = PartReceipt {
            part: 3,
            state: ReceiptState::Undelivered,
            at,
        };
        assert_eq!(receipt_from(&receipt_str(&r).unwrap()).unwrap(), r);
        let entry = history_entry(MessageStatus::Sending, at).unwrap();
        assert_eq!(
            history_from(&entry).unwrap(),
            StatusChange {
                status: MessageStatus::Sending,
                at
            }
        );
        assert!(receipt_from("1|x|delivered").is_err());
        assert!(history_from("sent").is_err());
    }

    #[test]
    fn a_large_body_is_split_at_character_boundaries_and_joined_again() {
        let tenant = TenantId::generate(Utc::now());
        let key = IdempotencyKey::parse("big").unwrap();
        let text = "Привіт ".repeat(60_000); // ~780 KB of two-byte characters
        let record = IdempotencyRecord {
            tenant_id: tenant.clone(),
            key: key.clone(),
            fingerprint: "fp".into(),
            status_code: 202,
            body: serde_json::json!({ "text": text }),
            created_at: Utc::now(),
        };
        let items = idempotency_items(&record, &config()).unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            items
                .iter()
                .all(|i| req_s(i, idem::BODY).unwrap().len() <= BODY_PART_BYTES)
        );
        assert_eq!(req_s(&items[2], idem::KEY).unwrap(), "big\n2");
        let more: Vec<&str> = items[1..]
            .iter()
            .map(|i| req_s(i, idem::BODY).unwrap())
            .collect();
        let back = idempotency_from(&tenant, &key, &items[0], &more).unwrap();
        assert_eq!(back, record);
    }
}
