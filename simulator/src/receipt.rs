//! Reading the simulator's receipt POSTs on Holub's side.
//!
//! Holub's receipt endpoint for this route checks the bearer token with
//! [`verify_receipt_token`] and turns the body into [`ProviderReceipt`]s with
//! [`parse_receipts`]. Parsing is all-or-nothing: one bad receipt refuses the whole batch with
//! a stable error code, so the simulator sees a 4xx and a broken sender is noticed instead of
//! half its reports being silently lost.

use std::fmt;

use chrono::{DateTime, Utc};
use holub_shared::domain::status::ReceiptState;
use holub_shared::ports::ProviderReceipt;
use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Most receipts one POST may carry.
pub const MAX_RECEIPTS: usize = 10_000;

/// Why a receipt batch was refused. Indexes are 0-based positions in `receipts`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptParseError {
    #[error("the body is not a receipt batch: {0}")]
    Malformed(String),
    #[error("a batch holds at most {MAX_RECEIPTS} receipts, not {0}")]
    TooMany(usize),
    #[error("receipt {index} has an empty message_id")]
    EmptyMessageId { index: usize },
    #[error("receipt {index} is for part 0; parts count from 1")]
    PartZero { index: usize },
    #[error("receipt {index} has an unknown status {status:?}")]
    UnknownStatus { index: usize, status: String },
    #[error("receipt {index} has a done_at that is not RFC 3339")]
    BadTimestamp { index: usize },
}

impl ReceiptParseError {
    /// A stable code for the error answer and the logs.
    pub fn code(&self) -> &'static str {
        match self {
            ReceiptParseError::Malformed(_) => "receipts_malformed",
            ReceiptParseError::TooMany(_) => "receipts_too_many",
            ReceiptParseError::EmptyMessageId { .. } => "receipt_empty_message_id",
            ReceiptParseError::PartZero { .. } => "receipt_bad_part",
            ReceiptParseError::UnknownStatus { .. } => "receipt_unknown_status",
            ReceiptParseError::BadTimestamp { .. } => "receipt_bad_timestamp",
        }
    }
}

#[derive(Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    receipts: Bounded<RawReceipt<'a>>,
}

#[derive(Deserialize)]
struct RawReceipt<'a> {
    #[serde(borrow)]
    message_id: std::borrow::Cow<'a, str>,
    part: u16,
    #[serde(borrow)]
    status: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    done_at: std::borrow::Cow<'a, str>,
}

/// A list that stops storing after [`MAX_RECEIPTS`] items but keeps counting, so an
/// oversized batch costs no memory and is reported with its size.
enum Bounded<T> {
    Within(Vec<T>),
    TooMany(usize),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Bounded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
            type Value = Bounded<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of receipts")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let hint = seq.size_hint().unwrap_or(0).min(MAX_RECEIPTS);
                let mut items = Vec::with_capacity(hint);
                while items.len() < MAX_RECEIPTS {
                    match seq.next_element()? {
                        Some(item) => items.push(item),
                        None => return Ok(Bounded::Within(items)),
                    }
                }
                let mut count = items.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
                Ok(if count > MAX_RECEIPTS {
                    Bounded::TooMany(count)
                } else {
                    Bounded::Within(items)
                })
            }
        }

        deserializer.deserialize_seq(BoundedVisitor(std::marker::PhantomData))
    }
}

/// Parses a receipt POST body (`{"receipts":[…]}`) into Holub's receipts.
///
/// `DELIVRD` → delivered, `UNDELIV` → undelivered, `EXPIRED` → expired, `REJECTD` → rejected,
/// `ENROUTE` and `ACCEPTD` → en route. An empty list is valid.
pub fn parse_receipts(body: &[u8]) -> Result<Vec<ProviderReceipt>, ReceiptParseError> {
    let raw: RawBatch<'_> =
        serde_json::from_slice(body).map_err(|e| ReceiptParseError::Malformed(e.to_string()))?;
    let receipts = match raw.receipts {
        Bounded::Within(receipts) => receipts,
        Bounded::TooMany(count) => return Err(ReceiptParseError::TooMany(count)),
    };
    receipts
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            if r.message_id.trim().is_empty() {
                return Err(ReceiptParseError::EmptyMessageId { index });
            }
            if r.part == 0 {
                return Err(ReceiptParseError::PartZero { index });
            }
            let state =
                receipt_state(&r.status).ok_or_else(|| ReceiptParseError::UnknownStatus {
                    index,
                    status: r.status.chars().take(32).collect(),
                })?;
            let at = DateTime::parse_from_rfc3339(&r.done_at)
                .map_err(|_| ReceiptParseError::BadTimestamp { index })?
                .with_timezone(&Utc);
            Ok(ProviderReceipt {
                provider_message_id: r.message_id.into_owned(),
                part: r.part,
                state,
                at,
            })
        })
        .collect()
}

/// The simulator's receipt status codes in Holub's vocabulary.
pub fn receipt_state(status: &str) -> Option<ReceiptState> {
    Some(match status {
        "DELIVRD" => ReceiptState::Delivered,
        "UNDELIV" => ReceiptState::Undelivered,
        "EXPIRED" => ReceiptState::Expired,
        "REJECTD" => ReceiptState::Rejected,
        "ENROUTE" | "ACCEPTD" => ReceiptState::Enroute,
        _ => return None,
    })
}

/// Whether an `Authorization` header value is `Bearer <expected>`, compared in constant time
/// (for tokens of a given length), so the answer's timing does not reveal how much of a
/// guess was right. An empty expected token never matches.
pub fn verify_receipt_token(header_value: Option<&str>, expected: &str) -> bool {
    let Some(value) = header_value else {
        return false;
    };
    let Some(token) = bearer_token(value) else {
        return false;
    };
    !expected.is_empty() & constant_time_eq(token.as_bytes(), expected.as_bytes())
}

/// The token of a `Bearer <token>` header value (the scheme is case-insensitive).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Compares every byte whatever the first difference; only the lengths may leak.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = a.len() ^ b.len();
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(std::hint::black_box(x ^ y));
    }
    std::hint::black_box(diff) == 0
}

/// The holub-sim receipt webhook for Holub's receipt endpoint: the bearer token, then the
/// body.
pub struct SimulatorReceipts {
    token: holub_shared::ports::Secret,
}

impl SimulatorReceipts {
    pub fn new(token: holub_shared::ports::Secret) -> Self {
        SimulatorReceipts { token }
    }
}

impl holub_shared::ports::ReceiptWebhook for SimulatorReceipts {
    fn parse(
        &self,
        request: &holub_shared::ports::WebhookRequest<'_>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<ProviderReceipt>, holub_shared::ports::WebhookError> {
        use holub_shared::ports::WebhookError;
        let auth = request
            .headers
            .get(reqwest::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !verify_receipt_token(auth, self.token.expose()) {
            return Err(WebhookError::Unauthorized);
        }
        parse_receipts(request.body).map_err(|e| WebhookError::Malformed {
            code: e.code(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::Strategy;

    fn body(receipts: &str) -> Vec<u8> {
        format!(r#"{{"receipts":[{receipts}]}}"#).into_bytes()
    }

    fn one(message_id: &str, part: i64, status: &str, done_at: &str) -> Vec<u8> {
        body(&format!(
            r#"{{"message_id":"{message_id}","part":{part},"status":"{status}","done_at":"{done_at}"}}"#
        ))
    }

    const AT: &str = "2026-05-01T12:00:03.250Z";

    #[test]
    fn every_status_maps() -> Result<(), ReceiptParseError> {
        for (status, state) in [
            ("DELIVRD", ReceiptState::Delivered),
            ("UNDELIV", ReceiptState::Undelivered),
            ("EXPIRED", ReceiptState::Expired),
            ("REJECTD", ReceiptState::Rejected),
            ("ENROUTE", ReceiptState::Enroute),
            ("ACCEPTD", ReceiptState::Enroute),
        ] {
            let parsed = parse_receipts(&one("sim-1", 2, status, AT))?;
            let expected_at = Utc
                .with_ymd_and_hms(2026, 5, 1, 12, 0, 3)
                .single()
                .map(|t| t + chrono::Duration::milliseconds(250));
            assert_eq!(parsed.len(), 1);
            assert_eq!(parsed[0].provider_message_id, "sim-1");
            assert_eq!(parsed[0].part, 2);
            assert_eq!(parsed[0].state, state);
            assert_eq!(Some(parsed[0].at), expected_at);
        }
        Ok(())
    }

    #[test]
    fn offsets_are_converted_to_utc_and_empty_batches_are_fine() -> Result<(), ReceiptParseError> {
        let parsed = parse_receipts(&one("sim-1", 1, "DELIVRD", "2026-05-01T15:00:00+03:00"))?;
        assert_eq!(
            Some(parsed[0].at),
            Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).single()
        );
        assert_eq!(parse_receipts(br#"{"receipts":[]}"#)?, Vec::new());
        Ok(())
    }

    #[test]
    fn bad_receipts_are_refused_with_stable_codes() {
        let code = |b: &[u8]| parse_receipts(b).err().map(|e| e.code());
        assert_eq!(
            code(&one("sim-1", 1, "DONE", AT)),
            Some("receipt_unknown_status")
        );
        assert_eq!(
            code(&one("sim-1", 1, "delivrd", AT)),
            Some("receipt_unknown_status")
        );
        assert_eq!(
            code(&one("sim-1", 1, "DELIVRD", "yesterday")),
            Some("receipt_bad_timestamp")
        );
        assert_eq!(
            code(&one("sim-1", 1, "DELIVRD", "2026-05-01 12:00:00")),
            Some("receipt_bad_timestamp")
        );
        assert_eq!(
            code(&one("sim-1", 0, "DELIVRD", AT)),
            Some("receipt_bad_part")
        );
        assert_eq!(
            code(&one("", 1, "DELIVRD", AT)),
            Some("receipt_empty_message_id")
        );
        assert_eq!(
            code(&one("  ", 1, "DELIVRD", AT)),
            Some("receipt_empty_message_id")
        );
        assert_eq!(
            code(&one("sim-1", 70_000, "DELIVRD", AT)),
            Some("receipts_malformed")
        );
        assert_eq!(
            code(&one("sim-1", -1, "DELIVRD", AT)),
            Some("receipts_malformed")
        );
        assert_eq!(code(b"not json"), Some("receipts_malformed"));
        assert_eq!(code(b"{}"), Some("receipts_malformed"));
        assert_eq!(code(br#"{"receipts":{}}"#), Some("receipts_malformed"));
        assert_eq!(
            code(br#"{"receipts":[{"message_id":"sim-1","part":1,"status":"DELIVRD"}]}"#),
            Some("receipts_malformed")
        );
        // The error names the receipt but does not echo long garbage.
        let long = "X".repeat(1000);
        let error = parse_receipts(&one("sim-1", 1, &long, AT)).err();
        assert!(matches!(
            error,
            Some(ReceiptParseError::UnknownStatus { index: 0, ref status }) if status.len() == 32
        ));
    }

    #[test]
    fn one_bad_receipt_refuses_the_whole_batch() {
        let good = r#"{"message_id":"sim-1","part":1,"status":"DELIVRD","done_at":"2026-05-01T12:00:00Z"}"#;
        let bad =
            r#"{"message_id":"sim-2","part":1,"status":"LOST","done_at":"2026-05-01T12:00:00Z"}"#;
        assert_eq!(
            parse_receipts(&body(&format!("{good},{bad}"))),
            Err(ReceiptParseError::UnknownStatus {
                index: 1,
                status: "LOST".into()
            })
        );
    }

    #[test]
    fn batches_over_ten_thousand_are_refused() -> Result<(), ReceiptParseError> {
        let item = r#"{"message_id":"sim-1","part":1,"status":"DELIVRD","done_at":"2026-05-01T12:00:00Z"}"#;
        let list = |n: usize| vec![item; n].join(",");
        assert_eq!(
            parse_receipts(&body(&list(MAX_RECEIPTS)))?.len(),
            MAX_RECEIPTS
        );
        let error = parse_receipts(&body(&list(MAX_RECEIPTS + 1))).err();
        assert_eq!(error, Some(ReceiptParseError::TooMany(MAX_RECEIPTS + 1)));
        assert_eq!(error.map(|e| e.code()), Some("receipts_too_many"));
        Ok(())
    }

    #[test]
    fn escaped_strings_parse() -> Result<(), ReceiptParseError> {
        let parsed = parse_receipts(
            br#"{"receipts":[{"message_id":"sim-\u0031","part":1,"status":"DELIVRD","done_at":"2026-05-01T12:00:00Z","extra":[1,2]}]}"#,
        )?;
        assert_eq!(parsed[0].provider_message_id, "sim-1");
        Ok(())
    }

    #[test]
    fn tokens_are_checked() {
        assert!(verify_receipt_token(Some("Bearer s3cret"), "s3cret"));
        assert!(verify_receipt_token(Some("bearer s3cret"), "s3cret"));
        assert!(verify_receipt_token(Some("  Bearer   s3cret "), "s3cret"));
        assert!(!verify_receipt_token(None, "s3cret"));
        assert!(!verify_receipt_token(Some("s3cret"), "s3cret"));
        assert!(!verify_receipt_token(Some("Basic s3cret"), "s3cret"));
        assert!(!verify_receipt_token(Some("Bearer s3cre"), "s3cret"));
        assert!(!verify_receipt_token(Some("Bearer s3cret2"), "s3cret"));
        assert!(!verify_receipt_token(Some("Bearer S3CRET"), "s3cret"));
        assert!(!verify_receipt_token(Some("Bearer "), ""));
        assert!(!verify_receipt_token(Some("Bearer"), ""));
    }

    #[test]
    fn constant_time_eq_agrees_with_eq() {
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("abc", "abc"),
            ("abc", "abd"),
            ("ab", "abc"),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} {b:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        /// Receipt bodies are outside input: receipts or a stable error, never a panic.
        #[test]
        fn any_body_is_receipts_or_a_stable_error(
            body in proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                ("[ -~]{0,12}", -3i64..70_000, "[A-Z]{0,8}", "[ -~]{0,30}").prop_map(
                    |(id, part, status, at)| format!(
                        r#"{{"receipts":[{{"message_id":"{id}","part":{part},"status":"{status}","done_at":"{at}"}}]}}"#
                    ).into_bytes()
                ),
            ]
        ) {
            match parse_receipts(&body) {
                Ok(receipts) => proptest::prop_assert!(receipts.iter().all(|r| r.part >= 1)),
                Err(e) => proptest::prop_assert!(e.code().starts_with("receipt")),
            }
        }
    }
}
