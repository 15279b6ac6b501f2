//! Identifiers that cross Holub's boundaries.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// A ULID for `at`, strictly greater than every one this process made before, also within
/// one millisecond: ids sort in the order things were made, so oldest- or newest-first pages
/// and their cursors follow it.
fn monotonic(at: DateTime<Utc>) -> Ulid {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let fallback = || Ulid::from_datetime(at.into());
    match GENERATOR.lock() {
        Ok(mut guard) => guard
            .get_or_insert_with(ulid::Generator::new)
            .generate_from_datetime(at.into())
            // Only when 2^80 ids were made in one millisecond, or the clock went back.
            .unwrap_or_else(|_| fallback()),
        Err(_) => fallback(),
    }
}

/// A message's id: a ULID, so ids sort by creation time (cursor pagination and DynamoDB sort
/// keys rely on that) and carry no tenant data.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(Ulid);

impl MessageId {
    /// A new id stamped with `at` (the clock port's time) and 80 random bits. Within one
    /// process ids are strictly increasing, also within one millisecond, so newest-first
    /// pages and cursors follow the order messages were accepted in.
    pub fn generate(at: DateTime<Utc>) -> Self {
        MessageId(monotonic(at))
    }

    /// The millisecond timestamp encoded in the id.
    pub fn timestamp_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }

    /// The 80 random bits of the id (incremented, not redrawn, between ids made in the same
    /// millisecond by one process). Providers that take only a number as the client-side id
    /// derive it from these.
    pub fn random_bits(&self) -> u128 {
        self.0.random()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id: expected 26 characters of Crockford base32")]
pub struct InvalidMessageId;

impl FromStr for MessageId {
    type Err = InvalidMessageId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s)
            .map(MessageId)
            .map_err(|_| InvalidMessageId)
    }
}

impl TryFrom<String> for MessageId {
    type Error = InvalidMessageId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<MessageId> for String {
    fn from(value: MessageId) -> Self {
        value.0.to_string()
    }
}

/// Declares an opaque ULID-based id type with a fixed prefix (`ten_…`, `bat_…`), so an id
/// pasted into the wrong field is refused instead of silently matching nothing.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate(at: DateTime<Utc>) -> Self {
                $name(format!("{}{}", $prefix, monotonic(at)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.strip_prefix($prefix) {
                    Some(rest) if Ulid::from_string(rest).is_ok() => Ok($name(s.to_owned())),
                    _ => Err(InvalidId(stringify!($name))),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0}")]
pub struct InvalidId(&'static str);

prefixed_id!(
    /// A tenant: one customer account; every read and write is scoped to one.
    TenantId,
    "ten_"
);
prefixed_id!(
    /// One batch request's recipients share it.
    BatchId,
    "bat_"
);
prefixed_id!(
    /// A contact of a tenant's address book.
    ContactId,
    "con_"
);

prefixed_id!(
    /// A message template of a tenant.
    TemplateId,
    "tpl_"
);
prefixed_id!(
    /// A marketing or notice campaign of a tenant: lists × template × sender × time × pace.
    CampaignId,
    "cmp_"
);

impl CampaignId {
    /// The batch id every message of the campaign carries: the same ULID under the batch
    /// prefix, so a message's batch leads back to its campaign without a lookup, and the
    /// reports' `batch` grouping shows each campaign as one group.
    pub fn batch(&self) -> BatchId {
        BatchId(format!(
            "{}{}",
            BatchId::PREFIX,
            &self.0[CampaignId::PREFIX.len()..]
        ))
    }

    /// The campaign a batch id stands for, if it is one's (any batch id maps to one; only
    /// a campaign's batch finds a campaign in the store).
    pub fn of_batch(batch: &BatchId) -> CampaignId {
        CampaignId(format!(
            "{}{}",
            CampaignId::PREFIX,
            &batch.0[BatchId::PREFIX.len()..]
        ))
    }
}
prefixed_id!(
    /// A person who signs in to the web console (see [`super::user`]).
    UserId,
    "usr_"
);
prefixed_id!(
    /// An API key's public identity: shown in listings and audit records, and part of the
    /// key itself.
    KeyId,
    "key_"
);

/// A client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the idempotency key is empty")]
    Empty,
    #[error("the idempotency key is longer than 255 characters")]
    TooLong,
    #[error("the idempotency key may hold only printable ASCII characters")]
    InvalidCharacter,
}

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, IdempotencyKeyError> {
        if s.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if s.len() > IDEMPOTENCY_KEY_MAX_LEN {
            return Err(IdempotencyKeyError::TooLong);
        }
        if !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(IdempotencyKeyError::InvalidCharacter);
        }
        Ok(IdempotencyKey(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = IdempotencyKeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        IdempotencyKey::parse(&value)
    }
}

impl From<IdempotencyKey> for String {
    fn from(value: IdempotencyKey) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn message_ids_sort_by_time_and_round_trip() {
        let earlier = MessageId::generate(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let later = MessageId::generate(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap());
        assert!(earlier < later);
        let text = later.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(text.parse::<MessageId>().unwrap(), later);
        assert!("not-an-id".parse::<MessageId>().is_err());
        assert!("".parse::<MessageId>().is_err());
    }

    #[test]
    fn prefixed_ids_check_their_prefix() {
        let t = TenantId::generate(Utc::now());
        assert!(t.as_str().starts_with("ten_"));
        assert_eq!(t.as_str().parse::<TenantId>().unwrap(), t);
        let b = BatchId::generate(Utc::now());
        assert!(b.as_str().parse::<TenantId>().is_err());
        assert!("ten_nope".parse::<TenantId>().is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded_printable_ascii() {
        assert!(IdempotencyKey::parse("order-42/attempt 1").is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(IdempotencyKeyError::TooLong)
        );
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::parse("ключ"),
            Err(IdempotencyKeyError::InvalidCharacter)
        );
        assert_eq!(
            IdempotencyKey::parse("a\nb"),
            Err(IdempotencyKeyError::InvalidCharacter)
        );
    }
}
