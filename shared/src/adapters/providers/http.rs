//! What every provider client shares: one way to build the HTTP client, and one mapping of
//! transport failures and HTTP statuses to the provider port's errors.
//!
//! The line that matters is between *temporary* (the provider certainly did not take the
//! message: the connection was never made, or it said so with 429/5xx) and *unknown* (the
//! request left and no readable answer came back): an unknown outcome must be looked up,
//! never simply resent.

use std::time::Duration;

use reqwest::StatusCode;

use crate::ports::ProviderError;

/// Connect timeout: a provider that does not accept a connection in this time is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Request timeout: well below dispatch's orphan threshold (30 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport codes under their old names, so callers that spell them so keep working.
pub mod codes {
    use crate::domain::FailureCode;

    pub const UNREACHABLE: FailureCode = FailureCode::ProviderUnreachable;
    pub const TIMEOUT: FailureCode = FailureCode::ProviderTimeout;
    pub const BAD_ANSWER: FailureCode = FailureCode::ProviderBadAnswer;
    pub const UNAVAILABLE: FailureCode = FailureCode::ProviderUnavailable;
    pub const RATE_LIMITED: FailureCode = FailureCode::ProviderRateLimited;
    /// The credentials were refused: an account error, and the one that makes the adapter
    /// re-read its secret (it may have been rotated).
    pub const UNAUTHORIZED: FailureCode = FailureCode::ProviderUnauthorized;
    pub const INSUFFICIENT_BALANCE: FailureCode = FailureCode::InsufficientBalance;
    pub const ACCOUNT_BLOCKED: FailureCode = FailureCode::AccountBlocked;
    pub const BAD_REQUEST: FailureCode = FailureCode::ProviderBadRequest;
}

/// The HTTP client for one provider.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// A request that failed in transport. `provider` names the route for the log.
pub fn transport_error(provider: &str, e: &reqwest::Error) -> ProviderError {
    let message = format!("request to {provider} failed: {e}");
    if e.is_connect() || e.is_builder() {
        tracing::warn!(provider, error = %e, "provider unreachable");
        return ProviderError::temporary(codes::UNREACHABLE, message);
    }
    let code = if e.is_timeout() {
        codes::TIMEOUT
    } else {
        codes::UNREACHABLE
    };
    tracing::warn!(provider, error = %e, code = %code, "provider answer lost");
    ProviderError::unknown(code, message)
}

/// An answer whose HTTP status is not a success. For sends, a status that is neither an
/// error nor success (1xx, 3xx, unexpected 2xx) leaves the outcome unknown.
pub fn status_error(provider: &str, status: StatusCode) -> ProviderError {
    let message = format!("{provider} answered HTTP {}", status.as_u16());
    tracing::warn!(
        provider,
        status = status.as_u16(),
        "provider refused a request"
    );
    match status {
        StatusCode::TOO_MANY_REQUESTS => ProviderError::temporary(codes::RATE_LIMITED, message),
        StatusCode::REQUEST_TIMEOUT => ProviderError::temporary(codes::TIMEOUT, message),
        s if s.is_server_error() => ProviderError::temporary(codes::UNAVAILABLE, message),
        // Refused credentials are the account's trouble, not the message's.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            ProviderError::account(codes::UNAUTHORIZED, message)
        }
        s if s.is_client_error() => ProviderError::permanent(codes::BAD_REQUEST, message),
        _ => ProviderError::unknown(codes::BAD_ANSWER, message),
    }
}

/// An answer that arrived but cannot be read as the provider documents it.
pub fn bad_answer(provider: &str, what: &str) -> ProviderError {
    tracing::warn!(provider, what, "provider answer unreadable");
    ProviderError::unknown(codes::BAD_ANSWER, format!("{provider}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_into_temporary_permanent_account_and_unknown() {
        use crate::ports::Retryable;
        assert!(status_error("p", StatusCode::SERVICE_UNAVAILABLE).is_retryable());
        assert!(status_error("p", StatusCode::TOO_MANY_REQUESTS).is_retryable());
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            let refused = status_error("p", status);
            assert!(refused.is_account(), "{status}");
            assert_eq!(refused.code(), codes::UNAUTHORIZED);
        }
        let bad = status_error("p", StatusCode::BAD_REQUEST);
        assert!(!bad.is_retryable() && !bad.is_unknown() && !bad.is_account());
        assert!(status_error("p", StatusCode::MOVED_PERMANENTLY).is_unknown());
        assert!(bad_answer("p", "not JSON").is_unknown());
    }
}
