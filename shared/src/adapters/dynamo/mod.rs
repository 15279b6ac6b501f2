//! [`MessageStore`](crate::ports::MessageStore) and [`TenantStore`](crate::ports::TenantStore)
//! on DynamoDB.
//!
//! # Tables
//!
//! Three tables, all on-demand (`PAY_PER_REQUEST`). Attribute names are short on purpose:
//! a write costs one unit per started kilobyte of the item, names included. Times are
//! integer nanoseconds since the Unix epoch (`N`), as in the SQLite store; TTL attributes
//! are seconds, as DynamoDB's TTL wants them.
//!
//! ## `messages`: one item per message
//!
//! | key | attribute | type | |
//! |---|---|---|---|
//! | partition | `t` | S | `"<tenant id>#<n>"`: the tenant and one of its [`DynamoConfig::write_shards`] write shards, n a stable hash of the message id |
//! | sort | `id` | S | message id (a ULID: sorts by creation, so a `Query` on each of the tenant's partitions with `ScanIndexForward=false`, merged by id, lists newest first and `id < :after` is the cursor) |
//!
//! **Write sharding.** A partition key takes at most 1,000 write units a second, and a sort
//! key that only grows (a ULID) defeats DynamoDB's split for heat, since every write lands
//! at the end of the range. A message's item is written about four times on its way to
//! `delivered` (stored, claimed, sent, receipt), so under one partition per tenant a tenant
//! would top out near 250 messages a second. Spread over `S` partitions by a hash of the
//! id, each takes 1/`S` of the tenant's writes (`S` = 64 deployed: about 16,000 messages a
//! second); a read of one message still names its partition from its id alone, and a list
//! queries the `S` partitions and merges them (a first round asks each for its share of the
//! page; one that runs dry is asked again, so the merge is exact).
//!
//! Other attributes: `b` batch id, `to` E.164 recipient, `fr` sender, `tx` text, `en`
//! encoding, `sg` segments, `st` status, `c`/`u` created/updated, `sa` send_at, `x`
//! expires_at, `cb` callback URL, `rf` reference, `md` metadata (JSON text), `pv` provider,
//! `pm` provider message id, `co` cost (kopiyky), `ec`/`em` error code/message, `at`
//! attempts, `h` history (a list of `"<status> <nanos>"`), `rc` receipts (a string set of
//! `"<nanos>|<part>|<state>"`: set semantics keep a duplicate receipt once, with no extra
//! item or condition), and **`ttl`** (created_at + [`DynamoConfig::message_retention`]; the
//! table's TTL attribute).
//!
//! Global secondary indexes. Each is *sparse*: its partition-key attribute is written only
//! while the message belongs in the index, so an index holds only what its query reads, and
//! a message costs an index write only when it enters or leaves. Projections are
//! `KEYS_ONLY` (plus attributes that never change while the entry exists), so a status
//! change that leaves an index key alone costs that index nothing. The sweep indexes spread
//! their partition key over [`DynamoConfig::index_shards`] shards (a stable hash of the
//! message id) so that no single partition takes every message's writes; a sweep queries
//! each shard and merges. The shard count may grow but must never shrink.
//!
//! | index | partition key | sort key | projection | present while | serves |
//! |---|---|---|---|---|---|
//! | `by_provider` | `pp` = `"<provider>#<provider id>"` (S) | — | keys + `sg`, `pv`, `pm` | the message has a provider id | `find_by_provider_ids` |
//! | `due` | `dq` = shard (S) | `sa` (N) | keys | status is `scheduled` | `due_scheduled` |
//! | `queued` | `qq` = shard (S) | `u` (N) | keys | status is `queued` (a message stored alone, or moved to `queued` later); a batch marker | `stale_queued` |
//! | `awaiting` | `ap` = shard (S) | `x` (N) | keys + `pm`, `pv`, `u` | status is `sent` with a provider id | `awaiting_receipts` (filtered on `pv` and `u`), `sent_past_validity` |
//!
//! Four indexes and no more, because every entry a message enters and leaves is two write
//! units of its life: an immediate message passes through `queued` and `awaiting` only
//! (4 units), a scheduled one through `due` too. Messages waiting to be sent need no
//! validity index: dispatch expires a message whose validity ended when its job comes up,
//! and every waiting message has a job coming. One `awaiting` index for every provider's
//! sent messages serves both the expiry of sent messages whose receipt never came and the
//! polling of providers that do not push (which reads past other providers' entries: index
//! reads are a fifth of the price of writes, and only polled providers poll).
//!
//! Messages stored together (a batch) do not enter `queued` one by one: one **batch marker**
//! per tenant stands for them, an item in partition `t = "#batches"` (never a tenant id)
//! with id `"<tenant>#<first id>#<last id>"`, `qq` and `u` (the oldest of theirs), written
//! before the messages. A sweep that meets a marker reads its span of message ids (one
//! eventually consistent query per write shard) and returns those still queued and stale; once none of them
//! is queued it deletes the marker. A batch so costs one write per message and a few per
//! batch, instead of two more per message (entering and leaving the index).
//!
//! ## `idempotency`: one item per `Idempotency-Key`
//!
//! Partition `t` (S, `"<tenant id>#<n>"`, n a stable hash of the key over the write shards, so
//! keyed requests spread as messages do), sort `k` (S, the key). Attributes: `fp` request
//! fingerprint, `sc` status code, `bd` the reply body (JSON text), `c` created, `ms`/`cl`
//! the message and claim time of a one-message record (see Insert below), **`ttl`**
//! (created + [`DynamoConfig::idempotency_retention`]). A body larger than 300 KB (the reply to
//! a batch of many thousand recipients; items hold at most 400 KB) continues in items
//! `k = "<key>\n<n>"` (n = 1, 2, ...; a key cannot hold a newline), and the first item
//! says in `np` how many items there are. A record whose `ttl` has passed counts as absent
//! even before DynamoDB deletes it.
//!
//! ## `tenants`: tenants and API keys
//!
//! Partition `pk` (S) only: `"tenant#<id>"` items hold `n` name and `c` created;
//! `"key#<sha-256 of the key>"` items hold `t`, the tenant id. No indexes.
//!
//! # Conditional writes and atomicity
//!
//! - **Insert**: every new message is put with `attribute_not_exists(id)`, the idempotency
//!   record with `attribute_not_exists(k) OR ttl < now`. One message with a key (the OTP
//!   case) is two plain writes, the record first (naming the message in `ms`, claimed at
//!   `cl`), then the message: a transaction would bill each item twice. A record whose
//!   message is missing is a request in progress for [`CLAIM_WINDOW`]
//!   ([`StoreError::IdempotencyKeyInFlight`]) and is deleted after it (the request died
//!   before it answered, so its retry is a new request). Otherwise, the
//!   record and the messages go in one `TransactWriteItems` (with a `ClientRequestToken`,
//!   so an SDK retry of a transaction that did commit is not refused), which is atomic up
//!   to 100 items: the record and up to 99 messages. A larger batch puts its first messages
//!   with `BatchWriteItem` first and the record with the last 99 (or fewer) in the closing
//!   transaction: if that transaction is refused (the key is taken, an id exists), the
//!   messages put before it are deleted again. Only a crash between the two leaves
//!   messages that no key stands for (they are delivered, as an at-least-once queue would).
//!   Without a record, one message is a conditional `PutItem`; several are put with
//!   `BatchWriteItem` (unconditional: ids are fresh ULIDs, and the ids of one call are
//!   checked for repeats before anything is written).
//! - **Transitions** (claims, cancels, receipts, expiry): one `UpdateItem` per change with
//!   `#st IN (:from...)`, returning the new item (`ALL_NEW`), so a claim costs one write and
//!   no read. Changes of one message in one call apply in order; different messages are
//!   updated concurrently. A call can land in part (throttling refuses some updates), so
//!   every update runs to its end and `transition_each` answers each change for itself:
//!   dispatch sends what it claimed and hands back only the jobs whose claims failed.
//! - **Tenants**: the tenant and its key hash are created together in one transaction, each
//!   with `attribute_not_exists(pk)`.
//!
//! Reads of one item (`get`, `idempotency`) are
//! strongly consistent. `list` and `tenant_by_key_hash` read eventually consistently, and
//! index queries can only: a sweep may return a message that has just left its state
//! (every transition it leads to is conditional, so that does no harm).
//!
//! Where this differs from the SQLite store: a `transition` call is atomic per change, not
//! as a whole (an error may leave some changes of the call applied; each is conditional, so
//! repeating the call is safe); an insert of more than one message puts the messages
//! outside the closing transaction unconditionally, so an id that already exists there is
//! overwritten rather than refused (ids are fresh ULIDs; a repeat within the call is
//! refused); and idempotency keys expire after [`DynamoConfig::idempotency_retention`].
//!
//! # Cost
//!
//! A message item stays under 1 KB (a two-part Cyrillic text with callback, metadata,
//! history and receipts is about 770 bytes; a unit test keeps it so), so each write of it is
//! one write unit; index entries are small, one unit each. Per call, with `S` shards:
//!
//! | call | requests | write units |
//! |---|---|---|
//! | `insert`, one message | 1 `PutItem` | 1 + 1 index entry (`queued` or `due`) |
//! | `insert`, one message + key | 2 `PutItem` | 1 + 1 + 1 index entry |
//! | `insert`, n messages | 1 `PutItem` per tenant (marker) + ⌈n/25⌉ `BatchWriteItem` | n + 2 per marker |
//! | `insert`, n messages + key | the marker + ⌈(n−99)/25⌉ `BatchWriteItem` + 1 `TransactWriteItems` | (n−99) + 2 × 100 + 2 per marker |
//! | `transition`, per change | 1 `UpdateItem` (`ALL_NEW`: no read) | 1 + index moves: claim 1, sent 2 (`by_provider`, `awaiting`), final 1, release 2 |
//! | `transition` with receipts | the same `UpdateItem` (`ADD` to the receipt set) | the same |
//! | `add_receipts`, per message | 1 `UpdateItem` | 1 |
//! | `get`, `idempotency` | 1 `GetItem` (strong: 1 read unit) | — |
//! | `list` | 1 `Query` per write shard per page (more while filters discard, or a shard's share runs dry) | — |
//! | `find_by_provider_ids` | 1 `Query` per distinct id | — |
//! | `due_scheduled`, `stale_queued`, `awaiting_receipts`, `sent_past_validity` | `S` `Query` (+ 1 `Query` per batch marker met) | — |
//! | `create_tenant` / `tenant_by_key_hash` | 1 `TransactWriteItems` / 1 `GetItem` | 4 / — |

mod campaigns;
mod codec;
mod consent;
mod contacts;
mod counters;
mod keys;
mod leases;
mod messages;
mod provider_limits;
mod reads;
mod replays;
mod schema;
mod stats;
pub mod stream;
mod templates;
mod tenants;
mod txn;
mod users;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

pub use messages::CLAIM_WINDOW;
pub use schema::create_tables;

use crate::adapters::vault::{KeyWrapper, OpeningKeys, Vault};
use crate::ports::StoreError;

/// Where and how the DynamoDB store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    pub messages_table: String,
    pub idempotency_table: String,
    pub tenants_table: String,
    /// The analytics: statistics per tenant and cell, and the rollup's checkpoints.
    pub stats_table: String,
    /// The messages table's stream, which the rollup reads; `None`: asked of the table.
    pub messages_stream_arn: Option<String>,
    /// Partitions each sweep index is spread over (at least 1). May grow, never shrink.
    pub index_shards: u16,
    /// Partitions each tenant's messages and idempotency records are spread over (at least
    /// 1), so that no partition key takes more than a share of one tenant's writes. Fixed for
    /// the life of a table: a message's partition is a hash of its id modulo this count.
    pub write_shards: u16,
    /// How long a message is kept after it was created (the `ttl` attribute).
    pub message_retention: Duration,
    /// How long an idempotency key keeps its reply.
    pub idempotency_retention: Duration,
}

impl DynamoConfig {
    /// The shard counts `template.yaml` deploys with (its `IndexShards` and `WriteShards`).
    pub const DEPLOYED_INDEX_SHARDS: u16 = 256;
    pub const DEPLOYED_WRITE_SHARDS: u16 = 64;

    /// The partition (`t`) of a message's item in the messages table.
    pub fn message_partition(
        &self,
        tenant: &crate::domain::TenantId,
        id: &crate::domain::MessageId,
    ) -> String {
        codec::home(tenant, id, self.write_shards)
    }

    /// The partition (`t`) of an idempotency record's items.
    pub fn idempotency_partition(&self, tenant: &crate::domain::TenantId, key: &str) -> String {
        codec::idempotency_home(tenant, key, self.write_shards)
    }

    /// Tables named `<prefix>-messages`, `<prefix>-idempotency`, `<prefix>-tenants` and
    /// `<prefix>-stats`, with
    /// the default shard count and retention periods.
    pub fn with_prefix(prefix: &str) -> Self {
        DynamoConfig {
            messages_table: format!("{prefix}-messages"),
            idempotency_table: format!("{prefix}-idempotency"),
            tenants_table: format!("{prefix}-tenants"),
            stats_table: format!("{prefix}-stats"),
            messages_stream_arn: None,
            index_shards: 4,
            write_shards: 8,
            message_retention: Duration::from_secs(90 * 24 * 3600),
            idempotency_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// The DynamoDB store. Cheap to clone: clones share the client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    config: Arc<DynamoConfig>,
    /// The tenants' data keys, wrapped by `master` in the tenants table.
    vault: Arc<Vault>,
    retention: Arc<keys::RetentionCache>,
    /// Blocks this process took of tenants' rate buckets and spend caps (see `leases`).
    leases: Arc<leases::Leases>,
    /// The client of the messages table's stream (only the rollup reads it).
    streams: Option<aws_sdk_dynamodbstreams::Client>,
    /// The stream's ARN, once asked of the table.
    stream: Arc<tokio::sync::OnceCell<String>>,
}

impl DynamoStore {
    /// The store over `config`'s tables; numbers and texts sealed under data keys wrapped by
    /// `master` (KMS).
    pub fn new(client: Client, config: DynamoConfig, master: Arc<dyn KeyWrapper>) -> Self {
        let shelf = keys::Shelf {
            client: client.clone(),
            table: config.tenants_table.clone(),
        };
        DynamoStore {
            client,
            config: Arc::new(config),
            vault: Arc::new(Vault::new(master, Arc::new(shelf))),
            retention: Arc::default(),
            leases: Arc::default(),
            streams: None,
            stream: Arc::default(),
        }
    }

    /// The store with a client of the messages table's stream, which the rollup reads.
    pub fn with_streams(mut self, streams: aws_sdk_dynamodbstreams::Client) -> Self {
        self.streams = Some(streams);
        self
    }

    /// The keys that open the sealed items among `items`.
    async fn opening_keys<'a>(
        &self,
        items: impl IntoIterator<Item = &'a codec::Item>,
    ) -> Result<OpeningKeys, StoreError> {
        self.vault
            .opening_keys(items.into_iter().filter_map(codec::sealed_tenant))
            .await
    }

    /// How long `tenant`'s messages are kept: its limits' `retention_days`, or the
    /// configured default.
    async fn retention_of(&self, tenant: &crate::domain::TenantId) -> Result<Duration, StoreError> {
        let days = match self.retention.get(tenant) {
            Some(days) => days,
            None => {
                let days = crate::ports::TenantStore::limits(self, tenant)
                    .await?
                    .and_then(|l| l.retention_days);
                self.retention.put(tenant, days);
                days
            }
        };
        Ok(days.map_or(self.config.message_retention, |d| {
            Duration::from_secs(u64::from(d) * 24 * 3600)
        }))
    }

    pub fn config(&self) -> &DynamoConfig {
        &self.config
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("config", &self.config)
            .finish()
    }
}

/// Requests of one call that run at once (updates of distinct messages, index shards).
const CONCURRENCY: usize = 16;

/// Items in one `TransactWriteItems`.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// Items in one `BatchWriteItem`.
const MAX_BATCH_WRITE: usize = 25;

/// Keys in one `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;

/// Rounds of retrying the unprocessed part of a batch request before giving up.
const BATCH_ROUNDS: u32 = 8;

fn unavailable<E>(e: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(Box::new(e))
}

/// An error that says itself what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Incomplete(String);

/// The backoff before round `round` (from 1) of retrying unprocessed items.
fn backoff(round: u32) -> Duration {
    Duration::from_millis(25u64 << round.min(6))
}

/// Builds expressions with a placeholder for every attribute name (so DynamoDB's reserved
/// words never get in the way) and every value.
#[derive(Default)]
struct Expr {
    names: std::collections::HashMap<String, String>,
    values: std::collections::HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        let placeholder = format!("#{attr}");
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn names(&self) -> Option<std::collections::HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<std::collections::HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}
