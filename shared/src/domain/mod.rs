//! The pure domain: values that can only hold valid data, and the rules of SMS.

pub mod access;
pub mod address;
pub mod campaign;
pub mod consent;
pub mod contact;
pub mod csv_import;
pub mod failure;
pub mod ids;
pub mod kyiv;
pub mod limits;
pub mod links;
pub mod message;
pub mod money;
pub mod phone;
pub mod sealing;
pub mod segments;
pub mod sender;
pub mod stats;
pub mod status;
pub mod template;
pub mod text;
pub mod transliteration;
pub mod user;
pub mod window;

pub use access::{
    Actor, ApiKeyRecord, AuditAction, AuditEntry, KeyName, Network, Origin, Registration, Scope,
    Scopes, SenderRecord,
};
pub use campaign::{
    Campaign, CampaignError, CampaignEstimate, CampaignName, CampaignState, ChunkOutcome,
    Expansion, Pace,
};
pub use consent::{
    Category, ConsentChange, ConsentEntry, ConsentSource, ConsentState, Evidence, RecordedBy,
    WithdrawalChannel,
};
pub use contact::{Contact, ContactError, Details, ListName};
pub use failure::{FailureCode, UnknownFailureCode};
pub use ids::{
    BatchId, CampaignId, ContactId, IdempotencyKey, KeyId, MessageId, TemplateId, TenantId, UserId,
};
pub use limits::{LimitError, StatusCallback, TenantLimits};
pub use links::{ShortBase, ShortCode, TrackedLink, Visitor};
pub use message::{Message, MessageError, StatusChange};
pub use money::Kopiyky;
pub use phone::{CountryCode, Operator, PhoneError, PhoneNumber};
pub use sealing::{DataKey, SealError};
pub use segments::{Encoding, Estimate};
pub use sender::{SenderId, SenderIdError};
pub use status::{MessageStatus, PartReceipt, StatusError, StatusSet};
pub use template::{TemplateName, TemplateText, TemplateVersion};
pub use text::{MessageText, TextError, TextEstimate};
pub use user::{ConsoleUser, Email, EmailError, Invitation, PasswordHash, Role};
pub use window::SendingWindow;
