//! Consent to marketing: recording it (the tenant's API, the operator), reading a number's
//! ledger, and the subscriber's own opt-out through the link every marketing message ends
//! with. See [`crate::domain::consent`] for the law and the rules.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    ConsentChange, ConsentEntry, ConsentSource, ConsentState, Evidence, PhoneNumber, RecordedBy,
    SenderId, ShortCode, TenantId, WithdrawalChannel,
};
use crate::ports::{CampaignStore, Clock, ConsentStore, MessageStore, StoreError};

use super::intake::FieldError;

/// `POST /v1/consents`, as received.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    /// The subscriber's number, as typed (as for a message's `to`).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")
    )]
    pub phone: String,
    /// `given` or `withdrawn`.
    pub state: RecordedState,
    /// How consent was given (required with `given`, not allowed with `withdrawn`).
    #[serde(default)]
    pub source: Option<ConsentSource>,
    /// What proves the consent: a form submission's id, a document's number, a recording
    /// (1 to 1,000 characters; required with `given`, not allowed with `withdrawn`). Kept
    /// sealed, like message texts.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 1000,
            pattern = "^[^\\u0000-\\u0009\\u000B-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0009\\u000B-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub evidence: Option<String>,
    /// How it was withdrawn (with `withdrawn`; default `api`).
    #[serde(default)]
    pub channel: Option<WithdrawalChannel>,
    /// When it was given or withdrawn, RFC 3339 (default: now; not later than the server's
    /// clock: 409 `time_in_future`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: Option<String>,
}

/// The two states an entry can record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordedState {
    Given,
    Withdrawn,
}

/// A number's consent: where it stands and every entry, oldest recorded first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentView {
    /// The number in E.164.
    pub phone: String,
    /// `none`, `given` or `withdrawn`: marketing goes only to `given`.
    pub state: ConsentState,
    pub entries: Vec<EntryView>,
}

/// One ledger entry.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntryView {
    /// `given` or `withdrawn`.
    pub change: RecordedState,
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub source: Option<ConsentSource>,
    pub evidence: Option<String>,
    pub channel: Option<WithdrawalChannel>,
    pub recorded_by: RecordedBy,
}

impl From<&ConsentEntry> for EntryView {
    fn from(e: &ConsentEntry) -> Self {
        let (change, source, evidence, channel) = match &e.change {
            ConsentChange::Given { source, evidence } => (
                RecordedState::Given,
                Some(*source),
                Some(evidence.as_str().to_owned()),
                None,
            ),
            ConsentChange::Withdrawn { channel } => {
                (RecordedState::Withdrawn, None, None, Some(*channel))
            }
        };
        EntryView {
            change,
            at: e.at,
            recorded_at: e.recorded_at,
            source,
            evidence,
            channel,
            recorded_by: e.recorded_by.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("{}", .0.message)]
    Invalid(FieldError),
    /// Well formed, but at odds with the state of things (the clock).
    #[error("{}", .0.message)]
    Conflict(FieldError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whose marketing an opt-out link stops: the sender the subscriber knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOutTarget {
    pub sender: SenderId,
    /// Where the number stands now.
    pub state: ConsentState,
}

pub struct Consents {
    store: Arc<dyn ConsentStore>,
    messages: Arc<dyn MessageStore>,
    campaigns: Arc<dyn CampaignStore>,
    clock: Arc<dyn Clock>,
}

impl Consents {
    pub fn new(
        store: Arc<dyn ConsentStore>,
        messages: Arc<dyn MessageStore>,
        campaigns: Arc<dyn CampaignStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Consents {
            store,
            messages,
            campaigns,
            clock,
        }
    }

    /// Records an entry from the tenant (`by`): the number's ledger after it.
    pub async fn record(
        &self,
        tenant: &TenantId,
        req: ConsentRequest,
        by: RecordedBy,
    ) -> Result<ConsentView, ConsentError> {
        let invalid = |code, field: &str, why: &str| {
            ConsentError::Invalid(FieldError::new(code, field, why.to_owned()))
        };
        let phone = PhoneNumber::parse(&req.phone)
            .map_err(|e| invalid(e.code(), "phone", &e.to_string()))?;
        let now = self.clock.now();
        let at = match req.at.as_deref() {
            None => now,
            Some(raw) => {
                let at = DateTime::parse_from_rfc3339(raw)
                    .map_err(|_| {
                        invalid(
                            "time_invalid",
                            "at",
                            "at must be an RFC 3339 date-time, e.g. 2026-12-01T09:00:00+02:00",
                        )
                    })?
                    .with_timezone(&Utc);
                // The latest entry decides, so one dated ahead of the clock would outrank every
                // entry recorded until then (an opt-out among them). The request is well formed
                // but at odds with the server's clock: a conflict, not a malformed body.
                if at > now {
                    return Err(ConsentError::Conflict(FieldError::new(
                        "time_in_future",
                        "at",
                        "at is later than the server's clock".to_owned(),
                    )));
                }
                at
            }
        };
        let change = match req.state {
            RecordedState::Given => {
                if req.channel.is_some() {
                    return Err(invalid(
                        "field_not_allowed",
                        "channel",
                        "channel is for withdrawals",
                    ));
                }
                let source = req.source.ok_or_else(|| {
                    invalid(
                        "source_missing",
                        "source",
                        "say how consent was given: web_form, app, paper, sms, point_of_sale, call or import",
                    )
                })?;
                let evidence = Evidence::parse(req.evidence.as_deref().unwrap_or(""))
                    .map_err(|e| invalid(e.code(), "evidence", &e.to_string()))?;
                ConsentChange::Given { source, evidence }
            }
            RecordedState::Withdrawn => {
                if req.source.is_some() || req.evidence.is_some() {
                    let field = if req.source.is_some() {
                        "source"
                    } else {
                        "evidence"
                    };
                    return Err(invalid(
                        "field_not_allowed",
                        field,
                        "source and evidence are for consent given",
                    ));
                }
                if req.channel == Some(WithdrawalChannel::OptOutLink) {
                    return Err(invalid(
                        "field_not_allowed",
                        "channel",
                        "opt_out_link is recorded by the link itself",
                    ));
                }
                ConsentChange::Withdrawn {
                    channel: req.channel.unwrap_or(WithdrawalChannel::Api),
                }
            }
        };
        let entry = ConsentEntry {
            at,
            recorded_at: now,
            change,
            recorded_by: by,
        };
        self.store.record(tenant, &phone, &entry).await?;
        Ok(self.view(tenant, &phone).await?)
    }

    /// A number's ledger, as typed.
    pub async fn ledger(&self, tenant: &TenantId, raw: &str) -> Result<ConsentView, ConsentError> {
        let phone = PhoneNumber::parse(raw).map_err(|e| {
            ConsentError::Invalid(FieldError::new(e.code(), "phone", e.to_string()))
        })?;
        Ok(self.view(tenant, &phone).await?)
    }

    async fn view(
        &self,
        tenant: &TenantId,
        phone: &PhoneNumber,
    ) -> Result<ConsentView, StoreError> {
        let entries = self.store.ledger(tenant, phone).await?;
        Ok(ConsentView {
            phone: phone.as_e164().to_owned(),
            state: ConsentState::of_ledger(&entries),
            entries: entries.iter().map(EntryView::from).collect(),
        })
    }

    /// The marketing an opt-out code stops (`None`: no message has this opt-out code).
    pub async fn opt_out_target(
        &self,
        code: &ShortCode,
    ) -> Result<Option<OptOutTarget>, StoreError> {
        let Some(message) = self.messages.follow(code).await? else {
            return Ok(None);
        };
        if message.opt_out.as_ref() != Some(code) {
            return Ok(None);
        }
        let state = self
            .store
            .states(&message.tenant_id, &[&message.to])
            .await?
            .into_iter()
            .next()
            .unwrap_or(ConsentState::None);
        Ok(Some(OptOutTarget {
            sender: message.from,
            state,
        }))
    }

    /// The subscriber opts out through the link of one of the tenant's messages: consent to
    /// the tenant's marketing is withdrawn from now. Answers what it stopped (`None`: no
    /// message has this opt-out code). Doing it twice adds a second entry and changes
    /// nothing else. An opt-out that withdraws a consent through a campaign's message is
    /// counted in the campaign's progress.
    pub async fn opt_out(&self, code: &ShortCode) -> Result<Option<OptOutTarget>, StoreError> {
        let Some(message) = self.messages.follow(code).await? else {
            return Ok(None);
        };
        if message.opt_out.as_ref() != Some(code) {
            return Ok(None);
        }
        let now = self.clock.now();
        let entry = ConsentEntry {
            at: now,
            recorded_at: now,
            change: ConsentChange::Withdrawn {
                channel: WithdrawalChannel::OptOutLink,
            },
            recorded_by: RecordedBy::Subscriber,
        };
        let before = self
            .store
            .states(&message.tenant_id, &[&message.to])
            .await?
            .into_iter()
            .next();
        let state = self
            .store
            .record(&message.tenant_id, &message.to, &entry)
            .await?;
        let withdrawn_now = !matches!(before, Some(ConsentState::Withdrawn))
            && matches!(state, ConsentState::Withdrawn);
        if let (true, Some(batch)) = (withdrawn_now, &message.batch_id) {
            let campaign = crate::domain::CampaignId::of_batch(batch);
            if let Err(e) = self
                .campaigns
                .count_opt_out(&message.tenant_id, &campaign)
                .await
            {
                // The withdrawal stands; only the campaign's count misses it.
                tracing::warn!(error = %e, "an opt-out was not counted in its campaign");
            }
        }
        tracing::info!(message_id = %message.id, "a subscriber opted out");
        Ok(Some(OptOutTarget {
            sender: message.from,
            state,
        }))
    }
}
