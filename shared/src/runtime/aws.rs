//! The AWS backend chosen: what a Lambda function's `main` starts from, once per cold start.

use std::sync::Arc;

use super::{Holub, Ports, Settings, Target};
use crate::adapters::aws::{AwsBackend, backend_from_env};
use crate::ports::SystemClock;

impl Ports {
    /// DynamoDB for the stores, SQS for the queues, Secrets Manager for the secrets.
    pub fn aws(backend: &AwsBackend) -> Self {
        Ports {
            store: Arc::new(backend.store.clone()),
            tenants: Arc::new(backend.store.clone()),
            queue: Arc::new(backend.queue.clone()),
            secrets: Arc::new(backend.secrets.clone()),
            replays: Arc::new(backend.store.clone()),
            counters: Arc::new(backend.store.clone()),
            provider_limits: Arc::new(backend.store.clone()),
            stats: Arc::new(backend.store.clone()),
            consent: Arc::new(backend.store.clone()),
            contacts: Arc::new(backend.store.clone()),
            templates: Arc::new(backend.store.clone()),
            campaigns: Arc::new(backend.store.clone()),
            users: Arc::new(backend.store.clone()),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Holub over the AWS backend, everything read from the environment: the backend's names
/// (`HOLUB_*_TABLE`, `HOLUB_*_QUEUE_URL`, ...) and the [`Settings`].
pub async fn holub_from_env() -> Result<Holub, String> {
    let backend = backend_from_env().await?;
    let settings = Settings::from_env()?;
    Ok(Holub::new(Ports::aws(&backend), settings, Target::Aws))
}
