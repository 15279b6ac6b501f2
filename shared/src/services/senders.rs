//! The sender registry: a tenant sends only from senders registered to it, and to a network
//! only once the sender is active there.
//!
//! A tenant asks for a sender (through the API: pending on every network); the operator of
//! Holub, who registers alpha-names with the networks through the providers, records each
//! network's answer (`holub sender set`). Intake asks [`Senders::check`] for every message;
//! each tenant's registry is cached in the process for [`SENDER_CACHE_TTL`], so a change
//! applies everywhere within it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    AuditAction, Network, Origin, PhoneNumber, Registration, SenderId, SenderRecord, TenantId,
};
use crate::ports::{Clock, StoreError, TenantStore};

/// How long a tenant's registry is believed without asking the store again.
pub const SENDER_CACHE_TTL: Duration = Duration::from_secs(30);

/// Tenants whose registries are cached at most; the cache is emptied when full.
const CACHE_CAPACITY: usize = 10_000;

/// Why a message may not go out from a sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SenderRefusal {
    #[error(
        "the sender {0:?} is not registered to this account; register it first (POST /v1/senders)"
    )]
    NotRegistered(String),
    #[error("the sender {sender:?} is {status} on the {network} network, not active")]
    NotActive {
        sender: String,
        network: &'static str,
        status: &'static str,
    },
}

impl SenderRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            SenderRefusal::NotRegistered(_) => "sender_not_registered",
            SenderRefusal::NotActive { .. } => "sender_not_active",
        }
    }
}

/// One tenant's registry as this process believes it.
#[derive(Debug, Clone)]
pub struct Registry {
    senders: Arc<Vec<SenderRecord>>,
    /// Whether a sender with no record at all is let through (see [`Senders::open`]).
    open: bool,
}

impl Registry {
    fn find(&self, sender: &SenderId) -> Option<&SenderRecord> {
        self.senders.iter().find(|r| &r.sender == sender)
    }

    /// Whether the sender is registered to the tenant at all.
    pub fn registered(&self, sender: &SenderId) -> Result<(), SenderRefusal> {
        match self.find(sender) {
            Some(_) => Ok(()),
            None if self.open => Ok(()),
            None => Err(SenderRefusal::NotRegistered(sender.as_str().to_owned())),
        }
    }

    /// Whether a message from `sender` may go to `to`: the sender is registered and active on
    /// the network of the number's prefix.
    pub fn allows(&self, sender: &SenderId, to: &PhoneNumber) -> Result<(), SenderRefusal> {
        let Some(record) = self.find(sender) else {
            if self.open {
                return Ok(());
            }
            return Err(SenderRefusal::NotRegistered(sender.as_str().to_owned()));
        };
        let network = Network::of(to.operator());
        match record.status(network) {
            Registration::Active => Ok(()),
            status => Err(SenderRefusal::NotActive {
                sender: sender.as_str().to_owned(),
                network: network.as_str(),
                status: status.as_str(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("this sender is already registered to the account")]
    AlreadyRegistered,
    #[error("no such sender")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for SenderError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists => SenderError::AlreadyRegistered,
            StoreError::NotFound => SenderError::NotFound,
            other => SenderError::Store(other),
        }
    }
}

fn record_json(record: &SenderRecord) -> serde_json::Value {
    serde_json::json!({"sender": record.sender, "networks": record.networks})
}

pub struct Senders {
    tenants: Arc<dyn TenantStore>,
    clock: Arc<dyn Clock>,
    open: bool,
    cache: Mutex<HashMap<TenantId, (Registry, DateTime<Utc>)>>,
}

impl Senders {
    pub fn new(tenants: Arc<dyn TenantStore>, clock: Arc<dyn Clock>) -> Self {
        Senders {
            tenants,
            clock,
            open: false,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Lets a sender the registry holds no record of through, as if active everywhere: for
    /// Holub on one's own machine, where the operator is the one sending (a sender with a
    /// record is held to it all the same). Off, as on AWS, only registered senders send.
    pub fn open(mut self, open: bool) -> Self {
        self.open = open;
        self
    }

    /// The tenant's registry, from the cache while it is fresh.
    pub async fn registry(&self, tenant: &TenantId) -> Result<Registry, StoreError> {
        let now = self.clock.now();
        if let Ok(cache) = self.cache.lock()
            && let Some((registry, until)) = cache.get(tenant)
            && *until > now
        {
            return Ok(registry.clone());
        }
        let registry = Registry {
            senders: Arc::new(self.tenants.senders(tenant).await?),
            open: self.open,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            let ttl = chrono::Duration::from_std(SENDER_CACHE_TTL).unwrap_or_default();
            cache.insert(tenant.clone(), (registry.clone(), now + ttl));
        }
        Ok(registry)
    }

    fn forget(&self, tenant: &TenantId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(tenant);
        }
    }

    /// The tenant's senders, as stored.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<SenderRecord>, StoreError> {
        self.tenants.senders(tenant).await
    }

    /// Asks for a sender: registered to the tenant, pending on every network.
    pub async fn request(
        &self,
        tenant: &TenantId,
        sender: SenderId,
        origin: &Origin,
    ) -> Result<SenderRecord, SenderError> {
        let now = self.clock.now();
        let record = SenderRecord::requested(tenant.clone(), sender, now);
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::SenderRequest,
            record.sender.as_str(),
            None,
            Some(record_json(&record)),
        );
        self.tenants.put_sender(&record, true, &audit).await?;
        self.forget(tenant);
        Ok(record)
    }

    /// Records a network's answer for a sender (the operator of Holub does).
    pub async fn set_status(
        &self,
        tenant: &TenantId,
        sender: &SenderId,
        networks: &[Network],
        status: Registration,
        origin: &Origin,
    ) -> Result<SenderRecord, SenderError> {
        let current = self.tenants.senders(tenant).await?;
        let Some(before) = current.into_iter().find(|r| &r.sender == sender) else {
            return Err(SenderError::NotFound);
        };
        let now = self.clock.now();
        let mut after = before.clone();
        for network in networks {
            after.networks.insert(*network, status);
        }
        after.updated_at = now;
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::SenderStatus,
            sender.as_str(),
            Some(record_json(&before)),
            Some(record_json(&after)),
        );
        self.tenants.put_sender(&after, false, &audit).await?;
        self.forget(tenant);
        Ok(after)
    }

    /// Records `status` on `networks` for a sender, registering it first if the tenant has not
    /// asked for it (the operator's command line, which vouches for the networks' answers).
    pub async fn grant(
        &self,
        tenant: &TenantId,
        sender: &SenderId,
        networks: &[Network],
        status: Registration,
        origin: &Origin,
    ) -> Result<SenderRecord, SenderError> {
        match self.request(tenant, sender.clone(), origin).await {
            Ok(_) | Err(SenderError::AlreadyRegistered) => {}
            Err(e) => return Err(e),
        }
        self.set_status(tenant, sender, networks, status, origin)
            .await
    }

    /// Removes a sender from the tenant's registry.
    pub async fn remove(
        &self,
        tenant: &TenantId,
        sender: &SenderId,
        origin: &Origin,
    ) -> Result<(), SenderError> {
        let now = self.clock.now();
        let audit = origin.entry(
            tenant,
            now,
            AuditAction::SenderRemove,
            sender.as_str(),
            Some(serde_json::json!({"sender": sender})),
            None,
        );
        let removed = self.tenants.remove_sender(tenant, sender, &audit).await?;
        self.forget(tenant);
        if removed {
            Ok(())
        } else {
            Err(SenderError::NotFound)
        }
    }
}
