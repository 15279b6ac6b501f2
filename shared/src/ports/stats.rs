//! The statistics store: where status events are folded into per-tenant statistics (the
//! rollup) and where reports read them.

use async_trait::async_trait;

use super::store::StoreError;
use crate::domain::TenantId;
use crate::domain::stats::{Counters, Hour, StatsKey};

/// What one run of the rollup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rolled {
    /// Status events folded in.
    pub events: usize,
    /// Events that could not be read (skipped, and logged).
    pub unreadable: usize,
}

#[async_trait]
pub trait StatsStore: Send + Sync {
    /// Folds the status events written since the last run into the statistics, at most about
    /// `budget` of them, and returns how many it folded. Each event counts once, whether
    /// a run dies half-way, two runs overlap, or an event is seen twice: the statistics and
    /// the checkpoint of what was folded move in one write.
    async fn roll_up(&self, budget: usize) -> Result<Rolled, StoreError>;

    /// The first and the last hour that hold statistics of a tenant; `None` while none do.
    async fn extent(&self, tenant: &TenantId) -> Result<Option<(Hour, Hour)>, StoreError>;

    /// A tenant's statistics for the hours in `from..to`, one entry per cell.
    async fn stats(
        &self,
        tenant: &TenantId,
        from: Hour,
        to: Hour,
    ) -> Result<Vec<(StatsKey, Counters)>, StoreError>;
}
