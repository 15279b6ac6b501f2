//! TurboSMS's JSON bodies. Public so the simulator's tests can check that its answers parse
//! with them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::super::kit::{self, Quote};
use crate::domain::Kopiyky;

/// The body of `message/send.json` (SMS only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendRequest {
    pub recipients: Vec<String>,
    pub sms: SmsPart,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsPart {
    pub sender: String,
    pub text: String,
}

/// The body of `message/status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    pub messages: Vec<String>,
}

/// An empty JSON object, the body of `user/balance.json`.
#[derive(Debug, Serialize)]
pub struct NoParams {}

/// The first two fields of every answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Head {
    pub response_code: i64,
    pub response_status: String,
}

/// Every answer: the code, its name, and the method's result (`null` on errors).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope<T> {
    pub response_code: i64,
    pub response_status: String,
    #[serde(default = "none")]
    pub response_result: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

/// One recipient's outcome in a send answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendResult {
    #[serde(default)]
    pub phone: Option<String>,
    pub response_code: i64,
    #[serde(default)]
    pub message_id: Option<String>,
    pub response_status: String,
}

/// One message's state in a status answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusResult {
    pub message_id: String,
    pub response_code: i64,
    pub response_status: String,
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub sent: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// `sms` or `viber`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub rejected_status: Option<String>,
}

/// The result of `user/balance.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BalanceResult {
    pub balance: Amount,
}

/// An amount of hryvnias read exactly: from a string, or an integer. Decimal number
/// literals reach it as strings through [`quote_decimals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Kopiyky);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of hryvnias")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                Kopiyky::parse_hryvnias(v).map(Amount).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                v.checked_mul(100)
                    .map(|k| Amount(Kopiyky(k)))
                    .ok_or_else(|| E::custom("amount out of range"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom("amount out of range"))
                    .and_then(|v| self.visit_i64(v))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Amount, E> {
                Err(E::custom("a decimal amount must be read from its literal"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Rewrites every JSON number literal with a fraction or exponent as a string (`12.30` →
/// `"12.30"`), leaving strings and integers alone, so amounts can be parsed without a float.
pub fn quote_decimals(body: &[u8]) -> Cow<'_, [u8]> {
    kit::quote_numbers(body, Quote::Decimals)
}
