//! The receipt endpoints' throttle: a token bucket per source address and one for all
//! sources, in front of any work (the requests are unauthenticated until parsed). A
//! request past either answers 429 `rate_limited` with `Retry-After`.
//!
//! The buckets live in the process: on one machine that is all of Holub; on AWS each warm
//! instance has its own, and API Gateway's route throttling (template.yaml) is the ceiling
//! across them.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use holub_shared::runtime::Settings;
use lambda_http::request::RequestContext;

/// Sources forgotten (their buckets full again) every this many requests.
const PRUNE_EVERY: u64 = 4_096;

pub struct Throttle {
    per_source: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    clock: DefaultClock,
    requests: AtomicU64,
}

fn quota(rate: u32, burst: u32) -> Quota {
    let one = NonZeroU32::MIN;
    Quota::per_second(NonZeroU32::new(rate).unwrap_or(one))
        .allow_burst(NonZeroU32::new(burst).unwrap_or(one))
}

impl Throttle {
    pub fn new(settings: &Settings) -> Self {
        Throttle {
            per_source: RateLimiter::keyed(quota(settings.receipt_rate, settings.receipt_burst)),
            global: RateLimiter::direct(quota(
                settings.receipt_global_rate,
                settings.receipt_global_burst,
            )),
            clock: DefaultClock::default(),
            requests: AtomicU64::new(0),
        }
    }

    /// Takes a token for a request from `source` (if known), or says how long until one
    /// would be there.
    pub fn check(&self, source: Option<IpAddr>) -> Result<(), Duration> {
        if self.requests.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.per_source.retain_recent();
        }
        if let Some(source) = source {
            self.per_source
                .check_key(&source)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now()))?;
        }
        self.global
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The client's address: the socket's peer on the single binary, API Gateway's `sourceIp`
/// on Lambda (never a header the client could write).
fn source_address(request: &Request) -> Option<IpAddr> {
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        return Some(addr.ip());
    }
    match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            context.http.source_ip.as_deref()?.parse().ok()
        }
        _ => None,
    }
}

pub async fn limit(
    State(throttle): State<Arc<Throttle>>,
    request: Request,
    next: Next,
) -> Response {
    match throttle.check(source_address(&request)) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::warn!(retry_after = seconds.max(1), "receipt request throttled");
            let mut response = crate::error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many receipt requests; send again after Retry-After seconds",
            );
            response
                .headers_mut()
                .insert("retry-after", seconds.max(1).into());
            response.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(flags: &[&str]) -> Settings {
        Settings::from_values(flags.iter().copied()).unwrap()
    }

    #[test]
    fn each_source_has_its_bucket_and_all_share_one() {
        let throttle = Throttle::new(&settings(&[
            "--receipt-rate",
            "1",
            "--receipt-burst",
            "2",
            "--receipt-global-rate",
            "1",
            "--receipt-global-burst",
            "5",
        ]));
        let (a, b) = (Some([192, 0, 2, 1].into()), Some([192, 0, 2, 2].into()));
        assert!(throttle.check(a).is_ok());
        assert!(throttle.check(a).is_ok());
        let wait = throttle.check(a).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another source is not held back by the first.
        assert!(throttle.check(b).is_ok());
        assert!(throttle.check(b).is_ok());
        // Five passed in all: the global bucket is empty for everyone.
        assert!(throttle.check(None).is_ok());
        assert!(throttle.check(Some([192, 0, 2, 3].into())).is_err());
        assert!(throttle.check(None).is_err());
    }

    #[test]
    fn the_defaults_let_a_large_burst_through() {
        let throttle = Throttle::new(&settings(&[]));
        let provider = Some([203, 0, 113, 7].into());
        for _ in 0..5_000 {
            assert!(throttle.check(provider).is_ok());
        }
        // Tokens come back at 200 a second while the loop runs (slowly, on a busy machine):
        // past the burst, the bucket runs dry all the same.
        assert!((0..1_000).any(|_| throttle.check(provider).is_err()));
    }
}
