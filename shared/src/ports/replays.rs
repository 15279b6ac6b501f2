//! Receipt requests already applied, remembered across every instance that takes receipts
//! (one process on one machine; any number of Lambda instances on AWS), so a captured
//! request sent again is refused wherever it lands.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// The SHA-256 of one receipt request (provider, query and body).
pub type RequestDigest = [u8; 32];

#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Whether `digest` was remembered and its time has not run out at `now`.
    async fn seen(&self, digest: &RequestDigest, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Remembers `digest` until `until` (again: the later time wins).
    async fn remember(
        &self,
        digest: &RequestDigest,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Forgets digests whose time ran out before `now`, at most `limit`; returns how many.
    /// (A store whose records expire by themselves, such as DynamoDB with TTL, forgets
    /// nothing here.)
    async fn forget_expired(&self, now: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;
}
