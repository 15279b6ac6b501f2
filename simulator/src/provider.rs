//! The [`SmsProvider`] adapter that sends through a simulator over holub-sim v1.
//!
//! Errors are sorted by what they mean for the message:
//! - a connection error, a timeout, 429 or 5xx: the request may or may not have been acted
//!   on, so every message of it is [`ProviderError::Temporary`] (the simulator is idempotent
//!   by client id, so a resend cannot send twice);
//! - 401/403: the account's credentials are refused, whatever the message:
//!   [`ProviderError::Account`], so the gateway takes the route out and fails over;
//! - other 4xx: the request itself is wrong and will stay wrong:
//!   [`ProviderError::Permanent`] for every message;
//! - a 200 whose body is not what holub-sim v1 promises: the outcome is unknown, so
//!   `Temporary` with code `provider_bad_answer`, logged, never a panic.
//!
//! Every body is parsed into the typed [`crate::wire`] structs.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use holub_shared::domain::{FailureCode, Kopiyky, MessageId};
use holub_shared::ports::{OutboundSms, ProviderError, ProviderReceipt, SmsProvider, Submitted};
use reqwest::StatusCode;

use crate::wire::{
    ErrorBody, LookupResponse, MAX_MESSAGES_PER_REQUEST, SendItem, SendRequest, SendResponse,
    SendResult, StatusRequest,
};

/// Connection set-up must be quick on loopback; a stuck one is a dead simulator.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole request, 1000 messages included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests of one `send_many` in flight at once; answers stay in order.
const MAX_CONCURRENT_REQUESTS: usize = 4;

/// Codes of the errors this adapter makes up itself (the simulator's own codes are passed
/// through); the answer that is not holub-sim v1 is `BAD_ANSWER`, an unknown outcome.
pub mod codes {
    pub use holub_shared::adapters::providers::http::codes::{
        BAD_ANSWER, BAD_REQUEST, RATE_LIMITED, TIMEOUT, UNAUTHORIZED, UNAVAILABLE, UNREACHABLE,
    };
}

/// Why a [`SimulatorProvider`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("not an http(s) base URL: {0:?}")]
    BadUrl(String),
    #[error("the HTTP client cannot start: {0}")]
    Client(#[from] reqwest::Error),
}

/// Sends SMS through a holub-sim v1 simulator.
#[derive(Clone)]
pub struct SimulatorProvider {
    name: String,
    http: reqwest::Client,
    send_url: reqwest::Url,
    base_url: reqwest::Url,
    api_token: String,
}

impl std::fmt::Debug for SimulatorProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl SimulatorProvider {
    /// A provider for the simulator at `base_url` (`http://127.0.0.1:9090`, or with a path
    /// prefix), authenticating with `api_token`, recorded on messages as `name`.
    pub fn new(
        base_url: &str,
        api_token: impl Into<String>,
        name: &str,
    ) -> Result<Self, ProviderSetupError> {
        let bad = || ProviderSetupError::BadUrl(base_url.to_owned());
        let mut base = reqwest::Url::parse(base_url).map_err(|_| bad())?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad());
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let send_url = base.join("api/v1/send").map_err(|_| bad())?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(SimulatorProvider {
            name: name.to_owned(),
            http,
            send_url,
            base_url: base,
            api_token: api_token.into(),
        })
    }

    /// One request for up to [`MAX_MESSAGES_PER_REQUEST`] messages.
    async fn send_chunk(&self, chunk: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        let body = SendRequest {
            messages: chunk.iter().map(to_wire).collect(),
        };
        let response = self
            .http
            .post(self.send_url.clone())
            .bearer_auth(&self.api_token)
            .json(&body)
            .send()
            .await;
        let all = |error: ProviderError| vec![Err(error); chunk.len()];
        let response = match response {
            Ok(response) => response,
            Err(e) => return all(transport_error(&self.name, &e)),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return all(transport_error(&self.name, &e)),
        };
        if status != StatusCode::OK {
            return all(status_error(&self.name, status, &bytes, false));
        }
        let answer: SendResponse = match serde_json::from_slice(&bytes) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(
                    provider = %self.name, error = %e, messages = chunk.len(),
                    "simulator answered a send with an unreadable body; outcome unknown"
                );
                return all(bad_answer("the send answer is not holub-sim v1 JSON"));
            }
        };
        if answer.results.len() != chunk.len() {
            tracing::warn!(
                provider = %self.name, sent = chunk.len(), results = answer.results.len(),
                "simulator answered a send with the wrong number of results; outcome unknown"
            );
            return all(bad_answer(
                "the send answer has the wrong number of results",
            ));
        }
        chunk
            .iter()
            .zip(answer.results)
            .map(|(sms, result)| map_result(&self.name, sms, result))
            .collect()
    }

    /// The final receipts of up to [`MAX_MESSAGES_PER_REQUEST`] messages.
    async fn status_chunk(&self, ids: &[String]) -> Result<Vec<ProviderReceipt>, ProviderError> {
        let url = self
            .base_url
            .join("api/v1/status")
            .map_err(|_| bad_answer("cannot build the status URL"))?;
        let body = StatusRequest {
            message_ids: ids.to_vec(),
        };
        let (status, bytes) = self.exchange(self.http.post(url).json(&body)).await?;
        if status != StatusCode::OK {
            return Err(status_error(&self.name, status, &bytes, true));
        }
        crate::receipt::parse_receipts(&bytes).map_err(|e| {
            tracing::warn!(provider = %self.name, error = %e, "simulator status answer unreadable");
            bad_answer("the status answer is not holub-sim v1 JSON")
        })
    }

    /// Sends an authenticated request and reads the whole answer.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, axum::body::Bytes), ProviderError> {
        let response = request
            .bearer_auth(&self.api_token)
            .send()
            .await
            .map_err(|e| transport_error(&self.name, &e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&self.name, &e))?;
        Ok((status, bytes))
    }

    fn lookup_url(&self, id: &MessageId) -> Result<reqwest::Url, ProviderError> {
        self.base_url
            .join(&format!("api/v1/messages/{id}"))
            .map_err(|_| bad_answer("cannot build the lookup URL"))
    }
}

fn to_wire(sms: &OutboundSms) -> SendItem {
    SendItem {
        client_id: sms.id.to_string(),
        to: sms.to.digits().to_owned(),
        from: sms.from.as_str().to_owned(),
        text: sms.text.clone(),
        validity: Some(sms.validity_seconds),
    }
}

fn map_result(
    provider: &str,
    sms: &OutboundSms,
    result: SendResult,
) -> Result<Submitted, ProviderError> {
    let expected = sms.id.to_string();
    match result {
        SendResult::Accepted {
            client_id,
            message_id,
            cost,
            ..
        } => {
            if client_id != expected || message_id.trim().is_empty() {
                tracing::warn!(
                    provider, client_id = %expected,
                    "simulator answer does not match the message sent; outcome unknown"
                );
                return Err(bad_answer(
                    "the send result is for another message or has no id",
                ));
            }
            Ok(Submitted {
                provider_message_id: message_id,
                cost: parse_cost(provider, &expected, &cost),
            })
        }
        SendResult::Error {
            client_id,
            code,
            message,
            retryable,
        } => {
            if client_id != expected {
                tracing::warn!(
                    provider, client_id = %expected,
                    "simulator error result does not match the message sent; outcome unknown"
                );
                return Err(bad_answer("the send result is for another message"));
            }
            tracing::debug!(provider, client_id = %expected, code, retryable, "simulator refused a message");
            // The simulator speaks Holub's codes, and `rejected` for a plain refusal.
            let code = match code.as_str() {
                "rejected" => FailureCode::ProviderRejected,
                other => other.parse().unwrap_or(FailureCode::ProviderError),
            };
            Err(if retryable {
                ProviderError::Temporary { code, message }
            } else {
                ProviderError::Permanent { code, message }
            })
        }
    }
}

/// The message was taken whatever its price says; an unreadable price is logged and left
/// out rather than turning an accepted message into an error that would make it be resent.
fn parse_cost(provider: &str, client_id: &str, cost: &str) -> Option<Kopiyky> {
    match Kopiyky::parse_hryvnias(cost) {
        Ok(cost) => Some(cost),
        Err(_) => {
            tracing::warn!(
                provider,
                client_id,
                "simulator sent an unreadable cost; recording none"
            );
            None
        }
    }
}

/// An answer that cannot be read leaves the outcome unknown: the simulator may have taken
/// the message.
fn bad_answer(message: &str) -> ProviderError {
    ProviderError::unknown(codes::BAD_ANSWER, message)
}

/// A connection that was never made sent nothing (temporary); a request that timed out or
/// broke after it was sent may have been taken (unknown).
fn transport_error(provider: &str, e: &reqwest::Error) -> ProviderError {
    let message = format!("simulator request failed: {e}");
    if e.is_connect() {
        tracing::warn!(provider, error = %e, "simulator unreachable");
        return ProviderError::temporary(codes::UNREACHABLE, message);
    }
    let code = if e.is_timeout() {
        codes::TIMEOUT
    } else {
        codes::UNREACHABLE
    };
    tracing::warn!(provider, error = %e, code = %code, "simulator answer lost");
    ProviderError::unknown(code, message)
}

/// Maps a non-200 answer. `all_temporary` is for lookups, where no answer can make a
/// message's fate permanent.
fn status_error(
    provider: &str,
    status: StatusCode,
    body: &[u8],
    all_temporary: bool,
) -> ProviderError {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error.chars().take(64).collect::<String>())
        .unwrap_or_else(|_| "-".to_owned());
    let message = format!("simulator answered HTTP {} ({detail})", status.as_u16());
    tracing::warn!(
        provider,
        status = status.as_u16(),
        detail,
        "simulator refused a request"
    );
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) && !all_temporary {
        return ProviderError::account(codes::UNAUTHORIZED, message);
    }
    let (code, temporary) = match status {
        StatusCode::TOO_MANY_REQUESTS => (codes::RATE_LIMITED, true),
        StatusCode::REQUEST_TIMEOUT => (codes::TIMEOUT, true),
        s if s.is_server_error() => (codes::UNAVAILABLE, true),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (codes::UNAUTHORIZED, false),
        s if s.is_client_error() => (codes::BAD_REQUEST, false),
        // 1xx, 2xx other than 200, 3xx: not holub-sim v1, so what happened is unknown.
        _ => return bad_answer(&message),
    };
    if temporary || all_temporary {
        ProviderError::Temporary { code, message }
    } else {
        ProviderError::Permanent { code, message }
    }
}

#[async_trait]
impl SmsProvider for SimulatorProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &OutboundSms) -> Result<Submitted, ProviderError> {
        self.send_many(std::slice::from_ref(sms))
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(bad_answer("no result for the message")))
    }

    async fn send_many(&self, batch: &[OutboundSms]) -> Vec<Result<Submitted, ProviderError>> {
        // The futures are built first: a closure inside the stream would trip the `Send`
        // check of `async_trait` over its higher-ranked lifetimes.
        let requests: Vec<_> = batch
            .chunks(MAX_MESSAGES_PER_REQUEST)
            .map(|chunk| self.send_chunk(chunk))
            .collect();
        let answers: Vec<_> = futures::stream::iter(requests)
            .buffered(MAX_CONCURRENT_REQUESTS)
            .collect()
            .await;
        answers.into_iter().flatten().collect()
    }

    /// The simulator pushes receipts and also answers for them.
    fn answers_status(&self) -> bool {
        true
    }

    async fn status(&self, ids: &[String]) -> Result<Vec<ProviderReceipt>, ProviderError> {
        let mut receipts = Vec::new();
        for chunk in ids.chunks(MAX_MESSAGES_PER_REQUEST) {
            receipts.extend(self.status_chunk(chunk).await?);
        }
        Ok(receipts)
    }

    async fn lookup(&self, id: &MessageId) -> Result<Option<Submitted>, ProviderError> {
        let (status, bytes) = self.exchange(self.http.get(self.lookup_url(id)?)).await?;
        match status {
            StatusCode::OK => match serde_json::from_slice::<LookupResponse>(&bytes) {
                Ok(found) if !found.message_id.trim().is_empty() => {
                    let cost = parse_cost(&self.name, &id.to_string(), &found.cost);
                    Ok(Some(Submitted {
                        provider_message_id: found.message_id,
                        cost,
                    }))
                }
                _ => {
                    tracing::warn!(provider = %self.name, client_id = %id, "simulator lookup answer unreadable");
                    Err(bad_answer("the lookup answer is not holub-sim v1 JSON"))
                }
            },
            // Only the simulator's own "not found" proves it never took the message: a 404
            // from anything else (a wrong base URL, a proxy) proves nothing.
            StatusCode::NOT_FOUND => match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) if body.error == "not_found" => Ok(None),
                _ => {
                    tracing::warn!(provider = %self.name, "lookup got a 404 that is not the simulator's");
                    Err(bad_answer("a 404 without the simulator's not_found body"))
                }
            },
            status => Err(status_error(&self.name, status, &bytes, true)),
        }
    }
}
