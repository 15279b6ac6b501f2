//! An SMS provider: the paid network that carries a message to the handset.

use async_trait::async_trait;

use crate::domain::{Encoding, FailureCode, Kopiyky, MessageId, PhoneNumber, SenderId};

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
    Temporary { code: FailureCode, message: String },
    /// The provider refused this message for good (bad number, unregistered sender, text
    /// too long): retrying cannot help.
    #[error("provider refused the message: {message}")]
    Permanent { code: FailureCode, message: String },
    /// The provider's *account* cannot send now, whatever the message: credentials refused
    /// (401/403), no money left, the account blocked. The message is not at fault: another
    /// route may take it now, and this one again once someone tops up the balance or rotates
    /// the secret. The gateway opens the provider's breaker and fails over.
    #[error("provider account cannot send: {message}")]
    Account { code: FailureCode, message: String },
    /// The request reached the provider but its answer did not come back (a timeout after
    /// the request was sent, a cut connection, an unreadable answer): the provider may or
    /// may not have taken the message. Sending again could send it twice, so dispatch
    /// resolves it by [`SmsProvider::lookup`] before anything else.
    #[error("provider answer lost: {message}")]
    Unknown { code: FailureCode, message: String },
}

impl ProviderError {
    pub fn temporary(code: FailureCode, message: impl Into<String>) -> Self {
        ProviderError::Temporary {
            code,
            message: message.into(),
        }
    }

    pub fn permanent(code: FailureCode, message: impl Into<String>) -> Self {
        ProviderError::Permanent {
            code,
            message: message.into(),
        }
    }

    pub fn account(code: FailureCode, message: impl Into<String>) -> Self {
        ProviderError::Account {
            code,
            message: message.into(),
        }
    }

    pub fn unknown(code: FailureCode, message: impl Into<String>) -> Self {
        ProviderError::Unknown {
            code,
            message: message.into(),
        }
    }

    pub fn code(&self) -> FailureCode {
        match self {
            ProviderError::Temporary { code, .. }
            | ProviderError::Permanent { code, .. }
            | ProviderError::Account { code, .. }
            | ProviderError::Unknown { code, .. } => *code,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ProviderError::Temporary { message, .. }
            | ProviderError::Permanent { message, .. }
            | ProviderError::Account { message, .. }
            | ProviderError::Unknown { message, .. } => message,
        }
    }

    /// Whether the outcome of the submission is unknown (see [`ProviderError::Unknown`]).
    pub fn is_unknown(&self) -> bool {
        matches!(self, ProviderError::Unknown { .. })
    }

    /// Whether the provider's account, not the message, is at fault (see
    /// [`ProviderError::Account`]).
    pub fn is_account(&self) -> bool {
        matches!(self, ProviderError::Account { .. })
    }
}

impl Retryable for ProviderError {
    /// A temporary error may simply be tried again, and an account error elsewhere now or
    /// here later (the gateway keeps the provider out meanwhile); an unknown outcome must be
    /// resolved first.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Temporary { .. } | ProviderError::Account { .. }
        )
    }
}

/// How a provider reports delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptMode {
    /// It POSTs receipts to a webhook of ours.
    Push,
    /// It keeps them for us to ask: [`SmsProvider::status`] is polled.
    Poll,
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
    ///
    /// The default is for providers that cannot be asked by our id: a permanent
    /// `lookup_unsupported`.
    async fn lookup(&self, id: &MessageId) -> Result<Option<Submitted>, ProviderError> {
        Err(ProviderError::permanent(
            FailureCode::LookupUnsupported,
            format!("{} cannot look message {id} up by Holub's id", self.name()),
        ))
    }

    /// Whether receipts are pushed to us or must be polled with [`SmsProvider::status`].
    fn receipt_mode(&self) -> ReceiptMode {
        ReceiptMode::Push
    }

    /// Whether [`SmsProvider::status`] answers: always for providers that do not push; for
    /// those that push, whether their API can also be asked (receipts overdue after a crash
    /// or a loss are then reconciled by asking).
    fn answers_status(&self) -> bool {
        self.receipt_mode() == ReceiptMode::Poll
    }

    /// The delivery state of submitted messages, by the provider's ids, as receipts (only
    /// for the ids the provider has news of). Polled for providers that do not push; asked
    /// of those that push when a receipt is overdue.
    async fn status(
        &self,
        provider_message_ids: &[String],
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        let _ = provider_message_ids;
        Err(ProviderError::permanent(
            FailureCode::StatusUnsupported,
            format!("{} does not answer status queries", self.name()),
        ))
    }

    /// The money left on the account.
    async fn balance(&self) -> Result<Kopiyky, ProviderError> {
        Err(ProviderError::permanent(
            FailureCode::BalanceUnsupported,
            format!("{} does not report a balance", self.name()),
        ))
    }
}

/// One webhook request as it arrived, for a provider's receipt parser.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub headers: &'a reqwest::header::HeaderMap,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Why a receipt webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Missing or wrong credentials or signature.
    #[error("the receipt is not authenticated")]
    Unauthorized,
    /// Authentic, but seen before or too old to be fresh.
    #[error("the receipt was replayed")]
    Replayed,
    /// The body is not what the provider documents.
    #[error("{message}")]
    Malformed { code: &'static str, message: String },
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::Unauthorized => "receipt_unauthorized",
            WebhookError::Replayed => "receipt_replayed",
            WebhookError::Malformed { code, .. } => code,
        }
    }
}

/// Parses and authenticates a provider's delivery-receipt webhooks.
pub trait ReceiptWebhook: Send + Sync {
    fn parse(
        &self,
        request: &WebhookRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<ProviderReceipt>, WebhookError>;
}

/// One delivery report as a provider sent it, mapped to Holub's vocabulary: the provider's
/// id of the message, which part it covers, and the state.
///
/// `part` is 1-based for providers that report each part of a long message on its own, and
/// [`WHOLE_MESSAGE`] (0) for providers whose report covers the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReceipt {
    pub provider_message_id: String,
    pub part: u16,
    pub state: crate::domain::status::ReceiptState,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The `part` of a [`ProviderReceipt`] that covers every part of the message.
pub const WHOLE_MESSAGE: u16 = 0;
