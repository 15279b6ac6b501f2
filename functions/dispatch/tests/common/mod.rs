//! What the dispatch function's tests share: a queued message, and a dispatcher over a store
//! that sends through the provider simulator (receipts held back an hour, so messages stay
//! `sent`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use holub_shared::adapters::sqlite::SqliteBackend;
use holub_shared::domain::{
    Encoding, Message, MessageId, MessageStatus, PhoneNumber, SenderId, StatusChange, StatusSet,
    TenantId, TenantLimits,
};
use holub_shared::ports::{MessageStore, SmsProvider, SystemClock};
use holub_shared::services::dispatch::DispatchConfig;
use holub_shared::services::gateway::{BreakerConfig, Gateway, Member};
use holub_shared::services::{Dispatcher, Limits};
use holub_simulator::{Simulator, SimulatorConfig, SimulatorProvider};

/// A message of `tenant` to `to`, queued now, valid for an hour.
pub fn queued(tenant: &TenantId, id: MessageId, to: &str) -> Message {
    let now = Utc::now();
    Message {
        id,
        tenant_id: tenant.clone(),
        batch_id: None,
        to: PhoneNumber::parse(to).unwrap(),
        from: SenderId::parse("Holub").unwrap(),
        text: "Ваш код: 4821".into(),
        encoding: Encoding::Ucs2,
        segments: 1,
        status: MessageStatus::Queued,
        created_at: now,
        updated_at: now,
        send_at: None,
        expires_at: now + chrono::Duration::hours(1),
        callback_url: None,
        callback_statuses: StatusSet::ALL,
        reference: None,
        metadata: None,
        provider: None,
        provider_message_id: None,
        cost: None,
        error: None,
        attempts: 0,
        history: vec![StatusChange {
            status: MessageStatus::Queued,
            at: now,
        }],
        links: Vec::new(),
        clicks: 0,
        bot_clicks: 0,
        clicked_at: None,
        category: Default::default(),
        opt_out: None,
    }
}

/// A dispatcher over `store` (and `backend`'s consent ledger and limits; `defaults` for
/// tenants without limits of their own) whose one provider is a simulator started here
/// (returned too, for its statistics).
pub async fn simulated_dispatcher(
    store: Arc<dyn MessageStore>,
    backend: &SqliteBackend,
    defaults: TenantLimits,
) -> (Simulator, Dispatcher) {
    let sim = Simulator::start(SimulatorConfig {
        receipt_delay: Duration::from_secs(3600),
        ..SimulatorConfig::default()
    })
    .await
    .unwrap();
    let provider: Arc<dyn SmsProvider> = Arc::new(
        SimulatorProvider::new(
            &sim.base_url(),
            SimulatorConfig::default().api_token,
            "simulator",
        )
        .unwrap(),
    );
    let gateway = Gateway::new(
        vec![Member {
            name: "simulator".into(),
            provider,
            messages_per_second: None,
            price_per_part: None,
        }],
        Vec::new(),
        BreakerConfig::default(),
    )
    .unwrap();
    let limits = Arc::new(Limits::new(
        Arc::new(backend.clone()),
        Arc::new(backend.clone()),
        Arc::new(SystemClock),
        defaults,
    ));
    let dispatcher = Dispatcher::new(
        store,
        Arc::new(gateway),
        Arc::new(SystemClock),
        Arc::new(backend.clone()),
        limits,
        DispatchConfig::default(),
    );
    (sim, dispatcher)
}
