//! [`StatsStore`] on DynamoDB: the rollup reads the messages table's stream
//! (`NEW_AND_OLD_IMAGES`) itself, shard by shard from a checkpoint, and folds each record into
//! the `stats` table as the new image's contribution minus the old one's.
//!
//! # The `stats` table
//!
//! Partition `t` (S, the tenant id), sort `k` (S, the cell: [`StatsKey::encode`], which sorts
//! by hour, so a report is one `Query` of a key range). Counters are numbers, changed only
//! with `ADD` (so two cells' updates never need to read first): `n<status>` messages per
//! status, `pa` parts, `co` cost in kopiykas, `ha<bucket>` and `hs<bucket>` the
//! accepted→delivered and sent→delivered latency histograms, `cu` messages clicked by a
//! person, `cl` their clicks, `cb` clicks by link-preview fetchers.
//!
//! Checkpoints live in the same table, partition `#rollup` (never a tenant id), one item per
//! stream shard (`k` = the shard id): `sq` the sequence number of the last record folded,
//! `dn` once a closed shard has been read to its end, `ttl` two days after that (a stream
//! keeps records 24 hours).
//!
//! # Exactly once
//!
//! The cells a run of records changes and the shard's checkpoint move in one
//! `TransactWriteItems` (at most 100 items: up to [`CELLS_PER_WRITE`] cells and the
//! checkpoint), the checkpoint conditional on still being where this run read it. A run that
//! dies leaves the checkpoint where the last committed write put it; a run that overlaps
//! another finds the checkpoint moved and stops at that shard. A record therefore counts
//! once, however often it is read. A child shard is read only after its parent is done, so
//! the changes of one message are folded in order.
//!
//! Records that remove items (DynamoDB's TTL forgetting old messages) change no statistics:
//! the totals outlive the message log, as in the SQLite store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::{
    AttributeValue as StreamValue, OperationType, Record, ShardIteratorType,
};
use chrono::Utc;
use sha2::{Digest, Sha256};

use super::codec::{self, Item, corrupt, get_s, s};
use super::txn::cancellation_codes;
use super::{DynamoStore, Expr, Incomplete, MAX_TRANSACTION_ITEMS, unavailable};
use crate::domain::MessageStatus;
use crate::domain::TenantId;
use crate::domain::stats::{Counters, Deltas, Hour, StatsKey};
use crate::ports::{Rolled, StatsStore, StoreError};

/// Attribute names of the stats table.
pub(super) mod stat {
    pub const TENANT: &str = "t";
    pub const CELL: &str = "k";
    pub const PARTS: &str = "pa";
    pub const COST: &str = "co";
    pub const STATUS_PREFIX: &str = "n";
    pub const ACCEPTED_PREFIX: &str = "ha";
    pub const SENT_PREFIX: &str = "hs";
    /// Messages clicked by a person, clicks by people, clicks by preview fetchers.
    pub const CLICKED: &str = "cu";
    pub const CLICKS: &str = "cl";
    pub const BOT_CLICKS: &str = "cb";
    /// Checkpoints: the partition, and their attributes.
    pub const CHECKPOINTS: &str = "#rollup";
    pub const SEQUENCE: &str = "sq";
    pub const DONE: &str = "dn";
    pub const TTL: &str = "ttl";
}

/// Cells changed by one write: a transaction holds 100 items, one of them the checkpoint,
/// and one record changes at most two cells.
const CELLS_PER_WRITE: usize = MAX_TRANSACTION_ITEMS - 3;

/// Records per `GetRecords` (its maximum).
const RECORDS_PER_READ: i32 = 1000;

/// A run stops starting new reads after this long (the rollup function runs once a minute,
/// with a timeout of 60 seconds).
const RUN_TIME: Duration = Duration::from_secs(40);

/// How long a finished shard's checkpoint is kept (the stream keeps records for 24 hours).
const DONE_KEPT: chrono::TimeDelta = chrono::TimeDelta::hours(48);

/// The counters of a cell as `ADD` operands: attribute name and amount, zeros left out.
fn counter_attributes(c: &Counters) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = c
        .statuses
        .iter()
        .map(|(status, n)| (format!("{}{}", stat::STATUS_PREFIX, status.as_str()), *n))
        .collect();
    out.push((stat::PARTS.to_owned(), c.parts));
    out.push((stat::COST.to_owned(), c.cost));
    out.push((stat::CLICKED.to_owned(), c.clicked));
    out.push((stat::CLICKS.to_owned(), c.clicks));
    out.push((stat::BOT_CLICKS.to_owned(), c.bot_clicks));
    for (prefix, histogram) in [
        (stat::ACCEPTED_PREFIX, &c.accepted_to_delivered),
        (stat::SENT_PREFIX, &c.sent_to_delivered),
    ] {
        out.extend(
            histogram
                .0
                .iter()
                .map(|(bucket, n)| (format!("{prefix}{bucket}"), *n)),
        );
    }
    out.retain(|(_, n)| *n != 0);
    out
}

/// A cell's counters from its item.
fn counters_from(item: &Item) -> Result<Counters, StoreError> {
    let mut c = Counters::default();
    for (name, value) in item {
        let AttributeValue::N(number) = value else {
            continue;
        };
        let amount: i64 = codec::parse(number, name)?;
        if amount == 0 {
            continue;
        }
        if name == stat::PARTS {
            c.parts = amount;
        } else if name == stat::COST {
            c.cost = amount;
        } else if name == stat::CLICKED {
            c.clicked = amount;
        } else if name == stat::CLICKS {
            c.clicks = amount;
        } else if name == stat::BOT_CLICKS {
            c.bot_clicks = amount;
        } else if let Some(bucket) = name.strip_prefix(stat::ACCEPTED_PREFIX) {
            c.accepted_to_delivered
                .0
                .insert(codec::parse(bucket, "bucket")?, amount);
        } else if let Some(bucket) = name.strip_prefix(stat::SENT_PREFIX) {
            c.sent_to_delivered
                .0
                .insert(codec::parse(bucket, "bucket")?, amount);
        } else if let Some(status) = name.strip_prefix(stat::STATUS_PREFIX) {
            c.statuses
                .insert(codec::parse::<MessageStatus>(status, "status")?, amount);
        }
    }
    Ok(c)
}

/// A stream image's attribute as the DynamoDB client's.
fn attribute(value: &StreamValue) -> AttributeValue {
    match value {
        StreamValue::S(s) => AttributeValue::S(s.clone()),
        StreamValue::N(n) => AttributeValue::N(n.clone()),
        StreamValue::B(b) => AttributeValue::B(Blob::new(b.as_ref().to_vec())),
        StreamValue::Ss(v) => AttributeValue::Ss(v.clone()),
        StreamValue::Ns(v) => AttributeValue::Ns(v.clone()),
        StreamValue::Bs(v) => {
            AttributeValue::Bs(v.iter().map(|b| Blob::new(b.as_ref().to_vec())).collect())
        }
        StreamValue::M(m) => AttributeValue::M(image(m)),
        StreamValue::L(l) => AttributeValue::L(l.iter().map(attribute).collect()),
        StreamValue::Bool(b) => AttributeValue::Bool(*b),
        _ => AttributeValue::Null(true),
    }
}

fn image(m: &HashMap<String, StreamValue>) -> Item {
    m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect()
}

/// Folds one stream record into `deltas`. `Err` for a record that does not read as a change
/// of a message.
fn fold(record: &Record, deltas: &mut Deltas, epoch: i64) -> Result<(), StoreError> {
    let Some(change) = record.dynamodb() else {
        return Err(corrupt("a stream record without images"));
    };
    let image = |i: Option<&HashMap<String, StreamValue>>| i.map(image);
    fold_images(
        record.event_name(),
        image(change.old_image()).as_ref(),
        image(change.new_image()).as_ref(),
        deltas,
        epoch,
    )
}

/// Folds a change of a message item from `old` to `new` (see [`Epoch`]): a state written
/// before the epoch was never folded, so it is neither added nor taken away; a message
/// written before it counts from its first change after it.
fn fold_images(
    kind: Option<&OperationType>,
    old: Option<&Item>,
    new: Option<&Item>,
    deltas: &mut Deltas,
    epoch: i64,
) -> Result<(), StoreError> {
    // Retention's removals keep what the message added in the totals.
    if !matches!(kind, Some(OperationType::Insert | OperationType::Modify)) {
        return Ok(());
    }
    let Some(new) = new else {
        return Err(corrupt("a change without its new image"));
    };
    let Some(now) = codec::snapshot(new)? else {
        return Ok(());
    };
    if codec::updated_nanos(new)? < epoch {
        return Ok(());
    }
    let before = match old {
        Some(old) if codec::updated_nanos(old)? >= epoch => codec::snapshot(old)?,
        _ => None,
    };
    deltas.change(before.as_ref(), Some(&now));
    Ok(())
}

/// Where the statistics begin. The rollup folds each change as the new state minus the old,
/// which is exact only for states whose own change it folded. When it first ran on a table
/// younger than the stream's 24 hours, the stream held every change: the epoch is 0 and
/// every old state is taken away. On an older table (an upgrade), the epoch is that first
/// run's time: changes written before it are not folded, and a message written before it
/// counts from its first change after it (one that never changes again is not counted).
const EPOCH_ITEM: &str = "#epoch";
const EPOCH: &str = "ep";

/// How young a table must be for its stream to hold all its changes (the stream keeps 24
/// hours; an hour is left for the first run to come).
const YOUNG_TABLE: chrono::TimeDelta = chrono::TimeDelta::hours(23);

/// One shard as the stream describes it, with its checkpoint.
#[derive(Debug, Clone)]
struct Shard {
    id: String,
    parent: Option<String>,
    sequence: Option<String>,
    done: bool,
}

/// The shards that may be read now: not done, and with no parent that the stream still
/// lists and that is not done.
fn readable(shards: &[Shard]) -> Vec<usize> {
    (0..shards.len())
        .filter(|&i| {
            !shards[i].done
                && !shards[i]
                    .parent
                    .as_ref()
                    .is_some_and(|parent| shards.iter().any(|s| &s.id == parent && !s.done))
        })
        .collect()
}

/// How reading a shard ended.
enum ShardEnd {
    /// Read to its end and closed: its children may go on.
    Finished,
    /// Caught up with an open shard, out of budget or time, or another run holds it.
    Paused,
}

impl DynamoStore {
    fn stats_table(&self) -> &str {
        &self.config.stats_table
    }

    /// A `Query` of one partition of the stats table, within `range` of cells (inclusive) if
    /// given.
    fn query_partition(
        &self,
        partition: &str,
        range: Option<(&str, &str)>,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let mut e = Expr::default();
        let mut condition = format!("{} = {}", e.name(stat::TENANT), e.value(s(partition)));
        if let Some((low, high)) = range {
            condition.push_str(&format!(
                " AND {} BETWEEN {} AND {}",
                e.name(stat::CELL),
                e.value(s(low)),
                e.value(s(high))
            ));
        }
        self.client
            .query()
            .table_name(self.stats_table())
            .key_condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
    }

    fn streams(&self) -> Result<&aws_sdk_dynamodbstreams::Client, StoreError> {
        self.streams.as_ref().ok_or_else(|| {
            unavailable(Incomplete(
                "the DynamoDB store has no streams client; the rollup cannot run".into(),
            ))
        })
    }

    /// The messages table as DynamoDB describes it.
    async fn describe_messages(
        &self,
    ) -> Result<aws_sdk_dynamodb::types::TableDescription, StoreError> {
        self.client
            .describe_table()
            .table_name(self.messages())
            .send()
            .await
            .map_err(unavailable)?
            .table
            .ok_or_else(|| unavailable(Incomplete(format!("no table {}", self.messages()))))
    }

    /// The messages table's stream: from the configuration, else from the table.
    async fn stream_arn(&self) -> Result<String, StoreError> {
        if let Some(arn) = &self.config.messages_stream_arn {
            return Ok(arn.clone());
        }
        let arn = self
            .stream
            .get_or_try_init(|| async {
                self.describe_messages()
                    .await?
                    .latest_stream_arn()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        unavailable(Incomplete(format!(
                            "table {} has no stream",
                            self.messages()
                        )))
                    })
            })
            .await?;
        Ok(arn.clone())
    }

    /// Every shard of the stream, with the checkpoints of those read before.
    async fn stream_shards(&self, arn: &str) -> Result<Vec<Shard>, StoreError> {
        let streams = self.streams()?;
        let mut shards = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = streams
                .describe_stream()
                .stream_arn(arn)
                .set_exclusive_start_shard_id(after.take())
                .send()
                .await
                .map_err(unavailable)?;
            let Some(description) = page.stream_description() else {
                break;
            };
            for shard in description.shards() {
                if let Some(id) = shard.shard_id() {
                    shards.push(Shard {
                        id: id.to_owned(),
                        parent: shard.parent_shard_id().map(str::to_owned),
                        sequence: None,
                        done: false,
                    });
                }
            }
            match description.last_evaluated_shard_id() {
                Some(last) => after = Some(last.to_owned()),
                None => break,
            }
        }
        let (checkpoints, _) = self.checkpoints().await?;
        for shard in &mut shards {
            if let Some((sequence, done)) = checkpoints.get(&shard.id) {
                shard.sequence = sequence.clone();
                shard.done = *done;
            }
        }
        Ok(shards)
    }

    /// The shards' checkpoints, and the epoch if one was set.
    async fn checkpoints(
        &self,
    ) -> Result<(HashMap<String, (Option<String>, bool)>, Option<i64>), StoreError> {
        let mut out = HashMap::new();
        let mut epoch = None;
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .query_partition(stat::CHECKPOINTS, None)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                let Some(shard) = get_s(item, stat::CELL)? else {
                    continue;
                };
                if shard == EPOCH_ITEM {
                    epoch = codec::get_n::<i64>(item, EPOCH)?;
                    continue;
                }
                let sequence = get_s(item, stat::SEQUENCE)?.map(str::to_owned);
                let done = matches!(item.get(stat::DONE), Some(AttributeValue::Bool(true)));
                out.insert(shard.to_owned(), (sequence, done));
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok((out, epoch)),
            }
        }
    }

    /// The epoch (see [`EPOCH_ITEM`]), set on the first run: 0 for a young table, else now.
    /// Two first runs at once agree on the one written first.
    async fn set_epoch(&self) -> Result<i64, StoreError> {
        let created = self
            .describe_messages()
            .await?
            .creation_date_time()
            .map(|t| t.secs())
            .unwrap_or(0);
        let now = Utc::now();
        let young = now.timestamp() - created < YOUNG_TABLE.num_seconds();
        let epoch = if young { 0 } else { codec::nanos(now)? };
        let mut e = Expr::default();
        let name = e.name(EPOCH);
        let written = self
            .client
            .update_item()
            .table_name(self.stats_table())
            .key(stat::TENANT, s(stat::CHECKPOINTS))
            .key(stat::CELL, s(EPOCH_ITEM))
            .update_expression(format!("SET {name} = {}", e.value(codec::n(epoch))))
            .condition_expression(format!("attribute_not_exists({name})"))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match written {
            Ok(_) => {
                tracing::info!(
                    epoch,
                    young,
                    "the rollup's first run set where statistics begin"
                );
                Ok(epoch)
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                match self.checkpoints().await?.1 {
                    Some(epoch) => Ok(epoch),
                    None => Err(unavailable(Incomplete(
                        "the rollup's epoch vanished".into(),
                    ))),
                }
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Commits `deltas` and moves `shard`'s checkpoint from `shard.sequence` to `sequence`
    /// (and marks it done), in one transaction. `Ok(false)` if the checkpoint had moved: an
    /// overlapping run folded those records, and this one must leave the shard.
    async fn commit(
        &self,
        shard: &Shard,
        sequence: &str,
        done: bool,
        deltas: Deltas,
    ) -> Result<bool, StoreError> {
        let mut actions = Vec::with_capacity(deltas.len() + 1);
        for ((tenant, key), counters) in deltas.into_cells() {
            let adds = counter_attributes(&counters);
            if adds.is_empty() {
                continue;
            }
            let mut e = Expr::default();
            let operands: Vec<String> = adds
                .into_iter()
                .map(|(name, amount)| format!("{} {}", e.name(&name), e.value(codec::n(amount))))
                .collect();
            let update = Update::builder()
                .table_name(self.stats_table())
                .key(stat::TENANT, s(tenant.as_str()))
                .key(stat::CELL, s(key.encode()))
                .update_expression(format!("ADD {}", operands.join(", ")))
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .build()
                .map_err(unavailable)?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        let mut e = Expr::default();
        let seq_name = e.name(stat::SEQUENCE);
        let mut set = format!("SET {seq_name} = {}", e.value(s(sequence)));
        if done {
            set.push_str(&format!(
                ", {} = {}, {} = {}",
                e.name(stat::DONE),
                e.value(AttributeValue::Bool(true)),
                e.name(stat::TTL),
                e.value(codec::n((Utc::now() + DONE_KEPT).timestamp()))
            ));
        }
        let condition = match &shard.sequence {
            Some(previous) => format!("{seq_name} = {}", e.value(s(previous.clone()))),
            None => format!("attribute_not_exists({seq_name})"),
        };
        let checkpoint = Update::builder()
            .table_name(self.stats_table())
            .key(stat::TENANT, s(stat::CHECKPOINTS))
            .key(stat::CELL, s(shard.id.clone()))
            .update_expression(set)
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(unavailable)?;
        actions.push(TransactWriteItem::builder().update(checkpoint).build());
        let checkpoint_index = actions.len() - 1;
        // The same move has the same token, so the SDK's retry of a write that did commit
        // is answered as a success instead of failing its condition.
        let token = Sha256::digest(format!(
            "{}|{}|{sequence}|{done}",
            shard.id,
            shard.sequence.as_deref().unwrap_or("")
        ));
        match self
            .send_transaction(actions, &hex::encode(token)[..36])
            .await
        {
            Ok(()) => Ok(true),
            Err(e) => {
                if cancellation_codes(&e).is_some_and(|codes| {
                    codes.get(checkpoint_index) == Some(&Some("ConditionalCheckFailed"))
                }) {
                    return Ok(false);
                }
                Err(unavailable(e))
            }
        }
    }

    /// Reads `shard` from its checkpoint and folds what it finds, up to `budget` records.
    async fn roll_shard(
        &self,
        arn: &str,
        shard: &mut Shard,
        budget: usize,
        deadline: Instant,
        epoch: i64,
        rolled: &mut Rolled,
    ) -> Result<ShardEnd, StoreError> {
        let streams = self.streams()?;
        let request = streams
            .get_shard_iterator()
            .stream_arn(arn)
            .shard_id(&shard.id);
        let request = match &shard.sequence {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = match request.send().await {
            Ok(answer) => answer.shard_iterator().map(str::to_owned),
            Err(e) => match e.as_service_error() {
                // Past the stream's 24 hours: those records are gone; go on from the oldest.
                Some(GetShardIteratorError::TrimmedDataAccessException(_)) => {
                    tracing::error!(shard = %shard.id, "stream records were trimmed before the rollup read them; statistics miss them");
                    streams
                        .get_shard_iterator()
                        .stream_arn(arn)
                        .shard_id(&shard.id)
                        .shard_iterator_type(ShardIteratorType::TrimHorizon)
                        .send()
                        .await
                        .map_err(unavailable)?
                        .shard_iterator()
                        .map(str::to_owned)
                }
                // The shard is gone from the stream (trimmed whole): nothing left to read.
                Some(GetShardIteratorError::ResourceNotFoundException(_)) => {
                    return Ok(ShardEnd::Finished);
                }
                _ => return Err(unavailable(e)),
            },
        };
        let mut read = 0;
        while let Some(current) = iterator.take() {
            if read >= budget || Instant::now() >= deadline {
                return Ok(ShardEnd::Paused);
            }
            let page = match streams
                .get_records()
                .shard_iterator(current)
                .limit(RECORDS_PER_READ)
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) => match e.as_service_error() {
                    // An iterator lives 15 minutes; the next run starts from the checkpoint.
                    Some(GetRecordsError::ExpiredIteratorException(_)) => {
                        return Ok(ShardEnd::Paused);
                    }
                    _ => return Err(unavailable(e)),
                },
            };
            let records = page.records();
            let next = page.next_shard_iterator().map(str::to_owned);
            read += records.len();
            let mut deltas = Deltas::default();
            let mut last: Option<&str> = None;
            for record in records {
                if deltas.len() >= CELLS_PER_WRITE {
                    if let Some(sequence) = last {
                        if !self.commit(shard, sequence, false, deltas).await? {
                            return Ok(ShardEnd::Paused);
                        }
                        shard.sequence = Some(sequence.to_owned());
                    }
                    deltas = Deltas::default();
                }
                match fold(record, &mut deltas, epoch) {
                    Ok(()) => rolled.events += 1,
                    Err(e) => {
                        tracing::warn!(shard = %shard.id, error = %e, "an unreadable stream record skipped by the rollup");
                        rolled.unreadable += 1;
                    }
                }
                if let Some(sequence) = record.dynamodb().and_then(|d| d.sequence_number()) {
                    last = Some(sequence);
                }
            }
            let finished = next.is_none();
            // Where the checkpoint moves: past the last record read, or, for a closed shard
            // read to its end (even one that never held a record), where it is, marked done.
            let target = last
                .map(str::to_owned)
                .or_else(|| finished.then(|| shard.sequence.clone().unwrap_or_default()));
            if let Some(sequence) = target {
                if !self.commit(shard, &sequence, finished, deltas).await? {
                    return Ok(ShardEnd::Paused);
                }
                shard.sequence = Some(sequence);
            }
            if finished {
                shard.done = true;
                return Ok(ShardEnd::Finished);
            }
            if records.is_empty() {
                // Caught up with an open shard.
                return Ok(ShardEnd::Paused);
            }
            iterator = next;
        }
        Ok(ShardEnd::Paused)
    }
}

#[async_trait]
impl StatsStore for DynamoStore {
    async fn roll_up(&self, budget: usize) -> Result<Rolled, StoreError> {
        let deadline = Instant::now() + RUN_TIME;
        let arn = self.stream_arn().await?;
        let epoch = match self.checkpoints().await?.1 {
            Some(epoch) => epoch,
            None => self.set_epoch().await?,
        };
        let mut shards = self.stream_shards(&arn).await?;
        let mut rolled = Rolled::default();
        let mut paused: Vec<String> = Vec::new();
        // Parents before children: a child is read once its parent is done (or gone from
        // the stream), so each message's changes are folded in the order they were made.
        // A shard read to its end makes its children readable in the same run.
        loop {
            let ready: Vec<usize> = readable(&shards)
                .into_iter()
                .filter(|i| !paused.contains(&shards[*i].id))
                .collect();
            if ready.is_empty() {
                return Ok(rolled);
            }
            for i in ready {
                let left = budget.saturating_sub(rolled.events + rolled.unreadable);
                if left == 0 || Instant::now() >= deadline {
                    return Ok(rolled);
                }
                let mut shard = shards[i].clone();
                match self
                    .roll_shard(&arn, &mut shard, left, deadline, epoch, &mut rolled)
                    .await?
                {
                    ShardEnd::Finished => shard.done = true,
                    ShardEnd::Paused => paused.push(shard.id.clone()),
                }
                shards[i] = shard;
            }
        }
    }

    async fn extent(&self, tenant: &TenantId) -> Result<Option<(Hour, Hour)>, StoreError> {
        let mut hours = Vec::with_capacity(2);
        for forward in [true, false] {
            let page = self
                .query_partition(tenant.as_str(), None)
                .scan_index_forward(forward)
                .limit(1)
                .send()
                .await
                .map_err(unavailable)?;
            match page.items().first() {
                Some(item) => {
                    hours.push(StatsKey::hour_of(codec::req_s(item, stat::CELL)?).map_err(corrupt)?)
                }
                None => return Ok(None),
            }
        }
        Ok(Some((hours[0], hours[1])))
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
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let range = (StatsKey::hour_prefix(from), StatsKey::hour_prefix(to));
            let page = self
                .query_partition(tenant.as_str(), Some((&range.0, &range.1)))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                let cell = codec::req_s(item, stat::CELL)?;
                let key = StatsKey::decode(cell).map_err(corrupt)?;
                let counters = counters_from(item)?;
                if !counters.is_zero() {
                    out.push((key, counters));
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: &str, updated: i64) -> Item {
        use super::codec::msg;
        [
            (msg::TENANT, s("ten_01JAAAAAAAAAAAAAAAAAAAAAAA")),
            (msg::ID, s("01JAAAAAAAAAAAAAAAAAAAAAAA")),
            (msg::CREATED, codec::n(1_000)),
            (msg::UPDATED, codec::n(updated)),
            (msg::FROM, s("Holub")),
            (msg::ENCODING, s("GSM-7")),
            (msg::SEGMENTS, codec::n(1)),
            (msg::STATUS, s(status)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn statuses(deltas: Deltas) -> Vec<(MessageStatus, i64)> {
        deltas
            .into_cells()
            .flat_map(|(_, c)| c.statuses.into_iter())
            .collect()
    }

    #[test]
    fn states_written_before_the_epoch_are_neither_added_nor_taken_away() {
        let modify = Some(&OperationType::Modify);
        let (queued, sent) = (item("queued", 2_000), item("sent", 3_000));
        // Epoch 0 (the stream held everything): the old state is taken away.
        let mut d = Deltas::default();
        fold_images(modify, Some(&queued), Some(&sent), &mut d, 0).unwrap();
        assert_eq!(
            statuses(d),
            [(MessageStatus::Queued, -1), (MessageStatus::Sent, 1)]
        );
        // The old state predates the epoch: the message counts from this change.
        let mut d = Deltas::default();
        fold_images(modify, Some(&queued), Some(&sent), &mut d, 2_500).unwrap();
        assert_eq!(statuses(d), [(MessageStatus::Sent, 1)]);
        // Both predate it: nothing.
        let mut d = Deltas::default();
        fold_images(modify, Some(&queued), Some(&sent), &mut d, 3_500).unwrap();
        assert!(d.is_empty());
        let mut d = Deltas::default();
        fold_images(
            Some(&OperationType::Insert),
            None,
            Some(&queued),
            &mut d,
            2_500,
        )
        .unwrap();
        assert!(d.is_empty());
        // Removals (retention) change nothing.
        let mut d = Deltas::default();
        fold_images(Some(&OperationType::Remove), Some(&sent), None, &mut d, 0).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn children_wait_for_their_parents_and_orphans_do_not() {
        let shard = |id: &str, parent: Option<&str>, done: bool| Shard {
            id: id.into(),
            parent: parent.map(str::to_owned),
            sequence: None,
            done,
        };
        let mut shards = vec![
            shard("a", None, true),
            shard("b", Some("a"), false),
            shard("c", Some("b"), false),
            shard("d", Some("trimmed"), false),
            shard("e", Some("b"), false),
        ];
        assert_eq!(readable(&shards), [1, 3]);
        shards[1].done = true;
        assert_eq!(readable(&shards), [2, 3, 4]);
        shards.iter_mut().for_each(|s| s.done = true);
        assert!(readable(&shards).is_empty());
    }

    #[test]
    fn counters_round_trip_through_attributes() {
        let mut c = Counters {
            parts: 7,
            cost: 595,
            ..Counters::default()
        };
        c.statuses.insert(MessageStatus::Delivered, 5);
        c.statuses.insert(MessageStatus::Failed, 2);
        c.accepted_to_delivered.record(4_000, 5);
        c.sent_to_delivered.record(1_500, 4);
        let item: Item = counter_attributes(&c)
            .into_iter()
            .map(|(name, amount)| (name, codec::n(amount)))
            .chain([
                (stat::TENANT.to_owned(), s("ten_x")),
                (stat::CELL.to_owned(), s("cell")),
            ])
            .collect();
        assert_eq!(counters_from(&item).unwrap(), c);
        assert!(counter_attributes(&Counters::default()).is_empty());
    }
}
