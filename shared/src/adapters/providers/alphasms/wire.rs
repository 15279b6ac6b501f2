use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

/// A request: the API key and the commands.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    pub auth: &'a str,
    pub data: Vec<RequestItem>,
}

/// One command of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RequestItem {
    Sms(SmsItem),
    Status { id: ClientId },
    Balance,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmsItem {
    pub id: ClientId,
    /// The E.164 digits, as a JSON number.
    pub phone: u64,
    pub sms_signature: String,
    pub sms_message: String,
    /// Seconds the operator keeps trying, within
    /// [`MIN_SMS_LIFETIME`](super::MIN_SMS_LIFETIME)..=[`MAX_SMS_LIFETIME`](super::MAX_SMS_LIFETIME).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_lifetime: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_link: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe_link: Option<bool>,
    /// Where delivery reports of this message go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
}

/// The client's id of a message, documented as a number. Only constructed within
/// 1..=2^53-1: the documentation gives no range, and that is the range in which every
/// JSON reader keeps an integer exact (RFC 8259 §6), whatever the gateway parses it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientId(u64);

impl ClientId {
    pub const MAX: u64 = (1 << 53) - 1;

    pub fn new(n: u64) -> Option<Self> {
        (1..=Self::MAX).contains(&n).then_some(ClientId(n))
    }

    /// The client id of one of our messages: the low 53 bits of the ULID's random part.
    ///
    /// Derived, not stored, so that everything keyed by our id (the hook URL, status
    /// queries, the lookup of a message whose submit answer was lost) finds the number
    /// again without a store read or an extra write per message.
    ///
    /// Collisions: ids made by one process in one millisecond differ by increments of
    /// the random part, so they get consecutive numbers and never collide. Other ids
    /// carry independent random bits, so among N ids the expected number of colliding
    /// pairs is N²/2^54: 5·10⁻⁵ for a million messages, 0.006 for ten million. Only ids
    /// AlphaSMS still holds matter (status queries run within a message's validity, at
    /// most three days); AlphaSMS does not say how long it remembers a client id for
    /// `ERR_DUPLICATE`. Should one account pass ~10⁸ messages *and* AlphaSMS remember ids
    /// that long, this must become a stored mapping.
    pub fn of(id: &super::MessageId) -> Self {
        let low = u64::try_from(id.random_bits() & u128::from(Self::MAX)).unwrap_or(0);
        // 0 is avoided: a PHP gateway reads 0 as "no id".
        ClientId(low % Self::MAX + 1)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A whole answer. `data` is absent when the whole request was refused.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Answer<T> {
    pub success: Flag,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<Vec<Item<T>>>,
}

/// The answer to one command.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Item<T> {
    pub success: Flag,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<T>,
}

/// A send command's answer (a failed one carries only `id`).
#[derive(Debug, Default, Deserialize)]
pub struct SendData {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub msg_id: Option<String>,
    /// Undocumented (`1` in the example).
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub parts: Option<String>,
}

/// A status command's answer; also what a delivery report to the hook is taken to be.
#[derive(Debug, Default, Deserialize)]
pub struct StatusData {
    #[serde(default)]
    pub id: Option<String>,
    /// `sms`, `viber`, …
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// A status name of the reference, or its number.
    #[serde(default)]
    pub status: Option<String>,
    /// Not in the status answer; read if a report carries it.
    #[serde(default)]
    pub msg_id: Option<String>,
}

/// A balance command's answer.
#[derive(Debug, Default, Deserialize)]
pub struct BalanceData {
    /// Hryvnias with up to four decimals, as the literal text of the JSON number.
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
}

/// A delivery report as it may arrive at the hook: one item or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum HookBody {
    One(StatusData),
    Many(Vec<StatusData>),
}

/// The command id an answer item echoes.
pub trait Echo {
    fn echo_id(&self) -> Option<&str>;
}

impl Echo for SendData {
    fn echo_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl Echo for StatusData {
    fn echo_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl Echo for BalanceData {
    fn echo_id(&self) -> Option<&str> {
        None
    }
}

/// `success`: documented as an integer, shown as a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(Flag(b)),
            Raw::Text(t) => match t.trim() {
                "1" | "true" => Ok(Flag(true)),
                "0" | "false" => Ok(Flag(false)),
                other => Err(D::Error::custom(format!("not a success flag: {other:?}"))),
            },
        }
    }
}

/// Parses an answer, every JSON number read as its literal text.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&lossless(body))
}

/// Rewrites every JSON number outside strings as a string holding its literal text
/// (`31.1683` → `"31.1683"`), so that typed fields read it exactly.
pub fn lossless(body: &[u8]) -> Vec<u8> {
    super::super::kit::quote_numbers(body, super::super::kit::Quote::All).into_owned()
}
