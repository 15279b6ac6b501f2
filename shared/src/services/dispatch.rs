//! Dispatch: a batch of queue jobs becomes provider submissions.
//!
//! Each message is claimed (`queued → sending`, a conditional write) before it is sent, so a
//! redelivered job, or two workers holding the same job, can never submit it twice. A
//! message found in `sending` whose owner went quiet (a crash mid-submit) is resolved by
//! asking the provider by our id: if it has the message, the message is recorded as sent;
//! if not, the earlier attempt is known to have failed and the message goes back to the queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{FailureCode, Message, MessageError, MessageStatus, PhoneNumber, TenantId};
use crate::ports::store::{Patch, Transition};
use crate::ports::{
    Clock, ConsentStore, MessageStore, OutboundSms, ProviderError, Retryable, StoreError,
};

use super::JobOutcome;
use super::gateway::{Carried, Gateway, Routed};
use super::jobs::DispatchJob;
use super::limits::Limits;

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A message left in `sending` longer than this is taken to be orphaned by a crash. It
    /// must exceed the provider client's request timeout.
    pub orphan_after: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            orphan_after: Duration::from_secs(30),
        }
    }
}

pub struct Dispatcher {
    store: Arc<dyn MessageStore>,
    gateway: Arc<Gateway>,
    clock: Arc<dyn Clock>,
    /// Marketing is checked again here: consent (an opt-out may have come in since intake)
    /// and the tenant's sending window.
    consent: Arc<dyn ConsentStore>,
    limits: Arc<Limits>,
    config: DispatchConfig,
}

/// A job that could not be parsed reaches the dispatcher as `None`.
pub type ParsedJob = Option<DispatchJob>;

impl Dispatcher {
    pub fn new(
        store: Arc<dyn MessageStore>,
        gateway: Arc<Gateway>,
        clock: Arc<dyn Clock>,
        consent: Arc<dyn ConsentStore>,
        limits: Arc<Limits>,
        config: DispatchConfig,
    ) -> Self {
        Dispatcher {
            store,
            gateway,
            clock,
            consent,
            limits,
            config,
        }
    }

    /// Handles a batch of jobs; one outcome per job, in order. A store failure turns into a
    /// retry of the affected jobs, never into a lost message.
    pub async fn handle_batch(&self, jobs: &[ParsedJob]) -> Vec<JobOutcome> {
        let mut outcomes = vec![JobOutcome::Done; jobs.len()];
        // Index of the first job for each message; later duplicates in the batch are done.
        let mut seen = HashSet::new();
        let mut claims = Vec::new();
        let mut claim_index = Vec::new();
        let now = self.clock.now();
        for (i, job) in jobs.iter().enumerate() {
            let Some(job) = job else {
                outcomes[i] = JobOutcome::Poison;
                continue;
            };
            if !seen.insert(job.id) {
                continue;
            }
            claims.push(
                Transition::new(
                    job.tenant_id.clone(),
                    job.id,
                    &[MessageStatus::Queued],
                    MessageStatus::Sending,
                    now,
                )
                .with(Patch {
                    count_attempt: true,
                    ..Patch::default()
                }),
            );
            claim_index.push(i);
        }
        if claims.is_empty() {
            return outcomes;
        }
        // Each claim's own answer: a batch the store took in part sends what it claimed and
        // hands back only the jobs whose claims did not land.
        let claimed = self.store.transition_each(&claims).await;
        let mut to_send: Vec<(usize, Message)> = Vec::new();
        let mut refused = 0;
        for ((claim, result), &i) in claims.iter().zip(claimed).zip(&claim_index) {
            match result {
                Ok(Some(message)) => to_send.push((i, message)),
                Ok(None) => outcomes[i] = self.unclaimed(claim, now).await,
                Err(e) => {
                    if refused == 0 {
                        tracing::warn!(error = %e, "dispatch: claim failed");
                    }
                    refused += 1;
                    outcomes[i] = JobOutcome::Retry(self.retry_delay(0));
                }
            }
        }
        if refused > 1 {
            tracing::warn!(refused, "dispatch: claims failed");
        }
        super::metrics::observe(to_send.iter().map(|(_, m)| m));
        // Messages whose validity ran out while they waited are not worth sending.
        let (live, stale): (Vec<_>, Vec<_>) =
            to_send.into_iter().partition(|(_, m)| m.expires_at > now);
        let mut finals: Vec<(usize, Transition, JobOutcome)> = stale
            .into_iter()
            .map(|(i, m)| (i, self.expire(&m, now, None), JobOutcome::Done))
            .collect();
        let live = self.hold_marketing(live, &mut finals, now).await;
        // A retry follows an attempt that failed by the provider's own word; a provider that
        // answered 5xx may still have taken the message, so where it can tell, ask first.
        let live = self
            .settle_retries(live, &mut finals, &mut outcomes, now)
            .await;
        if !live.is_empty() {
            let batch: Vec<Routed> = live
                .iter()
                .map(|(_, m)| Routed {
                    tenant_id: m.tenant_id.clone(),
                    sms: outbound(m, now),
                })
                .collect();
            let answers = self.gateway.send_many(&batch).await;
            let done_at = self.clock.now();
            for ((i, message), answer) in live.into_iter().zip(answers) {
                match answer {
                    // The provider may have the message: it stays in `sending` and its job
                    // comes back after `orphan_after`, when the lookup settles it.
                    Err(e) if e.is_unknown() => {
                        tracing::warn!(code = %e.code(), "dispatch: submit outcome unknown");
                        outcomes[i] = JobOutcome::Retry(self.config.orphan_after);
                    }
                    answer => {
                        let (transition, outcome) = self.after_submit(&message, answer, done_at);
                        finals.push((i, transition, outcome));
                    }
                }
            }
        }
        self.record(&mut outcomes, finals).await;
        outcomes
    }

    /// Keeps marketing messages to the law, again at the last moment: one claimed outside
    /// its tenant's sending window is scheduled for the window's next opening (its claim's
    /// attempt taken back); one to a number whose consent is not `given` now (withdrawn
    /// while it waited, say) is rejected unsent. A check that cannot be made hands the
    /// message back to the queue. Returns the messages still to send.
    async fn hold_marketing(
        &self,
        live: Vec<(usize, Message)>,
        finals: &mut Vec<(usize, Transition, JobOutcome)>,
        now: DateTime<Utc>,
    ) -> Vec<(usize, Message)> {
        let (marketing, mut to_send): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|(_, m)| m.category.is_marketing());
        if marketing.is_empty() {
            return to_send;
        }
        // Per tenant: its window, then one consent read for the numbers of those inside it.
        let mut tenants: Vec<TenantId> =
            marketing.iter().map(|(_, m)| m.tenant_id.clone()).collect();
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            let (mine, _): (Vec<_>, Vec<_>) =
                marketing.iter().partition(|(_, m)| m.tenant_id == tenant);
            let window = match self.limits.of(&tenant).await {
                Ok(limits) => limits.marketing_window,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch: limits not readable");
                    finals.extend(mine.iter().map(|(i, m)| self.hand_back(*i, m, now)));
                    continue;
                }
            };
            if !window.is_open(now) {
                let opens = window.next_open(now);
                finals.extend(mine.iter().map(|(i, m)| {
                    let wait = Transition::new(
                        m.tenant_id.clone(),
                        m.id,
                        &[MessageStatus::Sending],
                        MessageStatus::Scheduled,
                        now,
                    )
                    .with(Patch {
                        uncount_attempt: true,
                        send_at: Some(opens),
                        ..Patch::default()
                    });
                    (*i, wait, JobOutcome::Done)
                }));
                continue;
            }
            let numbers: Vec<&PhoneNumber> = mine.iter().map(|(_, m)| &m.to).collect();
            match self.consent.states(&tenant, &numbers).await {
                Ok(states) => {
                    for ((i, m), state) in mine.into_iter().zip(states) {
                        match state.refusal() {
                            None => to_send.push((*i, m.clone())),
                            Some((code, why)) => {
                                finals.push((*i, self.reject(m, now, code, why), JobOutcome::Done))
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch: consent not readable");
                    finals.extend(mine.iter().map(|(i, m)| self.hand_back(*i, m, now)));
                }
            }
        }
        to_send
    }

    /// A claimed message back to the queue, its attempt not counted, its job retried soon.
    fn hand_back(
        &self,
        i: usize,
        m: &Message,
        now: DateTime<Utc>,
    ) -> (usize, Transition, JobOutcome) {
        let delay = self.retry_delay(0);
        let back = Transition::new(
            m.tenant_id.clone(),
            m.id,
            &[MessageStatus::Sending],
            MessageStatus::Queued,
            now,
        )
        .with(Patch {
            uncount_attempt: true,
            ..Patch::default()
        });
        (i, back, JobOutcome::Retry(delay))
    }

    fn reject(&self, message: &Message, now: DateTime<Utc>, code: &str, why: &str) -> Transition {
        self.end_attempt(message, now, MessageStatus::Rejected, code, why)
    }

    /// Looks up retried messages at the provider: those it already has are recorded as sent
    /// instead of being sent again. Returns the messages still to send.
    async fn settle_retries(
        &self,
        live: Vec<(usize, Message)>,
        finals: &mut Vec<(usize, Transition, JobOutcome)>,
        outcomes: &mut [JobOutcome],
        now: DateTime<Utc>,
    ) -> Vec<(usize, Message)> {
        let (retries, first): (Vec<_>, Vec<_>) =
            live.into_iter().partition(|(_, m)| m.attempts > 1);
        if retries.is_empty() {
            return first;
        }
        let answers = futures::future::join_all(retries.iter().map(|(_, m)| async move {
            self.gateway.lookup(&m.tenant_id, &outbound(m, now)).await
        }))
        .await;
        let mut to_send = first;
        for ((i, message), answer) in retries.into_iter().zip(answers) {
            match answer {
                Ok(Some(carried)) => {
                    tracing::info!("dispatch: a retried message was already at the provider");
                    finals.push((i, self.sent(&message, &carried, now), JobOutcome::Done));
                }
                Ok(None) => to_send.push((i, message)),
                // The provider cannot look messages up: its error answer is all there is.
                Err(ProviderError::Permanent { .. }) => to_send.push((i, message)),
                Err(e) => {
                    tracing::info!(code = %e.code(), "dispatch: lookup before retry failed");
                    let delay = self.retry_delay(message.attempts);
                    let back = Transition::new(
                        message.tenant_id.clone(),
                        message.id,
                        &[MessageStatus::Sending],
                        MessageStatus::Queued,
                        now,
                    );
                    outcomes[i] = JobOutcome::Retry(delay);
                    finals.push((i, back, JobOutcome::Retry(delay)));
                }
            }
        }
        to_send
    }

    /// What to do with a job whose message could not be claimed.
    async fn unclaimed(&self, claim: &Transition, now: DateTime<Utc>) -> JobOutcome {
        let message = match self.store.get(&claim.tenant_id, &claim.id).await {
            Ok(Some(m)) => m,
            // A job for a message that does not exist (or not for this tenant): nothing to do.
            Ok(None) => return JobOutcome::Done,
            // What it said is gone for good: it can only end, unsent (or, if it was out
            // already, without waiting for its receipt).
            Err(StoreError::Erased) => {
                let end = Transition::new(
                    claim.tenant_id.clone(),
                    claim.id,
                    &[
                        MessageStatus::Scheduled,
                        MessageStatus::Queued,
                        MessageStatus::Sending,
                    ],
                    MessageStatus::Failed,
                    now,
                )
                .with(Patch {
                    error: Some(MessageError {
                        code: FailureCode::TenantErased.as_str().to_owned(),
                        message: "the tenant's data was erased".to_owned(),
                    }),
                    ..Patch::default()
                });
                return match self.store.transition(&[end]).await {
                    Ok(_) => JobOutcome::Done,
                    Err(e) => {
                        tracing::warn!(error = %e, "dispatch: an erased message not ended");
                        JobOutcome::Retry(self.retry_delay(0))
                    }
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatch: message not readable");
                return JobOutcome::Retry(self.retry_delay(0));
            }
        };
        if message.status != MessageStatus::Sending {
            // Already handled (sent, terminal), or not yet due (scheduled): nothing to do.
            return JobOutcome::Done;
        }
        let idle = now - message.updated_at;
        let orphan_after = chrono::Duration::from_std(self.config.orphan_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        if idle < orphan_after {
            // Another worker may still be submitting it: look again once it must have finished.
            let wait = (orphan_after - idle)
                .to_std()
                .unwrap_or(self.config.orphan_after);
            return JobOutcome::Retry(wait);
        }
        self.resolve_orphan(&message, now).await
    }

    /// A message stuck in `sending`: ask the provider whether the lost attempt reached it.
    async fn resolve_orphan(&self, message: &Message, now: DateTime<Utc>) -> JobOutcome {
        let transition = match self
            .gateway
            .lookup(&message.tenant_id, &outbound(message, now))
            .await
        {
            Ok(Some(carried)) => self.sent(message, &carried, now),
            Ok(None) => Transition::new(
                message.tenant_id.clone(),
                message.id,
                &[MessageStatus::Sending],
                MessageStatus::Queued,
                now,
            ),
            Err(e) if e.is_retryable() || e.is_unknown() => {
                return JobOutcome::Retry(self.retry_delay(message.attempts));
            }
            Err(e) => {
                // The provider cannot tell; sending again could duplicate the message, so it
                // stays `unconfirmed`, with the reason, until a receipt says more.
                self.settle_unknown(message, now, e.message())
            }
        };
        let requeue = transition.to == MessageStatus::Queued;
        match self
            .store
            .transition(std::slice::from_ref(&transition))
            .await
        {
            Ok(changed) => {
                let changed: Vec<Message> = changed.into_iter().flatten().collect();
                super::metrics::observe(&changed);
                if requeue && !changed.is_empty() {
                    // The job itself is the way back to the queue: handle it again now.
                    JobOutcome::Retry(Duration::ZERO)
                } else {
                    JobOutcome::Done
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "dispatch: orphan not recorded");
                JobOutcome::Retry(self.retry_delay(0))
            }
        }
    }

    fn after_submit(
        &self,
        message: &Message,
        answer: Result<Carried, ProviderError>,
        now: DateTime<Utc>,
    ) -> (Transition, JobOutcome) {
        match answer {
            Ok(carried) => (self.sent(message, &carried, now), JobOutcome::Done),
            // An account error here means every provider of the route is out (the gateway
            // failed over already): the message waits for a top-up or a new secret rather
            // than failing, and expires only when its validity ends.
            Err(e) if e.is_retryable() => {
                let delay = self.retry_delay(message.attempts);
                let next_try = now + chrono::Duration::from_std(delay).unwrap_or_default();
                if next_try >= message.expires_at {
                    (self.expire(message, now, Some(&e)), JobOutcome::Done)
                } else {
                    tracing::info!(
                        code = %e.code(),
                        attempts = message.attempts,
                        "dispatch: retryable provider error"
                    );
                    let transition = Transition::new(
                        message.tenant_id.clone(),
                        message.id,
                        &[MessageStatus::Sending],
                        MessageStatus::Queued,
                        now,
                    )
                    .with(Patch {
                        error: Some(MessageError {
                            code: e.code().as_str().to_owned(),
                            message: e.message().to_owned(),
                        }),
                        ..Patch::default()
                    });
                    (transition, JobOutcome::Retry(delay))
                }
            }
            Err(e) => (
                self.fail(message, now, e.code().as_str(), e.message()),
                JobOutcome::Done,
            ),
        }
    }

    fn sent(&self, message: &Message, carried: &Carried, now: DateTime<Utc>) -> Transition {
        Transition::new(
            message.tenant_id.clone(),
            message.id,
            &[MessageStatus::Sending],
            MessageStatus::Sent,
            now,
        )
        .with(Patch {
            provider: Some(carried.provider.clone()),
            provider_message_id: Some(carried.submitted.provider_message_id.clone()),
            cost: carried.submitted.cost,
            ..Patch::default()
        })
    }

    fn fail(&self, message: &Message, now: DateTime<Utc>, code: &str, why: &str) -> Transition {
        self.end_attempt(message, now, MessageStatus::Failed, code, why)
    }

    /// A submission whose answer was lost, at a provider that cannot be asked about it.
    fn settle_unknown(&self, message: &Message, now: DateTime<Utc>, why: &str) -> Transition {
        let why = format!("the provider's answer was lost and it cannot be asked ({why})");
        let code = "submit_outcome_unknown";
        self.end_attempt(message, now, MessageStatus::Unconfirmed, code, &why)
    }

    fn end_attempt(
        &self,
        message: &Message,
        now: DateTime<Utc>,
        to: MessageStatus,
        code: &str,
        why: &str,
    ) -> Transition {
        Transition::new(
            message.tenant_id.clone(),
            message.id,
            &[MessageStatus::Sending],
            to,
            now,
        )
        .with(Patch {
            error: Some(MessageError {
                code: code.to_owned(),
                message: why.to_owned(),
            }),
            ..Patch::default()
        })
    }

    fn expire(
        &self,
        message: &Message,
        now: DateTime<Utc>,
        last_error: Option<&ProviderError>,
    ) -> Transition {
        let message_text = match last_error {
            Some(e) => format!(
                "validity ended before a provider took the message (last error: {})",
                e.message()
            ),
            None => "validity ended before the message could be sent".to_owned(),
        };
        Transition::new(
            message.tenant_id.clone(),
            message.id,
            &[MessageStatus::Sending],
            MessageStatus::Expired,
            now,
        )
        .with(Patch {
            error: Some(MessageError {
                code: "validity_expired".to_owned(),
                message: message_text,
            }),
            ..Patch::default()
        })
    }

    /// Records the results of submissions; if that fails, the jobs come back and the
    /// messages, still in `sending`, are resolved through the provider lookup.
    async fn record(
        &self,
        outcomes: &mut [JobOutcome],
        finals: Vec<(usize, Transition, JobOutcome)>,
    ) {
        if finals.is_empty() {
            return;
        }
        let transitions: Vec<Transition> = finals.iter().map(|(_, t, _)| t.clone()).collect();
        let recorded = self.store.transition_each(&transitions).await;
        let mut unrecorded = 0;
        for ((i, _, outcome), result) in finals.iter().zip(recorded) {
            match result {
                Ok(changed) => {
                    super::metrics::observe(changed.iter());
                    outcomes[*i] = *outcome;
                }
                // Still `sending`: the job comes back once the message counts as orphaned,
                // and the provider lookup settles it without sending it again.
                Err(e) => {
                    if unrecorded == 0 {
                        tracing::error!(error = %e, "dispatch: a submission not recorded");
                    }
                    unrecorded += 1;
                    outcomes[*i] = JobOutcome::Retry(self.config.orphan_after);
                }
            }
        }
        if unrecorded > 1 {
            tracing::error!(unrecorded, "dispatch: submissions not recorded");
        }
    }

    fn retry_delay(&self, attempts: u32) -> Duration {
        super::backoff(attempts, self.config.backoff_base, self.config.backoff_cap)
    }
}

fn outbound(m: &Message, now: DateTime<Utc>) -> OutboundSms {
    let left = (m.expires_at - now).num_seconds().max(1);
    OutboundSms {
        id: m.id,
        to: m.to.clone(),
        from: m.from.clone(),
        text: m.text.clone(),
        encoding: m.encoding,
        segments: m.segments,
        validity_seconds: u32::try_from(left).unwrap_or(u32::MAX),
    }
}
