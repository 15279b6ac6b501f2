//! The route table: which providers Holub has, how to reach them, their limits and prices,
//! and which messages go where. The single binary reads it from a file
//! (`holub serve --routes FILE`), the Lambda functions from `HOLUB_ROUTES`; both parse it
//! here, and both build the same [`Gateway`] from it.
//!
//! ```toml
//! [[provider]]
//! name = "kyivstar"                    # how messages and the receipt URL name it
//! kind = "kyivstar"                    # a name of `registry::KINDS` (+ holub-sim locally)
//! credentials = "providers/kyivstar"   # secret name (a JSON object; see the README)
//! messages_per_second = 20             # held exactly; omit for no limit
//! price_per_part_kopiyky = 70          # for routes ordered by price
//! settings = { }                       # adapter settings (base_url, ...)
//! simulate = true                      # `holub serve` only: run the built-in simulator
//! [provider.simulator]                 # the simulator's behaviour (simulate = true)
//! delivered_ratio = 0.95
//!
//! [[route]]                            # first match wins; unmatched: all, cheapest first
//! operators = ["kyivstar"]
//! providers = ["kyivstar", "turbosms"] # failover order
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::refreshing::{CREDENTIALS_TTL, Make, Refreshing};
use crate::domain::Kopiyky;
use crate::ports::{ProviderLimits, ReceiptWebhook, Secret, SecretStore, SmsProvider};
use crate::services::gateway::{BreakerConfig, Gateway, Member, RouteRule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    #[serde(rename = "provider")]
    pub providers: Vec<ProviderEntry>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    pub name: String,
    pub kind: String,
    /// The name of the secret holding the credentials.
    pub credentials: String,
    #[serde(default)]
    pub messages_per_second: Option<u32>,
    #[serde(default)]
    pub price_per_part_kopiyky: Option<i64>,
    /// Run a simulator of this kind in the process and use it (the single binary only).
    #[serde(default)]
    pub simulate: bool,
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    /// The simulator's behaviour; read by whoever runs simulators.
    #[serde(default)]
    pub simulator: Option<serde_json::Value>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl RouteTable {
    /// Parses and checks a route table written in TOML. `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let table: RouteTable = toml::from_str(text)
            .map_err(|e| format!("the route table {origin} is not valid: {e}"))?;
        let mut names = HashSet::new();
        for p in &table.providers {
            let ok_name = !p.name.is_empty()
                && p.name.len() <= 64
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok_name {
                return Err(format!(
                    "provider name {:?}: use 1-64 letters, digits, '-' or '_' (it appears in the receipt URL)",
                    p.name
                ));
            }
            if !names.insert(p.name.clone()) {
                return Err(format!("provider {:?} is listed twice", p.name));
            }
        }
        Ok(table)
    }
}

/// A provider made by its own means rather than by [`super::build`]: a simulator started
/// in the process, or a kind only the single binary knows.
pub type LocalMade = (Arc<dyn SmsProvider>, Option<Arc<dyn ReceiptWebhook>>);

/// Makes the providers that the real adapters do not cover (simulators). The Lambda
/// functions have none: [`NoLocalProviders`].
#[async_trait]
pub trait LocalProviders: Send + Sync {
    /// Makes `entry` if it is one of this maker's, with the receipt URL it should push to;
    /// may instead rewrite `settings` (say, `base_url` of a simulator it started) and return
    /// `None` to let the real adapter be built over them.
    async fn make(
        &self,
        entry: &ProviderEntry,
        credentials: &Secret,
        settings: &mut serde_json::Value,
        receipts_url: &str,
    ) -> Result<Option<LocalMade>, String>;
}

/// For processes that run no simulator: `simulate = true` is refused.
pub struct NoLocalProviders;

#[async_trait]
impl LocalProviders for NoLocalProviders {
    async fn make(
        &self,
        entry: &ProviderEntry,
        _: &Secret,
        _: &mut serde_json::Value,
        _: &str,
    ) -> Result<Option<LocalMade>, String> {
        if entry.simulate || entry.simulator.is_some() {
            return Err(format!(
                "provider {:?}: simulators run only in `holub serve`; point settings.base_url at one instead",
                entry.name
            ));
        }
        Ok(None)
    }
}

/// The providers of a route table, made.
pub struct Providers {
    pub gateway: Arc<Gateway>,
    /// The receipt parser of each provider that pushes, by provider name.
    pub webhooks: HashMap<String, Arc<dyn ReceiptWebhook>>,
}

/// Builds every provider of the table (credentials through the secret store) and the
/// gateway over them. `receipts_base` is the URL this Holub takes receipts at. The real
/// adapters follow their secrets ([`Refreshing`]): a rotated one is used within
/// [`CREDENTIALS_TTL`], or at once after the provider refuses the old one. The gateway
/// holds each provider's rate and breaker in `limits`, shared with every other instance.
pub async fn build(
    table: RouteTable,
    secrets: Arc<dyn SecretStore>,
    limits: Arc<dyn ProviderLimits>,
    receipts_base: &str,
    local: &dyn LocalProviders,
) -> Result<Providers, String> {
    let mut members = Vec::new();
    let mut webhooks: HashMap<String, Arc<dyn ReceiptWebhook>> = HashMap::new();
    for entry in table.providers {
        let credentials = secrets.get(&entry.credentials).await.map_err(|e| {
            format!(
                "provider {:?}: credentials {:?} not readable ({e})",
                entry.name, entry.credentials
            )
        })?;
        let receipts_url = format!("{receipts_base}/v1/receipts/{}", entry.name);
        let mut settings = entry.settings.clone();
        let (provider, webhook) = match local
            .make(&entry, &credentials, &mut settings, &receipts_url)
            .await?
        {
            Some(made) => made,
            None => {
                let make: Make = {
                    let (kind, name) = (entry.kind.clone(), entry.name.clone());
                    Arc::new(move |secret: &Secret| {
                        super::build(&kind, &name, settings.clone(), secret)
                    })
                };
                let built = Refreshing::start(
                    &entry.name,
                    &entry.credentials,
                    Arc::clone(&secrets),
                    credentials,
                    make,
                    CREDENTIALS_TTL,
                )
                .map_err(|e| e.to_string())?;
                (built.provider, built.webhook)
            }
        };
        if let Some(webhook) = webhook {
            webhooks.insert(entry.name.clone(), webhook);
        }
        members.push(Member {
            name: entry.name,
            provider,
            messages_per_second: entry.messages_per_second,
            price_per_part: entry.price_per_part_kopiyky.map(Kopiyky),
        });
    }
    let gateway = Gateway::new(members, table.routes, BreakerConfig::default())
        .map_err(|e| format!("the route table is not valid: {e}"))?
        .with_limits(limits);
    Ok(Providers {
        gateway: Arc::new(gateway),
        webhooks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_url_safe_and_unique() {
        let twice = "[[provider]]\nname='a'\nkind='turbosms'\ncredentials='x'\n\
                     [[provider]]\nname='a'\nkind='smsfly'\ncredentials='y'\n";
        assert!(RouteTable::parse(twice, "t").unwrap_err().contains("twice"));
        let slash = "[[provider]]\nname='a/b'\nkind='turbosms'\ncredentials='x'\n";
        assert!(
            RouteTable::parse(slash, "t")
                .unwrap_err()
                .contains("receipt URL")
        );
        let unknown = "[[provider]]\nname='a'\nkind='turbosms'\ncredentials='x'\ncolour=1\n";
        assert!(RouteTable::parse(unknown, "t").is_err());
    }

    #[tokio::test]
    async fn lambdas_refuse_simulated_providers() {
        let table = RouteTable::parse(
            "[[provider]]\nname='t'\nkind='turbosms'\ncredentials='c'\nsimulate=true\n",
            "t",
        )
        .unwrap();
        let mut settings = empty_object();
        let err = NoLocalProviders
            .make(
                &table.providers[0],
                &Secret::new("{}"),
                &mut settings,
                "http://h",
            )
            .await
            .err()
            .unwrap();
        assert!(err.contains("simulators run only"), "{err}");
    }
}
