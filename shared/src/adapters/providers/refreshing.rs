//! Provider credentials that follow the secret store: a rotated secret is picked up within
//! [`CREDENTIALS_TTL`] on both targets (`holub serve` and the Lambda functions, which both
//! build their providers through [`super::table::build`]), and at once when the provider
//! refuses the credentials in use (a 401 after a rotation): the secret is re-read once,
//! past any cache, and the request made again with the new one.
//!
//! A wrapper around the built adapter rather than a handle inside each: every adapter
//! already parses and checks its credentials when it is built, so rebuilding it from the new
//! secret reuses that, keeps the four adapters free of refresh logic, and drops what an
//! adapter holds for the old credentials (Kyivstar's OAuth token) with them. The adapter is
//! rebuilt only when the secret's value changed.
//!
//! Ages are wall-clock time: a Lambda sandbox is frozen between invocations, and a
//! monotonic clock need not count the time it was frozen.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::http::codes;
use super::{Built, ProviderSetupError};
use crate::domain::{Kopiyky, MessageId};
use crate::ports::{
    OutboundSms, ProviderError, ProviderReceipt, ReceiptMode, ReceiptWebhook, Secret, SecretStore,
    SmsProvider, Submitted, WebhookError, WebhookRequest,
};

/// How long credentials are used before the secret is read again: under the 5 minutes the
/// deploy guide promises, with room for the request that notices.
pub const CREDENTIALS_TTL: Duration = Duration::from_secs(240);
/// After a failed read of the store, when to try again (the old credentials stay in use).
const RETRY_READ: Duration = Duration::from_secs(30);
/// Refusals closer together than this share one re-read: a batch refused at once must not
/// become a burst of reads of the store.
const REREAD_GAP: Duration = Duration::from_secs(10);

/// Builds the adapter from a secret's value (the provider kind's `build`, with its settings).
pub type Make = Arc<dyn Fn(&Secret) -> Result<Built, ProviderSetupError> + Send + Sync>;

/// A provider whose adapter is rebuilt when its secret changes.
pub struct Refreshing {
    name: String,
    secret_name: String,
    store: Arc<dyn SecretStore>,
    make: Make,
    ttl: Duration,
    receipt_mode: ReceiptMode,
    answers_status: bool,
    state: tokio::sync::Mutex<State>,
    webhook: Option<Arc<RwLock<Arc<dyn ReceiptWebhook>>>>,
}

struct State {
    secret: Secret,
    provider: Arc<dyn SmsProvider>,
    /// Bumped at every rebuild, so a refusal of an older adapter is not re-read again.
    generation: u64,
    next_read: SystemTime,
    last_forced: Option<SystemTime>,
}

/// Whether an error says the credentials in use were refused.
fn refused(e: &ProviderError) -> bool {
    e.is_account() && e.code() == codes::UNAUTHORIZED
}

impl Refreshing {
    /// Builds the provider `name` from `secret` (the value of `secret_name`, read now), and
    /// its receipt parser if it has one, both following later changes of the secret.
    pub fn start(
        name: &str,
        secret_name: &str,
        store: Arc<dyn SecretStore>,
        secret: Secret,
        make: Make,
        ttl: Duration,
    ) -> Result<Built, ProviderSetupError> {
        let built = make(&secret)?;
        let webhook = built.webhook.map(|w| Arc::new(RwLock::new(w)));
        let provider = Arc::new(Refreshing {
            name: name.to_owned(),
            secret_name: secret_name.to_owned(),
            store,
            make,
            ttl,
            receipt_mode: built.provider.receipt_mode(),
            answers_status: built.provider.answers_status(),
            state: tokio::sync::Mutex::new(State {
                secret,
                provider: built.provider,
                generation: 0,
                next_read: SystemTime::now() + ttl,
                last_forced: None,
            }),
            webhook: webhook.clone(),
        });
        let webhook = webhook
            .map(|current| Arc::new(RefreshingWebhook { current }) as Arc<dyn ReceiptWebhook>);
        Ok(Built { provider, webhook })
    }

    /// The adapter to use now, re-reading the secret if its time has come.
    async fn current(&self) -> (u64, Arc<dyn SmsProvider>) {
        let mut state = self.state.lock().await;
        if SystemTime::now() >= state.next_read {
            self.reread(&mut state).await;
        }
        (state.generation, Arc::clone(&state.provider))
    }

    /// The adapter to try again with after `generation`'s credentials were refused, if
    /// there is a newer one (made by another caller, or from the secret read now).
    async fn after_refusal(&self, generation: u64) -> Option<Arc<dyn SmsProvider>> {
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return Some(Arc::clone(&state.provider));
        }
        let now = SystemTime::now();
        let recent = state
            .last_forced
            .is_some_and(|at| now.duration_since(at).is_ok_and(|since| since < REREAD_GAP));
        if recent {
            return None;
        }
        state.last_forced = Some(now);
        tracing::info!(
            provider = %self.name,
            "credentials refused; reading the secret again in case it was rotated"
        );
        self.reread(&mut state)
            .await
            .then(|| Arc::clone(&state.provider))
    }

    /// Reads the secret past any cache; rebuilds the adapter if it changed. Whether it did.
    async fn reread(&self, state: &mut State) -> bool {
        let now = SystemTime::now();
        let secret = match self.store.get_fresh(&self.secret_name).await {
            Ok(secret) => secret,
            Err(e) => {
                tracing::warn!(
                    provider = %self.name,
                    error = %e,
                    "credentials not re-read; keeping those in use"
                );
                state.next_read = now + RETRY_READ;
                return false;
            }
        };
        state.next_read = now + self.ttl;
        if secret == state.secret {
            return false;
        }
        let built = match (self.make)(&secret) {
            Ok(built) => built,
            Err(e) => {
                // Remembered, so the same broken value is reported once, not at every read.
                state.secret = secret;
                tracing::error!(
                    provider = %self.name,
                    error = %e,
                    "the rotated credentials are unusable; keeping those in use"
                );
                return false;
            }
        };
        tracing::info!(provider = %self.name, "credentials changed; using the new ones");
        if let (Some(current), Some(fresh)) = (&self.webhook, built.webhook)
            && let Ok(mut current) = current.write()
        {
            *current = fresh;
        }
        state.secret = secret;
        state.provider = built.provider;
        state.generation += 1;
        true
    }

    /// Runs `call` with the current adapter and, if it says the credentials were refused,
    /// once more with newer ones when there are any.
    async fn with_retry<T, F, Fut>(&self, call: F) -> Result<T, ProviderError>
    where
        F: Fn(Arc<dyn SmsProvider>) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let (generation, provider) = self.current().await;
        match call(provider).await {
            Err(e) if refused(&e) => match self.after_refusal(generation).await {
                Some(fresh) => call(fresh).await,
                None => Err(e),
            },
            other => other,
        }
    }
}

#[async_trait]
impl SmsProvider for Refreshing {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
        self.with_retry(|p| async move { p.send(sms).await }).await
    }

    async fn send_many(&self, batch: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        let (generation, provider) = self.current().await;
        let mut answers = provider.send_many(batch).await;
        let again: Vec<usize> = (0..answers.len())
            .filter(|&i| matches!(&answers[i], Err(e) if refused(e)))
            .collect();
        if again.is_empty() {
            return answers;
        }
        let Some(fresh) = self.after_refusal(generation).await else {
            return answers;
        };
        // Only the refused ones: the provider took the others.
        let resend: Vec<OutboundSms> = again.iter().map(|&i| batch[i].clone()).collect();
        for (i, answer) in again.into_iter().zip(fresh.send_many(&resend).await) {
            answers[i] = answer;
        }
        answers
    }

    async fn lookup(&self, id: &MessageId) -> Result<Option<Submitted>, ProviderError> {
        self.with_retry(|p| async move { p.lookup(id).await }).await
    }

    fn receipt_mode(&self) -> ReceiptMode {
        self.receipt_mode
    }

    fn answers_status(&self) -> bool {
        self.answers_status
    }

    async fn status(
        &self,
        provider_message_ids: &[String],
    ) -> Result<Vec<ProviderReceipt>, ProviderError> {
        self.with_retry(|p| async move { p.status(provider_message_ids).await })
            .await
    }

    async fn balance(&self) -> Result<Kopiyky, ProviderError> {
        self.with_retry(|p| async move { p.balance().await }).await
    }
}

/// The receipt parser of the adapter in use; it changes when the provider is rebuilt (a
/// webhook token lives in the same secret).
struct RefreshingWebhook {
    current: Arc<RwLock<Arc<dyn ReceiptWebhook>>>,
}

impl ReceiptWebhook for RefreshingWebhook {
    fn parse(
        &self,
        request: &WebhookRequest<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<ProviderReceipt>, WebhookError> {
        let current = match self.current.read() {
            Ok(current) => Arc::clone(&current),
            // A writer panicked mid-swap; the value it left is still a whole parser.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        current.parse(request, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Encoding, PhoneNumber, SenderId};
    use crate::ports::SecretError;
    use chrono::Utc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The provider's side: which key it takes now, and the keys it was sent.
    #[derive(Default)]
    struct Account {
        valid: Mutex<String>,
        used: Mutex<Vec<String>>,
    }

    /// An adapter built from a secret holding a key.
    struct Keyed {
        key: String,
        account: Arc<Account>,
    }

    #[async_trait]
    impl SmsProvider for Keyed {
        fn name(&self) -> &str {
            "keyed"
        }

        async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
            self.account.used.lock().unwrap().push(self.key.clone());
            if *self.account.valid.lock().unwrap() != self.key {
                return Err(ProviderError::account(codes::UNAUTHORIZED, "HTTP 401"));
            }
            Ok(Submitted {
                provider_message_id: sms.id.to_string(),
                cost: None,
            })
        }

        async fn lookup(&self, _: &MessageId) -> Result<Option<Submitted>, ProviderError> {
            Ok(None)
        }
    }

    /// A secret store holding one value, counting reads.
    #[derive(Default)]
    struct Store {
        value: Mutex<String>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl SecretStore for Store {
        async fn get(&self, _: &str) -> Result<Secret, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(Secret::new(self.value.lock().unwrap().clone()))
        }

        async fn put(&self, _: &str, value: &Secret) -> Result<(), SecretError> {
            *self.value.lock().unwrap() = value.expose().to_owned();
            Ok(())
        }
    }

    fn rotate(store: &Store, account: &Account, key: &str) {
        *store.value.lock().unwrap() = key.to_owned();
        *account.valid.lock().unwrap() = key.to_owned();
    }

    type Started = (
        Arc<dyn SmsProvider>,
        Arc<Store>,
        Arc<Account>,
        Arc<AtomicUsize>,
    );

    fn started(ttl: Duration) -> Started {
        let store = Arc::new(Store::default());
        let account = Arc::new(Account::default());
        rotate(&store, &account, "old");
        let builds = Arc::new(AtomicUsize::new(0));
        let make: Make = {
            let (account, builds) = (Arc::clone(&account), Arc::clone(&builds));
            Arc::new(move |secret: &Secret| {
                builds.fetch_add(1, Ordering::SeqCst);
                if secret.expose().is_empty() {
                    return Err(ProviderSetupError::Credentials {
                        name: "keyed".into(),
                        message: "empty".into(),
                    });
                }
                Ok(Built {
                    provider: Arc::new(Keyed {
                        key: secret.expose().to_owned(),
                        account: Arc::clone(&account),
                    }),
                    webhook: None,
                })
            })
        };
        let built = Refreshing::start(
            "keyed",
            "providers/keyed",
            store.clone(),
            Secret::new("old"),
            make,
            ttl,
        )
        .unwrap();
        (built.provider, store, account, builds)
    }

    fn sms() -> OutboundSms {
        OutboundSms {
            id: MessageId::generate(Utc::now()),
            to: PhoneNumber::parse("0671234567").unwrap(),
            from: SenderId::parse("Holub").unwrap(),
            text: "hi".into(),
            encoding: Encoding::Gsm7,
            segments: 1,
            validity_seconds: 3600,
        }
    }

    #[tokio::test]
    async fn a_refusal_after_a_rotation_rereads_the_secret_once_and_sends_with_the_new_one() {
        let (provider, store, account, builds) = started(Duration::from_secs(3600));
        assert!(provider.send(&sms()).await.is_ok());
        rotate(&store, &account, "new");
        // A batch refused at once: one read of the store, one new adapter, every message
        // sent again with it.
        let batch: Vec<OutboundSms> = (0..5).map(|_| sms()).collect();
        assert!(provider.send_many(&batch).await.iter().all(Result::is_ok));
        assert!(provider.send(&sms()).await.is_ok());
        let used = account.used.lock().unwrap().clone();
        assert_eq!(
            used[..6],
            ["old"; 6],
            "the first send, then the batch refused"
        );
        assert_eq!(used[6..], ["new"; 6], "the batch again, then the next send");
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        assert_eq!(builds.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refusal_with_the_secret_unchanged_is_an_account_error_and_reads_once() {
        let (provider, store, account, builds) = started(Duration::from_secs(3600));
        *account.valid.lock().unwrap() = "revoked".into();
        let batch: Vec<OutboundSms> = (0..5).map(|_| sms()).collect();
        for answer in provider.send_many(&batch).await {
            let e = answer.unwrap_err();
            assert!(refused(&e), "{e:?}");
        }
        let e = provider.send(&sms()).await.unwrap_err();
        assert!(e.is_account(), "{e:?}");
        assert_eq!(store.reads.load(Ordering::SeqCst), 1, "one read per burst");
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn after_the_ttl_the_rotated_secret_is_used_without_a_refusal() {
        let (provider, store, account, _) = started(Duration::from_millis(50));
        // The provider still takes the old key too: only the TTL can show the new one.
        *store.value.lock().unwrap() = "new".into();
        assert!(provider.send(&sms()).await.is_ok());
        assert_eq!(account.used.lock().unwrap().last().unwrap(), "old");
        tokio::time::sleep(Duration::from_millis(80)).await;
        *account.valid.lock().unwrap() = "new".into();
        assert!(provider.send(&sms()).await.is_ok());
        assert_eq!(
            *account.used.lock().unwrap(),
            ["old", "new"],
            "no refusal was needed"
        );
    }

    #[tokio::test]
    async fn an_unusable_rotated_secret_keeps_the_old_credentials() {
        let (provider, store, account, builds) = started(Duration::from_millis(20));
        *store.value.lock().unwrap() = String::new();
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(provider.send(&sms()).await.is_ok());
        assert_eq!(account.used.lock().unwrap().last().unwrap(), "old");
        assert_eq!(
            builds.load(Ordering::SeqCst),
            2,
            "tried once, reported once"
        );
    }
}
