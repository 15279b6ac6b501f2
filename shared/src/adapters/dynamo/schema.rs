//! Creating the tables, for tests and for a local bootstrap against an emulator. Real
//! deployments get the same tables from the SAM template; the module doc is the design both
//! follow.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, SseSpecification, StreamSpecification, StreamViewType,
    TableStatus, TimeToLiveSpecification,
};

use super::codec::{idem, msg, tenant};
use super::stats::stat;
use super::{DynamoConfig, unavailable};
use crate::ports::StoreError;

/// Index names, as the queries name them.
pub(super) const BY_PROVIDER: &str = "by_provider";
pub(super) const DUE: &str = "due";
pub(super) const QUEUED: &str = "queued";
pub(super) const AWAITING: &str = "awaiting";
pub(super) const BY_TENANT: &str = "by_tenant";

fn built<T>(result: Result<T, BuildError>) -> Result<T, StoreError> {
    result.map_err(unavailable)
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    built(
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build(),
    )
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    built(
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build(),
    )
}

/// An index that projects every attribute.
fn index_all(name: &str, partition: &str, sort: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    built(
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(partition, KeyType::Hash)?)
            .key_schema(key(sort, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build(),
    )
}

fn index(
    name: &str,
    partition: &str,
    sort: Option<&str>,
    include: &[&str],
) -> Result<GlobalSecondaryIndex, StoreError> {
    let mut keys = vec![key(partition, KeyType::Hash)?];
    if let Some(sort) = sort {
        keys.push(key(sort, KeyType::Range)?);
    }
    let projection = if include.is_empty() {
        Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build()
    } else {
        Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(include.iter().map(|a| (*a).to_owned()).collect()))
            .build()
    };
    built(
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .set_key_schema(Some(keys))
            .projection(projection)
            .build(),
    )
}

/// Creates the three tables of `config` (on demand, encrypted, with TTL on `ttl`) and waits
/// until they are active. Tables that exist already are left as they are.
pub async fn create_tables(client: &Client, config: &DynamoConfig) -> Result<(), StoreError> {
    use ScalarAttributeType::{N, S};
    let messages = client
        .create_table()
        .table_name(&config.messages_table)
        .set_attribute_definitions(Some(vec![
            attribute(msg::TENANT, S)?,
            attribute(msg::ID, S)?,
            attribute(msg::BY_PROVIDER, S)?,
            attribute(msg::DUE, S)?,
            attribute(msg::QUEUED, S)?,
            attribute(msg::AWAITING, S)?,
            attribute(msg::SEND_AT, N)?,
            attribute(msg::UPDATED, N)?,
            attribute(msg::EXPIRES, N)?,
        ]))
        .set_key_schema(Some(vec![
            key(msg::TENANT, KeyType::Hash)?,
            key(msg::ID, KeyType::Range)?,
        ]))
        .set_global_secondary_indexes(Some(vec![
            index(
                BY_PROVIDER,
                msg::BY_PROVIDER,
                None,
                &[msg::SEGMENTS, msg::PROVIDER, msg::PROVIDER_ID],
            )?,
            index(DUE, msg::DUE, Some(msg::SEND_AT), &[])?,
            index(QUEUED, msg::QUEUED, Some(msg::UPDATED), &[])?,
            index(
                AWAITING,
                msg::AWAITING,
                Some(msg::EXPIRES),
                &[msg::PROVIDER, msg::PROVIDER_ID, msg::UPDATED],
            )?,
        ]))
        // Each status change is an event on this stream: the callbacks function relays those
        // of messages with a callback URL (see `stream`).
        .stream_specification(built(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build(),
        )?);
    let idempotency = client
        .create_table()
        .table_name(&config.idempotency_table)
        .set_attribute_definitions(Some(vec![
            attribute(idem::TENANT, S)?,
            attribute(idem::KEY, S)?,
        ]))
        .set_key_schema(Some(vec![
            key(idem::TENANT, KeyType::Hash)?,
            key(idem::KEY, KeyType::Range)?,
        ]));
    let tenants = client
        .create_table()
        .table_name(&config.tenants_table)
        .set_attribute_definitions(Some(vec![
            attribute(tenant::KEY, S)?,
            attribute(tenant::GROUP, S)?,
            attribute(tenant::GROUP_SORT, S)?,
        ]))
        .set_key_schema(Some(vec![key(tenant::KEY, KeyType::Hash)?]))
        .global_secondary_indexes(index_all(BY_TENANT, tenant::GROUP, tenant::GROUP_SORT)?);

    let stats = client
        .create_table()
        .table_name(&config.stats_table)
        .set_attribute_definitions(Some(vec![
            attribute(stat::TENANT, S)?,
            attribute(stat::CELL, S)?,
        ]))
        .set_key_schema(Some(vec![
            key(stat::TENANT, KeyType::Hash)?,
            key(stat::CELL, KeyType::Range)?,
        ]));

    for (request, ttl) in [
        (messages, Some(msg::TTL)),
        (idempotency, Some(idem::TTL)),
        (tenants, Some(tenant::TTL)),
        (stats, Some(stat::TTL)),
    ] {
        let name = request.get_table_name().clone().unwrap_or_default();
        let created = request
            .billing_mode(BillingMode::PayPerRequest)
            .sse_specification(SseSpecification::builder().enabled(true).build())
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                continue;
            }
            Err(e) => return Err(unavailable(e)),
        }
        wait_until_active(client, &name).await?;
        if let Some(attribute) = ttl {
            client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(built(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(attribute)
                        .build(),
                )?)
                .send()
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(unavailable)?;
        let status = described.table().and_then(|t| t.table_status());
        if status == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(unavailable(super::Incomplete(format!(
        "table {table} did not become active within a minute"
    ))))
}
