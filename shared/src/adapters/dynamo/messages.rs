//! [`MessageStore`] on DynamoDB. The table design and what each write guarantees are in the
//! module doc of [`super`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, PutRequest, ReturnValue, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use sha2::{Digest, Sha256};

use super::codec::{
    self, IndexKeys, Item, get_n, get_s, history_entry, idem, message_from, message_key, msg, n,
    nanos, nanos_bound, parse, receipt_str, receipts_from, req_n, req_s, s, shard,
};
use super::schema::{AWAITING, BY_PROVIDER, DUE, QUEUED};
use super::txn::cancellation_codes;
use super::{
    BATCH_ROUNDS, CONCURRENCY, DynamoStore, Expr, Incomplete, MAX_BATCH_WRITE,
    MAX_TRANSACTION_ITEMS, backoff, unavailable,
};
use crate::domain::status::PartReceipt;
use crate::domain::{
    DataKey, IdempotencyKey, Message, MessageId, MessageStatus, ShortCode, TenantId, Visitor,
};
use crate::ports::{
    Click, IdempotencyRecord, ListQuery, MessageRef, MessageStore, Page, ReceiptTarget, StoreError,
    Transition,
};

/// The largest page asked of DynamoDB while filtering a list: filters apply after `Limit`,
/// so a filtered list reads ahead rather than one item per request.
const FILTERED_PAGE: usize = 200;

/// How long a claimed idempotency key whose message is not stored counts as a request in
/// progress: longer than any API request may take (API Gateway gives up after 30 s).
pub const CLAIM_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);

/// A sweep over one index: entries whose sort key is at most `bound` and, with `only`,
/// whose projected attribute holds a value.
#[derive(Clone, Copy)]
struct IndexScan<'a> {
    index: &'a str,
    partition: &'a str,
    sort: &'a str,
    bound: Option<i64>,
    /// Entries whose attribute equals this string (a filter: read, then dropped).
    only: Option<(&'a str, &'a str)>,
    /// Entries whose numeric attribute is at most this (a filter too).
    at_most: Option<(&'a str, i64)>,
}

pub(super) fn is_condition_failure<E>(e: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

fn message_ref(item: &Item) -> Result<MessageRef, StoreError> {
    Ok(MessageRef {
        tenant_id: codec::item_tenant(item)?,
        id: parse::<MessageId>(req_s(item, msg::ID)?, "message id")?,
    })
}

/// The key of an item of the messages table (a message or a batch marker).
fn message_key_of(item: &Item) -> Item {
    [msg::TENANT, msg::ID]
        .into_iter()
        .filter_map(|k| item.get(k).map(|v| (k.to_owned(), v.clone())))
        .collect()
}

fn built<T>(result: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    result.map_err(unavailable)
}

impl DynamoStore {
    pub(super) fn messages(&self) -> &str {
        &self.config.messages_table
    }

    /// Stores one message under an idempotency key in two plain writes instead of a
    /// transaction (which bills each item twice): the record first, with the message's id,
    /// then the message. A crash between the two leaves a record whose message does not
    /// exist — and an unanswered request, since the answer comes after both. Whoever reads
    /// such a record within [`CLAIM_WINDOW`] is told the request is still in progress;
    /// after it, the record is deleted and the key is free for the retry. The message is
    /// never stored without its key, so a retry can never send it twice.
    async fn claim_then_put(
        &self,
        mut record: Item,
        message: Item,
        m: &Message,
    ) -> Result<(), StoreError> {
        let claimed_at = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        record.insert(idem::MESSAGE.to_owned(), s(m.id.to_string()));
        record.insert(idem::CLAIMED.to_owned(), n(claimed_at));
        let mut e = Expr::default();
        let condition = format!(
            "attribute_not_exists({}) OR {} < {}",
            e.name(idem::KEY),
            e.name(idem::TTL),
            e.value(n(Utc::now().timestamp()))
        );
        let claimed = self
            .client
            .put_item()
            .table_name(&self.config.idempotency_table)
            .set_item(Some(record.clone()))
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match claimed {
            Ok(_) => {}
            Err(err) if is_condition_failure(&err) => {
                // The SDK may have retried a put that did land: then the record is ours.
                let ours = match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        failed.item().is_some_and(|old| {
                            [idem::CLAIMED, idem::MESSAGE, idem::FINGERPRINT]
                                .iter()
                                .all(|a| old.get(*a) == record.get(*a))
                        })
                    }
                    _ => false,
                };
                if !ours {
                    return Err(StoreError::IdempotencyKeyTaken);
                }
            }
            Err(err) => return Err(unavailable(err)),
        }
        if let Err(err) = self.put_new(message).await {
            if let Err(release) = self
                .release_claim(&m.tenant_id, req_s(&record, idem::KEY)?, claimed_at)
                .await
            {
                // Freed later by whoever reads it after the claim window.
                tracing::warn!(error = %release, "an idempotency claim was not released");
            }
            return Err(err);
        }
        Ok(())
    }

    /// Deletes the claim made at `claimed` under `key`, if it is still that claim.
    async fn release_claim(
        &self,
        tenant: &TenantId,
        key: &str,
        claimed: i64,
    ) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let condition = format!("{} = {}", e.name(idem::CLAIMED), e.value(n(claimed)));
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.config.idempotency_table)
            .set_key(Some(Item::from([
                (
                    idem::TENANT.to_owned(),
                    s(codec::idempotency_home(
                        tenant,
                        key,
                        self.config.write_shards,
                    )),
                ),
                (idem::KEY.to_owned(), s(key)),
            ])))
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Ok(()),
            Err(err) => Err(unavailable(err)),
        }
    }

    /// Whether the message is stored (a strongly consistent read of its key alone).
    async fn message_exists(&self, tenant: &TenantId, id: &MessageId) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let projection = e.name(msg::ID);
        let out = self
            .client
            .get_item()
            .table_name(self.messages())
            .set_key(Some(message_key(tenant, id, self.config.write_shards)))
            .consistent_read(true)
            .projection_expression(projection)
            .set_expression_attribute_names(e.names())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item.is_some())
    }

    /// Stores prepared message items, with the idempotency record if given.
    async fn insert_items(
        &self,
        messages: &[Message],
        mut items: Vec<Item>,
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        let Some(record) = idempotency else {
            return match items.len() {
                0 => Ok(()),
                1 => self.put_new(items.remove(0)).await,
                _ => {
                    let puts = items
                        .into_iter()
                        .map(|item| {
                            built(PutRequest::builder().set_item(Some(item)).build())
                                .map(|p| WriteRequest::builder().put_request(p).build())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    self.batch_write(self.messages(), puts).await
                }
            };
        };
        let mut record_items = codec::idempotency_items(record, &self.config)?;
        if items.len() == 1 && record_items.len() == 1 {
            return self
                .claim_then_put(record_items.remove(0), items.remove(0), &messages[0])
                .await;
        }
        if record_items.len() >= MAX_TRANSACTION_ITEMS {
            return Err(codec::corrupt(format!(
                "the reply stored under idempotency key {:?} is too large",
                record.key.as_str()
            )));
        }
        let room = MAX_TRANSACTION_ITEMS - record_items.len();
        let tail = items.split_off(items.len().saturating_sub(room));
        let head = items;
        self.put_all(&head).await?;
        let token = transaction_token(record, messages);
        match self.transact_insert(record_items, tail, token).await {
            Ok(()) => Ok(()),
            Err(e @ (StoreError::IdempotencyKeyTaken | StoreError::AlreadyExists)) => {
                self.undo_puts(&head).await;
                Err(e)
            }
            // The outcome is unknown: what was put stays.
            Err(e) => Err(e),
        }
    }

    /// The stale queued messages a batch marker stands for: those of its span still queued
    /// and unchanged since `bound`. (An eventually consistent query of the span per write
    /// shard: a message read as queued that was just claimed gets a second job, which its
    /// claim refuses.)
    /// Once none of them is queued, the marker is deleted; messages the sweeper requeues get
    /// an index entry of their own with the change.
    async fn expand_marker(
        &self,
        marker: &Item,
        bound: i64,
    ) -> Result<Vec<MessageRef>, StoreError> {
        // The index projects keys only: the marker's id says it all.
        let id = req_s(marker, msg::ID)?;
        let mut span = id.split('#');
        let (Some(tenant), Some(first), Some(last), None) =
            (span.next(), span.next(), span.next(), span.next())
        else {
            return Err(codec::corrupt(format!("batch marker {id:?}")));
        };
        let tenant = parse::<TenantId>(tenant, "tenant id")?;
        let (first, last) = (
            parse::<MessageId>(first, "message id")?,
            parse::<MessageId>(last, "message id")?,
        );
        let homes: Vec<Vec<Item>> = stream::iter(codec::homes(&tenant, self.config.write_shards))
            .map(|home| self.query_span(home, &first, &last))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut stale = Vec::new();
        let mut queued = 0usize;
        for item in homes.into_iter().flatten() {
            if get_s(&item, msg::STATUS)? != Some(MessageStatus::Queued.as_str()) {
                continue;
            }
            queued += 1;
            if req_n::<i64>(&item, msg::UPDATED)? <= bound {
                stale.push(message_ref(&item)?);
            }
        }
        if queued == 0 {
            // Its work is done. (Should this fail, the next sweep finds it again.)
            self.client
                .delete_item()
                .table_name(self.messages())
                .set_key(Some(message_key_of(marker)))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(stale)
    }

    /// The keys, status and update time of the messages of one partition `home` whose ids
    /// are from `first` to `last`.
    async fn query_span(
        &self,
        home: String,
        first: &MessageId,
        last: &MessageId,
    ) -> Result<Vec<Item>, StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {} AND {} BETWEEN {} AND {}",
            e.name(msg::TENANT),
            e.value(s(home)),
            e.name(msg::ID),
            e.value(s(first.to_string())),
            e.value(s(last.to_string())),
        );
        let projection = [msg::TENANT, msg::ID, msg::STATUS, msg::UPDATED]
            .iter()
            .map(|a| e.name(a))
            .collect::<Vec<_>>()
            .join(", ");
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(self.messages())
                .key_condition_expression(&condition)
                .projection_expression(&projection)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }

    /// Puts one new message, refusing an id that exists.
    async fn put_new(&self, item: Item) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let condition = format!("attribute_not_exists({})", e.name(msg::ID));
        let put = self
            .client
            .put_item()
            .table_name(self.messages())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Runs `requests` on `table` with `BatchWriteItem`, 25 at a time and several batches at
    /// once, until DynamoDB has processed every one.
    async fn batch_write(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        let chunks: Vec<Vec<WriteRequest>> = requests
            .chunks(MAX_BATCH_WRITE)
            .map(<[WriteRequest]>::to_vec)
            .collect();
        stream::iter(chunks)
            .map(|chunk| self.batch_write_chunk(table, chunk))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn batch_write_chunk(
        &self,
        table: &str,
        mut pending: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for round in 1..=BATCH_ROUNDS {
            let out = self
                .client
                .batch_write_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(unavailable)?;
            pending = out
                .unprocessed_items
                .and_then(|mut left| left.remove(table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(backoff(round)).await;
        }
        Err(unavailable(Incomplete(format!(
            "{} writes to {table} were still unprocessed after {BATCH_ROUNDS} rounds",
            pending.len()
        ))))
    }

    /// Deletes messages put by an insert that was then refused. Best effort: a failure is
    /// logged, and the insert's own error is what the caller gets.
    /// Puts `items` into the messages table in batch writes; if that fails, deletes what
    /// may have landed, so none is left.
    async fn put_all(&self, items: &[Item]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let puts = items
            .iter()
            .map(|item| {
                built(PutRequest::builder().set_item(Some(item.clone())).build())
                    .map(|p| WriteRequest::builder().put_request(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Err(e) = self.batch_write(self.messages(), puts).await {
            self.undo_puts(items).await;
            return Err(e);
        }
        Ok(())
    }

    async fn undo_puts(&self, items: &[Item]) {
        if items.is_empty() {
            return;
        }
        let deletes = items
            .iter()
            .map(|item| {
                built(
                    DeleteRequest::builder()
                        .set_key(Some(message_key_of(item)))
                        .build(),
                )
                .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect::<Result<Vec<_>, _>>();
        let undone = match deletes {
            Ok(deletes) => self.batch_write(self.messages(), deletes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = undone {
            tracing::error!(error = %e, count = items.len(), "messages of a refused insert could not be deleted");
        }
    }

    /// The record's items and the messages in one transaction; refusals are told apart by
    /// which item's condition failed.
    async fn transact_insert(
        &self,
        record: Vec<Item>,
        messages: Vec<Item>,
        token: String,
    ) -> Result<(), StoreError> {
        let record_items = record.len();
        let now = Utc::now().timestamp();
        let mut actions = Vec::with_capacity(record.len() + messages.len());
        for item in record {
            let mut e = Expr::default();
            let condition = format!(
                "attribute_not_exists({}) OR {} < {}",
                e.name(idem::KEY),
                e.name(idem::TTL),
                e.value(n(now))
            );
            let put = built(
                Put::builder()
                    .table_name(&self.config.idempotency_table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build(),
            )?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for item in messages {
            let mut e = Expr::default();
            let condition = format!("attribute_not_exists({})", e.name(msg::ID));
            let put = built(
                Put::builder()
                    .table_name(self.messages())
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .set_expression_attribute_names(e.names())
                    .build(),
            )?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        match self.send_transaction(actions, token).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(codes) = cancellation_codes(&e) {
                    let failed: Vec<usize> = codes
                        .iter()
                        .enumerate()
                        .filter(|(_, code)| **code == Some("ConditionalCheckFailed"))
                        .map(|(i, _)| i)
                        .collect();
                    if failed.iter().any(|&i| i < record_items) {
                        return Err(StoreError::IdempotencyKeyTaken);
                    }
                    if !failed.is_empty() {
                        return Err(StoreError::AlreadyExists);
                    }
                }
                Err(unavailable(e))
            }
        }
    }

    /// Applies one transition; `None` if its condition does not hold.
    async fn apply(&self, t: &Transition) -> Result<Option<Message>, StoreError> {
        if t.from.is_empty() {
            return Ok(None);
        }
        let shard = shard(&t.id, self.config.index_shards);
        let mut e = Expr::default();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut add = Vec::new();
        let status = e.name(msg::STATUS);
        set.push(format!("{status} = {}", e.value(s(t.to.as_str()))));
        set.push(format!(
            "{} = {}",
            e.name(msg::UPDATED),
            e.value(n(nanos(t.at)?))
        ));
        let history = e.name(msg::HISTORY);
        set.push(format!(
            "{history} = list_append({history}, {})",
            e.value(AttributeValue::L(vec![s(history_entry(t.to, t.at)?)]))
        ));
        let patch = &t.patch;
        let mut assign = |e: &mut Expr, attr: &str, value: AttributeValue| {
            set.push(format!("{} = {}", e.name(attr), e.value(value)));
        };
        if let Some(provider) = &patch.provider {
            assign(&mut e, msg::PROVIDER, s(provider.clone()));
        }
        if let Some(id) = &patch.provider_message_id {
            assign(&mut e, msg::PROVIDER_ID, s(id.clone()));
        }
        if let Some(cost) = patch.cost {
            assign(&mut e, msg::COST, n(cost.0));
        }
        if let Some(error) = &patch.error {
            assign(&mut e, msg::ERROR_CODE, s(error.code.clone()));
            assign(&mut e, msg::ERROR_MESSAGE, s(error.message.clone()));
        }
        let attempts = i64::from(patch.count_attempt) - i64::from(patch.uncount_attempt);
        if attempts != 0 {
            add.push(format!(
                "{} {}",
                e.name(msg::ATTEMPTS),
                e.value(n(attempts))
            ));
        }
        if let Some(send_at) = patch.send_at {
            assign(&mut e, msg::SEND_AT, n(nanos(send_at)?));
        }
        if !patch.receipts.is_empty() {
            let set = patch
                .receipts
                .iter()
                .map(codec::receipt_str)
                .collect::<Result<BTreeSet<_>, _>>()?;
            add.push(format!(
                "{} {}",
                e.name(msg::RECEIPTS),
                e.value(AttributeValue::Ss(set.into_iter().collect()))
            ));
        }
        // The index keys that follow from the new status. Those that also depend on the
        // provider are set here when the patch names both provider and id (as dispatch
        // does); otherwise they are mended after the update from the stored values.
        let provider = patch
            .provider
            .as_deref()
            .zip(patch.provider_message_id.as_deref());
        if let Some((p, id)) = provider {
            assign(&mut e, msg::BY_PROVIDER, s(codec::provider_key(p, id)));
        }
        let mut toggle = |e: &mut Expr, attr: &str, value: Option<String>| match value {
            Some(value) => set.push(format!("{} = {}", e.name(attr), e.value(s(value)))),
            None => remove.push(e.name(attr)),
        };
        toggle(
            &mut e,
            msg::DUE,
            (t.to == MessageStatus::Scheduled).then(|| shard.clone()),
        );
        toggle(
            &mut e,
            msg::QUEUED,
            (t.to == MessageStatus::Queued).then(|| shard.clone()),
        );
        match (t.to == MessageStatus::Sent, provider) {
            (true, Some(_)) => toggle(&mut e, msg::AWAITING, Some(shard.clone())),
            (true, None) => {}
            (false, _) => toggle(&mut e, msg::AWAITING, None),
        }
        let from = t
            .from
            .iter()
            .map(|s| e.value(codec::s(s.as_str())))
            .collect::<Vec<_>>()
            .join(", ");
        let condition = format!("{status} IN ({from})");
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        if !add.is_empty() {
            update.push_str(&format!(" ADD {}", add.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(self.messages())
            .set_key(Some(message_key(
                &t.tenant_id,
                &t.id,
                self.config.write_shards,
            )))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if is_condition_failure(&e) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let item = self.mend_index_keys(item).await?;
        let keys = self.opening_keys([&item]).await?;
        match message_from(&item, &keys) {
            Ok(m) => Ok(Some(m)),
            // Changed, but what it said is gone with its tenant's key: as if the change had
            // not applied, so no callback or follow-up acts on it.
            Err(StoreError::Erased) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes the index keys of a just-updated message agree with its status and provider,
    /// for the rare change whose patch did not carry both provider and provider id. Costs a
    /// request only when something is off.
    async fn mend_index_keys(&self, item: Item) -> Result<Item, StoreError> {
        let (Ok(Some(id)), Ok(Some(status))) = (get_s(&item, msg::ID), get_s(&item, msg::STATUS))
        else {
            return Ok(item);
        };
        let (Ok(id), Ok(current)) = (id.parse::<MessageId>(), status.parse::<MessageStatus>())
        else {
            // Unreadable: decoding the item reports it.
            return Ok(item);
        };
        let want = IndexKeys::of(
            &id,
            current,
            get_s(&item, msg::PROVIDER)?,
            get_s(&item, msg::PROVIDER_ID)?,
            self.config.index_shards,
        );
        if want.matches(&item) {
            return Ok(item);
        }
        let mut e = Expr::default();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        for (attr, value) in want.pairs() {
            match value {
                Some(value) => {
                    set.push(format!("{} = {}", e.name(attr), e.value(s(value.clone()))))
                }
                None if item.contains_key(attr) => remove.push(e.name(attr)),
                None => {}
            }
        }
        let mut update = String::new();
        if !set.is_empty() {
            update.push_str(&format!("SET {}", set.join(", ")));
        }
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let condition = format!("{} = {}", e.name(msg::STATUS), e.value(s(current.as_str())));
        let result = self
            .client
            .update_item()
            .table_name(self.messages())
            .set_key(Some(message_key_of(&item)))
            .update_expression(update.trim_start())
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes.unwrap_or(item)),
            // The message moved on meanwhile; that change set its own keys.
            Err(e) if is_condition_failure(&e) => Ok(item),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Queries one partition (`value`) of a sweep index, oldest first, for up to `limit`
    /// entries.
    async fn query_shard(
        &self,
        scan: &IndexScan<'_>,
        value: String,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let IndexScan {
            index,
            partition,
            sort,
            bound,
            only,
            at_most,
        } = *scan;
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let mut e = Expr::default();
            let mut condition = format!("{} = {}", e.name(partition), e.value(s(value.clone())));
            if let Some(bound) = bound {
                condition.push_str(&format!(" AND {} <= {}", e.name(sort), e.value(n(bound))));
            }
            let filters: Vec<String> = only
                .map(|(attr, want)| format!("{} = {}", e.name(attr), e.value(s(want))))
                .into_iter()
                .chain(
                    at_most.map(|(attr, most)| format!("{} <= {}", e.name(attr), e.value(n(most)))),
                )
                .collect();
            let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
            let want = (limit - found.len()).min(1000);
            let out = self
                .client
                .query()
                .table_name(self.messages())
                .index_name(index)
                .key_condition_expression(condition)
                .set_filter_expression(filter)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(true)
                .limit(i32::try_from(want).unwrap_or(1000))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if found.len() >= limit || start.is_none() {
                return Ok(found);
            }
        }
    }

    /// The `limit` oldest entries (by the sort key) of a sweep index across its shards.
    async fn sweep(&self, scan: IndexScan<'_>, limit: usize) -> Result<Vec<Item>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sort = scan.sort;
        let shards: Vec<Vec<Item>> = stream::iter(self.shards())
            .map(|value| self.query_shard(&scan, value, limit))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut entries = Vec::new();
        for item in shards.into_iter().flatten() {
            entries.push((req_n::<i64>(&item, sort)?, item));
        }
        entries.sort_by_key(|(at, _)| *at);
        entries.truncate(limit);
        Ok(entries.into_iter().map(|(_, item)| item).collect())
    }

    fn shards(&self) -> impl Iterator<Item = String> {
        (0..self.config.index_shards.max(1)).map(|s| s.to_string())
    }

    /// The message that carries `pid` at `provider`, if any.
    async fn find_by_provider_id(
        &self,
        provider: &str,
        pid: String,
    ) -> Result<(String, Option<ReceiptTarget>), StoreError> {
        let mut e = Expr::default();
        let condition = format!(
            "{} = {}",
            e.name(msg::BY_PROVIDER),
            e.value(s(codec::provider_key(provider, &pid)))
        );
        let out = self
            .client
            .query()
            .table_name(self.messages())
            .index_name(BY_PROVIDER)
            .key_condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await
            .map_err(unavailable)?;
        // Should two messages ever carry one provider id, the first found wins.
        for item in out.items() {
            if get_s(item, msg::PROVIDER)? == Some(provider)
                && get_s(item, msg::PROVIDER_ID)? == Some(pid.as_str())
            {
                let target = ReceiptTarget {
                    message: message_ref(item)?,
                    segments: req_n(item, msg::SEGMENTS)?,
                };
                return Ok((pid, Some(target)));
            }
        }
        Ok((pid, None))
    }

    /// Adds receipts to one message's set; returns all of its receipts, or none if the
    /// message does not exist (in that tenant), in which case nothing is added.
    async fn add_to_receipts(
        &self,
        target: MessageRef,
        new: BTreeSet<String>,
    ) -> Result<Vec<PartReceipt>, StoreError> {
        let mut e = Expr::default();
        let update = format!(
            "ADD {} {}",
            e.name(msg::RECEIPTS),
            e.value(AttributeValue::Ss(new.into_iter().collect()))
        );
        let condition = format!("attribute_exists({})", e.name(msg::ID));
        let result = self
            .client
            .update_item()
            .table_name(self.messages())
            .set_key(Some(message_key(
                &target.tenant_id,
                &target.id,
                self.config.write_shards,
            )))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            // All of the item, not just what changed: a receipt already in the set changes
            // nothing, and the whole set is what the caller wants back.
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => receipts_from(&out.attributes.unwrap_or_default()),
            Err(e) if is_condition_failure(&e) => Ok(Vec::new()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The placeholder of the partition in `list`'s key condition.
const HOME: &str = ":home";

/// One partition of a tenant's messages as `list` merges it: what was read and not yet
/// taken, and where its next page starts.
struct Part {
    home: String,
    items: VecDeque<Item>,
    start: Option<Item>,
    done: bool,
}

/// What a sealed answer is stored as: a JSON string (an answer itself is always an object).
const SEALED_ANSWER: &str = "holub-sealed:v2:";

/// The record with its fingerprint and answer sealed under the tenant's `key`, and a keyed
/// tag in place of the fingerprint (equal for a retry of the same request, as the claim's
/// check of an SDK retry needs).
fn seal_answer(key: &DataKey, r: &IdempotencyRecord) -> IdempotencyRecord {
    use base64::Engine;
    let sealed = key.seal_answer(&r.tenant_id, r.key.as_str(), &r.fingerprint, &r.body);
    let text = base64::engine::general_purpose::STANDARD.encode(sealed);
    IdempotencyRecord {
        fingerprint: key.fingerprint_tag(&r.fingerprint),
        body: serde_json::Value::String(format!("{SEALED_ANSWER}{text}")),
        ..r.clone()
    }
}

/// The sealed bytes of a stored answer, if it is sealed.
fn sealed_answer(body: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = body.as_str()?.strip_prefix(SEALED_ANSWER)?;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// A token that makes an SDK retry of the same transaction a no-op rather than a refusal.
fn transaction_token(record: &IdempotencyRecord, messages: &[Message]) -> String {
    let mut hash = Sha256::new();
    hash.update(record.tenant_id.as_str());
    hash.update([0]);
    hash.update(record.key.as_str());
    for m in messages {
        hash.update([0]);
        hash.update(m.id.to_string());
    }
    hex::encode(&hash.finalize()[..18])
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn insert(
        &self,
        messages: &[Message],
        idempotency: Option<&IdempotencyRecord>,
    ) -> Result<(), StoreError> {
        // Almost always one tenant: its key and retention, looked up once.
        let mut tenant: Option<(&TenantId, Arc<DataKey>, std::time::Duration)> = None;
        let mut items = Vec::with_capacity(messages.len());
        for m in messages {
            if tenant.as_ref().is_none_or(|(t, _, _)| **t != m.tenant_id) {
                let key = self.vault.sealing_key(&m.tenant_id).await?;
                tenant = Some((&m.tenant_id, key, self.retention_of(&m.tenant_id).await?));
            }
            let (_, key, retention) = tenant.as_ref().expect("set above");
            items.push(codec::message_item(m, &self.config, key, *retention)?);
        }
        let sealed;
        let idempotency = match idempotency {
            Some(r) => {
                let key = self.vault.sealing_key(&r.tenant_id).await?;
                sealed = seal_answer(&key, r);
                Some(&sealed)
            }
            None => None,
        };
        let mut ids = HashSet::with_capacity(messages.len());
        if !messages.iter().all(|m| ids.insert((&m.tenant_id, m.id))) {
            return Err(StoreError::AlreadyExists);
        }
        // Tracked links' codes first: one whose message is not stored finds nothing, and
        // is removed below or expires with the TTL the message would have had.
        let links: Vec<Item> = messages
            .iter()
            .zip(&items)
            .flat_map(|(m, item)| codec::link_items(m, item))
            .collect();
        self.put_all(&links).await?;
        // Several queued messages: one batch marker per tenant instead of an entry each in
        // the `queued` index, written before any of them.
        let markers = if items.len() > 1 {
            codec::batch_markers(messages, &mut items, &self.config)?
        } else {
            Vec::new()
        };
        for m in &markers {
            self.client
                .put_item()
                .table_name(self.messages())
                .set_item(Some(m.clone()))
                .send()
                .await
                .map_err(unavailable)?;
        }
        let stored = self.insert_items(messages, items, idempotency).await;
        if stored.is_err() {
            // Nothing of the batch may be left (or it is, and the marker keeps it swept).
            self.undo_puts(&markers).await;
            self.undo_puts(&links).await;
        }
        stored
    }

    async fn idempotency(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let table = &self.config.idempotency_table;
        // Every item of one record (the body's parts too) is in the partition of its key.
        let home = codec::idempotency_home(tenant, key.as_str(), self.config.write_shards);
        let item_key = |k: String| {
            Item::from([
                (idem::TENANT.to_owned(), s(home.clone())),
                (idem::KEY.to_owned(), s(k)),
            ])
        };
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(item_key(key.as_str().to_owned())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(first) = out.item else {
            return Ok(None);
        };
        if get_n::<i64>(&first, idem::TTL)?.is_some_and(|ttl| ttl < Utc::now().timestamp()) {
            return Ok(None);
        }
        if let Some(message) = get_s(&first, idem::MESSAGE)? {
            let id = parse::<MessageId>(message, "message id")?;
            if !self.message_exists(tenant, &id).await? {
                let claimed = req_n::<i64>(&first, idem::CLAIMED)?;
                let age = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX) - claimed;
                if age < i64::try_from(CLAIM_WINDOW.as_nanos()).unwrap_or(i64::MAX) {
                    return Err(StoreError::IdempotencyKeyInFlight);
                }
                // The request that claimed the key died before storing its message (and
                // so before answering): the key is free again.
                self.release_claim(tenant, key.as_str(), claimed).await?;
                return Ok(None);
            }
        }
        let parts: usize = get_n(&first, idem::PARTS)?.unwrap_or(1);
        let mut more = Vec::new();
        if parts > 1 {
            let keys = (1..parts)
                .map(|i| item_key(codec::body_part_key(key.as_str(), i)))
                .collect();
            let found = self
                .batch_get(table, keys, Some(&[idem::KEY, idem::BODY]))
                .await?;
            let mut bodies: HashMap<String, String> = HashMap::new();
            for item in &found {
                bodies.insert(
                    req_s(item, idem::KEY)?.to_owned(),
                    req_s(item, idem::BODY)?.to_owned(),
                );
            }
            for i in 1..parts {
                let part = bodies
                    .remove(&codec::body_part_key(key.as_str(), i))
                    .ok_or_else(|| {
                        codec::corrupt(format!("idempotency body part {i} is missing"))
                    })?;
                more.push(part);
            }
        }
        let more: Vec<&str> = more.iter().map(String::as_str).collect();
        let mut record = codec::idempotency_from(tenant, key, &first, &more)?;
        if let Some(sealed) = sealed_answer(&record.body) {
            let data_key = self.vault.opening_key(tenant).await?;
            (record.fingerprint, record.body) = data_key
                .open_answer(tenant, key.as_str(), &sealed)
                .map_err(|e| codec::corrupt(format!("idempotency record: {e}")))?;
        }
        Ok(Some(record))
    }

    async fn get(&self, tenant: &TenantId, id: &MessageId) -> Result<Option<Message>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.messages())
            .set_key(Some(message_key(tenant, id, self.config.write_shards)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let keys = self.opening_keys([&item]).await?;
        message_from(&item, &keys).map(Some)
    }

    async fn follow(&self, code: &ShortCode) -> Result<Option<Message>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.messages())
            .set_key(Some(codec::link_key(code)))
            .send()
            .await
            .map_err(unavailable)?;
        let Some(link) = out.item else {
            return Ok(None);
        };
        let (tenant, id) = codec::link_target(&link)?;
        match self.get(&tenant, &id).await {
            Err(StoreError::Erased) => Ok(None),
            other => other,
        }
    }

    async fn click(&self, click: &Click) -> Result<Option<Message>, StoreError> {
        let human = click.visitor == Visitor::Human;
        let mut e = Expr::default();
        let id = e.name(msg::ID);
        let counter = e.name(if human { msg::CLICKS } else { msg::BOT_CLICKS });
        let one = e.value(n(1));
        let mut update = format!("ADD {counter} {one}");
        if human {
            let first = e.name(msg::CLICKED);
            let at = e.value(n(nanos(click.at)?));
            update.push_str(&format!(" SET {first} = if_not_exists({first}, {at})"));
        }
        let result = self
            .client
            .update_item()
            .table_name(self.messages())
            .set_key(Some(message_key(
                &click.message.tenant_id,
                &click.message.id,
                self.config.write_shards,
            )))
            .update_expression(update)
            .condition_expression(format!("attribute_exists({id})"))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match result {
            Ok(out) => out.attributes,
            Err(err) if is_condition_failure(&err) => None,
            Err(err) => return Err(unavailable(err)),
        };
        let Some(item) = item else {
            return Ok(None);
        };
        let keys = self.opening_keys([&item]).await?;
        match message_from(&item, &keys) {
            Err(StoreError::Erased) => Ok(None),
            other => other.map(Some),
        }
    }

    async fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<Page, StoreError> {
        let limit = query.limit;
        if limit == 0 {
            return Ok(Page {
                messages: Vec::new(),
                next: None,
            });
        }
        let mut e = Expr::default();
        // The partition goes in per query, under a placeholder of its own.
        let mut key = format!("{} = {HOME}", e.name(msg::TENANT));
        if let Some(after) = &query.after {
            key.push_str(&format!(
                " AND {} < {}",
                e.name(msg::ID),
                e.value(s(after.to_string()))
            ));
        }
        // By the number's tag; a tenant with no key has nothing sealed to find.
        let to_tag = match &query.to {
            Some(to) => match self.vault.held_key(tenant).await? {
                Some(key) => Some(key.number_tag(to).to_vec()),
                None => {
                    return Ok(Page {
                        messages: Vec::new(),
                        next: None,
                    });
                }
            },
            None => None,
        };
        let mut filters = Vec::new();
        let mut filter = |e: &mut Expr, attr: &str, op: &str, value: AttributeValue| {
            filters.push(format!("{} {op} {}", e.name(attr), e.value(value)));
        };
        if let Some(status) = query.status {
            filter(&mut e, msg::STATUS, "=", s(status.as_str()));
        }
        if let Some(tag) = to_tag {
            filter(&mut e, msg::TO_TAG, "=", AttributeValue::B(Blob::new(tag)));
        }
        if let Some(from) = &query.from {
            filter(&mut e, msg::FROM, "=", s(from.as_str()));
        }
        if let Some(batch) = &query.batch_id {
            filter(&mut e, msg::BATCH, "=", s(batch.as_str()));
        }
        if let Some(after) = query.created_after {
            filter(&mut e, msg::CREATED, ">=", n(nanos_bound(after)));
        }
        if let Some(before) = query.created_before {
            filter(&mut e, msg::CREATED, "<", n(nanos_bound(before)));
        }
        let filtered = !filters.is_empty();
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        // Each of the tenant's partitions is read newest first and the pages are merged by
        // id (ULIDs: the merge is the order one partition would have given). A first round
        // asks each partition for its share of the page and a little more; a partition
        // whose part runs out while the page is not full is asked for more, so the merge is
        // exact however the messages spread.
        let shards = usize::from(self.config.write_shards.max(1));
        let share = if filtered {
            FILTERED_PAGE
        } else {
            limit.div_ceil(shards) + 2
        }
        .min(1000);
        let mut parts: Vec<Part> = codec::homes(tenant, self.config.write_shards)
            .map(|home| Part {
                home,
                items: VecDeque::new(),
                start: None,
                done: false,
            })
            .collect();
        let mut taken: Vec<Item> = Vec::with_capacity(limit.min(1000));
        while taken.len() < limit {
            let dry: Vec<usize> = (0..parts.len())
                .filter(|&i| parts[i].items.is_empty() && !parts[i].done)
                .collect();
            if !dry.is_empty() {
                let (key, filter, e) = (&key, &filter, &e);
                let pages: Vec<(usize, Vec<Item>, Option<Item>)> = stream::iter(dry)
                    .map(|i| {
                        let part = &parts[i];
                        let mut values = e.values().unwrap_or_default();
                        values.insert(HOME.to_owned(), s(part.home.clone()));
                        let request = self
                            .client
                            .query()
                            .table_name(self.messages())
                            .key_condition_expression(key)
                            .set_filter_expression(filter.clone())
                            .set_expression_attribute_names(e.names())
                            .set_expression_attribute_values(Some(values))
                            .scan_index_forward(false)
                            .limit(i32::try_from(share).unwrap_or(1000))
                            .set_exclusive_start_key(part.start.clone());
                        async move {
                            let out = request.send().await.map_err(unavailable)?;
                            Ok::<_, StoreError>((
                                i,
                                out.items.unwrap_or_default(),
                                out.last_evaluated_key,
                            ))
                        }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .try_collect()
                    .await?;
                for (i, items, next) in pages {
                    parts[i].items.extend(items);
                    parts[i].done = next.is_none();
                    parts[i].start = next;
                }
                continue;
            }
            // The newest message at the head of a partition comes next.
            let mut newest: Option<(usize, &str)> = None;
            for (i, part) in parts.iter().enumerate() {
                if let Some(head) = part.items.front() {
                    let id = req_s(head, msg::ID)?;
                    if newest.is_none_or(|(_, best)| id > best) {
                        newest = Some((i, id));
                    }
                }
            }
            let Some((i, _)) = newest else {
                break;
            };
            taken.extend(parts[i].items.pop_front());
        }
        let keys = self.opening_keys(&taken).await?;
        let messages = taken
            .iter()
            .map(|item| message_from(item, &keys))
            .collect::<Result<Vec<_>, _>>()?;
        let next = if messages.len() == limit {
            messages.last().map(|m| m.id)
        } else {
            None
        };
        Ok(Page { messages, next })
    }

    async fn transition(&self, changes: &[Transition]) -> Result<Vec<Option<Message>>, StoreError> {
        self.transition_each(changes).await.into_iter().collect()
    }

    /// Each change is its own conditional update, so a batch can land in part (throttling
    /// refuses some): every update runs to its end, and each answer says what happened to
    /// its change. A change after a failed one of the same message is not tried.
    async fn transition_each(
        &self,
        changes: &[Transition],
    ) -> Vec<Result<Option<Message>, StoreError>> {
        // Changes of one message apply in the order given; distinct messages at once.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<(&TenantId, MessageId), usize> = HashMap::new();
        for (i, t) in changes.iter().enumerate() {
            let group = *group_of.entry((&t.tenant_id, t.id)).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[group].push(i);
        }
        let applied: Vec<Vec<(usize, Result<Option<Message>, StoreError>)>> = stream::iter(groups)
            .map(|group| async move {
                let mut results = Vec::with_capacity(group.len());
                let mut failed = false;
                for i in group {
                    let result = if failed {
                        Err(StoreError::Unavailable(
                            "an earlier change of the message failed".into(),
                        ))
                    } else {
                        self.apply(&changes[i]).await
                    };
                    failed |= result.is_err();
                    results.push((i, result));
                }
                results
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut results: Vec<Option<Result<Option<Message>, StoreError>>> =
            (0..changes.len()).map(|_| None).collect();
        for (i, result) in applied.into_iter().flatten() {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("not tried".into()))))
            .collect()
    }

    async fn find_by_provider_ids(
        &self,
        provider: &str,
        provider_message_ids: &[String],
    ) -> Result<Vec<Option<ReceiptTarget>>, StoreError> {
        let distinct: BTreeSet<String> = provider_message_ids.iter().cloned().collect();
        let found: HashMap<String, Option<ReceiptTarget>> = stream::iter(distinct)
            .map(|pid| self.find_by_provider_id(provider, pid))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(provider_message_ids
            .iter()
            .map(|pid| found.get(pid).cloned().flatten())
            .collect())
    }

    async fn add_receipts(
        &self,
        receipts: &[(MessageRef, PartReceipt)],
    ) -> Result<Vec<Vec<PartReceipt>>, StoreError> {
        // One update per message: its new receipts are added to its set in one go.
        let mut groups: Vec<(&MessageRef, BTreeSet<String>)> = Vec::new();
        let mut group_of: HashMap<&MessageRef, usize> = HashMap::new();
        let mut group_index = Vec::with_capacity(receipts.len());
        for (target, receipt) in receipts {
            let group = *group_of.entry(target).or_insert_with(|| {
                groups.push((target, BTreeSet::new()));
                groups.len() - 1
            });
            groups[group].1.insert(receipt_str(receipt)?);
            group_index.push(group);
        }
        let groups: Vec<(usize, MessageRef, BTreeSet<String>)> = groups
            .into_iter()
            .enumerate()
            .map(|(g, (target, new))| (g, target.clone(), new))
            .collect();
        let lists: Vec<(usize, Vec<PartReceipt>)> = stream::iter(groups)
            .map(|(g, target, new)| async move {
                Ok::<_, StoreError>((g, self.add_to_receipts(target, new).await?))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut by_group = vec![Vec::new(); lists.len()];
        for (g, list) in lists {
            by_group[g] = list;
        }
        Ok(group_index
            .into_iter()
            .map(|g| by_group[g].clone())
            .collect())
    }

    async fn due_scheduled(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        let scan = IndexScan {
            index: DUE,
            partition: msg::DUE,
            sort: msg::SEND_AT,
            bound: Some(nanos_bound(now)),
            only: None,
            at_most: None,
        };
        let found = self.sweep(scan, limit).await?;
        found.iter().map(message_ref).collect()
    }

    async fn stale_queued(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        let bound = nanos_bound(cutoff);
        let scan = IndexScan {
            index: QUEUED,
            partition: msg::QUEUED,
            sort: msg::UPDATED,
            bound: Some(bound),
            only: None,
            at_most: None,
        };
        let mut stale = Vec::new();
        for item in self.sweep(scan, limit).await? {
            if stale.len() >= limit {
                break;
            }
            if get_s(&item, msg::TENANT)? == Some(codec::marker::PARTITION) {
                stale.extend(self.expand_marker(&item, bound).await?);
            } else {
                stale.push(message_ref(&item)?);
            }
        }
        // A message the sweeper requeued has an index entry of its own and may still be in
        // its batch's span.
        let mut seen = HashSet::with_capacity(stale.len());
        stale.retain(|r| seen.insert(r.clone()));
        stale.truncate(limit);
        Ok(stale)
    }

    async fn awaiting_receipts(
        &self,
        provider: &str,
        sent_by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        // One index holds the sent messages of every provider (their expiry needs them all);
        // a poll reads its provider's entries, the others' are filtered out at the index, as
        // are the ones sent after `sent_by` (`u` does not change while a message is `sent`,
        // so projecting it costs no index write).
        let scan = IndexScan {
            index: AWAITING,
            partition: msg::AWAITING,
            sort: msg::EXPIRES,
            bound: None,
            only: Some((msg::PROVIDER, provider)),
            at_most: Some((msg::UPDATED, nanos(sent_by)?)),
        };
        let found = self.sweep(scan, limit).await?;
        let mut ids = Vec::with_capacity(found.len());
        for item in &found {
            if get_s(item, msg::PROVIDER)? == Some(provider) {
                ids.push(req_s(item, msg::PROVIDER_ID)?.to_owned());
            }
        }
        Ok(ids)
    }

    async fn sent_past_validity(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MessageRef>, StoreError> {
        // The index may still list a message that has just left `sent`; the expiry that
        // follows is conditional on `sent`, so no read is needed to weed those out.
        let scan = IndexScan {
            index: AWAITING,
            partition: msg::AWAITING,
            sort: msg::EXPIRES,
            bound: Some(nanos_bound(cutoff)),
            only: None,
            at_most: None,
        };
        let found = self.sweep(scan, limit).await?;
        found.iter().map(message_ref).collect()
    }
}
