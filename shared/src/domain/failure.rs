//! Why a provider call or a message failed, as one closed vocabulary.
//!
//! Every code a [`ProviderError`](crate::ports::ProviderError) or a failed message can carry
//! is one variant here, so adapters cannot invent a near-synonym and the API's clients see a
//! stable, finite list. The wire and stored form is the snake_case string (`as_str`, serde,
//! `Display`), so messages stored before this enum read back unchanged.
//!
//! Merged synonyms (the adapters had drifted): `empty_text` is [`FailureCode::InvalidText`]
//! (Holub never sends an empty text, so a provider saying "no text" refused the text we
//! sent, as "invalid" does); `invalid_message` (Kyivstar's 422, which refuses the number, the
//! sender or the text without saying which) is [`FailureCode::ProviderRejected`]; `recipient_stoplisted` is
//! [`FailureCode::RecipientBlocked`] (both say the number is on the provider's stop list);
//! `provider_unknown_code` is [`FailureCode::ProviderError`] (an error answer Holub has no
//! better word for). [`FailureCode::from_str`] still reads the old spellings, so rows stored
//! with them parse.

use std::fmt;
use std::str::FromStr;

macro_rules! failure_codes {
    ($($(#[$doc:meta])* $variant:ident = $text:literal,)+) => {
        /// A stable failure code; see the module documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum FailureCode {
            $($(#[$doc])* $variant,)+
        }

        impl FailureCode {
            /// Every code, in declaration order.
            pub const ALL: &[FailureCode] = &[$(FailureCode::$variant,)+];

            /// The code as stored and shown (`"invalid_number"`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(FailureCode::$variant => $text,)+
                }
            }
        }
    };
}

failure_codes! {
    // The transport and HTTP layer (see `adapters::providers::http`).
    /// No connection could be made: the provider certainly did not take the request.
    ProviderUnreachable = "provider_unreachable",
    /// The answer did not come in time.
    ProviderTimeout = "provider_timeout",
    /// An answer came that is not what the provider documents.
    ProviderBadAnswer = "provider_bad_answer",
    /// The provider said it cannot serve now (5xx and the like).
    ProviderUnavailable = "provider_unavailable",
    /// The provider asked us to slow down.
    ProviderRateLimited = "provider_rate_limited",
    /// The credentials were refused (an account error; the adapter re-reads its secret).
    ProviderUnauthorized = "provider_unauthorized",
    /// The provider found the request malformed.
    ProviderBadRequest = "provider_bad_request",
    // The account.
    /// No money left on the account.
    InsufficientBalance = "insufficient_balance",
    /// The account is blocked or inactive.
    AccountBlocked = "account_blocked",
    /// A limit of the account (daily or monthly volume) is used up.
    ProviderQuotaExceeded = "provider_quota_exceeded",
    // The message, refused.
    /// The recipient's number is not one the provider can send to.
    InvalidNumber = "invalid_number",
    /// The number is on the provider's stop list (was also `recipient_stoplisted`).
    RecipientBlocked = "recipient_blocked",
    /// The provider does not send to the number's country.
    CountryNotAllowed = "country_not_allowed",
    /// The same recipient twice in one request.
    DuplicateRecipient = "duplicate_recipient",
    /// More recipients than one request may carry.
    TooManyRecipients = "too_many_recipients",
    /// The provider has no route to the number's network.
    NoRoute = "no_route",
    /// The sender is malformed or missing.
    InvalidSender = "invalid_sender",
    /// The alphanumeric sender is not registered for the account.
    SenderNotRegistered = "sender_not_registered",
    /// The sender is registered but not active yet.
    SenderNotActive = "sender_not_active",
    /// The sender may not be used for this kind of message.
    SenderNotAllowed = "sender_not_allowed",
    /// The text was refused as invalid or missing (was also `empty_text`).
    InvalidText = "invalid_text",
    /// The text is longer than the provider takes.
    TextTooLong = "text_too_long",
    /// The text's content is not allowed.
    TextNotAllowed = "text_not_allowed",
    /// A transactional text did not match its registered template.
    TemplateNotMatched = "template_not_matched",
    /// The provider refused the message without a more precise reason.
    ProviderRejected = "provider_rejected",
    // Ids.
    /// The provider's message id is malformed.
    InvalidMessageId = "invalid_message_id",
    /// Our client-side id was refused.
    InvalidClientId = "invalid_client_id",
    /// Our client-side id was seen before: the message may already be taken.
    DuplicateClientId = "duplicate_client_id",
    /// The provider does not know the message.
    MessageNotFound = "message_not_found",
    // The provider's own failures.
    /// The provider took the request but could not pass it on.
    ProviderSendFailed = "provider_send_failed",
    /// An error answer Holub has no better word for (was also `provider_unknown_code`).
    ProviderError = "provider_error",
    /// The provider failed while running the request, to an unknown extent.
    ProviderFatalError = "provider_fatal_error",
    // What a provider cannot do.
    /// No query by our client-side id.
    LookupUnsupported = "lookup_unsupported",
    /// No status queries (it pushes receipts).
    StatusUnsupported = "status_unsupported",
    /// No balance query.
    BalanceUnsupported = "balance_unsupported",
    /// The balance is in a currency Holub does not keep.
    BalanceCurrencyUnsupported = "balance_currency_unsupported",
    // Holub's own verdicts on a message.
    /// No route of the table could take the message.
    NoRouteAvailable = "no_route_available",
    /// A submission's outcome was lost and could not be resolved.
    SubmitOutcomeUnknown = "submit_outcome_unknown",
    /// The message's validity ran out before it could be sent.
    ValidityExpired = "validity_expired",
    /// The tenant's data was erased before the message was sent.
    TenantErased = "tenant_erased",
}

/// Old spellings of merged codes, still read from stored rows.
const ALIASES: &[(&str, FailureCode)] = &[
    ("empty_text", FailureCode::InvalidText),
    ("invalid_message", FailureCode::ProviderRejected),
    ("recipient_stoplisted", FailureCode::RecipientBlocked),
    ("provider_unknown_code", FailureCode::ProviderError),
];

/// A string that is no failure code Holub knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown failure code {0:?}")]
pub struct UnknownFailureCode(pub String);

impl FromStr for FailureCode {
    type Err = UnknownFailureCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureCode::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .or_else(|| ALIASES.iter().find(|(a, _)| *a == s).map(|&(_, c)| c))
            .ok_or_else(|| UnknownFailureCode(s.to_owned()))
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for FailureCode {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for FailureCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FailureCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<FailureCode> for &str {
    fn eq(&self, other: &FailureCode) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<FailureCode> for str {
    fn eq(&self, other: &FailureCode) -> bool {
        self == other.as_str()
    }
}

impl serde::Serialize for FailureCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for FailureCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string_and_serde() {
        let mut seen = std::collections::HashSet::new();
        for &code in FailureCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "{s} twice");
            assert!(
                s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{s} is not snake_case"
            );
            assert_eq!(s.parse::<FailureCode>(), Ok(code));
            assert_eq!(code.to_string(), s);
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<FailureCode>(&json).unwrap(), code);
            assert_eq!(code, s);
            assert_eq!(s, code);
        }
    }

    #[test]
    fn old_synonyms_read_as_the_merged_code() {
        for (old, code) in ALIASES {
            assert_eq!(old.parse::<FailureCode>(), Ok(*code));
            assert!(FailureCode::ALL.iter().all(|c| c.as_str() != *old));
        }
        assert!("no_such_code".parse::<FailureCode>().is_err());
    }
}
