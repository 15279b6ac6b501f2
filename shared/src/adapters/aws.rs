//! The AWS backend's wiring: one SDK configuration, the clients made from it once per cold
//! start, and the adapters over them.
//!
//! The settings are plain values: a Lambda `main` reads its environment once into an
//! [`AwsConfig`] and fails fast there. The SDK's own loader ([`load_sdk_config`]) finds
//! region and credentials the standard way and honours `AWS_ENDPOINT_URL`, which is how
//! tests and a local bootstrap point everything at an emulator, with no code path of their
//! own.

use std::sync::Arc;

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::dynamo::{DynamoConfig, DynamoStore};
use super::kms::KmsMasterKey;
use super::request_counter::RequestCounter;
use super::secrets_manager::{SecretsConfig, SecretsManagerStore};
use super::sqs::{QueueUrls, SqsQueue};

use super::providers::table::{self, NoLocalProviders, Providers, RouteTable};
use crate::ports::{ProviderLimits, SecretStore};

pub use aws_config::{Region, SdkConfig};
pub use aws_sdk_dynamodb::config::Credentials;

/// The settings of every AWS adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub dynamo: DynamoConfig,
    pub queues: QueueUrls,
    pub secrets: SecretsConfig,
    /// The KMS key (id, ARN or alias) that wraps the tenants' data keys.
    pub kms_key_id: String,
}

impl AwsConfig {
    /// The settings from named values — in a Lambda, its environment, read once in `main`:
    /// `HOLUB_MESSAGES_TABLE`, `HOLUB_IDEMPOTENCY_TABLE`, `HOLUB_TENANTS_TABLE`,
    /// `HOLUB_STATS_TABLE`,
    /// `HOLUB_DISPATCH_QUEUE_URL`, `HOLUB_CALLBACKS_QUEUE_URL`, `HOLUB_CAMPAIGNS_QUEUE_URL`,
    /// `HOLUB_KMS_KEY_ID` (all
    /// required),
    /// `HOLUB_SECRETS_PREFIX` (default `holub/`), `HOLUB_INDEX_SHARDS` (default 256, as
    /// `template.yaml`; it may grow between deployments but never shrink),
    /// `HOLUB_WRITE_SHARDS` (default 64, as `template.yaml`; fixed for the life of the tables) and `HOLUB_MESSAGE_RETENTION_DAYS` (default
    /// 90: how long a message is kept before DynamoDB's TTL deletes it) and
    /// `HOLUB_MESSAGES_STREAM_ARN` (the messages table's stream, which the rollup reads;
    /// without it, the rollup asks the table).
    pub fn from_values(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let need = |name: &str| {
            get(name)
                .filter(|v| !v.is_empty())
                .ok_or(format!("{name} is not set"))
        };
        let mut dynamo = DynamoConfig::with_prefix("holub");
        // The template's defaults, so that a tool run without them agrees with the functions.
        dynamo.index_shards = DynamoConfig::DEPLOYED_INDEX_SHARDS;
        dynamo.write_shards = DynamoConfig::DEPLOYED_WRITE_SHARDS;
        dynamo.messages_table = need("HOLUB_MESSAGES_TABLE")?;
        dynamo.idempotency_table = need("HOLUB_IDEMPOTENCY_TABLE")?;
        dynamo.tenants_table = need("HOLUB_TENANTS_TABLE")?;
        dynamo.stats_table = need("HOLUB_STATS_TABLE")?;
        dynamo.messages_stream_arn = get("HOLUB_MESSAGES_STREAM_ARN").filter(|a| !a.is_empty());
        if let Some(shards) = get("HOLUB_INDEX_SHARDS") {
            dynamo.index_shards = shards
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("HOLUB_INDEX_SHARDS must be a positive number")?;
        }
        if let Some(shards) = get("HOLUB_WRITE_SHARDS") {
            dynamo.write_shards = shards
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("HOLUB_WRITE_SHARDS must be a positive number")?;
        }
        if let Some(days) = get("HOLUB_MESSAGE_RETENTION_DAYS") {
            let days: u64 =
                days.parse().ok().filter(|d| (1..=3650).contains(d)).ok_or(
                    "HOLUB_MESSAGE_RETENTION_DAYS must be a number of days from 1 to 3650",
                )?;
            dynamo.message_retention = std::time::Duration::from_secs(days * 24 * 3600);
        }
        Ok(AwsConfig {
            dynamo,
            queues: QueueUrls {
                dispatch: need("HOLUB_DISPATCH_QUEUE_URL")?,
                callbacks: need("HOLUB_CALLBACKS_QUEUE_URL")?,
                campaigns: need("HOLUB_CAMPAIGNS_QUEUE_URL")?,
            },
            secrets: SecretsConfig::with_prefix(
                get("HOLUB_SECRETS_PREFIX").unwrap_or_else(|| "holub/".to_owned()),
            ),
            kms_key_id: need("HOLUB_KMS_KEY_ID")?,
        })
    }
}

/// The HTTPS client every AWS client uses: rustls with ring, the crypto the rest of Holub
/// already links, and the system's root certificates.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK's standard configuration loader with Holub's HTTPS client, for callers that
/// override some of what it would find (a region, an endpoint, credentials).
pub fn sdk_config_loader() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client())
}

/// Loads the SDK configuration from the environment the standard way.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

/// One client per service, all from one [`SdkConfig`], each counting its requests.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets_manager: aws_sdk_secretsmanager::Client,
    pub kms: aws_sdk_kms::Client,
    pub requests: RequestCounter,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig) -> Self {
        let requests = RequestCounter::new();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(requests.clone())
                .build(),
        );
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(sdk)
                .interceptor(requests.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(requests.clone())
                .build(),
        );
        let secrets_manager = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(sdk)
                .interceptor(requests.clone())
                .build(),
        );
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(sdk)
                .interceptor(requests.clone())
                .build(),
        );
        AwsClients {
            dynamodb,
            streams,
            sqs,
            secrets_manager,
            kms,
            requests,
        }
    }
}

/// The three AWS adapters, ready to hand to the services.
#[derive(Debug, Clone)]
pub struct AwsBackend {
    pub store: DynamoStore,
    pub queue: SqsQueue,
    pub secrets: SecretsManagerStore,
    /// Requests made by all three so far.
    pub requests: RequestCounter,
}

impl AwsBackend {
    pub fn new(sdk: &SdkConfig, config: AwsConfig) -> Self {
        Self::with_clients(AwsClients::new(sdk), config)
    }

    pub fn with_clients(clients: AwsClients, config: AwsConfig) -> Self {
        AwsBackend {
            store: DynamoStore::new(
                clients.dynamodb,
                config.dynamo,
                Arc::new(KmsMasterKey::new(clients.kms, config.kms_key_id)),
            )
            .with_streams(clients.streams),
            queue: SqsQueue::new(clients.sqs, config.queues),
            secrets: SecretsManagerStore::new(clients.secrets_manager, config.secrets),
            requests: clients.requests,
        }
    }
}

/// What a Lambda function starts from, read once per cold start: logs as JSON lines (level
/// from `RUST_LOG`), the settings from the environment, and the adapters over them.
pub async fn backend_from_env() -> Result<AwsBackend, String> {
    init_logging();
    let config = AwsConfig::from_values(|name| std::env::var(name).ok())?;
    Ok(AwsBackend::new(&load_sdk_config().await, config))
}

/// The providers of the route table in `HOLUB_ROUTES` (TOML, as `holub serve --routes`
/// reads it), their credentials read from the secret store now and again when rotated.
pub async fn providers_from_env(
    secrets: Arc<dyn SecretStore>,
    limits: Arc<dyn ProviderLimits>,
) -> Result<Providers, String> {
    let text = std::env::var("HOLUB_ROUTES").map_err(|_| "HOLUB_ROUTES is not set")?;
    let routes = RouteTable::parse(&text, "HOLUB_ROUTES")?;
    // Receipt URLs are the API's, known to the providers' settings (`hook_url`); nothing
    // started here needs one.
    table::build(routes, secrets, limits, "", &NoLocalProviders).await
}

/// JSON log lines without time stamps (CloudWatch adds them), level from `RUST_LOG`.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const REQUIRED: [(&str, &str); 8] = [
        ("HOLUB_MESSAGES_TABLE", "m"),
        ("HOLUB_IDEMPOTENCY_TABLE", "i"),
        ("HOLUB_TENANTS_TABLE", "t"),
        ("HOLUB_STATS_TABLE", "s"),
        ("HOLUB_DISPATCH_QUEUE_URL", "http://q/d"),
        ("HOLUB_CALLBACKS_QUEUE_URL", "http://q/c"),
        ("HOLUB_CAMPAIGNS_QUEUE_URL", "http://q/p"),
        ("HOLUB_KMS_KEY_ID", "alias/holub"),
    ];

    #[test]
    fn settings_come_from_the_environment_and_bad_ones_are_refused() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push(("HOLUB_MESSAGE_RETENTION_DAYS", "30"));
        pairs.push(("HOLUB_INDEX_SHARDS", "8"));
        pairs.push(("HOLUB_WRITE_SHARDS", "64"));
        let config = AwsConfig::from_values(env(&pairs)).unwrap();
        assert_eq!(config.dynamo.messages_table, "m");
        assert_eq!(config.dynamo.index_shards, 8);
        assert_eq!(config.dynamo.write_shards, 64);
        assert_eq!(
            config.dynamo.message_retention,
            std::time::Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(config.secrets.prefix, "holub/");
        for (name, bad) in [
            ("HOLUB_MESSAGE_RETENTION_DAYS", "0"),
            ("HOLUB_MESSAGE_RETENTION_DAYS", "ninety"),
            ("HOLUB_INDEX_SHARDS", "0"),
            ("HOLUB_WRITE_SHARDS", "0"),
        ] {
            let mut pairs = REQUIRED.to_vec();
            pairs.push((name, bad));
            let err = AwsConfig::from_values(env(&pairs)).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
        let err = AwsConfig::from_values(env(&REQUIRED[1..])).unwrap_err();
        assert!(err.contains("HOLUB_MESSAGES_TABLE"), "{err}");
    }
}
