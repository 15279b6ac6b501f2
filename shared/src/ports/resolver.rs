//! Name lookups, behind a port so that the address checks of callbacks can be proven against
//! answers a test chooses (a name that changes its answer between intake and sending).

use std::net::IpAddr;

use async_trait::async_trait;

#[async_trait]
pub trait Resolver: Send + Sync {
    /// Every address `host` resolves to.
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system's resolver (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|addr| addr.ip())
            .collect())
    }
}
