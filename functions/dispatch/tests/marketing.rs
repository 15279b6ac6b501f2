//! Marketing at dispatch, over the real SQLite store and the provider simulator: checked
//! again at the last moment, a message to a number without consent is rejected unsent, and
//! one claimed outside its tenant's sending window is scheduled for the window's opening,
//! its claim's attempt taken back. A transactional one beside them goes out.

use chrono::{Timelike, Utc};
use holub_shared::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
use holub_shared::domain::{
    Category, ConsentChange, ConsentEntry, ConsentSource, Evidence, MessageId, MessageStatus,
    PhoneNumber, RecordedBy, SendingWindow, TenantId, TenantLimits, kyiv,
};
use holub_shared::ports::{ConsentStore, MessageStore};
use holub_shared::services::jobs::DispatchJob;
use std::sync::Arc;

mod common;

use common::{queued, simulated_dispatcher};

fn open(label: &str) -> SqliteBackend {
    let dir = std::env::temp_dir().join(format!("holub-dispatch-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    SqliteBackend::open(
        &dir.join("holub.db"),
        SqliteConfig {
            sync: SyncMode::Normal,
            ..SqliteConfig::default()
        },
    )
    .unwrap()
}

fn window(window: SendingWindow) -> TenantLimits {
    TenantLimits {
        marketing_window: window,
        ..TenantLimits::default()
    }
}

#[tokio::test]
async fn marketing_is_checked_again_when_it_is_sent() {
    let backend = open("consent");
    let tenant = TenantId::generate(Utc::now());
    let consented = PhoneNumber::parse("0671110001").unwrap();
    let entry = ConsentEntry {
        at: Utc::now(),
        recorded_at: Utc::now(),
        change: ConsentChange::Given {
            source: ConsentSource::App,
            evidence: Evidence::parse("in-app toggle").unwrap(),
        },
        recorded_by: RecordedBy::Subscriber,
    };
    backend.record(&tenant, &consented, &entry).await.unwrap();

    let mut with = queued(&tenant, MessageId::generate(Utc::now()), "0671110001");
    with.category = Category::Marketing;
    let mut without = queued(&tenant, MessageId::generate(Utc::now()), "0671110002");
    without.category = Category::Marketing;
    // No consent needed for a transactional one.
    let otp = queued(&tenant, MessageId::generate(Utc::now()), "0671110002");
    let store: Arc<dyn MessageStore> = Arc::new(backend.clone());
    let all = [with.clone(), without.clone(), otp.clone()];
    store.insert(&all, None).await.unwrap();

    let (sim, dispatcher) =
        simulated_dispatcher(store.clone(), &backend, window(SendingWindow::ALWAYS)).await;
    let jobs: Vec<Option<DispatchJob>> = all
        .iter()
        .map(|m| {
            Some(DispatchJob {
                tenant_id: tenant.clone(),
                id: m.id,
            })
        })
        .collect();
    dispatcher.handle_batch(&jobs).await;

    let read = |id| {
        let store = store.clone();
        let tenant = tenant.clone();
        async move { store.get(&tenant, &id).await.unwrap().unwrap() }
    };
    assert_eq!(read(with.id).await.status, MessageStatus::Sent);
    assert_eq!(read(otp.id).await.status, MessageStatus::Sent);
    let refused = read(without.id).await;
    assert_eq!(refused.status, MessageStatus::Rejected);
    assert_eq!(refused.error.unwrap().code, "consent_missing");
    assert!(refused.provider.is_none());
    assert_eq!(
        sim.stats().accepted,
        2,
        "the refused one never reached the provider"
    );
}

#[tokio::test]
async fn marketing_claimed_outside_its_window_waits_for_it() {
    let backend = open("window");
    let tenant = TenantId::generate(Utc::now());
    // A one-hour window closed now.
    let hour = kyiv::to_local(Utc::now()).hour();
    let closed: SendingWindow = if hour >= 2 {
        "00:00-01:00"
    } else {
        "12:00-13:00"
    }
    .parse()
    .unwrap();
    let number = PhoneNumber::parse("0671110003").unwrap();
    let entry = ConsentEntry {
        at: Utc::now(),
        recorded_at: Utc::now(),
        change: ConsentChange::Given {
            source: ConsentSource::Paper,
            evidence: Evidence::parse("form 3").unwrap(),
        },
        recorded_by: RecordedBy::Subscriber,
    };
    backend.record(&tenant, &number, &entry).await.unwrap();
    let mut m = queued(&tenant, MessageId::generate(Utc::now()), "0671110003");
    m.category = Category::Marketing;
    let store: Arc<dyn MessageStore> = Arc::new(backend.clone());
    store.insert(std::slice::from_ref(&m), None).await.unwrap();

    let (sim, dispatcher) = simulated_dispatcher(store.clone(), &backend, window(closed)).await;
    let job = Some(DispatchJob {
        tenant_id: tenant.clone(),
        id: m.id,
    });
    dispatcher.handle_batch(&[job]).await;
    let waiting = store.get(&tenant, &m.id).await.unwrap().unwrap();
    assert_eq!(waiting.status, MessageStatus::Scheduled);
    assert_eq!(waiting.attempts, 0, "waiting is no attempt");
    let send_at = waiting.send_at.expect("when the window opens");
    assert_eq!(send_at, closed.next_open(Utc::now()));
    assert_eq!(sim.stats().accepted, 0);
}
