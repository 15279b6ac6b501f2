//! Holub's built-in SMS provider simulator, and the provider adapter that talks to it.
//!
//! Real SMS providers cost money per message and need an account, so Holub ships a stand-in
//! that runs on the same machine: it takes messages over HTTP on loopback, prices them per
//! part, and some time later POSTs delivery receipts back to Holub, exactly as a provider
//! would. Because it keeps count of what it was asked to send, tests use it to prove that
//! Holub never sends a message twice, through retries, crashes and lost answers. It can also
//! misbehave on purpose (503s, lost answers, rejections, latency, rate limits, duplicate and
//! out-of-order receipts) so that Holub's handling of a bad day is tested too.
//!
//! - [`server`]: the simulator ([`router`], [`serve`], [`Simulator`] for in-process use);
//! - [`provider`]: [`SimulatorProvider`], Holub's [`SmsProvider`](holub_shared::ports::SmsProvider)
//!   for it;
//! - [`receipt`]: [`parse_receipts`] and [`verify_receipt_token`] for Holub's receipt
//!   endpoint;
//! - [`wire`]: the JSON bodies; [`config`]: [`SimulatorConfig`].
//!
//! # The holub-sim v1 wire format
//!
//! Holub's own minimal provider protocol (simulators of real Ukrainian providers' formats are
//! separate). JSON over HTTP; the client authenticates with `Authorization: Bearer
//! <api_token>` (else `401 {"error":"unauthorized"}`).
//!
//! **Send** — `POST /api/v1/send`, at most 1000 messages:
//!
//! ```json
//! {"messages":[{"client_id":"01JV7Q8M4X2K9T3N5R6B8C0D1E","to":"380671234567","from":"Holub",
//!               "text":"Ваш код: 4821","validity":3600}]}
//! ```
//!
//! `200` with one result per message, in order:
//!
//! ```json
//! {"results":[
//!   {"client_id":"01JV…","status":"accepted","message_id":"sim-01JV…","cost":"0.85","parts":1},
//!   {"client_id":"01JV…","status":"error","code":"invalid_number","message":"…","retryable":false}]}
//! ```
//!
//! `client_id` is the client's id of the message (a ULID); the simulator takes each one once.
//! Sending an accepted `client_id` again sends nothing: the answer repeats the first
//! `message_id` and cost, and the stats count a duplicate. `cost` is hryvnias as a decimal
//! string: parts × `cost_per_part`. Error codes: `invalid_client_id`, `invalid_number`,
//! `invalid_sender`, `empty_text`, `text_too_long`, `rejected`. Whole-request errors:
//! `400 bad_request | too_many_messages`, `429 rate_limited` (with `Retry-After`),
//! `503 unavailable`.
//!
//! **Lookup** — `GET /api/v1/messages/{client_id}`: `200 {"message_id","cost","parts","status"}`
//! (`status` is `ENROUTE` until the receipt is due, then `DELIVRD`, `UNDELIV` or `EXPIRED`), or
//! `404 {"error":"not_found"}` if that client id was never accepted. This is how a client
//! resolves a send whose answer it lost, without sending again.
//!
//! **Status** — `POST /api/v1/status` with `{"message_ids":["sim-01JV…",…]}` (at most 1000):
//! `200 {"receipts":[…]}`, the final receipts (as pushed, below) of the messages whose final
//! state is due; ids it does not know, or whose state is not final yet, are left out. This is
//! how a client settles receipts it missed (pushed while it was down) without waiting for them.
//!
//! **Stats** — `GET /api/v1/stats` (no token):
//! `{"accepted","submissions","duplicates","receipts_pending","receipts_posted","receipts_dropped"}`.
//!
//! **Receipts** — the simulator POSTs to the configured `receipts_url` with
//! `Authorization: Bearer <receipt_token>`, up to 500 per request, at least every ~50 ms:
//!
//! ```json
//! {"receipts":[{"message_id":"sim-01JV…","part":1,"status":"DELIVRD","done_at":"2026-05-01T12:00:01.250Z"}]}
//! ```
//!
//! One receipt per part; `status` is one of `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`,
//! `ENROUTE`, `ACCEPTD`. A 2xx answer takes the batch; a 4xx drops it; anything else (or no
//! answer) keeps it for a retry with backoff. Receipts are therefore at least once, and may
//! come out of order.

pub mod config;
pub mod journal;
mod poster;
pub mod provider;
pub mod providers;
pub mod receipt;
pub mod server;
pub mod wire;

pub use config::{ConfigError, SimulatorConfig};
pub use provider::{ProviderSetupError, SimulatorProvider};
pub use receipt::{ReceiptParseError, SimulatorReceipts, parse_receipts, verify_receipt_token};
pub use server::{Simulator, SimulatorState, router, serve};
pub use wire::Stats;

#[cfg(test)]
mod tests;
