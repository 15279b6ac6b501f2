//! Status callbacks: every status change of a message with a `callback_url` (of the statuses
//! it asked for, all by default) is POSTed there, signed, from a queue of its own, so a slow
//! or dead customer endpoint never slows dispatch.
//!
//! ## Durable, and several at once
//! A callback job is written in the same write as the change it tells of (the embedded
//! store's outbox), or relayed from the messages table's stream on AWS: a change that is
//! committed has its callback coming, whatever crashes after. The body is always a JSON array
//! of events; the events of one URL that are ready together (a dispatch batch, the jobs one
//! receive hands out) go in one POST. Each event has an `event_id`, `<message id>.<status>`,
//! the same on every retry, so receivers can drop duplicates.
//!
//! A message whose links are tracked also tells of its first click by a person: an event of
//! type `message.clicked`, `event_id` `<message id>.clicked`, `at` the click's time (sent
//! whatever statuses the URL asked for; preview fetchers' clicks tell nothing).
//!
//! ## Signature
//! Each request carries `Holub-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
//! HMAC-SHA256, keyed with the tenant's webhook signing secret, of `"<t>.<raw body>"`.
//! Verify it by recomputing the HMAC over the exact bytes received, comparing in constant
//! time, and refusing timestamps more than 5 minutes from your clock (replays).
//!
//! ## Rotating the secret
//! A rotation makes a new secret and keeps the old one for a grace period the customer
//! chooses (up to 7 days). Within it each request carries two signatures,
//! `t=<t>,v1=<hex by the new>,v1=<hex by the old>`, so a receiver that still checks the
//! old secret and one that already checks the new both accept it; a receiver accepts a
//! request if any `v1` matches. Both secrets live in the one secret-store value
//! ([`SigningKeys`]), so a rotation is one atomic write. On AWS the callbacks function
//! keeps a secret it read for 5 minutes, so for up to that long after a rotation some
//! requests are signed by the old secret alone: a receiver that refuses them gets them
//! again, retried, signed by both. On one machine a rotation holds at once.
//!
//! ## Where callbacks may go
//! Where Holub serves others (`public_only`), a callback goes only over https and only to
//! public addresses, checked on the very lookup its connection uses
//! ([`crate::adapters::safe_http`]); intake's check of the same URL is an early answer to the
//! customer, not the guard, since a name may answer differently by the time it is called.
//! A callback refused for its address is dropped, not retried: the URL will not get better.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::adapters::safe_http;
use crate::domain::TenantId;
use crate::domain::address::{self, TargetError};
use crate::ports::{Clock, Secret, SecretStore, SystemResolver};

use super::JobOutcome;
use super::jobs::{CallbackEvent, CallbackJob};

pub const SIGNATURE_HEADER: &str = "Holub-Signature";
/// The most events one POST carries (a job carries at most
/// [`MAX_EVENTS_PER_JOB`](super::jobs::MAX_EVENTS_PER_JOB); jobs of one URL are gathered up
/// to this).
pub const MAX_EVENTS_PER_POST: usize = 500;
/// How far a signature's timestamp may be from the receiver's clock.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// The secret-store name of a tenant's webhook signing secret.
pub fn signing_secret_name(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/webhook-signing-secret")
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`, one `v1` per secret, in
/// the order given.
pub fn sign(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, timestamp, body)));
    }
    header
}

/// Checks a `Holub-Signature` header against the body, the secret and the receiver's clock:
/// true if any of its `v1` signatures is by `secret`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    if (now - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return false;
    }
    signatures.iter().any(|sig| {
        Hmac::<Sha256>::new_from_slice(secret).is_ok_and(|mut m| {
            m.update(t.to_string().as_bytes());
            m.update(b".");
            m.update(body);
            m.verify_slice(sig).is_ok()
        })
    })
}

/// A tenant's webhook signing secrets as the secret store keeps them: the current one, and
/// after a rotation the one before it until its grace ends. Stored as the bare secret
/// (`whsec_…`) when there is no previous one, else as JSON
/// `{"current": …, "previous": …, "previous_until": <RFC 3339>}`.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    pub current: Secret,
    pub previous: Option<(Secret, DateTime<Utc>)>,
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    current: String,
    previous: String,
    previous_until: DateTime<Utc>,
}

impl SigningKeys {
    /// Reads the stored value; `None` if it is neither form.
    pub fn parse(stored: &Secret) -> Option<Self> {
        let raw = stored.expose();
        if !raw.starts_with('{') {
            return (!raw.is_empty()).then(|| SigningKeys {
                current: stored.clone(),
                previous: None,
            });
        }
        let keys: StoredKeys = serde_json::from_str(raw).ok()?;
        (!keys.current.is_empty() && !keys.previous.is_empty()).then(|| SigningKeys {
            current: Secret::new(keys.current),
            previous: Some((Secret::new(keys.previous), keys.previous_until)),
        })
    }

    /// The value to store.
    pub fn stored(&self) -> Secret {
        match &self.previous {
            None => self.current.clone(),
            Some((previous, until)) => Secret::new(
                serde_json::json!({
                    "current": self.current.expose(),
                    "previous": previous.expose(),
                    "previous_until": until,
                })
                .to_string(),
            ),
        }
    }

    /// When the previous secret stops signing, if it still does at `now`.
    pub fn previous_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.previous
            .as_ref()
            .map(|(_, until)| *until)
            .filter(|until| *until > now)
    }

    /// The secrets that sign a request at `now`: the current one, and the previous one
    /// within its grace.
    pub fn signing(&self, now: DateTime<Utc>) -> Vec<&[u8]> {
        let mut secrets = vec![self.current.expose().as_bytes()];
        if let Some((previous, until)) = &self.previous
            && *until > now
        {
            secrets.push(previous.expose().as_bytes());
        }
        secrets
    }
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[derive(Debug, Clone)]
pub struct CallbackConfig {
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Only https, and only to public addresses (where Holub serves others).
    pub public_only: bool,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            timeout: Duration::from_secs(5),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(3600),
            public_only: false,
        }
    }
}

pub struct CallbackSender {
    secrets: Arc<dyn SecretStore>,
    clock: Arc<dyn Clock>,
    /// `None` only if the TLS backend could not start: nothing is sent then.
    http: Option<reqwest::Client>,
    config: CallbackConfig,
}

impl CallbackSender {
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        clock: Arc<dyn Clock>,
        config: CallbackConfig,
    ) -> Self {
        let http = safe_http::client(config.timeout, config.public_only, Arc::new(SystemResolver))
            .inspect_err(|e| tracing::error!(error = %e, "callback HTTP client not built"))
            .ok();
        CallbackSender {
            secrets,
            clock,
            http,
            config,
        }
    }

    /// Whether a stored callback URL may be called at all (literal addresses and the
    /// scheme; names are judged on the lookup the connection uses).
    fn target(&self, raw: &str) -> Result<url::Url, Option<TargetError>> {
        let url = url::Url::parse(raw).map_err(|_| None)?;
        if self.config.public_only {
            address::public_target(&url).map_err(Some)?;
        }
        Ok(url)
    }

    /// Delivers callback jobs: the events of each tenant's URL in one POST. Every job of
    /// one POST gets its outcome.
    pub async fn handle(&self, jobs: &[(&CallbackJob, u32)]) -> Vec<JobOutcome> {
        // Jobs of one URL together, up to [`MAX_EVENTS_PER_POST`] events a POST.
        let mut groups: Vec<(&TenantId, &str, Vec<usize>, usize)> = Vec::new();
        for (i, (job, _)) in jobs.iter().enumerate() {
            let count = job.events.len();
            match groups.iter_mut().find(|(t, u, _, n)| {
                **t == job.tenant_id && *u == job.url && n + count <= MAX_EVENTS_PER_POST
            }) {
                Some((_, _, members, n)) => {
                    members.push(i);
                    *n += count;
                }
                None => groups.push((&job.tenant_id, job.url.as_str(), vec![i], count)),
            }
        }
        let mut outcomes = vec![JobOutcome::Done; jobs.len()];
        let posts = groups.iter().map(|(tenant, url, members, _)| async move {
            let events: Vec<&CallbackEvent> =
                members.iter().flat_map(|i| &jobs[*i].0.events).collect();
            let receive_count = members.iter().map(|i| jobs[*i].1).max().unwrap_or(1);
            (
                members,
                self.post(tenant, url, &events, receive_count).await,
            )
        });
        for (members, outcome) in join_all(posts).await {
            for i in members {
                outcomes[*i] = outcome;
            }
        }
        outcomes
    }

    /// One signed POST of `events` to `raw`.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn post(
        &self,
        tenant: &TenantId,
        raw: &str,
        events: &[&CallbackEvent],
        receive_count: u32,
    ) -> JobOutcome {
        let retry = || {
            JobOutcome::Retry(super::backoff(
                receive_count,
                self.config.backoff_base,
                self.config.backoff_cap,
            ))
        };
        // The URL is logged by host alone: its path and query are the customer's, and may
        // carry anything.
        let url = match self.target(raw) {
            Ok(url) => url,
            Err(refusal) => {
                tracing::warn!(
                    reason = refusal.map_or("not a URL".to_owned(), |r| r.to_string()),
                    "callback refused for its URL; dropped"
                );
                return JobOutcome::Done;
            }
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        let Some(http) = &self.http else {
            return retry();
        };
        let keys = match self.keys(tenant).await {
            Some(keys) => keys,
            None => return retry(),
        };
        let body = body(events);
        let now = self.clock.now();
        let signature = sign(&keys.signing(now), now.timestamp(), body.as_bytes());
        let result = http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => JobOutcome::Done,
            Ok(resp) => {
                tracing::info!(
                    http_status = resp.status().as_u16(),
                    host,
                    receive_count,
                    "callback refused; retrying"
                );
                retry()
            }
            Err(e) => match safe_http::refusal(&e) {
                Some(refusal) => {
                    tracing::warn!(host, reason = %refusal, "callback refused for its address; dropped");
                    JobOutcome::Done
                }
                None => {
                    tracing::info!(host, error = %e.without_url(), receive_count, "callback failed; retrying");
                    retry()
                }
            },
        }
    }

    /// The tenant's signing secrets, as the secret store has them (its cache decides how
    /// fresh: 5 minutes on AWS, at once on one machine).
    async fn keys(&self, tenant: &TenantId) -> Option<SigningKeys> {
        match self.secrets.get(&signing_secret_name(tenant)).await {
            Ok(stored) => {
                let keys = SigningKeys::parse(&stored);
                if keys.is_none() {
                    tracing::error!("callback: the signing secret is stored in no known form");
                }
                keys
            }
            Err(e) => {
                tracing::warn!(error = %e, "callback: no signing secret");
                None
            }
        }
    }
}

/// The POST body: a JSON array of events.
fn body(events: &[&CallbackEvent]) -> String {
    let array: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let (kind, what) = if e.clicked {
                ("message.clicked", "clicked".to_owned())
            } else {
                ("message.status", e.status.to_string())
            };
            serde_json::json!({
                "type": kind,
                "event_id": format!("{}.{what}", e.message_id),
                "message_id": e.message_id.to_string(),
                "status": e.status,
                "at": e.at,
                "reference": e.reference,
                "metadata": e.metadata,
                "batch_id": e.batch_id.as_ref().map(|b| b.as_str()),
                "segments": e.segments,
                "provider": e.provider,
                "cost_kopiyky": e.cost_kopiyky,
                "error": e.error,
            })
        })
        .collect();
    serde_json::Value::Array(array).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_refuse_tampering_and_replays() {
        let secret = b"whsec_test";
        let body = br#"{"status":"delivered"}"#;
        let header = sign(&[secret], 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify(secret, &header, body, 1_700_000_010));
        assert!(!verify(
            secret,
            &header,
            br#"{"status":"failed"}"#,
            1_700_000_010
        ));
        assert!(!verify(b"other", &header, body, 1_700_000_010));
        assert!(!verify(secret, &header, body, 1_700_000_000 + 301));
        assert!(!verify(secret, "t=1700000000", body, 1_700_000_000));
        assert!(!verify(secret, "garbage", body, 1_700_000_000));
    }

    #[test]
    fn two_signatures_in_a_grace_each_verify_by_their_own_secret() {
        let body = br#"[]"#;
        let header = sign(&[b"whsec_new", b"whsec_old"], 1_700_000_000, body);
        assert_eq!(header.matches(",v1=").count(), 2);
        assert!(verify(b"whsec_new", &header, body, 1_700_000_000));
        assert!(verify(b"whsec_old", &header, body, 1_700_000_000));
        assert!(!verify(b"whsec_other", &header, body, 1_700_000_000));
    }

    #[test]
    fn signing_keys_round_trip_and_the_previous_signs_only_in_its_grace() {
        let plain = SigningKeys::parse(&Secret::new("whsec_a")).unwrap();
        assert!(plain.previous.is_none());
        assert_eq!(
            plain.stored().expose(),
            "whsec_a",
            "the bare form stays bare"
        );
        let until = "2026-12-03T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let rotated = SigningKeys {
            current: Secret::new("whsec_b"),
            previous: Some((Secret::new("whsec_a"), until)),
        };
        let again = SigningKeys::parse(&rotated.stored()).unwrap();
        assert_eq!(again.current.expose(), "whsec_b");
        let before = until - chrono::Duration::seconds(1);
        assert_eq!(
            again.signing(before),
            vec![&b"whsec_b"[..], &b"whsec_a"[..]]
        );
        assert_eq!(again.signing(until), vec![&b"whsec_b"[..]]);
        assert_eq!(again.previous_until(before), Some(until));
        assert_eq!(again.previous_until(until), None);
        for bad in [
            "",
            "{",
            r#"{"current":""}"#,
            r#"{"current":"a","previous":""}"#,
        ] {
            assert!(SigningKeys::parse(&Secret::new(bad)).is_none(), "{bad}");
        }
    }
}
