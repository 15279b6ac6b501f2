//! [`TenantStore`] on DynamoDB: a tenant item and one item per API key hash.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::codec::{Item, n, nanos, parse, req_s, s, tenant};
use super::{DynamoStore, Expr, unavailable};
use crate::domain::TenantId;
use crate::ports::{StoreError, Tenant, TenantStore};

/// Which items of a cancelled transaction failed their condition.
fn failed_conditions(e: &SdkError<TransactWriteItemsError, impl std::fmt::Debug>) -> Vec<bool> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => cancel
            .cancellation_reasons()
            .iter()
            .map(|r| r.code() == Some("ConditionalCheckFailed"))
            .collect(),
        _ => Vec::new(),
    }
}

fn tenant_key(id: &TenantId) -> String {
    format!("tenant#{id}")
}

fn api_key(hash: &str) -> String {
    format!("key#{hash}")
}

impl DynamoStore {
    fn new_item(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let mut e = Expr::default();
        let condition = format!("attribute_not_exists({})", e.name(tenant::KEY));
        let put = Put::builder()
            .table_name(&self.config.tenants_table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, t: &Tenant, key_hash: &str) -> Result<(), StoreError> {
        let tenant_item = Item::from([
            (tenant::KEY.to_owned(), s(tenant_key(&t.id))),
            (tenant::NAME.to_owned(), s(t.name.clone())),
            (tenant::CREATED.to_owned(), n(nanos(t.created_at)?)),
        ]);
        let key_item = Item::from([
            (tenant::KEY.to_owned(), s(api_key(key_hash))),
            (tenant::TENANT.to_owned(), s(t.id.as_str())),
        ]);
        let result = self
            .client
            .transact_write_items()
            .transact_items(self.new_item(tenant_item)?)
            .transact_items(self.new_item(key_item)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if failed_conditions(&e).contains(&true) => Err(StoreError::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn tenant_by_key_hash(&self, key_hash: &str) -> Result<Option<TenantId>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.config.tenants_table)
            .key(tenant::KEY, s(api_key(key_hash)))
            .send()
            .await
            .map_err(unavailable)?;
        out.item
            .filter(|item| !item.contains_key(tenant::REVOKED))
            .map(|item| parse::<TenantId>(req_s(&item, tenant::TENANT)?, "tenant id"))
            .transpose()
    }

    /// One transaction: the tenant must exist, the key must be new.
    async fn add_key(&self, t: &TenantId, key_hash: &str) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let exists = format!("attribute_exists({})", e.name(tenant::KEY));
        let check = ConditionCheck::builder()
            .table_name(&self.config.tenants_table)
            .key(tenant::KEY, s(tenant_key(t)))
            .condition_expression(exists)
            .set_expression_attribute_names(e.names())
            .build()
            .map_err(unavailable)?;
        let key_item = Item::from([
            (tenant::KEY.to_owned(), s(api_key(key_hash))),
            (tenant::TENANT.to_owned(), s(t.as_str())),
        ]);
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().condition_check(check).build())
            .transact_items(self.new_item(key_item)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => match failed_conditions(&e).as_slice() {
                [true, ..] => Err(StoreError::NotFound),
                [_, true] => Err(StoreError::AlreadyExists),
                _ => Err(unavailable(e)),
            },
        }
    }

    async fn revoke_key(&self, key_hash: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let (pk, revoked) = (e.name(tenant::KEY), e.name(tenant::REVOKED));
        let at = e.value(n(nanos(at)?));
        let result = self
            .client
            .update_item()
            .table_name(&self.config.tenants_table)
            .key(tenant::KEY, s(api_key(key_hash)))
            .update_expression(format!("SET {revoked} = {at}"))
            .condition_expression(format!(
                "attribute_exists({pk}) AND attribute_not_exists({revoked})"
            ))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}
