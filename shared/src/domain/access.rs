//! Who may do what: API keys with scopes, the senders a tenant may send from, and the audit
//! record of every administrative change. Values here can only hold valid data; storage and
//! checks live in the services.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{KeyId, TenantId};
use super::phone::Operator;
use super::sender::SenderId;

/// What a key may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    #[serde(rename = "messages:send")]
    MessagesSend,
    #[serde(rename = "messages:read")]
    MessagesRead,
    #[serde(rename = "contacts:write")]
    ContactsWrite,
    #[serde(rename = "analytics:read")]
    AnalyticsRead,
    /// Keys, senders, settings and the audit log; implies every other scope.
    #[serde(rename = "admin")]
    Admin,
    /// Reading contacts, lists and consent ledgers (`contacts:write` does not imply it).
    #[serde(rename = "contacts:read")]
    ContactsRead,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::MessagesSend,
        Scope::MessagesRead,
        Scope::ContactsRead,
        Scope::ContactsWrite,
        Scope::AnalyticsRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MessagesSend => "messages:send",
            Scope::MessagesRead => "messages:read",
            Scope::ContactsWrite => "contacts:write",
            Scope::ContactsRead => "contacts:read",
            Scope::AnalyticsRead => "analytics:read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ScopesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| ScopesError::Unknown(s.chars().take(40).collect()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopesError {
    #[error("a key needs at least one scope")]
    Empty,
    #[error(
        "unknown scope {0:?}: scopes are messages:send, messages:read, contacts:read, contacts:write, analytics:read, admin"
    )]
    Unknown(String),
}

/// A non-empty set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope: a tenant's first key, and keys made before scopes existed.
    pub const ADMIN: Scopes = Scopes(1 << (Scope::Admin as u8));

    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, ScopesError> {
        let bits = scopes.into_iter().fold(0, |bits, s| bits | s.bit());
        if bits == 0 {
            return Err(ScopesError::Empty);
        }
        Ok(Scopes(bits))
    }

    /// Parses a comma- or space-separated list (`messages:send,messages:read`).
    pub fn parse(list: &str) -> Result<Self, ScopesError> {
        let scopes = list
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Scope>, _>>()?;
        Scopes::new(scopes)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Whether a key with these scopes may do what `required` names.
    pub fn allow(self, required: Scope) -> bool {
        self.contains(Scope::Admin) || self.contains(required)
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// The stored form: `messages:send,messages:read`.
    pub fn to_list(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(",")
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<Scope>::deserialize(d)?;
        Scopes::new(list).map_err(serde::de::Error::custom)
    }
}

/// A key's name, for people: 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key name is 1 to 100 characters, without control characters")]
pub struct InvalidKeyName;

impl KeyName {
    pub fn parse(s: &str) -> Result<Self, InvalidKeyName> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
            return Err(InvalidKeyName);
        }
        Ok(KeyName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyName {
    type Error = InvalidKeyName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        KeyName::parse(&value)
    }
}

impl From<KeyName> for String {
    fn from(value: KeyName) -> Self {
        value.0
    }
}

/// The form of Holub's API keys:
/// `holub_sk_<26-character key id>_<64 hex random>_<8 hex CRC-32>`.
///
/// The fixed prefix lets secret scanners find leaked keys; the key id makes the key's stored
/// record directly addressable (and shows which key leaked); the checksum lets a scanner, and
/// Holub itself, tell a typo or a made-up string from a key without asking the store.
pub mod key_format {
    use super::*;

    pub const PREFIX: &str = "holub_sk_";
    /// Keys made before keys had ids: `hk_` and 64 hex digits. Still accepted.
    pub const LEGACY_PREFIX: &str = "hk_";
    /// The longest string looked at as a key.
    pub const MAX_LEN: usize = 128;

    /// What a presented key says about itself, before the store is asked.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Presented {
        /// A current key, with its id.
        Current(KeyId),
        /// A key from before key ids.
        Legacy,
    }

    /// A new key string for `id` from 32 random bytes.
    pub fn compose(id: &KeyId, random: &[u8; 32]) -> String {
        let body = format!(
            "{PREFIX}{}_{}",
            &id.as_str()[KeyId::PREFIX.len()..],
            hex::encode(random)
        );
        let check = crc32(body.as_bytes());
        format!("{body}_{check:08x}")
    }

    /// The shape of a presented key, or `None` if it cannot be one of Holub's keys.
    pub fn inspect(key: &str) -> Option<Presented> {
        if key.len() > MAX_LEN {
            return None;
        }
        if let Some(hex_part) = key.strip_prefix(LEGACY_PREFIX) {
            let ok = hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit());
            return ok.then_some(Presented::Legacy);
        }
        let rest = key.strip_prefix(PREFIX)?;
        let (body, check) = key.rsplit_once('_')?;
        let mut parts = rest.split('_');
        let (id, random) = (parts.next()?, parts.next()?);
        let ok = random.len() == 64
            && random.bytes().all(|b| b.is_ascii_hexdigit())
            && check.len() == 8
            && u32::from_str_radix(check, 16).ok() == Some(crc32(body.as_bytes()));
        if !ok || parts.count() != 1 {
            return None;
        }
        let id: KeyId = format!("{}{id}", KeyId::PREFIX).parse().ok()?;
        Some(Presented::Current(id))
    }

    /// What listings show of a key: its prefix and id, never the secret part.
    pub fn display_prefix(id: &KeyId) -> String {
        format!("{PREFIX}{}", &id.as_str()[KeyId::PREFIX.len()..])
    }

    /// CRC-32 (IEEE 802.3, the checksum of zip and PNG).
    pub fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
            }
        }
        !crc
    }
}

/// An API key as stored: the secret only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// `None` for keys made before key ids (they hold every scope and are revoked by
    /// presenting them to `holub tenant revoke-key`).
    pub id: Option<KeyId>,
    pub tenant_id: TenantId,
    pub hash: String,
    pub name: Option<KeyName>,
    pub scopes: Scopes,
    pub created_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    /// A key as versions before key ids stored it: found by its hash, with every scope.
    pub fn legacy(tenant_id: TenantId, hash: String) -> Self {
        ApiKeyRecord {
            id: None,
            tenant_id,
            hash,
            name: None,
            scopes: Scopes::ADMIN,
            created_at: None,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        }
    }

    /// Whether the key authenticates at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|end| end > now)
    }
}

/// Where an alpha-name is registered. Ukraine's three large networks register sender names
/// each on their own; the small ones (3Mob, PEOPLEnet, Intertelecom) and networks abroad are
/// reached through aggregators, which register them once for all of them (`other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Kyivstar,
    Vodafone,
    Lifecell,
    Other,
}

impl Network {
    pub const ALL: [Network; 4] = [
        Network::Kyivstar,
        Network::Vodafone,
        Network::Lifecell,
        Network::Other,
    ];

    pub fn of(operator: Operator) -> Network {
        match operator {
            Operator::Kyivstar => Network::Kyivstar,
            Operator::Vodafone => Network::Vodafone,
            Operator::Lifecell => Network::Lifecell,
            _ => Network::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Kyivstar => "kyivstar",
            Network::Vodafone => "vodafone",
            Network::Lifecell => "lifecell",
            Network::Other => "other",
        }
    }
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Network::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown network {s:?}: kyivstar, vodafone, lifecell or other"))
    }
}

/// Where a sender's registration with one network stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Asked for; not yet confirmed by the network.
    Pending,
    /// Confirmed: messages from this sender go out on this network.
    Active,
    /// Refused by the network.
    Rejected,
}

impl Registration {
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Pending => "pending",
            Registration::Active => "active",
            Registration::Rejected => "rejected",
        }
    }
}

impl FromStr for Registration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Registration::Pending),
            "active" => Ok(Registration::Active),
            "rejected" => Ok(Registration::Rejected),
            _ => Err(format!(
                "unknown registration status {s:?}: pending, active or rejected"
            )),
        }
    }
}

/// A sender registered to a tenant, with its status on each network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderRecord {
    pub tenant_id: TenantId,
    pub sender: SenderId,
    pub networks: BTreeMap<Network, Registration>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SenderRecord {
    /// A newly asked-for sender: pending everywhere.
    pub fn requested(tenant_id: TenantId, sender: SenderId, at: DateTime<Utc>) -> Self {
        SenderRecord {
            tenant_id,
            sender,
            networks: Network::ALL
                .into_iter()
                .map(|n| (n, Registration::Pending))
                .collect(),
            created_at: at,
            updated_at: at,
        }
    }

    pub fn status(&self, network: Network) -> Registration {
        self.networks
            .get(&network)
            .copied()
            .unwrap_or(Registration::Pending)
    }

    /// The stored form of the statuses: `kyivstar=active,vodafone=pending,…`.
    pub fn networks_list(&self) -> String {
        Network::ALL
            .into_iter()
            .map(|n| format!("{}={}", n.as_str(), self.status(n).as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn parse_networks(list: &str) -> Result<BTreeMap<Network, Registration>, String> {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (n, r) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("bad network status {pair:?}"))?;
                Ok((n.parse()?, r.parse()?))
            })
            .collect()
    }
}

/// Who made an administrative change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An API request signed by this key (`None`: a key from before key ids).
    ApiKey {
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
        key_id: Option<KeyId>,
    },
    /// The operator of this Holub, on its command line (the OS user, where known).
    Operator { user: Option<String> },
    /// A user of the tenant's web console.
    Console { user_id: String },
}

/// What an administrative change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditAction {
    #[serde(rename = "tenant.create")]
    TenantCreate,
    #[serde(rename = "key.create")]
    KeyCreate,
    #[serde(rename = "key.revoke")]
    KeyRevoke,
    #[serde(rename = "key.rotate")]
    KeyRotate,
    #[serde(rename = "sender.request")]
    SenderRequest,
    #[serde(rename = "sender.status")]
    SenderStatus,
    #[serde(rename = "sender.remove")]
    SenderRemove,
    #[serde(rename = "settings.update")]
    SettingsUpdate,
    #[serde(rename = "tenant.erase")]
    TenantErase,
    #[serde(rename = "webhook_secret.rotate")]
    WebhookSecretRotate,
    #[serde(rename = "user.create")]
    UserCreate,
    #[serde(rename = "user.invite")]
    UserInvite,
    #[serde(rename = "user.role")]
    UserRole,
    #[serde(rename = "user.remove")]
    UserRemove,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::TenantCreate => "tenant.create",
            AuditAction::KeyCreate => "key.create",
            AuditAction::KeyRevoke => "key.revoke",
            AuditAction::KeyRotate => "key.rotate",
            AuditAction::SenderRequest => "sender.request",
            AuditAction::SenderStatus => "sender.status",
            AuditAction::SenderRemove => "sender.remove",
            AuditAction::SettingsUpdate => "settings.update",
            AuditAction::TenantErase => "tenant.erase",
            AuditAction::WebhookSecretRotate => "webhook_secret.rotate",
            AuditAction::UserCreate => "user.create",
            AuditAction::UserInvite => "user.invite",
            AuditAction::UserRole => "user.role",
            AuditAction::UserRemove => "user.remove",
        }
    }
}

impl FromStr for AuditAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use AuditAction::*;
        [
            TenantCreate,
            KeyCreate,
            KeyRevoke,
            KeyRotate,
            SenderRequest,
            SenderStatus,
            SenderRemove,
            SettingsUpdate,
            TenantErase,
            WebhookSecretRotate,
            UserCreate,
            UserInvite,
            UserRole,
            UserRemove,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
        .ok_or_else(|| format!("unknown audit action {s:?}"))
    }
}

/// One administrative change: who, when, from where, to what, and the state before and after
/// (never a secret: keys appear as their records, without hashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A ULID: entries sort by time (and, within one process, by the order they were made).
    pub id: String,
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// The client's address, where the change came over the network.
    pub source: Option<String>,
    pub action: AuditAction,
    /// What was changed: a key id, a sender, `tenant`, `settings`.
    pub target: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Who asks, from where: what every administrative change is recorded with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub source: Option<String>,
}

impl Origin {
    /// The command line of this Holub.
    pub fn operator() -> Self {
        Origin {
            actor: Actor::Operator {
                user: std::env::var("USER").ok().filter(|u| !u.is_empty()),
            },
            source: None,
        }
    }

    pub fn entry(
        &self,
        tenant: &TenantId,
        at: DateTime<Utc>,
        action: AuditAction,
        target: impl Into<String>,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> AuditEntry {
        AuditEntry {
            // Monotonic within a process, so entries made in one millisecond keep their order.
            id: super::MessageId::generate(at).to_string(),
            tenant_id: tenant.clone(),
            at,
            actor: self.actor.clone(),
            source: self.source.clone(),
            action,
            target: target.into(),
            before,
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_format::{Presented, compose, crc32, inspect};
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_composed_key_inspects_to_its_id_and_a_changed_one_does_not() {
        let id = KeyId::generate(Utc::now());
        let key = compose(&id, &[7; 32]);
        assert!(key.starts_with("holub_sk_"));
        assert!(key.len() <= key_format::MAX_LEN);
        assert_eq!(inspect(&key), Some(Presented::Current(id)));
        let mut typo = key.clone().into_bytes();
        typo[40] = if typo[40] == b'a' { b'b' } else { b'a' };
        assert_eq!(inspect(std::str::from_utf8(&typo).unwrap()), None);
        assert_eq!(inspect(&format!("{key}x")), None);
        assert_eq!(
            inspect(&format!("hk_{}", "ab".repeat(32))),
            Some(Presented::Legacy)
        );
        assert_eq!(inspect("hk_short"), None);
        assert_eq!(inspect(""), None);
    }

    #[test]
    fn admin_allows_everything_and_others_only_themselves() {
        let send = Scopes::parse("messages:send").unwrap();
        assert!(send.allow(Scope::MessagesSend));
        assert!(!send.allow(Scope::MessagesRead));
        assert!(!send.allow(Scope::Admin));
        assert!(Scopes::ADMIN.allow(Scope::AnalyticsRead));
        assert_eq!(Scopes::parse(""), Err(ScopesError::Empty));
        assert!(Scopes::parse("messages:write").is_err());
        let both = Scopes::parse("messages:read, messages:send").unwrap();
        assert_eq!(both.to_list(), "messages:send,messages:read");
        assert_eq!(Scopes::parse(&both.to_list()), Ok(both));
    }

    #[test]
    fn network_statuses_round_trip() {
        let t = TenantId::generate(Utc::now());
        let mut s = SenderRecord::requested(t, SenderId::parse("MyShop").unwrap(), Utc::now());
        s.networks.insert(Network::Vodafone, Registration::Active);
        assert_eq!(
            SenderRecord::parse_networks(&s.networks_list()),
            Ok(s.networks)
        );
    }
}
