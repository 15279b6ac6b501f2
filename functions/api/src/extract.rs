//! Request extractors: the bearer key's tenant, JSON bodies and the idempotency key, each
//! turned into a valid value or a clear 4xx.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use holub_shared::domain::{IdempotencyKey, TenantId};
use holub_shared::services::intake::Idempotency;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// The tenant whose API key signed the request.
pub struct Tenant(pub TenantId);

impl<S> FromRequestParts<S> for Tenant
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        match state.accounts.authenticate(key).await? {
            Some(tenant) => Ok(Tenant(tenant)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// A JSON body parsed into `T`, with a fingerprint of its canonical form (keys sorted) for
/// idempotency.
pub struct JsonBody<T> {
    pub value: T,
    pub fingerprint: String,
}

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let path = req.uri().path().to_owned();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is too large",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_unreadable",
                    rejection.body_text(),
                )
            }
        })?;
        let raw: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let mut hasher = Sha256::new();
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
        hasher.update(raw.to_string().as_bytes());
        let fingerprint = hex::encode(hasher.finalize());
        let value = serde_json::from_value(raw).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                format!("the body does not match the request schema: {e}"),
            )
        })?;
        Ok(JsonBody { value, fingerprint })
    }
}

/// The optional `Idempotency-Key` header.
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyHeader(None));
        };
        let bad = |msg: String| {
            ApiError::new(StatusCode::BAD_REQUEST, "idempotency_key_invalid", msg)
                .field("Idempotency-Key")
        };
        let text = value
            .to_str()
            .map_err(|_| bad("the Idempotency-Key must be printable ASCII".into()))?;
        IdempotencyKey::parse(text)
            .map(|k| IdempotencyHeader(Some(k)))
            .map_err(|e| bad(e.to_string()))
    }
}

impl IdempotencyHeader {
    pub fn with(self, fingerprint: String) -> Option<Idempotency> {
        self.0.map(|key| Idempotency { key, fingerprint })
    }
}
