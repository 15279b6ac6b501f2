//! Transactions (`TransactWriteItems`): the puts, updates and deletes of items keyed by `pk`
//! (the tenants table's) they are made of, sending one with its `ClientRequestToken`, telling
//! a refusal (DynamoDB cancelled it, and says why per item) from a failure, and the jittered
//! pause before trying again a change that met another.
//!
//! A change that reads, then writes on condition that what it read still holds, runs as a
//! loop of up to [`ROUNDS`] attempts, each a transaction with a fresh token
//! ([`attempt_token`]), and then gives up ([`kept_changing`]). An attempt that met another
//! transaction ([`Refused::Conflict`]) [`pause`]s before the next; what other refusals mean,
//! and whether they pause too, is each store's own.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::codec::{Item, s, tenant};
use super::{DynamoStore, Expr, Incomplete, backoff, unavailable};
use crate::ports::StoreError;

/// Attempts of one change before giving up on items that others keep changing.
pub(super) const ROUNDS: u32 = 8;

/// A put of `item` into `table`, whatever is there.
pub(super) fn put(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A put of a new `item` into `table`: on condition that there is none at its `pk`.
pub(super) fn put_new(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let mut e = Expr::default();
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(format!("attribute_not_exists({})", e.name(tenant::KEY)))
        .set_expression_attribute_names(e.names())
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// An update of the item at `pk` of `table` by `expression`, on `condition`; `e` holds the
/// names and values both use.
pub(super) fn update(
    table: &str,
    pk: String,
    expression: String,
    condition: String,
    e: &Expr,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(table)
        .key(tenant::KEY, s(pk))
        .update_expression(expression)
        .condition_expression(condition)
        .set_expression_attribute_names(e.names())
        .set_expression_attribute_values(e.values())
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A delete of the item at `pk` of `table`, on `condition` when given; `e` holds the names
/// and values it uses.
pub(super) fn delete(
    table: &str,
    pk: String,
    condition: Option<String>,
    e: &Expr,
) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .key(tenant::KEY, s(pk))
        .set_condition_expression(condition)
        .set_expression_attribute_names(e.names())
        .set_expression_attribute_values(e.values())
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// How `TransactWriteItems` fails.
pub(super) type TransactError = SdkError<TransactWriteItemsError, HttpResponse>;

/// The code of each item's cancellation reason, in the order of the transaction's items
/// (`"ConditionalCheckFailed"`, `"TransactionConflict"`, ...; `"None"` or no code for an item
/// that was not the cause), if DynamoDB cancelled the transaction; `None` if it failed in any
/// other way.
pub(super) fn cancellation_codes<R>(
    e: &SdkError<TransactWriteItemsError, R>,
) -> Option<Vec<Option<&str>>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => Some(
            cancel
                .cancellation_reasons()
                .iter()
                .map(|r| r.code())
                .collect(),
        ),
        _ => None,
    }
}

/// Why a transaction was refused, when it was refused rather than failed.
pub(super) enum Refused {
    /// An item's condition failed.
    Condition,
    /// Another transaction held one of its items: try again.
    Conflict,
}

impl Refused {
    /// Why `e` refused the transaction: a failed condition if any item's failed (even if
    /// another item met a conflict), else a conflict; `None` if it was not refused.
    pub(super) fn of<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Refused> {
        let codes = cancellation_codes(e)?;
        if codes.contains(&Some("ConditionalCheckFailed")) {
            Some(Refused::Condition)
        } else if codes.contains(&Some("TransactionConflict")) {
            Some(Refused::Conflict)
        } else {
            None
        }
    }
}

/// A `ClientRequestToken` for one attempt of a change. A token per attempt: the SDK's retry
/// of a write that did commit is answered as a success instead of being refused by its own
/// conditions, while the next attempt (after a refusal) is a new transaction.
pub(super) fn attempt_token() -> String {
    ulid::Ulid::new().to_string()
}

/// Sleeps before attempt `round + 1` of a transaction that met another in attempt `round`
/// (from 1). Jittered, so that changes that collided do not collide again.
pub(super) async fn pause(round: u32) {
    tokio::time::sleep(backoff(round).mul_f64(rand::random::<f64>())).await;
}

/// The failure of a change refused in each of its [`ROUNDS`] attempts: "`what` kept changing
/// while `doing`".
pub(super) fn kept_changing(what: &str, doing: &str) -> StoreError {
    unavailable(Incomplete(format!(
        "{what} kept changing while {doing}, {ROUNDS} times"
    )))
}

impl DynamoStore {
    /// Sends `items` as one `TransactWriteItems` with `token` as its `ClientRequestToken`.
    pub(super) async fn send_transaction(
        &self,
        items: Vec<TransactWriteItem>,
        token: impl Into<String>,
    ) -> Result<(), TransactError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(token)
            .send()
            .await
            .map(|_| ())
    }

    /// One attempt of a change: `items` in one transaction with a fresh token
    /// ([`attempt_token`]). `Ok(Err(_))`: refused, and why; `Err(_)`: failed.
    pub(super) async fn attempt_transaction(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Refused>, StoreError> {
        match self.send_transaction(items, attempt_token()).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => match Refused::of(&e) {
                Some(refusal) => Ok(Err(refusal)),
                None => Err(unavailable(e)),
            },
        }
    }
}
