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
//! ## Where callbacks may go
//! Where Holub serves others (`public_only`), a callback goes only over https and only to
//! public addresses, checked on the very lookup its connection uses
//! ([`crate::adapters::safe_http`]); intake's check of the same URL is an early answer to the
//! customer, not the guard, since a name may answer differently by the time it is called.
//! A callback refused for its address is dropped, not retried: the URL will not get better.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use hmac::{Hmac, Mac};
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

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// Checks a `Holub-Signature` header against the body, the secret and the receiver's clock.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(sig)) = (timestamp, signature) else {
        return false;
    };
    if (now - t).abs() > SIGNATURE_TOLERANCE_SECS {
        return false;
    }
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&sig).is_ok()
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
    /// How long a tenant's signing secret is cached.
    pub secret_ttl: Duration,
    /// Only https, and only to public addresses (where Holub serves others).
    pub public_only: bool,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            timeout: Duration::from_secs(5),
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(3600),
            secret_ttl: Duration::from_secs(300),
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
    cache: Mutex<HashMap<TenantId, (Secret, Instant)>>,
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
            cache: Mutex::new(HashMap::new()),
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
        let secret = match self.secret(tenant).await {
            Some(s) => s,
            None => return retry(),
        };
        let body = body(events);
        let timestamp = self.clock.now().timestamp();
        let signature = sign(secret.expose().as_bytes(), timestamp, body.as_bytes());
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

    async fn secret(&self, tenant: &TenantId) -> Option<Secret> {
        if let Ok(cache) = self.cache.lock()
            && let Some((secret, at)) = cache.get(tenant)
            && at.elapsed() < self.config.secret_ttl
        {
            return Some(secret.clone());
        }
        match self.secrets.get(&signing_secret_name(tenant)).await {
            Ok(secret) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(tenant.clone(), (secret.clone(), Instant::now()));
                }
                Some(secret)
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
        let header = sign(secret, 1_700_000_000, body);
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
}
