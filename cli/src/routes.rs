//! The route table file of `holub serve --routes FILE`: which providers Holub has, how to
//! reach them, their limits and prices, and which messages go where.
//!
//! ```toml
//! [[provider]]
//! name = "kyivstar"                    # how messages and the receipt URL name it
//! kind = "kyivstar"                    # turbosms | smsfly | alphasms | kyivstar | holub-sim
//! credentials = "providers/kyivstar"   # secret name (a JSON object; see the README)
//! messages_per_second = 20             # held exactly; omit for no limit
//! price_per_part_kopiyky = 70          # for routes ordered by price
//! simulate = true                      # run the built-in simulator of this kind and use it
//! settings = { }                       # adapter settings (base_url, ...)
//! [provider.simulator]                 # the simulator's behaviour (simulate = true)
//! delivered_ratio = 0.95
//! faults = { server_error_ratio = 0.1 }
//!
//! [[route]]                            # first match wins; unmatched: all, cheapest first
//! operators = ["kyivstar"]
//! providers = ["kyivstar", "turbosms"] # failover order
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use holub_shared::adapters::providers;
use holub_shared::domain::Kopiyky;
use holub_shared::ports::{ReceiptWebhook, SecretStore};
use holub_shared::services::gateway::{BreakerConfig, Gateway, Member, RouteRule};
use holub_simulator::providers::SimSettings;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
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
    pub credentials: String,
    #[serde(default)]
    pub messages_per_second: Option<u32>,
    #[serde(default)]
    pub price_per_part_kopiyky: Option<i64>,
    #[serde(default)]
    pub simulate: bool,
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    #[serde(default)]
    pub simulator: Option<SimSettings>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

pub fn read(path: &Path) -> Result<RouteFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the route table {}: {e}", path.display()))?;
    let file: RouteFile = toml::from_str(&text)
        .map_err(|e| format!("the route table {} is not valid: {e}", path.display()))?;
    let mut names = std::collections::HashSet::new();
    for p in &file.providers {
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
    Ok(file)
}

/// The providers of a route table, made and (where asked) simulated.
pub struct Providers {
    pub gateway: Arc<Gateway>,
    pub webhooks: HashMap<String, Arc<dyn ReceiptWebhook>>,
    /// `name → simulator address`, for the start-up line.
    pub simulators: Vec<(String, String)>,
}

/// Builds every provider of the file: credentials from the secret store, simulators started
/// where `simulate = true` (their base URL replaces the adapter's), then the gateway.
pub async fn build(
    file: RouteFile,
    secrets: &dyn SecretStore,
    receipts_base: &str,
) -> Result<Providers, String> {
    let mut members = Vec::new();
    let mut webhooks: HashMap<String, Arc<dyn ReceiptWebhook>> = HashMap::new();
    let mut simulators = Vec::new();
    for entry in file.providers {
        let credentials = secrets.get(&entry.credentials).await.map_err(|e| {
            format!(
                "provider {:?}: credentials {:?} not readable ({e}); store them with \
                 `holub secret set {} '<JSON>'`",
                entry.name, entry.credentials, entry.credentials
            )
        })?;
        let mut settings = entry.settings;
        let receipts_url = format!("{receipts_base}/v1/receipts/{}", entry.name);
        if entry.kind == HOLUB_SIM {
            let (provider, webhook, addr) = holub_sim(
                &entry.name,
                &credentials,
                entry.simulate,
                entry.simulator,
                &settings,
                receipts_url,
            )
            .await?;
            webhooks.insert(entry.name.clone(), webhook);
            if let Some(addr) = addr {
                simulators.push((entry.name.clone(), addr));
            }
            members.push(Member {
                name: entry.name,
                provider,
                messages_per_second: entry.messages_per_second,
                price_per_part: entry.price_per_part_kopiyky.map(Kopiyky),
            });
            continue;
        }
        if entry.simulate {
            let credentials_json: serde_json::Value = serde_json::from_str(credentials.expose())
                .map_err(|_| {
                    format!(
                        "provider {:?}: credentials are not a JSON object",
                        entry.name
                    )
                })?;
            let mut sim = entry.simulator.unwrap_or_default();
            sim.credentials = credentials_json;
            sim.receipts_url.get_or_insert(receipts_url.clone());
            let addr = holub_simulator::providers::start(&entry.kind, sim)
                .await
                .map_err(|e| {
                    format!("provider {:?}: cannot start its simulator: {e}", entry.name)
                })?;
            if let Some(obj) = settings.as_object_mut() {
                obj.insert("base_url".into(), format!("http://{addr}").into());
                // A simulated provider that pushes reports to this Holub.
                if PUSH_KINDS.contains(&entry.kind.as_str()) && !obj.contains_key("hook_url") {
                    obj.insert("hook_url".into(), receipts_url.clone().into());
                }
            }
            simulators.push((entry.name.clone(), addr.to_string()));
        }
        let built = providers::build(&entry.kind, &entry.name, settings, &credentials)
            .map_err(|e| e.to_string())?;
        if let Some(webhook) = built.webhook {
            webhooks.insert(entry.name.clone(), webhook);
        }
        members.push(Member {
            name: entry.name,
            provider: built.provider,
            messages_per_second: entry.messages_per_second,
            price_per_part: entry.price_per_part_kopiyky.map(Kopiyky),
        });
    }
    let gateway = Gateway::new(members, file.routes, BreakerConfig::default())
        .map_err(|e| format!("the route table is not valid: {e}"))?;
    Ok(Providers {
        gateway: Arc::new(gateway),
        webhooks,
        simulators,
    })
}

/// Kinds whose adapters take the receipt webhook's address as `settings.hook_url`.
const PUSH_KINDS: &[&str] = &["alphasms"];

/// Holub's own simulator protocol (the built-in simulator's), as a provider kind.
pub const HOLUB_SIM: &str = "holub-sim";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolubSimCredentials {
    api_token: String,
    receipt_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolubSimSettings {
    #[serde(default)]
    base_url: Option<String>,
}

type Made = (
    Arc<dyn holub_shared::ports::SmsProvider>,
    Arc<dyn ReceiptWebhook>,
    Option<String>,
);

/// A `holub-sim` provider: the built-in simulator started here (`simulate = true`), or one
/// running elsewhere at `settings.base_url`.
pub async fn holub_sim(
    name: &str,
    credentials: &holub_shared::ports::Secret,
    simulate: bool,
    sim: Option<SimSettings>,
    settings: &serde_json::Value,
    receipts_url: String,
) -> Result<Made, String> {
    let creds: HolubSimCredentials = serde_json::from_str(credentials.expose()).map_err(|_| {
        format!("provider {name:?}: holub-sim credentials are {{\"api_token\", \"receipt_token\"}}")
    })?;
    let settings: HolubSimSettings =
        serde_json::from_value(settings.clone()).map_err(|e| format!("provider {name:?}: {e}"))?;
    let (base_url, addr) = if simulate {
        let sim = sim.unwrap_or_default();
        let config = holub_simulator::SimulatorConfig {
            api_token: creds.api_token.clone(),
            receipt_token: creds.receipt_token.clone(),
            receipts_url: sim.receipts_url.clone().unwrap_or(receipts_url),
            receipt_delay: sim.receipt_delay,
            delivered_ratio: sim.delivered_ratio,
            cost_per_part: sim.cost_per_part,
            fail_ratio: if sim.faults.down {
                1.0
            } else {
                sim.faults.server_error_ratio
            },
            latency: sim.faults.latency,
            duplicate_receipts: sim.faults.duplicate_receipts,
            shuffle_receipts: sim.faults.shuffle_receipts,
            ..holub_simulator::SimulatorConfig::default()
        };
        let running = holub_simulator::Simulator::start(config)
            .await
            .map_err(|e| format!("provider {name:?}: cannot start the simulator: {e}"))?;
        (running.base_url(), Some(running.addr().to_string()))
    } else {
        let url = settings.base_url.ok_or_else(|| {
            format!("provider {name:?}: settings.base_url is needed without simulate")
        })?;
        (url, None)
    };
    let provider = holub_simulator::SimulatorProvider::new(&base_url, creds.api_token, name)
        .map_err(|e| format!("provider {name:?}: {e}"))?;
    let webhook = holub_simulator::SimulatorReceipts::new(holub_shared::ports::Secret::new(
        creds.receipt_token,
    ));
    Ok((Arc::new(provider), Arc::new(webhook), addr))
}
