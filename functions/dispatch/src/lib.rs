//! The SQS trigger of the queue consumers, kept under its old name for the callbacks
//! function and this crate's tests; it lives in [`holub_shared::runtime::sqs`].

pub use holub_shared::runtime::sqs_batch;
