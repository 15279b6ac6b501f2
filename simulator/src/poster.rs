//! The receipt poster: one task that takes due receipts off the schedule and POSTs them to
//! Holub in batches.
//!
//! Receipts are at-least-once, as with real providers: a batch the receiver did not take
//! (connection refused while Holub restarts, a timeout, 408, 429 or 5xx) is kept and posted
//! again after a backoff that doubles from 100 ms to 5 s, for as long as the simulator runs.
//! While backing off nothing else is posted, since the receiver is most likely down for all
//! batches alike. A 4xx answer means the receiver will never take that batch: it is logged and
//! dropped. Up to [`MAX_IN_FLIGHT`] batches are posted at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::server::{Scheduled, SimulatorState, final_receipts};
use crate::wire::{ErrorBody, Receipt};

/// Batches posted concurrently.
pub const MAX_IN_FLIGHT: usize = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most scheduled messages taken off the heap per lock, so a large backlog never holds the
/// lock long enough to stall send requests.
const MAX_TAKE_PER_LOCK: usize = 5_000;

#[derive(Serialize)]
struct BatchRef<'a> {
    receipts: &'a [Receipt],
}

enum Posted {
    /// 2xx: the receiver has them.
    Taken,
    /// 4xx: the receiver will never take them.
    Refused { status: u16, code: Option<String> },
    /// Anything else: try again later.
    Failed(String),
}

impl SimulatorState {
    /// Posts receipts as they fall due; runs until the task is dropped. Returns at once when
    /// no `receipts_url` is configured.
    pub async fn run_receipts(self) {
        let Some(url) = self.shared.receipts_url.clone() else {
            return;
        };
        let config = &self.shared.config;
        let mut rng = match config.seed {
            Some(seed) => SmallRng::seed_from_u64(seed.wrapping_add(1)),
            None => SmallRng::from_os_rng(),
        };
        let mut outbox: VecDeque<Receipt> = VecDeque::new();
        let mut retry: VecDeque<Vec<Receipt>> = VecDeque::new();
        let mut backoff: Option<Duration> = None;
        loop {
            self.take_due(&mut outbox, Instant::now());
            let mut batches = Vec::with_capacity(MAX_IN_FLIGHT);
            while batches.len() < MAX_IN_FLIGHT {
                if let Some(batch) = retry.pop_front() {
                    batches.push(batch);
                    continue;
                }
                if outbox.is_empty() {
                    break;
                }
                let n = outbox.len().min(config.receipt_batch_size);
                let mut batch: Vec<Receipt> = outbox.drain(..n).collect();
                if config.shuffle_receipts {
                    batch.shuffle(&mut rng);
                }
                batches.push(batch);
            }
            if batches.is_empty() {
                tokio::time::sleep(config.receipt_flush_interval).await;
                continue;
            }

            let outcomes =
                futures::future::join_all(batches.iter().map(|batch| self.post(&url, batch))).await;
            let mut failed = Vec::new();
            let mut reason = String::new();
            for (batch, outcome) in batches.into_iter().zip(outcomes) {
                let count = batch.len() as u64;
                match outcome {
                    Posted::Taken => {
                        let mut inner = self.lock();
                        inner.stats.receipts_posted += count;
                        inner.stats.receipts_pending =
                            inner.stats.receipts_pending.saturating_sub(count);
                    }
                    Posted::Refused { status, code } => {
                        tracing::warn!(
                            status,
                            code = code.as_deref().unwrap_or("-"),
                            receipts = count,
                            "simulator: the receiver refused a receipt batch; dropping it"
                        );
                        let mut inner = self.lock();
                        inner.stats.receipts_dropped += count;
                        inner.stats.receipts_pending =
                            inner.stats.receipts_pending.saturating_sub(count);
                    }
                    Posted::Failed(why) => {
                        reason = why;
                        failed.push(batch);
                    }
                }
            }
            if failed.is_empty() {
                if backoff.take().is_some() {
                    tracing::info!("simulator: the receipt receiver is back");
                }
                continue;
            }
            // Failed batches go first next time, in their original order.
            for batch in failed.into_iter().rev() {
                retry.push_front(batch);
            }
            let wait = backoff.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF));
            backoff = Some(wait);
            tracing::warn!(
                error = %reason,
                retry_in_ms = wait.as_millis() as u64,
                batches_waiting = retry.len(),
                "simulator: receipt POST failed; keeping the receipts"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Moves the receipts due by `now` into `outbox`, one per part (twice each with
    /// duplicate injection, the copies after the originals).
    fn take_due(&self, outbox: &mut VecDeque<Receipt>, now: Instant) {
        loop {
            let mut due: Vec<Scheduled> = Vec::new();
            {
                let mut inner = self.lock();
                while due.len() < MAX_TAKE_PER_LOCK {
                    match inner.schedule.peek() {
                        Some(next) if next.0.due <= now => {}
                        _ => break,
                    }
                    if let Some(next) = inner.schedule.pop() {
                        due.push(next.0);
                    }
                }
            }
            if due.is_empty() {
                return;
            }
            let more = due.len() == MAX_TAKE_PER_LOCK;
            let copies = if self.shared.config.duplicate_receipts {
                2
            } else {
                1
            };
            for _ in 0..copies {
                for scheduled in &due {
                    outbox.extend(final_receipts(
                        &scheduled.message_id,
                        scheduled.parts,
                        scheduled.outcome,
                        scheduled.done_at,
                    ));
                }
            }
            if !more {
                return;
            }
        }
    }

    async fn post(&self, url: &reqwest::Url, batch: &[Receipt]) -> Posted {
        let response = self
            .shared
            .http
            .post(url.clone())
            .bearer_auth(&self.shared.config.receipt_token)
            .json(&BatchRef { receipts: batch })
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => return Posted::Failed(e.to_string()),
        };
        let status = response.status();
        // Reading the body to its end lets the connection be reused.
        let body = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            Posted::Taken
        } else if status.is_client_error()
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            let code = serde_json::from_slice::<ErrorBody>(&body)
                .ok()
                .map(|e| e.error.chars().take(64).collect());
            Posted::Refused {
                status: status.as_u16(),
                code,
            }
        } else {
            Posted::Failed(format!("HTTP {status}"))
        }
    }
}
