//! A tenant's message templates, in versions. SQLite on one machine, DynamoDB on AWS.

use async_trait::async_trait;

use crate::domain::{TemplateId, TemplateVersion, TenantId};

use super::StoreError;

/// The most templates one [`TemplateStore::list`] page holds.
pub const MAX_TEMPLATE_PAGE: usize = 100;

#[derive(Debug, Clone)]
pub struct TemplatePage {
    /// Each template's latest version, oldest template first.
    pub templates: Vec<TemplateVersion>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next: Option<TemplateId>,
}

#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores a version. Version 1 is a new template: [`StoreError::AlreadyExists`] if its id
    /// is taken, or its name (compared in lower case) is another live template's of the
    /// tenant. Version n follows n-1 of a live template: [`StoreError::AlreadyExists`] if the
    /// latest stored version is not n-1 (another change came first) or the new name is
    /// taken, [`StoreError::NotFound`] if the template is gone. A version never replaces
    /// another.
    async fn put(&self, version: &TemplateVersion) -> Result<(), StoreError>;

    /// A live template's latest version, or (`version` given) that version of any template
    /// the tenant ever had, deleted ones included: a campaign keeps reading what it sent.
    async fn get(
        &self,
        tenant: &TenantId,
        id: &TemplateId,
        version: Option<u32>,
    ) -> Result<Option<TemplateVersion>, StoreError>;

    /// A page of live templates (their latest versions), oldest first, after `after`, at
    /// most `limit` (1 to [`MAX_TEMPLATE_PAGE`]).
    async fn list(
        &self,
        tenant: &TenantId,
        after: Option<&TemplateId>,
        limit: usize,
    ) -> Result<TemplatePage, StoreError>;

    /// Deletes a template: it leaves the list and frees its name; its versions stay readable
    /// by number. Answers whether there was a live one.
    async fn delete(&self, tenant: &TenantId, id: &TemplateId) -> Result<bool, StoreError>;
}
