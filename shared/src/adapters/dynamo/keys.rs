//! Tenants' wrapped data keys in the tenants table (item `datakey#<tenant>`: `wk` the key
//! wrapped by KMS, `er` when it was erased), and each tenant's retention as its limits set it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::{Item, s, tenant};
use super::unavailable;
use crate::adapters::vault::{KeyShelf, StoredKey};
use crate::domain::TenantId;
use crate::ports::StoreError;

pub(super) fn data_key_key(tenant: &TenantId) -> String {
    format!("datakey#{tenant}")
}

/// The wrapped keys of one tenants table.
pub(super) struct Shelf {
    pub(super) client: Client,
    pub(super) table: String,
}

fn stored(item: Option<&Item>) -> StoredKey {
    match item {
        None => StoredKey::Absent,
        Some(item) => match (item.get(tenant::WRAPPED), item.get(tenant::ERASED)) {
            (Some(AttributeValue::B(wrapped)), None) => {
                StoredKey::Wrapped(wrapped.as_ref().to_vec())
            }
            _ => StoredKey::Erased,
        },
    }
}

impl Shelf {
    async fn read(&self, tenant: &TenantId) -> Result<StoredKey, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(tenant::KEY, s(data_key_key(tenant)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(stored(out.item.as_ref()))
    }
}

#[async_trait]
impl KeyShelf for Shelf {
    async fn load(&self, tenant: &TenantId) -> Result<StoredKey, StoreError> {
        self.read(tenant).await
    }

    async fn store_new(&self, t: &TenantId, wrapped: &[u8]) -> Result<StoredKey, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(tenant::KEY, s(data_key_key(t)))
            .item(tenant::TENANT, s(t.as_str()))
            .item(tenant::WRAPPED, AttributeValue::B(Blob::new(wrapped)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", tenant::KEY)
            .send()
            .await;
        match put {
            Ok(_) => Ok(StoredKey::Wrapped(wrapped.to_vec())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                self.read(t).await
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// Each tenant's retention as its limits set it, read at most once a minute per tenant.
#[derive(Default)]
pub(super) struct RetentionCache {
    known: Mutex<HashMap<TenantId, (Option<u32>, Instant)>>,
}

impl RetentionCache {
    const RECHECK: Duration = Duration::from_secs(60);

    pub(super) fn get(&self, tenant: &TenantId) -> Option<Option<u32>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(tenant)
            .filter(|(_, at)| at.elapsed() < Self::RECHECK)
            .map(|(days, _)| *days)
    }

    pub(super) fn put(&self, tenant: &TenantId, days: Option<u32>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(tenant.clone(), (days, Instant::now()));
    }
}
