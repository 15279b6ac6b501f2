//! The API's one error type and the one place that maps it to HTTP.
//!
//! Every error answers `{"error": {"code", "message", "field"?}}` with a stable code. A 5xx
//! never shows internals; the log keeps the whole chain.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use holub_shared::ports::{Retryable, StoreError};
use holub_shared::services::intake::{FieldError, IntakeError};
use holub_shared::services::limits::Refusal;
use holub_shared::services::messages::CancelError;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    field: Option<String>,
    /// Seconds, for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// A refusal by one of the tenant's limits: 429 with `Retry-After` when trying later
    /// may succeed; 422 when it never will as it is (a batch above the burst, a charge
    /// above the whole cap).
    pub fn limited(r: Refusal) -> Self {
        match r.retry_after {
            Some(wait) => {
                let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, r.code, r.message);
                e.retry_after = Some(wait.as_secs().max(1));
                e
            }
            None => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, r.code, r.message),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send your API key as `Authorization: Bearer <key>`",
        )
    }

    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such message")
    }

    /// A failure of a backend: retryable ones are 503 (try again), others 500. The cause goes
    /// to the log, not to the client.
    pub fn backend(error: &(dyn std::error::Error + 'static), retryable: bool) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, retryable, "request failed in a backend");
        if retryable {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "Holub cannot take this request right now; try again (with the same Idempotency-Key)",
            )
        } else {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

impl ApiError {
    /// A well-formed request the state of things refuses (consent, a taken name, a full
    /// contact, the clock): 409 with the field's code.
    pub fn conflict(e: FieldError) -> Self {
        ApiError::new(StatusCode::CONFLICT, e.code, e.message).field(e.field)
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message).field(e.field)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::Erased) {
            // Only between the erasure and its revocation of the tenant's keys reaching this
            // process's key cache (at most 30 s): the key is as good as revoked.
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this API key's tenant was erased",
            );
        }
        let retryable = e.is_retryable();
        ApiError::backend(&e, retryable)
    }
}

impl From<IntakeError> for ApiError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Invalid(field) => field.into(),
            IntakeError::Limited(refusal) => ApiError::limited(refusal),
            IntakeError::NoConsent(field) => ApiError::conflict(field),
            IntakeError::IdempotencyConflict => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request",
            ),
            IntakeError::Store(StoreError::IdempotencyKeyInFlight) => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being processed; try again shortly",
            ),
            other => {
                let retryable = other.is_retryable();
                ApiError::backend(&other, retryable)
            }
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound => ApiError::not_found(),
            CancelError::TooLate(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_cancellable", e.to_string())
            }
            CancelError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
