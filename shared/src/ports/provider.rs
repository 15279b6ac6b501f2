//! An SMS provider: the paid network that carries a message to the handset.

use async_trait::async_trait;

use crate::domain::{Encoding, Kopiyky, MessageId, PhoneNumber, SenderId};

use super::Retryable;

/// What a provider needs to submit one message.
#[derive(Debug, Clone)]
pub struct OutboundSms {
    /// Passed as the client-side id where the provider takes one, so a resubmission after an
    /// unknown outcome can be recognised by the provider.
    pub id: MessageId,
    pub to: PhoneNumber,
    pub from: SenderId,
    pub text: String,
    pub encoding: Encoding,
    pub segments: u16,
    /// Seconds the operator should keep trying to deliver.
    pub validity_seconds: u32,
}

/// The provider's answer to an accepted submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub provider_message_id: String,
    pub cost: Option<Kopiyky>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not take the message now (5xx, timeout, rate limit, throttling):
    /// another attempt, here or on another route, may succeed.
    #[error("provider temporarily unavailable: {message}")]
    Temporary { code: String, message: String },
    /// The provider refused this message for good (bad number, unregistered sender, no
    /// money on the account): retrying cannot help.
    #[error("provider refused the message: {message}")]
    Permanent { code: String, message: String },
}

impl ProviderError {
    pub fn code(&self) -> &str {
        match self {
            ProviderError::Temporary { code, .. } | ProviderError::Permanent { code, .. } => code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ProviderError::Temporary { message, .. } | ProviderError::Permanent { message, .. } => {
                message
            }
        }
    }
}

impl Retryable for ProviderError {
    fn is_retryable(&self) -> bool {
        matches!(self, ProviderError::Temporary { .. })
    }
}

#[async_trait]
pub trait SmsProvider: Send + Sync {
    /// The route's name, as recorded on each message it carried.
    fn name(&self) -> &str;

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError>;

    /// Submits several messages; one answer per message, in order. Providers with a bulk
    /// request override this; the default sends them one by one, concurrently.
    async fn send_many(&self, batch: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        futures::future::join_all(batch.iter().map(|sms| self.send(sms))).await
    }

    /// What the provider knows of a message we may have submitted (by our id, passed as its
    /// client-side id): `Some` if it took the message, `None` if it never saw it. This is how
    /// a submission whose outcome was lost in a crash is resolved without sending twice.
    async fn lookup(&self, id: &MessageId) -> Result<Option<Submitted>, ProviderError>;
}

/// One delivery report as a provider sent it, mapped to Holub's vocabulary: the provider's
/// id of the message, which part it covers (1 for single-part messages), and the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReceipt {
    pub provider_message_id: String,
    pub part: u16,
    pub state: crate::domain::status::ReceiptState,
    pub at: chrono::DateTime<chrono::Utc>,
}
