//! The dispatch handler driven by `events/sqs-dispatch-batch.json`, the same file that
//! `cargo lambda invoke --data-file` takes, over the real SQLite store and the built-in
//! provider simulator.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Utc;
use holub_shared::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
use holub_shared::domain::{Message, MessageStatus, TenantId, TenantLimits};
use holub_shared::ports::{MessageStore, Queue, SystemClock};

mod common;

use common::{queued, simulated_dispatcher};

const EVENT: &str = include_str!("../../../events/sqs-dispatch-batch.json");
const CALLBACKS: &str = include_str!("../../../events/sqs-callbacks-batch.json");

#[tokio::test]
async fn only_the_poison_record_is_reported_and_redelivery_sends_nothing_twice() {
    let dir = std::env::temp_dir().join(format!("holub-dispatch-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let backend = SqliteBackend::open(
        &dir.join("holub.db"),
        SqliteConfig {
            sync: SyncMode::Normal,
            ..SqliteConfig::default()
        },
    )
    .unwrap();
    let store: Arc<dyn MessageStore> = Arc::new(backend.clone());
    let queue: Arc<dyn Queue> = Arc::new(backend.clone());
    let tenant: TenantId = "ten_01JV7Q8M4X2K9T3N5R6B8C0D1E".parse().unwrap();
    let ids = ["01JV7Q9A1B2C3D4E5F6G7H8J9K", "01JV7Q9A1B2C3D4E5F6G7H8J9M"];
    let messages: Vec<Message> = ids
        .iter()
        .map(|id| queued(&tenant, id.parse().unwrap(), "0671234567"))
        .collect();
    store.insert(&messages, None).await.unwrap();

    let (sim, dispatcher) =
        simulated_dispatcher(store.clone(), &backend, TenantLimits::default()).await;

    for _ in 0..2 {
        let event: SqsEvent = serde_json::from_str(EVENT).unwrap();
        let response = holub_dispatch::sqs_batch(&dispatcher, queue.as_ref(), event).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e02"]);
    }
    for id in ids {
        let m = store
            .get(&tenant, &id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.status, MessageStatus::Sent);
        assert_eq!(m.provider.as_deref(), Some("simulator"));
        assert_eq!(m.attempts, 1);
    }
    let stats = sim.stats();
    assert_eq!(stats.accepted, 2);
    assert_eq!(
        stats.duplicates, 0,
        "the redelivered batch sent nothing again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_callback_is_signed_and_delivered_and_the_poison_record_reported() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use holub_shared::ports::{Secret, SecretStore};
    use holub_shared::services::callbacks::{
        CallbackConfig, CallbackSender, signing_secret_name, verify,
    };

    let dir = std::env::temp_dir().join(format!("holub-callback-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let backend = SqliteBackend::open(&dir.join("holub.db"), SqliteConfig::default()).unwrap();
    let queue: Arc<dyn Queue> = Arc::new(backend.clone());
    let secrets = Arc::new(holub_shared::adapters::file_secrets::FileSecretStore::in_dir(&dir));

    // A customer endpoint that checks the signature.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, serde_json::Value)>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let signature = headers
                    .get("holub-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let ok = verify(b"whsec_events", signature, &body, Utc::now().timestamp());
                let _ = tx.send((ok, serde_json::from_slice(&body).unwrap_or_default()));
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let tenant: TenantId = "ten_01JV7Q8M4X2K9T3N5R6B8C0D1E".parse().unwrap();
    secrets
        .put(&signing_secret_name(&tenant), &Secret::new("whsec_events"))
        .await
        .unwrap();
    let sender = CallbackSender::new(secrets, Arc::new(SystemClock), CallbackConfig::default());

    // The job names the customer's URL: here, the endpoint above.
    let event: SqsEvent =
        serde_json::from_str(&CALLBACKS.replace("https://hooks.example.com/holub", &hook)).unwrap();
    let response = holub_dispatch::sqs_batch(&sender, queue.as_ref(), event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c12"]);
    let (signed, body) = rx.recv().await.unwrap();
    assert!(signed);
    // Both events of the job, in one POST.
    let events = body.as_array().expect("an array of events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["status"], "delivered");
    assert_eq!(
        events[1]["event_id"],
        "01JV7Q9A1B2C3D4E5F6G7H8J9K.delivered"
    );
    assert_eq!(events[1]["message_id"], "01JV7Q9A1B2C3D4E5F6G7H8J9K");
    assert_eq!(events[0]["status"], "sent");
    assert_eq!(events[0]["reference"], "order-1842");

    // Six full jobs of one URL in one batch: two POSTs, 500 events and 100.
    let full = serde_json::json!({
        "tenant_id": tenant.as_str(),
        "url": hook,
        "events": (0..100).map(|_| events[1].clone()).map(|mut e| {
            for wire_only in ["type", "event_id"] {
                e.as_object_mut().unwrap().remove(wire_only);
            }
            e
        }).collect::<Vec<_>>(),
    })
    .to_string();
    let batch: SqsEvent = serde_json::from_value(serde_json::json!({
        "Records": (0..6).map(|i| serde_json::json!({
            "messageId": format!("full-{i}"),
            "receiptHandle": format!("handle-{i}"),
            "body": full,
            "attributes": {"ApproximateReceiveCount": "1"},
            "eventSource": "aws:sqs",
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let response = holub_dispatch::sqs_batch(&sender, queue.as_ref(), batch).await;
    assert!(response.batch_item_failures.is_empty());
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let (signed, body) = rx.recv().await.unwrap();
        assert!(signed);
        sizes.push(body.as_array().unwrap().len());
    }
    sizes.sort_unstable();
    assert_eq!(sizes, [100, 500]);
    let _ = std::fs::remove_dir_all(&dir);
}
