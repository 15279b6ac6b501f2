//! The provider kinds Holub speaks, one line each. Everything that needs to know the kinds
//! (building a route's provider, the CLI starting a simulator and telling it where to push
//! receipts, the list shown in errors) reads this table, so a new provider is its folder and
//! one line here.

use super::{Built, ProviderSetupError, alphasms, kyivstar, smsfly, turbosms};
use crate::ports::{ReceiptMode, Secret};

/// Makes a provider named `name` from its route-table settings and its credentials.
pub type BuildFn = fn(&str, serde_json::Value, &Secret) -> Result<Built, ProviderSetupError>;

/// One provider kind.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The route table's `kind`.
    pub name: &'static str,
    pub build: BuildFn,
    /// Whether it pushes receipts to a webhook of ours (once told where, for kinds with a
    /// `hook_url_setting`) or is polled.
    pub receipts: ReceiptMode,
    /// For kinds told per request where to push receipts: the settings key that takes the
    /// webhook's URL (filled in by whoever knows it, e.g. `holub serve` for a simulator).
    pub hook_url_setting: Option<&'static str>,
}

impl Kind {
    /// A kind that is polled for receipts.
    pub const fn poll(name: &'static str, build: BuildFn) -> Kind {
        Kind {
            name,
            build,
            receipts: ReceiptMode::Poll,
            hook_url_setting: None,
        }
    }

    /// A kind that pushes receipts to the URL given in its settings under `hook_url_setting`.
    pub const fn push(name: &'static str, build: BuildFn, hook_url_setting: &'static str) -> Kind {
        Kind {
            name,
            build,
            receipts: ReceiptMode::Push,
            hook_url_setting: Some(hook_url_setting),
        }
    }
}

/// Every kind, one line each.
pub const KINDS: &[Kind] = &[
    Kind::poll(turbosms::KIND, turbosms::build),
    Kind::poll(smsfly::KIND, smsfly::build),
    Kind::push(alphasms::KIND, alphasms::build, "hook_url"),
    Kind::poll(kyivstar::KIND, kyivstar::build),
];

/// The names of every kind, in table order.
pub const NAMES: [&str; KINDS.len()] = {
    let mut names = [""; KINDS.len()];
    let mut i = 0;
    while i < KINDS.len() {
        names[i] = KINDS[i].name;
        i += 1;
    }
    names
};

/// The kind called `name`.
pub fn get(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The names of every kind, in table order.
pub fn names() -> &'static [&'static str] {
    &NAMES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(kind: &str) -> Secret {
        Secret::new(match kind {
            "turbosms" => r#"{"token":"abc123"}"#,
            "smsfly" => r#"{"key":"key-123"}"#,
            "alphasms" => r#"{"api_key":"key-123","hook_token":"0123456789abcdef0123"}"#,
            "kyivstar" => r#"{"client_id":"id","client_secret":"secret"}"#,
            other => panic!("no credentials for {other}: add them here"),
        })
    }

    #[test]
    fn names_are_unique_and_each_builds_with_the_receipt_mode_it_declares() {
        let mut seen = std::collections::HashSet::new();
        for kind in KINDS {
            assert!(seen.insert(kind.name), "{} twice", kind.name);
            assert_eq!(get(kind.name).map(|k| k.name), Some(kind.name));
            let settings = match kind.hook_url_setting {
                Some(key) => serde_json::json!({ key: "https://holub.example/v1/receipts/r" }),
                None => serde_json::json!({}),
            };
            let built = (kind.build)("r", settings, &credentials(kind.name))
                .unwrap_or_else(|e| panic!("{}: {e}", kind.name));
            assert_eq!(built.provider.name(), "r");
            assert_eq!(
                built.provider.receipt_mode(),
                kind.receipts,
                "{}",
                kind.name
            );
            assert_eq!(
                built.webhook.is_some(),
                kind.receipts == ReceiptMode::Push,
                "{}",
                kind.name
            );
        }
        assert_eq!(names(), NAMES.as_slice());
        assert!(get("holub-sim").is_none());
    }
}
