//! The composition root: one place that turns a backend's ports and the [`Settings`] into
//! Holub's services. `holub serve` and every Lambda function build their services here and
//! differ only in the backend they choose and what triggers the work: a queue loop or an
//! SQS batch ([`consumers`]), a timer or a schedule ([`tasks`]), `axum::serve` or API
//! Gateway.

pub mod consumers;
pub mod settings;
pub mod tasks;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod sqs;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::TenantLimits;
use crate::ports::{
    CampaignStore, Clock, ConsentStore, ContactStore, CounterStore, MessageStore, ProviderLimits,
    Queue, ReplayStore, Retention, SecretStore, StatsStore, TemplateStore, TenantStore, UserStore,
};
use crate::services::callbacks::CallbackConfig;
use crate::services::campaigns::CampaignDeps;
use crate::services::dispatch::DispatchConfig;
use crate::services::gateway::Gateway;
use crate::services::intake::IntakeConfig;
use crate::services::poller::{PollConfig, Poller};
use crate::services::replays::REPLAY_WINDOW;
use crate::services::sweeper::SweeperConfig;
use crate::services::{
    Accounts, Analytics, CallbackSender, Campaigns, Consents, Contacts, Dispatcher, Intake, Limits,
    Messages, Receipts, ReplayGuard, Senders, Sweeper, Templates, Users,
};

pub use consumers::{Consumer, Finished, consume_until_stopped, settle};
pub use settings::Settings;
pub use tasks::{Task, TaskTable};

#[cfg(feature = "aws")]
pub use sqs::sqs_batch;

/// How long a received callback job stays hidden: above a callback's timeout (5 s).
pub const CALLBACK_VISIBILITY: Duration = Duration::from_secs(30);

/// How long a received campaign chunk job stays hidden: well above a chunk's work (a few
/// hundred messages stored), so a chunk is not handed out twice while it runs.
pub const CAMPAIGN_VISIBILITY: Duration = Duration::from_secs(120);

/// Scheduled messages released per run of the release task: up to 50 rounds of 1,000.
pub const RELEASE_ROUNDS: usize = 50;

/// How long an `Idempotency-Key` is remembered (as DynamoDB's TTL keeps it on AWS).
pub const IDEMPOTENCY_KEPT: Duration = Duration::from_secs(24 * 3600);

/// Status events one run of the rollup folds at most (the next run takes the rest).
pub const ROLLUP_BUDGET: usize = 1_000_000;

/// Expired replay digests (and old messages, counters) forgotten per run.
const FORGET_BATCH: usize = 10_000;

/// Where Holub runs, for the few defaults that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One machine, one process, the embedded store.
    Embedded,
    /// The AWS deployment: a hosted service for others.
    Aws,
}

/// A backend's ports: everything the services reach the outside world through, except the
/// providers (which only dispatch, receipts and polling need).
#[derive(Clone)]
pub struct Ports {
    pub store: Arc<dyn MessageStore>,
    pub tenants: Arc<dyn TenantStore>,
    pub queue: Arc<dyn Queue>,
    pub secrets: Arc<dyn SecretStore>,
    pub replays: Arc<dyn ReplayStore>,
    pub counters: Arc<dyn CounterStore>,
    /// Each provider's rate grants and breaker, shared by every instance that sends.
    pub provider_limits: Arc<dyn ProviderLimits>,
    pub stats: Arc<dyn StatsStore>,
    pub consent: Arc<dyn ConsentStore>,
    pub contacts: Arc<dyn ContactStore>,
    pub templates: Arc<dyn TemplateStore>,
    pub campaigns: Arc<dyn CampaignStore>,
    /// The web console's users, sessions and failed sign-ins.
    pub users: Arc<dyn UserStore>,
    pub clock: Arc<dyn Clock>,
}

#[cfg(feature = "sqlite")]
impl Ports {
    /// The embedded backend: one SQLite database for the stores and the queue.
    pub fn sqlite(
        db: &crate::adapters::sqlite::SqliteBackend,
        secrets: Arc<dyn SecretStore>,
    ) -> Self {
        Ports {
            store: Arc::new(db.clone()),
            tenants: Arc::new(db.clone()),
            queue: Arc::new(db.clone()),
            secrets,
            replays: Arc::new(db.clone()),
            counters: Arc::new(db.clone()),
            provider_limits: Arc::new(db.clone()),
            stats: Arc::new(db.clone()),
            consent: Arc::new(db.clone()),
            contacts: Arc::new(db.clone()),
            templates: Arc::new(db.clone()),
            campaigns: Arc::new(db.clone()),
            users: Arc::new(db.clone()),
            clock: Arc::new(crate::ports::SystemClock),
        }
    }
}

/// Holub's services over one backend, each made once.
pub struct Holub {
    pub ports: Ports,
    pub settings: Settings,
    pub target: Target,
    pub accounts: Arc<Accounts>,
    pub senders: Arc<Senders>,
    pub limits: Arc<Limits>,
    pub intake: Arc<Intake>,
    pub messages: Arc<Messages>,
    pub receipts: Arc<Receipts>,
    pub replays: Arc<ReplayGuard>,
    pub callbacks: Arc<CallbackSender>,
    pub sweeper: Arc<Sweeper>,
    pub analytics: Arc<Analytics>,
    pub consents: Arc<Consents>,
    pub contacts: Arc<Contacts>,
    pub templates: Arc<Templates>,
    pub campaigns: Arc<Campaigns>,
    pub users: Arc<Users>,
}

impl Holub {
    pub fn new(ports: Ports, settings: Settings, target: Target) -> Self {
        let p = &ports;
        let private_callbacks = settings.private_callbacks(target == Target::Embedded);
        let intake = IntakeConfig {
            allow_private_callbacks: private_callbacks,
            short_link_base: settings.short_link_base.clone(),
            ..IntakeConfig::default()
        };
        let sweeper = SweeperConfig {
            requeue_after: settings.requeue_after(),
            ..SweeperConfig::default()
        };
        let embedded = target == Target::Embedded;
        let senders = Arc::new(
            Senders::new(p.tenants.clone(), p.clock.clone()).open(settings.open_senders(embedded)),
        );
        let limits = Arc::new(Limits::new(
            p.tenants.clone(),
            p.counters.clone(),
            p.clock.clone(),
            TenantLimits::defaults_for(embedded),
        ));
        let messages = Arc::new(Messages::new(
            p.store.clone(),
            p.clock.clone(),
            limits.clone(),
        ));
        let templates = Arc::new(Templates::new(
            p.templates.clone(),
            limits.clone(),
            p.clock.clone(),
            settings.short_link_base.clone(),
        ));
        let analytics = Arc::new(Analytics::new(p.stats.clone(), p.campaigns.clone()));
        let intake = Arc::new(Intake::new(
            p.store.clone(),
            p.queue.clone(),
            p.clock.clone(),
            senders.clone(),
            limits.clone(),
            p.consent.clone(),
            intake,
        ));
        let campaigns = Arc::new(Campaigns::new(CampaignDeps {
            store: p.campaigns.clone(),
            contacts: p.contacts.clone(),
            templates: p.templates.clone(),
            messages_store: p.store.clone(),
            queue: p.queue.clone(),
            clock: p.clock.clone(),
            intake: intake.clone(),
            messages: messages.clone(),
            senders: senders.clone(),
            limits: limits.clone(),
            analytics: analytics.clone(),
            templates_service: templates.clone(),
        }));
        Holub {
            campaigns,
            accounts: Arc::new(Accounts::new(
                p.tenants.clone(),
                p.secrets.clone(),
                p.clock.clone(),
            )),
            intake,
            senders,
            messages,
            templates,
            limits,
            receipts: Arc::new(Receipts::new(p.store.clone(), p.clock.clone())),
            replays: Arc::new(ReplayGuard::new(
                p.replays.clone(),
                p.clock.clone(),
                REPLAY_WINDOW,
            )),
            callbacks: Arc::new(CallbackSender::new(
                p.secrets.clone(),
                p.clock.clone(),
                CallbackConfig {
                    public_only: !private_callbacks,
                    ..CallbackConfig::default()
                },
            )),
            sweeper: Arc::new(Sweeper::new(
                p.store.clone(),
                p.queue.clone(),
                p.clock.clone(),
                sweeper,
            )),
            analytics,
            consents: Arc::new(Consents::new(
                p.consent.clone(),
                p.store.clone(),
                p.campaigns.clone(),
                p.clock.clone(),
            )),
            contacts: Arc::new(Contacts::new(p.contacts.clone(), p.clock.clone())),
            users: Arc::new(Users::new(
                p.users.clone(),
                p.tenants.clone(),
                p.clock.clone(),
            )),
            ports,
            settings,
            target,
        }
    }

    /// The dispatcher over the providers of `gateway`.
    pub fn dispatcher(&self, gateway: Arc<Gateway>) -> Arc<Dispatcher> {
        Arc::new(Dispatcher::new(
            self.ports.store.clone(),
            gateway,
            self.ports.clock.clone(),
            self.ports.consent.clone(),
            self.limits.clone(),
            DispatchConfig {
                orphan_after: self.settings.orphan_after(),
                ..DispatchConfig::default()
            },
        ))
    }

    /// Receipt polling of the providers of `gateway` that do not push, and reconciliation
    /// of overdue receipts at those that push and can be asked.
    pub fn poller(&self, gateway: Arc<Gateway>) -> Arc<Poller> {
        Arc::new(Poller::new(
            self.ports.store.clone(),
            gateway,
            self.receipts.clone(),
            self.ports.clock.clone(),
            PollConfig {
                batch: usize::try_from(self.settings.poll_batch).unwrap_or(usize::MAX),
                reconcile_after: self.settings.reconcile_after(),
                started: (self.target == Target::Embedded).then(|| self.ports.clock.now()),
            },
        ))
    }

    /// The analytics rollup: status events folded into statistics. `holub serve` runs it in
    /// its task table; on AWS it is a function of its own (`functions/rollup`), since it
    /// alone reads the messages table's stream and writes the statistics.
    pub fn rollup(&self) -> Task {
        Task::over(
            "rollup",
            self.settings.rollup_every(),
            self.ports.stats.clone(),
            |stats| async move {
                let rolled = stats.roll_up(ROLLUP_BUDGET).await?;
                if rolled.events > 0 || rolled.unreadable > 0 {
                    tracing::info!(
                        events = rolled.events,
                        unreadable = rolled.unreadable,
                        "status events rolled up"
                    );
                }
                Ok(rolled.events)
            },
        )
    }

    /// The periodic tasks, in the order a scheduled run takes them.
    pub fn tasks(&self, gateway: Arc<Gateway>) -> TaskTable {
        let sweeps = Duration::from_secs(5);
        TaskTable::new(vec![
            // Twice a second, so a scheduled message leaves within a second of its time.
            Task::over(
                "release",
                Duration::from_millis(500),
                self.sweeper.clone(),
                |s| async move {
                    match s.release_all(RELEASE_ROUNDS).await {
                        (_, Some(e)) => Err(e.into()),
                        (n, None) => Ok(n),
                    }
                },
            ),
            // Jobs intake could not queue (a full disk, a queue outage), sent again as soon
            // as the queue takes them; the requeue sweep is the backstop after a crash.
            Task::over(
                "requeue_failed",
                Duration::from_secs(1),
                self.intake.clone(),
                |i| async move { Ok(i.requeue_failed().await?) },
            ),
            Task::over("requeue", sweeps, self.sweeper.clone(), |s| async move {
                Ok(s.requeue_stale().await?)
            }),
            Task::over("expire", sweeps, self.sweeper.clone(), |s| async move {
                Ok(s.expire().await?)
            }),
            Task::over(
                "poll",
                self.settings.poll_every(),
                self.poller(gateway),
                |p| async move { Ok(p.poll().await) },
            ),
            Task::over(
                "forget_replays",
                Duration::from_secs(60),
                self.replays.clone(),
                |r| async move { Ok(r.forget_expired(FORGET_BATCH).await?) },
            ),
            Task::over(
                "retention",
                Duration::from_secs(60),
                Arc::new((self.ports.clone(), self.settings.message_retention())),
                |p: Arc<(Ports, Duration)>| async move {
                    let (ports, retention) = (&p.0, p.1);
                    let now = ports.clock.now();
                    let tenants = ports
                        .tenants
                        .retention_days()
                        .await?
                        .into_iter()
                        .map(|(t, days)| (t, now - chrono::Duration::days(i64::from(days))))
                        .collect();
                    let messages = Retention {
                        before: now - chrono::Duration::from_std(retention)?,
                        tenants,
                    };
                    let idempotency_before = now - chrono::Duration::from_std(IDEMPOTENCY_KEPT)?;
                    let forgotten = ports
                        .store
                        .forget_old(&messages, idempotency_before, FORGET_BATCH)
                        .await?;
                    Ok(forgotten + ports.store.seal_legacy().await?)
                },
            ),
            Task::over(
                "forget_counters",
                Duration::from_secs(60),
                Arc::new(self.ports.clone()),
                |p: Arc<Ports>| async move {
                    let now = p.clock.now();
                    Ok(p.counters.forget_expired(now, FORGET_BATCH).await?)
                },
            ),
        ])
    }
}
