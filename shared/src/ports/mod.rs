//! The ports: the only ways services reach the outside world. Each backend (SQLite and the
//! embedded queue on one machine; DynamoDB, SQS and Secrets Manager on AWS; the providers'
//! HTTP APIs) implements them, and the services never know which one they hold.
//!
//! Every port error says whether trying again may help ([`Retryable`]), which is what the
//! queue consumers use to decide between a retry and a dead end.

pub mod campaigns;
pub mod clock;
pub mod consent;
pub mod contacts;
pub mod counters;
pub mod provider;
pub mod provider_limits;
pub mod queue;
pub mod replays;
pub mod resolver;
pub mod secrets;
pub mod stats;
pub mod store;
pub mod templates;
pub mod users;

pub use campaigns::{CampaignPage, CampaignStore};
pub use clock::{Clock, SystemClock};
pub use consent::ConsentStore;
pub use contacts::{ContactPage, ContactQuery, ContactStore};
pub use counters::{Admission, Admitted, Bucket, CounterStore, SpendPeriod, SpendVerdict, Spent};
pub use provider::{
    OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, ReceiptWebhook, SmsProvider,
    Submitted, WebhookError, WebhookRequest,
};
pub use provider_limits::{
    InProcessLimits, Leased, Outage, OutageReason, ProviderLimits, ProviderRate,
};
pub use queue::{Delivery, Outgoing, Queue, QueueError, QueueName, ReceiptHandle};
pub use replays::{ReplayStore, RequestDigest};
pub use resolver::{Resolver, SystemResolver};
pub use secrets::{Secret, SecretError, SecretStore};
pub use stats::{Rolled, StatsStore};
pub use store::{
    Click, IdempotencyRecord, ListQuery, MessageRef, MessageStore, Page, Patch, ReceiptTarget,
    Retention, StoreError, Tenant, TenantStore, Transition,
};
pub use templates::{TemplatePage, TemplateStore};
pub use users::{FailureWindow, SessionRecord, UserRecord, UserStore, UserWrite};

/// Whether an operation that failed may succeed if tried again.
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}
