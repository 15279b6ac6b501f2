//! Request extractors: the bearer key's tenant, JSON bodies and the idempotency key, each
//! turned into a valid value or a clear 4xx.

use axum::body::Bytes;
use std::marker::PhantomData;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use holub_shared::domain::{Actor, IdempotencyKey, Origin, Scope, TenantId};
use holub_shared::services::accounts::Caller;
use holub_shared::services::intake::Idempotency;
use lambda_http::request::RequestContext;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// The caller behind a request's bearer key, whatever its scopes.
pub struct Authenticated {
    pub caller: Caller,
    /// Who asks and from where, for the audit log.
    pub origin: Origin,
}

/// The client's address: the socket's peer on the single binary, API Gateway's `sourceIp`
/// on Lambda (never a header the client could write).
fn source_address(parts: &Parts) -> Option<String> {
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        return Some(addr.ip().to_string());
    }
    match parts.extensions.get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        _ => None,
    }
}

impl<S> FromRequestParts<S> for Authenticated
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
        let caller = state
            .accounts
            .authenticate(key)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let origin = Origin {
            actor: Actor::ApiKey {
                key_id: caller.key_id.clone(),
            },
            source: source_address(parts),
        };
        Ok(Authenticated { caller, origin })
    }
}

/// The tenant of a request whose key may do what `N` names (403 `insufficient_scope`
/// otherwise).
pub struct Authorized<N> {
    pub tenant: TenantId,
    pub origin: Origin,
    _needs: PhantomData<N>,
}

/// A scope a route needs, as a type.
pub trait Needs {
    const SCOPE: Scope;
}

macro_rules! needs {
    ($($name:ident => $scope:expr),* $(,)?) => {$(
        pub struct $name;
        impl Needs for $name {
            const SCOPE: Scope = $scope;
        }
    )*};
}

needs! {
    SendScope => Scope::MessagesSend,
    ReadScope => Scope::MessagesRead,
    AnalyticsScope => Scope::AnalyticsRead,
    ContactsScope => Scope::ContactsWrite,
    ContactsReadScope => Scope::ContactsRead,
    AdminScope => Scope::Admin,
}

impl<S, N> FromRequestParts<S> for Authorized<N>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    N: Needs,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authenticated { caller, origin } =
            Authenticated::from_request_parts(parts, state).await?;
        if !caller.scopes.allow(N::SCOPE) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this API key lacks the scope `{}`", N::SCOPE),
            ));
        }
        Ok(Authorized {
            tenant: caller.tenant,
            origin,
            _needs: PhantomData,
        })
    }
}

/// A request with any valid key (for routes that reveal and change nothing).
pub struct AnyKey;

impl<S> FromRequestParts<S> for AnyKey
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Authenticated::from_request_parts(parts, state).await?;
        Ok(AnyKey)
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
        // Every request body is an object: serde would also read a struct from an array of
        // its fields in order, a shape no schema of the API allows.
        if !raw.is_object() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "the body must be a JSON object",
            ));
        }
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
