//! The simulator's settings.
//!
//! Everything has a default, so `SimulatorConfig::default()` (or an empty JSON/TOML table) is a
//! working simulator that accepts every message, delivers 95 % of them and injects no
//! failures. Durations are written as whole milliseconds (`250`) or as a string with a unit
//! (`"250ms"`, `"1s"`, `"1.5s"`, `"2m"`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// How the simulator behaves. Tokens are plain strings: this is a local test double, not a
/// place for real secrets.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// The bearer token clients must send (`Authorization: Bearer <api_token>`).
    pub api_token: String,
    /// Where delivery receipts are POSTed, e.g. `http://127.0.0.1:8080/v1/receipts/simulator`.
    /// Empty (the default): no receipts are posted (a message's looked-up status still turns
    /// final).
    pub receipts_url: String,
    /// The bearer token sent with every receipt POST.
    pub receipt_token: String,
    /// The price of one SMS part, in kopiykas (85 = 0.85 UAH).
    pub cost_per_part: i64,
    /// How long after acceptance a message's final receipt becomes due.
    #[serde(deserialize_with = "duration")]
    pub receipt_delay: Duration,
    /// The share of messages that end `DELIVRD`.
    pub delivered_ratio: f64,
    /// Of the messages that are not delivered, the share that end `EXPIRED` (the rest end
    /// `UNDELIV`).
    pub expired_ratio: f64,
    /// At most this many receipts per POST.
    pub receipt_batch_size: usize,
    /// How often due receipts are collected and posted.
    #[serde(deserialize_with = "duration")]
    pub receipt_flush_interval: Duration,
    /// Post every receipt twice (duplicate injection).
    pub duplicate_receipts: bool,
    /// Shuffle the receipts of each POST (out-of-order injection).
    pub shuffle_receipts: bool,
    /// The share of send requests answered `503` without looking at them.
    pub fail_ratio: f64,
    /// The share of send requests that are fully processed (their messages accepted) but
    /// answered `503`: the "lost answer" a client must resolve with a lookup, never a resend
    /// under a new id.
    pub lost_answer_ratio: f64,
    /// The share of messages refused with the permanent error code `rejected`.
    pub reject_ratio: f64,
    /// Added before answering each send request.
    #[serde(deserialize_with = "duration")]
    pub latency: Duration,
    /// Messages accepted per second (a one-second window); a request beyond it is answered
    /// `429`. A request larger than the whole limit still passes alone in a fresh window.
    pub rate_limit_per_second: Option<u32>,
    /// Seeds the simulator's random choices, for reproducible runs.
    pub seed: Option<u64>,
    /// A file that remembers every accepted message across restarts (see
    /// [`crate::journal`]); none (the default): the simulator forgets on exit.
    pub journal: Option<std::path::PathBuf>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            api_token: "sim-api-token".to_owned(),
            receipts_url: String::new(),
            receipt_token: "sim-receipt-token".to_owned(),
            cost_per_part: 85,
            receipt_delay: Duration::from_secs(1),
            delivered_ratio: 0.95,
            expired_ratio: 0.0,
            receipt_batch_size: 500,
            receipt_flush_interval: Duration::from_millis(50),
            duplicate_receipts: false,
            shuffle_receipts: false,
            fail_ratio: 0.0,
            lost_answer_ratio: 0.0,
            reject_ratio: 0.0,
            latency: Duration::ZERO,
            rate_limit_per_second: None,
            seed: None,
            journal: None,
        }
    }
}

/// `Debug` without the tokens.
impl std::fmt::Debug for SimulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("receipts_url", &self.receipts_url)
            .field("cost_per_part", &self.cost_per_part)
            .field("receipt_delay", &self.receipt_delay)
            .field("delivered_ratio", &self.delivered_ratio)
            .field("expired_ratio", &self.expired_ratio)
            .field("receipt_batch_size", &self.receipt_batch_size)
            .field("receipt_flush_interval", &self.receipt_flush_interval)
            .field("duplicate_receipts", &self.duplicate_receipts)
            .field("shuffle_receipts", &self.shuffle_receipts)
            .field("fail_ratio", &self.fail_ratio)
            .field("lost_answer_ratio", &self.lost_answer_ratio)
            .field("reject_ratio", &self.reject_ratio)
            .field("latency", &self.latency)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("seed", &self.seed)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

/// Most receipts one POST may carry (what [`crate::parse_receipts`] accepts).
pub const MAX_RECEIPT_BATCH: usize = crate::receipt::MAX_RECEIPTS;

/// Receipts later than a week are not a simulation anyone waits for.
const MAX_RECEIPT_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
/// Beyond a client's whole-request timeout, latency is just an outage.
const MAX_LATENCY: Duration = Duration::from_secs(120);

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} must be a ratio between 0 and 1, not {value}")]
    BadRatio { field: &'static str, value: f64 },
    #[error("{0} must not be empty")]
    EmptyToken(&'static str),
    #[error("receipts_url is not an http(s) URL: {0}")]
    BadReceiptsUrl(String),
    #[error("cost_per_part must not be negative")]
    NegativeCost,
    #[error("receipt_batch_size must be between 1 and {MAX_RECEIPT_BATCH}")]
    BadBatchSize,
    #[error("receipt_flush_interval must be at least 1 ms")]
    BadFlushInterval,
    #[error("rate_limit_per_second must be at least 1")]
    BadRateLimit,
    #[error("{field} must be at most {max:?}")]
    TooLong { field: &'static str, max: Duration },
    #[error("the receipt HTTP client cannot start: {0}")]
    HttpClient(String),
    #[error("the journal cannot be opened: {0}")]
    Journal(String),
}

impl SimulatorConfig {
    /// Checks that the settings make sense, and parses the receipts URL (`None` when empty).
    pub fn validate(&self) -> Result<Option<reqwest::Url>, ConfigError> {
        for (field, value) in [
            ("delivered_ratio", self.delivered_ratio),
            ("expired_ratio", self.expired_ratio),
            ("fail_ratio", self.fail_ratio),
            ("lost_answer_ratio", self.lost_answer_ratio),
            ("reject_ratio", self.reject_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::BadRatio { field, value });
            }
        }
        if self.api_token.is_empty() {
            return Err(ConfigError::EmptyToken("api_token"));
        }
        if self.receipt_token.is_empty() {
            return Err(ConfigError::EmptyToken("receipt_token"));
        }
        if self.cost_per_part < 0 {
            return Err(ConfigError::NegativeCost);
        }
        if !(1..=MAX_RECEIPT_BATCH).contains(&self.receipt_batch_size) {
            return Err(ConfigError::BadBatchSize);
        }
        if self.receipt_flush_interval < Duration::from_millis(1) {
            return Err(ConfigError::BadFlushInterval);
        }
        for (field, value, max) in [
            ("receipt_delay", self.receipt_delay, MAX_RECEIPT_DELAY),
            (
                "receipt_flush_interval",
                self.receipt_flush_interval,
                MAX_FLUSH_INTERVAL,
            ),
            ("latency", self.latency, MAX_LATENCY),
        ] {
            if value > max {
                return Err(ConfigError::TooLong { field, max });
            }
        }
        if self.rate_limit_per_second == Some(0) {
            return Err(ConfigError::BadRateLimit);
        }
        let raw = self.receipts_url.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        match reqwest::Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(Some(url)),
            _ => Err(ConfigError::BadReceiptsUrl(raw.to_owned())),
        }
    }
}

/// Milliseconds as an integer, or a string with a unit: `ms`, `s` or `m`.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(text) => parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "not a duration: {text:?} (write e.g. 250, \"250ms\", \"1s\" or \"2m\")"
            ))
        }),
    }
}

/// Parses `250ms`, `1s`, `1.5s`, `2m` (and a bare number of milliseconds).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, seconds_per_unit) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 0.001)
    };
    let number = number.trim();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * seconds_per_unit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_form() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("40"), Some(Duration::from_millis(40)));
        for bad in ["", "s", "-1s", "1h", "one second", "1e3ms"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn config_reads_from_json_with_defaults() -> Result<(), serde_json::Error> {
        let config: SimulatorConfig = serde_json::from_str(
            r#"{"receipt_delay": "50ms", "latency": 5, "reject_ratio": 0.5,
                "receipts_url": "http://127.0.0.1:8080/v1/receipts/simulator"}"#,
        )?;
        assert_eq!(config.receipt_delay, Duration::from_millis(50));
        assert_eq!(config.latency, Duration::from_millis(5));
        assert_eq!(config.reject_ratio, 0.5);
        assert_eq!(config.cost_per_part, 85);
        assert_eq!(config.delivered_ratio, 0.95);
        assert!(config.validate().is_ok_and(|url| url.is_some()));

        let empty: SimulatorConfig = serde_json::from_str("{}")?;
        assert_eq!(empty.receipt_delay, Duration::from_secs(1));
        assert_eq!(empty.receipt_batch_size, 500);
        assert!(empty.validate().is_ok_and(|url| url.is_none()));

        assert!(serde_json::from_str::<SimulatorConfig>(r#"{"latency": "soon"}"#).is_err());
        assert!(serde_json::from_str::<SimulatorConfig>(r#"{"typo_ratio": 1}"#).is_err());
        Ok(())
    }

    #[test]
    fn bad_settings_are_refused() {
        let check = |edit: fn(&mut SimulatorConfig)| {
            let mut config = SimulatorConfig::default();
            edit(&mut config);
            config.validate().err()
        };
        assert!(matches!(
            check(|c| c.fail_ratio = 1.5),
            Some(ConfigError::BadRatio {
                field: "fail_ratio",
                ..
            })
        ));
        assert!(matches!(
            check(|c| c.delivered_ratio = f64::NAN),
            Some(ConfigError::BadRatio { .. })
        ));
        assert_eq!(
            check(|c| c.api_token.clear()),
            Some(ConfigError::EmptyToken("api_token"))
        );
        assert!(matches!(
            check(|c| c.receipts_url = "ftp://x".into()),
            Some(ConfigError::BadReceiptsUrl(_))
        ));
        assert_eq!(
            check(|c| c.receipt_batch_size = 0),
            Some(ConfigError::BadBatchSize)
        );
        assert_eq!(
            check(|c| c.rate_limit_per_second = Some(0)),
            Some(ConfigError::BadRateLimit)
        );
        assert_eq!(
            check(|c| c.cost_per_part = -1),
            Some(ConfigError::NegativeCost)
        );
    }

    #[test]
    fn debug_hides_the_tokens() {
        let shown = format!("{:?}", SimulatorConfig::default());
        assert!(!shown.contains("sim-api-token"));
        assert!(!shown.contains("sim-receipt-token"));
    }
}
