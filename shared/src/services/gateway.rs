//! The gateway: which provider carries each message, and what happens when one fails.
//!
//! A route table (in configuration) gives each message an ordered list of providers, chosen
//! by the number's operator hint, the sender, the tenant, and price. A message goes to the
//! first provider on its list that can take it now: providers whose circuit breaker is open
//! are skipped, and a retryable error moves the message on to the next one (failover). An
//! unknown outcome never fails over, since the first provider may have the message: dispatch
//! settles it by lookup.
//!
//! An *account* error (credentials refused, no money, account blocked) says the provider
//! cannot send anything now: its breaker opens at once, for [`BreakerConfig::account_cooldown`]
//! (longer than a flaky network needs, since a person has to top up or rotate a secret), and
//! the message fails over. If no provider of the route can take it, the account error comes
//! back as retryable: dispatch keeps the message queued and tries again until its validity
//! ends (then `expired`, naming the account error), since fixing the account fixes it.
//!
//! Each provider's messages-per-second limit and its breaker are held across every instance
//! that sends ([`ProviderLimits`]; how, in [`crate::ports::provider_limits`]): never more than
//! the limit in any one-second window however many instances send, and used fully while
//! there is a backlog; a breaker one instance opens is open for all. Process memory only
//! caches what the store says of a breaker, for at most [`BREAKER_FRESH`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use serde::Deserialize;

use crate::domain::FailureCode;
use crate::domain::{Kopiyky, MessageId, Operator, TenantId};
use crate::ports::provider_limits::BREAKER_FRESH;
use crate::ports::{
    InProcessLimits, Leased, Outage, OutageReason, OutboundSms, ProviderError, ProviderLimits,
    ProviderRate, Retryable, SmsProvider, Submitted,
};

/// One rule of the route table. Empty match lists match anything; the first rule that
/// matches a message gives its providers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteRule {
    pub operators: Vec<Operator>,
    /// Sender ids (alpha-names or numbers) this rule is for.
    pub senders: Vec<String>,
    pub tenants: Vec<TenantId>,
    /// Provider names, in the order to try them.
    pub providers: Vec<String>,
    /// `listed` (default) keeps the order above; `price` sorts by price per part, cheapest
    /// first (providers without a price last, in listed order).
    pub order: RouteOrder,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteOrder {
    #[default]
    Listed,
    Price,
}

/// A provider as the gateway holds it.
pub struct Member {
    pub name: String,
    pub provider: Arc<dyn SmsProvider>,
    pub messages_per_second: Option<u32>,
    pub price_per_part: Option<Kopiyky>,
}

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failed requests that open the breaker.
    pub failures: u32,
    /// How long it stays open before one trial request is let through.
    pub cooldown: Duration,
    /// How long one account error keeps it open: someone has to act (a top-up, a new
    /// secret), so trying every few seconds would only burn requests and fill the log.
    pub account_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown: Duration::from_secs(10),
            account_cooldown: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    #[error("route {rule} names provider {name:?}, which is not configured")]
    UnknownProvider { rule: usize, name: String },
    #[error("route {0} lists no providers")]
    Empty(usize),
    #[error("no providers are configured")]
    NoProviders,
}

/// A message to route: its tenant (routes may be per tenant) and what to send.
#[derive(Debug, Clone)]
pub struct Routed {
    pub tenant_id: TenantId,
    pub sms: OutboundSms,
}

/// A submission the gateway made: by which provider, and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub provider: String,
    pub submitted: Submitted,
}

pub struct Gateway {
    members: Vec<Slot>,
    by_name: HashMap<String, usize>,
    rules: Vec<Vec<usize>>,
    matchers: Vec<RouteRule>,
    breaker: BreakerConfig,
    limits: Arc<dyn ProviderLimits>,
}

struct Slot {
    member: Member,
    rate: Option<ProviderRate>,
    breaker: Mutex<BreakerState>,
}

impl Slot {
    /// No code panics while holding it, so a poisoned lock still holds sound data.
    fn breaker(&self) -> MutexGuard<'_, BreakerState> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Gateway {
    /// Checks the table against the providers. Messages that no rule matches go to every
    /// provider, cheapest first. The limits and breakers are this process's own until
    /// [`Gateway::with_limits`] gives the store every instance shares.
    pub fn new(
        members: Vec<Member>,
        rules: Vec<RouteRule>,
        breaker: BreakerConfig,
    ) -> Result<Gateway, RouteTableError> {
        if members.is_empty() {
            return Err(RouteTableError::NoProviders);
        }
        let by_name: HashMap<String, usize> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let price = |i: &usize| members[*i].price_per_part.map(|p| p.0).unwrap_or(i64::MAX);
        let mut resolved = Vec::with_capacity(rules.len() + 1);
        for (r, rule) in rules.iter().enumerate() {
            if rule.providers.is_empty() {
                return Err(RouteTableError::Empty(r));
            }
            let mut order = Vec::with_capacity(rule.providers.len());
            for name in &rule.providers {
                let i = *by_name
                    .get(name)
                    .ok_or_else(|| RouteTableError::UnknownProvider {
                        rule: r,
                        name: name.clone(),
                    })?;
                order.push(i);
            }
            if rule.order == RouteOrder::Price {
                order.sort_by_key(price);
            }
            resolved.push(order);
        }
        let mut fallback: Vec<usize> = (0..members.len()).collect();
        fallback.sort_by_key(price);
        resolved.push(fallback);
        let slots = members
            .into_iter()
            .map(|member| Slot {
                rate: member.messages_per_second.map(ProviderRate::per_second),
                member,
                breaker: Mutex::new(BreakerState::default()),
            })
            .collect();
        Ok(Gateway {
            members: slots,
            by_name,
            rules: resolved,
            matchers: rules,
            breaker,
            limits: Arc::new(InProcessLimits::default()),
        })
    }

    /// The same gateway over limits and breakers held in `limits`, shared with every other
    /// instance that holds the same store.
    pub fn with_limits(mut self, limits: Arc<dyn ProviderLimits>) -> Self {
        self.limits = limits;
        self
    }

    /// The providers a message may go to, in order.
    pub fn route(&self, tenant: &TenantId, sms: &OutboundSms) -> &[usize] {
        let sender = sms.from.as_str();
        let operator = sms.to.operator();
        for (rule, order) in self.matchers.iter().zip(&self.rules) {
            let fits = (rule.operators.is_empty() || rule.operators.contains(&operator))
                && (rule.senders.is_empty() || rule.senders.iter().any(|s| s == sender))
                && (rule.tenants.is_empty() || rule.tenants.contains(tenant));
            if fits {
                return order;
            }
        }
        self.rules.last().map(Vec::as_slice).unwrap_or(&[])
    }

    /// The provider names a message may go to, in order.
    pub fn route_names(&self, tenant: &TenantId, sms: &OutboundSms) -> Vec<&str> {
        self.route(tenant, sms)
            .iter()
            .map(|&i| self.members[i].member.name.as_str())
            .collect()
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<dyn SmsProvider>> {
        self.by_name
            .get(name)
            .map(|&i| &self.members[i].member.provider)
    }

    pub fn providers(&self) -> impl Iterator<Item = (&str, &Arc<dyn SmsProvider>)> {
        self.members
            .iter()
            .map(|s| (s.member.name.as_str(), &s.member.provider))
    }

    /// Submits each message through its route, failing over on retryable errors. One answer
    /// per message, in order.
    pub async fn send_many(&self, batch: &[Routed]) -> Vec<Result<Carried, ProviderError>> {
        let mut answers: Vec<Option<Result<Carried, ProviderError>>> = vec![None; batch.len()];
        let routes: Vec<&[usize]> = batch
            .iter()
            .map(|r| self.route(&r.tenant_id, &r.sms))
            .collect();
        // Where each message is on its route, and the last retryable error it met.
        let mut step = vec![0usize; batch.len()];
        let mut last_error: Vec<Option<ProviderError>> = vec![None; batch.len()];
        loop {
            // Group the messages still open by the provider they are at.
            let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
            for i in 0..batch.len() {
                if answers[i].is_some() {
                    continue;
                }
                match routes[i].get(step[i]) {
                    Some(&p) => groups.entry(p).or_default().push(i),
                    None => {
                        answers[i] = Some(Err(last_error[i].take().unwrap_or_else(|| {
                            ProviderError::temporary(
                                FailureCode::NoRouteAvailable,
                                "every provider on the route is unavailable",
                            )
                        })));
                    }
                }
            }
            if groups.is_empty() {
                break;
            }
            let rounds = groups.into_iter().map(|(p, items)| async move {
                let results = self.send_to(p, &items, batch).await;
                (p, items, results)
            });
            for (p, items, results) in futures::future::join_all(rounds).await {
                let skipped_for = self.open_reason(p);
                for (i, result) in items.into_iter().zip(results) {
                    match result {
                        Some(Ok(carried)) => answers[i] = Some(Ok(carried)),
                        Some(Err(e)) if e.is_retryable() => {
                            last_error[i] = Some(e);
                            step[i] += 1;
                        }
                        Some(Err(e)) => answers[i] = Some(Err(e)),
                        // Skipped (breaker open): on to the next provider, keeping why the
                        // account is out, so a message that waits says what to fix.
                        None => {
                            if let Some(reason) = &skipped_for {
                                last_error[i] = Some(reason.clone());
                            }
                            step[i] += 1;
                        }
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    Err(ProviderError::temporary(
                        FailureCode::NoRouteAvailable,
                        "unrouted",
                    ))
                })
            })
            .collect()
    }

    /// Sends the messages `items` of `batch` to provider `p`, within its rate limit: in
    /// chunks as grants come, the next leased while the last is sent. `None` for a message
    /// means the provider was skipped (its breaker is open).
    async fn send_to(
        &self,
        p: usize,
        items: &[usize],
        batch: &[Routed],
    ) -> Vec<Option<Result<Carried, ProviderError>>> {
        let slot = &self.members[p];
        if !self.admit(slot).await {
            return vec![None; items.len()];
        }
        let Some(rate) = slot.rate else {
            return self.send_chunk(slot, items, batch).await;
        };
        let mut sent = Vec::with_capacity(items.len());
        let mut sending = FuturesOrdered::new();
        let mut start = 0;
        let mut lease = None;
        let mut unsent = Vec::new();
        loop {
            if lease.is_none() && start < items.len() && sending.len() < IN_FLIGHT {
                lease = Some(Box::pin(self.grants(slot, rate, items.len() - start)));
            }
            let granted = match (lease.as_mut(), sending.is_empty()) {
                (None, true) => break,
                (None, false) => None,
                (Some(l), true) => Some(l.await),
                (Some(l), false) => tokio::select! {
                    granted = l => Some(granted),
                    Some(answers) = sending.next() => {
                        sent.push(answers);
                        continue;
                    }
                },
            };
            match granted {
                None => sent.extend(sending.next().await),
                Some(Ok(n)) => {
                    lease = None;
                    let end = start + n.clamp(1, items.len() - start);
                    sending.push_back(self.send_chunk(slot, &items[start..end], batch));
                    start = end;
                }
                Some(Err(e)) => {
                    // The rest goes back unsent, after what is in flight.
                    lease = None;
                    unsent = vec![Some(Err(e)); items.len() - start];
                    start = items.len();
                }
            }
        }
        sent.push(unsent);
        sent.into_iter().flatten().collect()
    }

    /// Sends the messages `chunk` of `batch` to the provider in one request.
    async fn send_chunk(
        &self,
        slot: &Slot,
        chunk: &[usize],
        batch: &[Routed],
    ) -> Vec<Option<Result<Carried, ProviderError>>> {
        let sms: Vec<OutboundSms> = chunk.iter().map(|&i| batch[i].sms.clone()).collect();
        let answers = slot.member.provider.send_many(&sms).await;
        self.record(slot, &answers).await;
        answers
            .into_iter()
            .map(|a| {
                Some(a.map(|submitted| Carried {
                    provider: slot.member.name.clone(),
                    submitted,
                }))
            })
            .collect()
    }

    /// Waits for grants of the provider's limit, up to `want`, and returns how many may be
    /// sent now. A lease whose answer came later than its slot allows is dropped unused.
    async fn grants(
        &self,
        slot: &Slot,
        rate: ProviderRate,
        want: usize,
    ) -> Result<usize, ProviderError> {
        let name = slot.member.name.as_str();
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        loop {
            let leased = self.limits.lease(name, rate, want, Utc::now()).await;
            match leased {
                Ok(Leased::Granted {
                    grants,
                    from,
                    until,
                }) => {
                    if let Ok(wait) = (from - Utc::now()).to_std() {
                        tokio::time::sleep(wait).await;
                    }
                    if Utc::now() <= until {
                        return Ok(usize::try_from(grants).unwrap_or(usize::MAX));
                    }
                    tracing::debug!(
                        provider = name,
                        grants,
                        "grants came too late; leased again"
                    );
                }
                Ok(Leased::Wait(wait)) => tokio::time::sleep(wait).await,
                Err(e) => {
                    tracing::warn!(provider = name, error = %e, "provider rate grants not available");
                    return Err(ProviderError::temporary(
                        FailureCode::ProviderUnavailable,
                        format!("the rate grants of provider {name} could not be leased: {e}"),
                    ));
                }
            }
        }
    }

    /// Asks the providers of a message's route (those that can look messages up by our id)
    /// whether one of them has it. `Err` if none can tell and one could not be asked now.
    pub async fn lookup(
        &self,
        tenant: &TenantId,
        sms: &OutboundSms,
    ) -> Result<Option<Carried>, ProviderError> {
        self.lookup_in(self.route(tenant, sms), &sms.id).await
    }

    async fn lookup_in(
        &self,
        route: &[usize],
        id: &MessageId,
    ) -> Result<Option<Carried>, ProviderError> {
        // "Never sent" needs every provider of the route to say so: one that cannot be
        // asked may be the one that took it.
        let mut cannot_tell = false;
        let mut failure = None;
        for &p in route {
            let slot = &self.members[p];
            match slot.member.provider.lookup(id).await {
                Ok(Some(submitted)) => {
                    return Ok(Some(Carried {
                        provider: slot.member.name.clone(),
                        submitted,
                    }));
                }
                Ok(None) => {}
                // An account that cannot send cannot be asked either; it took nothing since.
                Err(ProviderError::Account { .. }) => {}
                Err(ProviderError::Permanent { .. }) => cannot_tell = true,
                Err(e) => failure = Some(e),
            }
        }
        match (failure, cannot_tell) {
            (Some(e), _) => Err(e),
            (None, false) => Ok(None),
            (None, true) => Err(ProviderError::permanent(
                FailureCode::LookupUnsupported,
                "a provider on the route cannot look messages up",
            )),
        }
    }

    /// Whether a request may go to this provider now: its breaker closed, or this instance
    /// took the one trial of a breaker whose time is up. What the store says of the breaker
    /// is read again once [`BREAKER_FRESH`] has passed.
    async fn admit(&self, slot: &Slot) -> bool {
        let name = slot.member.name.as_str();
        let stale = slot
            .breaker()
            .fetched
            .is_none_or(|at| at.elapsed() >= BREAKER_FRESH);
        if stale {
            match self.limits.breaker(name).await {
                Ok(outage) => {
                    let mut b = slot.breaker();
                    b.outage = outage;
                    b.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(provider = name, error = %e, "provider breaker not readable; what was read last holds");
                    slot.breaker().fetched = Some(Instant::now());
                }
            }
        }
        let now = Utc::now();
        let opened_until = {
            let b = slot.breaker();
            match b.outage.open_until {
                None => return true,
                Some(_) if b.outage.is_open(now) || b.trial.is_some() => return false,
                Some(_) if !b.outage.trial_free(now) => return false,
                Some(until) => until,
            }
        };
        let hold = now + chrono::Duration::from_std(TRIAL_HOLD).unwrap_or_default();
        match self.limits.take_trial(name, now, hold).await {
            Ok(true) => {
                let mut b = slot.breaker();
                b.trial = Some(opened_until);
                b.outage.trial_until = Some(hold);
                true
            }
            Ok(false) => {
                // Another instance took it (or opened the breaker again): read it anew.
                slot.breaker().fetched = None;
                false
            }
            Err(e) => {
                tracing::warn!(provider = name, error = %e, "provider breaker trial not taken");
                false
            }
        }
    }

    /// A request counts as failed when no message of it went through and at least one met a
    /// retryable error or an unknown outcome (the provider, not the message, is at fault).
    /// One account error opens the breaker at once, even beside successes: a balance that
    /// ran out in the middle of a batch stops the rest of it too.
    async fn record(&self, slot: &Slot, answers: &[Result<Submitted, ProviderError>]) {
        if let Some(e) = answers
            .iter()
            .find_map(|a| a.as_ref().err().filter(|e| e.is_account()))
        {
            self.trip_for_account(slot, e).await;
            return;
        }
        let any_ok = answers.iter().any(Result::is_ok);
        let provider_fault = answers
            .iter()
            .any(|a| matches!(a, Err(e) if e.is_retryable() || e.is_unknown()));
        let name = slot.member.name.as_str();
        if any_ok || !provider_fault {
            let trial = {
                let mut b = slot.breaker();
                b.failures = 0;
                let trial = b.trial.take();
                if trial.is_some() {
                    b.outage = Outage::default();
                }
                trial
            };
            if let Some(opened_until) = trial {
                tracing::info!(provider = name, "circuit breaker closed");
                if let Err(e) = self.limits.close(name, opened_until).await {
                    tracing::warn!(provider = name, error = %e, "provider breaker not closed in the store");
                }
            }
            return;
        }
        let (failures, trial) = {
            let mut b = slot.breaker();
            b.failures += 1;
            (b.failures, b.trial.take().is_some())
        };
        if failures < self.breaker.failures && !trial {
            return;
        }
        if failures == self.breaker.failures || trial {
            tracing::warn!(provider = name, failures, "circuit breaker open");
        }
        self.open(slot, self.breaker.cooldown, None).await;
    }

    async fn trip_for_account(&self, slot: &Slot, e: &ProviderError) {
        // Loud, but once per cooldown: the trial after it is the only request that can fail.
        tracing::error!(
            provider = slot.member.name,
            code = %e.code(),
            reopens_in_s = self.breaker.account_cooldown.as_secs(),
            "provider account cannot send: circuit breaker open, messages fail over"
        );
        {
            let mut b = slot.breaker();
            b.failures = b.failures.max(self.breaker.failures);
            b.trial = None;
        }
        let reason = OutageReason {
            code: e.code(),
            message: e.message().to_owned(),
        };
        self.open(slot, self.breaker.account_cooldown, Some(reason))
            .await;
    }

    /// Opens the provider's breaker for `cooldown`, here at once and in the store for every
    /// other instance.
    async fn open(&self, slot: &Slot, cooldown: Duration, reason: Option<OutageReason>) {
        let until = Utc::now() + chrono::Duration::from_std(cooldown).unwrap_or_default();
        {
            let mut b = slot.breaker();
            if let Some(opened) = b.outage.opened(until, reason.clone()) {
                b.outage = opened;
            }
        }
        let name = slot.member.name.as_str();
        if let Err(e) = self.limits.open(name, until, reason).await {
            tracing::warn!(provider = name, error = %e, "provider breaker opened here only: the store did not take it");
        }
    }

    /// The account error that keeps provider `p` out, while its breaker is open.
    fn open_reason(&self, p: usize) -> Option<ProviderError> {
        let b = self.members[p].breaker();
        b.outage.open_until?;
        let reason = b.outage.reason.as_ref()?;
        Some(ProviderError::account(reason.code, reason.message.clone()))
    }

    /// Whether the provider's breaker is open now, as this instance last knew it (for health
    /// reports and tests).
    pub fn is_open(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|&i| self.members[i].breaker().outage.is_open(Utc::now()))
    }
}

/// How long the instance that took a breaker's trial holds it: if it vanishes meanwhile,
/// another instance takes the next trial after this.
const TRIAL_HOLD: Duration = Duration::from_secs(30);

/// Chunks of one provider's share of a batch in flight at once: the next grants are
/// leased (and waited for) while the last ones are sent.
const IN_FLIGHT: usize = 4;

/// This instance's view of a provider's breaker.
#[derive(Debug, Default)]
struct BreakerState {
    /// Consecutive failed requests of this instance.
    failures: u32,
    /// The breaker as last read from the store (or written by this instance).
    outage: Outage,
    fetched: Option<Instant>,
    /// The `open_until` this instance's running trial was taken under.
    trial: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Encoding, MessageId, PhoneNumber, SenderId};
    use async_trait::async_trait;
    use chrono::Utc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scripted provider: answers every send with `answer`, and counts sends.
    struct Scripted {
        name: String,
        answer: Mutex<Result<(), ProviderError>>,
        sends: AtomicUsize,
        times: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(name: &str, answer: Result<(), ProviderError>) -> Arc<Self> {
            Arc::new(Scripted {
                name: name.to_owned(),
                answer: Mutex::new(answer),
                sends: AtomicUsize::new(0),
                times: Mutex::new(Vec::new()),
            })
        }

        fn set(&self, answer: Result<(), ProviderError>) {
            *self.answer.lock().unwrap() = answer;
        }
    }

    #[async_trait]
    impl SmsProvider for Scripted {
        fn name(&self) -> &str {
            &self.name
        }

        async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            self.times.lock().unwrap().push(Instant::now());
            let answer = self.answer.lock().unwrap().clone();
            answer.map(|()| Submitted {
                provider_message_id: format!("{}-{}", self.name, sms.id),
                cost: Some(Kopiyky(85)),
            })
        }

        async fn lookup(&self, _id: &MessageId) -> Result<Option<Submitted>, ProviderError> {
            Ok(None)
        }
    }

    fn sms(to: &str, from: &str) -> OutboundSms {
        OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse(to).unwrap(),
            from: SenderId::parse(from).unwrap(),
            text: "hi".into(),
            encoding: Encoding::Gsm7,
            segments: 1,
            validity_seconds: 3600,
        }
    }

    fn routed(to: &str) -> Routed {
        Routed {
            tenant_id: TenantId::generate(Utc::now()),
            sms: sms(to, "Holub"),
        }
    }

    fn member(p: &Arc<Scripted>, mps: Option<u32>, price: Option<i64>) -> Member {
        Member {
            name: p.name.clone(),
            provider: p.clone(),
            messages_per_second: mps,
            price_per_part: price.map(Kopiyky),
        }
    }

    fn temporary() -> ProviderError {
        ProviderError::temporary(FailureCode::ProviderUnavailable, "503")
    }

    #[test]
    fn routes_by_operator_sender_tenant_and_price() {
        let (a, b, c) = (
            Scripted::new("a", Ok(())),
            Scripted::new("b", Ok(())),
            Scripted::new("c", Ok(())),
        );
        let vip = TenantId::generate(Utc::now());
        let rules = vec![
            RouteRule {
                tenants: vec![vip.clone()],
                providers: vec!["c".into()],
                ..RouteRule::default()
            },
            RouteRule {
                operators: vec![Operator::Kyivstar],
                providers: vec!["a".into(), "b".into()],
                ..RouteRule::default()
            },
            RouteRule {
                senders: vec!["Shop".into()],
                providers: vec!["a".into(), "b".into(), "c".into()],
                order: RouteOrder::Price,
                ..RouteRule::default()
            },
        ];
        let g = Gateway::new(
            vec![
                member(&a, None, Some(90)),
                member(&b, None, Some(70)),
                member(&c, None, None),
            ],
            rules,
            BreakerConfig::default(),
        )
        .unwrap();
        let anyone = TenantId::generate(Utc::now());
        assert_eq!(g.route_names(&vip, &sms("0671234567", "Holub")), ["c"]);
        assert_eq!(
            g.route_names(&anyone, &sms("0671234567", "Holub")),
            ["a", "b"]
        );
        assert_eq!(
            g.route_names(&anyone, &sms("0501234567", "Shop")),
            ["b", "a", "c"]
        );
        // No rule matches: every provider, cheapest first, unpriced last.
        assert_eq!(
            g.route_names(&anyone, &sms("0501234567", "Holub")),
            ["b", "a", "c"]
        );
    }

    #[test]
    fn a_route_table_naming_unknown_providers_is_refused() {
        let a = Scripted::new("a", Ok(()));
        let rules = vec![RouteRule {
            providers: vec!["nope".into()],
            ..RouteRule::default()
        }];
        assert!(matches!(
            Gateway::new(
                vec![member(&a, None, None)],
                rules,
                BreakerConfig::default()
            ),
            Err(RouteTableError::UnknownProvider { .. })
        ));
        assert!(matches!(
            Gateway::new(Vec::new(), Vec::new(), BreakerConfig::default()),
            Err(RouteTableError::NoProviders)
        ));
    }

    #[tokio::test]
    async fn retryable_errors_fail_over_and_others_do_not() {
        let down = Scripted::new("down", Err(temporary()));
        let up = Scripted::new("up", Ok(()));
        let g = Gateway::new(
            vec![member(&down, None, Some(1)), member(&up, None, Some(2))],
            Vec::new(),
            BreakerConfig {
                failures: 100,
                cooldown: Duration::from_secs(10),
                ..BreakerConfig::default()
            },
        )
        .unwrap();
        let batch: Vec<Routed> = (0..5).map(|_| routed("0671234567")).collect();
        let answers = g.send_many(&batch).await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Ok(c) if c.provider == "up"))
        );
        assert_eq!(down.sends.load(Ordering::SeqCst), 5);
        assert_eq!(up.sends.load(Ordering::SeqCst), 5);

        // An unknown outcome stays with the provider that may have the message.
        down.set(Err(ProviderError::unknown(
            FailureCode::ProviderTimeout,
            "timeout",
        )));
        let answers = g.send_many(&batch[..1]).await;
        assert!(matches!(&answers[0], Err(e) if e.is_unknown()));
        assert_eq!(up.sends.load(Ordering::SeqCst), 5);

        // A permanent refusal is final.
        down.set(Err(ProviderError::permanent(
            FailureCode::InvalidNumber,
            "no",
        )));
        let answers = g.send_many(&batch[..1]).await;
        assert!(matches!(&answers[0], Err(ProviderError::Permanent { .. })));

        // Every provider down: the last retryable error comes back.
        down.set(Err(temporary()));
        up.set(Err(temporary()));
        let answers = g.send_many(&batch[..1]).await;
        assert!(matches!(&answers[0], Err(e) if e.is_retryable()));
    }

    #[tokio::test]
    async fn an_open_breaker_is_skipped_until_a_trial_succeeds() {
        let flaky = Scripted::new("flaky", Err(temporary()));
        let backup = Scripted::new("backup", Ok(()));
        let g = Gateway::new(
            vec![
                member(&flaky, None, Some(1)),
                member(&backup, None, Some(2)),
            ],
            Vec::new(),
            BreakerConfig {
                failures: 3,
                cooldown: Duration::from_millis(300),
                ..BreakerConfig::default()
            },
        )
        .unwrap();
        for _ in 0..3 {
            g.send_many(&[routed("0671234567")]).await;
        }
        assert!(g.is_open("flaky"));
        let before = flaky.sends.load(Ordering::SeqCst);
        let answers = g
            .send_many(&[routed("0671234567"), routed("0671234567")])
            .await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Ok(c) if c.provider == "backup"))
        );
        assert_eq!(
            flaky.sends.load(Ordering::SeqCst),
            before,
            "skipped while open"
        );

        tokio::time::sleep(Duration::from_millis(350)).await;
        flaky.set(Ok(()));
        let answers = g.send_many(&[routed("0671234567")]).await;
        assert!(
            matches!(&answers[0], Ok(c) if c.provider == "flaky"),
            "the trial goes through"
        );
        assert!(!g.is_open("flaky"));
    }

    #[tokio::test]
    async fn a_provider_that_stops_answering_is_skipped_once_its_breaker_opens() {
        let slow = Scripted::new(
            "slow",
            Err(ProviderError::unknown(
                FailureCode::ProviderTimeout,
                "no answer",
            )),
        );
        let backup = Scripted::new("backup", Ok(()));
        let g = Gateway::new(
            vec![member(&slow, None, Some(1)), member(&backup, None, Some(2))],
            Vec::new(),
            BreakerConfig {
                failures: 2,
                cooldown: Duration::from_secs(60),
                ..BreakerConfig::default()
            },
        )
        .unwrap();
        // Messages whose answer was lost stay with the slow provider (dispatch settles them
        // by lookup); they are never sent to a second one.
        for _ in 0..2 {
            let answers = g.send_many(&[routed("0671234567")]).await;
            assert!(matches!(&answers[0], Err(e) if e.is_unknown()));
        }
        assert_eq!(backup.sends.load(Ordering::SeqCst), 0);
        assert!(g.is_open("slow"));
        // From then on, new messages go straight to the backup.
        let answers = g
            .send_many(&[routed("0671234567"), routed("0671234567")])
            .await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Ok(c) if c.provider == "backup"))
        );
        assert_eq!(slow.sends.load(Ordering::SeqCst), 2);
    }

    fn account(code: FailureCode) -> ProviderError {
        ProviderError::account(code, "TurboSMS answered 203 REQUIRED_BALANCE")
    }

    #[tokio::test]
    async fn an_account_error_opens_the_breaker_at_once_and_the_next_route_takes_the_message() {
        let broke = Scripted::new("broke", Err(account(FailureCode::InsufficientBalance)));
        let backup = Scripted::new("backup", Ok(()));
        let g = Gateway::new(
            vec![
                member(&broke, None, Some(1)),
                member(&backup, None, Some(2)),
            ],
            Vec::new(),
            BreakerConfig {
                failures: 5,
                cooldown: Duration::from_millis(10),
                account_cooldown: Duration::from_millis(300),
            },
        )
        .unwrap();
        let batch: Vec<Routed> = (0..4).map(|_| routed("0671234567")).collect();
        let answers = g.send_many(&batch).await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Ok(c) if c.provider == "backup")),
            "{answers:?}"
        );
        assert!(g.is_open("broke"), "one account error is enough");
        let sent = broke.sends.load(Ordering::SeqCst);
        assert_eq!(sent, 4, "the first request went out for every message");

        // Longer than the transient cooldown: still out, nothing more is asked of it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answers = g.send_many(&batch[..2]).await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Ok(c) if c.provider == "backup"))
        );
        assert_eq!(broke.sends.load(Ordering::SeqCst), sent);

        // After the account cooldown one trial goes; the balance was topped up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        broke.set(Ok(()));
        let answers = g.send_many(&batch[..1]).await;
        assert!(matches!(&answers[0], Ok(c) if c.provider == "broke"));
        assert!(!g.is_open("broke"));
    }

    #[tokio::test]
    async fn with_every_account_out_the_message_waits_and_is_never_failed() {
        let a = Scripted::new("a", Err(account(FailureCode::InsufficientBalance)));
        let b = Scripted::new("b", Err(account(FailureCode::ProviderUnauthorized)));
        let g = Gateway::new(
            vec![member(&a, None, Some(1)), member(&b, None, Some(2))],
            Vec::new(),
            BreakerConfig::default(),
        )
        .unwrap();
        let answers = g.send_many(&[routed("0671234567")]).await;
        let e = answers[0].as_ref().unwrap_err();
        assert!(e.is_account() && e.is_retryable(), "{e:?}");
        assert_eq!(
            e.code(),
            "provider_unauthorized",
            "the last provider's reason"
        );
        // Both skipped now; the answer still names what to fix.
        let answers = g.send_many(&[routed("0671234567")]).await;
        let e = answers[0].as_ref().unwrap_err();
        assert!(e.is_account() && e.is_retryable(), "{e:?}");
        assert_eq!(
            a.sends.load(Ordering::SeqCst) + b.sends.load(Ordering::SeqCst),
            2
        );
    }

    #[tokio::test]
    async fn the_rate_limit_holds_in_every_second_and_is_used_fully() {
        let p = Scripted::new("p", Ok(()));
        let g = Gateway::new(
            vec![member(&p, Some(20), None)],
            Vec::new(),
            BreakerConfig::default(),
        )
        .unwrap();
        let batch: Vec<Routed> = (0..70).map(|_| routed("0671234567")).collect();
        let started = Instant::now();
        // Two concurrent callers share the provider's limit.
        let (a, b) = tokio::join!(g.send_many(&batch[..35]), g.send_many(&batch[35..]));
        let took = started.elapsed();
        assert!(a.iter().chain(&b).all(Result::is_ok));
        let times = p.times.lock().unwrap().clone();
        assert_eq!(times.len(), 70);
        let mut sorted = times.clone();
        sorted.sort();
        for (i, t) in sorted.iter().enumerate() {
            let in_window = sorted[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(in_window <= 20, "{in_window} sends within one second");
        }
        // 70 at 20/s: 20 every 1.05 s (the grant margin), in slots of 2 every 105 ms: the
        // last slot opens 3.57 s after the first; not much more when the limit is used fully.
        assert!(took >= Duration::from_secs(3), "{took:?}");
        assert!(took < Duration::from_millis(4300), "{took:?}");
    }
}
