//! The route table of `holub serve --routes FILE` (its format: [`RouteTable`]), with what
//! only the single binary adds to it: simulators started in the process
//! (`simulate = true`) and Holub's own simulator protocol (`kind = "holub-sim"`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use holub_shared::adapters::providers::registry;
pub use holub_shared::adapters::providers::table::RouteTable;
use holub_shared::adapters::providers::table::{self, LocalMade, LocalProviders, ProviderEntry};
use holub_shared::ports::{ProviderLimits, ReceiptWebhook, Secret, SecretStore};
use holub_shared::services::gateway::Gateway;
use holub_simulator::providers::SimSettings;
use serde::Deserialize;

pub fn read(path: &Path) -> Result<RouteTable, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the route table {}: {e}", path.display()))?;
    RouteTable::parse(&text, &path.display().to_string())
}

/// The providers of a route table, made and (where asked) simulated.
pub struct Providers {
    pub gateway: Arc<Gateway>,
    pub webhooks: HashMap<String, Arc<dyn ReceiptWebhook>>,
    /// `name → simulator address`, for the start-up line.
    pub simulators: Vec<(String, String)>,
}

/// Builds every provider of the table: credentials from the secret store, simulators
/// started where `simulate = true` (their base URL replaces the adapter's), then the
/// gateway.
pub async fn build(
    table: RouteTable,
    secrets: Arc<dyn SecretStore>,
    limits: Arc<dyn ProviderLimits>,
    receipts_base: &str,
) -> Result<Providers, String> {
    let local = Simulators::default();
    let built = table::build(table, secrets, limits, receipts_base, &local)
        .await
        .map_err(|e| format!("{e}; store credentials with `holub secret set NAME '<JSON>'`"))?;
    Ok(Providers {
        gateway: built.gateway,
        webhooks: built.webhooks,
        simulators: local.started.into_inner().unwrap_or_default(),
    })
}

fn sim_settings(entry: &ProviderEntry) -> Result<Option<SimSettings>, String> {
    entry
        .simulator
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| format!("provider {:?}: [provider.simulator]: {e}", entry.name))
}

/// Starts the simulators a route table asks for.
#[derive(Default)]
struct Simulators {
    started: Mutex<Vec<(String, String)>>,
}

impl Simulators {
    fn started(&self, name: &str, addr: String) {
        if let Ok(mut started) = self.started.lock() {
            started.push((name.to_owned(), addr));
        }
    }
}

#[async_trait]
impl LocalProviders for Simulators {
    async fn make(
        &self,
        entry: &ProviderEntry,
        credentials: &Secret,
        settings: &mut serde_json::Value,
        receipts_url: &str,
    ) -> Result<Option<LocalMade>, String> {
        let sim = sim_settings(entry)?;
        if entry.kind == HOLUB_SIM {
            let (provider, webhook, addr) = holub_sim(
                &entry.name,
                credentials,
                entry.simulate,
                sim,
                settings,
                receipts_url.to_owned(),
            )
            .await?;
            if let Some(addr) = addr {
                self.started(&entry.name, addr);
            }
            return Ok(Some((provider, Some(webhook))));
        }
        if !entry.simulate {
            return Ok(None);
        }
        let credentials_json: serde_json::Value = serde_json::from_str(credentials.expose())
            .map_err(|_| {
                format!(
                    "provider {:?}: credentials are not a JSON object",
                    entry.name
                )
            })?;
        let mut sim = sim.unwrap_or_default();
        sim.credentials = credentials_json;
        sim.receipts_url.get_or_insert(receipts_url.to_owned());
        let addr = holub_simulator::providers::start(&entry.kind, sim)
            .await
            .map_err(|e| format!("provider {:?}: cannot start its simulator: {e}", entry.name))?;
        if let Some(obj) = settings.as_object_mut() {
            obj.insert("base_url".into(), format!("http://{addr}").into());
            // A simulated provider that pushes reports to this Holub.
            let hook_key = registry::get(&entry.kind).and_then(|k| k.hook_url_setting);
            if let Some(key) = hook_key.filter(|key| !obj.contains_key(*key)) {
                obj.insert(key.into(), receipts_url.into());
            }
        }
        self.started(&entry.name, addr.to_string());
        Ok(None)
    }
}

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
