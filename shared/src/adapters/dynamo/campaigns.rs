//! [`CampaignStore`] on DynamoDB, in the tenants table (partition key `pk`, and the
//! `by_tenant` index on `gp`/`gs`, which projects every attribute). A campaign is one item
//! holding it whole as JSON (no subscriber data is in it):
//!
//! | item | `pk` | attributes | `by_tenant` (`gp`, `gs`) |
//! |---|---|---|---|
//! | a campaign | `cmp#<tenant>#<id>` | `t` tenant, `v` version, `e` the campaign (JSON), `oo` opt-outs counted | `<tenant>#cmp`, id |
//!
//! | call | requests | write units |
//! |---|---|---|
//! | `put`, version 1 | 1 `PutItem` on `attribute_not_exists(pk)` | 2 (item and index) |
//! | `put`, version `n` | 1 `UpdateItem` on `v = n - 1` (+ 1 `GetItem` when refused, to tell a change that came first from a campaign that is not there) | 2 |
//! | `count_opt_out` | 1 `UpdateItem` (`ADD oo 1`) on `attribute_exists(pk)` | 2 |
//! | `get` | 1 `GetItem`, strongly consistent | — |
//! | `list` | 1 `Query` of the index, newest first (eventually consistent) | — |
//!
//! Campaign ids are ULIDs, so the index group in id order is oldest first.

use async_trait::async_trait;

use super::codec::{Item, corrupt, get_n, n, req_s, s, tenant};
use super::reads::Order;
use super::{DynamoStore, Expr, unavailable};
use crate::domain::{Campaign, CampaignId, TenantId};
use crate::ports::campaigns::MAX_CAMPAIGN_PAGE;
use crate::ports::{CampaignPage, CampaignStore, StoreError};

/// A campaign's version (N).
const VERSION: &str = "v";
/// Subscribers who opted out through its messages (N).
const OPTED_OUT: &str = "oo";

fn campaign_key(t: &TenantId, id: &str) -> String {
    format!("cmp#{t}#{id}")
}

fn campaigns_group(t: &TenantId) -> String {
    format!("{t}#cmp")
}

fn campaign_from(item: &Item) -> Result<Campaign, StoreError> {
    let mut campaign: Campaign = serde_json::from_str(req_s(item, tenant::ENTRY)?)
        .map_err(|e| corrupt(format!("campaign: {e}")))?;
    campaign.opted_out = get_n(item, OPTED_OUT)?.unwrap_or(0);
    Ok(campaign)
}

fn body(campaign: &Campaign) -> Result<String, StoreError> {
    serde_json::to_string(campaign).map_err(|e| corrupt(format!("campaign: {e}")))
}

#[async_trait]
impl CampaignStore for DynamoStore {
    async fn put(&self, campaign: &Campaign) -> Result<(), StoreError> {
        if campaign.version == 0 {
            return Err(corrupt("a campaign's versions are numbered from 1"));
        }
        let (t, id) = (&campaign.tenant_id, campaign.id.as_str());
        let key = campaign_key(t, id);
        let mut e = Expr::default();
        let result = if campaign.version == 1 {
            let item = Item::from([
                (tenant::KEY.to_owned(), s(&key)),
                (tenant::TENANT.to_owned(), s(t.as_str())),
                (VERSION.to_owned(), n(1)),
                (tenant::ENTRY.to_owned(), s(body(campaign)?)),
                (tenant::GROUP.to_owned(), s(campaigns_group(t))),
                (tenant::GROUP_SORT.to_owned(), s(id)),
            ]);
            let condition = format!("attribute_not_exists({})", e.name(tenant::KEY));
            self.client
                .put_item()
                .table_name(&self.config.tenants_table)
                .set_item(Some(item))
                .condition_expression(condition)
                .set_expression_attribute_names(e.names())
                .send()
                .await
                .map(|_| ())
                .map_err(|err| {
                    let refused = err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception());
                    (refused, unavailable(err))
                })
        } else {
            let expression = format!(
                "SET {} = {}, {} = {}",
                e.name(VERSION),
                e.value(n(campaign.version)),
                e.name(tenant::ENTRY),
                e.value(s(body(campaign)?)),
            );
            let condition = format!("{} = {}", e.name(VERSION), e.value(n(campaign.version - 1)));
            self.client
                .update_item()
                .table_name(&self.config.tenants_table)
                .key(tenant::KEY, s(&key))
                .update_expression(expression)
                .condition_expression(condition)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .send()
                .await
                .map(|_| ())
                .map_err(|err| {
                    let refused = err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception());
                    (refused, unavailable(err))
                })
        };
        match result {
            Ok(()) => Ok(()),
            Err((false, e)) => Err(e),
            Err((true, _)) if campaign.version == 1 => Err(StoreError::AlreadyExists),
            // Another change came first, or there is no such campaign.
            Err((true, _)) => match self.tenants_item(key, Some(&[VERSION])).await? {
                Some(_) => Err(StoreError::AlreadyExists),
                None => Err(StoreError::NotFound),
            },
        }
    }

    async fn get(&self, t: &TenantId, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        self.tenants_item(campaign_key(t, id.as_str()), None)
            .await?
            .map(|item| campaign_from(&item))
            .transpose()
    }

    async fn list(
        &self,
        t: &TenantId,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<CampaignPage, StoreError> {
        let limit = limit.clamp(1, MAX_CAMPAIGN_PAGE);
        let items = self
            .by_tenant_group(
                campaigns_group(t),
                Order::Descending,
                before.map(CampaignId::as_str),
                limit,
            )
            .await?;
        let campaigns = items
            .iter()
            .map(campaign_from)
            .collect::<Result<Vec<_>, _>>()?;
        let next = (campaigns.len() == limit)
            .then(|| campaigns.last().map(|c| c.id.clone()))
            .flatten();
        Ok(CampaignPage { campaigns, next })
    }

    async fn count_opt_out(&self, t: &TenantId, id: &CampaignId) -> Result<(), StoreError> {
        let mut e = Expr::default();
        let expression = format!("ADD {} {}", e.name(OPTED_OUT), e.value(n(1)));
        let condition = format!("attribute_exists({})", e.name(tenant::KEY));
        let result = self
            .client
            .update_item()
            .table_name(&self.config.tenants_table)
            .key(tenant::KEY, s(campaign_key(t, id.as_str())))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}
