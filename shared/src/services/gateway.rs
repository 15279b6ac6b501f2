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
//! ends (then `expired`, naming the account error), since fixing the account fixes it. Each provider's messages-per-second limit is held exactly: never
//! more in any one-second window, and used fully while there is a backlog.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::domain::FailureCode;
use crate::domain::{Kopiyky, MessageId, Operator, TenantId};
use crate::ports::{OutboundSms, ProviderError, Retryable, SmsProvider, Submitted};

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
}

struct Slot {
    member: Member,
    limiter: Option<RateLimiter>,
    breaker: Mutex<BreakerState>,
}

impl Gateway {
    /// Checks the table against the providers. Messages that no rule matches go to every
    /// provider, cheapest first.
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
                limiter: member.messages_per_second.map(RateLimiter::new),
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
        })
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

    /// Sends the messages `items` of `batch` to provider `p`, within its rate limit.
    /// `None` for a message means the provider was skipped (its breaker is open).
    async fn send_to(
        &self,
        p: usize,
        items: &[usize],
        batch: &[Routed],
    ) -> Vec<Option<Result<Carried, ProviderError>>> {
        let slot = &self.members[p];
        if !self.admit(slot) {
            return vec![None; items.len()];
        }
        let mut out = Vec::with_capacity(items.len());
        let mut rest = items;
        while !rest.is_empty() {
            let n = match &slot.limiter {
                Some(l) => l.acquire(rest.len()).await,
                None => rest.len(),
            };
            let (now, later) = rest.split_at(n.min(rest.len()).max(1));
            let sms: Vec<OutboundSms> = now.iter().map(|&i| batch[i].sms.clone()).collect();
            let answers = slot.member.provider.send_many(&sms).await;
            self.record(slot, &answers);
            out.extend(answers.into_iter().map(|a| {
                Some(a.map(|submitted| Carried {
                    provider: slot.member.name.clone(),
                    submitted,
                }))
            }));
            rest = later;
        }
        out
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

    /// Whether a request may go to this provider now (closed breaker, or the one trial of a
    /// half-open one).
    fn admit(&self, slot: &Slot) -> bool {
        let Ok(mut b) = slot.breaker.lock() else {
            return true;
        };
        match b.open_until {
            Some(until) if Instant::now() < until => false,
            Some(_) if b.trial_running => false,
            Some(_) => {
                b.trial_running = true;
                true
            }
            None => true,
        }
    }

    /// A request counts as failed when no message of it went through and at least one met a
    /// retryable error or an unknown outcome (the provider, not the message, is at fault).
    /// One account error opens the breaker at once, even beside successes: a balance that
    /// ran out in the middle of a batch stops the rest of it too.
    fn record(&self, slot: &Slot, answers: &[Result<Submitted, ProviderError>]) {
        if let Some(e) = answers
            .iter()
            .find_map(|a| a.as_ref().err().filter(|e| e.is_account()))
        {
            self.trip_for_account(slot, e);
            return;
        }
        let any_ok = answers.iter().any(Result::is_ok);
        let provider_fault = answers
            .iter()
            .any(|a| matches!(a, Err(e) if e.is_retryable() || e.is_unknown()));
        let Ok(mut b) = slot.breaker.lock() else {
            return;
        };
        b.trial_running = false;
        if any_ok || !provider_fault {
            if b.open_until.is_some() || b.account_error.is_some() {
                tracing::info!(provider = slot.member.name, "circuit breaker closed");
            }
            *b = BreakerState::default();
            return;
        }
        b.failures += 1;
        if b.failures >= self.breaker.failures {
            if b.open_until.is_none() || b.failures == self.breaker.failures {
                tracing::warn!(
                    provider = slot.member.name,
                    failures = b.failures,
                    "circuit breaker open"
                );
            }
            b.open_until = Some(Instant::now() + self.breaker.cooldown);
        }
    }

    fn trip_for_account(&self, slot: &Slot, e: &ProviderError) {
        let Ok(mut b) = slot.breaker.lock() else {
            return;
        };
        // Loud, but once per cooldown: the trial after it is the only request that can fail.
        tracing::error!(
            provider = slot.member.name,
            code = %e.code(),
            reopens_in_s = self.breaker.account_cooldown.as_secs(),
            "provider account cannot send: circuit breaker open, messages fail over"
        );
        b.trial_running = false;
        b.failures = b.failures.max(self.breaker.failures);
        b.open_until = Some(Instant::now() + self.breaker.account_cooldown);
        b.account_error = Some(e.clone());
    }

    /// The account error that keeps provider `p` out, while its breaker is open.
    fn open_reason(&self, p: usize) -> Option<ProviderError> {
        let b = self.members[p].breaker.lock().ok()?;
        b.open_until?;
        b.account_error.clone()
    }

    /// Whether the provider's breaker is open now (for health reports and tests).
    pub fn is_open(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .and_then(|&i| self.members[i].breaker.lock().ok().map(|b| b.open_until))
            .flatten()
            .is_some_and(|until| Instant::now() < until)
    }
}

#[derive(Debug, Default)]
struct BreakerState {
    failures: u32,
    open_until: Option<Instant>,
    trial_running: bool,
    /// Why it is open, if an account error opened it.
    account_error: Option<ProviderError>,
}

/// At most `limit` grants in any window of one second (a sliding window over the times of
/// the last `limit` grants), handed out as soon as the window allows.
///
/// A grant is held a little longer than the second ([`GRANT_MARGIN`]): the provider sees a
/// request somewhat after its grant was stamped (the task may be descheduled in between,
/// the network adds its own delay), and a one-second window at the provider's end must not
/// see more than the limit either.
pub struct RateLimiter {
    limit: usize,
    grants: tokio::sync::Mutex<VecDeque<Instant>>,
}

const WINDOW: Duration = Duration::from_secs(1);

/// How much longer than [`WINDOW`] a grant counts.
pub const GRANT_MARGIN: Duration = Duration::from_millis(50);

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let limit = per_second.max(1) as usize;
        RateLimiter {
            limit,
            grants: tokio::sync::Mutex::new(VecDeque::with_capacity(limit)),
        }
    }

    /// Waits until at least one grant is free, then takes up to `want`; returns how many.
    /// The lock is held while waiting, so waiters are served in turn.
    pub async fn acquire(&self, want: usize) -> usize {
        let mut grants = self.grants.lock().await;
        loop {
            let now = Instant::now();
            while grants
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW + GRANT_MARGIN)
            {
                grants.pop_front();
            }
            let free = self.limit - grants.len();
            if free > 0 {
                let n = want.clamp(1, free);
                grants.extend(std::iter::repeat_n(now, n));
                return n;
            }
            // The oldest grant leaves the window first.
            let oldest = grants.front().copied().unwrap_or(now);
            tokio::time::sleep_until((oldest + WINDOW + GRANT_MARGIN).into()).await;
        }
    }
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
        // 70 at 20/s: the first 20 at once, then 20 per second: at least 3 s, and not
        // much more when the limit is used fully.
        assert!(took >= Duration::from_secs(3), "{took:?}");
        assert!(took < Duration::from_millis(3600), "{took:?}");
    }
}
