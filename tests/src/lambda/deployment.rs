//! One deployment of Holub's functions on an AWS emulator (moto): tables, queues and a
//! secrets prefix of its own, a tenant, and the environment every function of it is
//! configured with.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::Utc;
use holub_shared::adapters::aws::{
    AwsBackend, AwsClients, AwsConfig, Credentials, Region, sdk_config_loader,
};
use holub_shared::adapters::dynamo::{DynamoConfig, create_tables};
use holub_shared::adapters::kms::create_master_key;
use holub_shared::adapters::secrets_manager::SecretsConfig;
use holub_shared::adapters::sqs::{QueueUrls, create_queues};
use holub_shared::domain::{
    ApiKeyRecord, AuditAction, Network, Origin, Registration, SenderId, TenantId,
};
use holub_shared::ports::SystemClock;
use holub_shared::ports::store::Tenant;
use holub_shared::ports::{Secret, SecretStore, TenantStore};
use holub_shared::services::Senders;
use holub_shared::services::accounts::hash_key;

use super::{FunctionConfig, InvokeError, LambdaFunction};

pub const REGION: &str = "eu-central-1";

/// A name prefix no other deployment of any run uses; short, because SQS queue names (with
/// `-callbacks-dlq` appended) hold at most 80 characters.
pub fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let short: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(20)
        .collect();
    format!(
        "l{short}-{}-{:x}-{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The sender a deployment's tenant is registered for, active on every network.
pub const TEST_SENDER: &str = "Holub";

pub struct Deployment {
    pub prefix: String,
    pub endpoint: String,
    /// The adapters over this deployment's resources, for setting up and checking.
    pub aws: AwsBackend,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: DynamoConfig,
    pub queues: QueueUrls,
    pub secrets_prefix: String,
    pub kms_key_id: String,
    pub tenant_id: TenantId,
}

impl Deployment {
    /// Creates the resources at `endpoint` and a tenant whose API key is `api_key`.
    pub async fn create(endpoint: &str, name: &str, api_key: &str) -> Result<Self, String> {
        let sdk = sdk_config_loader()
            .endpoint_url(endpoint)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "holub-lambda",
            ))
            .load()
            .await;
        let clients = AwsClients::new(&sdk);
        let prefix = unique_prefix(name);
        let mut dynamo = DynamoConfig::with_prefix(&prefix);
        create_tables(&clients.dynamodb, &dynamo)
            .await
            .map_err(|e| format!("creating the tables at {endpoint}: {e}"))?;
        // What the template hands the rollup function (`MessagesTable.StreamArn`).
        dynamo.messages_stream_arn = clients
            .dynamodb
            .describe_table()
            .table_name(&dynamo.messages_table)
            .send()
            .await
            .map_err(|e| format!("describing the messages table: {e}"))?
            .table()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_owned);
        let queues = create_queues(&clients.sqs, &prefix, 5)
            .await
            .map_err(|e| format!("creating the queues at {endpoint}: {e}"))?;
        let secrets_prefix = format!("{prefix}/");
        let sqs = clients.sqs.clone();
        let kms_key_id = create_master_key(&clients.kms, &prefix)
            .await
            .map_err(|e| format!("at {endpoint}: {e}"))?;
        let aws = AwsBackend::with_clients(
            clients,
            AwsConfig {
                dynamo: dynamo.clone(),
                queues: queues.clone(),
                secrets: SecretsConfig::with_prefix(&secrets_prefix),
                kms_key_id: kms_key_id.clone(),
            },
        );
        let tenant = Tenant {
            id: TenantId::generate(Utc::now()),
            name: format!("Lambda {name}"),
            created_at: Utc::now(),
        };
        // The key in the form keys had before key ids (`hk_…`, every scope), so the functions
        // are also tested with keys made by earlier versions.
        let key = ApiKeyRecord::legacy(tenant.id.clone(), hash_key(api_key));
        let origin = Origin::operator();
        let audit = origin.entry(
            &tenant.id,
            Utc::now(),
            AuditAction::TenantCreate,
            "tenant",
            None,
            None,
        );
        aws.store
            .create_tenant(&tenant, &key, &audit)
            .await
            .map_err(|e| format!("creating the tenant: {e}"))?;
        let sender = SenderId::parse(TEST_SENDER).map_err(|e| e.to_string())?;
        Senders::new(Arc::new(aws.store.clone()), Arc::new(SystemClock))
            .grant(
                &tenant.id,
                &sender,
                &Network::ALL,
                Registration::Active,
                &origin,
            )
            .await
            .map_err(|e| format!("registering the sender: {e}"))?;
        holub_shared::services::Limits::new(
            Arc::new(aws.store.clone()),
            Arc::new(aws.store.clone()),
            Arc::new(SystemClock),
            Default::default(),
        )
        .set(&tenant.id, &crate::wide_limits(), &origin)
        .await
        .map_err(|e| format!("setting the limits: {e}"))?;
        Ok(Deployment {
            prefix,
            endpoint: endpoint.to_owned(),
            aws,
            sqs,
            dynamo,
            queues,
            secrets_prefix,
            kms_key_id,
            tenant_id: tenant.id,
        })
    }

    /// Stores a secret (provider credentials) under this deployment's prefix.
    pub async fn put_secret(&self, name: &str, value: &serde_json::Value) -> Result<(), String> {
        self.aws
            .secrets
            .put(name, &Secret::new(value.to_string()))
            .await
            .map_err(|e| format!("storing secret {name}: {e}"))
    }

    /// The variables every function of this deployment is configured with, but for its
    /// access key id ([`Deployment::config`]); `routes` is `HOLUB_ROUTES` (a route table in
    /// TOML).
    pub fn env(&self, routes: &str) -> Vec<(&'static str, String)> {
        let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "testing".into());
        vec![
            ("HOLUB_MESSAGES_TABLE", self.dynamo.messages_table.clone()),
            (
                "HOLUB_IDEMPOTENCY_TABLE",
                self.dynamo.idempotency_table.clone(),
            ),
            ("HOLUB_TENANTS_TABLE", self.dynamo.tenants_table.clone()),
            ("HOLUB_STATS_TABLE", self.dynamo.stats_table.clone()),
            (
                "HOLUB_MESSAGES_STREAM_ARN",
                self.dynamo.messages_stream_arn.clone().unwrap_or_default(),
            ),
            ("HOLUB_INDEX_SHARDS", self.dynamo.index_shards.to_string()),
            ("HOLUB_WRITE_SHARDS", self.dynamo.write_shards.to_string()),
            ("HOLUB_DISPATCH_QUEUE_URL", self.queues.dispatch.clone()),
            ("HOLUB_CALLBACKS_QUEUE_URL", self.queues.callbacks.clone()),
            ("HOLUB_CAMPAIGNS_QUEUE_URL", self.queues.campaigns.clone()),
            ("HOLUB_SECRETS_PREFIX", self.secrets_prefix.clone()),
            ("HOLUB_KMS_KEY_ID", self.kms_key_id.clone()),
            ("HOLUB_METRICS_NAMESPACE", format!("Holub/{}", self.prefix)),
            ("HOLUB_ROUTES", routes.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_SECRET_ACCESS_KEY", var("AWS_SECRET_ACCESS_KEY")),
        ]
    }

    /// The configuration of function `name` (its binary's name) of this deployment. Its
    /// calls are signed with an access key id of its own, `name`, as each function has a
    /// role of its own on AWS: a recording of the emulator's requests then tells whose
    /// call each was (`infra/check_iam.py` checks them against the roles). moto takes any
    /// key id.
    pub fn config(&self, name: &str, routes: &str) -> FunctionConfig {
        let mut config = FunctionConfig::new(format!("{}-{name}", self.prefix))
            .envs(self.env(routes))
            .env("AWS_ACCESS_KEY_ID", name);
        config.region = REGION.to_owned();
        config
    }

    /// Starts `bin` as function `name` of this deployment and waits for its init.
    pub async fn start(
        &self,
        bin: &Path,
        name: &str,
        routes: &str,
    ) -> Result<LambdaFunction, InvokeError> {
        LambdaFunction::start_ready(bin, self.config(name, routes)).await
    }
}
