//! Reads that several stores share: `BatchGetItem` of any number of keys, and the tenants
//! table's item by `pk` and groups of its `by_tenant` index (the tenants, consent, contact
//! and template items all live there).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::KeysAndAttributes;
use futures::{StreamExt, TryStreamExt, stream};

use super::codec::{Item, req_s, s, tenant};
use super::schema::BY_TENANT;
use super::{
    BATCH_ROUNDS, CONCURRENCY, DynamoStore, Expr, Incomplete, MAX_BATCH_GET, backoff, unavailable,
};
use crate::ports::StoreError;

/// The order in which a group of the `by_tenant` index is read, by sort key.
#[derive(Clone, Copy)]
pub(super) enum Order {
    Ascending,
    Descending,
}

impl DynamoStore {
    /// The items at `keys` of `table` that exist, strongly consistent, in no given order:
    /// every attribute, or only `projection`. `keys` must be distinct (`BatchGetItem` refuses
    /// a key twice in one request). One `BatchGetItem` per [`MAX_BATCH_GET`] keys, up to
    /// [`CONCURRENCY`] at once, each asking again for its unprocessed keys after a backoff,
    /// up to [`BATCH_ROUNDS`] times.
    pub(super) async fn batch_get(
        &self,
        table: &str,
        keys: Vec<Item>,
        projection: Option<&[&str]>,
    ) -> Result<Vec<Item>, StoreError> {
        let chunks: Vec<Vec<Item>> = keys.chunks(MAX_BATCH_GET).map(<[_]>::to_vec).collect();
        let found: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.batch_get_chunk(table, chunk, projection))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One `BatchGetItem` of at most [`MAX_BATCH_GET`] keys, and its unprocessed keys again.
    async fn batch_get_chunk(
        &self,
        table: &str,
        keys: Vec<Item>,
        projection: Option<&[&str]>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut e = Expr::default();
        let projection = projection.map(|attributes| {
            attributes
                .iter()
                .map(|a| e.name(a))
                .collect::<Vec<_>>()
                .join(", ")
        });
        let mut pending = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .set_projection_expression(projection)
            .set_expression_attribute_names(e.names())
            .build()
            .map_err(unavailable)?;
        let mut found = Vec::new();
        for round in 1..=BATCH_ROUNDS + 1 {
            if round > 1 {
                tokio::time::sleep(backoff(round - 1)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(table, pending)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(table).unwrap_or_default());
            }
            match out.unprocessed_keys.and_then(|mut left| left.remove(table)) {
                Some(left) if !left.keys().is_empty() => pending = left,
                _ => return Ok(found),
            }
        }
        Err(unavailable(Incomplete(format!(
            "reads from {table} were still unprocessed after {BATCH_ROUNDS} rounds"
        ))))
    }

    /// The item of the tenants table at `pk`, strongly consistent: every attribute, or only
    /// `projection`.
    pub(super) async fn tenants_item(
        &self,
        pk: impl Into<String>,
        projection: Option<&[&str]>,
    ) -> Result<Option<Item>, StoreError> {
        let mut e = Expr::default();
        let projection =
            projection.map(|attributes| attributes.iter().map(|a| e.name(a)).collect::<Vec<_>>());
        let out = self
            .client
            .get_item()
            .table_name(&self.config.tenants_table)
            .key(tenant::KEY, s(pk))
            .consistent_read(true)
            .set_projection_expression(projection.map(|names| names.join(", ")))
            .set_expression_attribute_names(e.names())
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// The items of the tenants table at `keys` (`pk`s; one asked twice is read once) that
    /// exist, strongly consistent, by `pk`: every attribute, or only `pk` and `attributes`.
    /// As [`batch_get`](Self::batch_get).
    pub(super) async fn tenants_items(
        &self,
        mut keys: Vec<String>,
        attributes: Option<&[&str]>,
    ) -> Result<HashMap<String, Item>, StoreError> {
        // BatchGetItem refuses a key twice in one request.
        keys.sort_unstable();
        keys.dedup();
        let keys = keys
            .into_iter()
            .map(|key| Item::from([(tenant::KEY.to_owned(), s(key))]))
            .collect();
        let projection: Option<Vec<&str>> = attributes.map(|attributes| {
            std::iter::once(tenant::KEY)
                .chain(attributes.iter().copied())
                .collect()
        });
        let found = self
            .batch_get(&self.config.tenants_table, keys, projection.as_deref())
            .await?;
        found
            .into_iter()
            .map(|item| Ok((req_s(&item, tenant::KEY)?.to_owned(), item)))
            .collect()
    }

    /// How many items one group of the tenants table's `by_tenant` index holds: `Query`s
    /// with `Select=COUNT`, a page (1 MB read) at a time; eventually consistent.
    pub(super) async fn count_group(&self, group: String) -> Result<u64, StoreError> {
        let mut e = Expr::default();
        let condition = format!("{} = {}", e.name(tenant::GROUP), e.value(s(group)));
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.config.tenants_table)
                .index_name(BY_TENANT)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            count += u64::try_from(out.count).unwrap_or(0);
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    /// Items of one group of the tenants table's `by_tenant` index in `order` of sort key,
    /// only those past the sort key `past` (in that order) when given, at most `limit`.
    /// Eventually consistent, as every index read: one `Query` per page, each asking for what
    /// is still wanted (1,000 when that is more than a `Limit` holds).
    pub(super) async fn by_tenant_group(
        &self,
        group: String,
        order: Order,
        past: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut e = Expr::default();
        let mut condition = format!("{} = {}", e.name(tenant::GROUP), e.value(s(group)));
        if let Some(past) = past {
            let sort = e.name(tenant::GROUP_SORT);
            let beyond = match order {
                Order::Ascending => ">",
                Order::Descending => "<",
            };
            condition.push_str(&format!(" AND {sort} {beyond} {}", e.value(s(past))));
        }
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.config.tenants_table)
                .index_name(BY_TENANT)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(matches!(order, Order::Ascending))
                .limit(
                    i32::try_from(limit.saturating_sub(found.len()))
                        .unwrap_or(1000)
                        .max(1),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if found.len() >= limit || start.is_none() {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }
}
