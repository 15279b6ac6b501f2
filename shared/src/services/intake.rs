//! Intake: a request becomes stored, queued messages (or scheduled ones), exactly once per
//! idempotency key.
//!
//! Order of work: the messages are stored first (with the idempotency record, atomically),
//! then their dispatch jobs are sent. If sending the jobs fails (the queue is down, the disk
//! is full), the request is still accepted — its messages are stored — and the jobs wait in
//! memory for [`Intake::requeue_failed`], which a timer runs every second or so: an OTP must
//! not wait for the requeue sweep, minutes later. A crash loses that memory; the sweeper's
//! requeue of stale `queued` messages stays the backstop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::address;
use crate::domain::links::{self, ShortBase, ShortCode, TrackedLink};
use crate::domain::segments::encoding_of;
use crate::domain::text::{MAX_TEXT_BYTES, TextPolicy};
use crate::domain::{
    BatchId, Category, Encoding, IdempotencyKey, Message, MessageId, MessageStatus, MessageText,
    Origin, Pace, PhoneNumber, SenderId, SendingWindow, StatusCallback, StatusChange, StatusSet,
    TenantId, TenantLimits, TextError,
};
use crate::ports::store::IdempotencyRecord;
use crate::ports::{
    Clock, ConsentStore, MessageStore, Queue, QueueError, QueueName, Resolver, Retryable,
    StoreError, SystemResolver,
};

use super::jobs::{self, DispatchJob};
use super::limits::{Charge, Limits, LimitsError, Refusal, SetLimitsError};
use super::senders::Senders;
use super::template::{self, TemplateError};
use super::view::MessageView;

#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub default_validity: Duration,
    pub min_validity: Duration,
    pub max_validity: Duration,
    pub max_parts: usize,
    pub max_batch: usize,
    /// How far ahead a message may be scheduled.
    pub max_schedule_ahead: Duration,
    /// Whether status callbacks may go to loopback, private and link-local addresses. Off
    /// for a hosted Holub (a callback must not reach into its own network, such as a cloud
    /// metadata endpoint); on for Holub on one's own machine.
    pub allow_private_callbacks: bool,
    /// How long a callback URL's name may take to resolve where only public addresses are
    /// allowed; past it the URL is taken, and the check when the callback is sent decides.
    pub callback_lookup_timeout: Duration,
    /// Where tracked links' short links live (`None`: links cannot be tracked).
    pub short_link_base: Option<ShortBase>,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            default_validity: Duration::from_secs(24 * 3600),
            min_validity: Duration::from_secs(60),
            max_validity: Duration::from_secs(72 * 3600),
            max_parts: crate::domain::text::DEFAULT_MAX_PARTS,
            max_batch: 10_000,
            max_schedule_ahead: Duration::from_secs(366 * 24 * 3600),
            allow_private_callbacks: false,
            callback_lookup_timeout: Duration::from_secs(2),
            short_link_base: None,
        }
    }
}

/// The field a request's start is given in, with its codes: a message's `send_at`, a
/// campaign's `start_at`.
pub struct StartField {
    name: &'static str,
    invalid: &'static str,
    example: &'static str,
    too_far: &'static str,
}

impl StartField {
    pub const SEND_AT: StartField = StartField {
        name: "send_at",
        invalid: "send_at_invalid",
        example: "2026-12-01T09:00:00+02:00",
        too_far: "send_at_too_far",
    };
    pub const START_AT: StartField = StartField {
        name: "start_at",
        invalid: "start_at_invalid",
        example: "2026-12-01T10:00:00+02:00",
        too_far: "start_at_too_far",
    };
}

impl IntakeConfig {
    /// When a request given to start at `raw` starts: `None` for now, which a time already
    /// past also means.
    pub fn start(
        &self,
        field: &StartField,
        raw: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, FieldError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let at = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| {
                FieldError::new(
                    field.invalid,
                    field.name,
                    format!(
                        "{} must be an RFC 3339 date-time, e.g. {}",
                        field.name, field.example
                    ),
                )
            })?
            .with_timezone(&Utc);
        if at > now + self.max_schedule_ahead {
            return Err(FieldError::new(
                field.too_far,
                field.name,
                format!("{} is more than a year ahead", field.name),
            ));
        }
        Ok((at > now).then_some(at))
    }

    /// A request's validity: `secs` if in range, the default if not given.
    pub fn validity(&self, secs: Option<u64>) -> Result<Duration, FieldError> {
        let Some(secs) = secs else {
            return Ok(self.default_validity);
        };
        let v = Duration::from_secs(secs);
        if v < self.min_validity || v > self.max_validity {
            return Err(FieldError::new(
                "validity_out_of_range",
                "validity",
                format!(
                    "validity is from {} to {} seconds",
                    self.min_validity.as_secs(),
                    self.max_validity.as_secs()
                ),
            ));
        }
        Ok(v)
    }
}

const MAX_REFERENCE_LEN: usize = 128;
const MAX_METADATA_BYTES: usize = 4096;
const MAX_CALLBACK_URL_LEN: usize = 2048;

/// What a callback URL may look like, stated in the OpenAPI document and held to here:
/// http(s), a DNS name or an IPv4 address, a port, and a path and query of URL-safe
/// characters; no credentials, fragments or spaces.
pub const CALLBACK_URL_PATTERN: &str = r"^https?://(([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){0,9}[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,1000})?(\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,500})?$";

/// The pattern, compiled once (a test proves it compiles; were it not to, every callback URL
/// would be refused rather than any let through).
static CALLBACK_URL: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(CALLBACK_URL_PATTERN).ok());
const MAX_VARIABLES: usize = 50;
/// Dispatch jobs kept for [`Intake::requeue_failed`] at most (a full 10,000-recipient batch
/// fits many times); beyond that, the requeue sweep finds their messages.
const MAX_UNQUEUED: usize = 100_000;
/// Jobs sent per queue call by [`Intake::requeue_failed`].
const REQUEUE_CHUNK: usize = 1000;

/// `POST /v1/messages`, as received: fields stay raw so each can be refused by name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SendMessageRequest {
    /// The recipient, as typed: `+380671234567`, `0671234567`, `(067) 123-45-67`, …; valid
    /// foreign mobiles too. The pattern states the plain Ukrainian forms.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7}$")
    )]
    pub to: String,
    /// Sender alpha-name (3–11 Latin letters/digits) or a phone number.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^([A-Za-z][A-Za-z0-9]{2,10}|(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7})$"
        )
    )]
    pub from: String,
    /// At most 10 parts, and at most 16 KiB as written; not blank, and no control
    /// characters but line breaks.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 16384,
            pattern = "^[^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub text: String,
    /// RFC 3339; when given and in the future (at most a year ahead), the message is
    /// scheduled.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub send_at: Option<String>,
    /// Seconds the message stays worth delivering (60 to 259200; default 86400).
    #[serde(default)]
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 259200))]
    pub validity: Option<u64>,
    /// Transliterate Ukrainian Cyrillic to Latin so the text travels as GSM-7.
    #[serde(default)]
    pub transliterate: bool,
    /// Replace every http(s) URL in the text (up to 10) by a short link of this message,
    /// which redirects to it and counts its clicks (people and link-preview fetchers apart):
    /// `clicks` on the message, clicks and click-through rate in the analytics, and a
    /// `message.clicked` callback on the first click by a person. Parts and cost are those
    /// of the text with short links.
    #[serde(default)]
    pub track_links: bool,
    /// `transactional` (default: OTP codes, notices, alerts) or `marketing` (advertising).
    /// A marketing message goes only to a number whose consent is on record and not
    /// withdrawn (refused otherwise: `consent_missing`, `consent_withdrawn`, and checked
    /// again before it is sent), only inside the tenant's `marketing_window` (outside it, it
    /// is scheduled for the window's next opening), and ends with an opt-out link
    /// (`Відписатися: <short base>/<code>`, or `Vidpysatysia:` in a GSM-7 text), counted in
    /// its parts and cost.
    #[serde(default)]
    pub category: Category,
    /// Each status change is POSTed here, signed: an http(s) URL without credentials, up to
    /// 2,048 characters. Where Holub serves others: https only, and a host that is and
    /// resolves to public addresses only (no loopback, private, link-local or other special
    /// range, however written).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^https?://(([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.){0,9}[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,1000})?(\\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,500})?$"
        )
    )]
    pub callback_url: Option<String>,
    /// The statuses `callback_url` is told about (at least one; every status when absent),
    /// e.g. only the final ones: `["delivered", "undelivered", "expired", "failed"]`. No
    /// callback tells of `accepted`: the answer to the request does.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub callback_statuses: Option<Vec<MessageStatus>>,
    /// Your own reference, up to 128 printable characters, returned with the message.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")
    )]
    pub reference: Option<String>,
    /// Your own JSON object (up to 4 KiB), returned with the message.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `POST /v1/messages/batch`: one text (with `{{name}}` placeholders) to many recipients.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// As for one message.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^([A-Za-z][A-Za-z0-9]{2,10}|(\\+?380|0)(39|50|63|66|67|68|73|75|77|9[1-9])[0-9]{7})$"
        )
    )]
    pub from: String,
    /// With `{{name}}` placeholders; at most 16 KiB before and after they are filled in;
    /// otherwise as for one message.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 16384,
            pattern = "^[^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u0009\\u000B\\u000E-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub text: String,
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
    pub recipients: Vec<BatchRecipient>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub send_at: Option<String>,
    #[serde(default)]
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 259200))]
    pub validity: Option<u64>,
    #[serde(default)]
    pub transliterate: bool,
    /// As for one message: each recipient's message gets short links of its own.
    #[serde(default)]
    pub track_links: bool,
    /// As for one message; every recipient is checked for consent on its own.
    #[serde(default)]
    pub category: Category,
    /// As for one message.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = "^https?://(([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.){0,9}[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?|((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]{0,1000})?(\\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,500})?$"
        )
    )]
    pub callback_url: Option<String>,
    /// The statuses `callback_url` is told about (at least one; every status when absent),
    /// e.g. only the final ones: `["delivered", "undelivered", "expired", "failed"]`. No
    /// callback tells of `accepted`: the answer to the request does.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub callback_statuses: Option<Vec<MessageStatus>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchRecipient {
    /// As for one message; a number that is not valid is refused for this recipient alone,
    /// in the results of a `202`, so the schema holds any text here.
    pub to: String,
    /// Values for the text's `{{name}}` placeholders (at most 50).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// As for one message; one that is not valid is refused for this recipient alone.
    #[serde(default)]
    pub reference: Option<String>,
}

/// A refused field: a stable code, words for a person, and which field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
    pub field: String,
}

impl FieldError {
    pub(crate) fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
            field: field.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{}", .0.message)]
    Invalid(FieldError),
    #[error("this idempotency key was used with a different request")]
    IdempotencyConflict,
    #[error("storing the message failed")]
    Store(#[from] StoreError),
    #[error("queueing the message failed")]
    Queue(#[from] QueueError),
    /// Refused by one of the tenant's abuse limits (rate, spend, per-number).
    #[error("{0}")]
    Limited(Refusal),
    /// A marketing message to a number without consent on record, or with it withdrawn: the
    /// request is sound, the number's state forbids it (`consent_missing`,
    /// `consent_withdrawn`).
    #[error("{}", .0.message)]
    NoConsent(FieldError),
}

impl From<LimitsError> for IntakeError {
    fn from(e: LimitsError) -> Self {
        match e {
            LimitsError::Refused(r) => IntakeError::Limited(r),
            LimitsError::Store(s) => IntakeError::Store(s),
        }
    }
}

impl IntakeError {
    /// Whether the client may simply try again (with the same idempotency key).
    pub fn is_retryable(&self) -> bool {
        match self {
            IntakeError::Store(e) => e.is_retryable(),
            IntakeError::Queue(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What the API answers: the status code and the JSON body, stored as they are under the
/// idempotency key so a repeated request gets the very same answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// An idempotency key with the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    pub fingerprint: String,
}

/// Fields every message of a request shares, once validated.
#[derive(Clone)]
struct Common {
    from: SenderId,
    send_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    callback_url: Option<String>,
    /// `None`: the request named none (every status, or the account callback's).
    callback_statuses: Option<StatusSet>,
    metadata: Option<serde_json::Value>,
    policy: TextPolicy,
    /// Where the short links of tracked links go (`None`: links are not tracked).
    links: Option<ShortBase>,
    category: Category,
    /// Where a marketing message's opt-out link goes (`Some` for marketing only).
    opt_out: Option<ShortBase>,
}

impl Common {
    /// What the account's settings add to a request: its status callback where the request
    /// named no URL of its own (the request's `callback_statuses`, if given, still choose
    /// the statuses), and for marketing its sending window.
    fn settle(&mut self, limits: &TenantLimits, now: DateTime<Utc>) {
        if self.callback_url.is_none()
            && let Some(account) = &limits.status_callback
        {
            self.callback_url = Some(account.url.clone());
            self.callback_statuses = self.callback_statuses.or(Some(account.status_set()));
        }
        self.keep_to(limits.marketing_window, now);
    }

    /// Keeps a marketing request to the tenant's sending window: one that would go out
    /// outside it is scheduled for the window's next opening, its validity counted from then.
    fn keep_to(&mut self, window: SendingWindow, now: DateTime<Utc>) {
        if !self.category.is_marketing() {
            return;
        }
        let start = self.send_at.unwrap_or(now);
        let opens = window.next_open(start);
        if opens > start {
            self.expires_at += opens - start;
            self.send_at = Some(opens);
        }
    }
}

pub struct Intake {
    store: Arc<dyn MessageStore>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    senders: Arc<Senders>,
    limits: Arc<Limits>,
    consent: Arc<dyn ConsentStore>,
    config: IntakeConfig,
    resolver: Arc<dyn Resolver>,
    /// Jobs of stored messages that could not be queued when they were accepted.
    unqueued: Mutex<Vec<DispatchJob>>,
}

impl Intake {
    pub fn new(
        store: Arc<dyn MessageStore>,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
        senders: Arc<Senders>,
        limits: Arc<Limits>,
        consent: Arc<dyn ConsentStore>,
        config: IntakeConfig,
    ) -> Self {
        Intake {
            store,
            queue,
            clock,
            senders,
            limits,
            consent,
            config,
            resolver: Arc::new(SystemResolver),
            unqueued: Mutex::new(Vec::new()),
        }
    }

    /// Where only public addresses are allowed, refuses a callback URL whose name resolves to
    /// one that is not, to tell the customer now rather than drop its callbacks later. A
    /// lookup that fails or is slow lets the URL through: sending checks again, on the
    /// lookup it connects with, and that is the guard.
    async fn check_callback_name(&self, callback_url: Option<&str>) -> Result<(), FieldError> {
        match callback_url {
            Some(url) if !self.config.allow_private_callbacks => {
                check_public_name(
                    self.resolver.as_ref(),
                    self.config.callback_lookup_timeout,
                    url,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// Sets the account's status callback, checked as a message's `callback_url` and
    /// `callback_statuses` are; `url` `None` removes it (whatever the statuses). Messages
    /// accepted after use it.
    pub async fn set_status_callback(
        &self,
        tenant: &TenantId,
        url: Option<&str>,
        statuses: Option<Vec<MessageStatus>>,
        origin: &Origin,
    ) -> Result<Option<StatusCallback>, IntakeError> {
        let callback = match url {
            // No address: no account callback (statuses of none tell nobody).
            None => None,
            Some(raw) => {
                let url = parse_callback_url(raw, self.config.allow_private_callbacks)
                    .map_err(IntakeError::Invalid)?;
                if statuses.as_ref().is_some_and(Vec::is_empty) {
                    return Err(IntakeError::Invalid(FieldError::new(
                        "callback_statuses_empty",
                        "callback_statuses",
                        "callback_statuses names at least one status (leave it out for all)",
                    )));
                }
                self.check_callback_name(Some(&url))
                    .await
                    .map_err(IntakeError::Invalid)?;
                Some(StatusCallback {
                    url,
                    statuses: statuses.map(BTreeSet::from_iter),
                })
            }
        };
        match self
            .limits
            .set_status_callback(tenant, callback.clone(), origin)
            .await
        {
            Ok(_) => Ok(callback),
            Err(SetLimitsError::Store(e)) => Err(IntakeError::Store(e)),
            // Stored limits that no longer pass their own checks: the operator's to mend.
            Err(SetLimitsError::Invalid(e)) => Err(IntakeError::Store(StoreError::Corrupt(
                format!("tenant limits: {e}"),
            ))),
        }
    }

    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    /// Sends the dispatch jobs that could not be queued when their messages were accepted.
    /// Returns how many were sent; on an error, those not sent are kept for the next call.
    pub async fn requeue_failed(&self) -> Result<usize, QueueError> {
        let mut sent = 0;
        loop {
            let chunk: Vec<DispatchJob> = {
                let mut unqueued = self.unqueued();
                let start = unqueued.len().saturating_sub(REQUEUE_CHUNK);
                unqueued.split_off(start)
            };
            if chunk.is_empty() {
                return Ok(sent);
            }
            let outgoing = chunk.iter().map(jobs::outgoing).collect();
            if let Err(e) = self.queue.send_batch(QueueName::Dispatch, outgoing).await {
                self.keep_unqueued(chunk);
                return Err(e);
            }
            sent += chunk.len();
        }
    }

    fn unqueued(&self) -> std::sync::MutexGuard<'_, Vec<DispatchJob>> {
        // The list stays consistent whatever panicked while it was held: pushes and splits.
        self.unqueued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps jobs for [`Intake::requeue_failed`], as many as there is room for.
    fn keep_unqueued(&self, waiting: Vec<DispatchJob>) {
        let mut unqueued = self.unqueued();
        let room = MAX_UNQUEUED.saturating_sub(unqueued.len());
        if waiting.len() > room {
            tracing::warn!(
                dropped = waiting.len() - room,
                "too many dispatch jobs waiting to be queued; the requeue sweep will find the rest"
            );
        }
        unqueued.extend(waiting.into_iter().take(room));
    }

    pub async fn send(
        &self,
        tenant: &TenantId,
        req: SendMessageRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Reply, IntakeError> {
        if let Some(reply) = self.replay(tenant, idempotency.as_ref()).await? {
            return Ok(reply);
        }
        let now = self.clock.now();
        let mut common = self
            .common(
                now,
                &req.from,
                req.send_at.as_deref(),
                req.validity,
                req.callback_url,
                req.callback_statuses,
                req.metadata,
                req.transliterate,
                req.track_links,
                req.category,
            )
            .map_err(IntakeError::Invalid)?;
        self.check_callback_name(common.callback_url.as_deref())
            .await
            .map_err(IntakeError::Invalid)?;
        let to = parse_phone(&req.to, "to").map_err(IntakeError::Invalid)?;
        let limits = self.limits.of(tenant).await?;
        common.settle(&limits, now);
        Limits::allows_destination(&limits, &to)
            .map_err(|r| IntakeError::Invalid(FieldError::new(r.code, "to", r.message)))?;
        let registry = self.senders.registry(tenant).await?;
        registry
            .allows(&common.from, &to)
            .map_err(|e| IntakeError::Invalid(FieldError::new(e.code(), "from", e.to_string())))?;
        let text = measured(&req.text, &common)
            .map_err(|e| IntakeError::Invalid(FieldError::new(e.code(), "text", e.to_string())))?;
        let reference =
            parse_reference(req.reference, "reference").map_err(IntakeError::Invalid)?;
        if common.category.is_marketing() {
            let state = self.consent.states(tenant, &[&to]).await?;
            if let Some((code, why)) = state.first().and_then(|s| s.refusal()) {
                return Err(IntakeError::NoConsent(FieldError::new(code, "to", why)));
            }
        }
        let message = build(tenant, None, &common, to, text, reference, now);
        let (verdicts, charge) = self
            .limits
            .admit(tenant, &limits, &[(&message.to, message.segments)])
            .await?;
        if let Some(Err(refusal)) = verdicts.into_iter().next() {
            return Err(IntakeError::Limited(refusal));
        }
        let reply = Reply {
            status: 202,
            body: MessageView::json(&message),
        };
        self.accept_charged(tenant, vec![message], idempotency, reply, Some(charge))
            .await
    }

    /// [`Intake::accept`], refunding the spend charge if the messages were not stored.
    async fn accept_charged(
        &self,
        tenant: &TenantId,
        messages: Vec<Message>,
        idempotency: Option<Idempotency>,
        reply: Reply,
        charge: Option<Charge>,
    ) -> Result<Reply, IntakeError> {
        let result = self.accept(tenant, messages, idempotency, reply).await;
        if let (Err(IntakeError::Store(_)), Some(charge)) = (&result, &charge) {
            self.limits.refund(tenant, charge).await;
        }
        result
    }

    pub async fn send_batch(
        &self,
        tenant: &TenantId,
        req: BatchRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Reply, IntakeError> {
        if let Some(reply) = self.replay(tenant, idempotency.as_ref()).await? {
            return Ok(reply);
        }
        if req.recipients.is_empty() {
            return Err(IntakeError::Invalid(FieldError::new(
                "batch_empty",
                "recipients",
                "the batch has no recipients",
            )));
        }
        if req.recipients.len() > self.config.max_batch {
            return Err(IntakeError::Invalid(FieldError::new(
                "batch_too_large",
                "recipients",
                format!("a batch holds at most {} recipients", self.config.max_batch),
            )));
        }
        let now = self.clock.now();
        let mut common = self
            .common(
                now,
                &req.from,
                req.send_at.as_deref(),
                req.validity,
                req.callback_url,
                req.callback_statuses,
                req.metadata,
                req.transliterate,
                req.track_links,
                req.category,
            )
            .map_err(IntakeError::Invalid)?;
        self.check_callback_name(common.callback_url.as_deref())
            .await
            .map_err(IntakeError::Invalid)?;
        let registry = self.senders.registry(tenant).await?;
        let limits = self.limits.of(tenant).await?;
        common.settle(&limits, now);
        registry
            .registered(&common.from)
            .map_err(|e| IntakeError::Invalid(FieldError::new(e.code(), "from", e.to_string())))?;
        // Before any template work: a text longer than any message may be is refused whole.
        if req.text.len() > MAX_TEXT_BYTES {
            return Err(IntakeError::Invalid(FieldError::new(
                "text_too_long",
                "text",
                format!("the text is longer than {MAX_TEXT_BYTES} bytes"),
            )));
        }
        MessageText::screen(&req.text)
            .map_err(|e| IntakeError::Invalid(FieldError::new(e.code(), "text", e.to_string())))?;
        // A text without placeholders is measured once, not once per recipient (unless its
        // links are tracked or it has an opt-out link: each message has codes of its own).
        let shared_text = if template::has_placeholders(&req.text)
            || common.links.is_some()
            || common.opt_out.is_some()
        {
            None
        } else {
            Some(MessageText::new(&req.text, common.policy).map_err(|e| {
                IntakeError::Invalid(FieldError::new(e.code(), "text", e.to_string()))
            })?)
        };
        let batch_id = BatchId::generate(now);
        let mut messages = Vec::with_capacity(req.recipients.len());
        let mut results = Vec::with_capacity(req.recipients.len());
        // Where each accepted message's entry is in `results`.
        let mut positions = Vec::with_capacity(req.recipients.len());
        for (index, recipient) in req.recipients.into_iter().enumerate() {
            let field = |name: &str| format!("recipients[{index}].{name}");
            let outcome = (|| {
                if recipient.variables.len() > MAX_VARIABLES {
                    return Err(FieldError::new(
                        "too_many_variables",
                        &field("variables"),
                        format!("at most {MAX_VARIABLES} variables per recipient"),
                    ));
                }
                let to = parse_phone(&recipient.to, &field("to"))?;
                Limits::allows_destination(&limits, &to)
                    .map_err(|r| FieldError::new(r.code, &field("to"), r.message))?;
                registry
                    .allows(&common.from, &to)
                    .map_err(|e| FieldError::new(e.code(), &field("to"), e.to_string()))?;
                let text = match &shared_text {
                    Some(text) => Measured {
                        text: text.clone(),
                        links: Vec::new(),
                        opt_out: None,
                    },
                    None => {
                        let rendered =
                            template::render(&req.text, &recipient.variables, MAX_TEXT_BYTES)
                                .map_err(|e| match e {
                                    TemplateError::MissingVariable(_) => FieldError::new(
                                        "template_variable_missing",
                                        &field("variables"),
                                        e.to_string(),
                                    ),
                                    TemplateError::TooLong(_) => {
                                        FieldError::new("text_too_long", "text", e.to_string())
                                    }
                                })?;
                        measured(&rendered, &common)
                            .map_err(|e| FieldError::new(e.code(), "text", e.to_string()))?
                    }
                };
                let reference = parse_reference(recipient.reference, &field("reference"))?;
                Ok(build(
                    tenant,
                    Some(&batch_id),
                    &common,
                    to,
                    text,
                    reference,
                    now,
                ))
            })();
            match outcome {
                Ok(message) => {
                    positions.push(results.len());
                    results.push(serde_json::json!({
                        "index": index,
                        "status": "accepted",
                        "id": message.id.to_string(),
                        "segments": message.segments,
                    }));
                    messages.push(message);
                }
                Err(error) => results.push(serde_json::json!({
                    "index": index,
                    "status": "rejected",
                    "error": error,
                })),
            }
        }
        let (messages, charge) = self
            .keep_sendable(
                tenant,
                &common,
                &limits,
                messages,
                positions,
                |at, code, why| refuse(&mut results[at], code, why),
            )
            .await?;
        let accepted = messages.len();
        let reply = Reply {
            status: 202,
            body: serde_json::json!({
                "batch_id": batch_id.as_str(),
                "accepted": accepted,
                "rejected": results.len() - accepted,
                "status": if common.send_at.is_some() { "scheduled" } else { "queued" },
                "results": results,
            }),
        };
        self.accept_charged(tenant, messages, idempotency, reply, charge)
            .await
    }

    /// The messages of a request that may go, and their charge: [`Self::keep_consenting`],
    /// then [`Self::keep_admitted`], each refusal told to `refused` with the message's
    /// position, code and reason.
    async fn keep_sendable(
        &self,
        tenant: &TenantId,
        common: &Common,
        limits: &TenantLimits,
        messages: Vec<Message>,
        positions: Vec<usize>,
        mut refused: impl FnMut(usize, &'static str, &str),
    ) -> Result<(Vec<Message>, Option<Charge>), IntakeError> {
        let (messages, positions) = self
            .keep_consenting(tenant, common.category, messages, positions, &mut refused)
            .await?;
        self.keep_admitted(tenant, limits, messages, positions, refused)
            .await
    }

    /// The messages that may go to their numbers as far as consent goes, with their
    /// `positions`: a marketing message needs the number's consent, a transactional one
    /// does not. Each one refused is told to `refused` with its position, code and reason.
    async fn keep_consenting(
        &self,
        tenant: &TenantId,
        category: Category,
        messages: Vec<Message>,
        positions: Vec<usize>,
        mut refused: impl FnMut(usize, &'static str, &str),
    ) -> Result<(Vec<Message>, Vec<usize>), IntakeError> {
        if !category.is_marketing() || messages.is_empty() {
            return Ok((messages, positions));
        }
        let numbers: Vec<&PhoneNumber> = messages.iter().map(|m| &m.to).collect();
        let states = self.consent.states(tenant, &numbers).await?;
        let (mut kept, mut kept_positions) = (Vec::new(), Vec::new());
        for ((message, position), state) in messages.into_iter().zip(positions).zip(states) {
            match state.refusal() {
                None => {
                    kept.push(message);
                    kept_positions.push(position);
                }
                Some((code, why)) => refused(position, code, why),
            }
        }
        Ok((kept, kept_positions))
    }

    /// The messages the tenant's limits admit, and their charge (`None` when there were
    /// none to admit). A refusal of them all is the error; each message refused alone (the
    /// per-number limit) is told to `refused` with its position, code and reason.
    async fn keep_admitted(
        &self,
        tenant: &TenantId,
        limits: &TenantLimits,
        messages: Vec<Message>,
        positions: Vec<usize>,
        mut refused: impl FnMut(usize, &'static str, &str),
    ) -> Result<(Vec<Message>, Option<Charge>), IntakeError> {
        if messages.is_empty() {
            return Ok((messages, None));
        }
        let admitted: Vec<(&PhoneNumber, u16)> =
            messages.iter().map(|m| (&m.to, m.segments)).collect();
        let (verdicts, charge) = self.limits.admit(tenant, limits, &admitted).await?;
        let mut kept = Vec::with_capacity(messages.len());
        for ((message, position), verdict) in messages.into_iter().zip(positions).zip(verdicts) {
            match verdict {
                Ok(()) => kept.push(message),
                Err(refusal) => refused(position, refusal.code, &refusal.message),
            }
        }
        Ok((kept, Some(charge)))
    }

    /// The stored answer for a repeated idempotency key, or a conflict if the request differs.
    async fn replay(
        &self,
        tenant: &TenantId,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<Reply>, IntakeError> {
        let Some(idem) = idempotency else {
            return Ok(None);
        };
        match self.store.idempotency(tenant, &idem.key).await? {
            None => Ok(None),
            Some(record) if record.fingerprint == idem.fingerprint => Ok(Some(Reply {
                status: record.status_code,
                body: record.body,
            })),
            Some(_) => Err(IntakeError::IdempotencyConflict),
        }
    }

    async fn accept(
        &self,
        tenant: &TenantId,
        messages: Vec<Message>,
        idempotency: Option<Idempotency>,
        reply: Reply,
    ) -> Result<Reply, IntakeError> {
        let record = idempotency.as_ref().map(|idem| IdempotencyRecord {
            tenant_id: tenant.clone(),
            key: idem.key.clone(),
            fingerprint: idem.fingerprint.clone(),
            status_code: reply.status,
            body: reply.body.clone(),
            created_at: self.clock.now(),
        });
        match self.store.insert(&messages, record.as_ref()).await {
            Ok(()) => {}
            // A concurrent request with the same key won the race: answer as it did.
            Err(StoreError::IdempotencyKeyTaken) => {
                return self
                    .replay(tenant, idempotency.as_ref())
                    .await?
                    .ok_or(IntakeError::IdempotencyConflict);
            }
            Err(e) => return Err(e.into()),
        }
        let pending: Vec<DispatchJob> = messages
            .iter()
            .filter(|m| m.status == MessageStatus::Queued)
            .map(|m| DispatchJob {
                tenant_id: m.tenant_id.clone(),
                id: m.id,
            })
            .collect();
        if pending.is_empty() {
            return Ok(reply);
        }
        let outgoing = pending.iter().map(jobs::outgoing).collect();
        match self.queue.send_batch(QueueName::Dispatch, outgoing).await {
            // The messages are stored, so the request has been accepted and is answered as
            // such; their jobs are sent again shortly.
            Err(e) => {
                tracing::warn!(error = %e, count = pending.len(), "dispatch jobs not queued; they will be sent again");
                self.keep_unqueued(pending);
            }
            // The queue takes jobs again: those left from the outage go now too, also where
            // no timer runs the task table in this process (the API function on AWS).
            Ok(()) if !self.unqueued().is_empty() => {
                if let Err(e) = self.requeue_failed().await {
                    tracing::warn!(error = %e, "waiting dispatch jobs not queued yet");
                }
            }
            Ok(()) => {}
        }
        Ok(reply)
    }

    #[allow(clippy::too_many_arguments)]
    fn common(
        &self,
        now: DateTime<Utc>,
        from: &str,
        send_at: Option<&str>,
        validity: Option<u64>,
        callback_url: Option<String>,
        callback_statuses: Option<Vec<MessageStatus>>,
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
        transliterate: bool,
        track_links: bool,
        category: Category,
    ) -> Result<Common, FieldError> {
        let links = match (track_links, &self.config.short_link_base) {
            (false, _) => None,
            (true, Some(base)) => Some(base.clone()),
            (true, None) => {
                return Err(FieldError::new(
                    "track_links_unavailable",
                    "track_links",
                    "this Holub has no short link base configured, so links cannot be tracked",
                ));
            }
        };
        let opt_out = match (category, &self.config.short_link_base) {
            (Category::Transactional, _) => None,
            (Category::Marketing, Some(base)) => Some(base.clone()),
            (Category::Marketing, None) => {
                return Err(FieldError::new(
                    "opt_out_unavailable",
                    "category",
                    "this Holub has no short link base configured, so marketing messages \
                     cannot carry the opt-out link the law asks for",
                ));
            }
        };
        let from =
            SenderId::parse(from).map_err(|e| FieldError::new(e.code(), "from", e.to_string()))?;
        let send_at = self.config.start(&StartField::SEND_AT, send_at, now)?;
        let validity = self.config.validity(validity)?;
        let start = send_at.unwrap_or(now);
        let expires_at = start
            + chrono::Duration::from_std(validity).unwrap_or_else(|_| chrono::Duration::days(3));
        let callback_url = callback_url
            .map(|u| parse_callback_url(&u, self.config.allow_private_callbacks))
            .transpose()?;
        // Without a `callback_url` of the request's or the account's, the statuses are kept
        // and tell nobody anything.
        let callback_statuses = match callback_statuses {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(FieldError::new(
                    "callback_statuses_empty",
                    "callback_statuses",
                    "callback_statuses names at least one status (leave it out for all)",
                ));
            }
            Some(list) => Some(StatusSet::of(list)),
        };
        let metadata = match metadata {
            None => None,
            Some(map) => {
                let value = serde_json::Value::Object(map);
                if value.to_string().len() > MAX_METADATA_BYTES {
                    return Err(FieldError::new(
                        "metadata_too_large",
                        "metadata",
                        "metadata is limited to 4 KiB of JSON",
                    ));
                }
                Some(value)
            }
        };
        Ok(Common {
            from,
            send_at,
            expires_at,
            callback_url,
            callback_statuses,
            metadata,
            policy: TextPolicy {
                max_parts: self.config.max_parts,
                transliterate,
            },
            links,
            category,
            opt_out,
        })
    }
}

/// One recipient of a campaign's chunk: the number, and the values of the template's
/// placeholders.
#[derive(Debug, Clone)]
pub struct ChunkRecipient {
    pub to: PhoneNumber,
    pub variables: BTreeMap<String, String>,
}

/// What a campaign's chunk sends: the campaign's fixed parts.
pub struct ChunkPlan<'a> {
    pub tenant: &'a TenantId,
    pub batch: BatchId,
    pub from: &'a str,
    pub text: &'a str,
    pub category: Category,
    pub track_links: bool,
    pub validity: Option<u64>,
    /// When the chunk's first message goes out (now, if past).
    pub start: DateTime<Utc>,
    /// The campaign's pace: the messages sent are spaced by it from `start` (`None`: all
    /// at `start`).
    pub pace: Option<Pace>,
}

impl Intake {
    /// Stores the messages of one chunk of a campaign, exactly once per `key`: each
    /// recipient is checked as a batch's would be (destination, sender, placeholders,
    /// consent, the per-number limit), and those refused are skipped with their code.
    /// `outcome` makes, from the verdicts (`None`: sent; `Some(code)`: skipped), the answer
    /// kept under the key with the messages; a repeated key answers the kept one and stores
    /// nothing. A refusal of the whole chunk (the rate: try later; a spend cap; the sender
    /// no longer registered) is an error and stores nothing.
    pub async fn campaign_chunk(
        &self,
        plan: &ChunkPlan<'_>,
        recipients: Vec<ChunkRecipient>,
        idempotency: Idempotency,
        outcome: impl FnOnce(&[Option<&'static str>]) -> serde_json::Value,
    ) -> Result<serde_json::Value, IntakeError> {
        let tenant = plan.tenant;
        if let Some(reply) = self.replay(tenant, Some(&idempotency)).await? {
            return Ok(reply.body);
        }
        let now = self.clock.now();
        let mut common = self
            .common(
                now,
                plan.from,
                None,
                plan.validity,
                None,
                None,
                None,
                false,
                plan.track_links,
                plan.category,
            )
            .map_err(IntakeError::Invalid)?;
        let validity = common.expires_at - now;
        let registry = self.senders.registry(tenant).await?;
        registry
            .registered(&common.from)
            .map_err(|e| IntakeError::Invalid(FieldError::new(e.code(), "from", e.to_string())))?;
        let limits = self.limits.of(tenant).await?;
        // The window is kept per message below, as each has its own time.
        if let Some(account) = &limits.status_callback {
            common.callback_url = Some(account.url.clone());
            common.callback_statuses = Some(account.status_set());
        }
        let mut verdicts: Vec<Option<&'static str>> = Vec::with_capacity(recipients.len());
        let mut messages = Vec::with_capacity(recipients.len());
        // Where each message's verdict is.
        let mut positions = Vec::with_capacity(recipients.len());
        for recipient in recipients {
            let built = (|| {
                Limits::allows_destination(&limits, &recipient.to).map_err(|r| r.code)?;
                registry
                    .allows(&common.from, &recipient.to)
                    .map_err(|e| e.code())?;
                let rendered = template::render(plan.text, &recipient.variables, MAX_TEXT_BYTES)
                    .map_err(|e| match e {
                        TemplateError::MissingVariable(_) => "template_variable_missing",
                        TemplateError::TooLong(_) => "text_too_long",
                    })?;
                let text = measured(&rendered, &common).map_err(|e| e.code())?;
                Ok::<_, &'static str>(build(
                    tenant,
                    Some(&plan.batch),
                    &common,
                    recipient.to,
                    text,
                    None,
                    now,
                ))
            })();
            match built {
                Ok(message) => {
                    positions.push(verdicts.len());
                    verdicts.push(None);
                    messages.push(message);
                }
                Err(code) => verdicts.push(Some(code)),
            }
        }
        let (mut messages, charge) = self
            .keep_sendable(
                tenant,
                &common,
                &limits,
                messages,
                positions,
                |at, code, _| verdicts[at] = Some(code),
            )
            .await?;
        // The pace, over the messages that go: the k-th at start + k × 60 / pace.
        for (k, message) in messages.iter_mut().enumerate() {
            let at = match plan.pace {
                Some(pace) => pace.offset(plan.start, k as u64),
                None => plan.start,
            };
            let mut own = common.clone();
            own.send_at = (at > now).then_some(at);
            own.expires_at = own.send_at.unwrap_or(now) + validity;
            own.keep_to(limits.marketing_window, now);
            schedule(message, &own);
        }
        let reply = Reply {
            status: 200,
            body: outcome(&verdicts),
        };
        let reply = self
            .accept_charged(tenant, messages, Some(idempotency), reply, charge)
            .await?;
        Ok(reply.body)
    }
}

/// Turns an accepted entry of a batch's results into a refusal of its recipient.
fn refuse(result: &mut serde_json::Value, code: &'static str, why: &str) {
    let index = result["index"].clone();
    let field = format!("recipients[{index}].to");
    *result = serde_json::json!({
        "index": index,
        "status": "rejected",
        "error": FieldError::new(code, &field, why),
    });
}

/// A message's text as it will be sent, with what it carries.
struct Measured {
    text: MessageText,
    /// Its tracked links (none unless asked for).
    links: Vec<TrackedLink>,
    /// Its opt-out link's code (marketing only).
    opt_out: Option<ShortCode>,
}

/// The text as it will be sent: its links tracked if asked for, and a marketing message's
/// opt-out link at the end.
fn measured(raw: &str, common: &Common) -> Result<Measured, TextError> {
    // The text as written must stand on its own: the opt-out line added below would make
    // a blank one look like a message. (Without one, `MessageText::new` screens the text.)
    if common.opt_out.is_some() {
        MessageText::screen(raw)?;
    }
    let (text, links) = match &common.links {
        None => (raw.to_owned(), Vec::new()),
        Some(base) => links::rewrite(raw, base),
    };
    let (text, opt_out) = match &common.opt_out {
        None => (text, None),
        Some(base) => {
            let code = ShortCode::random();
            let link = base.link(&code);
            (
                with_opt_out(&text, &link, common.policy.transliterate),
                Some(code),
            )
        }
    };
    Ok(Measured {
        text: MessageText::new(&text, common.policy)?,
        links,
        opt_out,
    })
}

/// `text` with its opt-out link on a line of its own. The label is Ukrainian; in Latin
/// letters where the text travels as GSM-7, so the link never makes a text UCS-2 (three
/// times the price) on its own.
pub(crate) fn with_opt_out(text: &str, link: &str, transliterate: bool) -> String {
    let label = if transliterate || encoding_of(text) == Encoding::Gsm7 {
        "Vidpysatysia:"
    } else {
        "Відписатися:"
    };
    format!("{}\n{label} {link}", text.trim_end())
}

/// Gives a built (queued) message the time of `common`, scheduling it if that is ahead.
fn schedule(message: &mut Message, common: &Common) {
    message.send_at = common.send_at;
    message.expires_at = common.expires_at;
    if common.send_at.is_some() {
        message.status = MessageStatus::Scheduled;
        if let Some(last) = message.history.last_mut() {
            last.status = MessageStatus::Scheduled;
        }
    }
}

fn build(
    tenant: &TenantId,
    batch_id: Option<&BatchId>,
    common: &Common,
    to: PhoneNumber,
    Measured {
        text,
        links,
        opt_out,
    }: Measured,
    reference: Option<String>,
    now: DateTime<Utc>,
) -> Message {
    let next = if common.send_at.is_some() {
        MessageStatus::Scheduled
    } else {
        MessageStatus::Queued
    };
    let estimate = text.estimate();
    Message {
        id: MessageId::generate(now),
        tenant_id: tenant.clone(),
        batch_id: batch_id.cloned(),
        to,
        from: common.from.clone(),
        encoding: estimate.encoding,
        segments: u16::try_from(estimate.segments).unwrap_or(u16::MAX),
        text: text.as_str().to_owned(),
        status: next,
        created_at: now,
        updated_at: now,
        send_at: common.send_at,
        expires_at: common.expires_at,
        callback_url: common.callback_url.clone(),
        callback_statuses: common.callback_statuses.unwrap_or(StatusSet::ALL),
        reference,
        metadata: common.metadata.clone(),
        provider: None,
        provider_message_id: None,
        cost: None,
        error: None,
        attempts: 0,
        history: vec![
            StatusChange {
                status: MessageStatus::Accepted,
                at: now,
            },
            StatusChange {
                status: next,
                at: now,
            },
        ],
        links,
        clicks: 0,
        bot_clicks: 0,
        clicked_at: None,
        category: common.category,
        opt_out,
    }
}

fn parse_phone(raw: &str, field: &str) -> Result<PhoneNumber, FieldError> {
    PhoneNumber::parse(raw).map_err(|e| FieldError::new(e.code(), field, e.to_string()))
}

fn parse_reference(reference: Option<String>, field: &str) -> Result<Option<String>, FieldError> {
    match reference {
        Some(r) if r.chars().count() > MAX_REFERENCE_LEN || r.chars().any(char::is_control) => {
            Err(FieldError::new(
                "reference_invalid",
                field,
                "reference is up to 128 printable characters",
            ))
        }
        other => Ok(other),
    }
}

/// A whole number (seconds, a pace, a version), written as JSON writes integers (`600`) or
/// as an integral number (`600.0`, which JSON Schema counts as an integer too).
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "a whole number of seconds, not {number}"
        ))),
    }
}

/// Refuses a (parsed, public-looking) callback URL whose name resolves to an address that is
/// not public within `timeout`; anything else passes.
async fn check_public_name(
    resolver: &dyn Resolver,
    timeout: Duration,
    url: &str,
) -> Result<(), FieldError> {
    let Ok(url) = url::Url::parse(url) else {
        return Ok(());
    };
    let Ok(Some(name)) = address::public_target(&url) else {
        return Ok(());
    };
    match tokio::time::timeout(timeout, resolver.resolve(name)).await {
        Ok(Ok(ips)) if !ips.is_empty() => address::check_resolved(&ips)
            .map_err(|e| FieldError::new("callback_url_invalid", "callback_url", e.to_string())),
        _ => Ok(()),
    }
}

fn parse_callback_url(raw: &str, allow_private: bool) -> Result<String, FieldError> {
    let bad = |msg: &str| FieldError::new("callback_url_invalid", "callback_url", msg);
    if raw.len() > MAX_CALLBACK_URL_LEN {
        return Err(bad("callback_url is longer than 2048 characters"));
    }
    if !CALLBACK_URL.as_ref().is_some_and(|url| url.is_match(raw)) {
        return Err(bad(
            "callback_url must be an http(s) URL with a DNS name or IPv4 address, an optional port, and a path and query of URL-safe characters",
        ));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("callback_url is not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(bad("callback_url must be an http(s) URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("callback_url must not carry credentials"));
    }
    if !allow_private {
        address::public_target(&url).map_err(|e| bad(&e.to_string()))?;
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_are_checked() {
        for ok in [
            "https://example.com/hook",
            "https://93.184.216.34:8443/x?y=1",
        ] {
            assert!(parse_callback_url(ok, false).is_ok(), "{ok}");
        }
        for private in [
            "https://127.0.0.1/hook",
            "https://app.localhost:9000/",
            "https://10.1.2.3/",
            "https://192.168.0.10/",
            "https://169.254.169.254/latest/meta-data/",
            "https://metadata.google.internal/",
            "https://100.64.1.1/",
            "https://203.0.113.9:8080/x?y=1",
            // Where only public addresses are allowed, only over https.
            "http://example.com/hook",
            "http://93.184.216.34/",
        ] {
            assert!(parse_callback_url(private, false).is_err(), "{private}");
            assert!(parse_callback_url(private, true).is_ok(), "{private}");
        }
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "not a url",
            // Outside the documented pattern, although `url` would parse them: an IPv6
            // literal (use a DNS name), a fragment, a space, a port past 65535, a host whose
            // last label is a number.
            "http://[::1]/",
            "https://example.com/a#b",
            "https://example.com/a b",
            "https://example.com:65536/",
            "http://l.6.m.13:5315",
            "http://0.a*",
        ] {
            assert!(parse_callback_url(bad, true).is_err(), "{bad}");
        }
        assert!(
            regex::Regex::new(CALLBACK_URL_PATTERN).is_ok(),
            "the documented pattern compiles"
        );
        for ok in [
            "http://127.0.0.1:65535/cb",
            "https://hooks.example-company-production.com/holub/v1?tenant=a&x=%20",
        ] {
            assert!(parse_callback_url(ok, true).is_ok(), "{ok}");
        }
    }

    /// Names resolve as the test says; a name it does not know never answers.
    struct Names(Vec<(&'static str, &'static str)>);

    #[async_trait::async_trait]
    impl Resolver for Names {
        async fn resolve(&self, host: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
            let found: Vec<_> = self
                .0
                .iter()
                .filter(|(name, _)| *name == host)
                .map(|(_, ip)| ip.parse().unwrap())
                .collect();
            if found.is_empty() {
                std::future::pending::<()>().await;
            }
            Ok(found)
        }
    }

    #[tokio::test]
    async fn callback_names_resolving_to_private_addresses_are_refused() {
        let names = Names(vec![
            ("public.example", "93.184.216.34"),
            ("rebind.example", "93.184.216.34"),
            ("rebind.example", "::ffff:169.254.169.254"),
            ("nat64.example", "64:ff9b::a00:1"),
            ("home.example", "192.168.1.10"),
            ("localhost", "127.0.0.1"),
        ]);
        let check = |url: &'static str| check_public_name(&names, Duration::from_millis(50), url);
        assert!(check("https://public.example/hook").await.is_ok());
        for refused in [
            "https://rebind.example/hook",
            "https://nat64.example/hook",
            "https://home.example:8443/hook?x=1",
            "https://localhost:9000/",
        ] {
            let error = check(refused).await.unwrap_err();
            assert_eq!(error.code, "callback_url_invalid", "{refused}");
            assert_eq!(error.field, "callback_url");
        }
        // A name that does not answer in time passes: sending checks again.
        assert!(check("https://slow.example/hook").await.is_ok());
    }

    /// A queue that refuses sends while `down`, like one on a full disk.
    #[cfg(feature = "sqlite")]
    struct FlakyQueue {
        inner: crate::adapters::sqlite::SqliteBackend,
        down: std::sync::atomic::AtomicBool,
    }

    #[cfg(feature = "sqlite")]
    #[async_trait::async_trait]
    impl Queue for FlakyQueue {
        async fn send_batch(
            &self,
            queue: QueueName,
            messages: Vec<crate::ports::Outgoing>,
        ) -> Result<(), QueueError> {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(QueueError::Unavailable("the disk is full".into()));
            }
            self.inner.send_batch(queue, messages).await
        }

        async fn receive(
            &self,
            queue: QueueName,
            max: usize,
            visibility: Duration,
            wait: Duration,
        ) -> Result<Vec<crate::ports::Delivery>, QueueError> {
            self.inner.receive(queue, max, visibility, wait).await
        }

        async fn delete_batch(
            &self,
            queue: QueueName,
            handles: &[crate::ports::ReceiptHandle],
        ) -> Result<(), QueueError> {
            self.inner.delete_batch(queue, handles).await
        }

        async fn change_visibility(
            &self,
            queue: QueueName,
            handle: &crate::ports::ReceiptHandle,
            timeout: Duration,
        ) -> Result<(), QueueError> {
            self.inner.change_visibility(queue, handle, timeout).await
        }

        async fn redrive(&self, queue: QueueName, limit: usize) -> Result<usize, QueueError> {
            self.inner.redrive(queue, limit).await
        }
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn jobs_that_could_not_be_queued_are_sent_again() {
        use crate::adapters::sqlite::{SqliteBackend, SqliteConfig, SyncMode};
        use crate::ports::SystemClock;
        use std::sync::atomic::Ordering;

        let dir = std::env::temp_dir().join(format!(
            "holub-intake-requeue-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let backend = SqliteBackend::open(
            &dir.join("holub.db"),
            SqliteConfig {
                sync: SyncMode::Normal,
                ..SqliteConfig::default()
            },
        )
        .unwrap();
        let queue = Arc::new(FlakyQueue {
            inner: backend.clone(),
            down: true.into(),
        });
        let store = Arc::new(backend.clone());
        let senders = Arc::new(Senders::new(store.clone(), Arc::new(SystemClock)));
        let accounts = crate::services::Accounts::new(
            store.clone(),
            Arc::new(crate::adapters::file_secrets::FileSecretStore::in_dir(&dir)),
            Arc::new(SystemClock),
        );
        let origin = crate::domain::Origin::operator();
        let created = accounts.create_tenant("Acme", &origin).await.unwrap();
        let tenant: TenantId = created.tenant_id.parse().unwrap();
        let holub = SenderId::parse("Holub").unwrap();
        senders
            .request(&tenant, holub.clone(), &origin)
            .await
            .unwrap();
        let all = crate::domain::Network::ALL;
        let active = crate::domain::Registration::Active;
        senders
            .set_status(&tenant, &holub, &all, active, &origin)
            .await
            .unwrap();
        let limits = Arc::new(Limits::new(
            store.clone(),
            store.clone(),
            Arc::new(SystemClock),
            crate::domain::TenantLimits::default(),
        ));
        let intake = Intake::new(
            store.clone(),
            queue.clone(),
            Arc::new(SystemClock),
            senders,
            limits,
            store.clone(),
            IntakeConfig::default(),
        );
        let request = |to: &str| SendMessageRequest {
            to: to.into(),
            from: "Holub".into(),
            text: "code 4821".into(),
            send_at: None,
            validity: None,
            transliterate: false,
            track_links: false,
            category: Category::Transactional,
            callback_url: None,
            callback_statuses: None,
            reference: None,
            metadata: None,
        };

        // Accepted while the queue refuses: the messages are stored, their jobs kept.
        let mut ids = Vec::new();
        for to in ["+380671234567", "+380501234567"] {
            let reply = intake.send(&tenant, request(to), None).await.unwrap();
            assert_eq!(reply.status, 202);
            ids.push(reply.body["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(backend.queue_depth(QueueName::Dispatch).await.unwrap(), 0);
        assert!(intake.requeue_failed().await.is_err());

        // Once it takes them again, the next step sends each job once.
        queue.down.store(false, Ordering::SeqCst);
        assert_eq!(intake.requeue_failed().await.unwrap(), 2);
        assert_eq!(intake.requeue_failed().await.unwrap(), 0);

        // Where no step runs (the API function), the next accepted request takes the
        // waiting jobs along.
        queue.down.store(true, Ordering::SeqCst);
        let reply = intake
            .send(&tenant, request("+380631234567"), None)
            .await
            .unwrap();
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
        queue.down.store(false, Ordering::SeqCst);
        let reply = intake
            .send(&tenant, request("+380931234567"), None)
            .await
            .unwrap();
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
        assert_eq!(intake.requeue_failed().await.unwrap(), 0);
        let jobs = backend
            .receive(
                QueueName::Dispatch,
                10,
                Duration::from_secs(30),
                Duration::ZERO,
            )
            .await
            .unwrap();
        let mut queued: Vec<String> = jobs
            .iter()
            .map(|d| jobs::parse::<DispatchJob>(&d.body).unwrap().id.to_string())
            .collect();
        queued.sort();
        ids.sort();
        assert_eq!(queued, ids, "each job once");

        // Without a short link base, links cannot be tracked: refused by name, nothing stored.
        let tracked = SendMessageRequest {
            track_links: true,
            text: "https://shop.ua/sale".into(),
            ..request("+380671234599")
        };
        match intake.send(&tenant, tracked, None).await {
            Err(IntakeError::Invalid(e)) => {
                assert_eq!(
                    (e.code, e.field.as_str()),
                    ("track_links_unavailable", "track_links")
                );
            }
            other => panic!("{other:?}"),
        }

        backend.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
