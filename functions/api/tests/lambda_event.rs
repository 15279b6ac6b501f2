//! The API function's handler path: an API Gateway HTTP API event (`events/`), turned into a
//! request by `lambda_http` exactly as the Lambda runtime does, served by the same Router
//! over DynamoDB and SQS served by moto (started by `scripts/test`).

use std::sync::Arc;
use std::time::Duration;

use holub_shared::adapters::aws::{
    AwsBackend, AwsClients, AwsConfig, Credentials, Region, sdk_config_loader,
};
use holub_shared::adapters::dynamo::{DynamoConfig, create_tables};
use holub_shared::adapters::kms::create_master_key;
use holub_shared::adapters::secrets_manager::SecretsConfig;
use holub_shared::adapters::sqs::create_queues;
use holub_shared::domain::{
    ApiKeyRecord, AuditAction, MessageStatus, Network, Origin, Registration, SenderId, TenantId,
};
use holub_shared::ports::store::Tenant;
use holub_shared::ports::{MessageStore, Queue, QueueName, TenantStore};
use holub_shared::runtime::{Holub, Ports, Settings, Target};
use holub_shared::services::accounts::hash_key;
use tower::ServiceExt;

const EVENT: &str = include_str!("../../../events/apigw-v2-send-message.json");
const KEY: &str = "hk_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// The moto endpoint, or `None` (skip) outside CI when it is not running.
fn endpoint() -> Option<String> {
    match std::env::var("HOLUB_TEST_AWS_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "HOLUB_TEST_AWS_ENDPOINT is not set: scripts/test starts moto and sets it"
            );
            eprintln!("skipping: HOLUB_TEST_AWS_ENDPOINT is not set");
            None
        }
    }
}

async fn call(app: axum::Router, event: &str) -> (u16, serde_json::Value) {
    let request = lambda_http::request::from_str(event).expect("an API Gateway v2 event");
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let response = app.oneshot(request).await.expect("the router answers");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_gateway_event_is_accepted_stored_and_queued_once() {
    let Some(endpoint) = endpoint() else {
        return;
    };
    let sdk = sdk_config_loader()
        .endpoint_url(endpoint)
        .region(Region::new("eu-central-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "holub-api",
        ))
        .load()
        .await;
    let clients = AwsClients::new(&sdk);
    let prefix = format!("holub-api-event-{}", std::process::id());
    let dynamo = DynamoConfig::with_prefix(&prefix);
    create_tables(&clients.dynamodb, &dynamo).await.unwrap();
    let queues = create_queues(&clients.sqs, &prefix, 5).await.unwrap();
    let kms_key_id = create_master_key(&clients.kms, &prefix).await.unwrap();
    let aws = AwsBackend::with_clients(
        clients,
        AwsConfig {
            dynamo,
            queues,
            secrets: SecretsConfig::with_prefix(format!("{prefix}/")),
            kms_key_id,
        },
    );
    let tenant = Tenant {
        id: TenantId::generate(chrono::Utc::now()),
        name: "Lambda".into(),
        created_at: chrono::Utc::now(),
    };
    // A key from before key ids (`hk_…`): the event carries it.
    let origin = Origin::operator();
    let audit = origin.entry(
        &tenant.id,
        tenant.created_at,
        AuditAction::TenantCreate,
        "tenant",
        None,
        None,
    );
    aws.store
        .create_tenant(
            &tenant,
            &ApiKeyRecord::legacy(tenant.id.clone(), hash_key(KEY)),
            &audit,
        )
        .await
        .unwrap();
    let store: Arc<dyn MessageStore> = Arc::new(aws.store.clone());
    let queue: Arc<dyn Queue> = Arc::new(aws.queue.clone());
    let settings = Settings::from_values(std::iter::empty()).unwrap();
    let holub = Holub::new(Ports::aws(&aws), settings, Target::Aws);
    let sender = SenderId::parse("Holub").unwrap();
    holub
        .senders
        .grant(
            &tenant.id,
            &sender,
            &Network::ALL,
            Registration::Active,
            &origin,
        )
        .await
        .unwrap();
    let app = holub_api::router(holub_api::AppState::new(&holub));

    let (status, body) = call(app.clone(), EVENT).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["to"], "+380671234567");
    assert_eq!(body["encoding"], "UCS-2");
    let id = body["id"].as_str().unwrap().parse().unwrap();
    let stored = store.get(&tenant.id, &id).await.unwrap().unwrap();
    assert_eq!(stored.status, MessageStatus::Queued);

    // The same event again (a client retry with its Idempotency-Key): the same answer, and
    // no second message or job.
    let (again, replay) = call(app, EVENT).await;
    assert_eq!(again, 202);
    assert_eq!(replay, body);
    let jobs = queue
        .receive(
            QueueName::Dispatch,
            10,
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1, "one dispatch job");
    assert!(jobs[0].body.contains(&id.to_string()));
}
