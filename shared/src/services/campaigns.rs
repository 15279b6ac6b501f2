//! Campaigns: made with their estimate, started, paused, resumed, cancelled, and expanded
//! into messages a chunk at a time by jobs on the campaigns queue (`holub serve`'s queue
//! loop; on AWS an SQS queue feeding the campaigns function), so a campaign to a million
//! contacts starts at once and no run of anything is long.
//!
//! **Exactly once.** A job names the chunk it is for. The chunk's messages are stored with
//! an idempotency record under `campaign:<id>:<chunk>` that also keeps what the chunk did
//! (where the next one starts, what it skipped); the campaign's record then moves on to the
//! next chunk, stored only over the version it was read at. Whatever dies where — after the
//! messages, after the next job was queued, before the campaign moved on — the job comes
//! back, finds the chunk's record and does only what is left; a job for a chunk already
//! taken in does nothing. The next chunk's job is queued before the campaign moves on, so
//! no crash leaves a running campaign without one.
//!
//! **Pace.** Messages are spaced `60 / pace` seconds apart from the campaign's start, as
//! each message's `send_at`, and a chunk is expanded about half a minute before its first
//! message is due, so pausing stops the campaign within about a minute. A marketing
//! campaign expands only inside the tenant's sending window (it waits for the next opening
//! rather than piling up its messages for the morning).
//!
//! Contacts are read list by list, oldest first; a contact also on an earlier list of the
//! campaign is skipped there (it had its message from that list).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::campaign::{ChunkOutcome, Expansion};
use crate::domain::stats::Hour;
use crate::domain::{
    Campaign, CampaignError, CampaignEstimate, CampaignId, CampaignName, CampaignState, Category,
    IdempotencyKey, ListName, MessageStatus, Pace, SenderId, TemplateId, TenantId,
};
use crate::ports::campaigns::MAX_CAMPAIGN_PAGE;
use crate::ports::{
    CampaignStore, Clock, ContactQuery, ContactStore, ListQuery, MessageStore, Queue, QueueError,
    QueueName, StoreError, TemplateStore,
};

use super::intake::{ChunkPlan, ChunkRecipient, FieldError, Idempotency, IntakeError, StartField};
use super::jobs::{self, CampaignJob};
use super::{Analytics, Intake, JobOutcome, Limits, Messages, Senders};

/// Contacts one chunk expands at most.
pub const CHUNK: usize = 500;
/// How long before its first message is due a chunk is expanded.
const LEAD: Duration = Duration::from_secs(30);
/// The longest a job waits on the queue at once (SQS's longest delay); a campaign that
/// starts later is looked at again then.
const MAX_HOP: Duration = Duration::from_secs(900);
/// Contacts read for one chunk at most, those skipped as already on an earlier list
/// included.
const MAX_READ: usize = 4 * CHUNK;
/// How many times a change of a campaign that met another change is made again.
const ATTEMPTS: usize = 8;
/// How often, and how far apart, a job found ahead of its campaign reads it again before
/// it is put back on the queue: the change it waits for is usually milliseconds away.
const AHEAD_READS: usize = 10;
const AHEAD_PAUSE: Duration = Duration::from_millis(20);

/// `POST /v1/campaigns`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    /// 1 to 100 printable characters, not only spaces.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub name: String,
    /// The template sent (`tpl_…`); its category is the campaign's.
    #[cfg_attr(feature = "openapi", schema(pattern = "^tpl_[0-9A-HJKMNP-TV-Z]{26}$"))]
    pub template_id: String,
    /// Which version of it (default: the latest now). Fixed for the campaign's life.
    #[serde(default)]
    #[serde(deserialize_with = "super::intake::whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4294967295_u64))]
    pub template_version: Option<u64>,
    /// The lists whose contacts it goes to (a list named twice counts once); a contact on
    /// several gets one message.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10))]
    pub lists: Vec<String>,
    /// A registered sender of the account, as for a message.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^([A-Za-z][A-Za-z0-9]{2,10}|(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7})$"
        )
    )]
    pub from: String,
    /// RFC 3339; not before this (at most a year ahead). Default: when started.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub start_at: Option<String>,
    /// Messages a minute, evenly spaced (1 to 1,000,000). Default: as fast as the account's
    /// limits and the providers take them.
    #[serde(default)]
    #[serde(deserialize_with = "super::intake::whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    pub pace_per_minute: Option<u64>,
    /// As for a message: each message's links get short links of its own.
    #[serde(default)]
    pub track_links: bool,
    /// As for a message: seconds each message stays worth delivering (60 to 259200).
    #[serde(default)]
    #[serde(deserialize_with = "super::intake::whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 259200))]
    pub validity: Option<u64>,
}

/// What a campaign has done so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignProgress {
    /// Messages made from its contacts.
    pub expanded: u64,
    /// Contacts not sent to, per stable code (`consent_missing`, `consent_withdrawn`,
    /// `template_variable_missing`, `destination_not_allowed`, `velocity_limit_exceeded`,
    /// …).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, u64>))]
    pub skipped: BTreeMap<String, u64>,
    /// Of those, skipped for want of consent (none on record, or withdrawn).
    pub skipped_no_consent: u64,
    /// Subscribers who opted out through its messages' links.
    pub opted_out: u64,
    /// Its messages per status they have now, from the statistics (`null` in listings):
    /// `scheduled` and `queued` wait, `sent` are with a provider, `failed` include those
    /// stopped at dispatch by an opt-out that came in meanwhile.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, i64>>))]
    pub statuses: Option<BTreeMap<MessageStatus, i64>>,
    /// Its messages clicked by a person (with `track_links`; `null` in listings).
    pub clicked: Option<i64>,
    /// Delivered out of those with an outcome (`null` while none has one, and in listings).
    pub delivery_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignEstimateView {
    /// Contacts on its lists when it was made (a contact on two lists counts twice, one
    /// without consent counts too): an upper bound.
    pub recipients: u64,
    /// Parts of its shortest message (placeholders empty; with the opt-out line for
    /// marketing).
    pub segments_per_message: u32,
    /// `recipients` × `segments_per_message` × the account's price per part, in kopiykas.
    pub cost_kopiyky: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub state: CampaignState,
    /// Why it paused by itself (a spend cap's or a refusal's code), while so.
    pub stopped_by: Option<String>,
    pub template_id: String,
    pub template_version: u32,
    pub category: Category,
    pub lists: Vec<String>,
    pub from: String,
    pub start_at: Option<DateTime<Utc>>,
    pub pace_per_minute: Option<u32>,
    pub track_links: bool,
    pub validity: Option<u64>,
    /// The batch id its messages carry: filter `GET /v1/messages` and group the
    /// analytics by it.
    pub batch_id: String,
    pub estimate: CampaignEstimateView,
    pub progress: CampaignProgress,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CampaignPageView {
    pub campaigns: Vec<CampaignView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignsError {
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// Not in a state that allows it (`campaign_state_conflict`).
    #[error("{}", .0.message)]
    Conflict(FieldError),
    #[error("no such campaign")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queueing the campaign's work failed")]
    Queue(#[from] QueueError),
}

fn invalid(code: &'static str, field: &str, message: impl Into<String>) -> CampaignsError {
    CampaignsError::Invalid(FieldError::new(code, field, message))
}

impl From<CampaignError> for CampaignsError {
    fn from(e: CampaignError) -> Self {
        let field = FieldError::new(e.code(), e.field(), e.to_string());
        match e {
            CampaignError::State(..) => CampaignsError::Conflict(field),
            _ => CampaignsError::Invalid(field),
        }
    }
}

/// The services campaigns use.
pub struct CampaignDeps {
    pub store: Arc<dyn CampaignStore>,
    pub contacts: Arc<dyn ContactStore>,
    pub templates: Arc<dyn TemplateStore>,
    pub messages_store: Arc<dyn MessageStore>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub intake: Arc<Intake>,
    pub messages: Arc<Messages>,
    pub senders: Arc<Senders>,
    pub limits: Arc<Limits>,
    pub analytics: Arc<Analytics>,
    pub templates_service: Arc<super::Templates>,
}

pub struct Campaigns {
    d: CampaignDeps,
}

impl Campaigns {
    pub fn new(deps: CampaignDeps) -> Self {
        Campaigns { d: deps }
    }

    pub async fn create(
        &self,
        tenant: &TenantId,
        req: CampaignRequest,
    ) -> Result<CampaignView, CampaignsError> {
        let name = CampaignName::parse(&req.name)?;
        let template_id: TemplateId = req.template_id.parse().map_err(|_| {
            invalid(
                "template_id_invalid",
                "template_id",
                "template_id is a template's id (tpl_…)",
            )
        })?;
        let template = self
            .d
            .templates
            .get(
                tenant,
                &template_id,
                req.template_version
                    .map(|v| u32::try_from(v).unwrap_or(u32::MAX)),
            )
            .await?
            .ok_or_else(|| {
                invalid(
                    "template_not_found",
                    "template_id",
                    "the account has no such template (or version)",
                )
            })?;
        let mut lists = Vec::with_capacity(req.lists.len());
        for raw in &req.lists {
            let list = ListName::parse(raw)
                .map_err(|e| invalid("list_name_invalid", "lists", e.to_string()))?;
            // A list named twice (in any spacing) is the one list.
            if !lists.contains(&list) {
                lists.push(list);
            }
        }
        if lists.is_empty() || lists.len() > crate::domain::campaign::MAX_CAMPAIGN_LISTS {
            return Err(CampaignError::Lists.into());
        }
        let from =
            SenderId::parse(&req.from).map_err(|e| invalid(e.code(), "from", e.to_string()))?;
        self.d
            .senders
            .registry(tenant)
            .await?
            .registered(&from)
            .map_err(|e| invalid(e.code(), "from", e.to_string()))?;
        let pace = req
            .pace_per_minute
            .map(|n| Pace::per_minute(u32::try_from(n).unwrap_or(u32::MAX)))
            .transpose()?;
        let now = self.d.clock.now();
        let config = self.d.intake.config();
        let start_at = config
            .start(&StartField::START_AT, req.start_at.as_deref(), now)
            .map_err(CampaignsError::Invalid)?;
        config
            .validity(req.validity)
            .map_err(CampaignsError::Invalid)?;
        if config.short_link_base.is_none() {
            if req.track_links {
                return Err(invalid(
                    "track_links_unavailable",
                    "track_links",
                    "this Holub has no short link base configured, so links cannot be tracked",
                ));
            }
            if template.category.is_marketing() {
                return Err(invalid(
                    "opt_out_unavailable",
                    "template_id",
                    "this Holub has no short link base configured, so marketing messages \
                     cannot carry the opt-out link the law asks for",
                ));
            }
        }
        let mut recipients = 0;
        for list in &lists {
            recipients += self.d.contacts.count(tenant, list).await?;
        }
        let shortest = self
            .d
            .templates_service
            .get(tenant, &template_id, Some(template.version))
            .await
            .map_err(|_| StoreError::Unavailable("the template's estimate".into()))?
            .estimate;
        let segments = u32::try_from(shortest.segments).unwrap_or(u32::MAX);
        let price = self.d.limits.of(tenant).await?;
        let estimate = CampaignEstimate {
            recipients,
            segments,
            cost_kopiyky: price.cost(recipients.saturating_mul(u64::from(segments))).0,
        };
        let campaign = Campaign {
            id: CampaignId::generate(now),
            tenant_id: tenant.clone(),
            name,
            template_id,
            template_version: template.version,
            category: template.category,
            lists,
            from,
            start_at,
            pace,
            track_links: req.track_links,
            validity: req.validity,
            estimate,
            state: CampaignState::Draft,
            stopped_by: None,
            expansion: Expansion::default(),
            run: 0,
            opted_out: 0,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            version: 1,
        };
        self.d.store.put(&campaign).await?;
        Ok(view(&campaign, None))
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<CampaignView, CampaignsError> {
        let campaign = self.load(tenant, id).await?;
        // Its messages count in the hours they were made in: from its making to the end of
        // its expansion.
        let until = campaign.finished_at.unwrap_or_else(|| self.d.clock.now());
        let counters = self
            .d
            .analytics
            .batch_totals(
                tenant,
                &campaign.id.batch(),
                Hour::of(campaign.created_at),
                Hour(Hour::of(until).0 + 1),
            )
            .await?;
        Ok(view(&campaign, Some(&counters)))
    }

    pub async fn list(
        &self,
        tenant: &TenantId,
        before: Option<&CampaignId>,
        limit: usize,
    ) -> Result<CampaignPageView, CampaignsError> {
        let page = self
            .d
            .store
            .list(tenant, before, limit.clamp(1, MAX_CAMPAIGN_PAGE))
            .await?;
        Ok(CampaignPageView {
            campaigns: page.campaigns.iter().map(|c| view(c, None)).collect(),
            next: page.next.map(|id| id.to_string()),
        })
    }

    async fn load(&self, tenant: &TenantId, id: &CampaignId) -> Result<Campaign, CampaignsError> {
        self.d
            .store
            .get(tenant, id)
            .await?
            .ok_or(CampaignsError::NotFound)
    }

    /// Applies `change` to the stored campaign, again over a fresh read when another change
    /// came first; answers the campaign as stored.
    async fn change(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
        change: impl Fn(&mut Campaign, DateTime<Utc>) -> Result<(), CampaignError>,
    ) -> Result<Campaign, CampaignsError> {
        for _ in 0..ATTEMPTS {
            let mut campaign = self.load(tenant, id).await?;
            change(&mut campaign, self.d.clock.now())?;
            match self.d.store.put(&campaign).await {
                Ok(()) => return Ok(campaign),
                Err(StoreError::AlreadyExists) => continue,
                Err(StoreError::NotFound) => return Err(CampaignsError::NotFound),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("the campaign kept changing; try again".into()).into())
    }

    /// Queues the job of the campaign's chunk `chunk`, to run after `delay` (at most
    /// [`MAX_HOP`]: a job that comes too early queues itself again).
    async fn kick(
        &self,
        campaign: &Campaign,
        run: u32,
        chunk: u64,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let job = CampaignJob {
            tenant_id: campaign.tenant_id.clone(),
            campaign_id: campaign.id.clone(),
            chunk,
            run,
        };
        let mut out = jobs::outgoing(&job);
        out.delay = delay.min(MAX_HOP);
        self.d
            .queue
            .send_batch(QueueName::Campaigns, vec![out])
            .await
    }

    /// Starts a draft: its first chunk's job (of the next run) is queued before it is marked
    /// running (a job that finds its run not begun yet waits for it), so a running campaign
    /// always has one.
    pub async fn start(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<CampaignView, CampaignsError> {
        let campaign = self.load(tenant, id).await?;
        if campaign.state != CampaignState::Draft {
            return Err(CampaignError::State(campaign.state, "started").into());
        }
        let now = self.d.clock.now();
        let wait = campaign
            .start_at
            .map(|at| (at - now).to_std().unwrap_or_default().saturating_sub(LEAD))
            .unwrap_or_default();
        self.kick(&campaign, campaign.run + 1, campaign.expansion.chunk, wait)
            .await?;
        let started = self.change(tenant, id, |c, now| c.start(now)).await?;
        Ok(view(&started, None))
    }

    pub async fn pause(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<CampaignView, CampaignsError> {
        let paused = self.change(tenant, id, |c, now| c.pause(now, None)).await?;
        Ok(view(&paused, None))
    }

    /// Resumes a paused campaign where it stopped (the job is queued first, as for start).
    pub async fn resume(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<CampaignView, CampaignsError> {
        let campaign = self.load(tenant, id).await?;
        if campaign.state != CampaignState::Paused {
            return Err(CampaignError::State(campaign.state, "resumed").into());
        }
        self.kick(
            &campaign,
            campaign.run + 1,
            campaign.expansion.chunk,
            Duration::ZERO,
        )
        .await?;
        let resumed = self.change(tenant, id, |c, now| c.resume(now)).await?;
        Ok(view(&resumed, None))
    }

    /// Cancels the campaign: nothing more is expanded, and its messages still scheduled are
    /// cancelled (those already queued for dispatch go).
    pub async fn cancel(
        &self,
        tenant: &TenantId,
        id: &CampaignId,
    ) -> Result<CampaignView, CampaignsError> {
        let cancelled = self.change(tenant, id, |c, now| c.cancel(now)).await?;
        // A chunk expanding right now may still add scheduled messages: its job finds the
        // campaign cancelled and cancels them too (see `run`).
        self.cancel_scheduled(&cancelled).await?;
        Ok(view(&cancelled, None))
    }

    /// Cancels the campaign's messages that are still scheduled; answers how many.
    async fn cancel_scheduled(&self, campaign: &Campaign) -> Result<usize, StoreError> {
        let mut cancelled = 0;
        let mut after = None;
        loop {
            let page = self
                .d
                .messages_store
                .list(
                    &campaign.tenant_id,
                    &ListQuery {
                        status: Some(MessageStatus::Scheduled),
                        batch_id: Some(campaign.id.batch()),
                        created_after: Some(campaign.created_at - chrono::Duration::seconds(1)),
                        after,
                        limit: 500,
                        ..ListQuery::default()
                    },
                )
                .await?;
            for m in &page.messages {
                if self
                    .d
                    .messages
                    .cancel(&campaign.tenant_id, &m.id)
                    .await
                    .is_ok()
                {
                    cancelled += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(cancelled),
            }
        }
    }

    /// Handles one chunk job.
    pub async fn run(&self, job: &CampaignJob) -> JobOutcome {
        match self.expand(job).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "campaign chunk failed; it is tried again");
                JobOutcome::Retry(Duration::from_secs(5))
            }
            Err(e) => {
                tracing::error!(error = %e, "campaign chunk failed");
                JobOutcome::Poison
            }
        }
    }

    /// The campaign as `job` needs it: `None` when there is none, or when the job is ahead
    /// of it after a short wait (its chunk's predecessor, or its start or resume, queued
    /// the job just before storing the change that makes the job current).
    async fn campaign_for(&self, job: &CampaignJob) -> Result<Option<Campaign>, StoreError> {
        for _ in 0..AHEAD_READS {
            let Some(campaign) = self.d.store.get(&job.tenant_id, &job.campaign_id).await? else {
                return Ok(None);
            };
            let ahead = job.run > campaign.run
                || (job.run == campaign.run && job.chunk > campaign.expansion.chunk);
            if !ahead {
                return Ok(Some(campaign));
            }
            tokio::time::sleep(AHEAD_PAUSE).await;
        }
        Ok(None)
    }

    async fn expand(&self, job: &CampaignJob) -> Result<JobOutcome, ExpandError> {
        let tenant = &job.tenant_id;
        let Some(campaign) = self.campaign_for(job).await? else {
            // Gone, or still ahead: tried again later (a start whose change never landed
            // leaves a job that ends in the dead letters after a few tries).
            let gone = self.d.store.get(tenant, &job.campaign_id).await?.is_none();
            return Ok(if gone {
                JobOutcome::Done
            } else {
                JobOutcome::Retry(Duration::from_secs(1))
            });
        };
        if campaign.expansion.chunk != job.chunk || job.run < campaign.run {
            // Taken in already (a twin of this job did it), or of a run a pause ended.
            return Ok(JobOutcome::Done);
        }
        if campaign.state == CampaignState::Cancelled {
            self.cancel_scheduled(&campaign).await?;
            return Ok(JobOutcome::Done);
        }
        if campaign.state != CampaignState::Running {
            return Ok(JobOutcome::Done);
        }
        let now = self.d.clock.now();
        let limits = self.d.limits.of(tenant).await?;
        // When the chunk's first message goes out: where the pace is, never in the past,
        // and for marketing inside the sending window.
        let mut base = [campaign.expansion.next_send_at, campaign.start_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now)
            .max(now);
        if campaign.category.is_marketing() {
            base = limits.marketing_window.next_open(base);
        }
        let early = (base - now).to_std().unwrap_or_default();
        if early > LEAD {
            self.kick(&campaign, job.run, job.chunk, early - LEAD)
                .await?;
            return Ok(JobOutcome::Done);
        }
        let template = self
            .d
            .templates
            .get(
                tenant,
                &campaign.template_id,
                Some(campaign.template_version),
            )
            .await?
            .ok_or_else(|| {
                ExpandError::Store(StoreError::Corrupt(format!(
                    "campaign {}: its template version is gone",
                    campaign.id
                )))
            })?;
        let size = campaign
            .pace
            .map_or(CHUNK, |p| usize::try_from(p.get()).unwrap_or(CHUNK))
            .min(CHUNK)
            .min(usize::try_from(limits.burst).unwrap_or(CHUNK))
            .max(1);
        let (recipients, list, after, finished) = self.read_chunk(&campaign, size).await?;
        let key = IdempotencyKey::parse(&format!("campaign:{}:{}", campaign.id, job.chunk))
            .map_err(|e| ExpandError::Store(StoreError::Corrupt(e.to_string())))?;
        let plan = ChunkPlan {
            tenant,
            batch: campaign.id.batch(),
            from: campaign.from.as_str(),
            text: template.text.as_str(),
            category: campaign.category,
            track_links: campaign.track_links,
            validity: campaign.validity,
            start: base,
            pace: campaign.pace,
        };
        let idempotency = Idempotency {
            fingerprint: key.as_str().to_owned(),
            key,
        };
        let chunk = job.chunk;
        let pace = campaign.pace;
        let answer = self
            .d
            .intake
            .campaign_chunk(&plan, recipients, idempotency, |verdicts| {
                let mut skipped = BTreeMap::new();
                let mut sent = 0u64;
                for v in verdicts {
                    match v {
                        None => sent += 1,
                        Some(code) => *skipped.entry((*code).to_owned()).or_insert(0u64) += 1,
                    }
                }
                let outcome = ChunkOutcome {
                    chunk,
                    list,
                    after,
                    expanded: sent,
                    skipped,
                    next_send_at: pace.map(|p| p.offset(base, sent)),
                    finished,
                };
                serde_json::to_value(outcome).unwrap_or_default()
            })
            .await;
        let outcome: ChunkOutcome = match answer {
            Ok(body) => serde_json::from_value(body).map_err(|e| {
                ExpandError::Store(StoreError::Corrupt(format!("a chunk's outcome: {e}")))
            })?,
            Err(IntakeError::Limited(refusal)) if refusal.code == "rate_limited" => {
                // The chunk again once the rate allows, as a job of its own: a retry would
                // count as a receive, and a long campaign under a tight rate would reach the
                // dead letters.
                let wait = refusal.retry_after.unwrap_or(Duration::from_secs(1));
                self.kick(&campaign, job.run, job.chunk, wait).await?;
                return Ok(JobOutcome::Done);
            }
            Err(IntakeError::Limited(refusal)) => {
                return self.stop(&campaign, refusal.code).await;
            }
            Err(IntakeError::Invalid(field)) => return self.stop(&campaign, field.code).await,
            Err(e) => return Err(e.into()),
        };
        if !outcome.finished {
            let wait = outcome
                .next_send_at
                .map(|at| (at - now).to_std().unwrap_or_default().saturating_sub(LEAD))
                .unwrap_or_default();
            self.kick(&campaign, job.run, chunk + 1, wait).await?;
        }
        for _ in 0..ATTEMPTS {
            let Some(mut fresh) = self.d.store.get(tenant, &job.campaign_id).await? else {
                return Ok(JobOutcome::Done);
            };
            if !fresh.apply(&outcome, self.d.clock.now()) {
                return Ok(JobOutcome::Done);
            }
            match self.d.store.put(&fresh).await {
                Ok(()) => {
                    if fresh.state == CampaignState::Cancelled {
                        self.cancel_scheduled(&fresh).await?;
                    }
                    if outcome.finished {
                        tracing::info!(campaign = %fresh.id, expanded = fresh.expansion.expanded, "campaign expanded");
                    }
                    return Ok(JobOutcome::Done);
                }
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(JobOutcome::Retry(Duration::from_secs(1)))
    }

    /// Pauses a campaign that cannot go on as it is (a spend cap reached, its sender no
    /// longer registered), naming why.
    async fn stop(&self, campaign: &Campaign, code: &str) -> Result<JobOutcome, ExpandError> {
        tracing::warn!(campaign = %campaign.id, reason = code, "campaign paused by a refusal");
        let chunk = campaign.expansion.chunk;
        let result = self
            .change(&campaign.tenant_id, &campaign.id, |c, now| {
                if c.expansion.chunk != chunk || c.state != CampaignState::Running {
                    return Err(CampaignError::State(c.state, "paused"));
                }
                c.pause(now, Some(code))
            })
            .await;
        match result {
            Ok(_) | Err(CampaignsError::Conflict(_)) | Err(CampaignsError::NotFound) => {
                Ok(JobOutcome::Done)
            }
            Err(CampaignsError::Store(e)) => Err(e.into()),
            Err(e) => Err(ExpandError::Store(StoreError::Unavailable(
                e.to_string().into(),
            ))),
        }
    }

    /// The next chunk's recipients (at most `size`), where the chunk after it starts, and
    /// whether the lists are done.
    async fn read_chunk(
        &self,
        campaign: &Campaign,
        size: usize,
    ) -> Result<
        (
            Vec<ChunkRecipient>,
            usize,
            Option<crate::domain::ContactId>,
            bool,
        ),
        StoreError,
    > {
        let mut recipients = Vec::with_capacity(size);
        let (mut list, mut after) = (campaign.expansion.list, campaign.expansion.after.clone());
        let mut read = 0;
        while list < campaign.lists.len() && recipients.len() < size && read < MAX_READ {
            let earlier: BTreeSet<&ListName> = campaign.lists[..list].iter().collect();
            let page = self
                .d
                .contacts
                .list(
                    &campaign.tenant_id,
                    &ContactQuery {
                        list: Some(campaign.lists[list].clone()),
                        after: after.clone(),
                        limit: (size - recipients.len())
                            .min(crate::ports::contacts::MAX_CONTACT_PAGE),
                    },
                )
                .await?;
            read += page.contacts.len();
            for contact in page.contacts {
                after = Some(contact.id.clone());
                if contact.lists.iter().any(|l| earlier.contains(l)) {
                    continue;
                }
                recipients.push(ChunkRecipient {
                    variables: contact.variables(),
                    to: contact.phone,
                });
            }
            if page.next.is_none() {
                list += 1;
                after = None;
            }
        }
        let finished = list >= campaign.lists.len();
        Ok((recipients, list, after, finished))
    }
}

#[derive(Debug, thiserror::Error)]
enum ExpandError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ExpandError {
    fn is_retryable(&self) -> bool {
        use crate::ports::Retryable;
        match self {
            ExpandError::Store(e) => e.is_retryable(),
            ExpandError::Intake(e) => e.is_retryable(),
            ExpandError::Queue(e) => e.is_retryable(),
        }
    }
}

fn view(c: &Campaign, counters: Option<&crate::domain::stats::Counters>) -> CampaignView {
    let skipped_no_consent = ["consent_missing", "consent_withdrawn"]
        .iter()
        .filter_map(|code| c.expansion.skipped.get(*code))
        .sum();
    let (statuses, clicked, delivery_rate) = match counters {
        None => (None, None, None),
        Some(k) => {
            let totals = super::analytics::TotalsView::of(k);
            (
                Some(k.statuses.clone()),
                Some(k.clicked),
                totals.delivery_rate,
            )
        }
    };
    CampaignView {
        id: c.id.to_string(),
        name: c.name.as_str().to_owned(),
        state: c.state,
        stopped_by: c.stopped_by.clone(),
        template_id: c.template_id.to_string(),
        template_version: c.template_version,
        category: c.category,
        lists: c.lists.iter().map(|l| l.as_str().to_owned()).collect(),
        from: c.from.as_str().to_owned(),
        start_at: c.start_at,
        pace_per_minute: c.pace.map(Pace::get),
        track_links: c.track_links,
        validity: c.validity,
        batch_id: c.id.batch().to_string(),
        estimate: CampaignEstimateView {
            recipients: c.estimate.recipients,
            segments_per_message: c.estimate.segments,
            cost_kopiyky: c.estimate.cost_kopiyky,
        },
        progress: CampaignProgress {
            expanded: c.expansion.expanded,
            skipped: c.expansion.skipped.clone(),
            skipped_no_consent,
            opted_out: c.opted_out,
            statuses,
            clicked,
            delivery_rate,
        },
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
    }
}
