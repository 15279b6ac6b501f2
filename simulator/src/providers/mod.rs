//! Simulators of the Ukrainian providers' own wire formats, one module each, for running
//! Holub against a stand-in of the real API and for testing its adapters.
//!
//! Every simulator takes the same [`SimSettings`]: the credentials it expects, where to push
//! receipts (for providers that push), how messages fare, and which [`Faults`] to inject.
//!
//! What they share lives in [`core`]: the store of accepted messages, balance, stats,
//! credentials, receipt pushing and fault injection. A provider module keeps its own wire
//! types, written from the provider's documentation (never imported from Holub's adapter,
//! so that each checks the other), and its `RULES`: every documented check it applies, with
//! an id, what it demands and its source. A refused request answers the provider's
//! documented error, names the rule in the `x-holub-sim-rule` header and the log, and is
//! counted per rule in `GET /__sim/stats`; `GET /__sim/rules` lists the table.

pub mod alphasms;
pub mod core;
pub mod kyivstar;
pub mod smsfly;
pub mod turbosms;

use std::time::Duration;

use rand::Rng;
use serde::Deserialize;

/// What every provider simulator is told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimSettings {
    /// The credentials JSON the simulator accepts (the same object Holub reads from its
    /// secret store for this provider, e.g. `{"token": "..."}`).
    pub credentials: serde_json::Value,
    /// Where to push delivery receipts, for providers that push.
    pub receipts_url: Option<String>,
    /// From an accepted send to its final state.
    #[serde(with = "millis")]
    pub receipt_delay: Duration,
    pub delivered_ratio: f64,
    /// Kopiykas charged per part.
    pub cost_per_part: i64,
    /// Kopiykas on the account at start, for simulators of providers that keep a balance
    /// (all but Kyivstar, which documents none); unset, the simulator's own default. `0`
    /// plays an empty account: every send is answered with the provider's documented
    /// insufficient-balance error.
    pub start_balance: Option<i64>,
    pub faults: Faults,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            credentials: serde_json::Value::Null,
            receipts_url: None,
            receipt_delay: Duration::from_millis(1000),
            delivered_ratio: 0.95,
            cost_per_part: 85,
            start_balance: None,
            faults: Faults::default(),
        }
    }
}

/// Failure injection, all off by default. Ratios are per request (0.0 to 1.0).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Answer 5xx without doing anything.
    pub server_error_ratio: f64,
    /// Take the request, then never answer within the client's timeout (a hang).
    pub timeout_ratio: f64,
    /// Added to every answer.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Answer the provider's rate-limit error without doing anything.
    pub rate_limit_ratio: f64,
    /// Do the work, then answer a body that is not the documented format.
    pub malformed_ratio: f64,
    /// Push every receipt twice.
    pub duplicate_receipts: bool,
    /// Push receipts in random order (and intermediate states after final ones).
    pub shuffle_receipts: bool,
    /// A provider that is down: every request is a 5xx.
    pub down: bool,
}

/// The fault to play on one request, decided up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    ServerError,
    RateLimited,
    /// Do the work, answer garbage.
    Malformed,
    /// Do the work, never answer in time.
    Hang,
}

impl Faults {
    /// Rolls the dice for one request, after the configured latency.
    pub async fn roll(&self) -> Fault {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.down {
            return Fault::ServerError;
        }
        let mut rng = rand::rng();
        let mut hit = |ratio: f64| ratio > 0.0 && rng.random_bool(ratio.clamp(0.0, 1.0));
        if hit(self.server_error_ratio) {
            Fault::ServerError
        } else if hit(self.rate_limit_ratio) {
            Fault::RateLimited
        } else if hit(self.timeout_ratio) {
            Fault::Hang
        } else if hit(self.malformed_ratio) {
            Fault::Malformed
        } else {
            Fault::None
        }
    }
}

/// How long a hung answer hangs: past any client's timeout.
pub const HANG: Duration = Duration::from_secs(60);

/// Whether a message sent now is delivered, by the settings' ratio.
pub fn delivered(settings: &SimSettings) -> bool {
    rand::rng().random_bool(settings.delivered_ratio.clamp(0.0, 1.0))
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Serves a simulator's router on 127.0.0.1 with a free port, in the background until the
/// runtime ends; returns the address.
pub async fn serve_in_background(
    kind: &'static str,
    app: axum::Router,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(kind, error = %e, "simulator stopped");
        }
    });
    tracing::info!(kind, %addr, "simulator listening");
    Ok(addr)
}

/// Starts the simulator of a provider kind on 127.0.0.1 with a free port.
pub async fn start(kind: &str, settings: SimSettings) -> std::io::Result<std::net::SocketAddr> {
    match kind {
        "turbosms" => turbosms::start(settings).await,
        "smsfly" => smsfly::start(settings).await,
        "alphasms" => alphasms::start(settings).await,
        "kyivstar" => kyivstar::start(settings).await,
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no simulator for provider kind {other:?}"),
        )),
    }
}
