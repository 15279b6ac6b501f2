//! Receipt webhooks are outside input from anyone who can reach the endpoint: whatever the
//! body and query, the parser answers receipts or a stable error, and never panics.

use chrono::Utc;
use proptest::prelude::*;
use reqwest::header::HeaderMap;

use super::AlphaSmsReceipts;
use crate::ports::{ReceiptWebhook, Secret, WebhookError, WebhookRequest};

const TOKEN: &str = "hook-token";

/// Bodies near the documented shape (so the parser gets past its first checks) and noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("\"id\"".to_owned()),
        Just("\"msg_id\"".to_owned()),
        Just("\"status\"".to_owned()),
        Just("\"data\"".to_owned()),
        Just("\"time\"".to_owned()),
        "\"[a-z_]{0,8}\"",
    ];
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"2026-05-01 12:00:00\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "\"[ -~]{0,20}\"",
    ];
    let object = proptest::collection::vec((field, value), 0..6).prop_map(|pairs| {
        let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{{{}}}", inner.join(","))
    });
    prop_oneof![
        object.clone().prop_map(String::into_bytes),
        proptest::collection::vec(object, 0..4).prop_map(|objects| format!(
            "[{}]",
            objects.join(",")
        )
        .into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    let token = prop_oneof![Just(TOKEN.to_owned()), "[ -~]{0,12}"];
    proptest::option::of(
        (token, "[ -~]{0,60}").prop_map(|(token, rest)| format!("token={token}&{rest}")),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_request_is_receipts_or_a_stable_error(body in body(), query in query()) {
        let webhook = AlphaSmsReceipts::new(Secret::new(TOKEN));
        let headers = HeaderMap::new();
        let request = WebhookRequest { headers: &headers, query: query.as_deref(), body: &body };
        match webhook.parse(&request, Utc::now()) {
            Ok(receipts) => {
                prop_assert!(receipts.iter().all(|r| !r.provider_message_id.is_empty()));
            }
            Err(WebhookError::Malformed { code, .. }) => prop_assert!(code.starts_with("receipt_")),
            Err(_) => {}
        }
    }
}
