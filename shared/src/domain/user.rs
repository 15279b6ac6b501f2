//! The web console's people: a tenant's users, each signing in with an email address and a
//! password, with a role that says which of the API's scopes their pages may use.
//!
//! Sign-in is by email alone (the tenant follows from the user), so an address belongs to one
//! user of all of Holub. What a user stores beyond what the console shows (the password's
//! Argon2id hash, an invitation's token digest, when their sessions were last voided) is in
//! [`UserRecord`](crate::ports::users::UserRecord), which only the store and the service see.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::access::Scope;
use super::ids::TenantId;
pub use super::ids::UserId;

/// The longest address taken, in characters (RFC 5321's path limit less its brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("an email address is required")]
    Empty,
    #[error("an email address is at most {MAX_EMAIL_CHARS} characters")]
    TooLong,
    #[error("not an email address: one @ between a name and a domain with a dot, without spaces")]
    Malformed,
}

/// An email address as Holub keys users by it: trimmed and in lower case, so `Olena@Acme.UA`
/// and `olena@acme.ua` are one user. Checked only for its shape; whether mail reaches it is
/// for the invitation to find out.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(EmailError::Empty);
        }
        if email.chars().count() > MAX_EMAIL_CHARS {
            return Err(EmailError::TooLong);
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Malformed);
        }
        let mut parts = email.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::Malformed);
        };
        // `acme.ua`, not `acme`, `.acme.ua`, `acme..ua` or `acme.ua.`.
        let labels_ok = domain.contains('.') && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !labels_ok {
            return Err(EmailError::Malformed);
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex SHA-256 of the address: how the stores key what they keep per address (an
    /// email's guard, failed sign-ins), so no address, of a user or of a stranger who
    /// tried one, stands in a key.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Masked (`o***@acme.ua`): a `{:?}` that reaches a log names no one.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        write!(f, "Email({first}***@{domain})")
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, the account's users, keys and settings included.
    Owner,
    /// Sends messages and campaigns, keeps contacts, reads everything but the settings.
    Sender,
    /// Reads messages, contacts and reports.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Sender, Role::Viewer];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Sender => "sender",
            Role::Viewer => "viewer",
        }
    }

    /// Whether the role may do what an API key needs `scope` for.
    pub fn allows(self, scope: Scope) -> bool {
        match self {
            Role::Owner => true,
            Role::Sender => matches!(
                scope,
                Scope::MessagesSend
                    | Scope::MessagesRead
                    | Scope::ContactsRead
                    | Scope::ContactsWrite
                    | Scope::AnalyticsRead
            ),
            Role::Viewer => matches!(
                scope,
                Scope::MessagesRead | Scope::ContactsRead | Scope::AnalyticsRead
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A console user as the console shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleUser {
    pub id: UserId,
    pub tenant: TenantId,
    pub email: Email,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Invited, and has not chosen a password yet: cannot sign in.
    pub pending: bool,
}

/// A password's Argon2id hash as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`): the
/// parameters travel with it, so raising them later leaves old hashes verifiable.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// A PHC string as the hasher wrote it, or as the store kept it (verification parses it,
    /// and fails closed on one that does not parse).
    pub fn from_phc(phc: impl Into<String>) -> Self {
        PasswordHash(phc.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Redacted: a hash is open to guessing offline, so it stays out of logs.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// An invitation not yet accepted: the digest of its token (the token itself is shown once,
/// to whoever invites) and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lower_cased_and_shaped_like_addresses() {
        let email = Email::parse("  Olena.Koval+sms@Acme.COM.ua \n").unwrap();
        assert_eq!(email.as_str(), "olena.koval+sms@acme.com.ua");
        assert_eq!(email.to_string(), "olena.koval+sms@acme.com.ua");
        assert_eq!(
            Email::parse("ОЛЕНА@приклад.укр").unwrap().as_str(),
            "олена@приклад.укр"
        );
        for bad in [
            "olena",
            "olena@",
            "@acme.ua",
            "olena@acme",
            "olena@@acme.ua",
            "olena@acme@ua.com",
            "ole na@acme.ua",
            "olena@acme.ua\u{0}",
            "olena\t@acme.ua",
            "olena@.acme.ua",
            "olena@acme..ua",
            "olena@acme.ua.",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Malformed), "{bad:?}");
        }
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
        let longest = format!("{}@acme.ua", "o".repeat(MAX_EMAIL_CHARS - 8));
        assert!(Email::parse(&longest).is_ok());
        assert_eq!(
            Email::parse(&format!("o{longest}")),
            Err(EmailError::TooLong)
        );
    }

    #[test]
    fn emails_round_trip_through_serde_and_refuse_what_does_not_parse() {
        let email: Email = serde_json::from_str("\"Olena@Acme.ua\"").unwrap();
        assert_eq!(email.as_str(), "olena@acme.ua");
        assert_eq!(serde_json::to_string(&email).unwrap(), "\"olena@acme.ua\"");
        assert!(serde_json::from_str::<Email>("\"olena\"").is_err());
    }

    #[test]
    fn an_email_shows_masked_in_debug_and_is_keyed_by_digest() {
        let email = Email::parse("olena@acme.ua").unwrap();
        assert_eq!(format!("{email:?}"), "Email(o***@acme.ua)");
        assert_eq!(email.digest().len(), 64);
        assert_eq!(
            Email::parse("OLENA@acme.ua").unwrap().digest(),
            email.digest()
        );
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        assert_eq!(format!("{hash:?}"), "PasswordHash(..)");
    }

    #[test]
    fn roles_parse_print_and_allow_their_scopes() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_string(&role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
        assert_eq!(Role::parse("Owner"), None);
        assert_eq!(Role::parse("admin"), None);
        assert_eq!(
            serde_json::from_str::<Role>("\"viewer\"").unwrap(),
            Role::Viewer
        );

        let allowed = |role: Role| -> Vec<Scope> {
            Scope::ALL.into_iter().filter(|s| role.allows(*s)).collect()
        };
        assert_eq!(allowed(Role::Owner), Scope::ALL.to_vec());
        assert_eq!(
            allowed(Role::Sender),
            vec![
                Scope::MessagesSend,
                Scope::MessagesRead,
                Scope::ContactsRead,
                Scope::ContactsWrite,
                Scope::AnalyticsRead,
            ]
        );
        assert_eq!(
            allowed(Role::Viewer),
            vec![
                Scope::MessagesRead,
                Scope::ContactsRead,
                Scope::AnalyticsRead
            ]
        );
    }
}
