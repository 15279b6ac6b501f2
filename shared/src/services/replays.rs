//! The receipt replay guard: a receipt request identical to one already applied (same
//! provider, query and body) within [`REPLAY_WINDOW`] is refused, whatever the provider's own
//! scheme — a captured request sent again. Only applied requests are remembered, so a batch
//! the endpoint asked to be sent again (some messages not yet recorded) is taken when it
//! comes back.
//!
//! The digests live in a [`ReplayStore`], shared by every instance that takes receipts; the
//! process keeps the ones it has seen as a cache in front (a digest once applied stays so
//! until it expires, so the cache can never be wrong, only short).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::ports::{Clock, ReplayStore, RequestDigest, StoreError};

/// How long an applied receipt request is remembered.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Digests cached in the process at most (emptied when full).
const LOCAL_CAPACITY: usize = 100_000;

pub struct ReplayGuard {
    store: Arc<dyn ReplayStore>,
    clock: Arc<dyn Clock>,
    window: chrono::Duration,
    local: Mutex<HashMap<RequestDigest, DateTime<Utc>>>,
}

impl ReplayGuard {
    pub fn new(store: Arc<dyn ReplayStore>, clock: Arc<dyn Clock>, window: Duration) -> Self {
        ReplayGuard {
            store,
            clock,
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(1)),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// The digest of one request; each part is length-prefixed, so no two different
    /// requests share the bytes hashed.
    pub fn digest(provider: &str, query: Option<&str>, body: &[u8]) -> RequestDigest {
        let mut h = Sha256::new();
        for part in [provider.as_bytes(), query.unwrap_or("").as_bytes(), body] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Whether this request was applied within the window, here or on any other instance.
    pub async fn seen(&self, digest: &RequestDigest) -> Result<bool, StoreError> {
        let now = self.clock.now();
        if let Ok(local) = self.local.lock()
            && local.get(digest).is_some_and(|until| *until > now)
        {
            return Ok(true);
        }
        self.store.seen(digest, now).await
    }

    /// Remembers an applied request for the window.
    pub async fn remember(&self, digest: RequestDigest) -> Result<(), StoreError> {
        let until = self.clock.now() + self.window;
        self.store.remember(&digest, until).await?;
        if let Ok(mut local) = self.local.lock() {
            if local.len() >= LOCAL_CAPACITY {
                local.clear();
            }
            local.insert(digest, until);
        }
        Ok(())
    }

    /// Forgets expired digests in the store (a periodic task); returns how many.
    pub async fn forget_expired(&self, limit: usize) -> Result<usize, StoreError> {
        let now = self.clock.now();
        if let Ok(mut local) = self.local.lock() {
            local.retain(|_, until| *until > now);
        }
        self.store.forget_expired(now, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_separate_their_parts() {
        let a = ReplayGuard::digest("p", Some("ab"), b"c");
        let b = ReplayGuard::digest("p", Some("a"), b"bc");
        let c = ReplayGuard::digest("p", None, b"");
        let d = ReplayGuard::digest("p", Some(""), b"");
        assert_ne!(a, b);
        assert_eq!(c, d, "no query and an empty one are the same request");
        assert_eq!(a, ReplayGuard::digest("p", Some("ab"), b"c"));
    }
}
