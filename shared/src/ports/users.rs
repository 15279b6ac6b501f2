//! The web console's users, their sessions and failed sign-ins. SQLite on one machine,
//! DynamoDB on AWS.
//!
//! A user is found by email across all tenants (sign-in names no tenant), and by tenant and
//! id. A session is found by the SHA-256 of its token only: the token itself is the cookie
//! and is never stored. Failed sign-ins are counted per address (its digest), known or not,
//! in a window that opens with the first failure.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{ConsoleUser, Email, Invitation, PasswordHash, Role, TenantId, UserId};

use super::StoreError;

/// The most users [`UserStore::list`] returns: a tenant's first thousand, oldest first.
pub const MAX_USERS: usize = 1_000;

/// A user as stored: what the console shows, and what only the service reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// `user.pending` is whether `password` is absent; the stores read it so, whatever a
    /// write said.
    pub user: ConsoleUser,
    pub password: Option<PasswordHash>,
    pub invitation: Option<Invitation>,
    /// Sessions created before this instant are void (a password change moves it).
    pub sessions_since: DateTime<Utc>,
    /// 1 when created; each [`UserStore::update`] stores the next.
    pub version: u64,
}

impl UserRecord {
    /// Whether the user is an owner who can sign in: what a tenant must keep one of.
    pub fn active_owner(&self) -> bool {
        self.user.role == Role::Owner && self.password.is_some()
    }
}

/// A console session as stored, by the digest of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the session token.
    pub token_hash: String,
    pub user: UserId,
    pub tenant: TenantId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Failed sign-ins of one address in the window that is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureWindow {
    pub count: u32,
    /// When the window (opened by its first failure) closes and the count starts over.
    pub ends_at: DateTime<Utc>,
}

/// How a change of a stored user ended, when the store did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserWrite {
    Done,
    /// No such user of the tenant.
    NotFound,
    /// The stored version is not the one the change was made from: read again.
    Stale,
    /// The change would leave the tenant without an active owner
    /// ([`UserRecord::active_owner`]); nothing was written.
    LastOwner,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user (at version 1). [`StoreError::AlreadyExists`] if the email is any
    /// tenant's user's, or the id is taken; [`StoreError::NotFound`] if the tenant does not
    /// exist.
    async fn create(&self, user: &UserRecord) -> Result<(), StoreError>;

    /// The user with this address, of whichever tenant.
    async fn get_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError>;

    /// The tenant's user with this id; `None` for another tenant's.
    async fn get(&self, tenant: &TenantId, id: &UserId) -> Result<Option<UserRecord>, StoreError>;

    /// The tenant's users, oldest first, at most [`MAX_USERS`].
    async fn list(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError>;

    /// Stores `user` (its role, password, invitation and `sessions_since`; its email, tenant
    /// and creation stay) over the stored version `user.version - 1`, refusing to leave the
    /// tenant without an active owner.
    async fn update(&self, user: &UserRecord) -> Result<UserWrite, StoreError>;

    /// Deletes the tenant's user and frees their email, refusing to delete the tenant's last
    /// active owner. ([`UserWrite::Stale`] is never answered: a delete needs no version.)
    async fn delete(&self, tenant: &TenantId, id: &UserId) -> Result<UserWrite, StoreError>;

    /// Removes every user of the tenant and frees their addresses (the tenant is erased).
    /// Their sessions stop working at once, since a session is honoured only with its user
    /// (on DynamoDB the session items go with their TTL). Answers how many there were.
    async fn erase_tenant(&self, tenant: &TenantId) -> Result<usize, StoreError>;

    /// Stores a session; [`StoreError::AlreadyExists`] if its token's digest is taken.
    async fn put_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// The session with this token digest, unless it has expired by `now`.
    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Ends a session (nothing if there is none).
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;

    /// Counts a failed sign-in of `email` at `at`: one more in the open window, or the first
    /// of a new window of `window` if none is open. Answers the window after it.
    async fn record_failure(
        &self,
        email: &Email,
        at: DateTime<Utc>,
        window: Duration,
    ) -> Result<FailureWindow, StoreError>;

    /// The failed sign-ins of `email` in the window open at `now`, if one is.
    async fn failures(
        &self,
        email: &Email,
        now: DateTime<Utc>,
    ) -> Result<Option<FailureWindow>, StoreError>;

    /// Forgets the failed sign-ins of `email` (a sign-in succeeded).
    async fn clear_failures(&self, email: &Email) -> Result<(), StoreError>;
}
