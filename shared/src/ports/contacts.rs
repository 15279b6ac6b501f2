//! A tenant's address book: contacts and the lists they are on. SQLite on one machine,
//! DynamoDB on AWS. A contact's number, name and attributes are sealed under the tenant's
//! key; a contact is found by its number's keyed tag, unique per tenant.

use async_trait::async_trait;

use crate::domain::{Contact, ContactId, ListName, PhoneNumber, TenantId};

use super::StoreError;

/// How many puts [`ContactStore::put_many`] has in flight by default (DynamoDB round trips
/// overlap).
const PUT_MANY_AT_ONCE: usize = 16;

/// The most contacts one [`ContactStore::list`] page holds.
pub const MAX_CONTACT_PAGE: usize = 500;

/// Which contacts of a tenant, oldest first.
#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    /// Only those on this list.
    pub list: Option<ListName>,
    /// Continue after this id.
    pub after: Option<ContactId>,
    /// At most this many (1 to [`MAX_CONTACT_PAGE`]).
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next: Option<ContactId>,
}

#[async_trait]
pub trait ContactStore: Send + Sync {
    /// The contacts with these numbers, in order (`None` where the tenant has none).
    async fn find(
        &self,
        tenant: &TenantId,
        phones: &[&PhoneNumber],
    ) -> Result<Vec<Option<Contact>>, StoreError>;

    async fn get(&self, tenant: &TenantId, id: &ContactId) -> Result<Option<Contact>, StoreError>;

    /// Stores a contact. Version 1 is a new contact: [`StoreError::AlreadyExists`] if its id
    /// or its number is taken in the tenant. A later version replaces the one before it
    /// (its number unchanged): [`StoreError::AlreadyExists`] if the stored version is not
    /// that one (another change came first: read again), [`StoreError::NotFound`] if the
    /// contact is gone.
    async fn put(&self, contact: &Contact) -> Result<(), StoreError>;

    /// Stores several contacts, each as [`ContactStore::put`] would: one answer per contact,
    /// in order, and one's refusal is its own. A store may write them together (SQLite: in
    /// one commit).
    async fn put_many(&self, contacts: &[Contact]) -> Vec<Result<(), StoreError>> {
        let mut out = Vec::with_capacity(contacts.len());
        for chunk in contacts.chunks(PUT_MANY_AT_ONCE) {
            out.extend(futures::future::join_all(chunk.iter().map(|c| self.put(c))).await);
        }
        out
    }

    /// Deletes a contact (and its place on its lists); answers whether there was one.
    async fn delete(&self, tenant: &TenantId, id: &ContactId) -> Result<bool, StoreError>;

    /// A page of the tenant's contacts, oldest first.
    async fn list(
        &self,
        tenant: &TenantId,
        query: &ContactQuery,
    ) -> Result<ContactPage, StoreError>;

    /// How many contacts are on a list (what a campaign's estimate counts).
    async fn count(&self, tenant: &TenantId, list: &ListName) -> Result<u64, StoreError>;

    /// The lists that have at least one contact, by name.
    async fn lists(&self, tenant: &TenantId) -> Result<Vec<ListName>, StoreError>;
}
