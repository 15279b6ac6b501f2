//! [`ReplayStore`] on DynamoDB: one item per applied receipt request in the idempotency
//! table, under a partition of its own (`t = "replay#<digest>"`, so replays spread over
//! the table's partitions like any other key), gone when DynamoDB's TTL deletes it. An item
//! whose `ttl` has passed counts as absent before then.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::{Item, idem, n, s};
use super::{DynamoStore, Expr, unavailable};
use crate::ports::{ReplayStore, RequestDigest, StoreError};

/// The sort key of every replay item (the digest is the partition).
const SORT: &str = "-";

fn partition(digest: &RequestDigest) -> String {
    format!("replay#{}", hex::encode(digest))
}

#[async_trait]
impl ReplayStore for DynamoStore {
    async fn seen(&self, digest: &RequestDigest, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let ttl = e.name(idem::TTL);
        let out = self
            .client
            .get_item()
            .table_name(&self.config.idempotency_table)
            .key(idem::TENANT, s(partition(digest)))
            .key(idem::KEY, s(SORT))
            .projection_expression(ttl)
            .set_expression_attribute_names(e.names())
            .send()
            .await
            .map_err(unavailable)?;
        let until = out
            .item
            .as_ref()
            .and_then(|item| item.get(idem::TTL))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        Ok(until.is_some_and(|until| until > now.timestamp()))
    }

    async fn remember(
        &self,
        digest: &RequestDigest,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = Item::from([
            (idem::TENANT.to_owned(), s(partition(digest))),
            (idem::KEY.to_owned(), s(SORT)),
            (idem::TTL.to_owned(), n(until.timestamp())),
        ]);
        self.client
            .put_item()
            .table_name(&self.config.idempotency_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn forget_expired(&self, _: DateTime<Utc>, _: usize) -> Result<usize, StoreError> {
        // DynamoDB's TTL deletes them.
        Ok(0)
    }
}
