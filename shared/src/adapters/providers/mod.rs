//! Adapters for the Ukrainian SMS providers' public HTTP APIs, behind the provider port.
//!
//! Each module holds one provider: its client ([`SmsProvider`]), its receipt parser
//! ([`ReceiptWebhook`]) where it pushes receipts, the mapping of its error codes and status
//! vocabulary to Holub's, and its documented request/response examples as test fixtures
//! (under `<provider>/fixtures/`). [`build`] makes one from the route table's settings and
//! the credentials read through the secrets port; [`refreshing`] rebuilds it when the secret
//! is rotated.

pub mod alphasms;
pub mod http;
pub mod kit;
pub mod kyivstar;
pub mod refreshing;
pub mod registry;
pub mod smsfly;
pub mod table;
pub mod turbosms;

use std::sync::Arc;

use crate::ports::{ReceiptWebhook, Secret, SmsProvider};

/// A provider as the gateway needs it: the client, and the receipt parser if it pushes.
pub struct Built {
    pub provider: Arc<dyn SmsProvider>,
    pub webhook: Option<Arc<dyn ReceiptWebhook>>,
}

impl Built {
    /// A provider that is polled for receipts: no webhook.
    pub fn polled(provider: impl SmsProvider + 'static) -> Self {
        Built {
            provider: Arc::new(provider),
            webhook: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("unknown provider kind {0:?}")]
    UnknownKind(String),
    #[error("bad settings for provider {name:?}: {message}")]
    Settings { name: String, message: String },
    #[error("bad credentials for provider {name:?}: {message}")]
    Credentials { name: String, message: String },
}

/// The names of the provider kinds Holub speaks ([`registry`] has the rest of each line).
pub const KINDS: &[&str] = &registry::NAMES;

/// Makes the provider `name` of `kind` from its settings (the route table's JSON object for
/// it, without the common keys) and its credentials (a secret holding a JSON object).
pub fn build(
    kind: &str,
    name: &str,
    settings: serde_json::Value,
    credentials: &Secret,
) -> Result<Built, ProviderSetupError> {
    let kind =
        registry::get(kind).ok_or_else(|| ProviderSetupError::UnknownKind(kind.to_owned()))?;
    (kind.build)(name, settings, credentials)
}
