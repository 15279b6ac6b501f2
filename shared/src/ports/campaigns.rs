//! A tenant's campaigns. SQLite on one machine, DynamoDB on AWS. A campaign is stored whole
//! (it holds no subscriber data) with a version: a change lands only over the version it
//! was made from, so a pause and a chunk's progress made at once never undo each other.

use async_trait::async_trait;

use crate::domain::{Campaign, CampaignId, TenantId};

use super::StoreError;

/// The most campaigns one [`CampaignStore::list`] page holds.
pub const MAX_CAMPAIGN_PAGE: usize = 100;

#[derive(Debug, Clone)]
pub struct CampaignPage {
    /// Newest first.
    pub campaigns: Vec<Campaign>,
    /// The id to pass as `before` for the next page, if there may be one.
    pub next: Option<CampaignId>,
}

#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores a campaign. Version 1 is a new one: [`StoreError::AlreadyExists`] if its id is
    /// taken. Version n replaces n-1: [`StoreError::AlreadyExists`] if the stored version is
    /// not n-1 (another change came first: read again), [`StoreError::NotFound`] if there is
    /// none. The opt-out count ([`CampaignStore::count_opt_out`]) is kept as stored.
    async fn put(&self, campaign: &Campaign) -> Result<(), StoreError>;

    async fn get(&self, tenant: &TenantId, id: &CampaignId)
    -> Result<Option<Campaign>, StoreError>;

    /// A page of the tenant's campaigns, newest first, before `before`, at most `limit` (1 to
    /// [`MAX_CAMPAIGN_PAGE`]).
    async fn list(
        &self,
        tenant: &TenantId,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<CampaignPage, StoreError>;

    /// Counts one more subscriber who opted out through the campaign's messages (no version
    /// change; nothing if there is no such campaign).
    async fn count_opt_out(&self, tenant: &TenantId, id: &CampaignId) -> Result<(), StoreError>;
}
